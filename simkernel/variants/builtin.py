"""The built-in variants: the two seed bugs and their fixes, and historical bugs whose fixes the
baseline model carries (each a small override of the function the fix changed)."""

from __future__ import annotations

from typing import Any

from simkernel.fs.ext4.ext4 import (
    EXT4_EXTENTS_FL,
    EXT4_INLINE_DATA_FL,
    EXT4_STATE_MAY_INLINE_DATA,
    Ext4InodeInfo,
    Extent,
)
from simkernel.fs.iomap.iomap import Iomap
from simkernel.fs.vfs import ENOSPC, File
from simkernel.kernel.sched import KGen
from simkernel.mm.filemap import FGP_CREAT, FGP_LOCK
from simkernel.mm.memory import VmArea
from simkernel.variants.base import Variant


class IomapWithCookie(Variant):
    name = "iomap"
    description = "iomap buffered writes with the validity cookie (Linux 6.2+): a stale mapping is remapped"
    requires = {"write_path": "iomap"}
    kind = "fix"


class IomapNoCookie(Variant):
    name = "iomap-nocookie"
    description = "iomap buffered writes without the validity check (before 6.2, d7b64041164c)"
    requires = {"write_path": "iomap"}
    kind = "bug"

    def ext4_iomap_valid(self, inode: Ext4InodeInfo, iomap: Iomap) -> bool:
        """Before 6.2 there was no ->iomap_valid: every cached mapping counted as valid."""
        return True


class Ext4Inline(Variant):
    name = "ext4-inline"
    description = (
        "ext4 with inline data: page_mkwrite converts inline data, restoring it when allocation fails"
    )
    requires = {"write_path": "ext4", "inline_data": True}
    kind = "bug"


class Ext4InlineV2(Variant):
    name = "ext4-inline-v2"
    description = (
        "Cascardo's v2 fix: convert inline data in ->mmap under inode_lock (takes i_rwsem under mmap_lock)"
    )
    requires = {"write_path": "ext4", "inline_data": True}
    kind = "bug"

    def ext4_file_mmap(self, file: File, vma: VmArea) -> KGen:
        """ext4_file_mmap() with the v2 patch: the conversion moves here from page_mkwrite. With
        MAY_INLINE_DATA cleared at mmap, page_mkwrite's own call finds nothing left to convert."""
        inode: Ext4InodeInfo = file.f_inode  # type: ignore[assignment]
        yield from self.inode_lock(inode)
        ret = yield from self.ext4_convert_inline_data(inode)
        self.inode_unlock(inode)
        if ret:
            return ret
        return (yield from super().ext4_file_mmap(file, vma))  # type: ignore[misc]


class Ext4InlineFixed(Variant):
    name = "ext4-inline-fixed"
    description = (
        "a sound conversion: under folio 0's lock (which inline writers hold from write_begin to "
        "write_end), allocate and fill the block first, then switch inline -> extent once"
    )
    requires = {"write_path": "ext4", "inline_data": True}
    kind = "fix"

    def ext4_convert_inline_data(self, inode: Ext4InodeInfo) -> KGen:
        """Convert with folio 0 locked: an inline write_begin..write_end holds that lock, so the
        inline state cannot change between a writer's two decisions."""
        if not self.ext4_has_inline_data(inode):
            self.ext4_clear_inode_state(inode, EXT4_STATE_MAY_INLINE_DATA)
            return 0
        if not self.ext4_test_inode_state(inode, EXT4_STATE_MAY_INLINE_DATA):
            error = yield from self.filemap_flush(inode.i_mapping)
            if error:
                return error
            if not self.ext4_has_inline_data(inode):
                return 0
        handle = yield from self.ext4_journal_start(inode, "write_page", 4)
        # FGP_CREAT: the lock must exist even when folio 0 is not cached (reclaim, drop_caches) --
        # a writer about to take the inline path would create and lock it meanwhile, and a
        # conversion that skipped the lock would switch the inode under its write_begin..write_end
        folio = yield from self._filemap_get_folio(inode.i_mapping, 0, FGP_LOCK | FGP_CREAT)
        no_expand = yield from self.ext4_write_lock_xattr(inode)
        error = 0
        if self.ext4_has_inline_data(inode):
            error = yield from self.ext4_convert_inline_data_nolock(handle, inode)
        self.ext4_write_unlock_xattr(inode, no_expand)
        if folio is not None:
            self.folio_unlock(folio)
        self.ext4_journal_stop(handle)
        return error

    def ext4_convert_inline_data_to_extent(self, mapping: Any, inode: Ext4InodeInfo) -> KGen:
        """The write path's conversion (a write that does not fit inline) the same sound way: the
        kernel's destroys the inline data before it allocates the block, so an ENOSPC there loses
        the inline bytes; here nothing changes unless the block is allocated and filled."""
        retries = [0]
        while True:
            ret = yield from self.ext4_convert_inline_data(inode)
            if ret == -ENOSPC and (yield from self.ext4_should_retry_alloc(inode.i_sb, retries)):
                continue
            return ret

    def ext4_prepare_inline_data(self, handle: Any, inode: Ext4InodeInfo, length: int) -> KGen:
        """ext4_prepare_inline_data() deciding under xattr_sem: the kernel tests MAY_INLINE_DATA
        before it takes the lock, so a writer that waited there while a conversion ran would
        re-create inline data over the new extent tree (ext4_create_inline_data() clears EXTENTS
        and i_block). Checked again under the lock, a conversion that won makes it -ENOSPC: the
        writer takes the block path, which finds the inode no longer inline."""
        if not self.ext4_test_inode_state(inode, EXT4_STATE_MAY_INLINE_DATA):
            return -ENOSPC
        size = self.ext4_get_max_inline_size(inode)
        if size < length:
            return -ENOSPC
        no_expand = yield from self.ext4_write_lock_xattr(inode)
        try:
            if not self.ext4_test_inode_state(inode, EXT4_STATE_MAY_INLINE_DATA):
                return -ENOSPC
            self.ext4_find_inline_data_nolock(inode)
            if inode.i_inline_off:
                return self.ext4_update_inline_data(handle, inode, length)
            return self.ext4_create_inline_data(handle, inode, length)
        finally:
            self.ext4_write_unlock_xattr(inode, no_expand)

    def ext4_convert_inline_data_nolock(self, handle: Any, inode: Ext4InodeInfo) -> KGen:
        """Allocate a block and write the inline data into it; only when both succeeded, switch the
        inode from inline to extent-mapped in one step. On failure nothing visible changed."""
        inline_size = self.ext4_get_inline_size(inode)
        buf = self.ext4_read_inline_data(inode, inline_size)
        pblk, _ = self.ext4_mb_new_blocks(handle, inode, 0, 1, 0)
        if pblk < 0:
            return pblk
        bs = inode.i_sb.s_blocksize
        error = yield from self.ext4_write_metadata_block(
            handle, pblk, buf + bytes(bs - len(buf)), f"inline->block ino={inode.i_ino}"
        )
        if error:
            self.ext4_free_blocks(handle, inode, pblk, 1)
            return error
        # the switch: no lock-free reader can observe a state in between
        yield from self.down_write(inode.i_data_sem)
        inode.i_inline_value = bytearray()
        inode.i_data[:] = bytes(len(inode.i_data))
        inode.i_flags &= ~EXT4_INLINE_DATA_FL
        inode.i_flags |= EXT4_EXTENTS_FL
        inode.i_extents = [Extent(0, 1, pblk, False)]
        inode.i_inline_off = 0
        inode.i_inline_size = 0
        self.ext4_clear_inode_state(inode, EXT4_STATE_MAY_INLINE_DATA)
        self.ext4_es_bump_seq(inode)
        self.ext4_mark_inode_dirty(handle, inode)
        self.up_write(inode.i_data_sem)
        return 0


class EofFolioNoZero(Variant):
    name = "eof-folio-no-zero"
    description = (
        "pagecache_isize_extended() before 6.12 (52aecaee1c26): a size extension does not zero "
        "the dirty EOF folio's post-EOF bytes, so mmap stores past EOF become file data"
    )
    kind = "bug"

    def pagecache_isize_extended(self, inode: Any, frm: int, to: int) -> KGen:
        """Write-protect the EOF folio only, as before Linux 6.12."""
        bsize = inode.i_sb.s_blocksize
        ps = self.page_size
        if frm >= to or bsize >= ps:
            return
        rounded_from = -(-frm // bsize) * bsize
        if to <= rounded_from or not rounded_from % ps:
            return
        folio = yield from self.filemap_lock_folio(inode.i_mapping, frm // ps)
        if folio is None:
            return
        if self.folio_mkclean(folio):
            self.folio_mark_dirty(folio)
        self.folio_unlock(folio)


class PunchNoDisksize(Variant):
    name = "punch-no-disksize"
    description = (
        "hole punch / zero range without ext4_update_disksize_before_punch() (before Linux 4.1): "
        "dropping delalloc folios at EOF loses the i_disksize update their writeback would do"
    )
    kind = "bug"

    def ext4_update_disksize_before_punch(self, inode: Ext4InodeInfo, offset: int, length: int) -> KGen:
        return 0
        yield  # pragma: no cover


class InlineReadWipesFolio(Variant):
    name = "inline-read-wipes-folio"
    description = (
        "ext4_readpage_inline() before \"ext4: don't wipe data when reading inode with inlined "
        'data" (bugzilla 200681): reading a folio past the first of a file that still has inline '
        "data zeroes it, wiping bytes a write already put there"
    )
    kind = "bug"
    requires = {"write_path": "ext4", "inline_data": True}

    def ext4_readpage_inline(self, inode: Ext4InodeInfo, folio: Any) -> KGen:
        """Every folio but the first is "just set uptodate" -- zeroed, buffers and all."""
        yield from self.down_read(inode.xattr_sem)
        if not self.ext4_has_inline_data(inode):
            self.up_read(inode.xattr_sem)
            return -11  # -EAGAIN
        if not folio.index:
            self.ext4_read_inline_folio(inode, folio)
        elif not folio.uptodate:
            folio.data[:] = bytes(folio.size)
            folio.uptodate = True
        self.up_read(inode.xattr_sem)
        self.folio_unlock(folio)
        return 0


class InlineDestroyEarly(Variant):
    name = "inline-destroy-early"
    description = (
        "ext4_do_writepages() in Linux's order: the inline data is destroyed in a handle of its own "
        "before folio 0's block is allocated unwritten (dioread_nolock); a crash after that commit "
        "and before the end_io conversion loses bytes an earlier fsync made durable inline"
    )
    kind = "bug"
    requires = {"write_path": "ext4", "inline_data": True}

    def ext4_do_writepages(self, mpd: Any) -> KGen:
        """Destroy first, in its own handle; the rest of writeback then finds an extent inode and
        maps folio 0 like any other delalloc folio (unwritten, converted at IO completion)."""
        inode: Ext4InodeInfo = mpd.inode
        if inode.i_mapping.tagged_dirty_indices() and self.ext4_has_inline_data(inode):
            handle = yield from self.ext4_journal_start(inode, "inode", 1)
            self.BUG_ON(
                self.ext4_test_inode_state(inode, EXT4_STATE_MAY_INLINE_DATA),
                "ext4_test_inode_state(inode, EXT4_STATE_MAY_INLINE_DATA)",
                ino=inode.i_ino,
            )
            yield from self.ext4_destroy_inline_data(handle, inode)
            self.ext4_journal_stop(handle)
        return (yield from super().ext4_do_writepages(mpd))  # type: ignore[misc]


class EofZeroAfterUnlock(Variant):
    name = "eof-zero-after-unlock"
    description = (
        "write_end in Linux's order (ext4 6.11+, iomap with 6.12's pagecache_isize_extended): the "
        "gap between the old EOF and a size-extending write is zeroed after i_size was raised and "
        "the folio unlocked, wiping an mmap store that lands in the gap in between"
    )
    kind = "bug"

    def ext4_zero_eof_gap_locked(self, inode: Ext4InodeInfo, folio: Any, old_size: int, pos: int) -> KGen:
        """Nothing under the folio lock: all of the gap is zeroed after the unlock."""
        return pos
        yield  # pragma: no cover

    def iomap_zero_eof_gap_locked(self, inode: Any, folio: Any, old_size: int, pos: int) -> bool:
        """Nothing under the folio lock: pagecache_isize_extended() zeroes the gap after it."""
        return False


class TruncateTailErrorIgnored(Variant):
    name = "truncate-tail-error-ignored"
    description = (
        "ext4 truncate as in Linux: the new EOF block's tail is zeroed only after the size "
        "changed, and a failure to read that block is ignored; the stale bytes past EOF show "
        "again when a later write or truncate grows the file over them"
    )
    kind = "bug"
    requires = {"write_path": "ext4"}

    def ext4_setattr_zero_eof_tail(self, handle: Any, inode: Ext4InodeInfo, frm: int) -> KGen:
        """Growing: zero the old EOF block's tail, ignore the error. Shrinking: nothing before the
        size changes (ext4_truncate() zeroes afterwards, ignoring the error)."""
        if frm >= inode.i_size:
            yield from self.ext4_block_truncate_page(handle, inode.i_mapping, frm)
        return 0


class EmptyCopyGrowsFile(Variant):
    name = "empty-copy-grows-file"
    description = (
        "write_end's size rule as in Linux (generic_write_end, ext4, iomap): i_size becomes "
        "pos + copied even when nothing was copied, so a write past EOF whose source faults and "
        "whose retry fails returns an error yet leaves the file grown to pos"
    )
    kind = "bug"

    def write_end_size(self, old_size: int, pos: int, copied: int) -> int:
        return max(old_size, pos + copied)


class PartialFolioNotSubmitted(Variant):
    name = "partial-folio-not-submitted"
    description = (
        'ext4 writeback before "ext4: fix stale data if it bail out of the extents mapping loop" '
        "(6.16): when block allocation stops inside a large folio (a transient ENOSPC), the "
        "folio's mapped part is not written, yet the io_end converts its blocks and the handle "
        "that mapped them commits without an i_disksize covering them: stale data, and an "
        "initialized extent past EOF"
    )
    kind = "bug"
    requires = {"write_path": "ext4"}

    def mpage_submit_partial_folio(self, mpd: Any, folio: Any, pos: int) -> int:
        """Leave the folio locked in the extent; mpage_release_unused_pages() unlocks it."""
        return 0

    def ext4_io_end_ranges(self, io_end: Any) -> list[tuple[int, int]]:
        """The kernels of that time convert every mapped range, written or not."""
        return list(io_end.list_vec)


class InlineReadWipesBlock(Variant):
    name = "inline-read-wipes-block"
    description = (
        "ext4_read_inline_folio() as in Linux: reading folio 0 of a file that still has inline "
        "data fills the whole folio from the inline area, wiping a block a write already put "
        "there when the folio was only partly uptodate (blocks smaller than the folio)"
    )
    kind = "bug"
    requires = {"write_path": "ext4", "inline_data": True}

    def ext4_read_inline_folio(self, inode: Ext4InodeInfo, folio: Any) -> int:
        """Copy the inline bytes and zero the tail of the folio (folio_zero_tail), buffers and all."""
        length = min(self.ext4_get_inline_size(inode), inode.i_size)
        folio.data[:length] = self.ext4_read_inline_data(inode, length)
        folio.data[length:] = bytes(folio.size - length)
        folio.uptodate = True
        return length


class EndioConvertsUnsubmitted(Variant):
    name = "endio-converts-unsubmitted"
    description = (
        "the io_end converts every range writeback mapped, written or not, as the model reads "
        "Linux's ext4_put_io_end_defer() (not confirmed on a kernel): when a truncate lowers i_size "
        "while writeback maps a folio, nothing is written, yet the conversion runs later and can "
        "turn blocks a fallocate put there after the truncate into initialized blocks past EOF"
    )
    kind = "bug"
    requires = {"write_path": "ext4"}

    def ext4_io_end_ranges(self, io_end: Any) -> list[tuple[int, int]]:
        return list(io_end.list_vec)


class ZerooutWipesPendingIo(Variant):
    name = "zeroout-wipes-pending-io"
    description = (
        "the zeroout fallback of a conversion at IO completion zeroes every other block of the "
        "unwritten extent, as Linux's ext4_split_extent_at() does when the split cannot get a tree "
        "block: blocks another writeback io_end wrote and has not converted yet (the two "
        "writebacks' extents merged) lose their data"
    )
    kind = "bug"
    requires = {"write_path": "ext4"}

    def ext4_ext_zeroout_filter(self, inode: Any, lblks: list[int]) -> list[int] | None:
        return list(lblks)


class FallocateZeroAfterSize(Variant):
    name = "fallocate-zero-after-size"
    description = (
        "a size-extending fallocate in Linux's order (ext4_alloc_file_blocks(), 6.11+): i_size "
        "grows first and the old EOF block's tail is zeroed after, so a read in between returns "
        "mmap stores that landed past the old EOF as file data"
    )
    kind = "bug"

    def ext4_alloc_extend_size(self, handle: Any, inode: Any, epos: int) -> KGen:
        """Raise i_size, then zero the exposed tail."""
        old_size = inode.i_size
        inode.i_size = epos
        self.ext4_update_i_disksize(inode, epos)
        yield from self.pagecache_isize_extended(inode, old_size, epos)
        return (yield from self.ext4_zero_partial_blocks(handle, inode, old_size, epos - old_size))


class TruncateUpZeroAfterSize(Variant):
    name = "truncate-up-zero-after-size"
    description = (
        "a truncate up in Linux's order (ext4_setattr(), 6.12's pagecache_isize_extended()): "
        "i_size grows first and the old EOF folio's post-EOF part is zeroed after, only if the "
        "folio is still dirty; writeback in between writes or cleans it with the new size and the "
        "mmap stores that landed past the old EOF become file data"
    )
    kind = "bug"

    def ext4_setattr_extend_size(self, handle: Any, inode: Any, size: int) -> KGen:
        """Raise the size, then pagecache_isize_extended()."""
        oldsize = inode.i_size
        yield from self.down_write(inode.i_data_sem)
        inode.i_disksize = size
        self.ext4_mark_inode_dirty(handle, inode)
        inode.i_size = size
        self.up_write(inode.i_data_sem)
        yield from self.pagecache_isize_extended(inode, oldsize, size)


BUILTIN_VARIANTS: tuple[type[Variant], ...] = (
    IomapWithCookie,
    IomapNoCookie,
    Ext4Inline,
    Ext4InlineV2,
    Ext4InlineFixed,
    EofFolioNoZero,
    PunchNoDisksize,
    InlineReadWipesFolio,
    InlineDestroyEarly,
    EofZeroAfterUnlock,
    TruncateTailErrorIgnored,
    EmptyCopyGrowsFile,
    PartialFolioNotSubmitted,
    InlineReadWipesBlock,
    EndioConvertsUnsubmitted,
    ZerooutWipesPendingIo,
    FallocateZeroAfterSize,
    TruncateUpZeroAfterSize,
)
