"""KernelBase: what every kernel mixin can rely on -- ``current``, the scheduler, BUG_ON/WARN_ON.

The kernel is one object per machine whose class is composed from one mixin per kernel source file
(see ``simkernel/machine.py``). Methods of one mixin call methods of others through ``self``; for the
type checker such cross-file calls are typed ``Any`` (``__getattr__`` below exists only for mypy).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from simkernel.kernel.sched import Scheduler, Task, WaitQueue
from simkernel.locking.lockdep import Lockdep
from simkernel.report import KernelBug, Report, kernel_stack, title_function


class KernelBase:
    """State shared by all kernel code of one machine."""

    sched: Scheduler
    lockdep: Lockdep
    #: WARN_ON_ONCE sites already reported
    _warned: set[str]

    if TYPE_CHECKING:

        def __getattr__(self, name: str) -> Any: ...

    def _init_base(self, sched: Scheduler) -> None:
        self.sched = sched
        self.lockdep = Lockdep()
        self._warned = set()

    @property
    def current(self) -> Task:
        """The running task (``current``)."""
        task = self.sched.current
        assert task is not None, "kernel code ran outside a task"
        return task

    def cov(self, point: str) -> None:
        """Record that a kernel decision point was reached (semantic coverage for the fuzzer)."""
        self.sched.coverage.add(point)

    def wake_up(self, wq: WaitQueue) -> None:
        self.sched.wake_up(wq)

    # -- assertions ----------------------------------------------------------------------------------

    def BUG_ON(self, cond: Any, expr: str, **values: Any) -> None:
        """BUG_ON(cond): the task oopses and the machine stops with a fatal report."""
        if cond and not self.sched.closing:
            stack = kernel_stack(2)
            fn = title_function(stack)
            raise KernelBug(
                Report(
                    category="assertion",
                    title=f"kernel BUG in {fn}",
                    message=f"BUG_ON({expr})",
                    stack=stack,
                    details={k: v for k, v in values.items()},
                    fatal=True,
                )
            )

    def WARN_ON(self, cond: Any, expr: str, *, once: bool = True, **values: Any) -> bool:
        """WARN_ON_ONCE(cond): report and continue; returns ``bool(cond)`` like the kernel macro."""
        if cond:
            stack = kernel_stack(2)
            fn = title_function(stack)
            key = f"{fn}:{expr}"
            if once and key in self._warned:
                return True
            self._warned.add(key)
            self.sched.report(
                Report(
                    category="assertion",
                    title=f"WARNING in {fn}",
                    message=f"WARN_ON({expr})",
                    stack=stack,
                    details={k: v for k, v in values.items()},
                )
            )
            return True
        return False

    def lockdep_acquire(self, lock: object, cls: str, *, read: bool) -> None:
        """lock_acquire(): record dependencies from every held class to ``cls``."""
        task = self.current
        if task.held_locks:
            rep = self.lockdep.acquire(
                task.held_locks,
                cls,
                read=read,
                task=task.name,
                step=self.sched.step_no,
                # frames: kernel_stack, this lambda, Lockdep.acquire, lockdep_acquire, the caller
                stack=lambda: kernel_stack(4),
            )
            if rep is not None:
                self.sched.report(rep)
            for _lock, prev, _read in task.held_locks:
                self.sched.coverage.add(f"lock:{prev}->{cls}")

    def lockdep_hold(self, lock: object, cls: str, *, read: bool) -> None:
        self.current.held_locks.append((lock, cls, read))

    def lockdep_release(self, lock: object, task: Task | None = None) -> None:
        held = (task or self.current).held_locks
        for i in range(len(held) - 1, -1, -1):
            if held[i][0] is lock:
                del held[i]
                return
