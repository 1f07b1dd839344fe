"""Flusher threads and workqueues (fs/fs-writeback.c, kernel/workqueue.c).

Background writeback runs in kernel threads the schedule starts (a chosen inode, one folio's range,
or every dirty inode in turn); data-integrity writeback (sync) writes everything and waits.
"""

from __future__ import annotations

from simkernel.fs.vfs import Inode
from simkernel.kernel.base import KernelBase
from simkernel.kernel.sched import KGen, Task
from simkernel.mm.page_writeback import LLONG_MAX, WB_SYNC_ALL, WB_SYNC_NONE, WritebackControl


class FsWriteback(KernelBase):
    def queue_work(self, wq_name: str, work: KGen) -> Task:
        """queue_work(): the work item runs in its own kworker (an unbound workqueue)."""
        return self.sched.spawn(f"kworker/{wq_name}", work)

    def dirty_inodes(self) -> list[Inode]:
        """Inodes with dirty folios, in inode order (the b_dirty list, simplified); an inode whose
        folios another task is cleaning for IO right now counts (sync_inodes_sb() waits for its
        I_SYNC writeback, then for the IO)."""
        return [
            self.sb.s_inodes[ino]
            for ino in sorted(self.sb.s_inodes)
            if any(f.dirty or f.tagged for f in self.sb.s_inodes[ino].i_mapping.i_pages.values())
        ]

    def writeback_single_inode(self, inode: Inode, wbc: WritebackControl) -> KGen:
        """writeback_single_inode() (the data part; metadata goes through sync or the journal)."""
        return (yield from self.do_writepages(inode.i_mapping, wbc))

    def wb_writeback(self, inodes: list[Inode] | None, reason: str) -> KGen:
        """wb_writeback(): WB_SYNC_NONE writeback of the given (or all dirty) inodes."""
        for inode in inodes if inodes is not None else self.dirty_inodes():
            wbc = WritebackControl(sync_mode=WB_SYNC_NONE, range_cyclic=True, reason=reason, nr_to_write=1024)
            yield from self.writeback_single_inode(inode, wbc)
        return 0

    def wb_writeback_range(self, inode: Inode, start: int, end: int, reason: str) -> KGen:
        """sync_file_range(SYNC_FILE_RANGE_WRITE)-style writeback of one byte range."""
        wbc = WritebackControl(sync_mode=WB_SYNC_NONE, range_start=start, range_end=end, reason=reason)
        return (yield from self.writeback_single_inode(inode, wbc))

    def wb_start_background_writeback(self, reason: str) -> None:
        """wb_start_background_writeback(): wake the flusher unless it is already running."""
        if any(t.name == "flush-bdi" for t in self.sched.live_tasks("kthread")):
            return
        self.sched.spawn("flush-bdi", self.wb_writeback(None, reason))

    def sync_inodes_sb(self) -> KGen:
        """sync_inodes_sb(): write every dirty inode's data and wait for all of it."""
        for inode in self.dirty_inodes():
            wbc = WritebackControl(sync_mode=WB_SYNC_ALL, reason="sync")
            yield from self.writeback_single_inode(inode, wbc)
        for ino in sorted(self.sb.s_inodes):
            mapping = self.sb.s_inodes[ino].i_mapping
            yield from self.filemap_fdatawait_range(mapping, 0, LLONG_MAX)
        return 0
