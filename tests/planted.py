"""Deliberately wrong kernels ("planted bugs"): each is a small variant the oracle must catch through
its own checks -- never by looking at the model's state. Loaded by import path, like any user
variant: ``"variants": ["tests.planted:NoFsyncFlush"]``.
"""

from __future__ import annotations

from typing import Any

from simkernel.fs.ext4.ext4 import Ext4InodeInfo
from simkernel.fs.vfs import AddressSpace
from simkernel.kernel.sched import KGen
from simkernel.mm.folio import Folio
from simkernel.variants import Variant


class NoFsyncFlush(Variant):
    """Cache flushes are never issued: fsync (and checkpoints) write and wait, but the device's
    volatile cache is not flushed (only journal commit blocks still carry PREFLUSH|FUA)."""

    name = "planted-fsync-no-flush"
    kind = "planted"
    requires = {"journal": True}

    def blkdev_issue_flush(self) -> KGen:
        return 0
        yield  # pragma: no cover


class OrderedDataSkipped(Variant):
    """data=ordered broken: the commit does not write the data of newly allocated (written) blocks
    first, so a crash can leave the new mapping pointing at the block's old contents."""

    name = "planted-commit-before-ordered-data"
    kind = "planted"
    requires = {"journal": True}

    def ext4_should_dioread_nolock(self, inode: Ext4InodeInfo) -> bool:
        # allocate written extents at writeback (nodioread_nolock), which ordered data protects
        return False

    def journal_submit_data_buffers(self, journal: Any, t: Any) -> KGen:
        return 0
        yield  # pragma: no cover


class ConvertBeforeIO(Variant):
    """Unwritten extents are converted to written when the writeback IO is *submitted*, not when it
    completed: a crash can expose the blocks' previous contents."""

    name = "planted-convert-before-io"
    kind = "planted"
    requires = {"journal": True, "write_path": "ext4"}

    def mpage_map_and_submit_extent(self, handle: Any, mpd: Any) -> KGen:
        ret = yield from super().mpage_map_and_submit_extent(handle, mpd)  # type: ignore[misc]
        io_end = mpd.io_end
        for lblk, length in io_end.list_vec:
            yield from self.ext4_convert_unwritten_extents(handle, mpd.inode, lblk, length)
        io_end.list_vec = []
        io_end.unwritten = False
        return ret


class FdatasyncSkipsSize(Variant):
    """fdatasync waits for the data but does not commit the transaction holding the new i_size."""

    name = "planted-fdatasync-skips-size"
    kind = "planted"
    requires = {"journal": True}

    def ext4_fsync_journal(self, inode: Ext4InodeInfo, datasync: bool) -> KGen:
        if datasync:
            return 0, True
        return (yield from super().ext4_fsync_journal(inode, datasync))  # type: ignore[misc]


class FreedBlockStaysMarked(Variant):
    """Freeing blocks forgets to clear their bitmap bits (the blocks leak)."""

    name = "planted-freed-block-stays-marked"
    kind = "planted"

    def ext4_free_blocks(self, handle: Any, inode: Ext4InodeInfo, pblk: int, count: int) -> None:
        self.ext4_mark_bitmaps_dirty(handle)


class TruncateNoTailZero(Variant):
    """Truncate does not zero the tail of the new last block on disk: a later extension exposes the
    old bytes."""

    name = "planted-truncate-no-tail-zero"
    kind = "planted"
    requires = {"write_path": "ext4"}

    def ext4_block_truncate_page(self, handle: Any, mapping: AddressSpace, frm: int) -> KGen:
        return 0
        yield  # pragma: no cover


class ReclaimDropsDirty(Variant):
    """Reclaim evicts dirty folios as if they were clean."""

    name = "planted-reclaim-drops-dirty"
    kind = "planted"

    def folio_evictable_now(self, folio: Folio) -> bool:
        return not (folio.writeback or folio.locked or folio.mapcount) and folio.mapping is not None

    def filemap_release_folio(self, folio: Folio) -> bool:
        folio.dirty = False
        return True


class WritebackErrorsUnreported(Variant):
    """Writeback errors are not recorded for fsync (no errseq update): fsync says all is well."""

    name = "planted-writeback-errors-unreported"
    kind = "planted"

    def mapping_set_error(self, mapping: AddressSpace, error: int) -> None:
        return None


PLANTED = (
    NoFsyncFlush,
    OrderedDataSkipped,
    ConvertBeforeIO,
    FdatasyncSkipsSize,
    FreedBlockStaysMarked,
    TruncateNoTailZero,
    ReclaimDropsDirty,
    WritebackErrorsUnreported,
)
