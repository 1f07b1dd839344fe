"""fs/iomap/buffered-io.c: buffered reads, writes, zeroing, page_mkwrite and writeback over iomaps.

The write path caches one mapping per iteration across many folios. Per folio it locks the folio,
and -- since 6.2, when the filesystem supplies ``->iomap_valid`` -- checks that the cached mapping is
still current before deciding to zero or read the parts of partially written blocks. Without that
check the decision uses the cached type: after writeback converted an unwritten extent and reclaim
evicted the folio, an UNWRITTEN map makes the write zero data that is already on disk.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from simkernel.block.blk_core import REQ_OP_WRITE, Bio
from simkernel.config import SECTOR_SIZE
from simkernel.fs.iomap.iomap import (
    IOMAP_DELALLOC,
    IOMAP_F_NEW,
    IOMAP_F_SIZE_CHANGED,
    IOMAP_F_STALE,
    IOMAP_FAULT,
    IOMAP_HOLE,
    IOMAP_MAPPED,
    IOMAP_UNSHARE,
    IOMAP_UNWRITTEN,
    IOMAP_WRITE,
    IOMAP_ZERO,
    IomapFolioState,
    IomapIoend,
    IomapIter,
    IomapOps,
    IomapWritepageCtx,
)
from simkernel.fs.vfs import EFAULT, EIO, AddressSpace, File, Inode
from simkernel.kernel.base import KernelBase
from simkernel.kernel.sched import KGen
from simkernel.lib.iov_iter import IovIter
from simkernel.mm.filemap import FGP_NOFS, FGP_WRITEBEGIN, VM_FAULT_LOCKED
from simkernel.mm.folio import Folio
from simkernel.mm.memory import VmFault
from simkernel.mm.page_writeback import WritebackControl

Punch = Callable[[Inode, int, int], KGen]


class IomapBufferedIO(KernelBase):
    # -- per-block folio state -----------------------------------------------------------------------

    def i_blocks_per_folio(self, inode: Inode, folio: Folio) -> int:
        return folio.size >> inode.i_blkbits

    def ifs_alloc(self, inode: Inode, folio: Folio) -> IomapFolioState | None:
        """ifs_alloc(): per-block state only when a folio holds several blocks."""
        ifs = folio.private
        nblocks = self.i_blocks_per_folio(inode, folio)
        if isinstance(ifs, IomapFolioState) or nblocks <= 1:
            return ifs if isinstance(ifs, IomapFolioState) else None
        ifs = IomapFolioState(nblocks, inode.i_blkbits, folio)
        folio.private = ifs
        return ifs

    def iomap_set_range_uptodate(self, folio: Folio, off: int, length: int) -> None:
        ifs = folio.private
        if isinstance(ifs, IomapFolioState):
            ifs.uptodate |= ifs.range_bits(off, length)
            if ifs.fully_uptodate():
                folio.uptodate = True
        else:
            folio.uptodate = True

    def iomap_set_range_dirty(self, folio: Folio, off: int, length: int) -> None:
        ifs = folio.private
        if isinstance(ifs, IomapFolioState) and length:
            ifs.dirty |= ifs.range_bits(off, length)

    def iomap_clear_range_dirty(self, folio: Folio, off: int, length: int) -> None:
        ifs = folio.private
        if isinstance(ifs, IomapFolioState) and length:
            ifs.dirty &= ~ifs.range_bits(off, length)

    def iomap_dirty_folio(self, mapping: AddressSpace, folio: Folio) -> bool:
        """iomap_dirty_folio(): a folio dirtied as a whole (mmap) has every block dirty."""
        self.ifs_alloc(mapping.host, folio)
        self.iomap_set_range_dirty(folio, 0, folio.size)
        return self.filemap_dirty_folio(mapping, folio)

    def iomap_release_folio(self, folio: Folio) -> bool:
        """iomap_release_folio(): refuse while dirty (it may be partially dirty)."""
        if folio.dirty:
            return False
        folio.private = None
        return True

    def iomap_invalidate_folio(self, folio: Folio, offset: int, length: int) -> None:
        """iomap_invalidate_folio()"""
        if offset == 0 and length == folio.size:
            self.WARN_ON(folio.writeback, "folio_test_writeback(folio)")
            folio.dirty = folio.tagged = False
            folio.private = None

    # -- reads ---------------------------------------------------------------------------------------

    def iomap_block_needs_zeroing(self, it: IomapIter, pos: int) -> bool:
        """iomap_block_needs_zeroing(): decided from the *cached* source mapping."""
        srcmap = it.srcmap_or_iomap()
        return srcmap.type != IOMAP_MAPPED or bool(srcmap.flags & IOMAP_F_NEW) or pos >= it.inode.i_size

    def iomap_adjust_read_range(
        self, inode: Inode, folio: Folio, pos: int, length: int
    ) -> tuple[int, int, int]:
        """iomap_adjust_read_range(): skip uptodate blocks at either end and blocks past EOF.

        Returns (pos, poff, plen)."""
        ifs = folio.private if isinstance(folio.private, IomapFolioState) else None
        isize = inode.i_size
        bits = inode.i_blkbits
        bsize = 1 << bits
        orig_pos = pos
        poff = pos - folio.pos
        plen = min(folio.size - poff, length)
        orig_plen = plen
        first = poff >> bits
        last = (poff + plen - 1) >> bits
        if ifs is not None:
            i = first
            while i <= last and ifs.block_uptodate(i):
                i += 1
            skipped = i - first
            if skipped:
                nbytes = (skipped << bits) - (pos & (bsize - 1))
                pos += nbytes
                poff += nbytes
                plen -= nbytes
            first = i
            j = i + 1
            while j <= last:
                if ifs.block_uptodate(j):
                    plen -= self.iomap_bytes_to_truncate(pos + plen, bits, last - j + 1)
                    last = j - 1
                    break
                j += 1
        if orig_pos <= isize < orig_pos + orig_plen:
            end = (isize - 1 - folio.pos) >> bits
            if first <= end < last:
                plen -= self.iomap_bytes_to_truncate(pos + plen, bits, last - end)
        return pos, poff, plen

    @staticmethod
    def iomap_bytes_to_truncate(end_pos: int, block_bits: int, blocks_truncated: int) -> int:
        block_offset = end_pos & ((1 << block_bits) - 1)
        if not block_offset:
            return blocks_truncated << block_bits
        return ((blocks_truncated - 1) << block_bits) + block_offset

    def iomap_readpage_iter(self, it: IomapIter, folio: Folio, offset: int) -> KGen:
        """iomap_readpage_iter(): zero what needs no IO, read the rest synchronously."""
        iomap = it.iomap
        pos = it.pos + offset
        length = it.length() - offset
        orig_pos = pos
        self.ifs_alloc(it.inode, folio)
        pos, poff, plen = self.iomap_adjust_read_range(it.inode, folio, pos, length)
        if plen == 0:
            return pos - orig_pos + plen
        if self.iomap_block_needs_zeroing(it, pos):
            folio.data[poff : poff + plen] = bytes(plen)
            self.iomap_set_range_uptodate(folio, poff, plen)
            return pos - orig_pos + plen
        sector = (iomap.addr + (pos - iomap.offset)) // SECTOR_SIZE
        bio = Bio("read", sector, nbytes=plen, tag=f"read ino={it.inode.i_ino}")
        err = yield from self.submit_bio_wait(bio)
        if err:
            folio.error = True
        else:
            folio.data[poff : poff + plen] = bio.data
            self.iomap_set_range_uptodate(folio, poff, plen)
        return pos - orig_pos + plen

    def iomap_read_folio(self, folio: Folio, ops: IomapOps) -> KGen:
        """iomap_read_folio(): the folio is locked on entry and unlocked on return."""
        assert folio.mapping is not None
        it = IomapIter(folio.mapping.host, folio.pos, folio.size, 0)
        while True:
            ret = yield from self.iomap_iter(it, ops)
            if ret <= 0:
                break
            done = 0
            while done < it.length():
                n = yield from self.iomap_readpage_iter(it, folio, done)
                if n <= 0:
                    break
                done += n
            it.processed = done
        self.folio_unlock(folio)
        return 0

    # -- writes --------------------------------------------------------------------------------------

    def iomap_get_folio(self, it: IomapIter, pos: int, length: int) -> KGen:
        """iomap_get_folio(): __filemap_get_folio(FGP_WRITEBEGIN | FGP_NOFS)."""
        return (
            yield from self._filemap_get_folio(
                it.inode.i_mapping, pos // self.page_size, FGP_WRITEBEGIN | FGP_NOFS
            )
        )

    def iomap_write_failed(self, inode: Inode, pos: int, length: int) -> KGen:
        """iomap_write_failed(): drop folios a failed write instantiated beyond EOF."""
        i_size = inode.i_size
        if pos + length > i_size:
            yield from self.truncate_pagecache_range(inode, max(pos, i_size), pos + length - 1)

    def _iomap_write_begin(self, it: IomapIter, pos: int, length: int, folio: Folio) -> KGen:
        """__iomap_write_begin(): make the parts of partially written blocks valid: zero them or read
        them, according to the (cached) mapping."""
        srcmap = it.srcmap_or_iomap()
        bsize = 1 << it.inode.i_blkbits
        block_start = pos - pos % bsize
        block_end = -(-(pos + length) // bsize) * bsize
        frm = pos - folio.pos
        to = frm + length
        if not it.flags & IOMAP_UNSHARE and pos <= folio.pos and pos + length >= folio.pos + folio.size:
            return 0
        self.ifs_alloc(it.inode, folio)
        if folio.uptodate:
            return 0
        folio.error = False
        while True:
            block_start, poff, plen = self.iomap_adjust_read_range(
                it.inode, folio, block_start, block_end - block_start
            )
            if plen == 0:
                break
            if not (
                not it.flags & IOMAP_UNSHARE
                and (frm <= poff or frm >= poff + plen)
                and (to <= poff or to >= poff + plen)
            ):
                zeroing = self.iomap_block_needs_zeroing(it, block_start)
                # the decision, the cached type it used, and the state the file has now
                lookup = getattr(self, "ext4_es_lookup", None)
                cur = lookup(it.inode, block_start >> it.inode.i_blkbits)[0] if lookup is not None else "?"
                # and, for zeroing, whether the zeroed bytes lie inside the file (its data, not the
                # post-EOF tail): the folio-state x extent-state x EOF position the decision met
                below = (poff < frm and folio.pos + poff < it.inode.i_size) or (
                    to < poff + plen and folio.pos + to < it.inode.i_size
                )
                where = (":in_eof" if below else ":past_eof") if zeroing else ""
                self.cov(f"iomap:partial_block:{'zero' if zeroing else 'read'}:{srcmap.type}:{cur}{where}")
                if zeroing:
                    if self.WARN_ON(it.flags & IOMAP_UNSHARE, "iter->flags & IOMAP_UNSHARE"):
                        return -EIO
                    # folio_zero_segments(folio, poff, from, to, poff + plen)
                    if poff < frm:
                        folio.data[poff:frm] = bytes(frm - poff)
                    if to < poff + plen:
                        folio.data[to : poff + plen] = bytes(poff + plen - to)
                else:
                    sector = (srcmap.addr + (block_start - srcmap.offset)) // SECTOR_SIZE
                    bio = Bio("read", sector, nbytes=plen, tag=f"read ino={it.inode.i_ino}")
                    status = yield from self.submit_bio_wait(bio)
                    if status:
                        return status
                    folio.data[poff : poff + plen] = bio.data
                self.iomap_set_range_uptodate(folio, poff, plen)
            block_start += plen
            if block_start >= block_end:
                break
        return 0

    def iomap_write_begin(self, it: IomapIter, pos: int, length: int) -> KGen:
        """iomap_write_begin(): lock the folio, check the cached mapping is still valid, prepare it.

        Returns (status, folio)."""
        folio_ops = it.iomap.folio_ops
        self.BUG_ON(
            pos + length > it.iomap.offset + it.iomap.length,
            "pos + len > iter->iomap.offset + iter->iomap.length",
        )
        folio = yield from self.iomap_get_folio(it, pos, length)
        # Now we have a locked folio. Before doing anything with it, check that the cached iomap is
        # not stale: unwritten extents may have been converted and a partially written folio
        # reclaimed since ->iomap_begin, and zeroing by the stale type would destroy data on disk.
        valid = folio_ops.iomap_valid if folio_ops is not None else None
        self.cov(
            f"iomap:write_begin:{'U' if folio.uptodate else 'u'}{'D' if folio.dirty else 'd'}:{it.iomap.type}"
        )
        if valid is not None and not valid(it.inode, it.iomap):
            self.cov("iomap:write_begin:stale")
            it.iomap.flags |= IOMAP_F_STALE
            self.folio_unlock(folio)
            yield from self.iomap_write_failed(it.inode, pos, length)
            return 0, None
        length = min(length, folio.pos + folio.size - pos)
        status = yield from self._iomap_write_begin(it, pos, length, folio)
        if status:
            self.folio_unlock(folio)
            yield from self.iomap_write_failed(it.inode, pos, length)
            return status, None
        return 0, folio

    def _iomap_write_end(self, inode: Inode, pos: int, length: int, copied: int, folio: Folio) -> int:
        """__iomap_write_end(): a short copy into a !uptodate folio counts as nothing."""
        if copied < length and not folio.uptodate:
            return 0
        off = pos - folio.pos
        self.iomap_set_range_uptodate(folio, off, length)
        self.iomap_set_range_dirty(folio, off, copied)
        self.filemap_dirty_folio(inode.i_mapping, folio)
        return copied

    def iomap_zero_eof_gap_locked(self, inode: Inode, folio: Folio, old_size: int, pos: int) -> bool:
        """Zero the gap ``[old_size, pos)`` a size-extending write leaves, when the old EOF lies in
        ``folio`` (locked by write_begin), before i_size grows over it; True: nothing is left for
        pagecache_isize_extended() after the unlock.

        Not Linux's order: iomap_write_iter() calls pagecache_isize_extended() after
        iomap_write_end() raised i_size and unlocked the folio, and since 6.12 that zeroes the
        gap, wiping an mmap store that landed there in between -- inside the file by then. Here the
        folio is write-protected first, so a later store faults and waits for the folio lock. An
        old EOF in an earlier folio keeps Linux's order (its lock cannot be taken under this one).
        Variant ``eof-zero-after-unlock`` restores Linux's order."""
        if not folio.pos <= old_size < folio.pos + folio.size:
            return False
        self.folio_zero_exposed_locked(folio, old_size, pos)
        return True

    def iomap_write_end(
        self, it: IomapIter, pos: int, length: int, copied: int, folio: Folio, *, extend: bool = True
    ) -> KGen:
        """iomap_write_end() and what iomap_write_iter() does after it: update i_size after the
        copy, unlock. ``extend=False`` (zeroing, unshare): i_size never moves -- since Linux 6.11
        ("iomap: don't increase i_size in iomap_write_end()", the size update lives in
        iomap_write_iter()), zeroing past EOF leaves the size alone."""
        old_size = it.inode.i_size
        ret = self._iomap_write_end(it.inode, pos, length, copied, folio)
        if not extend:
            self.folio_unlock(folio)
            return ret
        new_size = self.write_end_size(old_size, pos, ret)
        gap_zeroed = False
        if new_size > old_size:
            if old_size < pos:
                gap_zeroed = self.iomap_zero_eof_gap_locked(it.inode, folio, old_size, pos)
            it.inode.i_size = new_size
            it.iomap.flags |= IOMAP_F_SIZE_CHANGED
        self.folio_unlock(folio)
        if old_size < pos and not gap_zeroed:
            yield from self.pagecache_isize_extended(it.inode, old_size, pos)
        if ret < length:
            yield from self.iomap_write_failed(it.inode, pos + ret, length - ret)
        return ret

    def iomap_write_iter(self, it: IomapIter, i: IovIter) -> KGen:
        """iomap_write_iter(): copy into the folios the cached mapping covers."""
        length = it.length()
        pos = it.pos
        written = 0
        status = 0
        mapping = it.inode.i_mapping
        chunk = self.page_size
        retry = 0
        while i.count and length:
            offset = pos % chunk
            nbytes = min(chunk - offset, i.count, length)
            if retry:
                nbytes, retry = min(nbytes, retry), 0
            yield from self.balance_dirty_pages_ratelimited(mapping)
            # bring in the user page we copy from first
            if (yield from self.fault_in_iov_iter_readable(i, nbytes)) == nbytes:
                status = -EFAULT
                break
            status, folio = yield from self.iomap_write_begin(it, pos, nbytes)
            if status:
                break
            if it.iomap.flags & IOMAP_F_STALE:
                break
            yield  # preemptible while holding the folio lock
            offset = pos - folio.pos
            nbytes = min(nbytes, folio.size - offset)
            copied = self.copy_folio_from_iter_atomic(folio, offset, nbytes, i)
            status = yield from self.iomap_write_end(it, pos, nbytes, copied, folio)
            if copied != status:
                i.revert(copied - status)
            yield  # cond_resched()
            if status == 0:
                if copied:
                    # a short copy was rejected: retry with the bytes that did copy
                    retry = copied
                    continue
                if (yield from self.fault_in_iov_iter_readable(i, nbytes)) == nbytes:
                    status = -EFAULT
                    break
            else:
                pos += status
                written += status
                length -= status
        return written if written else status

    def iomap_file_buffered_write(self, file: File, pos: int, i: IovIter, ops: IomapOps) -> KGen:
        """iomap_file_buffered_write()"""
        it = IomapIter(file.f_inode, pos, i.count, IOMAP_WRITE)
        while True:
            ret = yield from self.iomap_iter(it, ops)
            if ret <= 0:
                break
            it.processed = yield from self.iomap_write_iter(it, i)
        if it.pos == pos:
            return ret
        return it.pos - pos

    # -- delalloc punch on a short write (B.6 of the reference) --------------------------------------

    def iomap_write_delalloc_scan(
        self, inode: Inode, punch_start: list[int], start_byte: int, end_byte: int, punch: Punch
    ) -> KGen:
        """iomap_write_delalloc_scan(): keep delalloc under dirty folios, punch it elsewhere."""
        ps = self.page_size
        while start_byte < end_byte:
            folio = yield from self.filemap_lock_folio(inode.i_mapping, start_byte // ps)
            if folio is None:
                start_byte = (start_byte // ps + 1) * ps
                continue
            try:
                if folio.dirty:
                    if start_byte > punch_start[0]:
                        ret = yield from punch(inode, punch_start[0], start_byte - punch_start[0])
                        if ret:
                            return ret
                    ifs = folio.private if isinstance(folio.private, IomapFolioState) else None
                    if ifs is not None:
                        last_byte = min(end_byte - 1, folio.pos + folio.size - 1)
                        bits = inode.i_blkbits
                        for blk in range(
                            (start_byte - folio.pos) >> bits, ((last_byte - folio.pos) >> bits) + 1
                        ):
                            if not ifs.block_dirty(blk):
                                ret = yield from punch(inode, folio.pos + (blk << bits), 1 << bits)
                                if ret:
                                    return ret
                    punch_start[0] = min(end_byte, folio.pos + folio.size)
                start_byte = folio.pos + folio.size
            finally:
                self.folio_unlock(folio)
        return 0

    def iomap_write_delalloc_release(
        self, inode: Inode, start_byte: int, end_byte: int, punch: Punch
    ) -> KGen:
        """iomap_write_delalloc_release(): under invalidate_lock (exclusive) so faults cannot dirty
        folios of the range while its delalloc is being removed."""
        punch_start = [start_byte]
        scan_end = min(inode.i_size, end_byte)
        mapping = inode.i_mapping
        yield from self.down_write(mapping.invalidate_lock)
        try:
            while start_byte < scan_end:
                start_byte = self.mapping_seek_hole_data(mapping, start_byte, scan_end, "data")
                if start_byte < 0 or start_byte == scan_end:
                    break
                data_end = self.mapping_seek_hole_data(mapping, start_byte, scan_end, "hole")
                if data_end == start_byte:
                    continue
                err = yield from self.iomap_write_delalloc_scan(
                    inode, punch_start, start_byte, data_end, punch
                )
                if err:
                    return err
                start_byte = data_end
            if punch_start[0] < end_byte:
                return (yield from punch(inode, punch_start[0], end_byte - punch_start[0]))
            return 0
        finally:
            self.up_write(mapping.invalidate_lock)

    def iomap_file_buffered_write_punch_delalloc(
        self, inode: Inode, iomap: Any, pos: int, length: int, written: int, punch: Punch
    ) -> KGen:
        """iomap_file_buffered_write_punch_delalloc(): release reservations a short write did not use."""
        if iomap.type != IOMAP_DELALLOC or not iomap.flags & IOMAP_F_NEW:
            return 0
        bsize = 1 << inode.i_blkbits
        start_byte = pos - pos % bsize if not written else -(-(pos + written) // bsize) * bsize
        end_byte = -(-(pos + length) // bsize) * bsize
        if start_byte >= end_byte:
            return 0
        return (yield from self.iomap_write_delalloc_release(inode, start_byte, end_byte, punch))

    # -- zeroing -------------------------------------------------------------------------------------

    def iomap_zero_iter(self, it: IomapIter, range_dirty: list[bool]) -> KGen:
        """iomap_zero_iter(): holes and unwritten extents already read as zeros -- unless the page
        cache over them is dirty (data written past an old EOF, say): then flush it and remap
        (iomap_zero_iter_flush_and_stale, the 6.12 "zero range flush" fix)."""
        srcmap = it.srcmap_or_iomap()
        pos = it.pos
        length = it.length()
        if srcmap.type in (IOMAP_HOLE, IOMAP_UNWRITTEN):
            if range_dirty[0]:
                range_dirty[0] = False
                end = pos + length - 1
                yield from self.filemap_write_and_wait_range(it.inode.i_mapping, pos, end)
                it.iomap.flags |= IOMAP_F_STALE
                return 0
            return length
        written = 0
        while length > 0:
            status, folio = yield from self.iomap_write_begin(it, pos, length)
            if status:
                return status
            if it.iomap.flags & IOMAP_F_STALE:
                break
            offset = pos - folio.pos
            nbytes = min(length, folio.size - offset)
            folio.data[offset : offset + nbytes] = bytes(nbytes)
            nbytes = yield from self.iomap_write_end(it, pos, nbytes, nbytes, folio, extend=False)
            if self.WARN_ON(nbytes == 0, "bytes == 0"):
                return -EIO
            pos += nbytes
            length -= nbytes
            written += nbytes
        return written

    def filemap_range_needs_writeback(self, mapping: AddressSpace, start: int, end: int) -> bool:
        """filemap_range_needs_writeback(): a dirty or writeback folio in [start, end]."""
        ps = self.page_size
        for index in range(start // ps, end // ps + 1):
            folio = mapping.i_pages.get(index)
            if folio is not None and (folio.dirty or folio.writeback):
                return True
        return False

    def iomap_zero_range(self, inode: Inode, pos: int, length: int, ops: IomapOps) -> KGen:
        """iomap_zero_range(): check the whole range for dirty cache first (checking after each
        mapping lookup would race with writeback and reclaim)."""
        it = IomapIter(inode, pos, length, IOMAP_ZERO)
        range_dirty = [self.filemap_range_needs_writeback(inode.i_mapping, pos, pos + length - 1)]
        while True:
            ret = yield from self.iomap_iter(it, ops)
            if ret <= 0:
                return ret
            it.processed = yield from self.iomap_zero_iter(it, range_dirty)

    # -- page_mkwrite --------------------------------------------------------------------------------

    def iomap_page_mkwrite(self, vmf: VmFault, ops: IomapOps) -> KGen:
        """iomap_page_mkwrite(): returns VM_FAULT_LOCKED with the folio locked, or an errno."""
        folio = vmf.folio
        assert folio is not None
        inode = vmf.vma.vm_file.f_inode
        yield from self.folio_lock(folio)
        size = inode.i_size
        if folio.mapping is not inode.i_mapping or folio.pos >= size:
            self.folio_unlock(folio)
            return -EFAULT
        length = min(folio.size, size - folio.pos)
        it = IomapIter(inode, folio.pos, length, IOMAP_WRITE | IOMAP_FAULT)
        while True:
            ret = yield from self.iomap_iter(it, ops)
            if ret <= 0:
                break
            self.WARN_ON(not folio.uptodate, "!folio_test_uptodate(folio)")
            self.folio_mark_dirty(folio)
            it.processed = it.length()
        if ret < 0:
            self.folio_unlock(folio)
            return ret
        yield from self.folio_wait_stable(folio)
        return VM_FAULT_LOCKED

    # -- writeback -----------------------------------------------------------------------------------

    def iomap_writepages(self, mapping: AddressSpace, wbc: WritebackControl, wpc: IomapWritepageCtx) -> KGen:
        """iomap_writepages()"""
        ret = yield from self.write_cache_pages(
            mapping, wbc, lambda folio, w: self.iomap_do_writepage(folio, w, wpc)
        )
        if wpc.ioend is None:
            return ret
        return self.iomap_submit_ioend(wpc, wpc.ioend, ret)

    def iomap_do_writepage(self, folio: Folio, wbc: WritebackControl, wpc: IomapWritepageCtx) -> KGen:
        """iomap_do_writepage(): zero the post-EOF part of a straddling folio, then map and write."""
        assert folio.mapping is not None
        inode = folio.mapping.host
        isize = inode.i_size
        end_pos = folio.pos + folio.size
        if end_pos > isize:
            poff = isize - folio.pos
            end_index = isize // self.page_size
            if folio.index > end_index or (folio.index == end_index and poff == 0):
                self.folio_unlock(folio)
                return 0
            # "the folio straddles i_size: zero it on every writepage, it may be mmapped"
            folio.data[poff:] = bytes(folio.size - poff)
            end_pos = isize
        return (yield from self.iomap_writepage_map(wpc, wbc, inode, folio, end_pos))

    def iomap_writepage_map(
        self, wpc: IomapWritepageCtx, wbc: WritebackControl, inode: Inode, folio: Folio, end_pos: int
    ) -> KGen:
        """iomap_writepage_map(): map each dirty block, add it to an ioend, start writeback."""
        ifs = folio.private if isinstance(folio.private, IomapFolioState) else None
        bsize = 1 << inode.i_blkbits
        nblocks = self.i_blocks_per_folio(inode, folio)
        pos = folio.pos
        if ifs is None and nblocks > 1:
            ifs = self.ifs_alloc(inode, folio)
            self.iomap_set_range_dirty(folio, 0, end_pos - pos)
        error = 0
        count = 0
        # each block joins an ioend with the mapping current when it was mapped (type and address)
        added: list[tuple[int, str, int, int]] = []
        for i in range(nblocks):
            if pos >= end_pos:
                break
            if ifs is not None and not ifs.block_dirty(i):
                pos += bsize
                continue
            error = yield from wpc.ops.map_blocks(wpc, inode, pos)
            if error:
                break
            self.cov(f"iomap:writeback:{wpc.iomap.type}")
            if wpc.iomap.type == IOMAP_HOLE:
                pos += bsize
                continue
            if wpc.iomap.type not in (IOMAP_UNWRITTEN, IOMAP_MAPPED):
                self.WARN_ON(True, "unexpected iomap type in writeback", type=wpc.iomap.type)
                error = -EIO
                break
            sector = (wpc.iomap.addr + (pos - wpc.iomap.offset)) // SECTOR_SIZE
            added.append((pos, wpc.iomap.type, wpc.iomap.flags, sector))
            count += 1
            pos += bsize
        self.iomap_clear_range_dirty(folio, 0, folio.size)
        if error and not count:
            self.folio_unlock(folio)
            self.mapping_set_error(inode.i_mapping, error)
            return error
        self.folio_start_writeback(folio)
        if ifs is not None:
            ifs.write_bytes_pending = 0
        for bpos, io_type, io_flags, sector in added:
            self.iomap_add_to_ioend(inode, bpos, folio, ifs, wpc, io_type, io_flags, sector)
        self.folio_unlock(folio)
        if not count:
            self.folio_end_writeback(folio)
        if error:
            self.mapping_set_error(inode.i_mapping, error)
        return error

    def iomap_add_to_ioend(
        self,
        inode: Inode,
        pos: int,
        folio: Folio,
        ifs: Any,
        wpc: IomapWritepageCtx,
        io_type: str,
        io_flags: int,
        sector: int,
    ) -> None:
        """iomap_add_to_ioend(): extend the current ioend or submit it and start a new one."""
        bsize = 1 << inode.i_blkbits
        io = wpc.ioend
        if io is None or not (
            io_type == io.io_type
            and pos == io.offset + io.size
            and sector == io.sector + io.size // SECTOR_SIZE
        ):
            if io is not None:
                self.iomap_submit_ioend(wpc, io, 0)
            io = IomapIoend(io_type, io_flags, inode, pos, 0, sector)
            wpc.ioend = io
        off = pos - folio.pos
        io.data.append(bytes(folio.data[off : off + bsize]))
        io.folios.append((folio, bsize))
        if ifs is not None:
            ifs.write_bytes_pending += bsize
        io.size += bsize

    def iomap_submit_ioend(self, wpc: IomapWritepageCtx, ioend: IomapIoend, error: int) -> int:
        """iomap_submit_ioend(): let the filesystem set completion up (->prepare_ioend), submit."""
        if wpc.ioend is ioend:
            wpc.ioend = None
        if wpc.ops.prepare_ioend is not None:
            error = wpc.ops.prepare_ioend(ioend, error)
        bio = Bio(
            REQ_OP_WRITE,
            ioend.sector,
            b"".join(ioend.data),
            end_io=self.iomap_writepage_end_bio,
            private=ioend,
            tag=f"data ino={ioend.inode.i_ino} off={ioend.offset} len={ioend.size} {ioend.io_type.lower()}",
        )
        ioend.data = []
        if error:
            bio.status = error
            self.iomap_finish_ioend(ioend, error)
            return error
        self.submit_bio(bio)
        return 0

    def iomap_writepage_end_bio(self, bio: Bio) -> None:
        ioend: IomapIoend = bio.private
        ioend.status = bio.status
        end_io = getattr(ioend, "end_io", None)
        if end_io is not None:
            end_io(ioend)
        else:
            self.iomap_finish_ioend(ioend, bio.status)

    def iomap_finish_ioend(self, ioend: IomapIoend, error: int) -> None:
        """iomap_finish_ioend(): end writeback on each folio once all its blocks completed."""
        inode = ioend.inode
        for folio, nbytes in ioend.folios:
            ifs = folio.private if isinstance(folio.private, IomapFolioState) else None
            if error:
                folio.error = True
                self.mapping_set_error(inode.i_mapping, error)
            if ifs is None:
                self.folio_end_writeback(folio)
                continue
            ifs.write_bytes_pending -= nbytes
            if ifs.write_bytes_pending <= 0:
                self.folio_end_writeback(folio)
        ioend.folios = []
