"""ext4 on the iomap buffered I/O path (the ext4 iomap conversion of fs/ext4/inode.c, with XFS's
writeback semantics): ->iomap_begin/->iomap_end for writes, the validity cookie, writeback mapping
that allocates delalloc as unwritten, and IO completion that converts to written and advances the
on-disk size.

The validity cookie is ``i_es_seq``, bumped by every change of the file mapping; ``ext4_iomap_valid``
compares it with the cookie sampled in ->iomap_begin (what xfs_iomap_valid does with if_seq).
"""

from __future__ import annotations

from typing import Any

from simkernel.fs.ext4.ext4 import (
    EXT4_GET_BLOCKS_CREATE_UNWRIT_EXT,
    EXT4_GET_BLOCKS_DELALLOC_RESERVE,
    EXT4_GET_BLOCKS_IO_CREATE_EXT,
    EXT4_MAP_MAPPED,
    EXT4_MAP_NEW,
    EXT4_MAP_UNWRITTEN,
    Ext4InodeInfo,
    MapBlocks,
)
from simkernel.fs.iomap.iomap import (
    IOMAP_DELALLOC,
    IOMAP_F_NEW,
    IOMAP_HOLE,
    IOMAP_MAPPED,
    IOMAP_NULL_ADDR,
    IOMAP_UNWRITTEN,
    Iomap,
    IomapFolioOps,
    IomapIoend,
    IomapOps,
    IomapWritepageCtx,
)
from simkernel.fs.vfs import AddressSpace, AddressSpaceOperations, File
from simkernel.kernel.base import KernelBase
from simkernel.kernel.sched import KGen
from simkernel.lib.iov_iter import IovIter
from simkernel.mm.folio import Folio
from simkernel.mm.memory import VmFault
from simkernel.mm.page_writeback import WritebackControl


class Ext4WritebackOps:
    """struct iomap_writeback_ops"""

    def __init__(self, map_blocks: Any, prepare_ioend: Any) -> None:
        self.map_blocks = map_blocks
        self.prepare_ioend = prepare_ioend


class Ext4IomapOps(KernelBase):
    def ext4_iomap_aops(self) -> AddressSpaceOperations:
        """ext4_iomap_aops"""
        return AddressSpaceOperations(
            name="ext4_iomap_aops",
            read_folio=self.ext4_iomap_read_folio,
            writepages=self.ext4_iomap_writepages,
            dirty_folio=self.iomap_dirty_folio,
            release_folio=self.iomap_release_folio,
            invalidate_folio=self.iomap_invalidate_folio,
        )

    # -- the validity cookie -------------------------------------------------------------------------

    def ext4_iomap_valid(self, inode: Ext4InodeInfo, iomap: Iomap) -> bool:
        """ext4_iomap_valid(): is the cached mapping still the current one?"""
        return iomap.validity_cookie == inode.i_es_seq

    def ext4_iomap_folio_ops(self) -> IomapFolioOps:
        return IomapFolioOps(iomap_valid=self.ext4_iomap_valid)

    def ext4_set_iomap(self, inode: Ext4InodeInfo, iomap: Iomap, map: MapBlocks, delayed: bool) -> None:
        """ext4_set_iomap(): translate an ext4 mapping into an iomap."""
        bs = inode.i_sb.s_blocksize
        iomap.offset = map.m_lblk * bs
        iomap.length = map.m_len * bs
        iomap.flags = IOMAP_F_NEW if map.m_flags & EXT4_MAP_NEW else 0
        iomap.validity_cookie = map.m_seq
        if map.m_flags & EXT4_MAP_UNWRITTEN:
            iomap.type = IOMAP_UNWRITTEN
            iomap.addr = map.m_pblk * bs
        elif map.m_flags & EXT4_MAP_MAPPED:
            iomap.type = IOMAP_MAPPED
            iomap.addr = map.m_pblk * bs
        elif delayed:
            iomap.type = IOMAP_DELALLOC
            iomap.addr = IOMAP_NULL_ADDR
        else:
            iomap.type = IOMAP_HOLE
            iomap.addr = IOMAP_NULL_ADDR

    def ext4_iomap_lookup(self, inode: Ext4InodeInfo, map: MapBlocks) -> bool:
        """Look ``map`` up without changing anything (caller holds i_data_sem); True if delayed."""
        state, ext = self.ext4_es_lookup(inode, map.m_lblk)
        map.m_flags = 0
        if state in ("written", "unwritten"):
            assert ext is not None
            map.m_pblk = ext.pblk + (map.m_lblk - ext.lblk)
            map.m_len = min(map.m_len, ext.end - map.m_lblk)
            map.m_flags = EXT4_MAP_MAPPED | (EXT4_MAP_UNWRITTEN if state == "unwritten" else 0)
            return False
        n = 1
        if state == "delayed":
            while n < map.m_len and (map.m_lblk + n) in inode.i_es_delayed:
                n += 1
            map.m_len = n
            return True
        i = self.ext4_ext_find(inode, map.m_lblk)
        nxt = inode.i_extents[i].lblk if i < len(inode.i_extents) else 1 << 40
        while n < map.m_len and map.m_lblk + n < nxt and (map.m_lblk + n) not in inode.i_es_delayed:
            n += 1
        map.m_len = n
        return False

    # -- ->iomap_begin / ->iomap_end ------------------------------------------------------------------

    def ext4_iomap_da_map_blocks(self, inode: Ext4InodeInfo, map: MapBlocks) -> KGen:
        """Map for a delalloc write: existing blocks, existing delalloc, or new delalloc (reserved)
        for the hole. Returns (ret, delayed)."""
        yield from self.down_write(inode.i_data_sem)
        try:
            delayed = self.ext4_iomap_lookup(inode, map)
            if map.m_flags or delayed:
                map.m_seq = inode.i_es_seq
                return 0, delayed
            # a hole: reserve a delalloc block for each block of it this write covers
            done = 0
            for lblk in range(map.m_lblk, map.m_lblk + map.m_len):
                ret = self.ext4_insert_delayed_block(inode, lblk)
                if ret:
                    if not done:
                        return ret, False
                    break
                done += 1
            map.m_len = done
            map.m_flags = EXT4_MAP_NEW
            map.m_seq = inode.i_es_seq
            return 0, True
        finally:
            self.up_write(inode.i_data_sem)

    def ext4_iomap_buffered_write_begin(
        self, inode: Ext4InodeInfo, offset: int, length: int, flags: int, iomap: Iomap, srcmap: Iomap
    ) -> KGen:
        """ext4_iomap_buffered_write_begin(): map the write range; holes become delalloc (IOMAP_F_NEW)."""
        bs = inode.i_sb.s_blocksize
        lblk = offset // bs
        map = MapBlocks(lblk, -(-(offset + length) // bs) - lblk)
        if inode.i_sb.s_fs_info.s_delalloc:
            ret, delayed = yield from self.ext4_iomap_da_map_blocks(inode, map)
            if ret < 0:
                return ret
        else:
            handle = yield from self.ext4_journal_start(inode, "write_page", 8)
            ret = yield from self.ext4_map_blocks(handle, inode, map, EXT4_GET_BLOCKS_CREATE_UNWRIT_EXT)
            self.ext4_journal_stop(handle)
            if ret < 0:
                return ret
            map.m_seq = inode.i_es_seq
            delayed = False
        self.ext4_set_iomap(inode, iomap, map, delayed)
        iomap.folio_ops = self.ext4_iomap_folio_ops()
        return 0

    def ext4_iomap_buffered_write_end(
        self, inode: Ext4InodeInfo, pos: int, length: int, written: int, flags: int, iomap: Iomap
    ) -> KGen:
        """ext4_iomap_buffered_da_write_end(): a short write releases the delalloc it did not use."""
        if written == length:
            return 0
        return (
            yield from self.iomap_file_buffered_write_punch_delalloc(
                inode, iomap, pos, length, written, self.ext4_iomap_punch_delalloc
            )
        )

    def ext4_iomap_punch_delalloc(self, inode: Ext4InodeInfo, offset: int, length: int) -> KGen:
        """->punch: remove *only* delalloc blocks in the range, atomically."""
        bs = inode.i_sb.s_blocksize
        start = offset // bs
        end = -(-(offset + length) // bs)
        yield from self.down_write(inode.i_data_sem)
        self.ext4_es_remove_extent(inode, start, end - start)
        self.up_write(inode.i_data_sem)
        return 0

    def ext4_iomap_lookup_begin(
        self, inode: Ext4InodeInfo, offset: int, length: int, flags: int, iomap: Iomap, srcmap: Iomap
    ) -> KGen:
        """->iomap_begin for reads and zeroing: report the mapping, change nothing."""
        bs = inode.i_sb.s_blocksize
        lblk = offset // bs
        map = MapBlocks(lblk, max(1, -(-(offset + length) // bs) - lblk))
        yield from self.down_read(inode.i_data_sem)
        delayed = self.ext4_iomap_lookup(inode, map)
        map.m_seq = inode.i_es_seq
        self.up_read(inode.i_data_sem)
        self.ext4_set_iomap(inode, iomap, map, delayed)
        iomap.folio_ops = self.ext4_iomap_folio_ops()
        return 0

    def ext4_iomap_write_ops(self) -> IomapOps:
        return IomapOps(self.ext4_iomap_buffered_write_begin, self.ext4_iomap_buffered_write_end)

    # -- entry points ----------------------------------------------------------------------------------

    def ext4_iomap_buffered_write(self, file: File, pos: int, i: IovIter) -> KGen:
        return (yield from self.iomap_file_buffered_write(file, pos, i, self.ext4_iomap_write_ops()))

    def ext4_iomap_read_folio(self, file: File | None, folio: Folio) -> KGen:
        return (yield from self.iomap_read_folio(folio, IomapOps(self.ext4_iomap_lookup_begin)))

    def ext4_iomap_zero_range(self, inode: Ext4InodeInfo, pos: int, length: int) -> KGen:
        return (yield from self.iomap_zero_range(inode, pos, length, IomapOps(self.ext4_iomap_lookup_begin)))

    def ext4_iomap_page_mkwrite(self, vmf: VmFault) -> KGen:
        """ext4_iomap_page_mkwrite(): page faults get their own ops without ->iomap_end, so a fault
        never punches delalloc that another context depends on (XFS 118e021b4b66)."""
        from simkernel.fs.ext4.inode import vmf_fs_error
        from simkernel.mm.filemap import VM_FAULT_LOCKED

        inode: Ext4InodeInfo = vmf.vma.vm_file.f_inode  # type: ignore[assignment]
        mapping = inode.i_mapping
        yield from self.down_read(mapping.invalidate_lock)
        try:
            ret = yield from self.iomap_page_mkwrite(vmf, IomapOps(self.ext4_iomap_buffered_write_begin))
            return ret if ret == VM_FAULT_LOCKED else vmf_fs_error(ret)
        finally:
            self.up_read(mapping.invalidate_lock)

    # -- writeback -------------------------------------------------------------------------------------

    def ext4_iomap_writepages(self, mapping: AddressSpace, wbc: WritebackControl) -> KGen:
        wpc = IomapWritepageCtx(
            ops=Ext4WritebackOps(self.ext4_iomap_map_blocks, self.ext4_iomap_prepare_ioend)
        )
        return (yield from self.iomap_writepages(mapping, wbc, wpc))

    def ext4_iomap_map_blocks(self, wpc: IomapWritepageCtx, inode: Ext4InodeInfo, offset: int) -> KGen:
        """->map_blocks: reuse the cached writeback map only if it covers ``offset`` and the mapping
        did not change since (xfs_imap_valid); delalloc is allocated as unwritten blocks."""
        bs = inode.i_sb.s_blocksize
        cached = wpc.iomap
        if (
            cached.length
            and cached.offset <= offset < cached.offset + cached.length
            and wpc.data_seq == inode.i_es_seq
        ):
            return 0
        lblk = offset // bs
        map = MapBlocks(lblk, 1 << 20)
        yield from self.down_read(inode.i_data_sem)
        delayed = self.ext4_iomap_lookup(inode, map)
        self.up_read(inode.i_data_sem)
        if delayed:
            # convert the whole delalloc extent, as xfs_bmapi_convert_delalloc() does; a folio is
            # locked here, so the handle was reserved before (it cannot wait for a locked commit)
            handle = yield from self.ext4_journal_start(inode, "write_page", 8, reserved=True)
            ret = yield from self.ext4_map_blocks(
                handle, inode, map, EXT4_GET_BLOCKS_IO_CREATE_EXT | EXT4_GET_BLOCKS_DELALLOC_RESERVE
            )
            self.ext4_journal_stop(handle)
            if ret <= 0:
                # the folio is cleaned without being written (iomap_writepage_map): its data is
                # gone, as ext4 and XFS (xfs_discard_folio) say in the log
                inode.i_sb.s_fs_info.messages.append(
                    f"Delayed block allocation failed for inode {inode.i_ino} at logical offset {lblk} "
                    f"with max blocks {map.m_len} with error {ret or -5}; "
                    "This should not happen!! Data will be lost"
                )
                return ret or -5
            map.m_flags &= ~EXT4_MAP_NEW
        wpc.iomap = Iomap()
        map.m_seq = inode.i_es_seq
        self.ext4_set_iomap(inode, wpc.iomap, map, False)
        wpc.data_seq = inode.i_es_seq
        return 0

    def ext4_iomap_prepare_ioend(self, ioend: IomapIoend, error: int) -> int:
        """->prepare_ioend: unwritten and size-extending ioends complete in a workqueue."""
        inode: Ext4InodeInfo = ioend.inode
        if ioend.io_type == IOMAP_UNWRITTEN or ioend.offset + ioend.size > inode.i_disksize:
            ioend.end_io = self.ext4_iomap_end_bio  # type: ignore[attr-defined]
        return error

    def ext4_iomap_end_bio(self, ioend: IomapIoend) -> None:
        """bi_end_io in interrupt context: defer the extent work."""
        self.queue_work("ext4-end-io", self.ext4_iomap_end_ioend(ioend))

    def ext4_iomap_end_ioend(self, ioend: IomapIoend) -> KGen:
        """Completion worker: unwritten -> written, then i_disksize, then end page writeback."""
        inode: Ext4InodeInfo = ioend.inode
        bs = inode.i_sb.s_blocksize
        error = ioend.status
        if not error:
            # a handle reserved at writeback time (as ext4's own io_end->handle): it may join a
            # locked transaction, whose commit may wait for a handle holder waiting on this ioend
            handle = yield from self.ext4_journal_start(inode, "end_io", 8, reserved=True)
            if ioend.io_type == IOMAP_UNWRITTEN:
                # as xfs_iomap_write_unwritten(): no zeroout fallback. Writeback allocated the whole
                # delalloc extent unwritten and its folios go out in several ioends, so the blocks
                # around this one's may hold another ioend's data, written and not yet converted:
                # ext4's "zero out everything around the mapped range" would wipe it (ext4's own
                # writeback splits the extent per IO before submitting it, EXT4_GET_BLOCKS_PRE_IO,
                # which this path does not). A conversion that cannot split fails and says so.
                error = yield from self.ext4_convert_unwritten_extents(
                    handle, inode, ioend.offset // bs, ioend.size // bs, zeroout=False
                )
                if error:
                    inode.i_sb.s_fs_info.messages.append(
                        f"failed to convert unwritten extents to written extents -- potential data loss! "
                        f"(inode {inode.i_ino}, error {error})"
                    )
            if not error:
                new_size = min(inode.i_size, ioend.offset + ioend.size)
                if new_size > inode.i_disksize:
                    yield from self.down_write(inode.i_data_sem)
                    self.ext4_update_i_disksize(inode, min(new_size, inode.i_size))
                    self.up_write(inode.i_data_sem)
                    self.ext4_mark_inode_dirty(handle, inode)
            self.ext4_journal_stop(handle)
        self.iomap_finish_ioend(ioend, error)
        return error
