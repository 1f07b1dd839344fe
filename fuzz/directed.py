"""Write schedules by intent: "run T1 until the inline data is destroyed, then T0 until ...".

A :class:`DirectedChooser` follows a list of :class:`Step`\\ s. Each step names who should run -- a
task (``"T0"``, ``"kworker/"``) or a background action by label prefix (``"writeback ino=12 folio=9"``)
-- and until when. At every scheduling point it picks the option that matches the current step and
records the index it chose, so the run can be saved as an ordinary numeric schedule::

    steps = [Step("T0", until=lambda m: op_returned(m, 1)),
             Step("writeback ino=12 folio=9"),            # an action: performed once
             Step("flush-", until=task_done("flush-"))]
    schedule = directed_schedule(program, steps)           # -> [0, 0, 3, 0, ...]

Replaying that schedule with the program gives the same execution step for step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from simkernel.kernel.sched import DONE, Action, Task
from simkernel.machine import Machine

Predicate = Callable[[Machine], bool]


@dataclass
class Step:
    """Run ``who`` (task name or action label prefix) until ``until(machine)`` holds.

    An action step is performed once. A task step with ``until=None`` runs the task to completion.
    """

    who: str
    until: Predicate | None = None


class DirectedChooser:
    """Chooses options by following steps; ``decisions`` is the equivalent numeric schedule."""

    def __init__(self, machine: Machine, steps: list[Step]) -> None:
        self.machine = machine
        self.steps = list(steps)
        self.decisions: list[int] = []
        self.pos = 0
        self.action_done = False

    def _finished(self, step: Step) -> bool:
        if step.until is not None:
            return bool(step.until(self.machine))
        if self.action_done:
            return True
        tasks = [t for t in self.machine.sched.tasks if t.name.startswith(step.who)]
        return bool(tasks) and all(t.state == DONE for t in tasks)

    def choose_option(self, options: list[Any]) -> int:
        while self.pos < len(self.steps) and self._finished(self.steps[self.pos]):
            self.pos += 1
            self.action_done = False
        idx = 0
        if self.pos < len(self.steps):
            who = self.steps[self.pos].who
            for i, opt in enumerate(options):
                name = opt.name if isinstance(opt, Task) else opt.label if isinstance(opt, Action) else ""
                if name.startswith(who):
                    idx = i
                    if isinstance(opt, Action):
                        self.action_done = True
                    break
        self.decisions.append(idx)
        return idx

    def next_decision(self) -> int | None:  # pragma: no cover - choose_option is used instead
        return None


# -- predicates ------------------------------------------------------------------------------------


def op_returned(tid: int, seq: int) -> Predicate:
    """The thread's ``seq``-th syscall has returned."""

    def pred(m: Machine) -> bool:
        rec = getattr(m, "recorder", None)
        return rec is not None and any(
            op.tid == tid and op.seq == seq and op.ret is not None for op in rec.ops
        )

    return pred


def in_function(task: str, function: str) -> Predicate:
    """The task is suspended inside ``function`` (its kernel stack contains it)."""

    def pred(m: Machine) -> bool:
        for t in m.sched.tasks:
            if t.name == task and t.state != DONE:
                return function in m.sched.task_stack(t)
        return False

    return pred


def blocked(task: str) -> Predicate:
    def pred(m: Machine) -> bool:
        return any(t.name == task and t.state == "blocked" for t in m.sched.tasks)

    return pred


def task_done(prefix: str) -> Predicate:
    def pred(m: Machine) -> bool:
        tasks = [t for t in m.sched.tasks if t.name.startswith(prefix)]
        return bool(tasks) and all(t.state == DONE for t in tasks)

    return pred


def inode_state(name: str, check: Callable[[Any], bool]) -> Predicate:
    """A predicate on the in-memory inode of file ``name`` (authoring aid, not an oracle)."""

    def pred(m: Machine) -> bool:
        inode = m.kernel.lookup(name)
        return inode is not None and bool(check(inode))

    return pred


def any_of(*preds: Predicate) -> Predicate:
    return lambda m: any(p(m) for p in preds)
