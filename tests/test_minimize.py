"""The minimizer: keeps the finding, shrinks, is deterministic, and reaches known sizes."""

from __future__ import annotations

from pathlib import Path

import pytest

from fuzz.minimize import minimize, normalize_schedule
from fuzz.program import load_program_file
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
