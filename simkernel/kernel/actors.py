"""Background actors the schedule can choose at any step: writeback, IO completion, reclaim,
drop_caches, and fault arming. Their order is stable (a schedule decision names an index).
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Literal

from simkernel.kernel.base import KernelBase
from simkernel.kernel.sched import Action, Task

#: every actor a program may enable, in option order
ACTORS = (
    "writeback",
    "complete",
    "reclaim",
    "drop_caches",
    "fail_alloc",
    "fail_reserve",
    "fail_write",
    "fail_read",
)


class Actors(KernelBase):
    actors: frozenset[str]

    def background_actions(self, tasks_runnable: bool) -> list[Action]:
        """The background events available now (see Scheduler for how decisions pick them)."""
        acts: list[Action] = []
        enabled = self.actors
        # IO completion is always possible when nothing else can run: a task waiting on IO must not
        # hang just because the program did not enable the "complete" actor
        if "complete" in enabled or not tasks_runnable:
            for bio in list(self.inflight):
                acts.append(Action(f"complete {bio.op} {bio.tag}", self._complete_action(bio), "complete"))
        if not tasks_runnable and not acts:
            return acts
        sb = getattr(self, "sb", None)
        if sb is None:
            return acts
        if "writeback" in enabled:
            dirty = []
            for ino in sorted(sb.s_inodes):
                indices = sb.s_inodes[ino].i_mapping.dirty_indices()
                if indices:
                    dirty.append((ino, indices))
            if dirty:
                acts.append(Action("writeback all", self._writeback_action(None, None), "writeback"))
            for ino, indices in dirty:
                acts.append(Action(f"writeback ino={ino}", self._writeback_action(ino, None), "writeback"))
                for index in indices:
                    acts.append(
                        Action(
                            f"writeback ino={ino} folio={index}",
                            self._writeback_action(ino, index),
                            "writeback",
                        )
                    )
        journal = sb.s_fs_info.s_journal
        if "writeback" in enabled and journal is not None:
            # kjournald2's periodic commit, and metadata writeback that checkpoints the log
            if journal.running is not None and (
                journal.commit_task is None or journal.commit_task.state == "done"
            ):
                acts.append(Action("jbd2 commit", self._commit_action, "writeback"))
            if journal.checkpoint_list and journal.committing is None:
                acts.append(Action("jbd2 checkpoint", self._checkpoint_action, "writeback"))
        if "reclaim" in enabled:
            for ino in sorted(sb.s_inodes):
                mapping = sb.s_inodes[ino].i_mapping
                for index in sorted(mapping.i_pages):
                    if self.folio_evictable_now(mapping.i_pages[index]):
                        acts.append(
                            Action(
                                f"reclaim ino={ino} folio={index}",
                                self._reclaim_action(ino, index),
                                "reclaim",
                            )
                        )
        if "drop_caches" in enabled:
            acts.append(Action("drop_caches", self._drop_caches_action, "drop_caches"))
        sbi = sb.s_fs_info
        if "fail_alloc" in enabled and "alloc" not in sbi.inject:
            acts.append(Action("fail next block allocation (ENOSPC)", self._arm("alloc"), "fail_alloc"))
        if "fail_reserve" in enabled and "reserve" not in sbi.inject:
            acts.append(
                Action("fail next delalloc reservation (ENOSPC)", self._arm("reserve"), "fail_reserve")
            )
        if "fail_write" in enabled:
            acts.append(Action("fail next write IO (EIO)", self._arm_io("write"), "fail_write"))
        if "fail_read" in enabled:
            acts.append(Action("fail next read IO (EIO)", self._arm_io("read"), "fail_read"))
        return acts

    def _complete_action(self, bio: object) -> Callable[[], Task | None]:
        def run() -> Task | None:
            self.bio_complete(bio)
            return None

        return run

    def _writeback_action(self, ino: int | None, index: int | None) -> Callable[[], Task | None]:
        def run() -> Task | None:
            if ino is None:
                return self.sched.spawn("flush-all", self.wb_writeback(None, "schedule"))
            inode = self.sb.s_inodes[ino]
            if index is None:
                return self.sched.spawn(f"flush-{ino}", self.wb_writeback([inode], "schedule"))
            ps = self.page_size
            return self.sched.spawn(
                f"flush-{ino}:{index}",
                self.wb_writeback_range(inode, index * ps, index * ps + ps - 1, "schedule"),
            )

        return run

    def _reclaim_action(self, ino: int, index: int) -> Callable[[], Task | None]:
        def run() -> Task | None:
            folio = self.sb.s_inodes[ino].i_mapping.i_pages.get(index)
            if folio is not None:
                self.evict_folio(folio)
            return None

        return run

    def _commit_action(self) -> Task | None:
        journal = self.sb.s_fs_info.s_journal
        self.jbd2_log_start_commit(journal)
        return journal.commit_task

    def _checkpoint_action(self) -> Task | None:
        journal = self.sb.s_fs_info.s_journal
        return self.sched.spawn("jbd2/checkpoint", self.jbd2_log_do_checkpoint(journal))

    def _drop_caches_action(self) -> Task | None:
        self.drop_caches()
        return None

    def _arm(self, what: str) -> Callable[[], Task | None]:
        def run() -> Task | None:
            self.sb.s_fs_info.inject[what] = errno.ENOSPC
            return None

        return run

    def _arm_io(self, op: Literal["read", "write"]) -> Callable[[], Task | None]:
        def run() -> Task | None:
            self.bdev.inject(op)
            return None

        return run
