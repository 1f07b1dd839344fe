"""iomap structures (include/linux/iomap.h, fs/iomap/buffered-io.c's iomap_folio_state)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simkernel.mm.folio import Folio

# iomap types
IOMAP_HOLE = "HOLE"
IOMAP_DELALLOC = "DELALLOC"
IOMAP_MAPPED = "MAPPED"
IOMAP_UNWRITTEN = "UNWRITTEN"
IOMAP_INLINE = "INLINE"

# iomap->flags
IOMAP_F_NEW = 0x01
IOMAP_F_DIRTY = 0x02
IOMAP_F_SHARED = 0x04
IOMAP_F_SIZE_CHANGED = 0x100
IOMAP_F_STALE = 0x200

# iomap_iter->flags
IOMAP_WRITE = 0x01
IOMAP_ZERO = 0x02
IOMAP_FAULT = 0x08
IOMAP_UNSHARE = 0x40

IOMAP_NULL_ADDR = -1


@dataclass
class IomapFolioOps:
    """struct iomap_folio_ops: ``iomap_valid`` is the 6.2 validity check (None before it existed)."""

    iomap_valid: Callable[[Any, Iomap], bool] | None = None


@dataclass
class Iomap:
    """struct iomap: a mapping of [offset, offset+length) returned by ->iomap_begin."""

    addr: int = IOMAP_NULL_ADDR  # byte address on the device
    offset: int = 0
    length: int = 0
    type: str = IOMAP_HOLE
    flags: int = 0
    #: the filesystem's mapping sequence when the map was made (checked by ->iomap_valid)
    validity_cookie: int = 0
    folio_ops: IomapFolioOps | None = None

    def describe(self) -> str:
        end = self.offset + self.length
        return f"{self.type}[{self.offset}, {end}) flags={self.flags:#x} cookie={self.validity_cookie}"


@dataclass
class IomapOps:
    """struct iomap_ops"""

    iomap_begin: Callable[..., Any]
    iomap_end: Callable[..., Any] | None = None


@dataclass
class IomapIter:
    """struct iomap_iter"""

    inode: Any
    pos: int
    len: int
    flags: int
    processed: int = 0
    iomap: Iomap = field(default_factory=Iomap)
    srcmap: Iomap = field(default_factory=Iomap)

    def srcmap_or_iomap(self) -> Iomap:
        """iomap_iter_srcmap(): the source of reads (only differs for COW)."""
        return self.srcmap if self.srcmap.type != IOMAP_HOLE else self.iomap

    def length(self) -> int:
        """iomap_length()"""
        end = self.iomap.offset + self.iomap.length
        return min(self.len, end - self.pos)


class IomapFolioState:
    """struct iomap_folio_state: per-block uptodate and dirty bits of a multi-block folio."""

    __slots__ = ("dirty", "nblocks", "read_bytes_pending", "shift", "uptodate", "write_bytes_pending")

    def __init__(self, nblocks: int, blkbits: int, folio: Folio) -> None:
        self.nblocks = nblocks
        self.shift = blkbits
        full = (1 << nblocks) - 1
        self.uptodate = full if folio.uptodate else 0
        self.dirty = full if folio.dirty else 0
        self.read_bytes_pending = 0
        self.write_bytes_pending = 0

    def range_bits(self, off: int, length: int) -> int:
        first = off >> self.shift
        last = (off + length - 1) >> self.shift
        return ((1 << (last - first + 1)) - 1) << first

    def block_uptodate(self, block: int) -> bool:
        return bool(self.uptodate >> block & 1)

    def block_dirty(self, block: int) -> bool:
        return bool(self.dirty >> block & 1)

    def fully_uptodate(self) -> bool:
        return self.uptodate == (1 << self.nblocks) - 1

    def is_partially_uptodate(self, off: int, length: int) -> bool:
        """iomap_is_partially_uptodate()"""
        bits = self.range_bits(off, length)
        return self.uptodate & bits == bits

    def __repr__(self) -> str:
        return f"<ifs up={self.uptodate:0{self.nblocks}b} dirty={self.dirty:0{self.nblocks}b}>"


@dataclass
class IomapIoend:
    """struct iomap_ioend: contiguous blocks of one type written by one bio chain."""

    io_type: str
    io_flags: int
    inode: Any
    offset: int
    size: int
    sector: int
    #: (folio, bytes of it in this ioend)
    folios: list[tuple[Any, int]] = field(default_factory=list)
    data: list[bytes] = field(default_factory=list)
    status: int = 0


@dataclass
class IomapWritepageCtx:
    """struct iomap_writepage_ctx"""

    ops: Any = None
    iomap: Iomap = field(default_factory=Iomap)
    ioend: IomapIoend | None = None
    #: the filesystem's sequence when ``iomap`` was mapped (xfs wpc->data_seq)
    data_seq: int = -1
