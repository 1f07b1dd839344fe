"""The minimizer: keeps the finding, shrinks, is deterministic, and reaches known sizes."""

from __future__ import annotations

from pathlib import Path

import pytest

from fuzz.minimize import minimize, normalize_schedule
from fuzz.program import Program, load_program_file
from fuzz.verdict import judge

PROGRAMS = Path(__file__).parent / "programs"


def _preemptions(schedule: tuple[int, ...]) -> int:
    return sum(1 for d in schedule if d)


@pytest.mark.quality
@pytest.mark.parametrize(
    ("name", "max_calls"),
    [("b3-iomap-nocookie", 3), ("a1-ext4-inline", 3), ("a2-ext4-inline", 4), ("v2-ext4-inline-v2", 2)],
)
def test_seed_programs_minimize_to_known_sizes(name: str, max_calls: int) -> None:
    program = load_program_file(PROGRAMS / f"{name}.json")
    sig = judge(program).signatures()[0]
    small = minimize(program, sig, time_limit=30)
    assert sig in judge(small).signatures()
    assert small.n_syscalls <= min(max_calls, program.n_syscalls)
    assert _preemptions(small.schedule) <= _preemptions(normalize_schedule(program).schedule)


def test_minimize_is_deterministic() -> None:
    program = load_program_file(PROGRAMS / "a1-ext4-inline.json")
    sig = judge(program).signatures()[0]
    assert minimize(program, sig, time_limit=30) == minimize(program, sig, time_limit=30)


def test_no_single_syscall_removal_keeps_the_finding() -> None:
    program = load_program_file(PROGRAMS / "b3-iomap-nocookie.json")
    sig = judge(program).signatures()[0]
    small = minimize(program, sig, time_limit=30)
    from fuzz.minimize import Minimizer

    m = Minimizer(lambda p: sig in judge(p).signatures(), time_limit=30)
    m.best = small
    m.accepted.add(small.digest())
    for t, th in enumerate(small.threads):
        for i in range(len(th)):
            threads = [list(x) for x in small.threads]
            del threads[t][i]
            assert not m._try_structure(threads, {(t, i)}, set()), f"syscall {t}.{i} was not needed"


def test_a_clean_program_is_returned_unchanged() -> None:
    program = load_program_file(PROGRAMS / "b3-iomap.json")
    assert judge(program).clean
    assert minimize(program, "data: whatever", time_limit=5) is program


def test_predicate_mode() -> None:
    program = load_program_file(PROGRAMS / "a1-ext4-inline.json")
    small = minimize(program, predicate=lambda p: any(c.op == "mwrite" for _, _, c in p.iter_syscalls()))
    assert small.n_syscalls == 1


def _interleaving(program: Program) -> int:
    """What seed-bugs.md's interleaving tables count: one row per syscall's start and per
    scheduling decision that departs from the default (a context switch or a background action)."""
    return program.n_syscalls + _preemptions(program.schedule)


@pytest.mark.quality
@pytest.mark.parametrize(
    # the tables: B.3 (8 rows), A.3 (7 rows)
    ("name", "rows"),
    [("fuzzed-iomap-nocookie-first-minimization", 8), ("fuzzed-ext4-inline-first-minimization", 7)],
)
def test_fuzzer_found_reproducers_minimize_to_the_seed_bug_interleavings(name: str, rows: int) -> None:
    """The reproducers the fuzzer found, as the numeric schedule passes alone left them (journal
    commits, fault-injection actions and empty threads kept because removing them shifted every
    later decision), shrink to no more than the hand-written interleaving once the schedule is also
    minimized by name."""
    program = load_program_file(PROGRAMS / f"{name}.json")
    sig = program.expect.signature if program.expect is not None else None
    assert sig is not None and sig in judge(program).signatures()
    small = minimize(program, sig, time_limit=30)
    assert sig in judge(small).signatures()
    assert _interleaving(small) <= rows
    assert _interleaving(small) < _interleaving(program)
