"""Mutations of programs and the exploration strategy for schedules.

Program mutations
    insert / delete / duplicate / swap syscalls, move a syscall to another thread, change an
    argument (toward block and folio edges, small values, another file, another fallocate mode,
    another data seed), toggle an actor, splice two programs, and perturb the schedule. Every
    mutation returns a *valid* program (it is re-validated), or ``None`` when it does not apply.

Schedule exploration: PCT with preemption bounding
    Uniformly random scheduler decisions switch tasks at nearly every step, which almost never
    produces the few, well-placed preemptions that concurrency bugs need. Schedules are instead
    *planned* with the probabilistic concurrency testing scheduler of Burckhardt, Kothari,
    Musuvathi and Nagarakatte, "A Randomized Scheduler with Probabilistic Guarantees of Finding
    Bugs", ASPLOS 2010:

    * every user thread gets a random distinct priority; the scheduler always runs the
      highest-priority runnable task;
    * ``d - 1`` *priority change points* are drawn uniformly over the expected number of steps
      ``k`` (measured on the parent's run); at a change point the running task's priority drops
      below every other, which is a preemption exactly there. PCT finds any bug of depth ``d``
      with probability at least ``1 / (n * k^(d-1))`` for ``n`` threads;
    * background actions of the model (writeback, IO completion, reclaim, drop_caches, fault
      arming) are extra one-step events placed the same way: at an *action point* the plan fires
      one available action, choosing first among the actor kinds on offer (uniformly), then among
      that kind's options, so a kind with many options (one writeback per dirty folio) does not
      crowd out the others;
    * kernel threads started by actions or by the kernel (flushers, IO completion workers, the
      journal thread) get the top priority when they appear (they run until they block, like the
      model's default policy), or, with small probability, a random one;
    * *preemption bounding* (Musuvathi and Qadeer, PLDI 2007): the number of change points plus
      action points is small (geometric, mostly 1 to 3), since most concurrency bugs need few
      preemptions;
    * *background noise*: some plans also fire a random available background action at each
      step with a small probability (the ``noise`` level, drawn per plan). This is the busy-system
      regime fsx and stress tests run in, where writeback, IO completion and reclaim happen all
      the time: a window that needs several background events in a row (a folio written back,
      its IO completed and converted, then the folio evicted, all while one syscall runs) is
      deeper than a handful of planned points reach, but a run with a few dozen random events
      in it hits it often. Thread preemptions stay planned (PCT): noise never switches user
      threads.

    A :class:`Plan` runs through :class:`PlanChooser` (the scheduler asks it at every step and it
    sees the options); the decisions it took are recorded and become the program's numeric
    ``schedule``, which replays the same run without the plan. Plans are perturbed (move, add or
    drop a point, re-draw priorities) and recorded schedules are perturbed directly (add or drop a
    preemption, shift one, change its target, truncate), again keeping few non-zero decisions.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from fuzz.generate import FILE_NAMES, POOL_SHARE, SPAN_FOLIOS, Generator, edge_int, near, offset_pools
from fuzz.program import (
    ACTORS,
    FALLOCATE_MODES,
    MAX_LEN,
    MAX_OFF,
    MAX_SCHEDULE_VALUE,
    OPS,
    DataSpec,
    Program,
    Syscall,
)
from simkernel.errors import ProgramError
from simkernel.kernel.sched import Action, Task

__all__ = [
    "MAX_CALLS",
    "Mutator",
    "Plan",
    "PlanChooser",
    "perturb_schedule",
    "random_plan",
    "trim_schedule",
]

#: programs do not grow beyond this many syscalls through mutation
MAX_CALLS = 16
MAX_THREADS = 3


# --------------------------------------------------------------------------------------------------
# schedule plans (PCT)


@dataclass(frozen=True)
class Plan:
    """A PCT schedule plan.

    ``priorities[t]`` is user thread ``t``'s initial priority (higher runs first);
    ``changes`` are the decision indices (program steps) where the running task's priority drops;
    ``actions`` are ``(step, kind_pick, option_pick)``: at the first step at or after ``step`` where
    an action is available, fire one: kind ``kind_pick % len(kinds)``, then option
    ``option_pick % len(options of that kind)``; ``noise`` is the probability, at each step with
    no planned action due, of firing a random available action (kind, then option, uniformly);
    ``seed`` drives the noise and the rare random priority of a new kernel thread.
    """

    priorities: tuple[int, ...]
    changes: tuple[int, ...] = ()
    actions: tuple[tuple[int, int, int], ...] = ()
    seed: int = 0
    noise: float = 0.0

    @property
    def points(self) -> int:
        return len(self.changes) + len(self.actions)

    def to_json(self) -> dict[str, Any]:
        return {
            "priorities": list(self.priorities),
            "changes": list(self.changes),
            "actions": [list(a) for a in self.actions],
            "seed": self.seed,
            "noise": self.noise,
        }


def _action_groups(options: list[Any]) -> list[list[int]]:
    """Indices of the background actions among ``options``, one group per actor kind, in option
    order (a plan picks a kind first, then an option of it)."""
    groups: dict[str, list[int]] = {}
    for i, o in enumerate(options):
        if isinstance(o, Action):
            groups.setdefault(o.actor, []).append(i)
    return list(groups.values())


class PlanChooser:
    """Follows a :class:`Plan`; ``decisions`` is the numeric schedule it took (``pos`` of them)."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.decisions: list[int] = []
        self.pos = 0
        self.prio: dict[int, float] = {}
        self.low = 0.0
        self.rng = random.Random(plan.seed)
        self.changes = set(plan.changes)
        self.pending: list[tuple[int, int]] = []
        self.actions = sorted(plan.actions)
        self.next_action = 0

    def _priority(self, task: Task) -> float:
        p = self.prio.get(task.tid)
        if p is None:
            if task.kind == "user" and task.name[1:].isdigit():
                t = int(task.name[1:])
                prios = self.plan.priorities
                p = float(prios[t]) if t < len(prios) else float(-t)
            else:
                top = max(self.prio.values(), default=0.0)
                p = top + 1.0 if self.rng.random() < 0.9 else self.rng.uniform(self.low, top + 1.0)
            self.prio[task.tid] = p
        return p

    def choose_option(self, options: list[Any]) -> int:
        """Pick among ``options`` (the runnable tasks first, then the background actions)."""
        n = sum(1 for o in options if isinstance(o, Task))
        acts = options[n:]
        return self.choose_split(options[:n], lambda: acts)

    def choose_split(self, tasks: list[Task], actions: Callable[[], list[Any]]) -> int:
        """Pick an option: an index into ``tasks + actions()``. ``actions`` is only called when
        the plan may fire one (a planned action due, a noise draw, or no task runnable): most
        steps run a task, and the scheduler enumerates the actions lazily for that reason."""
        step = self.pos
        self.pos += 1
        while self.next_action < len(self.actions) and self.actions[self.next_action][0] <= step:
            _, kind_pick, opt_pick = self.actions[self.next_action]
            self.pending.append((kind_pick, opt_pick))
            self.next_action += 1
        if step in self.changes and tasks:
            # PCT change point: the task that would run now drops below everyone
            best = max(tasks, key=self._priority)
            self.low -= 1.0
            self.prio[best.tid] = self.low
        idx = 0
        n = len(tasks)
        if self.pending:
            groups = _action_groups(actions())
            if groups:
                kind_pick, opt_pick = self.pending.pop(0)
                group = groups[kind_pick % len(groups)]
                idx = n + group[opt_pick % len(group)]
                self.decisions.append(idx)
                return idx
        if self.plan.noise and self.rng.random() < self.plan.noise:
            groups = _action_groups(actions())
            if groups:
                group = groups[self.rng.randrange(len(groups))]
                idx = n + group[self.rng.randrange(len(group))]
                self.decisions.append(idx)
                return idx
        if tasks:
            # the highest priority; ties go to the earlier option (the current task first)
            best_p = max(self._priority(t) for t in tasks)
            idx = next(i for i, t in enumerate(tasks) if self._priority(t) == best_p)
        self.decisions.append(idx)
        return idx

    def next_decision(self) -> int | None:  # pragma: no cover - choose_option is used instead
        return None


def trim_schedule(schedule: Sequence[int]) -> tuple[int, ...]:
    """Drop trailing zeros (the scheduler continues with 0 when the schedule runs out)."""
    out = list(schedule)
    while out and out[-1] == 0:
        out.pop()
    return tuple(out)


def _n_points(rng: random.Random, mean_extra: float = 0.6) -> int:
    """Geometric: 1 + Geom; mostly 1..3 points (preemption bounding)."""
    n = 1
    while rng.random() < mean_extra and n < 6:
        n += 1
    return n


#: share of fresh plans with background noise, and the levels it is drawn from (per step)
NOISE_SHARE = 0.35
NOISE_LEVELS = (0.03, 0.1, 0.3)


def _noise(rng: random.Random, actors: int) -> float:
    return rng.choice(NOISE_LEVELS) if actors and rng.random() < NOISE_SHARE else 0.0


def random_plan(rng: random.Random, threads: int, steps: int, actors: int) -> Plan:
    """A fresh PCT plan for ``threads`` user threads over about ``steps`` decisions; ``actors`` is
    how many background actors the program enables (no action points without any)."""
    steps = max(steps, 1)
    prios = list(range(threads))
    rng.shuffle(prios)
    total = _n_points(rng) if rng.random() < 0.9 else 0
    changes: list[int] = []
    actions: list[tuple[int, int, int]] = []
    for _ in range(total):
        if actors and (threads == 1 or rng.random() < 0.5):
            actions.append((rng.randrange(steps), rng.randrange(1 << 16), rng.randrange(1 << 16)))
        elif threads > 1:
            changes.append(rng.randrange(steps))
    noise = _noise(rng, actors)
    return Plan(
        tuple(prios), tuple(sorted(set(changes))), tuple(sorted(actions)), rng.randrange(1 << 30), noise
    )


#: the ways :func:`perturb_plan` changes a plan, and how often (adding a point is what deepens an
#: interleaving one preemption at a time, so it dominates)
PLAN_OPS: dict[str, float] = {
    "add": 0.4,
    "move": 0.25,
    "drop": 0.1,
    "retarget": 0.1,
    "priorities": 0.08,
    "noise": 0.07,
}


def perturb_plan(
    rng: random.Random, plan: Plan, threads: int, steps: int, actors: int, op: str | None = None
) -> Plan:
    """A nearby plan: ``op`` (default: drawn by :data:`PLAN_OPS`) is "add" a change or action
    point, "move" one (a few steps, or anywhere), "drop" one, "retarget" an action, or re-draw the
    "priorities", or re-draw the "noise" level."""
    steps = max(steps, 1)
    changes = list(plan.changes)
    actions = list(plan.actions)
    prios = list(plan.priorities)
    if len(prios) != threads:
        prios = list(range(threads))
        rng.shuffle(prios)
    if op is None:
        op = rng.choices(list(PLAN_OPS), list(PLAN_OPS.values()))[0]
    if op in ("move", "drop", "retarget") and not (changes or actions):
        op = "add"
    if op == "retarget" and not actions:
        op = "move"
    if op == "add" and plan.points >= 8:
        op = "move"

    def shift(x: int) -> int:
        if rng.random() < 0.7:
            return max(0, x + rng.choice((-3, -2, -1, 1, 2, 3)))
        return rng.randrange(steps)

    noise = plan.noise
    pick_change = bool(changes) and (not actions or rng.random() < 0.5)
    if op == "add":
        if actors and (threads == 1 or rng.random() < 0.5):
            actions.append((rng.randrange(steps), rng.randrange(1 << 16), rng.randrange(1 << 16)))
        elif threads > 1:
            changes.append(rng.randrange(steps))
        else:
            rng.shuffle(prios)
    elif op == "move":
        if pick_change:
            i = rng.randrange(len(changes))
            changes[i] = shift(changes[i])
        else:
            i = rng.randrange(len(actions))
            s, k, o = actions[i]
            actions[i] = (shift(s), k, o)
    elif op == "drop":
        if pick_change:
            changes.pop(rng.randrange(len(changes)))
        else:
            actions.pop(rng.randrange(len(actions)))
    elif op == "retarget":
        i = rng.randrange(len(actions))
        s, k, o = actions[i]
        if rng.random() < 0.5:
            actions[i] = (s, rng.randrange(1 << 16), rng.randrange(1 << 16))
        else:
            actions[i] = (s, k, o + 1)
    elif op == "noise":
        noise = rng.choice((0.0, *NOISE_LEVELS)) if actors else 0.0
    else:
        rng.shuffle(prios)
    return Plan(
        tuple(prios),
        tuple(sorted(set(changes))),
        tuple(sorted(actions)),
        plan.seed ^ rng.randrange(1 << 30),
        noise,
    )


def perturb_schedule(
    rng: random.Random, schedule: Sequence[int], steps: int, threads: int
) -> tuple[int, ...]:
    """A nearby numeric schedule with few non-zero decisions: add or drop a preemption, move one a
    few steps, change its target, or truncate."""
    sched = list(schedule)
    steps = max(steps, len(sched), 1)
    nonzero = [i for i, d in enumerate(sched) if d]
    r = rng.random()

    def target() -> int:
        if rng.random() < 0.6:
            return rng.randint(1, max(threads, 2))
        return rng.randint(1, 16) if rng.random() < 0.8 else rng.randint(1, MAX_SCHEDULE_VALUE)

    if r < 0.35 or not nonzero:
        pos = rng.randrange(steps)
        if pos >= len(sched):
            sched.extend([0] * (pos + 1 - len(sched)))
        sched[pos] = target()
    elif r < 0.55:
        sched[rng.choice(nonzero)] = 0
    elif r < 0.8:
        i = rng.choice(nonzero)
        j = max(0, i + rng.choice((-3, -2, -1, 1, 2, 3)))
        value = sched[i]
        sched[i] = 0
        if j >= len(sched):
            sched.extend([0] * (j + 1 - len(sched)))
        sched[j] = value
    elif r < 0.95:
        i = rng.choice(nonzero)
        sched[i] = max(1, sched[i] + rng.choice((-1, 1))) if rng.random() < 0.5 else target()
    else:
        sched = sched[: rng.randrange(len(sched) + 1)]
    return trim_schedule(sched)


# --------------------------------------------------------------------------------------------------
# program mutations


def _edge_toward(rng: random.Random, value: int, units: Sequence[int], lo: int, hi: int) -> int:
    """``value`` moved to a nearby block/folio edge (or one byte off it), or nudged."""
    unit = rng.choice(units)
    r = rng.random()
    if r < 0.4:
        k = round(value / unit) if rng.random() < 0.5 else value // unit + rng.choice((0, 1))
        out = k * unit + rng.choice((-1, 0, 1))
    elif r < 0.6:
        out = value + rng.choice((-1, 1, -unit, unit))
    elif r < 0.75:
        out = value // 2 if rng.random() < 0.5 else value * 2
    else:
        out = edge_int(rng, lo, hi, units)
    return min(max(out, lo), hi)


class Mutator:
    """Program mutations for one campaign; ``gen`` supplies fresh syscalls over the program's
    geometry."""

    def __init__(self, gen: Generator) -> None:
        self.gen = gen
        self.structural: list[tuple[str, Callable[[random.Random, Program], Program | None], float]] = [
            ("insert", self.insert, 3.0),
            ("delete", self.delete, 2.0),
            ("duplicate", self.duplicate, 1.5),
            ("swap", self.swap, 1.5),
            ("move", self.move_thread, 1.5),
            ("args", self.change_args, 5.0),
            ("actor", self.toggle_actor, 1.0),
            ("file", self.change_file, 1.0),
            ("share", self.share, 1.0),
        ]

    # -- helpers --------------------------------------------------------------------------------------

    @staticmethod
    def _threads(p: Program) -> list[list[Syscall]]:
        return [list(t) for t in p.threads]

    @staticmethod
    def _rebuild(p: Program, threads: list[list[Syscall]]) -> Program | None:
        threads = [t for t in threads if t] or [[]]
        if len(threads) > 1:
            threads = [[c for c in t if c.op != "remount"] for t in threads]
            threads = [t for t in threads if t] or [[]]
        if sum(len(t) for t in threads) == 0 or sum(len(t) for t in threads) > MAX_CALLS:
            return None
        try:
            return Program(
                files=p.files,
                threads=tuple(tuple(t) for t in threads),
                schedule=p.schedule,
                config=p.config,
                variants=p.variants,
                actors=p.actors,
            ).validate()
        except ProgramError:
            return None

    def _ops(self, rng: random.Random, p: Program) -> str:
        present = [c.op for _, _, c in p.iter_syscalls()]
        if present and rng.random() < 0.6:
            return rng.choice(present)
        return rng.choice([op for op in OPS if op != "remount" or p.n_threads == 1])

    # -- structural -----------------------------------------------------------------------------------

    def insert(self, rng: random.Random, p: Program) -> Program | None:
        threads = self._threads(p)
        if rng.random() < 0.15 and len(threads) < MAX_THREADS:
            threads.append([])
        t = rng.randrange(len(threads))
        call = self.gen.syscall(rng, self._ops(rng, p), p.files, p.config, offset_pools(p))
        threads[t].insert(rng.randint(0, len(threads[t])), call)
        return self._rebuild(p, threads)

    def delete(self, rng: random.Random, p: Program) -> Program | None:
        threads = self._threads(p)
        spots = [(t, i) for t, th in enumerate(threads) for i in range(len(th))]
        if len(spots) <= 1:
            return None
        t, i = rng.choice(spots)
        del threads[t][i]
        return self._rebuild(p, threads)

    def duplicate(self, rng: random.Random, p: Program) -> Program | None:
        threads = self._threads(p)
        spots = [(t, i) for t, th in enumerate(threads) for i in range(len(th))]
        if not spots:
            return None
        t, i = rng.choice(spots)
        call = threads[t][i]
        if rng.random() < 0.5 and len(threads) < MAX_THREADS:
            threads.append([call])
        else:
            dest = rng.randrange(len(threads))
            threads[dest].insert(rng.randint(0, len(threads[dest])), call)
        return self._rebuild(p, threads)

    def swap(self, rng: random.Random, p: Program) -> Program | None:
        threads = self._threads(p)
        spots = [(t, i) for t, th in enumerate(threads) for i in range(len(th))]
        if len(spots) < 2:
            return None
        (t1, i1), (t2, i2) = rng.sample(spots, 2)
        threads[t1][i1], threads[t2][i2] = threads[t2][i2], threads[t1][i1]
        return self._rebuild(p, threads)

    def move_thread(self, rng: random.Random, p: Program) -> Program | None:
        threads = self._threads(p)
        spots = [(t, i) for t, th in enumerate(threads) for i in range(len(th))]
        if not spots:
            return None
        t, i = rng.choice(spots)
        call = threads[t].pop(i)
        others = [d for d in range(len(threads)) if d != t]
        if not others or (len(threads) < MAX_THREADS and rng.random() < 0.3):
            if len(threads) >= MAX_THREADS:
                return None
            threads.append([call])
        else:
            dest = rng.choice(others)
            threads[dest].insert(rng.randint(0, len(threads[dest])), call)
        return self._rebuild(p, threads)

    def change_args(self, rng: random.Random, p: Program) -> Program | None:
        threads = self._threads(p)
        spots = [(t, i) for t, th in enumerate(threads) for i in range(len(th)) if th[i].op != "sync"]
        spots = [s for s in spots if threads[s[0]][s[1]].op not in ("remount",)]
        if not spots:
            return None
        t, i = rng.choice(spots)
        call = threads[t][i]
        cfg = p.config
        units = Generator.units(cfg)
        # stay in the generator's range: a few folios (long buffers only make runs slower)
        max_off = min(MAX_OFF, max(2 * SPAN_FOLIOS * cfg.folio_size, getattr(call, "off", 0) or 0))
        max_len = min(MAX_LEN, SPAN_FOLIOS * cfg.folio_size)
        names = [n for n in ("off", "len", "size") if getattr(call, n) is not None]
        choices = [*names]
        if call.data is not None:
            choices.append("data")
        if call.mode is not None:
            choices.append("mode")
        if call.file is not None:
            choices.append("op")
        if not choices:
            return None
        what = rng.choice(choices)
        # relational: an offset another syscall on the same file starts or ends at, or a size it
        # sets (one byte either side or on it), instead of an edge of the geometry
        pool = [v for v in offset_pools(p).get(call.file or "", []) if v != getattr(call, what, None)]
        related = bool(pool) and rng.random() < POOL_SHARE
        if what in ("off", "size"):
            if related:
                value = max(0, min(near(rng, rng.choice(pool)), max_off))
            else:
                value = _edge_toward(rng, getattr(call, what) or 0, units, 0, max_off)
            call = replace(call, off=value) if what == "off" else replace(call, size=value)
        elif what == "len":
            lo = 1 if call.op == "fallocate" else 0
            ahead = [v - (call.off or 0) for v in pool if v - (call.off or 0) > lo]
            if related and ahead:
                new_len = min(max(lo, near(rng, rng.choice(ahead))), MAX_LEN)
            else:
                new_len = _edge_toward(rng, call.len or 0, units, lo, max_len)
            data = call.data
            if data is not None and data.hex is not None:
                data = DataSpec.from_seed(rng.randrange(1 << 32))
            call = replace(call, len=new_len, data=data)
        elif what == "data":
            assert call.len is not None
            data = self.gen.data(rng, call.op, call.len, p.files, cfg)
            if (
                data.map_file is not None
                and rng.random() < 0.5
                and call.data
                and call.data.map_off is not None
            ):
                data = DataSpec.mapped(data.map_file, _edge_toward(rng, call.data.map_off, units, 0, max_off))
            call = replace(call, data=data)
        elif what == "mode":
            call = replace(call, mode=rng.choice(FALLOCATE_MODES))
        else:
            # same target, another op of the same shape (pwrite <-> mwrite, fsync <-> fdatasync, ...)
            twins = {
                "pwrite": "mwrite",
                "mwrite": "pwrite",
                "fsync": "fdatasync",
                "fdatasync": "fsync",
                "mmap": "munmap",
                "munmap": "mmap",
            }
            new_op = twins.get(call.op)
            if new_op is None:
                return None
            data = call.data
            if new_op == "mwrite" and data is not None and data.map_file is not None:
                data = DataSpec.from_seed(rng.randrange(1 << 32))
            call = replace(call, op=new_op, data=data)
        threads[t][i] = call
        return self._rebuild(p, threads)

    def change_file(self, rng: random.Random, p: Program) -> Program | None:
        threads = self._threads(p)
        spots = [(t, i) for t, th in enumerate(threads) for i in range(len(th)) if th[i].file is not None]
        if not spots:
            return None
        if len(p.files) < 2 or rng.random() < 0.2:
            if len(p.files) >= len(FILE_NAMES):
                return None
            p = replace(p, files=FILE_NAMES[: len(p.files) + 1])
        t, i = rng.choice(spots)
        threads[t][i] = replace(threads[t][i], file=rng.choice(p.files))
        return self._rebuild(p, threads)

    def share(self, rng: random.Random, p: Program) -> Program | None:
        """Point a syscall of one thread at the file of a syscall in another thread, and half the
        time at its range (on an end of it, or a byte either side): two threads race only on an
        object both use, and most pairs of random syscalls share none (Razzer, S&P 2019, and
        Snowboard, SOSP 2021, pair concurrent inputs by what they share for that reason)."""
        threads = self._threads(p)
        spots = [(t, i) for t, th in enumerate(threads) for i in range(len(th)) if th[i].file is not None]
        pairs = [(a, b) for a in spots for b in spots if a[0] != b[0]]
        if not pairs:
            return None
        (t1, i1), (t2, i2) = rng.choice(pairs)
        src, call = threads[t1][i1], threads[t2][i2]
        call = replace(call, file=src.file)
        if src.off is not None and call.off is not None and rng.random() < 0.5:
            ends = [src.off] + ([src.off + src.len] if src.len else [])
            call = replace(call, off=max(0, near(rng, rng.choice(ends))))
        threads[t2][i2] = call
        return self._rebuild(p, threads)

    def toggle_actor(self, rng: random.Random, p: Program) -> Program | None:
        actor = rng.choice(ACTORS)
        actors = [a for a in p.actors if a != actor] if actor in p.actors else [*p.actors, actor]
        ordered = tuple(a for a in ACTORS if a in actors)
        try:
            return replace(p, actors=ordered).validate()
        except ProgramError:
            return None

    # -- splice ---------------------------------------------------------------------------------------

    def splice(self, rng: random.Random, a: Program, b: Program) -> Program | None:
        """Threads of ``a`` with syscalls or whole threads of ``b`` mixed in (``a``'s machine)."""
        threads = self._threads(a)
        files = a.files
        donor = [list(t) for t in b.threads]

        def fix(call: Syscall) -> Syscall:
            if call.file is not None and call.file not in files:
                call = replace(call, file=rng.choice(files))
            if call.data is not None and call.data.map_file is not None and call.data.map_file not in files:
                call = replace(call, data=DataSpec.mapped(rng.choice(files), call.data.map_off or 0))
            return call

        r = rng.random()
        if r < 0.4 and len(threads) < MAX_THREADS:
            threads.append([fix(c) for c in rng.choice(donor)])
        elif r < 0.7:
            t = rng.randrange(len(threads))
            src = rng.choice(donor)
            if not src:
                return None
            cut_a = rng.randint(0, len(threads[t]))
            cut_b = rng.randint(0, len(src))
            threads[t] = threads[t][:cut_a] + [fix(c) for c in src[cut_b:]]
        else:
            t = rng.randrange(len(threads))
            calls = [c for th in donor for c in th]
            if not calls:
                return None
            threads[t].insert(rng.randint(0, len(threads[t])), fix(rng.choice(calls)))
        return self._rebuild(a, threads)

    # -- entry point ----------------------------------------------------------------------------------

    def mutate_program(self, rng: random.Random, p: Program, *, rounds: int = 1) -> tuple[Program, list[str]]:
        """Apply ``rounds`` structural/argument mutations (stacked, AFL havoc style); returns the
        program (unchanged if none applied) and the names of the mutations that applied."""
        names = [n for n, _, _ in self.structural]
        weights = [w for _, _, w in self.structural]
        fns = {n: f for n, f, _ in self.structural}
        applied: list[str] = []
        for _ in range(rounds):
            for _attempt in range(4):
                name = rng.choices(names, weights)[0]
                out = fns[name](rng, p)
                if out is not None:
                    p = out
                    applied.append(name)
                    break
        return p, applied
