"""ext4 inline data (fs/ext4/inline.c): small files kept in the inode -- the first 60 bytes in
``i_block``, the rest in the in-inode xattr ``system.data`` -- and their conversion to a block.

The state the races are about:

* ``EXT4_INLINE_DATA_FL`` (persistent) and ``i_inline_off`` (the xattr exists):
  ext4_has_inline_data() is both;
* ``EXT4_STATE_MAY_INLINE_DATA`` (in memory): new writes may go inline. write_begin and write_end
  read it without a lock;
* ``i_inline_size``: the current inline *capacity* (60 + xattr value size), not i_size.

ext4_convert_inline_data() (from page_mkwrite, fallocate, truncate) destroys the inline data, then
allocates a block for it -- and when allocation fails, restores the inline data it destroyed.
"""

from __future__ import annotations

from typing import Any

from simkernel.fs.buffer_head import folio_buffers
from simkernel.fs.ext4 import ondisk
from simkernel.fs.ext4.ext4 import (
    CONVERT_INLINE_DATA,
    EXT4_EXTENTS_FL,
    EXT4_GET_BLOCKS_CREATE,
    EXT4_INLINE_DATA_FL,
    EXT4_MAP_MAPPED,
    EXT4_MIN_INLINE_DATA_SIZE,
    EXT4_STATE_MAY_INLINE_DATA,
    EXT4_STATE_NO_EXPAND,
    Ext4InodeInfo,
    MapBlocks,
)
from simkernel.fs.vfs import EFSCORRUPTED, EIO, ENOSPC, AddressSpace
from simkernel.kernel.base import KernelBase
from simkernel.kernel.sched import KGen
from simkernel.mm.filemap import FGP_NOFS, FGP_WRITEBEGIN
from simkernel.mm.folio import Folio
from simkernel.report import inline

#: offset of the system.data entry in the raw inode (ibody header at 0xA0, first entry after it)
EXT4_INLINE_XATTR_OFF = 0xA4


class Ext4Inline(KernelBase):
    # -- sizes and xattr_sem -------------------------------------------------------------------------

    def ext4_get_inline_size(self, inode: Ext4InodeInfo) -> int:
        """ext4_get_inline_size()"""
        return inode.i_inline_size if inode.i_inline_off else 0

    def ext4_get_max_inline_size(self, inode: Ext4InodeInfo) -> int:
        """ext4_get_max_inline_size(): what fits in the inode (128 bytes for 256-byte inodes)."""
        return ondisk.inline_capacity()

    def ext4_write_lock_xattr(self, inode: Ext4InodeInfo) -> KGen:
        """ext4_write_lock_xattr(): down_write(xattr_sem) and forbid inode expansion meanwhile."""
        yield from self.down_write(inode.xattr_sem)
        no_expand = self.ext4_test_inode_state(inode, EXT4_STATE_NO_EXPAND)
        self.ext4_set_inode_state(inode, EXT4_STATE_NO_EXPAND)
        return no_expand

    def ext4_write_unlock_xattr(self, inode: Ext4InodeInfo, no_expand: bool) -> None:
        if not no_expand:
            self.ext4_clear_inode_state(inode, EXT4_STATE_NO_EXPAND)
        self.up_write(inode.xattr_sem)

    def ext4_find_inline_data_nolock(self, inode: Ext4InodeInfo) -> int:
        """ext4_find_inline_data_nolock(): refresh i_inline_off/i_inline_size from the raw inode."""
        if inode.i_inline_off:
            inode.i_inline_size = EXT4_MIN_INLINE_DATA_SIZE + len(inode.i_inline_value)
        return 0

    # -- reading and writing the inline area ---------------------------------------------------------

    def ext4_read_inline_data(self, inode: Ext4InodeInfo, length: int) -> bytes:
        """ext4_read_inline_data()"""
        self.BUG_ON(length > inode.i_inline_size, "len > EXT4_I(inode)->i_inline_size", len=length)
        buf = bytes(inode.i_data[: min(length, EXT4_MIN_INLINE_DATA_SIZE)])
        if length > EXT4_MIN_INLINE_DATA_SIZE:
            buf += bytes(inode.i_inline_value[: length - EXT4_MIN_INLINE_DATA_SIZE])
        return buf

    @inline
    def ext4_write_inline_data(
        self, inode: Ext4InodeInfo, buf: bytes | bytearray, pos: int, length: int
    ) -> None:
        """ext4_write_inline_data(): copy buf[pos:pos+len] into i_block / the xattr value."""
        self.BUG_ON(not inode.i_inline_off, "!EXT4_I(inode)->i_inline_off")
        self.BUG_ON(
            pos + length > inode.i_inline_size,
            "pos + len > EXT4_I(inode)->i_inline_size",
            pos=pos,
            len=length,
            i_inline_size=inode.i_inline_size,
        )
        end = pos + length
        if pos < EXT4_MIN_INLINE_DATA_SIZE:
            cp = min(end, EXT4_MIN_INLINE_DATA_SIZE)
            inode.i_data[pos:cp] = buf[pos:cp]
            pos = cp
        if pos < end:
            off = pos - EXT4_MIN_INLINE_DATA_SIZE
            inode.i_inline_value[off : off + end - pos] = buf[pos:end]

    def ext4_xattr_ibody_set_data(self, inode: Ext4InodeInfo, value_len: int) -> int:
        """ext4_xattr_ibody_set() of system.data: resize the value (keeping its bytes)."""
        if value_len > ondisk.inline_capacity() - EXT4_MIN_INLINE_DATA_SIZE:
            return -ENOSPC
        value = inode.i_inline_value
        if value_len < len(value):
            del value[value_len:]
        else:
            value.extend(bytes(value_len - len(value)))
        return 0

    def ext4_create_inline_data(self, handle: Any, inode: Ext4InodeInfo, length: int) -> int:
        """ext4_create_inline_data(): add system.data for ``length`` inline bytes; INLINE on, EXTENTS off."""
        self.ext4_journal_get_write_access(handle, inode)
        value_len = length - EXT4_MIN_INLINE_DATA_SIZE if length > EXT4_MIN_INLINE_DATA_SIZE else 0
        if inode.i_inline_off:
            return -EFSCORRUPTED  # "unexpected inline data xattr"
        inode.i_inline_value = bytearray()
        err = self.ext4_xattr_ibody_set_data(inode, value_len)
        if err:
            if err == -ENOSPC:
                self.ext4_clear_inode_state(inode, EXT4_STATE_MAY_INLINE_DATA)
            return err
        inode.i_data[:] = bytes(EXT4_MIN_INLINE_DATA_SIZE)
        inode.i_inline_off = EXT4_INLINE_XATTR_OFF
        inode.i_inline_size = value_len + EXT4_MIN_INLINE_DATA_SIZE
        inode.i_flags &= ~EXT4_EXTENTS_FL
        inode.i_flags |= EXT4_INLINE_DATA_FL
        self.ext4_mark_inode_dirty(handle, inode)
        return 0

    def ext4_update_inline_data(self, handle: Any, inode: Ext4InodeInfo, length: int) -> int:
        """ext4_update_inline_data(): grow the xattr value so ``length`` bytes fit."""
        if length <= inode.i_inline_size:
            return 0
        if not inode.i_inline_off:
            return -EFSCORRUPTED  # "missing inline data xattr"
        self.ext4_journal_get_write_access(handle, inode)
        err = self.ext4_xattr_ibody_set_data(inode, length - EXT4_MIN_INLINE_DATA_SIZE)
        if err:
            return err
        inode.i_inline_size = EXT4_MIN_INLINE_DATA_SIZE + len(inode.i_inline_value)
        self.ext4_set_inode_state(inode, EXT4_STATE_MAY_INLINE_DATA)
        self.ext4_mark_inode_dirty(handle, inode)
        return 0

    def ext4_prepare_inline_data(self, handle: Any, inode: Ext4InodeInfo, length: int) -> KGen:
        """ext4_prepare_inline_data(): make the inline area hold ``length`` bytes, or -ENOSPC."""
        if not self.ext4_test_inode_state(inode, EXT4_STATE_MAY_INLINE_DATA):
            return -ENOSPC
        size = self.ext4_get_max_inline_size(inode)
        if size < length:
            return -ENOSPC
        no_expand = yield from self.ext4_write_lock_xattr(inode)
        # the capacity may have changed since the check: re-read it
        self.ext4_find_inline_data_nolock(inode)
        if inode.i_inline_off:
            ret = self.ext4_update_inline_data(handle, inode, length)
        else:
            ret = self.ext4_create_inline_data(handle, inode, length)
        self.ext4_write_unlock_xattr(inode, no_expand)
        return ret

    def ext4_destroy_inline_data_nolock(self, handle: Any, inode: Ext4InodeInfo) -> KGen:
        """ext4_destroy_inline_data_nolock(): remove system.data; EXTENTS on, INLINE and MAY_INLINE off."""
        if not inode.i_inline_off:
            return 0
        yield from self.down_write(inode.i_data_sem)
        self.ext4_journal_get_write_access(handle, inode)
        inode.i_inline_value = bytearray()
        inode.i_data[:] = bytes(EXT4_MIN_INLINE_DATA_SIZE)
        self.ext4_ext_tree_init(handle, inode)
        inode.i_flags &= ~EXT4_INLINE_DATA_FL
        self.ext4_mark_inode_dirty(handle, inode)
        inode.i_inline_off = 0
        inode.i_inline_size = 0
        self.ext4_clear_inode_state(inode, EXT4_STATE_MAY_INLINE_DATA)
        self.up_write(inode.i_data_sem)
        return 0

    def ext4_read_inline_folio(self, inode: Ext4InodeInfo, folio: Folio) -> int:
        """ext4_read_inline_folio(): fill folio 0 from the inline area; the rest is zero.

        Only the blocks whose buffers are not uptodate are filled: with blocks smaller than the
        folio, a write that took the block path (the inline data converted for delalloc, then
        truncated) leaves folio 0 partly uptodate, and Linux's fill of the whole folio wipes what
        that write put there (variant ``inline-read-wipes-block``)."""
        self.BUG_ON(not folio.locked, "!folio_test_locked(folio)")
        self.BUG_ON(not self.ext4_has_inline_data(inode), "!ext4_has_inline_data(inode)")
        self.BUG_ON(folio.index, "folio->index")
        length = min(self.ext4_get_inline_size(inode), inode.i_size)
        data = self.ext4_read_inline_data(inode, length)
        image = bytes(data) + bytes(folio.size - length)
        bhs = folio_buffers(folio)
        if bhs is None:
            folio.data[:] = image
        else:
            for bh in bhs:
                if not bh.uptodate:
                    end = bh.b_offset + bh.b_size
                    folio.data[bh.b_offset : end] = image[bh.b_offset : end]
                    bh.uptodate = True
        folio.uptodate = True
        return length

    def ext4_readpage_inline(self, inode: Ext4InodeInfo, folio: Folio) -> KGen:
        """ext4_readpage_inline(): ->read_folio of an inline file's folio 0; -EAGAIN (read the
        blocks) for any other folio or when it stopped being inline.

        Other folios fall back to a block read, which keeps their uptodate buffers: zeroing the
        whole folio, as kernels did before "ext4: don't wipe data when reading inode with inlined
        data" (bugzilla 200681), wipes what a write already put into it (the variant
        ``inline-read-wipes-folio``)."""
        yield from self.down_read(inode.xattr_sem)
        if not self.ext4_has_inline_data(inode) or folio.index:
            self.up_read(inode.xattr_sem)
            return -11  # -EAGAIN
        self.ext4_read_inline_folio(inode, folio)
        self.up_read(inode.xattr_sem)
        self.folio_unlock(folio)
        return 0

    # -- writes ------------------------------------------------------------------------------------

    def ext4_convert_inline_data_to_extent(self, mapping: AddressSpace, inode: Ext4InodeInfo) -> KGen:
        """ext4_convert_inline_data_to_extent(): non-delalloc conversion for a write that does not fit."""
        if not self.ext4_has_inline_data(inode):
            self.ext4_clear_inode_state(inode, EXT4_STATE_MAY_INLINE_DATA)
            return 0
        retries = [0]
        while True:
            handle = yield from self.ext4_journal_start(inode, "write_page", 4)
            folio = yield from self._filemap_get_folio(mapping, 0, FGP_WRITEBEGIN | FGP_NOFS)
            no_expand = yield from self.ext4_write_lock_xattr(inode)
            if not self.ext4_has_inline_data(inode):
                self.folio_unlock(folio)
                self.ext4_write_unlock_xattr(inode, no_expand)
                self.ext4_journal_stop(handle)
                return 0
            frm, to = 0, self.ext4_get_inline_size(inode)
            if not folio.uptodate:
                self.ext4_read_inline_folio(inode, folio)
            ret = yield from self.ext4_destroy_inline_data_nolock(handle, inode)
            if ret:
                self.folio_unlock(folio)
                self.ext4_write_unlock_xattr(inode, no_expand)
                self.ext4_journal_stop(handle)
                return ret
            get_block = (
                self.ext4_get_block_unwritten
                if self.ext4_should_dioread_nolock(inode)
                else self.ext4_get_block
            )
            ret = yield from self.ext4_block_write_begin(handle, folio, 0, to, get_block)
            bhs = folio_buffers(folio)
            if bhs:
                bhs[0].new = False
            if ret:
                self.folio_unlock(folio)
                self.ext4_write_unlock_xattr(inode, no_expand)
                self.ext4_journal_stop(handle)
                yield from self.ext4_truncate_failed_write(inode)
                if ret == -ENOSPC and (yield from self.ext4_should_retry_alloc(inode.i_sb, retries)):
                    continue
                return ret
            self.block_commit_write(folio, frm, to)
            self.folio_unlock(folio)
            self.ext4_write_unlock_xattr(inode, no_expand)
            self.ext4_journal_stop(handle)
            return 0

    def ext4_generic_write_inline_data(
        self, mapping: AddressSpace, inode: Ext4InodeInfo, pos: int, length: int, fsdata: list[Any], da: bool
    ) -> KGen:
        """ext4_generic_write_inline_data(): prepare an inline write. Returns (1, folio) with folio 0
        locked and a handle open, (0, None) to take the block path, or (-errno, None)."""
        retries = [0]
        while True:
            handle = yield from self.ext4_journal_start(inode, "inode", 1)
            ret = yield from self.ext4_prepare_inline_data(handle, inode, pos + length)
            if ret and ret != -ENOSPC:
                self.ext4_journal_stop(handle)
                return ret, None
            if ret == -ENOSPC:
                self.ext4_journal_stop(handle)
                if not da:
                    ret = yield from self.ext4_convert_inline_data_to_extent(mapping, inode)
                    return ret, None
                ret = yield from self.ext4_da_convert_inline_data_to_extent(mapping, inode, fsdata)
                if ret == -ENOSPC and (yield from self.ext4_should_retry_alloc(inode.i_sb, retries)):
                    continue
                return ret, None
            folio = yield from self._filemap_get_folio(mapping, 0, FGP_WRITEBEGIN | FGP_NOFS)
            yield from self.down_read(inode.xattr_sem)
            if not self.ext4_has_inline_data(inode):
                # someone else converted it to extents meanwhile
                self.up_read(inode.xattr_sem)
                self.folio_unlock(folio)
                self.ext4_journal_stop(handle)
                return 0, None
            if not folio.uptodate:
                self.ext4_read_inline_folio(inode, folio)
            self.ext4_journal_get_write_access(handle, inode)
            self.up_read(inode.xattr_sem)
            return 1, folio

    def ext4_try_to_write_inline_data(
        self, mapping: AddressSpace, inode: Ext4InodeInfo, pos: int, length: int
    ) -> KGen:
        """ext4_try_to_write_inline_data(): the non-delalloc entry to the inline path."""
        if pos + length > self.ext4_get_max_inline_size(inode):
            ret = yield from self.ext4_convert_inline_data_to_extent(mapping, inode)
            return ret, None
        return (yield from self.ext4_generic_write_inline_data(mapping, inode, pos, length, [0], False))

    def ext4_write_inline_data_end(
        self, inode: Ext4InodeInfo, pos: int, length: int, copied: int, folio: Folio
    ) -> KGen:
        """ext4_write_inline_data_end(): copy the folio's bytes into the inline area and stop the
        handle that the inline write_begin started."""
        handle = self.ext4_journal_current_handle()
        if copied < length and not folio.uptodate:
            copied = 0
        self.cov(
            f"ext4:write_inline_data_end:handle={handle is not None}"
            f":fits={pos + copied <= inode.i_inline_size}"
        )
        if copied:
            no_expand = yield from self.ext4_write_lock_xattr(inode)
            self.BUG_ON(not self.ext4_has_inline_data(inode), "!ext4_has_inline_data(inode)", ino=inode.i_ino)
            # i_inline_off may have changed since ext4_write_begin() called
            # ext4_try_to_write_inline_data()
            self.ext4_find_inline_data_nolock(inode)
            self.ext4_write_inline_data(inode, folio.data, pos, copied)
            folio.uptodate = True
            # clear dirty so that writepages will not try to write this folio
            folio.dirty = folio.tagged = False
            self.ext4_write_unlock_xattr(inode, no_expand)
            # update i_size while the folio is locked: writeback could otherwise zero past it
            self.ext4_update_inode_size(inode, pos + copied)
        self.folio_unlock(folio)
        if copied:
            self.ext4_mark_inode_dirty(handle, inode)
        self.ext4_journal_stop(handle)
        if pos + length > inode.i_size:
            yield from self.ext4_truncate_failed_write(inode)
        return copied

    def ext4_da_convert_inline_data_to_extent(
        self, mapping: AddressSpace, inode: Ext4InodeInfo, fsdata: list[Any]
    ) -> KGen:
        """ext4_da_convert_inline_data_to_extent(): move the inline data to folio 0 with a delalloc
        reservation; MAY_INLINE goes off now, the INLINE flag when writeback destroys it."""
        folio = yield from self._filemap_get_folio(mapping, 0, FGP_WRITEBEGIN)
        yield from self.down_read(inode.xattr_sem)
        ret = 0
        try:
            if not self.ext4_has_inline_data(inode):
                self.ext4_clear_inode_state(inode, EXT4_STATE_MAY_INLINE_DATA)
                return 0
            inline_size = self.ext4_get_inline_size(inode)
            if not folio.uptodate:
                self.ext4_read_inline_folio(inode, folio)
            ret = yield from self.ext4_block_write_begin(
                None, folio, 0, inline_size, self.ext4_da_get_block_prep
            )
            if ret:
                self.up_read(inode.xattr_sem)
                self.folio_unlock(folio)
                yield from self.ext4_truncate_failed_write(inode)
                yield from self.down_read(inode.xattr_sem)
                folio = None
                return ret
            bhs = folio_buffers(folio)
            if bhs:
                bhs[0].new = False
            self.folio_mark_dirty(folio)
            folio.uptodate = True
            self.ext4_clear_inode_state(inode, EXT4_STATE_MAY_INLINE_DATA)
            fsdata[0] = CONVERT_INLINE_DATA
            return 0
        finally:
            self.up_read(inode.xattr_sem)
            if folio is not None:
                self.folio_unlock(folio)

    # -- page_mkwrite's conversion: destroy, allocate, restore on failure ----------------------------

    def ext4_restore_inline_data(
        self, handle: Any, inode: Ext4InodeInfo, buf: bytes, inline_size: int
    ) -> None:
        """ext4_restore_inline_data(): put back what destroy removed (capacity ``inline_size``)."""
        ret = self.ext4_create_inline_data(handle, inode, inline_size)
        if ret:
            inode.i_sb.s_fs_info.messages.append(
                "error restoring inline_data for inode -- potential data loss! "
                f"(inode {inode.i_ino}, error {ret})"
            )
            return
        self.ext4_write_inline_data(inode, buf, 0, inline_size)
        self.ext4_set_inode_state(inode, EXT4_STATE_MAY_INLINE_DATA)

    def ext4_convert_inline_data_nolock(self, handle: Any, inode: Ext4InodeInfo) -> KGen:
        """ext4_convert_inline_data_nolock(): called with xattr_sem held for write."""
        inline_size = self.ext4_get_inline_size(inode)
        buf = self.ext4_read_inline_data(inode, inline_size)
        error = yield from self.ext4_destroy_inline_data_nolock(handle, inode)
        if error:
            return error
        map = MapBlocks(0, 1)
        error = yield from self.ext4_map_blocks(handle, inode, map, EXT4_GET_BLOCKS_CREATE)
        if error >= 0 and not map.m_flags & EXT4_MAP_MAPPED:
            error = -EIO
        self.cov(f"ext4:convert_inline_nolock:{min(error, 1)}")
        if error < 0:
            self.ext4_restore_inline_data(handle, inode, buf, inline_size)
            return error
        # the data goes to the new block through its buffer_head (journalled as metadata), not
        # through the page cache: folio 0 is not locked or used
        bs = inode.i_sb.s_blocksize
        error = yield from self.ext4_write_metadata_block(
            handle, map.m_pblk, buf + bytes(bs - len(buf)), f"inline->block ino={inode.i_ino}"
        )
        return error

    def ext4_convert_inline_data(self, inode: Ext4InodeInfo) -> KGen:
        """ext4_convert_inline_data(): page_mkwrite/fallocate/truncate move inline data to a block."""
        if not self.ext4_has_inline_data(inode):
            self.ext4_clear_inode_state(inode, EXT4_STATE_MAY_INLINE_DATA)
            return 0
        if not self.ext4_test_inode_state(inode, EXT4_STATE_MAY_INLINE_DATA):
            # a delalloc conversion is in flight: finish it by writing the folio out
            error = yield from self.filemap_flush(inode.i_mapping)
            if error:
                return error
            if not self.ext4_has_inline_data(inode):
                return 0
        handle = yield from self.ext4_journal_start(inode, "write_page", 4)
        no_expand = yield from self.ext4_write_lock_xattr(inode)
        error = 0
        if self.ext4_has_inline_data(inode):
            error = yield from self.ext4_convert_inline_data_nolock(handle, inode)
        self.ext4_write_unlock_xattr(inode, no_expand)
        self.ext4_journal_stop(handle)
        return error

    def ext4_destroy_inline_data(self, handle: Any, inode: Ext4InodeInfo) -> KGen:
        """ext4_destroy_inline_data()"""
        no_expand = yield from self.ext4_write_lock_xattr(inode)
        ret = yield from self.ext4_destroy_inline_data_nolock(handle, inode)
        self.ext4_write_unlock_xattr(inode, no_expand)
        return ret

    def ext4_inline_data_truncate(self, inode: Ext4InodeInfo) -> KGen:
        """ext4_inline_data_truncate(): shrink the inline area to i_size; returns has_inline."""
        handle = yield from self.ext4_journal_start(inode, "inode", 4)
        no_expand = yield from self.ext4_write_lock_xattr(inode)
        try:
            if not self.ext4_has_inline_data(inode):
                return False
            yield from self.down_write(inode.i_data_sem)
            i_size = inode.i_size
            inline_size = self.ext4_get_inline_size(inode)
            inode.i_disksize = i_size
            if i_size < inline_size:
                if not self.ext4_test_inode_state(inode, EXT4_STATE_MAY_INLINE_DATA):
                    self.ext4_es_remove_extent(inode, 0, 1 << 32)
                if inline_size > EXT4_MIN_INLINE_DATA_SIZE:
                    value_len = (
                        i_size - EXT4_MIN_INLINE_DATA_SIZE if i_size > EXT4_MIN_INLINE_DATA_SIZE else 0
                    )
                    self.ext4_xattr_ibody_set_data(inode, value_len)
                if i_size < EXT4_MIN_INLINE_DATA_SIZE:
                    inode.i_data[i_size:] = bytes(EXT4_MIN_INLINE_DATA_SIZE - i_size)
                inode.i_inline_size = max(EXT4_MIN_INLINE_DATA_SIZE, i_size)
            self.up_write(inode.i_data_sem)
            self.ext4_mark_inode_dirty(handle, inode)
            return True
        finally:
            self.ext4_write_unlock_xattr(inode, no_expand)
            self.ext4_journal_stop(handle)
