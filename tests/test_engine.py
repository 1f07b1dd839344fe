"""The fuzzing engine: determinism, feedback, and rediscovery of a lock-order bug from scratch."""

from __future__ import annotations

from typing import Any

import pytest

from fuzz.engine import Candidate, Engine, evaluate
from fuzz.generate import Generator
from fuzz.mutate import Mutator, Plan, PlanChooser, perturb_plan, random_plan
from fuzz.program import load_program
from fuzz.verdict import judge


def test_same_seed_same_programs_and_findings() -> None:
    def run(seed: int) -> tuple[list[str], list[str]]:
        eng = Engine(["iomap"], seed=seed, minimize=False)
        eng.record = True
        eng.run(runs=40)
        return eng.history, sorted(eng.signatures)

    a, b = run(7), run(7)
    assert a == b
    assert run(8)[0] != a[0]


def test_corpus_grows_only_with_new_features() -> None:
    eng = Engine([], seed=1, minimize=False)
    eng.run(runs=60)
    assert 0 < len(eng.corpus) < 60
    seen: set[str] = set()
    for entry in eng.corpus:  # every entry brought at least one feature no earlier entry had
        assert entry.features - seen
        seen |= entry.features


def test_evaluate_is_a_pure_function_of_the_candidate() -> None:
    import random

    rng = random.Random(3)
    gen = Generator(["ext4-inline"])
    prog = gen.program(rng)
    cand = Candidate(prog, random_plan(rng, prog.n_threads, 30, len(prog.actors)))
    one, two = evaluate(cand), evaluate(cand)
    assert one.program == two.program
    assert one.features == two.features
    assert [f.signature for f in one.findings] == [f.signature for f in two.findings]
    # the schedule the plan took is recorded: replaying the program alone gives the same run
    assert judge(one.program).signatures() == sorted({f.signature for f in one.findings})


def _two_writes_under_noise(noise: float, seed: int) -> tuple[int, tuple[int, ...]]:
    """How many background actions a one-thread program saw under a plan with this noise level
    and no planned points, and the schedule it recorded."""
    prog = load_program(
        {
            "format": "blkfuzz-program/1",
            "config": {"write_path": "ext4", "journal": False, "device_blocks": 64},
            "actors": ["writeback", "complete", "reclaim"],
            "files": ["a"],
            "threads": [
                [
                    {"op": "pwrite", "file": "a", "off": 0, "len": 40960, "data": {"seed": 1}},
                    {"op": "pwrite", "file": "a", "off": 0, "len": 36865, "data": {"seed": 2}},
                ]
            ],
        }
    )
    out = evaluate(Candidate(prog, Plan((0,), seed=seed, noise=noise)))
    return sum(1 for d in out.program.schedule if d), out.program.schedule


def test_background_noise_fires_random_actions_and_replays() -> None:
    quiet, _ = _two_writes_under_noise(0.0, 5)
    assert quiet == 0  # no planned point, no noise: the program runs undisturbed
    busy, schedule = _two_writes_under_noise(0.3, 5)
    assert busy >= 5  # about one step in three fired a writeback, a completion or an eviction
    assert _two_writes_under_noise(0.3, 5) == (busy, schedule)  # the plan's seed drives the noise
    assert _two_writes_under_noise(0.3, 6)[1] != schedule


def test_plans_draw_and_perturb_the_noise_level() -> None:
    import random

    rng = random.Random(0)
    plans = [random_plan(rng, 2, 50, 3) for _ in range(400)]
    levels = {p.noise for p in plans}
    assert 0.0 in levels and len(levels) > 2  # some plans are quiet, others noisy at several levels
    assert all(p.noise == 0.0 for p in (random_plan(rng, 2, 50, 0) for _ in range(100)))  # no actors
    quiet = Plan((0, 1))
    assert {perturb_plan(rng, quiet, 2, 50, 3, op="noise").noise for _ in range(100)} > {0.0}


def test_mutations_keep_programs_valid() -> None:
    import random

    rng = random.Random(5)
    gen = Generator(["iomap"])
    mut = Mutator(gen)
    prog = gen.program(rng)
    for _ in range(200):
        child, applied = mut.mutate_program(rng, prog, rounds=2)
        assert applied
        # every mutant survives a round trip through the program format
        from fuzz.program import dump_program

        assert load_program(dump_program(child)) == child
        prog = child if child.n_syscalls < 30 else prog


def test_random_mode_keeps_no_corpus() -> None:
    eng = Engine([], seed=2, mode="random", minimize=False)
    eng.run(runs=20)
    assert eng.corpus == []
    assert eng.stats.executions == 20


def test_finds_the_ext4_inline_v2_lock_inversion_from_scratch() -> None:
    """Quality tier: no seed program, no hint; the engine reaches the i_rwsem/mmap_lock cycle of
    the proposed v2 fix and the minimizer brings it down to one syscall."""
    sig = "lock-order: possible deadlock in fault_in_iov_iter_readable"
    eng = Engine(
        ["ext4-inline-v2"], seed=0, minimize=True, minimize_time=30, target=lambda f, p: f.signature == sig
    )
    eng.run(runs=3000)
    assert eng.target_hit is not None
    bug = eng.signatures[sig]
    assert bug.minimized is not None
    assert bug.minimized.n_syscalls == 1
    assert sig in judge(bug.minimized).signatures()


def test_runs_without_new_model_coverage_get_a_crash_spot_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """While fuzzing, a run whose model coverage is not new checks only the first states of the
    crash plan (what it reports, the full check reports too); the run and its features do not
    change, and the novelty callback sees the model coverage only, not the interleaving features."""
    from pathlib import Path

    import fuzz.verdict
    from fuzz.engine import FUZZ_CRASH_STATES, FUZZ_CRASH_STATES_SEEN
    from fuzz.program import load_program_file

    corpus = Path(__file__).resolve().parents[1] / "corpus"
    prog = load_program_file(corpus / "inline-destroy-early-fdatasync.json")
    assert prog.config.journal
    budgets: list[int | None] = []
    real = fuzz.verdict.oracle_findings

    def spy(ex: Any, **kw: Any) -> Any:
        budgets.append(kw.get("crash_states"))
        return real(ex, **kw)

    monkeypatch.setattr(fuzz.verdict, "oracle_findings", spy)
    shown: list[frozenset[str]] = []

    def old(coverage: frozenset[str]) -> bool:
        shown.append(coverage)
        return False

    spot = evaluate(Candidate(prog), novel=old)
    full = evaluate(Candidate(prog), novel=lambda coverage: True)
    assert budgets == [FUZZ_CRASH_STATES_SEEN, FUZZ_CRASH_STATES]
    assert shown and not any(f.startswith(("cx:", "ia:", "ix:")) for f in shown[0])
    assert spot.features == full.features and spot.steps == full.steps
    assert {f.signature for f in spot.findings} <= {f.signature for f in full.findings}


def _two_writers(file_b: str) -> Any:
    return load_program(
        {
            "format": "blkfuzz-program/1",
            "files": ["a", "b"],
            "threads": [
                [{"op": "pwrite", "file": "a", "off": 0, "len": 8192, "data": {"seed": 1}}],
                [{"op": "pwrite", "file": file_b, "off": 0, "len": 8192, "data": {"seed": 2}}],
            ],
        }
    )


def test_context_pairs_of_threads_on_one_file_are_features_of_their_own() -> None:
    """Two threads interleaved inside syscalls on the same file show ``cx=:`` pairs (alias
    coverage); the same interleaving with one thread on another file shows plain ``cx:`` pairs
    only."""
    from dataclasses import replace
    from pathlib import Path

    from fuzz.program import load_program_file

    path = Path(__file__).parents[1] / "corpus" / "ext4-inline-write-end-bug-fuzzed-on-ext4-inline-fixed.json"
    shared = load_program_file(path)
    apart = replace(
        shared,
        files=("a", "b"),
        threads=(shared.threads[0], tuple(replace(c, file="b") for c in shared.threads[1])),
    )
    on_one = evaluate(Candidate(shared, None, "test")).features
    on_two = evaluate(Candidate(apart, None, "test")).features
    assert any(f.startswith("cx=:") for f in on_one)
    assert any(f.startswith("cx:T:") for f in on_two)
    assert not any(f.startswith("cx=:") for f in on_two)


def test_share_points_a_syscall_at_another_threads_file() -> None:
    import random

    mut = Mutator(Generator([]))
    prog = _two_writers("b")
    rng = random.Random(3)
    children = [mut.share(rng, prog) for _ in range(20)]
    assert all(c is not None for c in children)
    assert all({c.threads[0][0].file, c.threads[1][0].file} == {c.threads[0][0].file} for c in children if c)
    assert any(c.threads[0][0].file == "b" for c in children if c)
    assert any(c.threads[1][0].file == "a" for c in children if c)
    single = load_program(
        {"format": "blkfuzz-program/1", "files": ["a"], "threads": [[{"op": "fsync", "file": "a"}]]}
    )
    assert mut.share(rng, single) is None  # one thread: nothing to share with


def test_a_plan_enumerates_the_background_actions_only_when_it_may_fire_one() -> None:
    """PlanChooser.choose_split: a step that runs a task does not ask for the actions (the
    scheduler builds that list lazily); a planned action does, and its index counts after the
    tasks, as in the full option list."""
    from simkernel.kernel.sched import Action, Task

    def gen() -> Any:
        yield

    tasks = [Task(0, "T0", "user", gen()), Task(1, "T1", "user", gen())]
    acts = [Action("drop_caches", lambda: None, "drop_caches")]
    asked: list[int] = []

    def actions() -> list[Action]:
        asked.append(1)
        return acts

    chooser = PlanChooser(Plan((0, 1), actions=((2, 0, 0),)))
    assert [chooser.choose_split(tasks, actions) for _ in range(2)] == [1, 1]  # T1: higher priority
    assert not asked
    assert chooser.choose_split(tasks, actions) == 2  # the planned action, after the two tasks
    assert asked
    full = PlanChooser(Plan((0, 1), actions=((2, 0, 0),)))
    assert [full.choose_option([*tasks, *acts]) for _ in range(3)] == chooser.decisions


def test_lockdep_walks_the_stack_only_for_a_new_dependency() -> None:
    from simkernel.locking.lockdep import Lockdep

    dep = Lockdep()
    walks: list[int] = []

    def stack() -> list[str]:
        walks.append(1)
        return ["f"]

    a, b = [(object(), "A", False)], [(object(), "B", False)]
    assert dep.acquire(a, "B", read=False, task="T0", step=1, stack=stack) is None
    assert len(walks) == 1 and dep.graph["A"]["B"].stack == ["f"]
    assert dep.acquire(a, "B", read=False, task="T0", step=2, stack=stack) is None
    assert len(walks) == 1  # the edge A -> B is known: nothing to record, no walk
    rep = dep.acquire(b, "A", read=False, task="T1", step=3, stack=stack)  # B -> A closes a cycle
    assert rep is not None and rep.stack == ["f"] and len(walks) == 2
    assert dep.acquire(a, "A", read=False, task="T0", step=4, stack=stack) is not None  # recursive
    assert len(walks) == 3
