"""Read-write semaphores (kernel/locking/rwsem.c): i_rwsem, mmap_lock, invalidate_lock, xattr_sem,
i_data_sem. Real objects with owners and wait queues, tracked by lockdep.

Fairness follows rwsem's main rule: once a writer waits, new readers queue behind it (otherwise a
stream of readers could starve writers). That is also what makes read-side recursion deadlock-prone,
as it is in Linux.
"""

from __future__ import annotations

from simkernel.kernel.base import KernelBase
from simkernel.kernel.sched import KGen, Task, WaitQueue


class RwSemaphore:
    """struct rw_semaphore. ``cls`` is the lockdep class name, ``name`` the instance."""

    __slots__ = ("cls", "name", "readers", "waiting_writers", "wq", "writer")

    def __init__(self, cls: str, name: str) -> None:
        self.cls = cls
        self.name = name
        self.readers: list[Task] = []
        self.writer: Task | None = None
        self.waiting_writers = 0
        self.wq = WaitQueue(name, self)

    def holders(self) -> list[Task]:
        return [*self.readers, self.writer] if self.writer is not None else list(self.readers)

    def is_locked(self) -> bool:
        return self.writer is not None or bool(self.readers)

    def __repr__(self) -> str:
        return f"<rwsem {self.name} w={self.writer} r={self.readers}>"


class Locking(KernelBase):
    """down_read/down_write/up_read/up_write and friends."""

    def down_read(self, sem: RwSemaphore) -> KGen:
        """down_read(): may sleep."""
        task = self.current
        self.lockdep_acquire(sem, sem.cls, read=True)
        yield  # might_sleep(): a preemption point
        while sem.writer is not None or sem.waiting_writers:
            yield sem.wq
        sem.readers.append(task)
        self.lockdep_hold(sem, sem.cls, read=True)

    def down_write(self, sem: RwSemaphore) -> KGen:
        """down_write(): may sleep."""
        task = self.current
        self.lockdep_acquire(sem, sem.cls, read=False)
        yield
        if sem.writer is not None or sem.readers:
            sem.waiting_writers += 1
            while sem.writer is not None or sem.readers:
                yield sem.wq
            sem.waiting_writers -= 1
        sem.writer = task
        self.lockdep_hold(sem, sem.cls, read=False)

    def down_read_trylock(self, sem: RwSemaphore) -> bool:
        if sem.writer is not None or sem.waiting_writers:
            return False
        self.lockdep_acquire(sem, sem.cls, read=True)
        sem.readers.append(self.current)
        self.lockdep_hold(sem, sem.cls, read=True)
        return True

    def down_write_trylock(self, sem: RwSemaphore) -> bool:
        if sem.writer is not None or sem.readers:
            return False
        self.lockdep_acquire(sem, sem.cls, read=False)
        sem.writer = self.current
        self.lockdep_hold(sem, sem.cls, read=False)
        return True

    def up_read(self, sem: RwSemaphore) -> None:
        task = self.current
        self.BUG_ON(task not in sem.readers, "up_read() by a task not holding the lock", lock=sem.name)
        sem.readers.remove(task)
        self.lockdep_release(sem)
        self.wake_up(sem.wq)

    def up_write(self, sem: RwSemaphore) -> None:
        self.BUG_ON(
            sem.writer is not self.current, "up_write() by a task not holding the lock", lock=sem.name
        )
        sem.writer = None
        self.lockdep_release(sem)
        self.wake_up(sem.wq)

    def might_lock_read(self, sem: RwSemaphore) -> None:
        """might_lock_read(): tell lockdep this context may take ``sem`` for read (no locking)."""
        self.lockdep_acquire(sem, sem.cls, read=True)

    def lockdep_assert_held(self, sem: RwSemaphore) -> None:
        task = self.current
        self.WARN_ON(task is not sem.writer and task not in sem.readers, f"lockdep_assert_held({sem.cls})")
