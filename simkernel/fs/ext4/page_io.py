"""ext4 writeback (fs/ext4/inode.c's mpage_* functions and ext4_do_writepages, fs/ext4/page-io.c).

One writeback pass walks dirty folios in index order, collects a contiguous extent of blocks that
need mapping (delalloc or unwritten), allocates it as *unwritten* blocks (dioread_nolock), submits the
folios, and records the range in an io_end. When every bio of the io_end completed, a worker converts
the range to written (``ext4_end_io_rsv_work``) and only then ends writeback on the folios. A failed
bio marks the io_end failed: no conversion (the blocks keep reading as zeros) and the error is
recorded for fsync.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from simkernel.block.blk_core import REQ_OP_WRITE, Bio
from simkernel.config import SECTOR_SIZE
from simkernel.fs.buffer_head import BufferHead, folio_buffers
from simkernel.fs.ext4.ext4 import (
    EXT4_GET_BLOCKS_CONVERT,
    EXT4_GET_BLOCKS_CREATE,
    EXT4_GET_BLOCKS_DELALLOC_RESERVE,
    EXT4_GET_BLOCKS_IO_CREATE_EXT,
    EXT4_MAP_MAPPED,
    EXT4_MAP_UNWRITTEN,
    EXT4_STATE_MAY_INLINE_DATA,
    Ext4InodeInfo,
    MapBlocks,
)
from simkernel.fs.vfs import ENOSPC, AddressSpace
from simkernel.kernel.base import KernelBase
from simkernel.kernel.sched import KGen
from simkernel.mm.folio import Folio
from simkernel.mm.page_writeback import WB_SYNC_NONE, WritebackControl


@dataclass
class IoEnd:
    """ext4_io_end_t: the bios of one writeback pass and the unwritten ranges they cover."""

    inode: Ext4InodeInfo
    #: (folio, list of buffers) written by this io_end
    folios: list[tuple[Folio, list[BufferHead]]] = field(default_factory=list)
    #: logical block ranges (lblk, len) to convert to written on completion
    list_vec: list[tuple[int, int]] = field(default_factory=list)
    #: logical blocks a bio of this io_end wrote
    written: set[int] = field(default_factory=set)
    unwritten: bool = False
    failed: bool = False
    error: int = 0
    count: int = 1  # references: one per bio in flight + the submitter's
    #: on ``inode.i_io_ends`` (from its first bio until it is released)
    tracked: bool = False


@dataclass
class MpageDaData:
    """struct mpage_da_data"""

    inode: Ext4InodeInfo
    wbc: WritebackControl
    first_page: int = 0
    last_page: int = 0
    next_page: int = 0
    #: blocks of the collected folios that need mapping: (lblk, delalloc?) in order
    need: list[tuple[int, bool]] = field(default_factory=list)
    map_len: int = 0
    #: folios locked and collected for the current extent, in index order
    locked: list[Folio] = field(default_factory=list)
    io_end: IoEnd | None = None
    #: bio under construction: (start block, [(folio, bh)])
    bio_blocks: list[tuple[int, Folio, BufferHead]] = field(default_factory=list)
    scanned_until_end: bool = False
    #: a fatal mapping error: drop the collected folios' data (give_up_on_write)
    give_up_on_write: bool = False


def _needs_mapping(bh: BufferHead, lblk: int, last_lblk: int) -> bool:
    """A dirty buffer inside i_size whose block is delalloc or unwritten: writeback must allocate or
    convert it before the folio can be written."""
    return lblk < last_lblk and bh.dirty and bh.mapped and (bh.delay or bh.unwritten)


class Ext4PageIO(KernelBase):
    # -- writepages ----------------------------------------------------------------------------------

    def ext4_writepages(self, mapping: AddressSpace, wbc: WritebackControl) -> KGen:
        """ext4_writepages()"""
        inode: Ext4InodeInfo = mapping.host  # type: ignore[assignment]
        mpd = MpageDaData(inode, wbc)
        return (yield from self.ext4_do_writepages(mpd))

    def ext4_do_writepages(self, mpd: MpageDaData) -> KGen:
        """ext4_do_writepages()"""
        inode = mpd.inode
        mapping = inode.i_mapping
        wbc = mpd.wbc
        if not mapping.tagged_dirty_indices():
            return 0
        inline = self.ext4_has_inline_data(inode)
        if inline:
            # a dirty folio of an inline file must have gone through a delalloc conversion
            self.BUG_ON(
                self.ext4_test_inode_state(inode, EXT4_STATE_MAY_INLINE_DATA),
                "ext4_test_inode_state(inode, EXT4_STATE_MAY_INLINE_DATA)",
                ino=inode.i_ino,
            )
        ps = self.page_size
        if wbc.range_cyclic:
            mpd.first_page = mapping.writeback_index
            mpd.last_page = (1 << 62) // ps
        else:
            mpd.first_page = wbc.range_start // ps
            mpd.last_page = wbc.range_end // ps
        mpd.next_page = mpd.first_page
        # tag_pages_for_writeback(): the folios this pass may write are fixed now
        todo = [i for i in mapping.tagged_dirty_indices() if mpd.first_page <= i <= mpd.last_page]
        if wbc.range_cyclic and mpd.first_page:
            todo += [i for i in mapping.tagged_dirty_indices() if i < mpd.first_page]
        if inline and 0 in mapping.tagged_dirty_indices():
            # folio 0 holds the inline bytes: map it in the first handle, the one that destroys
            # them (mpage_map_and_submit_extent())
            todo = [0] + [i for i in todo if i]
        ret = 0
        while todo and not ret:
            handle = yield from self.ext4_journal_start(inode, "write_page", 8)
            mpd.io_end = IoEnd(inode)
            ret = yield from self.mpage_prepare_extent_to_map(mpd, todo)
            # the folios of this extent: a retry after ENOSPC rescans those still dirty (a
            # partially written large folio too), as Linux rescans from mpd->start_pos
            collected = [folio.index for folio in mpd.locked]
            if not ret and mpd.map_len:
                ret = yield from self.mpage_map_and_submit_extent(handle, mpd)
            self.ext4_journal_stop(handle)
            self.mpage_release_unused_pages(mpd, invalidate=mpd.give_up_on_write)
            self.ext4_io_submit(mpd)
            self.ext4_put_io_end_defer(mpd.io_end)
            mpd.io_end = None
            journal = inode.i_sb.s_fs_info.s_journal
            if ret == -ENOSPC and journal is not None and self.current is not journal.commit_task:
                # "Commit the transaction which would free blocks released in the transaction
                # and try again": blocks freed in the running transaction are counted free but
                # not allocatable until it commits, so a delalloc allocation the reservation
                # promised can fail for now; the folios not submitted are still dirty and tagged
                # (the rescan starts from mpd->first_page). Not in jbd2's own ordered-data
                # writeback, which cannot wait for its commit (Linux's never maps blocks there)
                yield from self.jbd2_journal_force_commit_nested(journal)
                todo[:0] = [i for i in collected if i not in todo]
                ret = 0
                continue
            if wbc.nr_to_write <= 0 and wbc.sync_mode == WB_SYNC_NONE:
                break
        if wbc.range_cyclic:
            mapping.writeback_index = mpd.next_page
        if ret == -ENOSPC:
            # the ext4_writepages_result tracepoint: the dirty folios stay dirty and are retried;
            # if no retry ever finds the space, they are dropped with the inode at unmount
            inode.i_sb.s_fs_info.messages.append(f"ext4_writepages_result: ino {inode.i_ino} ret {ret}")
        return ret

    def mpage_prepare_extent_to_map(self, mpd: MpageDaData, todo: list[int]) -> KGen:
        """mpage_prepare_extent_to_map(): lock dirty folios in index order; submit those whose blocks
        are all mapped, and collect a run of consecutive folios whose blocks need mapping (delalloc
        or unwritten) for mpage_map_and_submit_extent()."""
        inode = mpd.inode
        mapping = inode.i_mapping
        bs = inode.i_sb.s_blocksize
        mpd.map_len = 0
        mpd.need = []
        while todo:
            index = todo[0]
            if mpd.locked and index != mpd.locked[-1].index + 1:
                # not contiguous with the folios collected so far: map those first
                return 0
            todo.pop(0)
            folio = mapping.i_pages.get(index)
            if folio is None:
                continue
            yield from self.folio_lock(folio)
            if folio.mapping is not mapping or not folio.dirty:
                self.folio_unlock(folio)
                continue
            if folio.writeback:
                if mpd.wbc.sync_mode == WB_SYNC_NONE:
                    self.folio_unlock(folio)
                    continue
                yield from self.folio_wait_writeback(folio)
            mpd.next_page = index + 1
            bhs = folio_buffers(folio) or self.create_empty_buffers(folio, bs)
            lblk0 = folio.pos // bs
            last_lblk = -(-inode.i_size // bs)
            need = [
                (lblk0 + i, bh.delay) for i, bh in enumerate(bhs) if _needs_mapping(bh, lblk0 + i, last_lblk)
            ]
            if not need:
                if mpd.locked:
                    # the run of folios needing blocks ends here; this one waits for the next round
                    todo.insert(0, index)
                    self.folio_unlock(folio)
                    return 0
                err = self.mpage_submit_folio(mpd, folio)
                self.folio_unlock(folio)
                if err:
                    return err
                continue
            mpd.need.extend(need)
            mpd.locked.append(folio)
            mpd.map_len = len(mpd.need)
        mpd.scanned_until_end = True
        return 0

    def mpage_map_and_submit_extent(self, handle: Any, mpd: MpageDaData) -> KGen:
        """mpage_map_and_submit_extent(): allocate every run of blocks the collected folios need (as
        unwritten), submit the folios, and push i_disksize up to what is now written."""
        inode = mpd.inode
        assert mpd.io_end is not None
        # Linux destroys the inline data at the top of ext4_do_writepages(), in a handle of its
        # own, and then allocates folio 0's block unwritten (dioread_nolock): a commit before the
        # end_io conversion leaves an inode with neither the inline bytes nor a written block,
        # and a crash there loses data that an earlier fsync made durable inline. Here they leave
        # i_block in the handle that allocates their block, written and as ordered data, so the
        # commit that shows the inode without them also carries the block and waits for its data.
        # (Variant ``inline-destroy-early`` restores Linux's order.)
        convert_inline = self.ext4_has_inline_data(inode)
        if convert_inline:
            yield from self.ext4_destroy_inline_data(handle, inode)
        # contiguous runs of the same kind (delalloc vs unwritten), as mpage_add_bh_to_extent() builds
        runs: list[tuple[int, int, bool]] = []
        for lblk, delayed in mpd.need:
            if runs and runs[-1][0] + runs[-1][1] == lblk and runs[-1][2] == delayed:
                runs[-1] = (runs[-1][0], runs[-1][1] + 1, delayed)
            else:
                runs.append((lblk, 1, delayed))
        progress = False
        transient = 0
        for lblk, remaining, delayed in runs:
            if transient:
                break
            while remaining:
                map = MapBlocks(lblk, remaining)
                flags = EXT4_GET_BLOCKS_CREATE if convert_inline else EXT4_GET_BLOCKS_IO_CREATE_EXT
                if delayed:
                    flags |= EXT4_GET_BLOCKS_DELALLOC_RESERVE
                ret = yield from self.ext4_map_blocks(handle, inode, map, flags)
                if ret <= 0:
                    err = ret or -ENOSPC
                    if err == -ENOSPC and self.ext4_count_free_clusters(inode.i_sb):
                        # transient: let the upper layers retry (a commit may free blocks); what
                        # is mapped so far is still submitted ("goto update_disksize")
                        if not progress:
                            return err
                        transient = err
                        break
                    mpd.give_up_on_write = True
                    inode.i_sb.s_fs_info.messages.append(
                        f"Delayed block allocation failed for inode {inode.i_ino} at logical offset {lblk} "
                        f"with max blocks {remaining} with error {err}; "
                        "This should not happen!! Data will be lost"
                    )
                    self.mapping_set_error(inode.i_mapping, err)
                    return err
                progress = True
                if map.m_flags & EXT4_MAP_UNWRITTEN:
                    mpd.io_end.unwritten = True
                    mpd.io_end.list_vec.append((map.m_lblk, ret))
                self.mpage_map_buffers(mpd, map.m_lblk, ret, map.m_pblk, map.m_flags)
                lblk += ret
                remaining -= ret
        # submit the folios whose blocks are all mapped now (mpage_map_and_submit_buffers() stops
        # at the end of the mapped extent); after a transient ENOSPC part-way, the rest stay
        # locked and dirty, for mpage_release_unused_pages() and a later pass -- writing them now
        # would clean the folio with some of its delayed blocks never written
        bs = inode.i_sb.s_blocksize
        last_lblk = -(-inode.i_size // bs)
        submitted_end = 0
        for folio in list(mpd.locked):
            bhs = folio_buffers(folio)
            lblk0 = folio.pos // bs
            unmapped = [i for i, bh in enumerate(bhs or []) if _needs_mapping(bh, lblk0 + i, last_lblk)]
            if unmapped:
                if unmapped[0] > 0:
                    # the mapping stopped inside this (large) folio
                    ret = self.mpage_submit_partial_folio(mpd, folio, folio.pos + unmapped[0] * bs)
                    if ret < 0:
                        return ret
                    submitted_end = ret or submitted_end
                break
            err = self.mpage_submit_folio(mpd, folio)
            self.folio_unlock(folio)
            mpd.locked.remove(folio)
            if err:
                return err
            submitted_end = folio.pos + folio.size
        # update on-disk size after IO is submitted, as far as the submitted folios go (mpd->first_page)
        disksize = min(submitted_end, inode.i_size)
        if disksize > inode.i_disksize:
            yield from self.down_write(inode.i_data_sem)
            self.ext4_update_i_disksize(inode, min(disksize, inode.i_size))
            self.up_write(inode.i_data_sem)
            self.ext4_mark_inode_dirty(handle, inode)
        return transient

    def mpage_submit_partial_folio(self, mpd: MpageDaData, folio: Folio, pos: int) -> int:
        """mpage_submit_partial_folio() ("ext4: fix stale data if it bail out of the extents mapping
        loop", 6.16): the mapping loop stopped at ``pos``, inside a locked folio; write the folio's
        mapped part now, or the transaction that maps those blocks commits with neither their
        data nor an i_disksize that covers them. The unmapped part keeps the folio dirty for the
        next round. Returns how far the on-disk size may go (``pos``) or -errno."""
        err = self.mpage_submit_folio(mpd, folio)
        self.folio_unlock(folio)
        mpd.locked.remove(folio)
        return err or pos

    def mpage_map_buffers(self, mpd: MpageDaData, lblk: int, length: int, pblk: int, m_flags: int) -> None:
        """mpage_process_page_bufs/mpage_map_and_submit_buffers(): point buffers at their blocks."""
        bs = mpd.inode.i_sb.s_blocksize
        for folio in mpd.locked:
            bhs = folio_buffers(folio)
            assert bhs is not None
            lblk0 = folio.pos // bs
            for i, bh in enumerate(bhs):
                b = lblk0 + i
                if lblk <= b < lblk + length and (bh.delay or bh.unwritten):
                    bh.delay = False
                    bh.unwritten = False
                    bh.mapped = bool(m_flags & (EXT4_MAP_MAPPED | EXT4_MAP_UNWRITTEN))
                    bh.b_blocknr = pblk + (b - lblk)

    def mpage_release_unused_pages(self, mpd: MpageDaData, invalidate: bool) -> None:
        """mpage_release_unused_pages(): unlock folios collected but not submitted; on a fatal
        mapping error their data is dropped (give_up_on_write)."""
        for folio in mpd.locked:
            if invalidate:
                self.block_invalidate_folio(folio, 0, folio.size)
                folio.uptodate = False
            self.folio_unlock(folio)
        mpd.locked.clear()
        mpd.map_len = 0

    def mpage_submit_folio(self, mpd: MpageDaData, folio: Folio) -> int:
        """mpage_submit_folio(): clean the folio for IO, sample i_size only now, write it."""
        self.folio_clear_dirty_for_io(folio)
        size = mpd.inode.i_size
        length = folio.size
        if folio.pos + length > size:
            length = max(0, size - folio.pos)
        err = self.ext4_bio_write_folio(mpd, folio, length)
        if not err:
            mpd.wbc.nr_to_write -= 1
        return err

    # -- page-io.c -----------------------------------------------------------------------------------

    def ext4_bio_write_folio(self, mpd: MpageDaData, folio: Folio, length: int) -> int:
        """ext4_bio_write_folio(): zero the part past EOF (it may be mmapped), then queue every dirty
        mapped buffer for IO."""
        bhs = folio_buffers(folio)
        assert bhs is not None and mpd.io_end is not None
        if length < folio.size:
            # "the folio straddles i_size: it must be zeroed on each writepage since it may be mmapped"
            folio.data[length:] = bytes(folio.size - length)
        to_submit: list[BufferHead] = []
        keep_dirty = False
        for bh in bhs:
            if bh.b_offset >= length:
                bh.dirty = False
                bh.uptodate = True
                continue
            if not bh.dirty or bh.delay or not bh.mapped or bh.unwritten:
                if not bh.mapped:
                    bh.dirty = False
                if bh.dirty:
                    keep_dirty = True
                continue
            bh.new = False
            bh.dirty = False
            to_submit.append(bh)
        if keep_dirty and not folio.dirty:
            self.folio_mark_dirty(folio)
        if not to_submit:
            return 0
        self.folio_start_writeback(folio)
        mpd.io_end.folios.append((folio, to_submit))
        for bh in to_submit:
            self.io_submit_add_bh(mpd, folio, bh)
        return 0

    def io_submit_add_bh(self, mpd: MpageDaData, folio: Folio, bh: BufferHead) -> None:
        """io_submit_add_bh(): extend the bio under construction, or submit it and start another."""
        if mpd.bio_blocks and mpd.bio_blocks[-1][0] + 1 != bh.b_blocknr:
            self.ext4_io_submit(mpd)
        mpd.bio_blocks.append((bh.b_blocknr, folio, bh))

    def ext4_io_submit(self, mpd: MpageDaData) -> None:
        """ext4_io_submit(): send the bio built so far."""
        if not mpd.bio_blocks:
            return
        io_end = mpd.io_end
        assert io_end is not None
        inode = mpd.inode
        bs = inode.i_sb.s_blocksize
        start = mpd.bio_blocks[0][0]
        data = b"".join(bytes(folio.data[bh.b_offset : bh.b_offset + bs]) for _, folio, bh in mpd.bio_blocks)
        lblks = [folio.pos // bs + bh.b_offset // bs for _, folio, bh in mpd.bio_blocks]
        io_end.count += 1
        io_end.written.update(lblks)
        if not io_end.tracked:
            io_end.tracked = True
            inode.i_io_ends.append(io_end)
        bio = Bio(
            REQ_OP_WRITE,
            start * (bs // SECTOR_SIZE),
            data,
            end_io=self.ext4_end_bio,
            private=io_end,
            tag=f"data ino={inode.i_ino} lblk={lblks[0]}-{lblks[-1]}",
        )
        mpd.bio_blocks = []
        self.submit_bio(bio)

    def ext4_end_bio(self, bio: Bio) -> None:
        """ext4_end_bio(): bi_end_io, in interrupt context."""
        io_end: IoEnd = bio.private
        if bio.status:
            io_end.failed = True
            io_end.error = bio.status
            self.mapping_set_error(io_end.inode.i_mapping, bio.status)
        self.ext4_put_io_end_defer(io_end)

    def ext4_put_io_end_defer(self, io_end: IoEnd | None) -> None:
        """ext4_put_io_end_defer(): the last reference either finishes the io_end now or, for an
        unwritten one, queues the conversion work."""
        if io_end is None:
            return
        io_end.count -= 1
        if io_end.count:
            return
        io_end.list_vec = self.ext4_io_end_ranges(io_end)
        if io_end.failed or not io_end.unwritten or not io_end.list_vec:
            self.ext4_release_io_end(io_end)
            return
        self.queue_work("ext4-rsv-conversion", self.ext4_end_io_rsv_work(io_end))

    def ext4_io_end_ranges(self, io_end: IoEnd) -> list[tuple[int, int]]:
        """The unwritten ranges the completion converts: those of the mapped ranges that a bio of
        this io_end wrote. A folio mapped while a truncate lowered i_size is then written only
        up to the new size, or not at all (mpage_submit_folio() samples i_size); converting the
        rest would turn blocks nobody wrote -- or blocks a later fallocate put there after the
        truncate freed these -- into written ones (variant ``endio-converts-unsubmitted``)."""
        out: list[tuple[int, int]] = []
        for lblk, length in io_end.list_vec:
            for b in range(lblk, lblk + length):
                if b not in io_end.written:
                    continue
                if out and out[-1][0] + out[-1][1] == b:
                    out[-1] = (out[-1][0], out[-1][1] + 1)
                else:
                    out.append((b, 1))
        return out

    def ext4_release_io_end(self, io_end: IoEnd) -> None:
        """ext4_release_io_end() -> ext4_finish_bio(): end writeback on every folio."""
        if io_end.tracked:
            io_end.tracked = False
            io_end.inode.i_io_ends = [e for e in io_end.inode.i_io_ends if e is not io_end]
        for folio, _bhs in io_end.folios:
            if io_end.failed:
                folio.error = True
            self.folio_end_writeback(folio)

    def ext4_end_io_rsv_work(self, io_end: IoEnd) -> KGen:
        """ext4_end_io_rsv_work() -> ext4_end_io_end(): convert the written ranges, then end writeback."""
        inode = io_end.inode
        self.cov(f"ext4:end_io:convert:{len(io_end.list_vec)}")
        # ext4_do_writepages() reserved this handle (io_end->handle) before it locked any folio;
        # ext4_journal_start_reserved() may join a transaction whose commit already waits for its
        # handles to stop -- that commit may be waiting, through a handle holder, for this very
        # writeback to end
        handle = yield from self.ext4_journal_start(inode, "end_io", 4, reserved=True)
        ret = 0
        for lblk, length in io_end.list_vec:
            ret = yield from self.ext4_convert_unwritten_extents(handle, inode, lblk, length)
            if ret:
                break
        self.ext4_journal_stop(handle)
        if ret < 0:
            inode.i_sb.s_fs_info.messages.append(
                f"failed to convert unwritten extents to written extents -- potential data loss! "
                f"(inode {inode.i_ino}, error {ret})"
            )
        self.ext4_release_io_end(io_end)
        return ret

    def ext4_convert_unwritten_extents(
        self, handle: Any, inode: Ext4InodeInfo, lblk: int, length: int, *, zeroout: bool = True
    ) -> KGen:
        """ext4_convert_unwritten_extents(): mark [lblk, lblk+length) written after its data IO."""
        while length > 0:
            map = MapBlocks(lblk, length)
            ret = yield from self.ext4_map_blocks(
                handle, inode, map, EXT4_GET_BLOCKS_IO_CREATE_EXT | EXT4_GET_BLOCKS_CONVERT, zeroout=zeroout
            )
            if ret <= 0:
                return ret or -5
            lblk += ret
            length -= ret
        self.ext4_mark_inode_dirty(handle, inode)
        return 0
