"""Writeback of dirty folios (mm/page-writeback.c, mm/filemap.c's fdatawrite/fdatawait).

write_cache_pages() walks dirty folios of a mapping in index order, locks each, cleans it for IO
(folio_clear_dirty_for_io, which also write-protects its PTEs) and hands it to the filesystem. A folio
under writeback is unlocked but stays pinned until IO completion calls folio_end_writeback().
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from simkernel.fs.vfs import EIO, AddressSpace, File
from simkernel.kernel.sched import KGen
from simkernel.mm.filemap import Filemap
from simkernel.mm.folio import Folio

WB_SYNC_NONE = 0
WB_SYNC_ALL = 1
LLONG_MAX = (1 << 63) - 1


@dataclass
class WritebackControl:
    """struct writeback_control."""

    sync_mode: int = WB_SYNC_NONE
    nr_to_write: int = 1 << 30
    range_start: int = 0
    range_end: int = LLONG_MAX
    range_cyclic: bool = False
    #: who asked: "flusher", "fsync", "sync", "reclaim", "balance_dirty_pages"
    reason: str = ""


class PageWriteback(Filemap):
    """write_cache_pages, folio writeback state, fdatawrite/fdatawait, balance_dirty_pages."""

    #: dirty folios above which a writer kicks the flusher (vm.dirty_bytes, in folios)
    dirty_thresh: int = 1 << 30

    def folio_start_writeback(self, folio: Folio) -> None:
        """folio_start_writeback(): the folio is under IO from now until folio_end_writeback()."""
        self.BUG_ON(folio.writeback, "folio_test_writeback(folio)")
        folio.writeback = True
        if not folio.dirty:
            folio.tagged = False

    def folio_end_writeback(self, folio: Folio) -> None:
        """folio_end_writeback(): IO done; wake waiters (fsync, truncate, FGP_STABLE writers)."""
        self.BUG_ON(not folio.writeback, "!folio_test_writeback(folio)")
        folio.writeback = False
        self.wake_up(folio.wb_wq)

    def folio_redirty_for_writepage(self, wbc: WritebackControl, folio: Folio) -> None:
        self.folio_mark_dirty(folio)

    def write_cache_pages(
        self,
        mapping: AddressSpace,
        wbc: WritebackControl,
        writepage: Callable[[Folio, WritebackControl], Any],
    ) -> KGen:
        """write_cache_pages(): ``writepage(folio, wbc)`` (a generator) must unlock the folio."""
        ps = self.page_size
        if wbc.range_cyclic:
            start, end = mapping.writeback_index, LLONG_MAX // ps
        else:
            start, end = wbc.range_start // ps, wbc.range_end // ps
        # tag_pages_for_writeback(): the set to write is fixed up front, so redirtying during the walk
        # cannot livelock a data-integrity sync
        indices = [i for i in mapping.tagged_dirty_indices() if start <= i <= end]
        # range_cyclic does not loop back to the start of the file: "we should only ever lock
        # multiple pages in ascending page->index order" -- the folios already added to the
        # caller's unsubmitted ioend are under writeback, and a task holding a lower folio's lock
        # while it waits for that writeback would deadlock with us (64081362e8ff)
        ret = 0
        done_index = start
        finished = True
        for index in indices:
            folio = mapping.i_pages.get(index)
            if folio is None:
                continue
            yield from self.folio_lock(folio)
            if folio.mapping is not mapping or not folio.dirty:
                self.folio_unlock(folio)
                continue
            if folio.writeback:
                if wbc.sync_mode == WB_SYNC_NONE:
                    self.folio_unlock(folio)
                    continue
                yield from self.folio_wait_writeback(folio)
            if not self.folio_clear_dirty_for_io(folio):
                self.folio_unlock(folio)
                continue
            err = yield from writepage(folio, wbc)
            done_index = index + 1
            if err:
                ret = ret or err
                if wbc.sync_mode == WB_SYNC_NONE:
                    finished = False
                    break
            wbc.nr_to_write -= 1
            if wbc.nr_to_write <= 0 and wbc.sync_mode == WB_SYNC_NONE:
                finished = False
                break
        if wbc.range_cyclic:
            # the end of the file reached: the next cyclic pass starts over from index 0
            mapping.writeback_index = 0 if finished else done_index
        return ret

    def do_writepages(self, mapping: AddressSpace, wbc: WritebackControl) -> KGen:
        """do_writepages(): the filesystem's ->writepages."""
        if mapping.a_ops is None or not mapping.tagged_dirty_indices():
            return 0
        return (yield from mapping.a_ops.writepages(mapping, wbc))

    def filemap_fdatawrite_wbc(self, mapping: AddressSpace, wbc: WritebackControl) -> KGen:
        return (yield from self.do_writepages(mapping, wbc))

    def filemap_fdatawrite_range(self, mapping: AddressSpace, start: int, end: int, sync_mode: int) -> KGen:
        """__filemap_fdatawrite_range()"""
        wbc = WritebackControl(
            sync_mode=sync_mode, range_start=start, range_end=end, reason="fdatawrite", nr_to_write=1 << 30
        )
        return (yield from self.do_writepages(mapping, wbc))

    def filemap_flush(self, mapping: AddressSpace) -> KGen:
        """filemap_flush(): start writeback of everything, do not wait."""
        return (yield from self.filemap_fdatawrite_range(mapping, 0, LLONG_MAX, WB_SYNC_NONE))

    def filemap_fdatawait_range(self, mapping: AddressSpace, start: int, end: int) -> KGen:
        """__filemap_fdatawait_range(): wait for writeback of every folio in the byte range."""
        ps = self.page_size
        for index in sorted(mapping.i_pages):
            if start // ps <= index <= end // ps:
                folio = mapping.i_pages.get(index)
                if folio is not None and folio.writeback:
                    yield from self.folio_wait_writeback(folio)

    def filemap_write_and_wait_range(self, mapping: AddressSpace, lstart: int, lend: int) -> KGen:
        """filemap_write_and_wait_range(): write and wait; report legacy AS_EIO/AS_ENOSPC errors."""
        if lend < lstart:
            return 0
        err = yield from self.filemap_fdatawrite_range(mapping, lstart, lend, WB_SYNC_ALL)
        if err != -EIO:
            yield from self.filemap_fdatawait_range(mapping, lstart, lend)
        err2 = self.filemap_check_errors(mapping)
        return err or err2

    def file_write_and_wait_range(self, file: File, lstart: int, lend: int) -> KGen:
        """file_write_and_wait_range(): as above, but report errors through the file's errseq cursor."""
        if lend < lstart:
            return 0
        mapping = file.f_mapping
        err = yield from self.filemap_fdatawrite_range(mapping, lstart, lend, WB_SYNC_ALL)
        if err != -EIO:
            yield from self.filemap_fdatawait_range(mapping, lstart, lend)
        err2 = self.file_check_and_advance_wb_err(file)
        return err or err2

    def nr_dirty_folios(self) -> int:
        return sum(
            1 for inode in self.sb.s_inodes.values() for f in inode.i_mapping.i_pages.values() if f.dirty
        )

    def balance_dirty_pages_ratelimited(self, mapping: AddressSpace) -> KGen:
        """balance_dirty_pages_ratelimited(): over the dirty limit, kick background writeback and
        sleep (the writer itself does not write pages)."""
        if self.nr_dirty_folios() > self.dirty_thresh:
            self.wb_start_background_writeback("balance_dirty_pages")
            yield  # io_schedule_timeout()
