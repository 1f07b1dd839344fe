"""The fuzzing loop: coverage-guided search over programs *and* interleavings.

One iteration (see :meth:`Engine.step`)::

    candidate = propose()          # hub: pick a parent by energy, mutate it (or generate)
    outcome   = evaluate(candidate)  # worker: run it under the oracle (fuzz.verdict.judge)
    feedback(candidate, outcome)   # hub: keep it if it added coverage, record new findings

``propose`` and ``feedback`` own all mutable state (corpus, feature counts, random generator);
``evaluate`` is a pure function of the candidate, so a later hub/worker split only has to ship
:class:`Candidate` out and :class:`Outcome` back.

Feedback
    An input enters the corpus when its run shows a *feature* no earlier run showed (AFL and
    libFuzzer keep inputs the same way). Features are the model's semantic coverage
    (``Execution.coverage``: kernel decision points, lock-order edges, preemption sites, syscall
    outcomes) plus *interleaving features* read from the trace: which background action ran while a
    user thread was suspended in which kernel function (``ia:``), and which task ran while another
    was suspended where (``ix:``). The latter reward schedules that put events inside a syscall, not
    only programs that reach new code.

Energy
    Parents are drawn with weight proportional to their rarity (the sum over their features of
    ``1 / number of runs that showed it``, libFuzzer's "entropic" idea in its simplest form), times a
    boost for entries that are new and not yet fuzzed much, times a decay with the number of times
    the entry was picked.

Determinism
    Everything the engine decides comes from ``random.Random(seed)`` and from the (deterministic)
    runs; wall-clock time only decides when to stop. The same seed gives the same sequence of
    programs and findings.

Plain random baseline
    ``mode="random"``: every input is a fresh program (all ops, all actors: no swarm) with a
    uniformly random schedule, no corpus, no feedback. It exists to measure what the feedback buys.
"""

from __future__ import annotations

import math
import random
import re
import time
import traceback
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fuzz.generate import Generator, uniform_schedule
from fuzz.mutate import Mutator, Plan, PlanChooser, perturb_plan, perturb_schedule, random_plan, trim_schedule
from fuzz.program import ACTORS, Expect, Program
from fuzz.runner import Execution
from oracle.findings import Finding
from simkernel.kernel.sched import ListChooser

__all__ = [
    "Candidate",
    "Engine",
    "EngineStats",
    "FoundBug",
    "Outcome",
    "evaluate",
    "execution_features",
]

_NUM = re.compile(r"=\d+|\b\d+\b")
_USER = re.compile(r"T\d+")
_ACTOR_NAMES = frozenset(ACTORS)


# --------------------------------------------------------------------------------------------------
# features


def _norm_label(label: str) -> str:
    return _NUM.sub("", label).strip()


def _task_kind(name: str) -> str:
    if _USER.fullmatch(name):
        return "T"
    return re.split(r"[-/:]", name, maxsplit=1)[0]


#: feature families besides the model's coverage: ``cx`` context coverage (ContextCoverage), ``ia``
#: action while a user thread was suspended where, ``ix`` task ran while another was suspended where
ALL_FAMILIES = frozenset({"cx", "ia", "ix"})
DEFAULT_FAMILIES = frozenset({"cx", "ia", "ix"})


def execution_features(ex: Execution, families: frozenset[str] = DEFAULT_FAMILIES) -> frozenset[str]:
    """The model's coverage plus interleaving features from the trace (see the module docstring)."""
    out: set[str] = set(ex.coverage)
    if not families & {"ia", "ix"}:
        return frozenset(out)
    trace = ex.trace
    # per task: the steps at which it (re)started running and where it resumed
    resumes: dict[str, list[tuple[int, str]]] = {}
    for ev in trace:
        if ev.who in _ACTOR_NAMES:
            continue
        where = ev.what[len("runs (in ") : -1] if ev.what.startswith("runs (in ") else "start"
        resumes.setdefault(ev.who, []).append((ev.step, where))
    users = [name for name in resumes if _USER.fullmatch(name)]

    def suspended_at(name: str, step: int) -> str | None:
        """Where user task ``name`` was suspended at ``step`` (None if not started or finished)."""
        events = resumes[name]
        if events[0][0] >= step:
            return None
        for s, where in events:
            if s > step:
                return where
        return None

    for ev in trace:
        if ev.who in _ACTOR_NAMES:
            label = _norm_label(ev.what)
            for name in users:
                at = suspended_at(name, ev.step)
                if at is not None and "ia" in families:
                    out.add(f"ia:{label}@{at}")
            continue
        if not users:
            continue
        here = ev.what[len("runs (in ") : -1] if ev.what.startswith("runs (in ") else "start"
        kind = _task_kind(ev.who)
        for name in users:
            if name == ev.who:
                continue
            at = suspended_at(name, ev.step)
            if at is not None and "ix" in families:
                out.add(f"ix:{kind}:{here}|{at}")
    return frozenset(out)


#: interleaving features (their first three characters): they count half toward an entry's rarity
INTERLEAVING_PREFIXES = ("ia:", "ix:", "cx:", "cx=")

#: coverage points not recorded in context: ``at:`` points (preemption sites) are too many to pair
#: with every other thread's position, and pairing them measured no faster to find bugs
CX_SKIP = ("at:",)


class ContextCoverage(set[str]):
    """The scheduler's coverage set, observed: each point a task reaches is also recorded *in the
    context* of every other live user thread's latest point (``cx:<who>:<point>|<other's point>``).

    ``Scheduler.coverage`` is a set the model adds to; replacing it (before the program's threads
    run) with this subclass changes nothing the model does. The context features say "this decision
    was taken while that thread stood there", the concurrency analogue of an edge (thread-interleaving
    coverage, as in KRACE, Xu et al., S&P 2020).

    When both are user threads inside syscalls on the same file, the pair is recorded once more as
    ``cx=:``: a race needs the two threads to share the object, and a pair seen only across two
    files says nothing about that (KRACE's *alias* coverage; Snowboard, SOSP 2021, picks concurrent
    inputs by the memory they share for the same reason). ``files`` maps a user task's name to the
    file of its syscall in progress (the runner's recorder keeps it)."""

    def __init__(self, sched: Any, base: set[str], files: Mapping[str, str | None] | None = None) -> None:
        super().__init__(base)
        self.sched = sched
        self.files: Mapping[str, str | None] = files if files is not None else {}
        #: user task -> the latest point it reached
        self.last: dict[int, tuple[Any, str]] = {}
        self.context: set[str] = set()

    def add(self, point: str) -> None:
        super().add(point)
        cur = self.sched.current
        if cur is None:
            return
        if point.startswith(CX_SKIP):
            return
        user = cur.kind == "user"
        who = "T" if user else _task_kind(cur.name)
        mine = self.files.get(cur.name) if user else None
        for tid, (task, other) in self.last.items():
            if tid != cur.tid and task.state != "done":
                self.context.add(f"cx:{who}:{point}|{other}")
                if mine is not None and self.files.get(task.name) == mine:
                    self.context.add(f"cx=:{point}|{other}")
        if user:
            self.last[cur.tid] = (cur, point)


# --------------------------------------------------------------------------------------------------
# hub <-> worker messages


@dataclass(frozen=True)
class Candidate:
    """An input to run: the program, and the schedule plan to follow (None: its own schedule)."""

    program: Program
    plan: Plan | None = None
    #: how it was made ("gen", "mutate:args+swap", "plan", ...), for statistics
    origin: str = ""
    parent: int = -1
    #: total scheduler steps of its run (the cost measure: deterministic, unlike seconds)
    steps: int = 0
    #: its features as engine feature ids (for weighing the corpus in bulk)
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


@dataclass
class Outcome:
    """What running a candidate showed: the program as run (with the schedule the plan took), its
    features, findings, and step count."""

    program: Program
    features: frozenset[str]
    findings: list[Finding]
    steps: int
    decisions: int
    seconds: float
    #: an exception the simulator raised (a bug in blkfuzz itself, not a kernel finding)
    error: str | None = None


#: share of parent picks that change only the schedule (half: interleavings matter as much as
#: programs for concurrency bugs)
SCHED_SHARE = 0.5
#: energy boost of corpus entries picked fewer than 8 times
FRESH = 3.0
#: executions between full re-weighings of the corpus (see Engine._pick)
REWEIGH_EVERY = 32

#: step limit of fuzzing runs: programs here take a few hundred steps, a livelock takes them all; a
#: hang found under this limit is confirmed under the runner's default before it is reported
FUZZ_MAX_STEPS = 20_000
#: crash states checked per fuzzing run: the first ones of the full plan (no crash and every
#: unflushed write at each flush/FUA point come first), so whatever a fuzzing run finds, the verdict
#: of record finds too. The full plan costs as much as ten executions; a journalled run that
#: checked all of it would starve the search of executions.
FUZZ_CRASH_STATES = 40
#: crash states checked in a run whose *model* coverage (``Execution.coverage``: kernel decisions,
#: lock-order edges, preemption sites, syscall outcomes -- not the interleaving families, which keep
#: growing for as long as a campaign runs) holds nothing seen before: what reaches the disk, and in
#: which order, is decided by those kernel paths, and runs that took them were checked in full, so
#: a spot check of the plan's first states. Crash checking is most of a journalled run's cost;
#: spending it on new kernel behaviour buys the rest of the search more executions (AFL spends its
#: expensive deterministic stages on new inputs only, for the same reason)
FUZZ_CRASH_STATES_SEEN = 6


def evaluate(
    candidate: Candidate,
    *,
    oracle: bool = True,
    max_steps: int = FUZZ_MAX_STEPS,
    families: frozenset[str] = DEFAULT_FAMILIES,
    crash_states: int | None = FUZZ_CRASH_STATES,
    novel: Callable[[frozenset[str]], bool] | None = None,
) -> Outcome:
    """Run a candidate under the oracle (pure: the same candidate gives the same outcome, for the
    same ``novel``). ``novel(coverage)``: whether the run's model coverage holds something new to
    the caller; when it says no, only the first :data:`FUZZ_CRASH_STATES_SEEN` crash states are
    checked."""
    from fuzz.runner import execute
    from fuzz.verdict import oracle_findings, report_finding

    t0 = time.perf_counter()
    program = candidate.program
    chooser: PlanChooser | ListChooser | None = None
    observed: ContextCoverage | None = None
    try:

        def factory(machine: Any) -> PlanChooser | ListChooser:
            nonlocal chooser, observed
            recorder = getattr(machine, "recorder", None)
            files = recorder.current if recorder is not None else None
            observed = ContextCoverage(machine.sched, machine.sched.coverage, files)
            machine.sched.coverage = observed
            chooser = (
                PlanChooser(candidate.plan) if candidate.plan is not None else ListChooser(program.schedule)
            )
            return chooser

        ex = execute(program, chooser_factory=factory, max_steps=max_steps)
        features = execution_features(ex, families)
        if observed is not None and "cx" in families:
            features |= observed.context
        findings = [report_finding(r) for r in ex.reports]
        if oracle and not ex.stopped:
            states = crash_states
            if novel is not None and not novel(ex.coverage):
                states = FUZZ_CRASH_STATES_SEEN if states is None else min(states, FUZZ_CRASH_STATES_SEEN)
            findings.extend(oracle_findings(ex, crash_states=states))
        if candidate.plan is not None:
            program = program.with_schedule(trim_schedule(ex.schedule))
    except Exception as err:  # a simulator bug: report it, keep fuzzing
        if isinstance(chooser, PlanChooser):
            program = program.with_schedule(trim_schedule(chooser.decisions))
        where = traceback.extract_tb(err.__traceback__)[-1]
        msg = f"{type(err).__name__} at {Path(where.filename).name}:{where.name}: {_NUM.sub('N', str(err))}"
        return Outcome(program, frozenset(), [], 0, 1, time.perf_counter() - t0, error=msg[:300])
    return Outcome(
        program=program,
        features=features,
        findings=findings,
        steps=ex.steps,
        decisions=max(ex.decisions_used, 1),
        seconds=time.perf_counter() - t0,
    )


# --------------------------------------------------------------------------------------------------
# corpus and stats


@dataclass
class Entry:
    program: Program
    plan: Plan | None
    features: frozenset[str]
    decisions: int
    added_at: int
    picks: int = 0
    weight: float = 1.0
    origin: str = ""
    parent: int = -1
    #: total scheduler steps of its run (the cost measure: deterministic, unlike seconds)
    steps: int = 0
    #: its features as engine feature ids (for weighing the corpus in bulk)
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


@dataclass
class FoundBug:
    """A new finding: the first program that showed it, and its minimized form (if minimized)."""

    finding: Finding
    program: Program
    minimized: Program | None
    execution_index: int
    seconds: float
    minimize_seconds: float = 0.0
    #: how the input was made: its origin, its parent's, ... (newest first)
    lineage: list[str] = field(default_factory=list)


@dataclass
class EngineStats:
    executions: int = 0
    seconds: float = 0.0
    corpus: int = 0
    coverage: int = 0
    findings: dict[str, int] = field(default_factory=dict)
    last_new_coverage: float = 0.0
    last_new_finding: float | None = None
    minimize_seconds: float = 0.0
    #: runs in which the simulator itself raised an exception (bugs in blkfuzz, kept apart)
    errors: int = 0

    @property
    def execs_per_second(self) -> float:
        return self.executions / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "executions": self.executions,
            "seconds": round(self.seconds, 3),
            "execs_per_second": round(self.execs_per_second, 1),
            "corpus": self.corpus,
            "coverage": self.coverage,
            "findings": dict(sorted(self.findings.items())),
            "last_new_coverage": round(self.last_new_coverage, 3),
            "last_new_finding": None if self.last_new_finding is None else round(self.last_new_finding, 3),
            "minimize_seconds": round(self.minimize_seconds, 3),
            "simulator_errors": self.errors,
        }

    def line(self) -> str:
        found = ", ".join(f"{k}: {v}" for k, v in sorted(self.findings.items())) or "none"
        return (
            f"[{self.seconds:7.1f}s] execs {self.executions} ({self.execs_per_second:.0f}/s) "
            f"corpus {self.corpus} cov {self.coverage} findings {found}"
        )


# --------------------------------------------------------------------------------------------------
# the engine


class Engine:
    """A fuzzing campaign in one process.

    ``variants``: variants every program runs with; ``seed``: the random seed; ``mode``: ``"fuzz"``
    (coverage-guided) or ``"random"`` (the plain-random baseline); ``minimize``: minimize each new
    finding (``minimize_time`` seconds at most); ``on_finding(bug)``: called for each new finding
    signature; ``target(finding)``: a finding that makes :meth:`run` stop (besides
    ``stop_on_first``); ``seeds``: initial programs (e.g. a stored corpus) run first.
    """

    def __init__(
        self,
        variants: Sequence[str] = (),
        *,
        seed: int = 0,
        mode: str = "fuzz",
        minimize: bool = True,
        minimize_time: float = 30.0,
        on_finding: Callable[[FoundBug], None] | None = None,
        on_new_input: Callable[[Program], None] | None = None,
        on_error: Callable[[str, Program], None] | None = None,
        target: Callable[[Finding, Program], bool] | None = None,
        seeds: Sequence[Program] = (),
        oracle: bool = True,
        families: frozenset[str] = DEFAULT_FAMILIES,
    ) -> None:
        self.families = families
        if mode not in ("fuzz", "random"):
            raise ValueError(f"mode must be 'fuzz' or 'random', got {mode!r}")
        self.mode = mode
        self.rng = random.Random(seed)
        self.gen = Generator(variants, swarm=(mode == "fuzz"))
        self.mutator = Mutator(self.gen)
        self.corpus: list[Entry] = []
        self.hits: Counter[str] = Counter()
        self.signatures: dict[str, FoundBug] = {}
        self.stats = EngineStats()
        self.minimize_enabled = minimize
        self.minimize_time = minimize_time
        self.on_finding = on_finding
        self.on_new_input = on_new_input
        self.on_error = on_error
        #: simulator exceptions by normalized message -> the first program that raised it
        self.errors: dict[str, Program] = {}
        self.target = target
        self.target_hit: FoundBug | None = None
        self.oracle = oracle
        self.pending_seeds = list(seeds)
        #: average decisions per syscall, learned from runs (for planning fresh programs)
        self._dec_total = 0
        self._calls_total = 0
        self._started = 0.0
        self._weights_dirty = True
        self._cum: list[float] = []
        self._refreshed_at = 0
        #: feature -> index of the cheapest corpus entry showing it; the favored entries
        self._best_for: dict[str, int] = {}
        self._favored: set[int] = set()
        #: feature -> id, and per id its name and weight (interleaving features count half)
        self._fid: dict[str, int] = {}
        self._fnames: list[str] = []
        self._fscale: list[float] = []
        #: the programs run, in order (digests), when ``record`` is on (for determinism tests)
        self.record = False
        self.history: list[str] = []

    # -- proposing --------------------------------------------------------------------------------

    def _expected_decisions(self, program: Program) -> int:
        per_call = self._dec_total / self._calls_total if self._calls_total else 8.0
        return max(4, int(per_call * max(program.n_syscalls, 1)))

    def _fresh(self) -> Candidate:
        rng = self.rng
        program = self.gen.program(rng)
        if self.mode == "random":
            sched = uniform_schedule(rng, program.n_threads, len(program.actors))
            return Candidate(program.with_schedule(sched), None, "random")
        plan = random_plan(rng, program.n_threads, self._expected_decisions(program), len(program.actors))
        return Candidate(program, plan, "gen")

    def _refresh_weights(self) -> None:
        """Energy: rarity of the entry's features (interleaving features count half), a boost while
        it is new, a bonus if it is the cheapest entry for some feature (AFL's "favored"), a penalty
        for long runs, and a decay with the number of times it was picked."""
        self._cum = []
        # a full pass costs (corpus x features): one table of 1/hits per feature id, gathered per
        # entry with numpy; math.fsum makes each sum exact, so it does not depend on the order of
        # a frozenset (that is, on PYTHONHASHSEED)
        hits = self.hits
        inv = np.fromiter((hits[f] for f in self._fnames), dtype=np.float64, count=len(self._fnames))
        inv = np.asarray(self._fscale, dtype=np.float64) / inv
        self._extend_weights(inv)
        self._refreshed_at = self.stats.executions

    def _feature_ids(self, features: frozenset[str]) -> np.ndarray:
        fid = self._fid
        for f in features:
            if f not in fid:
                fid[f] = len(self._fnames)
                self._fnames.append(f)
                self._fscale.append(0.5 if f[:3] in INTERLEAVING_PREFIXES else 1.0)
        return np.fromiter((fid[f] for f in features), dtype=np.int64, count=len(features))

    def _extend_weights(self, inv: np.ndarray | None = None) -> None:
        """Weigh the entries past the end of the cumulative table (all of them after a reset;
        ``inv``: the per-feature 1/hits table then)."""
        hits = self.hits
        cum = self._cum
        total = cum[-1] if cum else 0.0
        for i in range(len(cum), len(self.corpus)):
            e = self.corpus[i]
            if inv is not None:
                rarity = math.fsum(inv[e.ids].tolist())
            else:
                rarity = math.fsum(
                    (0.5 if f[:3] in INTERLEAVING_PREFIXES else 1.0) / hits[f] for f in e.features
                )
            fresh = FRESH if e.picks < 8 else 1.0
            favored = 2.0 if i in self._favored else 0.25
            cost = 1.0 / (1.0 + e.steps / 300.0)
            e.weight = (0.02 + rarity) * fresh * favored * cost / (1.0 + e.picks / 32.0)
            total += e.weight
            cum.append(total)
        self._weights_dirty = False

    def _pick(self) -> int:
        # a full re-weighing costs a pass over every feature of every entry: at most once per
        # REWEIGH_EVERY runs; entries added in between are weighed on their own when they arrive
        if not self._cum or self.stats.executions - self._refreshed_at >= REWEIGH_EVERY:
            self._refresh_weights()
        elif self._weights_dirty:
            self._extend_weights()
        x = self.rng.random() * self._cum[-1]
        lo, hi = 0, len(self._cum) - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if self._cum[mid] < x:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def propose(self) -> Candidate:
        """The next input to run (hub side)."""
        rng = self.rng
        if self.pending_seeds:
            return Candidate(self.pending_seeds.pop(0), None, "seed")
        if self.mode == "random" or not self.corpus or rng.random() < 0.08:
            return self._fresh()
        idx = self._pick()
        parent = self.corpus[idx]
        parent.picks += 1
        p = parent.program
        steps = parent.decisions
        n_actors = len(p.actors)
        r = rng.random()
        sched_share = SCHED_SHARE if (p.n_threads > 1 or n_actors) else SCHED_SHARE / 2
        if r < sched_share:
            # schedule only: mostly a nearby PCT plan (one more preemption, one moved), sometimes a
            # fresh plan or a nearby recorded schedule
            s = rng.random()
            if s < 0.15 or (parent.plan is None and s < 0.5):
                return Candidate(p, random_plan(rng, p.n_threads, steps, n_actors), "sched:new", idx)
            if s < 0.85 and parent.plan is not None:
                nearby = perturb_plan(rng, parent.plan, p.n_threads, steps, n_actors)
                return Candidate(p, nearby, "sched:plan", idx)
            sched = perturb_schedule(rng, p.schedule, steps, p.n_threads)
            return Candidate(p.with_schedule(sched), None, "sched:num", idx)
        if rng.random() < 0.8:
            rounds = 1 if rng.random() < 0.6 else rng.randint(2, 4)
            child, applied = self.mutator.mutate_program(rng, p, rounds=rounds)
            origin = "mut:" + "+".join(applied)
        else:
            other = self.corpus[self._pick()].program
            child = self.mutator.splice(rng, p, other) or p
            origin = "splice"
        # the child keeps the parent's schedule intent: its plan (adapts to the new program), or
        # a fresh plan; recorded numeric schedules rarely survive structural change
        child_plan: Plan | None
        q = rng.random()
        if parent.plan is not None and q < 0.6:
            child_plan = parent.plan
            if len(child_plan.priorities) != child.n_threads:
                child_plan = perturb_plan(rng, child_plan, child.n_threads, steps, len(child.actors))
        elif q < 0.85:
            child_plan = random_plan(rng, child.n_threads, steps, len(child.actors))
        else:
            child_plan = None
        return Candidate(child, child_plan, origin, idx)

    # -- feedback ---------------------------------------------------------------------------------

    def feedback(
        self, cand: Candidate, out: Outcome, reproduced: Mapping[str, bool] | None = None
    ) -> list[FoundBug]:
        """Account for one run (hub side); returns the new findings it produced. ``reproduced``:
        what a worker's re-execution already showed (signature -> shown again), so a hang is not
        confirmed a second time here."""
        st = self.stats
        st.executions += 1
        now = self._elapsed()
        if self.record:
            self.history.append(out.program.digest())
        if out.error is not None:
            st.errors += 1
            if out.error not in self.errors:
                self.errors[out.error] = out.program
                if self.on_error is not None:
                    self.on_error(out.error, out.program)
            return []
        self._dec_total += out.decisions
        self._calls_total += max(out.program.n_syscalls, 1)
        new = [f for f in out.features if f not in self.hits]
        self.hits.update(out.features)
        if self.mode == "fuzz" and new:
            self.corpus.append(
                Entry(
                    out.program,
                    cand.plan,
                    out.features,
                    out.decisions,
                    st.executions,
                    origin=cand.origin,
                    parent=cand.parent,
                    steps=out.steps,
                    ids=self._feature_ids(out.features),
                )
            )
            idx = len(self.corpus) - 1
            for f in out.features:
                best = self._best_for.get(f)
                if best is None or self.corpus[best].steps > out.steps:
                    self._best_for[f] = idx
            self._favored = set(self._best_for.values())
            self._weights_dirty = True
            st.last_new_coverage = now
            if self.on_new_input is not None:
                self.on_new_input(out.program)
        st.corpus = len(self.corpus)
        st.coverage = len(self.hits)
        found: list[FoundBug] = []
        for finding in out.findings:
            sig = finding.signature
            if (
                self.target is not None
                and self.target_hit is None
                and sig in self.signatures
                and self.target(finding, out.program)
            ):
                # a signature seen before (maybe for another reason) is the target this time
                self.target_hit = FoundBug(
                    finding, out.program, None, st.executions, now, 0.0, self.lineage(cand)
                )
            if sig in self.signatures:
                continue
            if finding.category == "hang":
                confirmed = reproduced.get(sig) if reproduced is not None else None
                if not (self._confirm(out.program, sig) if confirmed is None else confirmed):
                    continue
            bug = self._record_finding(finding, out.program, now)
            bug.lineage = self.lineage(cand)
            found.append(bug)
        return found

    @staticmethod
    def _confirm(program: Program, signature: str) -> bool:
        """A hang under the fuzzing step limit must also hang under the runner's default."""
        from fuzz.verdict import judge

        try:
            return signature in judge(program).signatures()
        except Exception:
            return False

    def lineage(self, cand: Candidate) -> list[str]:
        """The mutation history of ``cand``: its origin, then its ancestors' (newest first)."""
        out = [cand.origin]
        idx = cand.parent
        while 0 <= idx < len(self.corpus) and len(out) < 50:
            e = self.corpus[idx]
            out.append(f"{e.origin}#{idx}")
            idx = e.parent
        return out

    def _record_finding(self, finding: Finding, program: Program, now: float) -> FoundBug:
        st = self.stats
        original = Program(
            files=program.files,
            threads=program.threads,
            schedule=program.schedule,
            config=program.config,
            variants=program.variants,
            actors=program.actors,
            expect=Expect("finding", finding.signature),
            meta={"found_by": "blkfuzz fuzz", "execution": st.executions, "title": finding.title},
        )
        bug = FoundBug(finding, original, None, st.executions, now)
        self.signatures[finding.signature] = bug
        st.findings[finding.category] = st.findings.get(finding.category, 0) + 1
        st.last_new_finding = now
        if self.target is not None and self.target_hit is None and self.target(finding, program):
            self.target_hit = bug
        if self.minimize_enabled:
            from fuzz.minimize import minimize

            t0 = time.monotonic()
            small = minimize(original, finding.signature, time_limit=self.minimize_time)
            bug.minimized = Program(
                files=small.files,
                threads=small.threads,
                schedule=small.schedule,
                config=small.config,
                variants=small.variants,
                actors=small.actors,
                expect=Expect("finding", finding.signature),
                meta={"minimized_from": original.digest(), "title": finding.title},
            )
            bug.minimize_seconds = time.monotonic() - t0
            st.minimize_seconds += bug.minimize_seconds
        if self.on_finding is not None:
            self.on_finding(bug)
        return bug

    # -- the loop ---------------------------------------------------------------------------------

    def step(self) -> list[FoundBug]:
        """One iteration: propose, evaluate, feed back."""
        cand = self.propose()
        hits = self.hits
        out = evaluate(
            cand,
            oracle=self.oracle,
            families=self.families,
            novel=lambda coverage: any(f not in hits for f in coverage),
        )
        return self.feedback(cand, out)

    def run(
        self,
        *,
        time_limit: float | None = None,
        runs: int | None = None,
        stop_on_first: bool = False,
        progress: Callable[[EngineStats], None] | None = None,
        progress_every: float = 5.0,
    ) -> EngineStats:
        """Run until ``time_limit`` seconds (minimization included), ``runs`` executions, the
        first finding (``stop_on_first``) or the target finding, whichever comes first."""
        self._started = time.monotonic() - self.stats.seconds
        last_report = time.monotonic()
        try:
            while True:
                if runs is not None and self.stats.executions >= runs:
                    break
                if time_limit is not None and self._elapsed() >= time_limit:
                    break
                found = self.step()
                self.stats.seconds = self._elapsed()
                if found and stop_on_first:
                    break
                if self.target_hit is not None:
                    break
                if progress is not None and time.monotonic() - last_report >= progress_every:
                    last_report = time.monotonic()
                    progress(self.stats)
        finally:
            self.stats.seconds = self._elapsed()
        return self.stats

    def _elapsed(self) -> float:
        """Wall time since the campaign started (minimization included)."""
        return time.monotonic() - self._started
