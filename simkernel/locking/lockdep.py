"""Lock-order validator, as kernel/locking/lockdep.c does it (simplified to what the model needs).

Every acquisition adds a dependency edge from each lock class the task already holds to the class it
acquires, remembering the call chain that made the edge. A new edge that closes a cycle in the class
graph is reported as "possible circular locking dependency detected" -- syzkaller titles this
"possible deadlock in <function>" -- even when no deadlock happened in this run. That is the detector
that rejects a fix taking ``inode_lock`` under ``mmap_lock``.

All our rw-semaphore read acquisitions are *non-recursive* reads (``down_read``), for which lockdep
treats any cycle as a deadlock, so no read/recursive-read path filtering is needed. The page (folio)
lock is a bit lock without a lockdep map in Linux, and so it is not tracked here either; the wait-for
deadlock detector covers it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from simkernel.report import Report, title_function


@dataclass
class Edge:
    """``prev -> next``: ``next`` was acquired while ``prev`` was held."""

    prev: str
    next: str
    task: str
    step: int
    #: kernel stack at the acquisition of ``next`` (innermost first)
    stack: list[str] = field(default_factory=list)
    read: bool = False

    def describe(self) -> str:
        chain = " <- ".join(self.stack[:8])
        mode = "read" if self.read else "write"
        return f"{self.prev} --> {self.next} ({mode}) by {self.task} at step {self.step}: {chain}"


class Lockdep:
    """The class-level dependency graph of one machine."""

    def __init__(self) -> None:
        #: adjacency in insertion order (deterministic)
        self.graph: dict[str, dict[str, Edge]] = {}
        self.reported: set[frozenset[str]] = set()
        self.reports: list[Report] = []

    def edges(self) -> list[Edge]:
        return [e for succ in self.graph.values() for e in succ.values()]

    def _path(self, src: str, dst: str) -> list[Edge] | None:
        """Breadth-first path src ->* dst (deterministic: insertion order)."""
        if src == dst:
            return []
        prev: dict[str, Edge] = {}
        frontier = [src]
        seen = {src}
        while frontier:
            nxt: list[str] = []
            for node in frontier:
                for to, edge in self.graph.get(node, {}).items():
                    if to in seen:
                        continue
                    seen.add(to)
                    prev[to] = edge
                    if to == dst:
                        path = [edge]
                        while path[0].prev != src:
                            path.insert(0, prev[path[0].prev])
                        return path
                    nxt.append(to)
            frontier = nxt
        return None

    def acquire(
        self,
        held: list[tuple[object, str, bool]],
        cls: str,
        *,
        read: bool,
        task: str,
        step: int,
        stack: Callable[[], list[str]],
    ) -> Report | None:
        """Record edges from every held class to ``cls``; return a report if one closes a cycle.

        ``stack()`` gives the kernel call chain; it is called only for a new edge or a report
        (at most once): most nested acquisitions repeat a known edge, and walking the frames on
        every one of them cost a few percent of a fuzzing run."""
        report: Report | None = None
        where: list[str] | None = None
        for _lock, prev, _prev_read in held:
            if prev == cls:
                # two locks of one class nested without a subclass annotation
                key = frozenset({cls})
                if key not in self.reported:
                    self.reported.add(key)
                    if where is None:
                        where = stack()
                    report = Report(
                        category="lock-order",
                        title=f"possible deadlock in {title_function(where)}",
                        message=f"possible recursive locking detected: {cls} acquired while holding {cls}",
                        task=task,
                        step=step,
                        stack=list(where),
                        details={"held": [h[1] for h in held]},
                    )
                continue
            succ = self.graph.setdefault(prev, {})
            if cls in succ:
                continue
            if where is None:
                where = stack()
            edge = Edge(prev, cls, task, step, list(where), read)
            back = self._path(cls, prev)
            succ[cls] = edge
            if back is None:
                continue
            cycle_classes = frozenset([prev, cls, *(e.next for e in back)])
            if cycle_classes in self.reported:
                continue
            self.reported.add(cycle_classes)
            report = Report(
                category="lock-order",
                title=f"possible deadlock in {title_function(where)}",
                message=(
                    f"possible circular locking dependency detected: {task} is trying to acquire "
                    f"{cls} while holding {prev}, but {cls} --> {prev} already exists"
                ),
                task=task,
                step=step,
                stack=list(where),
                details={
                    "new dependency": edge.describe(),
                    "existing dependency chain": [e.describe() for e in back],
                    "held locks": [h[1] for h in held],
                },
            )
        if report is not None:
            self.reports.append(report)
        return report
