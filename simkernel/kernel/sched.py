"""The deterministic scheduler: tasks are generators, every choice comes from the program's schedule.

Kernel paths are generators. They ``yield`` (None) at preemption points -- lock acquisition
(``might_sleep``), between folios (``cond_resched``), before waiting for IO -- and ``yield wq`` to block
on a :class:`WaitQueue` until it is woken. The scheduler runs one *segment* of one task per step: from
one yield to the next.

At every step the scheduler asks a :class:`Chooser` for a decision ``d``. Decision 0 keeps the current
task running (or, when it blocked or finished, takes the default pick), so a schedule that is mostly
zeros has few context switches. Any other ``d`` selects ``options[d % len(options)]`` among: the
current task, the other runnable tasks (round-robin order after the current one), and the background
actions the machine offers (writeback, IO completion, reclaim, fault arming, ...). The modulo keeps any
integer a valid decision, which is what makes schedules easy to mutate and shrink. When the schedule
runs out the same rule continues with d = 0: a fixed default policy.

Nothing here depends on wall clock, randomness or hash order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from simkernel.report import LOCK_PRIMITIVES, KernelBug, Report, kernel_name, title_function

RUNNABLE = "runnable"
BLOCKED = "blocked"
DONE = "done"

#: a kernel path: yields None (preemption point) or a WaitQueue (block); returns a value
KGen = Generator[Any, None, Any]


class WaitQueue:
    """A wait queue head (``wait_queue_head_t``). ``owner`` answers who must act to wake it."""

    __slots__ = ("name", "owner", "waiters")

    def __init__(self, name: str, owner: Any = None) -> None:
        self.name = name
        #: object with a ``holders() -> list[Task]`` method (a lock), used for wait-for graphs
        self.owner = owner
        self.waiters: list[Task] = []

    def holders(self) -> list[Task]:
        fn = getattr(self.owner, "holders", None)
        return list(fn()) if fn is not None else []

    def __repr__(self) -> str:
        return f"<WaitQueue {self.name}>"


class Task:
    """A task_struct: a user thread or a kernel thread (flusher, kworker)."""

    __slots__ = (
        "blocked_since",
        "gen",
        "held_locks",
        "journal_info",
        "kind",
        "last_where",
        "name",
        "result",
        "state",
        "tid",
        "wait",
    )

    def __init__(self, tid: int, name: str, gen: KGen, kind: str) -> None:
        self.tid = tid
        self.name = name
        self.gen = gen
        #: "user" or "kthread"
        self.kind = kind
        self.state = RUNNABLE
        self.wait: WaitQueue | None = None
        self.blocked_since = 0
        #: current->journal_info: the running jbd2/ext4 handle, if any
        self.journal_info: Any = None
        #: lockdep's held-lock stack: (lock object, class name, read)
        self.held_locks: list[tuple[Any, str, bool]] = []
        self.result: Any = None
        #: the kernel function the task last stopped in (for timelines)
        self.last_where = ""

    def __repr__(self) -> str:
        return f"<Task {self.name} {self.state}>"


@dataclass(frozen=True)
class Action:
    """A background event the schedule may choose: ``label`` is stable and human-readable.

    ``run`` performs it atomically and may return a new kernel task to start (a flusher thread);
    that task then runs its first segment in the same step.
    """

    label: str
    run: Callable[[], Task | None]
    #: which program actor enables it ("writeback", "complete", ...)
    actor: str


class Chooser(Protocol):
    """Source of scheduling decisions (the program's schedule)."""

    def next_decision(self) -> int | None:
        """The next decision, or None when the schedule is exhausted (use 0)."""
        ...


class ListChooser:
    """Decisions from a list; the number consumed is ``pos``."""

    def __init__(self, decisions: Iterable[int] = ()) -> None:
        self.decisions = list(decisions)
        self.pos = 0

    def next_decision(self) -> int | None:
        if self.pos < len(self.decisions):
            d = self.decisions[self.pos]
            self.pos += 1
            return d
        self.pos += 1
        return None


@dataclass
class TraceEvent:
    """One step of the execution timeline: which task ran (or which action fired)."""

    step: int
    who: str
    what: str


class Stop(Exception):
    """Internal: the machine stopped (fatal report, or the run limit)."""


class Scheduler:
    """Runs tasks one segment at a time; see the module docstring for the decision rule."""

    def __init__(
        self,
        chooser: Chooser,
        actions: Callable[[bool], list[Action]],
        *,
        max_steps: int = 200_000,
        trace: bool = True,
    ) -> None:
        self.chooser = chooser
        #: the machine's background actions; the flag says whether tasks are runnable (see _options)
        self.actions = actions
        #: every task spawned, in tid order (finished ones too: directed schedules ask about them)
        self.tasks: list[Task] = []
        #: the unfinished ones, in tid order -- what every step scans (finished workers pile up in
        #: ``tasks``: each IO completion and journal commit is a task of its own)
        self.live: list[Task] = []
        self.current: Task | None = None
        self.step_no = 0
        self.max_steps = max_steps
        self.reports: list[Report] = []
        self.stopped = False
        self.trace_on = trace
        self.trace: list[TraceEvent] = []
        self._next_tid = 0
        #: number of decisions that changed what would have run by default
        self.switches = 0
        #: step hooks (the runner records history marks here)
        self.on_report: Callable[[Report], None] | None = None
        #: set while shutdown() unwinds the tasks of a stopped machine
        self.closing = False
        #: semantic coverage: kernel decision points, lock-order edges, and the functions tasks were
        #: preempted or blocked in (a set of strings; only membership is ever used)
        self.coverage: set[str] = set()

    # -- tasks ---------------------------------------------------------------------------------------

    def spawn(self, name: str, gen: KGen, kind: str = "kthread") -> Task:
        task = Task(self._next_tid, name, gen, kind)
        self._next_tid += 1
        self.tasks.append(task)
        self.live.append(task)
        return task

    def wake_up(self, wq: WaitQueue) -> None:
        """wake_up_all(): every waiter becomes runnable and re-checks its condition."""
        if not wq.waiters:
            return
        for task in wq.waiters:
            if task.state == BLOCKED and task.wait is wq:
                task.state = RUNNABLE
                task.wait = None
        wq.waiters.clear()

    def live_tasks(self, kind: str | None = None) -> list[Task]:
        if kind is None:
            return list(self.live)
        return [t for t in self.live if t.kind == kind]

    # -- reports -------------------------------------------------------------------------------------

    def report(self, rep: Report) -> None:
        if self.closing:
            return
        rep.step = self.step_no
        if not rep.task and self.current is not None:
            rep.task = self.current.name
        self.reports.append(rep)
        if self.on_report is not None:
            self.on_report(rep)
        if rep.fatal:
            self.stopped = True

    # -- the step loop -------------------------------------------------------------------------------

    def _runnable_order(self) -> list[Task]:
        """Runnable tasks, round-robin from the one after the current task (by tid)."""
        runnable = [t for t in self.live if t.state == RUNNABLE]
        cur = self.current
        if cur is None or not runnable:
            return runnable
        after = [t for t in runnable if t.tid > cur.tid]
        before = [t for t in runnable if t.tid < cur.tid]
        own = [cur] if cur.state == RUNNABLE else []
        return own + after + before

    def _options(self) -> list[Task | Action]:
        tasks = self._runnable_order()
        acts = self.actions(bool(tasks))
        return [*tasks, *acts]

    def step(self) -> bool:
        """Run one step. Returns False when there is nothing left to run."""
        if self.stopped:
            return False
        if self.step_no >= self.max_steps:
            self._hang()
            return False
        cur = self.current
        pick: Task | Action
        split = getattr(self.chooser, "choose_split", None)
        choose = getattr(self.chooser, "choose_option", None)
        if split is not None:
            # a planning chooser sees the runnable tasks, and the background actions only when it
            # asks: it picks a task at most steps, and enumerating the actions (every dirty folio,
            # every evictable one) was a tenth of a run's time. The options are the same list
            # either way (tasks first), so a decision index means the same thing
            tasks = self._runnable_order()
            acts: list[Action] | None = None

            def actions() -> list[Action]:
                nonlocal acts
                if acts is None:
                    acts = self.actions(bool(tasks))
                return acts

            if not tasks and not actions():
                return False
            idx = split(tasks, actions)
            pick = tasks[idx] if idx < len(tasks) else actions()[idx - len(tasks)]
        elif choose is not None:
            # a directed chooser (an authoring tool) sees the options and picks one by intent
            options = self._options()
            if not options:
                return False
            pick = options[choose(options) % len(options)]
        else:
            d = self.chooser.next_decision() or 0
            if d == 0 and cur is not None and cur.state == RUNNABLE:
                # the fast path: no need to enumerate options
                pick = cur
            elif d == 0 and (tasks := self._runnable_order()):
                # option 0 is the first runnable task: the actions come after the tasks
                pick = tasks[0]
            else:
                options = self._options()
                if not options:
                    return False
                pick = options[d % len(options)]
                if d != 0:
                    self.switches += 1
        self.step_no += 1
        if isinstance(pick, Action):
            if self.trace_on:
                self.trace.append(TraceEvent(self.step_no, pick.actor, pick.label))
            new_task = pick.run()
            if new_task is None or self.stopped:
                return True
            pick = new_task
        self._run_task(pick)
        return True

    def _run_task(self, task: Task) -> None:
        self.current = task
        if self.trace_on and (not self.trace or self.trace[-1].who != task.name):
            resumes = f" (in {task.last_where})" if task.last_where else ""
            self.trace.append(TraceEvent(self.step_no, task.name, f"runs{resumes}"))
        try:
            value = task.gen.send(None)
        except StopIteration as stop:
            task.state = DONE
            self.live.remove(task)
            task.result = stop.value
            return
        except KernelBug as bug:
            task.state = DONE
            self.live.remove(task)
            self.report(bug.report)
            self.stopped = True
            return
        # where the task stopped: the innermost function that is not a lock primitive, and the
        # primitive it was in (a preemption site of the kernel path)
        gen: Any = task.gen
        where = prim = ""
        while gen is not None:
            name = gen.gi_code.co_name
            if name in LOCK_PRIMITIVES:
                prim = name
            else:
                where, prim = name, ""
            gen = getattr(gen, "gi_yieldfrom", None)
        self.coverage.add(f"at:{where}:{prim or ('block' if value is not None else 'yield')}")
        task.last_where = f"{where}/{prim}" if prim else where
        if value is not None:
            if not isinstance(value, WaitQueue):  # pragma: no cover - a model bug
                raise TypeError(f"kernel path yielded {value!r}; yield None or a WaitQueue")
            task.state = BLOCKED
            task.wait = value
            task.blocked_since = self.step_no
            value.waiters.append(task)

    def run(self, until: Callable[[], bool]) -> None:
        """Step until ``until()`` holds, nothing can run, or the machine stopped."""
        while not self.stopped and not until():
            if not self.step():
                if not until() and not self.stopped:
                    self._deadlock()
                return

    def shutdown(self) -> None:
        """Unwind every unfinished task (a stopped machine): close each generator as *its* task, so
        cleanup code runs with the right ``current`` now rather than at garbage collection."""
        self.closing = True
        while self.live:
            task = self.live.pop(0)
            self.current = task
            # unwinding a dead machine: whatever cleanup code raises, there is nothing to report
            with contextlib.suppress(Exception):
                task.gen.close()
            task.state = DONE
        self.current = None

    # -- detectors -----------------------------------------------------------------------------------

    def blocked_function(self, task: Task) -> str:
        """Innermost kernel function the task is suspended in (walks the yield-from chain)."""
        return title_function(self.task_stack(task))

    @staticmethod
    def task_stack(task: Task) -> list[str]:
        names: list[str] = []
        gen: Any = task.gen
        while gen is not None:
            code = getattr(gen, "gi_code", None)
            frame = getattr(gen, "gi_frame", None)
            module = frame.f_globals.get("__name__", "") if frame is not None else ""
            if code is not None and (module.startswith("simkernel") or "variant" in module):
                names.append(kernel_name(code.co_name))
            gen = getattr(gen, "gi_yieldfrom", None)
        names.reverse()
        hidden = {"down_read", "down_write", "folio_lock", "__folio_lock", "wait_on", "_acquire"}
        shown = [n for n in names if n not in hidden]
        return shown or names

    def wait_for_cycle(self) -> list[Task]:
        """A cycle in the wait-for graph (task -> holders of what it waits on), if any."""
        blocked = [t for t in self.live if t.state == BLOCKED]
        edges: dict[int, list[Task]] = {}
        for t in blocked:
            assert t.wait is not None
            edges[t.tid] = [h for h in t.wait.holders() if h is not t]
        for start in blocked:
            path: list[Task] = []
            seen: set[int] = set()
            node: Task | None = start
            while node is not None and node.tid not in seen:
                seen.add(node.tid)
                path.append(node)
                nxt = [h for h in edges.get(node.tid, []) if h.state == BLOCKED]
                node = nxt[0] if nxt else None
            if node is not None and node in path:
                return path[path.index(node) :]
        return []

    def _deadlock(self) -> None:
        blocked = [t for t in self.live if t.state == BLOCKED]
        if not blocked:
            return
        cycle = self.wait_for_cycle()
        if cycle:
            first = cycle[0]
            lines = []
            for t in cycle:
                assert t.wait is not None
                holders = ", ".join(h.name for h in t.wait.holders()) or "-"
                lines.append(
                    f"{t.name} waits for {t.wait.name} held by {holders} in {self.blocked_function(t)}"
                )
            rep = Report(
                category="deadlock",
                title=f"deadlock in {self.blocked_function(first)}",
                message="every live task is blocked; wait-for cycle found",
                task=first.name,
                stack=self.task_stack(first),
                details={"cycle": lines},
                fatal=True,
            )
        else:
            first = blocked[0]
            rep = Report(
                category="hang",
                title=f"INFO: task hung in {self.blocked_function(first)}",
                message="every live task is blocked and nothing can wake them",
                task=first.name,
                stack=self.task_stack(first),
                details={"blocked": [f"{t.name} on {t.wait.name if t.wait else '?'}" for t in blocked]},
                fatal=True,
            )
        self.report(rep)

    def _hang(self) -> None:
        cur = self.current
        name = cur.name if cur else "?"
        fn = self.blocked_function(cur) if cur else "?"
        self.report(
            Report(
                category="hang",
                title=f"INFO: task hung in {fn}",
                message=f"no progress after {self.max_steps} scheduler steps (livelock)",
                task=name,
                fatal=True,
            )
        )
