"""Shrink a failing program to a small one that fails the same way.

``minimize(program, signature)`` re-runs candidates and keeps a change only if the run still shows a
finding with the same signature (or, for tests, if ``predicate(program)`` holds). It is delta
debugging (Zeller and Hildebrandt, "Simplifying and Isolating Failure-Inducing Input", TSE 2002)
over the parts of a program, in passes repeated until none changes anything:

1. **threads**: drop whole threads;
2. **syscalls**: ddmin over all syscalls of all threads;
3. **schedule**: ddmin over the non-zero decisions (set them to 0, i.e. remove preemptions), then
   over the zero decisions (delete them, which moves later preemptions earlier), then smaller
   values for what is left; the schedule is first *normalized*: each decision is replaced by the
   index it actually selected (``d % len(options)``), so values are small and the trailing zeros go;
   Then the same ddmin *by name*: each non-default decision is replayed as "choose the task or
   action that was chosen here" (:class:`_NamedChooser`), so removing one background action no
   longer shifts what every later index picks;
4. **actors** and **files** no longer needed (an actor removed with the schedule kept by name, if
   the numbers no longer reproduce);
5. **arguments**: offsets, lengths and sizes toward 0, small values and block/folio-aligned values;
   data seeds toward 0; fallocate modes toward the first mode;
6. **config** toward the defaults (each field alone; the schedule kept by name if the numbers no
   longer reproduce: switching the journal off removes its thread and actions from every option
   list), a smaller device.

Removing a syscall shifts every later scheduling decision, so a structural candidate is tried with
its schedule *translated*: the decisions taken while the removed syscall (or thread) ran are
deleted (the decision log of the current best run says which task each decision ran), so the
remaining preemptions still land at the same place in the remaining syscalls. If that fails the
untranslated schedule and a few shifted variants are tried. Every run is deterministic and the
candidate order is fixed, so the result is deterministic too (given enough ``time_limit``; when
the limit is hit the best program so far is returned).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from fuzz.program import FALLOCATE_MODES, DataSpec, Program, Syscall
from simkernel.config import Config
from simkernel.errors import BlkfuzzError
from simkernel.kernel.sched import Action, Task

__all__ = ["Minimizer", "minimize", "normalize_schedule"]

Predicate = Callable[[Program], bool]

_USER_TASK = re.compile(r"T\d+")


class _Timeout(Exception):
    pass


# --------------------------------------------------------------------------------------------------
# schedule bookkeeping


class _LogChooser:
    """Replays a numeric schedule exactly like ``ListChooser`` while logging, for every decision,
    its step, the index it selected, and who ran (task name or action label)."""

    def __init__(self, machine: Any, schedule: Sequence[int]) -> None:
        self.machine = machine
        self.schedule = list(schedule)
        self.pos = 0
        self.decisions: list[int] = []
        self.steps: list[int] = []
        self.owners: list[str] = []

    def choose_option(self, options: list[Any]) -> int:
        d = self.schedule[self.pos] if self.pos < len(self.schedule) else 0
        self.pos += 1
        idx = d % len(options) if d else 0
        pick = options[idx]
        self.decisions.append(idx)
        self.steps.append(self.machine.sched.step_no + 1)
        self.owners.append(_who(pick))
        return idx

    def next_decision(self) -> int | None:  # pragma: no cover - choose_option is used instead
        return None


@dataclass
class _RunLog:
    """Which syscall each decision of a run belongs to: ``owner[i]`` is ``(thread, syscall)`` or
    None (an action, a kernel thread)."""

    normalized: tuple[int, ...]
    owner: list[tuple[int, int] | None]
    #: who each decision chose (task name or action label)
    names: list[str] = field(default_factory=list)


def _trim(schedule: Sequence[int]) -> tuple[int, ...]:
    out = list(schedule)
    while out and out[-1] == 0:
        out.pop()
    return tuple(out)


def _run_log(program: Program) -> _RunLog | None:
    """Run ``program`` once, logging its decisions (None if the simulator raised)."""
    from fuzz.runner import execute

    holder: list[_LogChooser] = []

    def factory(machine: Any) -> _LogChooser:
        holder.append(_LogChooser(machine, program.schedule))
        return holder[0]

    try:
        ex = execute(program, chooser_factory=factory, trace=False, read_back=False)
    except Exception:
        return None
    log = holder[0]
    ops_by_tid: dict[int, list[Any]] = {}
    for op in ex.history.ops:
        ops_by_tid.setdefault(op.tid, []).append(op)
    owner: list[tuple[int, int] | None] = []
    for step, who in zip(log.steps, log.owners):
        found: tuple[int, int] | None = None
        if who.startswith("T") and who[1:].isdigit():
            tid = int(who[1:])
            prev_ret = -1
            for op in ops_by_tid.get(tid, []):
                ret = op.ret if op.ret is not None else 1 << 60
                if (op.invoke < step <= ret) or (step == op.invoke and prev_ret < step):
                    found = (tid, op.seq)
                    break
                prev_ret = ret
        owner.append(found)
    return _RunLog(_trim(log.decisions), owner, list(log.owners))


def _renumbered(name: str | None, removed: int) -> str | None:
    """A task name after user thread ``removed`` is dropped from the program."""
    if name is not None and _USER_TASK.fullmatch(name):
        k = int(name[1:])
        if k == removed:
            return None
        if k > removed:
            return f"T{k - 1}"
    return name


def _who(option: Any) -> str:
    return option.name if isinstance(option, Task) else option.label if isinstance(option, Action) else ""


class _NamedChooser:
    """Replays a schedule given by *whom* each decision chose -- a task name or an action label,
    None for the default option -- resolved against the options offered at each point, and records
    the numeric schedule that took.

    A numeric decision is an index into the options of its moment; dropping an actor, switching the
    journal off or removing one background action changes the options later on, and every later
    index then picks something else. Named, the remaining decisions keep choosing what they chose.
    ``wait``: a name not offered at its position is kept pending until it is (the positions of the
    decisions after a removed kernel thread's shift by the decisions it took)."""

    def __init__(self, names: Sequence[str | None], *, wait: bool) -> None:
        self.names = list(names)
        self.wait = wait
        self.pos = 0
        self.pending: list[str] = []
        self.decisions: list[int] = []

    def choose_option(self, options: list[Any]) -> int:
        name = self.names[self.pos] if self.pos < len(self.names) else None
        self.pos += 1
        if name is not None:
            self.pending.append(name)
        idx = 0
        if self.pending:
            want = self.pending[0]
            for i, o in enumerate(options):
                if _who(o) == want:
                    idx = i
                    self.pending.pop(0)
                    break
            else:
                if not self.wait:
                    self.pending.pop(0)
        self.decisions.append(idx)
        return idx

    def next_decision(self) -> int | None:  # pragma: no cover - choose_option is used instead
        return None


def translate_named(program: Program, names: Sequence[str | None], *, wait: bool) -> Program | None:
    """``program`` with the numeric schedule that the named decisions ``names`` take in it (None if
    the simulator raised)."""
    from fuzz.runner import execute

    holder: list[_NamedChooser] = []

    def factory(machine: Any) -> _NamedChooser:
        holder.append(_NamedChooser(names, wait=wait))
        return holder[0]

    try:
        execute(program, chooser_factory=factory, trace=False, read_back=False)
    except Exception:
        return None
    return program.with_schedule(_trim(holder[0].decisions))


def normalize_schedule(program: Program) -> Program:
    """``program`` with each decision replaced by the option index it selected and trailing zeros
    dropped: the same run, with small values."""
    log = _run_log(program)
    if log is None:
        return program
    return program.with_schedule(log.normalized)


# --------------------------------------------------------------------------------------------------
# ddmin


def _ddmin(items: list[Any], test: Callable[[list[Any]], bool]) -> list[Any]:
    """Zeller's ddmin: a 1-minimal sublist of ``items`` for which ``test(sublist)`` holds (``test``
    of the full list is assumed to hold). Complements first, then subsets, granularity doubling."""
    n = 2
    while len(items) >= 2:
        chunk = max(1, len(items) // n)
        parts = [items[i : i + chunk] for i in range(0, len(items), chunk)]
        reduced = False
        for i in range(len(parts)):
            complement = [x for j, p in enumerate(parts) if j != i for x in p]
            if test(complement):
                items = complement
                n = max(n - 1, 2)
                reduced = True
                break
        if not reduced:
            for part in parts:
                if len(part) < len(items) and test(part):
                    items = part
                    n = 2
                    reduced = True
                    break
        if not reduced:
            if n >= len(items):
                break
            n = min(len(items), n * 2)
    if len(items) == 1 and test([]):
        return []
    return items


# --------------------------------------------------------------------------------------------------
# the minimizer


class Minimizer:
    """One minimization; see the module docstring. ``test(program)`` decides "still fails"."""

    def __init__(self, test: Predicate, *, time_limit: float = 30.0) -> None:
        self._test = test
        self.deadline = time.monotonic() + time_limit
        self.cache: dict[str, bool] = {}
        self.runs = 0
        self.best: Program | None = None
        self.accepted: set[str] = set()
        self._log: _RunLog | None = None
        self._translated: dict[tuple[str, tuple[str | None, ...], bool], Program | None] = {}

    # -- testing ----------------------------------------------------------------------------------

    def test(self, program: Program) -> bool:
        # the deadline is checked on cache hits too: a pass that only revisits programs must still
        # stop when time is up
        if time.monotonic() > self.deadline:
            raise _Timeout
        key = program.digest()
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        self.runs += 1
        try:
            ok = bool(self._test(program))
        except Exception:
            ok = False
        self.cache[key] = ok
        return ok

    def accept(self, program: Program) -> bool:
        """Test ``program``; if it fails the same way, it becomes the best.

        A program that was the best once is never accepted again: "simpler" is not a total order
        over every pass's candidates (an argument aligned up in one pass may shrink back in
        another), and re-accepting would let two passes undo each other forever."""
        key = program.digest()
        if key in self.accepted:
            return False
        if self.test(program):
            self.accepted.add(key)
            self.best = program
            self._log = None
            return True
        return False

    def log(self) -> _RunLog | None:
        assert self.best is not None
        if self._log is None:
            self._log = _run_log(self.best)
        return self._log

    def named(self) -> list[str | None] | None:
        """The best program's schedule by name: who each non-default decision chose."""
        log = self.log()
        if log is None:
            return None
        norm = log.normalized
        return [n if i < len(norm) and norm[i] else None for i, n in enumerate(log.names)]

    def accept_named(self, base: Program, names: Sequence[str | None]) -> bool:
        """Accept ``base`` run with the named decisions ``names``: positional first, then with a
        name not offered at its position waiting until it is."""
        tried: set[str] = set()
        for wait in (False, True):
            if time.monotonic() > self.deadline:
                raise _Timeout
            key = (base.digest(), tuple(names), wait)
            if key not in self._translated:
                self._translated[key] = translate_named(base, names, wait=wait)
            cand = self._translated[key]
            if cand is None or cand.digest() in tried:
                continue
            tried.add(cand.digest())
            if self.accept(cand):
                return True
        return False

    # -- building candidates ----------------------------------------------------------------------

    @staticmethod
    def _build(
        base: Program, threads: Sequence[Sequence[Syscall]], schedule: Sequence[int]
    ) -> Program | None:
        try:
            return Program(
                files=base.files,
                threads=tuple(tuple(t) for t in threads),
                schedule=_trim(schedule),
                config=base.config,
                variants=base.variants,
                actors=base.actors,
                expect=base.expect,
                meta=base.meta,
            ).validate()
        except BlkfuzzError:
            return None

    def _schedules_without(
        self, removed: set[tuple[int, int]], removed_threads: set[int]
    ) -> Iterator[tuple[int, ...]]:
        """Candidate schedules for the best program minus ``removed`` syscalls / whole threads."""
        assert self.best is not None
        sched = list(self.best.schedule)
        log = self.log()
        if log is not None:
            owner = log.owner + [None] * max(0, len(sched) - len(log.owner))
            norm = list(log.normalized)

            def gone(i: int) -> bool:
                o = owner[i] if i < len(owner) else None
                return o is not None and (o in removed or o[0] in removed_threads)

            full = [d for i, d in enumerate(norm) if not gone(i)]
            yield tuple(full)
            keep_nonzero = [d for i, d in enumerate(norm) if not gone(i) or d != 0]
            yield tuple(keep_nonzero)
            nz = [i for i, d in enumerate(full) if d]
            for delta in (-1, 1, -2, 2):
                shifted = [0] * (len(full) + 3)
                for i in range(len(full)):
                    if full[i]:
                        j = max(0, i + delta)
                        shifted[j] = full[i]
                if nz:
                    yield tuple(shifted)
        yield tuple(sched)

    def _try_structure(
        self, threads: list[list[Syscall]], removed: set[tuple[int, int]], removed_threads: set[int]
    ) -> bool:
        assert self.best is not None
        base = self.best
        seen: set[tuple[int, ...]] = set()
        for sched in self._schedules_without(removed, removed_threads):
            sched = _trim(sched)
            if sched in seen:
                continue
            seen.add(sched)
            cand = self._build(base, threads, sched)
            if cand is not None and self.accept(cand):
                return True
        return False

    # -- passes -----------------------------------------------------------------------------------

    def pass_threads(self) -> bool:
        assert self.best is not None
        changed = False
        t = len(self.best.threads) - 1
        while t >= 0 and len(self.best.threads) > 1:
            threads = [list(th) for i, th in enumerate(self.best.threads) if i != t]
            if self._try_structure(threads, set(), {t}):
                changed = True
            t -= 1
            t = min(t, len(self.best.threads) - 1)
        return changed

    def pass_syscalls(self) -> bool:
        """ddmin over every syscall; positions are tracked from the pass's starting program to the
        current best (each accepted removal renumbers the syscalls after it)."""
        assert self.best is not None
        spots = [(t, i) for t, th in enumerate(self.best.threads) for i in range(len(th))]
        if len(spots) <= 1:
            return False
        positions: dict[tuple[int, int], tuple[int, int]] = {s: s for s in spots}

        def test(keep: list[tuple[int, int]]) -> bool:
            nonlocal positions
            cur = self.best
            assert cur is not None
            if not keep:
                return False
            keep_set = set(keep)
            removed = {positions[s] for s in positions if s not in keep_set}
            if not removed:
                return True
            threads = [
                [c for i, c in enumerate(th) if (t, i) not in removed] for t, th in enumerate(cur.threads)
            ]
            if not self._try_structure(threads, removed, set()):
                return False
            new: dict[tuple[int, int], tuple[int, int]] = {}
            for s in keep:
                t, i = positions[s]
                new[s] = (t, i - sum(1 for (rt, ri) in removed if rt == t and ri < i))
            positions = new
            return True

        before = self.best.digest()
        _ddmin(spots, test)
        return self.best.digest() != before

    def pass_empty_threads(self) -> bool:
        assert self.best is not None
        changed = False
        for t in range(len(self.best.threads) - 1, -1, -1):
            if len(self.best.threads) > 1 and t < len(self.best.threads) and not self.best.threads[t]:
                threads = [list(th) for i, th in enumerate(self.best.threads) if i != t]
                if self._try_structure(threads, set(), {t}):
                    changed = True
                    continue
                # by name: the threads after it are renumbered (T{k} becomes T{k-1})
                names = self.named()
                cand = self._build(self.best, threads, self.best.schedule)
                if names is None or cand is None:
                    continue
                changed |= self.accept_named(cand, [_renumbered(n, t) for n in names])
        return changed

    def pass_schedule(self) -> bool:
        assert self.best is not None
        changed = False
        norm = normalize_schedule(self.best)
        if norm.schedule != self.best.schedule and self.accept(norm):
            changed = True
        sched = list(self.best.schedule)
        # 1. remove preemptions: ddmin over the non-zero decisions (those kept stay as they are)
        nonzero = [i for i, d in enumerate(sched) if d]
        if nonzero:

            def keep_nonzero(keep: list[int]) -> bool:
                ks = set(keep)
                cand = [d if (i not in nonzero or i in ks) else 0 for i, d in enumerate(sched)]
                return self.accept(self.best.with_schedule(_trim(cand)))  # type: ignore[union-attr]

            before = self.best.digest()
            _ddmin(nonzero, keep_nonzero)
            changed |= self.best.digest() != before
        # 2. delete zero decisions (moves later preemptions earlier): ddmin over the zeros
        sched = list(self.best.schedule)
        zeros = [i for i, d in enumerate(sched) if d == 0]
        if zeros:

            def keep_zeros(keep: list[int]) -> bool:
                ks = set(keep)
                cand = [d for i, d in enumerate(sched) if d != 0 or i in ks]
                return self.accept(self.best.with_schedule(_trim(cand)))  # type: ignore[union-attr]

            before = self.best.digest()
            _ddmin(zeros, keep_zeros)
            changed |= self.best.digest() != before
        # 3. smaller values
        sched = list(self.best.schedule)
        for i, d in enumerate(sched):
            for v in range(1, d):
                cand = list(self.best.schedule)
                if i >= len(cand) or cand[i] <= v:
                    break
                cand[i] = v
                if self.accept(self.best.with_schedule(_trim(cand))):
                    changed = True
                    break
        return changed

    def pass_named_schedule(self) -> bool:
        """ddmin over the non-default decisions *by name* (see :class:`_NamedChooser`): dropping a
        background action or a preemption leaves the others choosing what they chose, where the
        numeric pass above would shift every later index."""
        assert self.best is not None
        names = self.named()
        if names is None:
            return False
        chosen = [i for i, n in enumerate(names) if n is not None]
        if not chosen:
            return False
        base = self.best

        def keep(kept: list[int]) -> bool:
            ks = set(kept)
            return self.accept_named(base, [n if i in ks else None for i, n in enumerate(names)])

        def keep_deleting(kept: list[int]) -> bool:
            # removed outright: the decisions after it move one scheduling point earlier (the point
            # the removed one took is gone with it, as when the action's task never ran)
            ks = set(kept)
            return self.accept_named(base, [n for i, n in enumerate(names) if n is None or i in ks])

        before = self.best.digest()
        _ddmin(chosen, keep)
        if self.best.digest() == before:
            _ddmin(chosen, keep_deleting)
        return self.best.digest() != before

    def pass_direct_switches(self) -> bool:
        """A decision that chose a background action or a thread that just exits, after which the
        default option is another user thread, is a roundabout context switch: try choosing that
        thread directly (the action, and then maybe its actor, can go)."""
        assert self.best is not None
        log = self.log()
        names = self.named()
        if log is None or names is None:
            return False
        changed = False
        for i, name in enumerate(names):
            if name is None or i + 1 >= len(log.names) or _USER_TASK.fullmatch(name):
                continue
            nxt = log.names[i + 1]
            if not _USER_TASK.fullmatch(nxt):
                continue
            cand = list(names)
            cand[i] = nxt
            if self.accept_named(self.best, cand):
                changed = True
                break  # the log changed: the next round of passes goes on from the new best
        return changed

    def _accept_either(self, cand: Program) -> bool:
        """``cand`` (the best with a structural change that keeps the syscalls) with the best's
        schedule as numbers, else as names."""
        if self.accept(cand):
            return True
        names = self.named()
        return names is not None and self.accept_named(cand, names)

    def pass_actors(self) -> bool:
        assert self.best is not None
        changed = False
        for actor in list(self.best.actors):
            cand = replace(self.best, actors=tuple(a for a in self.best.actors if a != actor))
            changed |= self._accept_either(cand)
        return changed

    def pass_files(self) -> bool:
        assert self.best is not None
        used: set[str] = set()
        for _, _, c in self.best.iter_syscalls():
            if c.file is not None:
                used.add(c.file)
            if c.data is not None and c.data.map_file is not None:
                used.add(c.data.map_file)
        changed = False
        keep = tuple(f for f in self.best.files if f in used) or self.best.files[:1]
        if keep != self.best.files:
            changed |= self.accept(replace(self.best, files=keep))
        # canonical names: a, b, c ... in order of first use
        names = "abcdefgh"
        rename = {old: names[i] for i, old in enumerate(self.best.files)}
        if any(k != v for k, v in rename.items()):

            def ren(c: Syscall) -> Syscall:
                data = c.data
                if data is not None and data.map_file is not None:
                    data = DataSpec.mapped(rename[data.map_file], data.map_off or 0)
                return replace(c, file=rename[c.file] if c.file is not None else None, data=data)

            threads = [[ren(c) for c in th] for th in self.best.threads]
            cand = self._build(
                replace(self.best, files=tuple(rename[f] for f in self.best.files)),
                threads,
                self.best.schedule,
            )
            if cand is not None:
                changed |= self.accept(cand)
        return changed

    @staticmethod
    def _smaller_ints(value: int, units: Sequence[int], lo: int) -> list[int]:
        """Simpler values than ``value``, simplest first."""
        out: list[int] = [lo]
        for v in (1, 2):
            out.append(max(lo, v))
        for u in units:
            out.append(max(lo, value - value % u))  # aligned down
            out.append(max(lo, -(-value // u) * u))  # aligned up (simpler if it is a multiple)
        # then ever smaller steps down (value/2, value*3/4, ..., value-1): an accepted step restarts
        # the list from the new value, so a value that only shrinks a little at a time is walked
        # down in O(log) accepted steps, not one byte per run
        step = (value - lo) // 2
        while step > 0:
            out.append(max(lo, value - step))
            step //= 2
        seen: list[int] = []
        for v in out:
            if v not in seen and v != value and _simpler(v, value, units):
                seen.append(v)
        return seen

    def pass_args(self) -> bool:
        assert self.best is not None
        changed = False
        units = sorted({self.best.config.block_size, self.best.config.folio_size}, reverse=True)
        for t in range(len(self.best.threads)):
            for i in range(len(self.best.threads[t])):
                progress = True
                while progress:
                    progress = False
                    for cand_call in self._call_candidates(self.best.threads[t][i], units):
                        threads = [list(th) for th in self.best.threads]
                        threads[t][i] = cand_call
                        cand = self._build(self.best, threads, self.best.schedule)
                        if cand is not None and self.accept(cand):
                            changed = progress = True
                            break
        return changed

    def _call_candidates(self, call: Syscall, units: Sequence[int]) -> Iterable[Syscall]:
        for name in ("len", "off", "size"):
            value = getattr(call, name)
            if value is None:
                continue
            lo = 1 if (name == "len" and call.op == "fallocate") else 0
            for v in self._smaller_ints(value, units, lo):
                data = call.data
                if name == "len" and data is not None and data.hex is not None:
                    data = (
                        DataSpec.from_bytes(bytes.fromhex(data.hex)[:v]) if v <= len(data.hex) // 2 else None
                    )
                    if data is None:
                        continue
                yield replace(call, **{name: v, "data": data} if call.data is not None else {name: v})
        data = call.data
        if data is not None:
            if data.seed is not None and data.seed != 0:
                yield replace(call, data=DataSpec.from_seed(0))
            if data.hex is not None:
                yield replace(call, data=DataSpec.from_seed(0))
            if data.map_off:
                for v in self._smaller_ints(data.map_off, units, 0):
                    yield replace(call, data=DataSpec.mapped(data.map_file or "", v))
        if call.mode is not None and call.mode != FALLOCATE_MODES[0]:
            for m in FALLOCATE_MODES[: FALLOCATE_MODES.index(call.mode)]:
                yield replace(call, mode=m)

    def pass_config(self) -> bool:
        assert self.best is not None
        changed = False
        default = Config()
        for name in Config.field_names():
            if name == "device_blocks":
                continue
            want = getattr(default, name)
            if getattr(self.best.config, name) != want:
                try:
                    cand = self.best.with_config(**{name: want})
                except BlkfuzzError:
                    continue
                changed |= self._accept_either(cand)
        # a smaller device: the default, then halving toward the smallest valid
        dev = self.best.config.device_blocks
        for v in (default.device_blocks, dev // 2, dev * 3 // 4):
            if v < self.best.config.device_blocks:
                try:
                    cand = self.best.with_config(device_blocks=v)
                except BlkfuzzError:
                    continue
                changed |= self.accept(cand)
        return changed

    # -- driver -----------------------------------------------------------------------------------

    def run(self, program: Program) -> Program:
        self.best = program
        self.accepted.add(program.digest())
        if not self.test(program):
            return program
        passes = (
            self.pass_threads,
            self.pass_syscalls,
            self.pass_empty_threads,
            self.pass_schedule,
            self.pass_named_schedule,
            self.pass_direct_switches,
            self.pass_actors,
            self.pass_files,
            self.pass_args,
            self.pass_config,
        )
        try:
            changed = True
            while changed:
                changed = False
                for p in passes:
                    changed |= p()
        except _Timeout:
            pass
        return self.best


def _simpler(v: int, value: int, units: Sequence[int]) -> bool:
    """Is ``v`` a simpler value than ``value``: smaller, or equally large but more aligned?"""
    if v < value:
        return True
    align = lambda x: max((u for u in units if x % u == 0), default=0)  # noqa: E731
    return v > value and align(v) > align(value) and v - value < min(units)


def minimize(
    program: Program,
    signature: str | None = None,
    *,
    predicate: Predicate | None = None,
    time_limit: float = 30.0,
) -> Program:
    """The smallest program found within ``time_limit`` seconds that still shows a finding with
    ``signature`` (default: the program's ``expect.signature``), or for which ``predicate`` holds.

    Returns ``program`` itself if it does not fail that way to begin with. ``expect`` and ``meta``
    are carried over unchanged."""
    if predicate is None:
        sig = signature or (program.expect.signature if program.expect is not None else None)
        if not sig:
            raise ValueError("minimize() needs a signature, a program with expect.signature, or a predicate")

        # the model's own detectors (assertions, deadlocks, lockdep) need no oracle, and only a
        # crash-consistency finding needs the crash states: most of a run's cost is the oracle
        category = sig.split(":", 1)[0]
        oracle = category in ("data", "fsck", "crash-consistency")
        crashes = category == "crash-consistency"

        def predicate(p: Program) -> bool:
            from fuzz.verdict import judge

            return sig in judge(p, oracle=oracle, crashes=crashes).signatures()

    return Minimizer(predicate, time_limit=time_limit).run(program)
