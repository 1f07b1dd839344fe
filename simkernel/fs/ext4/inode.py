"""ext4's fs/ext4/inode.c: block mapping, the buffered write path (write_begin/write_end, delalloc and
non-delalloc), reads, page_mkwrite, truncate and hole punching, and the address_space_operations.

Each kernel path reads top to bottom as in Linux; locks and decisions are where Linux has them. In
particular ``ext4_da_write_begin`` and ``ext4_da_write_end`` test EXT4_STATE_MAY_INLINE_DATA and
ext4_has_inline_data() *without a lock*, as the kernel does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from simkernel.fs.buffer_head import BufferHead, folio_buffers
from simkernel.fs.ext4.ext4 import (
    CONVERT_INLINE_DATA,
    EXT4_EXTENTS_FL,
    EXT4_GET_BLOCKS_CONVERT,
    EXT4_GET_BLOCKS_CONVERT_UNWRITTEN,
    EXT4_GET_BLOCKS_CREATE,
    EXT4_GET_BLOCKS_CREATE_UNWRIT_EXT,
    EXT4_GET_BLOCKS_DELALLOC_RESERVE,
    EXT4_INLINE_DATA_FL,
    EXT4_MAP_DELAYED,
    EXT4_MAP_MAPPED,
    EXT4_MAP_NEW,
    EXT4_MAP_UNWRITTEN,
    EXT4_STATE_MAY_INLINE_DATA,
    FALL_BACK_TO_NONDELALLOC,
    Ext4InodeInfo,
    MapBlocks,
)
from simkernel.fs.ext4.extents import EXT_MAX_BLOCKS
from simkernel.fs.vfs import (
    EAGAIN,
    EFAULT,
    EFBIG,
    EIO,
    ENOSPC,
    ERANGE,
    AddressSpace,
    AddressSpaceOperations,
    File,
)
from simkernel.kernel.base import KernelBase
from simkernel.kernel.sched import KGen
from simkernel.mm.filemap import (
    FGP_CREAT,
    FGP_LOCK,
    FGP_WRITEBEGIN,
    VM_FAULT_LOCKED,
    VM_FAULT_NOPAGE,
    VM_FAULT_OOM,
    VM_FAULT_SIGBUS,
)
from simkernel.mm.folio import Folio
from simkernel.mm.memory import VmFault

GetBlock = Callable[..., KGen]


def vmf_fs_error(err: int) -> int:
    """vmf_fs_error(): the vm_fault_t for a filesystem error."""
    if err == 0:
        return VM_FAULT_LOCKED
    if err == -EFAULT or err == -EAGAIN:
        return VM_FAULT_NOPAGE
    if err == -12:  # -ENOMEM
        return VM_FAULT_OOM
    return VM_FAULT_SIGBUS


class Ext4Inode(KernelBase):
    # -- inode state helpers (ext4.h) ----------------------------------------------------------------

    @staticmethod
    def ext4_test_inode_state(inode: Ext4InodeInfo, bit: int) -> bool:
        return bool(inode.i_state & bit)

    @staticmethod
    def ext4_set_inode_state(inode: Ext4InodeInfo, bit: int) -> None:
        inode.i_state |= bit

    @staticmethod
    def ext4_clear_inode_state(inode: Ext4InodeInfo, bit: int) -> None:
        inode.i_state &= ~bit

    @staticmethod
    def ext4_test_inode_flag(inode: Ext4InodeInfo, flag: int) -> bool:
        return bool(inode.i_flags & flag)

    @staticmethod
    def ext4_has_inline_data(inode: Ext4InodeInfo) -> bool:
        """ext4_has_inline_data(): INLINE_DATA flag set and a system.data xattr present."""
        return bool(inode.i_flags & EXT4_INLINE_DATA_FL) and inode.i_inline_off != 0

    def ext4_should_dioread_nolock(self, inode: Ext4InodeInfo) -> bool:
        """dioread_nolock (the default on extent files): new blocks start unwritten and are converted
        when their data IO completes."""
        return bool(inode.i_flags & EXT4_EXTENTS_FL)

    def ext4_update_inode_size(self, inode: Ext4InodeInfo, newsize: int) -> bool:
        """ext4_update_inode_size(): grow i_size and i_disksize together."""
        changed = False
        if newsize > inode.i_size:
            inode.i_size = newsize
            changed = True
        if newsize > inode.i_disksize:
            inode.i_disksize = newsize
            changed = True
        return changed

    # -- block mapping -------------------------------------------------------------------------------

    def ext4_map_blocks(
        self, handle: Any, inode: Ext4InodeInfo, map: MapBlocks, flags: int, *, zeroout: bool = True
    ) -> KGen:
        """ext4_map_blocks(): lookup under i_data_sem read; allocate/convert under i_data_sem write.
        ``zeroout=False``: a conversion that cannot split its extent fails instead of falling back
        to zeroing (the iomap ioend completion, see ext4_iomap_end_ioend())."""
        orig_lblk, orig_len = map.m_lblk, map.m_len
        yield from self.down_read(inode.i_data_sem)
        if self.ext4_test_inode_flag(inode, EXT4_EXTENTS_FL):
            retval = self.ext4_ext_map_blocks(handle, inode, map, 0)
        else:
            retval = self.ext4_ind_map_blocks(handle, inode, map, 0)
        self.up_read(inode.i_data_sem)
        if not flags & EXT4_GET_BLOCKS_CREATE:
            return retval
        if retval > 0:
            if map.m_flags & EXT4_MAP_UNWRITTEN:
                # already allocated; only IO completion converts (EXT4_GET_BLOCKS_CONVERT)
                if not flags & EXT4_GET_BLOCKS_CONVERT:
                    return retval
            elif not flags & EXT4_GET_BLOCKS_CONVERT_UNWRITTEN:
                return retval
        map.m_lblk, map.m_len, map.m_flags = orig_lblk, orig_len, 0
        yield from self.down_write(inode.i_data_sem)
        try:
            if self.ext4_test_inode_flag(inode, EXT4_EXTENTS_FL):
                retval = self.ext4_ext_map_blocks(handle, inode, map, flags)
                if (
                    zeroout
                    and retval == -ENOSPC
                    and flags & (EXT4_GET_BLOCKS_CONVERT | EXT4_GET_BLOCKS_CONVERT_UNWRITTEN)
                ):
                    # the conversion could not split the extent: zero out instead
                    map.m_lblk, map.m_len, map.m_flags = orig_lblk, orig_len, 0
                    retval = yield from self.ext4_ext_convert_zeroout(handle, inode, map, flags)
            else:
                retval = self.ext4_ind_map_blocks(handle, inode, map, flags)
            self.cov(f"ext4:map_blocks:create:{min(retval, 1)}:{map.m_flags}:{flags}")
            if retval > 0 and map.m_flags & EXT4_MAP_NEW and not map.m_flags & EXT4_MAP_UNWRITTEN:
                # data=ordered: newly allocated written blocks must get their data before the
                # transaction that maps them commits
                bs = inode.i_sb.s_blocksize
                self.ext4_jbd2_inode_add_write(handle, inode, map.m_lblk * bs, retval * bs)
            if retval > 0 and map.m_flags & EXT4_MAP_NEW:
                # blocks that were delalloc now have real blocks: their reservations are used up
                delayed = [b for b in range(map.m_lblk, map.m_lblk + retval) if b in inode.i_es_delayed]
                if delayed:
                    inode.i_es_delayed.difference_update(delayed)
                    if flags & EXT4_GET_BLOCKS_DELALLOC_RESERVE:
                        self.ext4_da_update_reserve_space(inode, len(delayed))
                    else:
                        self.ext4_da_release_space(inode, len(delayed))
            return retval
        finally:
            self.up_write(inode.i_data_sem)

    def ext4_ind_map_blocks(self, handle: Any, inode: Ext4InodeInfo, map: MapBlocks, flags: int) -> int:
        """ext4_ind_map_blocks(): block-mapped (non-extent) files. Our images only create extent files;
        a regular file without EXTENTS_FL here means i_block holds inline data or nothing."""
        self.BUG_ON(
            flags & EXT4_GET_BLOCKS_CREATE and self.ext4_has_inline_data(inode),
            "ext4_ind_map_blocks() allocating into an inode whose i_block holds inline data",
            ino=inode.i_ino,
        )
        map.m_flags = 0
        if flags & EXT4_GET_BLOCKS_CREATE:
            # an indirect-mapped file that has no blocks yet: give it an extent tree instead
            self.ext4_ext_tree_init(handle, inode)
            return self.ext4_ext_map_blocks(handle, inode, map, flags)
        return 0

    def ext4_update_bh_state(self, bh: BufferHead, m_flags: int) -> None:
        """ext4_update_bh_state(): copy mapping flags to the buffer."""
        bh.mapped = bool(m_flags & EXT4_MAP_MAPPED)
        bh.new = bool(m_flags & EXT4_MAP_NEW)
        bh.unwritten = bool(m_flags & EXT4_MAP_UNWRITTEN)
        bh.delay = bool(m_flags & EXT4_MAP_DELAYED)

    def _ext4_get_block(self, inode: Ext4InodeInfo, iblock: int, bh: BufferHead, flags: int) -> KGen:
        """_ext4_get_block()"""
        if self.ext4_has_inline_data(inode):
            # i_block holds inline bytes, not a block map (a delalloc conversion leaves the flag
            # set until writeback destroys the inline data)
            return -ERANGE
        return (yield from self.ext4_map_bh(inode, iblock, bh, flags))

    def ext4_map_bh(self, inode: Ext4InodeInfo, iblock: int, bh: BufferHead, flags: int) -> KGen:
        """ext4_map_blocks() for one block, the result put into ``bh`` (map_bh() and
        ext4_update_bh_state(), as _ext4_get_block() and ext4_mpage_readpages() do)."""
        map = MapBlocks(iblock, 1)
        handle = self.ext4_journal_current_handle()
        ret = yield from self.ext4_map_blocks(handle, inode, map, flags)
        if ret > 0:
            bh.b_blocknr = map.m_pblk
            self.ext4_update_bh_state(
                bh, map.m_flags | (EXT4_MAP_MAPPED if map.m_flags & EXT4_MAP_UNWRITTEN and flags else 0)
            )
            if not flags and map.m_flags & EXT4_MAP_UNWRITTEN:
                bh.mapped = False
            return 0
        return ret

    def ext4_get_block(self, inode: Ext4InodeInfo, iblock: int, bh: BufferHead, create: bool) -> KGen:
        """ext4_get_block()"""
        return (yield from self._ext4_get_block(inode, iblock, bh, EXT4_GET_BLOCKS_CREATE if create else 0))

    def ext4_get_block_unwritten(
        self, inode: Ext4InodeInfo, iblock: int, bh: BufferHead, create: bool
    ) -> KGen:
        """ext4_get_block_unwritten(): allocate unwritten; mark unwritten buffers new so partial
        writes zero the rest of the block instead of exposing stale disk data."""
        ret = yield from self._ext4_get_block(inode, iblock, bh, EXT4_GET_BLOCKS_CREATE_UNWRIT_EXT)
        if ret == 0 and bh.unwritten:
            bh.new = True
        return ret

    def ext4_da_map_blocks(self, inode: Ext4InodeInfo, map: MapBlocks) -> KGen:
        """ext4_da_map_blocks(): map a block for a delalloc write: existing mapping, or a new
        delayed block with a space reservation."""
        state, ext = self.ext4_es_lookup(inode, map.m_lblk)
        if state == "delayed":
            map.m_flags = EXT4_MAP_DELAYED
            return 0
        if state in ("written", "unwritten"):
            return self.ext4_da_map_found(inode, map, state, ext)
        yield from self.down_read(inode.i_data_sem)
        retval = 0 if self.ext4_has_inline_data(inode) else self.ext4_ext_map_blocks(None, inode, map, 0)
        self.up_read(inode.i_data_sem)
        if retval:
            return retval
        yield from self.down_write(inode.i_data_sem)
        try:
            # page_mkwrite (no i_rwsem) and fallocate (no folio lock) can race: look again
            state, ext = self.ext4_es_lookup(inode, map.m_lblk)
            if state == "delayed":
                map.m_flags = EXT4_MAP_DELAYED
                return 0
            if state in ("written", "unwritten"):
                return self.ext4_da_map_found(inode, map, state, ext)
            map.m_flags = EXT4_MAP_DELAYED
            return self.ext4_insert_delayed_block(inode, map.m_lblk)
        finally:
            self.up_write(inode.i_data_sem)

    @staticmethod
    def ext4_da_map_found(inode: Ext4InodeInfo, map: MapBlocks, state: str, ext: Any) -> int:
        map.m_pblk = ext.pblk + (map.m_lblk - ext.lblk)
        map.m_len = min(map.m_len, ext.end - map.m_lblk)
        map.m_flags = EXT4_MAP_MAPPED if state == "written" else EXT4_MAP_UNWRITTEN
        return map.m_len

    def ext4_insert_delayed_block(self, inode: Ext4InodeInfo, lblk: int) -> int:
        """ext4_insert_delayed_block(): reserve space, then record the delayed block."""
        ret = self.ext4_da_reserve_space(inode)
        if ret:
            return ret
        self.ext4_es_insert_delayed_block(inode, lblk)
        return 0

    def ext4_da_get_block_prep(self, inode: Ext4InodeInfo, iblock: int, bh: BufferHead, create: bool) -> KGen:
        """ext4_da_get_block_prep(): get_block for delalloc writes (and mkwrite)."""
        map = MapBlocks(iblock, 1)
        ret = yield from self.ext4_da_map_blocks(inode, map)
        if ret < 0:
            return ret
        if map.m_flags & EXT4_MAP_DELAYED:
            bh.b_blocknr = -1
            bh.mapped = True
            bh.new = True
            bh.delay = True
            bh.unwritten = False
            return 0
        bh.b_blocknr = map.m_pblk
        self.ext4_update_bh_state(bh, map.m_flags)
        if bh.unwritten:
            # a delayed write to an unwritten block: mapped (no repeated get_block) and new (zero
            # the rest of a partially written block)
            bh.new = True
            bh.mapped = True
        return 0

    # -- write_begin / write_end ---------------------------------------------------------------------

    def ext4_block_write_begin(
        self, handle: Any, folio: Folio, pos: int, length: int, get_block: GetBlock
    ) -> KGen:
        """ext4_block_write_begin(): map the blocks the write touches; zero or read partial blocks."""
        mapping = folio.mapping
        assert mapping is not None
        inode: Ext4InodeInfo = mapping.host  # type: ignore[assignment]
        frm = pos - folio.pos
        to = frm + length
        bs = inode.i_sb.s_blocksize
        self.BUG_ON(not folio.locked, "!folio_test_locked(folio)")
        self.BUG_ON(to > folio.size, "to > folio_size(folio)")
        bhs = folio_buffers(folio) or self.create_empty_buffers(folio, bs)
        block = folio.pos // bs
        err = 0
        wait: list[BufferHead] = []
        for i, bh in enumerate(bhs):
            block_start = bh.b_offset
            block_end = block_start + bs
            if block_end <= frm or block_start >= to:
                if folio.uptodate:
                    bh.uptodate = True
                continue
            if self.WARN_ON(bh.new, "buffer_new(bh)"):
                bh.new = False
            if not bh.mapped:
                err = yield from get_block(inode, block + i, bh, True)
                self.cov(f"ext4:get_block:{err}:new={bh.new}:delay={bh.delay}:unwritten={bh.unwritten}")
                if err:
                    break
                if bh.new:
                    if folio.uptodate:
                        bh.uptodate = True
                        continue
                    if block_end > to or block_start < frm:
                        # folio_zero_segments(folio, to, block_end, block_start, from)
                        if to < block_end:
                            folio.data[to:block_end] = bytes(block_end - to)
                        if block_start < frm:
                            folio.data[block_start:frm] = bytes(frm - block_start)
                    continue
            if folio.uptodate:
                bh.uptodate = True
                continue
            if (
                not bh.uptodate
                and not bh.delay
                and not bh.unwritten
                and (block_start < frm or block_end > to)
            ):
                wait.append(bh)
        for bh in wait:
            ret, data = yield from self.bdev_read_block(bh.b_blocknr, bs)
            if ret:
                err = -EIO
                continue
            folio.data[bh.b_offset : bh.b_offset + bs] = data
            bh.uptodate = True
        if err:
            self.folio_zero_new_buffers(folio, frm, to)
        return err

    def write_begin_get_folio(self, mapping: AddressSpace, index: int) -> KGen:
        """write_begin_get_folio(): the folio locked and stable for writing."""
        return (yield from self._filemap_get_folio(mapping, index, FGP_WRITEBEGIN))

    def ext4_write_begin(self, file: File, mapping: AddressSpace, pos: int, length: int) -> KGen:
        """ext4_write_begin(): non-delalloc write; returns (ret, folio, fsdata)."""
        inode: Ext4InodeInfo = mapping.host  # type: ignore[assignment]
        index = pos // self.page_size
        if self.ext4_test_inode_state(inode, EXT4_STATE_MAY_INLINE_DATA):
            ret, folio = yield from self.ext4_try_to_write_inline_data(mapping, inode, pos, length)
            if ret < 0:
                return ret, None, None
            if ret == 1:
                return 0, folio, None
        retries = [0]
        while True:
            folio = yield from self.write_begin_get_folio(mapping, index)
            length = min(length, folio.pos + folio.size - pos)
            if folio_buffers(folio) is None:
                self.create_empty_buffers(folio, inode.i_sb.s_blocksize)
            self.folio_unlock(folio)
            while True:
                handle = yield from self.ext4_journal_start(inode, "write_page", 4)
                yield from self.folio_lock(folio)
                if folio.mapping is not mapping:
                    # the folio got truncated from under us
                    self.folio_unlock(folio)
                    self.ext4_journal_stop(handle)
                    break
                yield from self.folio_wait_stable(folio)
                get_block = (
                    self.ext4_get_block_unwritten
                    if self.ext4_should_dioread_nolock(inode)
                    else self.ext4_get_block
                )
                ret = yield from self.ext4_block_write_begin(handle, folio, pos, length, get_block)
                if ret:
                    extended = pos + length > inode.i_size
                    self.folio_unlock(folio)
                    self.ext4_journal_stop(handle)
                    if extended:
                        yield from self.ext4_truncate_failed_write(inode)
                    if ret == -EAGAIN or (
                        ret == -ENOSPC and (yield from self.ext4_should_retry_alloc(inode.i_sb, retries))
                    ):
                        continue
                    return ret, None, None
                return 0, folio, None
            # truncated: retry_grab

    def ext4_write_end(
        self, file: File, mapping: AddressSpace, pos: int, length: int, copied: int, folio: Folio, fsdata: Any
    ) -> KGen:
        """ext4_write_end(): non-delalloc write_end; the handle write_begin started is stopped here."""
        handle = self.ext4_journal_current_handle()
        inode: Ext4InodeInfo = mapping.host  # type: ignore[assignment]
        old_size = inode.i_size
        if self.ext4_has_inline_data(inode) and self.ext4_test_inode_state(inode, EXT4_STATE_MAY_INLINE_DATA):
            return (yield from self.ext4_write_inline_data_end(inode, pos, length, copied, folio))
        self.WARN_ON(folio_buffers(folio) is None, "!folio_buffers(folio)", ino=inode.i_ino)
        if folio_buffers(folio) is None:
            self.folio_unlock(folio)
            self.ext4_journal_stop(handle)
            return -EIO
        copied = self.block_write_end(pos, length, copied, folio)
        zero_end = old_size
        if old_size < pos:
            # "ext4: partial zero eof block on unaligned inode size extension" (6.11): the old
            # EOF block's tail may hold mmap stores past EOF; they must not become file data
            zero_end = yield from self.ext4_zero_eof_gap_locked(inode, folio, old_size, pos)
        i_size_changed = self.ext4_update_inode_size(inode, self.write_end_size(old_size, pos, copied))
        self.folio_unlock(folio)
        if zero_end > old_size:
            yield from self.pagecache_isize_extended(inode, old_size, pos)
            yield from self.ext4_zero_partial_blocks(handle, inode, old_size, zero_end - old_size)
        if i_size_changed:
            self.ext4_mark_inode_dirty(handle, inode)
        self.ext4_journal_stop(handle)
        if pos + length > inode.i_size:
            yield from self.ext4_truncate_failed_write(inode)
        return copied

    def ext4_da_write_begin(self, file: File, mapping: AddressSpace, pos: int, length: int) -> KGen:
        """ext4_da_write_begin(): returns (ret, folio, fsdata)."""
        inode: Ext4InodeInfo = mapping.host  # type: ignore[assignment]
        index = pos // self.page_size
        if self.ext4_nonda_switch(inode.i_sb):
            self.cov("ext4:da_write_begin:fallback")
            ret, folio, _ = yield from self.ext4_write_begin(file, mapping, pos, length)
            return ret, folio, FALL_BACK_TO_NONDELALLOC
        fsdata: list[Any] = [0]
        # lockless, as in the kernel: page_mkwrite may be converting inline data right now
        if self.ext4_test_inode_state(inode, EXT4_STATE_MAY_INLINE_DATA):
            ret, folio = yield from self.ext4_generic_write_inline_data(
                mapping, inode, pos, length, fsdata, True
            )
            self.cov(f"ext4:da_write_begin:inline:{ret}:{fsdata[0]}")
            if ret < 0:
                return ret, None, fsdata[0]
            if ret == 1:
                return 0, folio, fsdata[0]
        retries = [0]
        while True:
            folio = yield from self.write_begin_get_folio(mapping, index)
            length = min(length, folio.pos + folio.size - pos)
            ret = yield from self.ext4_block_write_begin(
                None, folio, pos, length, self.ext4_da_get_block_prep
            )
            if ret < 0:
                self.folio_unlock(folio)
                if pos + length > inode.i_size:
                    yield from self.ext4_truncate_failed_write(inode)
                if ret == -ENOSPC and (yield from self.ext4_should_retry_alloc(inode.i_sb, retries)):
                    continue
                return ret, None, fsdata[0]
            return 0, folio, fsdata[0]

    def ext4_da_should_update_i_disksize(self, folio: Folio, offset: int) -> bool:
        """ext4_da_should_update_i_disksize(): the block at ``offset`` already has a written block."""
        bhs = folio_buffers(folio)
        assert bhs is not None
        bh = bhs[offset // bhs[0].b_size]
        return bh.mapped and not bh.delay and not bh.unwritten

    def ext4_da_do_write_end(
        self, mapping: AddressSpace, pos: int, length: int, copied: int, folio: Folio
    ) -> KGen:
        """ext4_da_do_write_end()"""
        inode: Ext4InodeInfo = mapping.host  # type: ignore[assignment]
        old_size = inode.i_size
        disksize_changed = False
        if folio_buffers(folio) is None:
            # a folio prepared by the inline path reached the block path: older kernels crashed on
            # a NULL buffer_head here; newer ones return -EIO. Either way write_begin and write_end
            # disagreed about the inode's state.
            self.WARN_ON(True, "!folio_buffers(folio) in non-inline write_end", ino=inode.i_ino, pos=pos)
            self.folio_unlock(folio)
            return -EIO
        copied = self.block_write_end(pos, length, copied, folio)
        new_i_size = self.write_end_size(old_size, pos, copied)
        zero_end = old_size
        if pos > old_size:
            zero_end = yield from self.ext4_zero_eof_gap_locked(inode, folio, old_size, pos)
        if new_i_size > inode.i_size:
            inode.i_size = new_i_size
            end = (new_i_size - 1) - folio.pos
            if copied and self.ext4_da_should_update_i_disksize(folio, end):
                self.ext4_update_i_disksize(inode, new_i_size)
                disksize_changed = True
        self.folio_unlock(folio)
        zero_len = 0
        if zero_end > old_size:
            yield from self.pagecache_isize_extended(inode, old_size, pos)
            zero_len = zero_end - old_size
        if not disksize_changed and not zero_len:
            return copied
        handle = yield from self.ext4_journal_start(inode, "inode", 2)
        if zero_len:
            yield from self.ext4_zero_partial_blocks(handle, inode, old_size, zero_len)
        self.ext4_mark_inode_dirty(handle, inode)
        self.ext4_journal_stop(handle)
        return copied

    def ext4_da_write_end(
        self, file: File, mapping: AddressSpace, pos: int, length: int, copied: int, folio: Folio, fsdata: Any
    ) -> KGen:
        """ext4_da_write_end(): decides inline vs block from the inode state *now* (lockless)."""
        inode: Ext4InodeInfo = mapping.host  # type: ignore[assignment]
        write_mode = fsdata
        if write_mode == FALL_BACK_TO_NONDELALLOC:
            return (yield from self.ext4_write_end(file, mapping, pos, length, copied, folio, fsdata))
        self.cov(
            f"ext4:da_write_end:mode={write_mode}"
            f":may={self.ext4_test_inode_state(inode, EXT4_STATE_MAY_INLINE_DATA)}"
            f":inline={self.ext4_has_inline_data(inode)}:buffers={folio_buffers(folio) is not None}"
        )
        if (
            write_mode != CONVERT_INLINE_DATA
            and self.ext4_test_inode_state(inode, EXT4_STATE_MAY_INLINE_DATA)
            and self.ext4_has_inline_data(inode)
        ):
            return (yield from self.ext4_write_inline_data_end(inode, pos, length, copied, folio))
        if copied < length and not folio.uptodate:
            copied = 0
        return (yield from self.ext4_da_do_write_end(mapping, pos, length, copied, folio))

    def ext4_truncate_failed_write(self, inode: Ext4InodeInfo) -> KGen:
        """ext4_truncate_failed_write(): drop blocks a failed write instantiated beyond i_size."""
        yield from self.down_write(inode.i_mapping.invalidate_lock)
        try:
            yield from self.truncate_inode_pages_range(inode.i_mapping, inode.i_size, -1)
            yield from self.ext4_truncate(inode)
        finally:
            self.up_write(inode.i_mapping.invalidate_lock)

    # -- aops: dirty/release/invalidate/read ---------------------------------------------------------

    def ext4_dirty_folio(self, mapping: AddressSpace, folio: Folio) -> bool:
        """ext4_dirty_folio() -> block_dirty_folio(): dirty every buffer of a folio dirtied by mmap --
        also when the folio is dirty already (a write dirtied only some of its buffers)."""
        bhs = folio_buffers(folio)
        if bhs is not None:
            for bh in bhs:
                bh.dirty = True
        return self.filemap_dirty_folio(mapping, folio)

    def ext4_release_folio(self, folio: Folio) -> bool:
        """ext4_release_folio()"""
        return self.try_to_free_buffers(folio)

    def ext4_invalidate_folio(self, folio: Folio, offset: int, length: int) -> None:
        """ext4_invalidate_folio()"""
        self.block_invalidate_folio(folio, offset, length)

    def ext4_read_folio(self, file: File | None, folio: Folio) -> KGen:
        """ext4_read_folio(): inline data, or block_read_full_folio with ext4_get_block."""
        assert folio.mapping is not None
        inode: Ext4InodeInfo = folio.mapping.host  # type: ignore[assignment]
        ret = -EAGAIN
        if self.ext4_has_inline_data(inode):
            ret = yield from self.ext4_readpage_inline(inode, folio)
        if ret == -EAGAIN:
            return (yield from self.block_read_full_folio(folio, self.ext4_mpage_get_block))
        return ret

    def ext4_mpage_get_block(self, inode: Ext4InodeInfo, iblock: int, bh: BufferHead, create: bool) -> KGen:
        """The per-block ext4_map_blocks() lookup of ext4_mpage_readpages(): unlike _ext4_get_block()
        it does not refuse an inode that still carries inline data (a folio past the first one of a
        file whose delalloc conversion has not been written back yet)."""
        return (yield from self.ext4_map_bh(inode, iblock, bh, 0))

    def ext4_set_aops(self, inode: Ext4InodeInfo) -> None:
        """ext4_set_aops(): choose the address_space_operations for a regular file."""
        if self.config.write_path == "iomap":
            inode.i_mapping.a_ops = self.ext4_iomap_aops()
            return
        delalloc = inode.i_sb.s_fs_info.s_delalloc
        inode.i_mapping.a_ops = AddressSpaceOperations(
            name="ext4_da_aops" if delalloc else "ext4_aops",
            read_folio=self.ext4_read_folio,
            writepages=self.ext4_writepages,
            dirty_folio=self.ext4_dirty_folio,
            write_begin=self.ext4_da_write_begin if delalloc else self.ext4_write_begin,
            write_end=self.ext4_da_write_end if delalloc else self.ext4_write_end,
            release_folio=self.ext4_release_folio,
            invalidate_folio=self.ext4_invalidate_folio,
        )

    # -- page_mkwrite --------------------------------------------------------------------------------

    def ext4_block_page_mkwrite(self, inode: Ext4InodeInfo, folio: Folio, get_block: GetBlock) -> KGen:
        """ext4_block_page_mkwrite(): non-delalloc fault: allocate under a handle."""
        handle = yield from self.ext4_journal_start(inode, "write_page", 4)
        yield from self.folio_lock(folio)
        size = inode.i_size
        if folio.mapping is not inode.i_mapping or folio.pos > size:
            self.folio_unlock(folio)
            self.ext4_journal_stop(handle)
            return -EFAULT
        length = min(folio.size, size - folio.pos)
        ret = yield from self.ext4_block_write_begin(handle, folio, folio.pos, length, get_block)
        if ret:
            self.folio_unlock(folio)
            self.ext4_journal_stop(handle)
            return ret
        self.block_commit_write(folio, 0, length)
        self.folio_mark_dirty(folio)
        self.ext4_journal_stop(handle)
        yield from self.folio_wait_stable(folio)
        return 0

    def ext4_page_mkwrite(self, vmf: VmFault) -> KGen:
        """ext4_page_mkwrite(): make a faulting folio writable. Holds mmap_lock (read) and
        invalidate_lock (shared), not i_rwsem."""
        folio = vmf.folio
        assert folio is not None
        file = vmf.vma.vm_file
        inode: Ext4InodeInfo = file.f_inode  # type: ignore[assignment]
        mapping = inode.i_mapping
        yield from self.down_read(mapping.invalidate_lock)
        try:
            err = yield from self.ext4_convert_inline_data(inode)
            self.cov(f"ext4:page_mkwrite:convert:{err}")
            if err:
                return vmf_fs_error(err)
            retries = [0]
            if inode.i_sb.s_fs_info.s_delalloc and not self.ext4_nonda_switch(inode.i_sb):
                while True:
                    err = yield from self.block_page_mkwrite(vmf, self.ext4_da_get_block_prep)
                    if err == -ENOSPC and (yield from self.ext4_should_retry_alloc(inode.i_sb, retries)):
                        continue
                    return vmf_fs_error(err)
            yield from self.folio_lock(folio)
            size = inode.i_size
            if folio.mapping is not mapping or folio.pos > size:
                self.folio_unlock(folio)
                return VM_FAULT_NOPAGE
            length = min(folio.size, size - folio.pos)
            bhs = folio_buffers(folio)
            if bhs is not None and all(bh.mapped for bh in bhs if bh.b_offset < length):
                # all buffers mapped: no need to start a handle
                yield from self.folio_wait_stable(folio)
                return VM_FAULT_LOCKED
            self.folio_unlock(folio)
            get_block = (
                self.ext4_get_block_unwritten
                if self.ext4_should_dioread_nolock(inode)
                else self.ext4_get_block
            )
            while True:
                err = yield from self.ext4_block_page_mkwrite(inode, folio, get_block)
                if err == -EAGAIN or (
                    err == -ENOSPC and (yield from self.ext4_should_retry_alloc(inode.i_sb, retries))
                ):
                    continue
                return vmf_fs_error(err)
        finally:
            self.up_read(mapping.invalidate_lock)

    # -- truncate, zeroing, hole punching ------------------------------------------------------------

    def ext4_block_zero_page_range(self, handle: Any, mapping: AddressSpace, frm: int, length: int) -> KGen:
        """__ext4_block_zero_page_range(): zero part of one block through the page cache."""
        inode: Ext4InodeInfo = mapping.host  # type: ignore[assignment]
        if self.config.write_path == "iomap":
            return (yield from self.ext4_iomap_zero_range(inode, frm, length))
        ps = self.page_size
        folio = yield from self._filemap_get_folio(mapping, frm // ps, FGP_LOCK | FGP_CREAT)
        try:
            return (yield from self.ext4_block_zero_folio_range(inode, folio, frm, length))
        finally:
            self.folio_unlock(folio)

    def ext4_block_zero_folio_range(self, inode: Ext4InodeInfo, folio: Folio, frm: int, length: int) -> KGen:
        """__ext4_block_zero_page_range() once it holds the folio locked: map the block, read it if
        it is not uptodate, zero the range and dirty the buffer."""
        bs = inode.i_sb.s_blocksize
        offset = frm - folio.pos
        bhs = folio_buffers(folio) or self.create_empty_buffers(folio, bs)
        bh = bhs[offset // bs]
        if not bh.mapped:
            ret = yield from self.ext4_get_block(inode, folio.pos // bs + offset // bs, bh, False)
            if ret:
                return ret
            if not bh.mapped:
                # a hole (or unwritten): it reads as zeros already
                return 0
        if folio.uptodate:
            bh.uptodate = True
        if not bh.uptodate:
            if bh.delay:
                bh.uptodate = True
            else:
                err, data = yield from self.bdev_read_block(bh.b_blocknr, bs)
                if err:
                    return err
                folio.data[bh.b_offset : bh.b_offset + bs] = data
                bh.uptodate = True
        folio.data[offset : offset + length] = bytes(length)
        self.mark_buffer_dirty(bh)
        return 0

    def ext4_zero_eof_gap_locked(self, inode: Ext4InodeInfo, folio: Folio, old_size: int, pos: int) -> KGen:
        """Zero what ext4_zero_partial_blocks(old_size, pos - old_size) would of the gap a
        size-extending write leaves, as far as it lies in ``folio`` (locked by write_begin), before
        i_size grows over it. Returns where the rest, for after the unlock, ends (``old_size``:
        nothing left).

        Not Linux's order: since "ext4: partial zero eof block on unaligned inode size extension"
        (6.11) write_end zeroes the gap after it raised i_size and unlocked the folio, so an mmap
        store that lands in the gap in between -- inside the file by then -- is wiped. Here the
        folio is write-protected first, so a later store faults and waits for the folio lock.
        The part in an earlier folio (the old EOF block) keeps Linux's order: its lock cannot be
        taken while a later folio's is held. Variant ``eof-zero-after-unlock`` restores Linux's
        order for all of it."""
        bs = inode.i_sb.s_blocksize
        lo, hi = folio.pos, folio.pos + folio.size
        ranges: list[tuple[int, int]] = []
        if old_size // bs == (pos - 1) // bs:
            if old_size % bs or pos % bs:
                ranges.append((old_size, pos))
        else:
            if old_size % bs:
                ranges.append((old_size, (old_size // bs + 1) * bs))
            if pos % bs:
                ranges.append((pos // bs * bs, pos))
        mine = [(max(a, lo), min(b, hi)) for a, b in ranges if a < hi and b > lo]
        if old_size >= lo:
            # and what pagecache_isize_extended() does for this folio: its whole post-EOF part up
            # to the write is exposed too (whole blocks in between are holes on disk, but the
            # cached folio may hold mmap stores past EOF there)
            self.folio_zero_exposed_locked(folio, old_size, pos)
        elif mine and self.folio_mkclean(folio):
            self.folio_mark_dirty(folio)
        for a, b in mine:
            err = yield from self.ext4_block_zero_folio_range(inode, folio, a, b - a)
            if err:
                return pos
        return old_size if old_size >= lo else min(pos, lo)

    def ext4_block_truncate_page(self, handle: Any, mapping: AddressSpace, frm: int) -> KGen:
        """ext4_block_truncate_page(): zero from ``frm`` to the end of its block."""
        bs = mapping.host.i_sb.s_blocksize
        length = bs - (frm % bs)
        return (yield from self.ext4_block_zero_page_range(handle, mapping, frm, length))

    def ext4_zero_partial_blocks(self, handle: Any, inode: Ext4InodeInfo, lstart: int, length: int) -> KGen:
        """ext4_zero_partial_blocks(): zero the partial blocks at both ends of a byte range."""
        bs = inode.i_sb.s_blocksize
        mapping = inode.i_mapping
        if self.config.write_path == "iomap":
            # as xfs_free_file_space(): never zero past EOF through iomap ("we must take care
            # not to zero beyond EOF and enlarge i_size"; since 6.13 iomap_zero_range() warns on
            # a post-EOF folio)
            length = min(length, inode.i_size - lstart)
            if length <= 0:
                return 0
        lend = lstart + length - 1
        partial_start = lstart % bs
        partial_end = (lend + 1) % bs
        start_block = lstart // bs
        end_block = lend // bs
        if start_block == end_block and (partial_start or partial_end):
            return (yield from self.ext4_block_zero_page_range(handle, mapping, lstart, length))
        if partial_start:
            err = yield from self.ext4_block_zero_page_range(handle, mapping, lstart, bs - partial_start)
            if err:
                return err
        if partial_end:
            err = yield from self.ext4_block_zero_page_range(
                handle, mapping, lend - partial_end + 1, partial_end
            )
            if err:
                return err
        return 0

    def ext4_truncate(self, inode: Ext4InodeInfo) -> KGen:
        """ext4_truncate(): free everything past i_size; zero the tail of the last block."""
        if self.ext4_has_inline_data(inode):
            has_inline = yield from self.ext4_inline_data_truncate(inode)
            if has_inline:
                sbi = inode.i_sb.s_fs_info
                if inode.i_next_orphan or sbi.s_last_orphan == inode.i_ino:
                    handle = yield from self.ext4_journal_start(inode, "truncate", 2)
                    self.ext4_orphan_del(handle, inode)
                    self.ext4_journal_stop(handle)
                return 0
        bs = inode.i_sb.s_blocksize
        handle = yield from self.ext4_journal_start(inode, "truncate", 8)
        if inode.i_size % bs and self.config.write_path != "iomap":
            yield from self.ext4_block_truncate_page(handle, inode.i_mapping, inode.i_size)
        yield from self.down_write(inode.i_data_sem)
        try:
            last_block = -(-inode.i_size // bs)
            self.ext4_es_remove_extent(inode, last_block, EXT_MAX_BLOCKS - last_block)
            if self.ext4_test_inode_flag(inode, EXT4_EXTENTS_FL):
                self.ext4_ext_remove_space(handle, inode, last_block, EXT_MAX_BLOCKS - 1)
        finally:
            self.up_write(inode.i_data_sem)
        self.ext4_mark_inode_dirty(handle, inode)
        # "If this was a simple ftruncate() and the file will remain alive, then we need to
        # clear up the orphan record which we created above."
        self.ext4_orphan_del(handle, inode)
        self.ext4_journal_stop(handle)
        return 0

    def ext4_setattr_size(self, inode: Ext4InodeInfo, size: int) -> KGen:
        """ext4_setattr() for ATTR_SIZE; the caller (do_truncate) holds i_rwsem."""
        bs = inode.i_sb.s_blocksize
        if size > (EXT_MAX_BLOCKS + 1) * bs:
            return -EFBIG
        oldsize = inode.i_size
        shrink = size < oldsize
        if self.ext4_has_inline_data(inode) and size > inode.i_inline_size:
            # "ext4: convert inline data to extents when truncate exceeds inline size"
            err = yield from self.ext4_convert_inline_data(inode)
            if err:
                return err
        mapping = inode.i_mapping
        yield from self.down_write(mapping.invalidate_lock)
        try:
            if size != oldsize:
                handle = yield from self.ext4_journal_start(inode, "inode", 3)
                if shrink:
                    # the new i_disksize may commit before ext4_truncate() frees the blocks
                    # past it: the orphan list lets recovery finish the truncate
                    self.ext4_orphan_add(handle, inode)
                err = 0
                if not shrink and oldsize % bs:
                    # the tail of the old last block must read as zeros inside the new size
                    # (through iomap as xfs_setattr_size(): zeroing past EOF leaves i_size alone)
                    err = yield from self.ext4_setattr_zero_eof_tail(handle, inode, oldsize)
                elif shrink and size % bs:
                    # zero the new EOF block's tail while it is still inside i_size, as
                    # xfs_setattr_size() does (iomap zeroing past EOF would extend the file)
                    err = yield from self.ext4_setattr_zero_eof_tail(handle, inode, size)
                if err:
                    # the block could not be read: fail before anything changed. Linux goes on
                    # (ext4_truncate() ignores ext4_block_truncate_page()'s error), and the
                    # stale tail past the new EOF shows again when the file grows over it.
                    self.ext4_journal_stop(handle)
                    return err
                if shrink:
                    yield from self.down_write(inode.i_data_sem)
                    inode.i_disksize = size
                    self.ext4_mark_inode_dirty(handle, inode)
                    inode.i_size = size
                    self.up_write(inode.i_data_sem)
                else:
                    yield from self.ext4_setattr_extend_size(handle, inode, size)
                self.ext4_journal_stop(handle)
            yield from self.truncate_pagecache(inode, inode.i_size)
            if size <= oldsize:
                yield from self.ext4_truncate(inode)
            return 0
        finally:
            self.up_write(mapping.invalidate_lock)

    def ext4_setattr_extend_size(self, handle: Any, inode: Ext4InodeInfo, size: int) -> KGen:
        """Raise i_size and i_disksize to ``size`` for a truncate up, after the old EOF block's
        tail was zeroed. The rest of the old EOF folio past EOF (whole blocks, holes on disk, that
        may hold mmap stores) is zeroed first, with the folio locked and write-protected until the
        size has grown. Not Linux's order: ext4_setattr() raises i_size, then
        pagecache_isize_extended() zeroes that part only if the folio is still dirty -- writeback
        in between sees the new size, writes or cleans the folio without zeroing it, and the stale
        stores become file data (variant ``truncate-up-zero-after-size``)."""
        oldsize = inode.i_size
        folio = None
        if oldsize % self.page_size:
            folio = yield from self._filemap_get_folio(inode.i_mapping, oldsize // self.page_size, FGP_LOCK)
        if folio is not None:
            self.folio_zero_exposed_locked(folio, oldsize, size)
        yield from self.down_write(inode.i_data_sem)
        inode.i_disksize = size
        self.ext4_mark_inode_dirty(handle, inode)
        inode.i_size = size
        self.up_write(inode.i_data_sem)
        if folio is not None:
            self.folio_unlock(folio)
        else:
            # no folio then; one a fault created since is what pagecache_isize_extended() is for
            yield from self.pagecache_isize_extended(inode, oldsize, size)

    def ext4_setattr_zero_eof_tail(self, handle: Any, inode: Ext4InodeInfo, frm: int) -> KGen:
        """Zero ``[frm, end of its block)`` -- the old EOF block's tail before the file grows, or the
        new EOF block's tail before it shrinks -- and report a failure to read the block: the
        truncate then fails and changes nothing. Not Linux's ext4, which ignores the error when
        growing and, when shrinking, zeroes only in ext4_truncate(), after the size changed,
        ignoring the error again (xfs_setattr_size() zeroes first and fails). Either way the stale
        tail shows once the file grows over it. Variant ``truncate-tail-error-ignored`` keeps
        Linux's behaviour."""
        return (yield from self.ext4_block_truncate_page(handle, inode.i_mapping, frm))

    def ext4_update_disksize_before_punch(self, inode: Ext4InodeInfo, offset: int, length: int) -> KGen:
        """ext4_update_disksize_before_punch(): i_disksize must reach i_size before the page cache
        of the range is dropped -- a delalloc write's size update was postponed to its writeback,
        which will never happen for folios truncated away."""
        size = inode.i_size
        self.WARN_ON(not inode.i_rwsem.is_locked(), "!inode_is_locked(inode)")
        if offset > size or offset + length < size:
            return 0
        if inode.i_disksize >= size:
            return 0
        handle = yield from self.ext4_journal_start(inode, "misc", 1)
        self.ext4_update_i_disksize(inode, size)
        self.ext4_mark_inode_dirty(handle, inode)
        self.ext4_journal_stop(handle)
        return 0

    def ext4_punch_hole(self, file: File, offset: int, length: int) -> KGen:
        """ext4_punch_hole(): deallocate [offset, offset+length); partial blocks are zeroed."""
        inode: Ext4InodeInfo = file.f_inode  # type: ignore[assignment]
        mapping = inode.i_mapping
        bs = inode.i_sb.s_blocksize
        ps = self.page_size
        # "Write out all dirty pages to avoid race conditions. Then release them." (before
        # i_rwsem: a racing write may dirty the range again, ext4_update_disksize_before_punch()
        # below covers what that leaves)
        if mapping.dirty_indices():  # mapping_tagged(mapping, PAGECACHE_TAG_DIRTY)
            ret = yield from self.filemap_write_and_wait_range(mapping, offset, offset + length - 1)
            if ret:
                return ret
        yield from self.inode_lock(inode)
        try:
            if offset >= inode.i_size:
                return 0
            if offset + length > inode.i_size:
                length = inode.i_size + ps - (inode.i_size % ps) - offset
            yield from self.down_write(mapping.invalidate_lock)
            try:
                first_block_offset = -(-offset // bs) * bs
                last_block_offset = ((offset + length) // bs) * bs - 1
                if last_block_offset > first_block_offset:
                    ret = yield from self.ext4_update_disksize_before_punch(inode, offset, length)
                    if ret:
                        return ret
                    yield from self.truncate_pagecache_range(inode, first_block_offset, last_block_offset)
                handle = yield from self.ext4_journal_start(inode, "punch", 8)
                ret = yield from self.ext4_zero_partial_blocks(handle, inode, offset, length)
                if ret:
                    self.ext4_journal_stop(handle)
                    return ret
                first_block = -(-offset // bs)
                stop_block = (offset + length) // bs
                if stop_block > first_block:
                    yield from self.down_write(inode.i_data_sem)
                    self.ext4_es_remove_extent(inode, first_block, stop_block - first_block)
                    self.ext4_ext_remove_space(handle, inode, first_block, stop_block - 1)
                    self.up_write(inode.i_data_sem)
                self.ext4_mark_inode_dirty(handle, inode)
                self.ext4_journal_stop(handle)
                return 0
            finally:
                self.up_write(mapping.invalidate_lock)
        finally:
            self.inode_unlock(inode)
