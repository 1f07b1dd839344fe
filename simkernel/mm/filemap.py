"""The page cache (mm/filemap.c, mm/truncate.c): folio lookup and locking, read, fault, dirtying,
truncation, and waiting for writeback.

Linux's ``__foo`` functions are spelled ``_foo`` here (Python mangles double underscores in classes).

Lock order, from the header of mm/filemap.c, that every path here respects:
  ->i_rwsem  ->invalidate_lock  ->folio lock        (truncate, fallocate)
  ->mmap_lock  ->invalidate_lock  ->folio lock      (filemap_fault)
  ->i_rwsem  ->mmap_lock                            (generic_perform_write -> fault_in_readable)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simkernel.fs.vfs import AS_EIO, AS_ENOSPC, EIO, ENOSPC, AddressSpace, File, Inode
from simkernel.kernel.sched import KGen
from simkernel.locking.rwsem import Locking
from simkernel.mm.folio import HW_PAGE_SIZE, Folio

if TYPE_CHECKING:
    from simkernel.mm.memory import VmFault

# fgf_t flags of __filemap_get_folio()
FGP_ACCESSED = 0x1
FGP_LOCK = 0x2
FGP_CREAT = 0x4
FGP_WRITE = 0x8
FGP_NOFS = 0x10
FGP_NOWAIT = 0x20
FGP_FOR_MMAP = 0x40
FGP_STABLE = 0x80
FGP_WRITEBEGIN = FGP_LOCK | FGP_WRITE | FGP_CREAT | FGP_STABLE

# vm_fault_t
VM_FAULT_OOM = 0x1
VM_FAULT_SIGBUS = 0x2
VM_FAULT_NOPAGE = 0x100
VM_FAULT_LOCKED = 0x200
VM_FAULT_RETRY = 0x400
VM_FAULT_ERROR = VM_FAULT_OOM | VM_FAULT_SIGBUS


class Filemap(Locking):
    """Page-cache functions. ``self.page_size`` is the model's PAGE_SIZE (one folio)."""

    page_size: int
    #: the backing device needs stable pages during writeback (BDI_CAP_STABLE_WRITES)
    stable_writes: bool = False

    # -- folio lock and writeback waits (mm/filemap.c) -----------------------------------------------

    def folio_lock(self, folio: Folio) -> KGen:
        """folio_lock(): sleep until we own the folio lock."""
        task = self.current
        yield
        while folio.locked:
            yield folio.lock_wq
        folio.locked = True
        folio.owner = task

    def folio_trylock(self, folio: Folio) -> bool:
        if folio.locked:
            return False
        folio.locked = True
        folio.owner = self.sched.current
        return True

    def folio_unlock(self, folio: Folio) -> None:
        self.BUG_ON(not folio.locked, "!folio_test_locked(folio)")
        folio.locked = False
        folio.owner = None
        self.wake_up(folio.lock_wq)

    def folio_wait_locked(self, folio: Folio) -> KGen:
        while folio.locked:
            yield folio.lock_wq

    def folio_wait_writeback(self, folio: Folio) -> KGen:
        """folio_wait_writeback(): sleep until the folio's writeback IO completed."""
        while folio.writeback:
            yield folio.wb_wq

    def folio_wait_stable(self, folio: Folio) -> KGen:
        """folio_wait_stable(): only devices that need stable pages make writers wait for writeback."""
        if self.stable_writes:
            yield from self.folio_wait_writeback(folio)

    # -- lookup and creation -------------------------------------------------------------------------

    def filemap_get_folio(self, mapping: AddressSpace, index: int) -> Folio | None:
        """filemap_get_folio(): lookup without locking."""
        return mapping.i_pages.get(index)

    def filemap_add_folio(self, mapping: AddressSpace, index: int) -> Folio:
        """filemap_add_folio(): a new, locked, !uptodate folio in the cache."""
        folio = Folio(mapping, index, self.page_size)
        folio.locked = True
        folio.owner = self.sched.current
        mapping.i_pages[index] = folio
        return folio

    def _filemap_get_folio(self, mapping: AddressSpace, index: int, fgp: int) -> KGen:
        """__filemap_get_folio(): find (and with FGP_CREAT create) the folio at ``index``."""
        while True:
            folio = mapping.i_pages.get(index)
            if folio is None:
                if not fgp & FGP_CREAT:
                    return None
                folio = self.filemap_add_folio(mapping, index)
                if not fgp & FGP_LOCK or fgp & FGP_FOR_MMAP:
                    self.folio_unlock(folio)
                return folio
            if fgp & FGP_LOCK:
                if fgp & FGP_NOWAIT:
                    if not self.folio_trylock(folio):
                        return None
                else:
                    yield from self.folio_lock(folio)
                if folio.mapping is not mapping:
                    # truncated while we slept on the lock
                    self.folio_unlock(folio)
                    continue
            if fgp & FGP_STABLE:
                yield from self.folio_wait_stable(folio)
            return folio

    def filemap_lock_folio(self, mapping: AddressSpace, index: int) -> KGen:
        """filemap_lock_folio(): an existing folio, locked, or None."""
        return (yield from self._filemap_get_folio(mapping, index, FGP_LOCK))

    # -- dirtying ------------------------------------------------------------------------------------

    def filemap_dirty_folio(self, mapping: AddressSpace, folio: Folio) -> bool:
        """filemap_dirty_folio(): set the dirty flag (and the inode's dirty-pages state)."""
        if folio.dirty:
            return False
        folio.dirty = True
        folio.tagged = True
        return True

    def folio_mark_dirty(self, folio: Folio) -> bool:
        """folio_mark_dirty(): through the filesystem's ->dirty_folio."""
        mapping = folio.mapping
        if mapping is None or mapping.a_ops is None:
            if not folio.dirty:
                folio.dirty = folio.tagged = True
                return True
            return False
        return bool(mapping.a_ops.dirty_folio(mapping, folio))

    def folio_mkclean(self, folio: Folio) -> bool:
        """folio_mkclean(): write-protect the PTEs so the next store faults (page_mkwrite again)."""
        if folio.mapcount and folio.pte_writable:
            folio.pte_writable = False
            return True
        return False

    def folio_clear_dirty_for_io(self, folio: Folio) -> bool:
        """folio_clear_dirty_for_io(): clean the folio for writeback, transferring PTE dirtiness."""
        self.BUG_ON(not folio.locked, "!folio_test_locked(folio)")
        if self.folio_mkclean(folio):
            self.folio_mark_dirty(folio)
        if folio.dirty:
            folio.dirty = False
            return True
        return False

    # -- reading -------------------------------------------------------------------------------------

    def filemap_read_folio(self, file: File | None, folio: Folio) -> KGen:
        """filemap_read_folio(): ->read_folio on a locked folio; returns 0 or -EIO."""
        mapping = folio.mapping
        assert mapping is not None and mapping.a_ops is not None
        folio.error = False
        yield from mapping.a_ops.read_folio(file, folio)
        yield from self.folio_wait_locked(folio)
        if folio.uptodate:
            return 0
        return -EIO

    def folio_range_uptodate(self, folio: Folio, off: int, length: int) -> bool:
        """filemap_range_uptodate(): uptodate, or (iomap) every block of the range uptodate."""
        if folio.uptodate:
            return True
        fn = getattr(folio.private, "is_partially_uptodate", None)
        return bool(fn(off, length)) if fn is not None else False

    def filemap_read(self, file: File, pos: int, count: int) -> KGen:
        """filemap_read(): buffered read(2); returns the bytes read or a negative errno."""
        inode = file.f_inode
        mapping = file.f_mapping
        ps = self.page_size
        out = bytearray()
        while count > 0:
            if pos >= inode.i_size:
                break
            index = pos // ps
            off = pos - index * ps
            folio = mapping.i_pages.get(index)
            if folio is None:
                # filemap_create_folio(): faults must not reinstantiate folios truncate is removing
                yield from self.down_read(mapping.invalidate_lock)
                folio = mapping.i_pages.get(index)
                if folio is None:
                    folio = self.filemap_add_folio(mapping, index)
                    err = yield from self.filemap_read_folio(file, folio)
                    self.up_read(mapping.invalidate_lock)
                    if err:
                        return bytes(out) if out else err
                else:
                    self.up_read(mapping.invalidate_lock)
                continue
            n = min(count, ps - off)
            if not self.folio_range_uptodate(folio, off, n):
                yield from self.folio_lock(folio)
                if folio.mapping is not mapping:
                    self.folio_unlock(folio)
                    continue
                if self.folio_range_uptodate(folio, off, n):
                    self.folio_unlock(folio)
                else:
                    err = yield from self.filemap_read_folio(file, folio)
                    if err:
                        return bytes(out) if out else err
                continue
            # i_size may have changed while we slept: only copy what is inside the file now
            isize = inode.i_size
            if pos >= isize:
                break
            n = min(n, isize - pos)
            out += folio.data[off : off + n]
            pos += n
            count -= n
            yield  # cond_resched() between folios
        return bytes(out)

    # -- the read side of page faults (filemap_fault) ------------------------------------------------

    def filemap_fault(self, vmf: VmFault) -> KGen:
        """filemap_fault(): find or read the folio under the fault; returns (vm_fault_t, folio)."""
        file = vmf.vma.vm_file
        mapping = file.f_mapping
        inode = mapping.host
        index = vmf.pgoff
        ps = self.page_size
        # the faulting hardware page must lie below EOF (max_idx = DIV_ROUND_UP(i_size, PAGE_SIZE);
        # a large folio's pages past EOF are never mapped)
        hw = min(HW_PAGE_SIZE, ps)
        page_pos = index * ps + vmf.poff - vmf.poff % hw

        def past_eof() -> bool:
            return page_pos >= -(-inode.i_size // hw) * hw

        if past_eof():
            return VM_FAULT_SIGBUS, None
        mapping_locked = False
        try:
            while True:
                folio = mapping.i_pages.get(index)
                if folio is None:
                    if not mapping_locked:
                        yield from self.down_read(mapping.invalidate_lock)
                        mapping_locked = True
                        continue
                    folio = yield from self._filemap_get_folio(mapping, index, FGP_CREAT | FGP_FOR_MMAP)
                yield from self.folio_lock(folio)
                if folio.mapping is not mapping:
                    self.folio_unlock(folio)
                    continue
                if not folio.uptodate:
                    if not mapping_locked:
                        self.folio_unlock(folio)
                        yield from self.down_read(mapping.invalidate_lock)
                        mapping_locked = True
                        continue
                    err = yield from self.filemap_read_folio(file, folio)
                    if err:
                        return VM_FAULT_SIGBUS, None
                    continue
                # the file may have been truncated while we were reading
                if past_eof():
                    self.folio_unlock(folio)
                    return VM_FAULT_SIGBUS, None
                return VM_FAULT_LOCKED, folio
        finally:
            if mapping_locked:
                self.up_read(mapping.invalidate_lock)

    # -- truncation (mm/truncate.c) ------------------------------------------------------------------

    def unmap_mapping_range(self, mapping: AddressSpace, holebegin: int, holelen: int) -> None:
        """unmap_mapping_range(): zap the PTEs of folios in [holebegin, holebegin+holelen) (0 = to EOF).

        Callers pass hardware-page bounds, as Linux's do; the model keeps one PTE state per folio,
        so a large folio with any page in the range loses the PTEs of all its pages (the others
        fault back in, as after reclaim or migration unmapped them)."""
        ps = self.page_size
        first = holebegin // ps
        last = (holebegin + holelen - 1) // ps if holelen else None
        for index, folio in list(mapping.i_pages.items()):
            if index >= first and (last is None or index <= last) and folio.mapcount:
                self.zap_folio_pte(folio)

    def zap_folio_pte(self, folio: Folio) -> None:
        """Remove the folio's PTE (zap_pte_range); a dirty PTE dirties the folio first."""
        folio.mapcount = 0
        folio.pte_writable = False
        folio.pte_end = 0

    def truncate_inode_folio(self, mapping: AddressSpace, folio: Folio) -> None:
        """truncate_inode_folio(): remove a locked folio from the cache, dropping its data."""
        if folio.mapcount:
            self.zap_folio_pte(folio)
        if folio.private is not None and mapping.a_ops is not None and mapping.a_ops.invalidate_folio:
            mapping.a_ops.invalidate_folio(folio, 0, folio.size)
        self.filemap_remove_folio(folio)

    def filemap_remove_folio(self, folio: Folio) -> None:
        """filemap_remove_folio(): delete from the page cache; the folio keeps its data."""
        mapping = folio.mapping
        if mapping is not None and mapping.i_pages.get(folio.index) is folio:
            del mapping.i_pages[folio.index]
        folio.dirty = folio.tagged = False
        folio.mapping = None

    def truncate_inode_partial_folio(self, folio: Folio, start: int, end: int) -> KGen:
        """truncate_inode_partial_folio(): zero and invalidate the part of a folio inside [start, end]."""
        pos = folio.pos
        offset = start - pos if pos < start else 0
        length = folio.size
        if pos + length <= end:
            length -= offset
        else:
            length = end + 1 - pos - offset
        yield from self.folio_wait_writeback(folio)
        if length == folio.size:
            assert folio.mapping is not None
            self.truncate_inode_folio(folio.mapping, folio)
            return True
        folio.data[offset : offset + length] = bytes(length)
        mapping = folio.mapping
        a_ops = mapping.a_ops if mapping is not None else None
        if folio.private is not None and a_ops is not None and a_ops.invalidate_folio:
            a_ops.invalidate_folio(folio, offset, length)
        return True

    def truncate_inode_pages_range(self, mapping: AddressSpace, lstart: int, lend: int) -> KGen:
        """truncate_inode_pages_range(): remove folios in [lstart, lend] (lend = -1: to the end)."""
        ps = self.page_size
        end = lend if lend >= 0 else (1 << 62)
        for index in sorted(mapping.i_pages):
            fpos = index * ps
            if fpos + ps <= lstart or fpos > end:
                continue
            folio = mapping.i_pages.get(index)
            if folio is None:
                continue
            yield from self.folio_lock(folio)
            if folio.mapping is not mapping:
                self.folio_unlock(folio)
                continue
            if fpos >= lstart and fpos + ps - 1 <= end:
                yield from self.folio_wait_writeback(folio)
                self.truncate_inode_folio(mapping, folio)
            else:
                yield from self.truncate_inode_partial_folio(folio, lstart, end)
            self.folio_unlock(folio)

    def truncate_pagecache(self, inode: Inode, newsize: int) -> KGen:
        """truncate_pagecache(): unmap and drop everything past ``newsize``; zero the partial tail."""
        mapping = inode.i_mapping
        hw = min(HW_PAGE_SIZE, self.page_size)
        holebegin = -(-newsize // hw) * hw  # round_up(newsize, PAGE_SIZE)
        self.unmap_mapping_range(mapping, holebegin, 0)
        yield from self.truncate_inode_pages_range(mapping, newsize, -1)
        self.unmap_mapping_range(mapping, holebegin, 0)

    def truncate_pagecache_range(self, inode: Inode, lstart: int, lend: int) -> KGen:
        """truncate_pagecache_range(): unmap whole (hardware) pages in [lstart, lend], then truncate
        the range. A page of a large folio that the range covers is unmapped even when the folio
        is only partly covered: a store to it must fault and go through ->page_mkwrite again, as
        truncate_inode_partial_folio() invalidates that part of the folio's buffers."""
        hw = min(HW_PAGE_SIZE, self.page_size)
        unmap_start = -(-lstart // hw) * hw
        unmap_end = ((1 + lend) // hw) * hw - 1
        if unmap_end > unmap_start:
            self.unmap_mapping_range(inode.i_mapping, unmap_start, 1 + unmap_end - unmap_start)
        yield from self.truncate_inode_pages_range(inode.i_mapping, lstart, lend)

    def truncate_setsize(self, inode: Inode, newsize: int) -> KGen:
        """truncate_setsize(): update i_size and the page cache to match."""
        oldsize = inode.i_size
        inode.i_size = newsize
        if newsize > oldsize:
            yield from self.pagecache_isize_extended(inode, oldsize, newsize)
        yield from self.truncate_pagecache(inode, newsize)

    def folio_zero_exposed_locked(self, folio: Folio, frm: int, to: int) -> None:
        """What pagecache_isize_extended() does to the EOF folio, done by a write that still holds
        its lock, before i_size grows over ``[frm, to)``: write-protect it (a later store faults
        and waits for the lock) and zero the part of ``[frm, to)`` it holds."""
        if self.folio_mkclean(folio):
            self.folio_mark_dirty(folio)
        lo = folio.pos
        end = min(to, lo + folio.size)
        folio.data[frm - lo : end - lo] = bytes(end - frm)

    def pagecache_isize_extended(self, inode: Inode, frm: int, to: int) -> KGen:
        """pagecache_isize_extended() (Linux 6.12): after i_size grew past a partially-backed page,
        write-protect it so a store into the new part faults and page_mkwrite can allocate blocks
        there, and zero its post-EOF range if it is dirty -- writeback would have zeroed it, but
        with the larger i_size it no longer will ("mm: zero range of eof folio exposed by inode
        size extension")."""
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
        if folio.dirty:
            offset = frm - folio.pos
            end = min(to - folio.pos, folio.size)
            folio.data[offset:end] = bytes(end - offset)  # folio_zero_segment()
        self.folio_unlock(folio)

    # -- writeback errors ----------------------------------------------------------------------------

    def mapping_set_error(self, mapping: AddressSpace, error: int) -> None:
        """mapping_set_error(): record a writeback error for fsync (errseq) and legacy callers."""
        if not error:
            return
        mapping.wb_err.set(error)
        mapping.host.i_sb.s_wb_err.set(error)
        mapping.flags |= AS_ENOSPC if error == -ENOSPC else AS_EIO

    def filemap_check_errors(self, mapping: AddressSpace) -> int:
        """filemap_check_errors(): test and clear the legacy AS_EIO/AS_ENOSPC bits."""
        ret = 0
        if mapping.flags & AS_ENOSPC:
            ret = -ENOSPC
        if mapping.flags & AS_EIO:
            ret = -EIO
        mapping.flags &= ~(AS_EIO | AS_ENOSPC)
        return ret

    def file_check_and_advance_wb_err(self, file: File) -> int:
        """file_check_and_advance_wb_err(): report each writeback error once per open file."""
        mapping = file.f_mapping
        err, file.f_wb_err = mapping.wb_err.check_and_advance(file.f_wb_err)
        mapping.flags &= ~(AS_EIO | AS_ENOSPC)
        return err

    def mapping_seek_hole_data(self, mapping: AddressSpace, start: int, end: int, whence: str) -> int:
        """mapping_seek_hole_data(): next byte in [start, end) that is cached data (uptodate) or not."""
        ps = self.page_size
        bs = mapping.host.i_sb.s_blocksize
        pos = start
        while pos < end:
            folio = mapping.i_pages.get(pos // ps)
            off = pos % ps
            is_data = folio is not None and self.folio_range_uptodate(folio, off - off % bs, bs)
            if (whence == "data") == is_data:
                return pos
            pos = pos - pos % bs + bs
        return end if whence == "hole" else -6  # -ENXIO
