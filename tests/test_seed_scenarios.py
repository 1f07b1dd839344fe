"""The seed interleavings, reproduced step for step by explicit schedules (issue: controlled concurrency).

Each program in tests/programs/ was authored by intent (tests/seed_programs.py) and stored with its
numeric schedule. The outcome must come from the modelled mechanisms: the stale iomap zeroes a byte
already on disk; page_mkwrite's destroy/restore of inline data makes write_end hit the kernel's
assertions; the v2 fix's lock order is flagged by lockdep and can really deadlock.
"""

from __future__ import annotations

import pytest

from fuzz.runner import Execution, execute
from simkernel.report import Report
from tests.seed_programs import P, regenerate, seeds, stored

SEEDS = {s.name: s for s in seeds()}


def run(name: str) -> Execution:
    return execute(stored(SEEDS[name]))


def titles(reports: list[Report]) -> list[str]:
    return [r.title for r in reports]


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_stored_schedule_matches_its_intent(name: str) -> None:
    """The directed steps still produce exactly the stored schedule (else: regenerate, see module doc)."""
    seed = SEEDS[name]
    assert regenerate(seed).schedule == stored(seed).schedule, (
        f"run: python -m tests.seed_programs --write ({name})"
    )


def expected_b3() -> bytes:
    """fallocate 10P zeros, then 0x58 at 10P-1, then W2's bytes over [0, 9P+1)."""
    from fuzz.data import pattern

    out = bytearray(10 * P)
    out[10 * P - 1] = 0x58
    out[0 : 9 * P + 1] = pattern(7, 9 * P + 1)
    return bytes(out)


def test_b3_stale_iomap_corrupts_on_nocookie() -> None:
    ex = run("b3-iomap-nocookie")
    assert ex.reports == []
    data = ex.files["a"]
    assert len(data) == 10 * P
    # the byte W1 wrote (and writeback put on disk) was zeroed by W2's stale UNWRITTEN map
    assert data[10 * P - 1] == 0x00
    diff = [i for i, (a, b) in enumerate(zip(data, expected_b3())) if a != b]
    assert diff and all(i >= 9 * P + 1 for i in diff)


def test_b3_cookie_remaps_and_keeps_the_data() -> None:
    ex = run("b3-iomap")
    assert ex.reports == []
    assert ex.files["a"] == expected_b3()


def test_b3_interleaving_step_for_step() -> None:
    """W2 maps, WB writes folio 9, IOC converts, RC evicts, then W2 reaches folio 9 (seed-bugs.md B.3)."""
    ex = run("b3-iomap-nocookie")
    events = [(t.who, t.what.split(" ")[0]) for t in ex.trace]
    start = [e[0] for e in events].index("T0")
    order = [
        [(t.who, t.what) for t in ex.trace].index(("writeback", "writeback ino=12 folio=9"), start),
        next(i for i, t in enumerate(ex.trace) if t.who == "complete" and "off=36864" in t.what),
        next(i for i, e in enumerate(events) if e[0].startswith("kworker/")),
        [(t.who, t.what) for t in ex.trace].index(("reclaim", "reclaim ino=12 folio=9")),
    ]
    assert order == sorted(order)
    assert any(e == ("T0", "runs") for e in events[order[-1] :])
    # W2's 2nd pwrite was invoked before the writeback and returned after the reclaim
    w2 = ex.history.ops[2]
    assert w2.invoke < ex.trace[order[0]].step and w2.ret is not None and w2.ret > ex.trace[order[-1]].step


def test_a1_bug_at_inline_capacity_check() -> None:
    ex = run("a1-ext4-inline")
    [rep] = ex.reports
    assert rep.title == "kernel BUG in ext4_write_inline_data_end"
    assert rep.message == "BUG_ON(pos + len > EXT4_I(inode)->i_inline_size)"
    assert rep.details == {"pos": 90, "len": 1, "i_inline_size": 90}
    assert rep.stack[:2] == ["ext4_write_inline_data", "ext4_write_inline_data_end"]
    # M's fault got SIGBUS after the restore, W never returned
    assert [(o.op, o.result) for o in ex.history.ops] == [("pwrite", 90), ("pwrite", None), ("mwrite", -14)]


def test_a1b_journal_stop_without_handle() -> None:
    ex = run("a1b-ext4-inline")
    assert titles(ex.reports) == ["kernel BUG in __ext4_journal_stop"]
    assert ex.reports[0].message == "BUG_ON(ref_cnt == 0)"


def test_a2_inline_data_gone_at_write_end() -> None:
    ex = run("a2-ext4-inline")
    assert titles(ex.reports) == ["kernel BUG in ext4_write_inline_data_end"]
    assert ex.reports[0].message == "BUG_ON(!ext4_has_inline_data(inode))"


def test_a3_block_write_end_without_buffers() -> None:
    ex = run("a3-ext4-inline")
    assert titles(ex.reports) == ["WARNING in ext4_da_do_write_end"]
    assert ex.history.ops[1].result == -5  # -EIO, as recent kernels return


@pytest.mark.parametrize("case", ["a1", "a1b", "a2", "a3"])
def test_fixed_variant_is_clean(case: str) -> None:
    """The same programs on ext4-inline-fixed: with their own directed schedule, and with the exact
    schedule that broke ext4-inline."""
    assert run(f"{case}-ext4-inline-fixed").reports == []
    buggy = stored(SEEDS[f"{case}-ext4-inline"])
    assert execute(buggy.with_variants(["ext4-inline-fixed"])).reports == []


def test_v2_lock_cycle_flagged() -> None:
    ex = run("v2-ext4-inline-v2")
    [rep] = ex.reports
    assert rep.category == "lock-order"
    assert rep.message.startswith("possible circular locking dependency detected")
    assert "&mm->mmap_lock" in rep.message and "i_mutex_key" in rep.message
    assert run("v2-ext4-inline").reports == []


def test_real_deadlock_reported_with_cycle() -> None:
    ex = run("deadlock-ext4-inline-v2")
    dead = [r for r in ex.reports if r.category == "deadlock"]
    assert len(dead) == 1
    cycle = dead[0].details["cycle"]
    assert len(cycle) == 2
    assert cycle[0].startswith("T0 waits for mmap_lock held by T1")
    assert cycle[1].startswith("T1 waits for i_rwsem#12 held by T0")
    assert [o.ret for o in ex.history.ops][1:] == [None, None]
    assert run("deadlock-ext4-inline").reports == []
