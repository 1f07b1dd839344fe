"""The kernel class: one mixin per kernel source file, composed in dependency order.

Variants are further mixins placed *before* these in the MRO (see ``simkernel/variants``), so a
variant's method replaces the kernel's and can still call it with ``super()``.
"""

from __future__ import annotations

from typing import Any

from simkernel.block.bdev import BlockDevice
from simkernel.block.blk_core import Bio, BlockLayer
from simkernel.block.iolog import IoLog
from simkernel.config import Config
from simkernel.fs.buffer import Buffer
from simkernel.fs.ext4.ext4_jbd2 import Ext4Jbd2
from simkernel.fs.ext4.extents import Ext4Extents
from simkernel.fs.ext4.file import Ext4File
from simkernel.fs.ext4.inline import Ext4Inline
from simkernel.fs.ext4.inode import Ext4Inode
from simkernel.fs.ext4.inode_iomap import Ext4IomapOps
from simkernel.fs.ext4.mballoc import Ext4Mballoc
from simkernel.fs.ext4.page_io import Ext4PageIO
from simkernel.fs.ext4.super import Ext4Super
from simkernel.fs.fs_writeback import FsWriteback
from simkernel.fs.iomap.buffered_io import IomapBufferedIO
from simkernel.fs.iomap.iter import IomapIterMixin
from simkernel.fs.jbd2.journal import Jbd2
from simkernel.fs.syscalls import Syscalls
from simkernel.kernel.actors import Actors
from simkernel.kernel.sched import Scheduler
from simkernel.mm.filemap_write import FilemapWrite
from simkernel.mm.memory import MmStruct


class Kernel(
    Syscalls,
    Ext4File,
    Ext4Super,
    Ext4PageIO,
    Ext4IomapOps,
    Ext4Inode,
    Ext4Inline,
    Ext4Extents,
    Ext4Mballoc,
    Ext4Jbd2,
    Jbd2,
    IomapBufferedIO,
    IomapIterMixin,
    FsWriteback,
    Actors,
    Buffer,
    FilemapWrite,
    BlockLayer,
):
    """One simulated kernel: everything a machine runs, with its per-machine state."""

    def __init__(
        self, config: Config, sched: Scheduler, bdev: BlockDevice, iolog: IoLog, actors: frozenset[str]
    ) -> None:
        self._init_base(sched)
        self.config = config
        self.page_size = config.folio_size
        self.bdev = bdev
        self.iolog = iolog
        self.inflight: list[Bio] = []
        self.mm = MmStruct()
        self.actors = actors
        self.root_inode: Any = None


_COMPOSED: dict[tuple[type, ...], type[Kernel]] = {}


def compose_kernel(variants: tuple[type, ...]) -> type[Kernel]:
    """The kernel class with ``variants`` (mixins) in front; memoized (classes are immutable here)."""
    if not variants:
        return Kernel
    cls = _COMPOSED.get(variants)
    if cls is None:
        name = "Kernel[" + "+".join(getattr(v, "name", v.__name__) for v in variants) + "]"
        cls = type(name, (*variants, Kernel), {})
        _COMPOSED[variants] = cls
    return cls
