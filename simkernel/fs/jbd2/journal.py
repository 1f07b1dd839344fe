"""jbd2 transactions, commit and checkpoint (fs/jbd2/transaction.c, commit.c, checkpoint.c,
journal.c), in ordered mode.

* Handles join the running transaction; a commit locks it, waits for its handles to stop, takes a
  snapshot of every metadata block the transaction dirtied (jbd2's frozen copies), then lets new
  handles start the next transaction.
* Ordered data: file data of blocks newly allocated *written* in the transaction is written and
  waited for before the transaction's log (unwritten allocations need no ordering: they read as
  zeros until their IO completion converts them, in a later transaction).
* The log is written with plain writes, then the commit block with PREFLUSH|FUA: the transaction is
  durable when that completes.
* Blocks freed in a transaction are not reused before it commits; freeing a block that is in the
  log revokes it, so replay cannot write an old copy over its next owner.
* A checkpoint writes the newest committed copy of every logged block in place, flushes, and moves
  the log tail (journal superblock).

The on-disk formats come from ``simkernel.fs.jbd2.log`` (plans of what to write); this module turns
them into bios at the right moments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from simkernel.block.blk_core import REQ_OP_WRITE, Bio
from simkernel.config import SECTOR_SIZE
from simkernel.errors import CorruptImageError
from simkernel.fs.ext4 import ondisk
from simkernel.fs.ext4.ext4 import Handle
from simkernel.fs.jbd2.log import (
    JournalGeometry,
    JournalState,
    blocks_needed,
    checkpoint,
    initial_state,
    mark_empty,
    plan_transaction,
    space_left,
)
from simkernel.kernel.base import KernelBase
from simkernel.kernel.sched import KGen, Task, WaitQueue
from simkernel.locking.rwsem import RwSemaphore

JBD2_HANDLE_CLASS = "jbd2_handle"


@dataclass
class Transaction:
    """transaction_t"""

    t_tid: int
    t_state: str = "running"  # running, locked, committing, finished
    t_updates: int = 0
    #: metadata dirtied: inode numbers, plus the bitmaps/descriptor/superblock and root directory
    t_inodes: set[int] = field(default_factory=set)
    t_bitmaps: bool = False
    t_dir: bool = False
    #: raw metadata blocks written through buffer heads (block -> content)
    t_blocks: dict[int, bytes] = field(default_factory=dict)
    t_revokes: set[int] = field(default_factory=set)
    #: the metadata this transaction logs, frozen when its commit starts (jbd2's frozen copies)
    t_frozen: dict[int, bytes] = field(default_factory=dict)
    #: blocks freed here: not reusable before this transaction commits
    t_freed: list[tuple[int, int]] = field(default_factory=list)
    #: ordered data: inode number -> (start, end) byte range to write before the commit
    t_ordered: dict[int, tuple[int, int]] = field(default_factory=dict)


class Journal:
    """journal_t"""

    def __init__(self, geom: JournalGeometry, state: JournalState) -> None:
        self.geom = geom
        self.state = state
        self.running: Transaction | None = None
        self.committing: Transaction | None = None
        self.last_committed = state.next_tid - 1
        #: committed, not yet checkpointed: tid -> {block: content}
        self.checkpoint_list: dict[int, dict[int, bytes]] = {}
        #: block -> tid of the last transaction that logged it (for revokes)
        self.logged: dict[int, int] = {}
        self.commit_task: Task | None = None
        self.wait_locked = WaitQueue("j_wait_transaction_locked")
        self.wait_updates = WaitQueue("j_wait_updates")
        self.wait_commit = WaitQueue("j_wait_done_commit")
        self.wait_commit_task = WaitQueue("j_wait_commit")
        self.aborted = False
        self.unmounted = False
        #: serializes the log head (commit) and tail (checkpoint) updates (j_checkpoint_mutex)
        self.log_mutex = RwSemaphore("&journal->j_checkpoint_mutex", "j_checkpoint_mutex")

    def needs_recovery(self) -> bool:
        """RECOVER stays set in the fs superblock from mount until a clean unmount emptied the log."""
        return not self.unmounted

    @property
    def running_tid(self) -> int | None:
        return self.running.t_tid if self.running is not None else None


class Jbd2(KernelBase):
    """The journal layer of one machine (see module docstring)."""

    # -- mount / unmount -----------------------------------------------------------------------------

    def ext4_load_journal(self) -> None:
        """ext4_load_journal(): the journal inode's superblock; the log must be empty (clean)."""
        sbi = self.sb.s_fs_info
        layout = sbi.layout
        raw = self.read_block_now(layout.journal_start)
        jsb = ondisk.decode_journal_superblock(raw, where="journal superblock")
        if jsb.start != 0:
            raise CorruptImageError(
                "journal needs recovery: replay it first (e2fsck -fy or oracle.jbd2_recovery.recover)",
                where="journal superblock",
            )
        geom = JournalGeometry.from_layout(layout, sbi.es.uuid)
        sbi.s_journal = Journal(geom, initial_state(jsb))
        # ext4_setup_super(): the filesystem is in use; recovery is needed until a clean unmount
        sbi.dirty_bitmaps = True

    def jbd2_journal_destroy(self) -> KGen:
        """jbd2_journal_destroy() at unmount: commit, checkpoint everything, mark the log empty."""
        journal: Journal = self.sb.s_fs_info.s_journal
        yield from self.jbd2_commit_and_wait(journal.running_tid)
        if journal.committing is not None:
            yield from self.jbd2_commit_and_wait(journal.committing.t_tid)
        yield from self.jbd2_log_do_checkpoint(journal)
        cp = mark_empty(journal.geom, journal.state, unmount=True)
        journal.unmounted = True
        journal.state = cp.new_state
        err = 0
        if cp.superblock_write is not None:
            err = yield from self.jbd2_write_block(
                *cp.superblock_write, "journal superblock", fua=True, preflush=True
            )
        return err

    # -- handles -------------------------------------------------------------------------------------

    def jbd2_journal_start(
        self, journal: Journal, h_type: str, nblocks: int, *, reserved: bool = False
    ) -> KGen:
        """jbd2_journal_start(): join (or create) the running transaction.

        A ``reserved`` handle (jbd2_journal_start_reserved(), what writeback uses while it holds folio
        locks) may still join a transaction whose commit is waiting for its handles to stop."""
        task = self.current
        cur = task.journal_info
        if isinstance(cur, Handle):
            cur.h_ref += 1
            return cur
        self.lockdep_acquire(journal, JBD2_HANDLE_CLASS, read=True)
        yield  # start_this_handle() may sleep
        while True:
            t = journal.running
            if t is not None and t.t_state == "locked" and not reserved:
                yield journal.wait_locked
                continue
            if t is None:
                t = Transaction(
                    journal.state.next_tid if journal.committing is None else journal.committing.t_tid + 1
                )
                t.t_tid = max(t.t_tid, journal.last_committed + 1)
                journal.running = t
            break
        t.t_updates += 1
        handle = Handle(t, h_type)
        task.journal_info = handle
        self.lockdep_hold(journal, JBD2_HANDLE_CLASS, read=True)
        return handle

    def jbd2_journal_stop(self, handle: Handle) -> int:
        """jbd2_journal_stop(): drop the handle; the last one lets a waiting commit proceed."""
        handle.h_ref -= 1
        if handle.h_ref:
            return 0
        t: Transaction = handle.h_transaction
        t.t_updates -= 1
        task = self.current
        task.journal_info = None
        journal: Journal = self.sb.s_fs_info.s_journal
        self.lockdep_release(journal)
        if t.t_updates == 0:
            self.wake_up(journal.wait_updates)
        return 0

    def jbd2_journal_dirty(self, handle: Handle, what: Any) -> None:
        """jbd2_journal_dirty_metadata() of an inode's raw inode (and extent tree), the bitmaps/GDT/
        superblock ("bitmaps") or the root directory ("dir")."""
        t: Transaction = handle.h_transaction
        if what == "bitmaps":
            t.t_bitmaps = True
        elif what == "dir":
            t.t_dir = True
        else:
            t.t_inodes.add(what.i_ino)

    def jbd2_journal_dirty_block(self, handle: Handle, blk: int, data: bytes) -> None:
        """A raw metadata block written through a buffer head in this transaction."""
        t: Transaction = handle.h_transaction
        t.t_blocks[blk] = bytes(data)
        t.t_revokes.discard(blk)

    def jbd2_defer_free(self, handle: Any, pblk: int, count: int) -> None:
        """ext4_free_blocks() with a journal: the on-disk bitmap says free now, the allocator may
        reuse the blocks only after this transaction commits; logged blocks are revoked."""
        sbi = self.sb.s_fs_info
        journal: Journal = sbi.s_journal
        t: Transaction | None = handle.h_transaction if isinstance(handle, Handle) else journal.running
        sbi.block_bitmap[pblk : pblk + count] = False
        sbi.pending_mask[pblk : pblk + count] = True
        # ext4_mb_clear_bb(): the free-clusters counter counts them at once; the buddy gets them
        # back only when the transaction commits (ext4_free_data_in_buddy())
        sbi.s_freeclusters_counter += count
        sbi.s_mb_free_pending += count
        if t is None:  # pragma: no cover - frees always happen under a handle
            return
        t.t_freed.append((pblk, count))
        t.t_bitmaps = True
        # a block the committing transaction logs is not in ``logged`` until that commit ends,
        # but it needs the revoke all the same: without it the committed copy would be
        # checkpointed home over the block's next owner (ext4_forget() revokes every freed
        # metadata block, whatever transaction holds its buffer)
        committing = journal.committing.t_frozen if journal.committing is not None else {}
        for b in range(pblk, pblk + count):
            if b in journal.logged or b in t.t_blocks or b in committing:
                t.t_revokes.add(b)
                t.t_blocks.pop(b, None)

    def ext4_jbd2_inode_add_write(self, handle: Any, inode: Any, start: int, length: int) -> None:
        """ext4_jbd2_inode_add_write(): this data must reach the disk before the transaction commits."""
        if not isinstance(handle, Handle):
            return
        t: Transaction = handle.h_transaction
        old = t.t_ordered.get(inode.i_ino)
        end = start + length - 1
        t.t_ordered[inode.i_ino] = (min(start, old[0]), max(end, old[1])) if old else (start, end)

    # -- commit --------------------------------------------------------------------------------------

    def jbd2_log_start_commit(self, journal: Journal) -> None:
        """jbd2_log_start_commit(): wake kjournald2 to commit the running transaction."""
        if journal.commit_task is None or journal.commit_task.state == "done":
            journal.commit_task = self.sched.spawn("jbd2/commit", self.kjournald2(journal))

    def kjournald2(self, journal: Journal) -> KGen:
        """kjournald2: commit the running transaction (one per wakeup)."""
        return (yield from self.jbd2_journal_commit_transaction(journal))

    def jbd2_journal_commit_transaction(self, journal: Journal) -> KGen:
        """jbd2_journal_commit_transaction()"""
        t = journal.running
        if t is None:
            return 0
        sbi = self.sb.s_fs_info
        # T_LOCKED: no new handles join; wait for the open ones to stop
        t.t_state = "locked"
        while t.t_updates:
            yield journal.wait_updates
        # snapshot the metadata as this transaction left it (jbd2's frozen copies)
        blocks = self.ext4_metadata_blocks(sorted(t.t_inodes), bitmaps=t.t_bitmaps, dir=t.t_dir)
        blocks.update(t.t_blocks)
        for b in t.t_revokes:
            blocks.pop(b, None)
        t.t_frozen = blocks
        # T_FLUSH: the next transaction may start now
        t.t_state = "committing"
        journal.committing = t
        journal.running = None
        self.wake_up(journal.wait_locked)
        # ordered data first
        yield from self.journal_submit_data_buffers(journal, t)
        yield from self.journal_finish_inode_data_buffers(journal, t)
        geom = journal.geom
        # the log head moves under the same mutex as the tail, so commit and checkpoint plans
        # always start from the state the other left
        yield from self.down_write(journal.log_mutex)
        need = blocks_needed(geom, len(blocks), len(t.t_revokes))
        if need > space_left(journal.state):
            yield from self.jbd2_checkpoint_locked(journal)
        plan = plan_transaction(geom, journal.state, t.t_tid, sorted(blocks.items()), sorted(t.t_revokes))
        err = 0
        if plan.superblock_write is not None:
            err = err or (yield from self.jbd2_write_block(*plan.superblock_write, "journal superblock"))
        bios = [self.jbd2_submit_block(fs_block, data, "journal log") for fs_block, data in plan.log_writes]
        for bio in bios:
            while not bio.done:
                yield bio.wq
            err = err or bio.status
        # the commit block: PREFLUSH makes the log durable first, FUA the commit record itself
        err = err or (
            yield from self.jbd2_write_block(
                *plan.commit_write, f"journal commit {t.t_tid}", fua=True, preflush=True
            )
        )
        if err:
            journal.aborted = True
            sbi.messages.append(f"jbd2: error {err} writing the journal; transaction {t.t_tid} lost")
        journal.state = plan.new_state
        self.up_write(journal.log_mutex)
        journal.checkpoint_list[t.t_tid] = blocks
        for b in blocks:
            journal.logged[b] = t.t_tid
        for b in t.t_revokes:
            journal.logged.pop(b, None)
            # a revoked (freed) block leaves the checkpoint lists of the transactions that logged
            # it (__jbd2_journal_remove_checkpoint() for BJ_Forget buffers at commit): once this
            # commit makes the free final, the block may be reused as data, and a checkpoint that
            # still wrote the old metadata home would overwrite that data
            for tid, logged in journal.checkpoint_list.items():
                if tid != t.t_tid:
                    logged.pop(b, None)
        # freed blocks become allocatable only now (ext4_process_freed_data())
        for pblk, count in t.t_freed:
            sbi.pending_mask[pblk : pblk + count] = False
            sbi.s_mb_free_pending -= count
        t.t_state = "finished"
        journal.committing = None
        journal.last_committed = t.t_tid
        self.wake_up(journal.wait_commit)
        return err

    def journal_submit_data_buffers(self, journal: Journal, t: Transaction) -> KGen:
        """journal_submit_data_buffers(): start writeback of the transaction's ordered data."""
        for ino in sorted(t.t_ordered):
            inode = self.sb.s_inodes.get(ino)
            if inode is not None:
                start, end = t.t_ordered[ino]
                yield from self.filemap_fdatawrite_range(inode.i_mapping, start, end, 1)
        return 0

    def journal_finish_inode_data_buffers(self, journal: Journal, t: Transaction) -> KGen:
        """journal_finish_inode_data_buffers(): wait for that writeback before the log is written."""
        for ino in sorted(t.t_ordered):
            inode = self.sb.s_inodes.get(ino)
            if inode is not None:
                start, end = t.t_ordered[ino]
                yield from self.filemap_fdatawait_range(inode.i_mapping, start, end)
        return 0

    def jbd2_commit_and_wait(self, tid: int | None) -> KGen:
        """jbd2_complete_transaction(): make sure transaction ``tid`` committed (commit it now if it
        is still running) and wait."""
        journal: Journal = self.sb.s_fs_info.s_journal
        if tid is None or journal.last_committed >= tid:
            return 0
        while journal.last_committed < tid:
            if journal.running is not None and journal.running.t_tid == tid:
                self.jbd2_log_start_commit(journal)
            elif journal.committing is None and journal.running is None:
                break
            yield journal.wait_commit
        return 0

    def jbd2_journal_force_commit_nested(self, journal: Journal) -> KGen:
        """jbd2_journal_force_commit_nested(): commit the running transaction and wait for it (or
        wait for the committing one); 1 if a commit was waited for, 0 if there was nothing to
        commit. A task holding a handle cannot commit its own transaction ("nested")."""
        t = journal.running
        if t is not None and self.current.journal_info is None:
            tid = t.t_tid
        elif journal.committing is not None:
            tid = journal.committing.t_tid
        else:
            return 0
        yield from self.jbd2_commit_and_wait(tid)
        return 1

    def jbd2_sync(self, wait: bool) -> KGen:
        """ext4_sync_fs() with a journal: commit the running transaction (and wait)."""
        journal: Journal = self.sb.s_fs_info.s_journal
        tid = journal.running_tid
        if tid is None and journal.committing is not None:
            tid = journal.committing.t_tid
        if tid is None:
            return 0
        if not wait:
            self.jbd2_log_start_commit(journal)
            return 0
        return (yield from self.jbd2_commit_and_wait(tid))

    def ext4_fsync_journal(self, inode: Any, datasync: bool) -> KGen:
        """ext4_fsync_journal(): commit the transaction holding the inode's last change."""
        journal: Journal = self.sb.s_fs_info.s_journal
        tid = inode.i_datasync_tid if datasync else inode.i_sync_tid
        yield from self.jbd2_commit_and_wait(tid)
        return (-5 if journal.aborted else 0), True

    # -- checkpoint ----------------------------------------------------------------------------------

    def jbd2_log_do_checkpoint(self, journal: Journal) -> KGen:
        """jbd2_log_do_checkpoint(): checkpoint under j_checkpoint_mutex."""
        yield from self.down_write(journal.log_mutex)
        try:
            return (yield from self.jbd2_checkpoint_locked(journal))
        finally:
            self.up_write(journal.log_mutex)

    def jbd2_checkpoint_locked(self, journal: Journal) -> KGen:
        """Write the newest committed copy of every logged block home, flush, move the log tail
        past those transactions. Transactions committed meanwhile stay for the next checkpoint."""
        if not journal.checkpoint_list:
            return 0
        tids = sorted(journal.checkpoint_list)
        through = tids[-1]
        newest: dict[int, bytes] = {}
        for tid in tids:
            newest.update(journal.checkpoint_list[tid])
        bios = [
            self.jbd2_submit_block(b, newest[b], f"meta checkpoint {self.meta_tag(b)}")
            for b in sorted(newest)
        ]
        err = 0
        for bio in bios:
            while not bio.done:
                yield bio.wq
            err = err or bio.status
        err = err or (yield from self.blkdev_issue_flush())
        cp = checkpoint(journal.geom, journal.state, through)
        journal.state = cp.new_state
        if cp.superblock_write is not None:
            err = err or (
                yield from self.jbd2_write_block(*cp.superblock_write, "journal superblock", fua=True)
            )
        for tid in tids:
            for b in journal.checkpoint_list.pop(tid):
                if journal.logged.get(b) == tid:
                    del journal.logged[b]
        return err

    # -- IO helpers ----------------------------------------------------------------------------------

    def jbd2_submit_block(
        self, fs_block: int, data: bytes, tag: str, *, fua: bool = False, preflush: bool = False
    ) -> Bio:
        bs = self.sb.s_blocksize
        bio = Bio(REQ_OP_WRITE, fs_block * (bs // SECTOR_SIZE), data, fua=fua, preflush=preflush, tag=tag)
        self.submit_bio(bio)
        return bio

    def jbd2_write_block(
        self, fs_block: int, data: bytes, tag: str, *, fua: bool = False, preflush: bool = False
    ) -> KGen:
        bio = self.jbd2_submit_block(fs_block, data, tag, fua=fua, preflush=preflush)
        while not bio.done:
            yield bio.wq
        return bio.status
