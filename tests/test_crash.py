"""oracle.crash: crash states of clean runs pass; broken IO logs are caught; e2fsck agrees."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bench.workloads import standard
from fuzz.program import Program, load_program
from fuzz.runner import Execution, execute
from fuzz.strategies import configs, programs
from fuzz.verdict import oracle_findings
from oracle.crash import (
    _crash_points,
    _Disk,
    _Journal,
    _plan_states,
    _Point,
    check_crashes,
    crash_report,
    lost_ranges,
)
from oracle.e2fsprogs import debugfs_cat, e2fsck_clean, e2fsck_run, have_e2fsprogs
from oracle.fsck import fsck
from oracle.history import History
from oracle.image import Ext4Image
from oracle.jbd2_recovery import recover
from oracle.linearize import check_final
from oracle.reference import brute_force_finals
from oracle.replay import SECTOR_SIZE, replay
from tests.test_linearize import histories

needs_e2fsprogs = pytest.mark.skipif(not have_e2fsprogs(), reason="e2fsprogs not installed")

JOURNAL = {"journal": True, "device_blocks": 1100}


def _program(ops: list[dict[str, Any]], **config: Any) -> Program:
    return load_program(
        {
            "format": "blkfuzz-program/1",
            "files": ["a", "b"],
            "threads": [ops],
            "config": {**JOURNAL, **config},
            "actors": [],
        }
    )


def _clean(ex: Execution) -> bool:
    return not ex.stopped and not ex.reports and not oracle_findings(ex)


def _check(ex: Execution, entries: Any = None, **kw: Any) -> list[Any]:
    return check_crashes(
        ex.history,
        ex.base,
        ex.iolog if entries is None else entries,
        ex.start_mark,
        seed=kw.pop("seed", 1),
        **kw,
    )


def _titles(findings: list[Any]) -> set[str]:
    return {f.title for f in findings}


# --------------------------------------------------------------------------------------------------
# hand-edited IO logs


def _reindex(entries: list[Any]) -> list[Any]:
    return [replace(e, index=i) for i, e in enumerate(entries)]


def _drop(entries: list[Any], index: int) -> list[Any]:
    """The log without entry ``index`` (it never happened)."""
    return _reindex([e for e in entries if e.index != index])


def _complete_after(entries: list[Any], index: int, after: int) -> list[Any]:
    """Entry ``index`` completes right after entry ``after`` completed."""
    out = list(entries)
    ref = entries[after]
    out[index] = replace(entries[index], complete_seq=ref.complete_seq + 0.5, complete_step=ref.complete_step)
    return out


def _never_completes(entries: list[Any], index: int) -> list[Any]:
    out = list(entries)
    out[index] = replace(entries[index], complete_seq=None, complete_step=None, status=0)
    return out


def _find(entries: list[Any], start: int, pred: Any) -> list[int]:
    return [e.index for e in entries[start:] if pred(e)]


def _is_data(e: Any) -> bool:
    return e.kind == "write" and e.tag.startswith("data")


def _is_commit(e: Any) -> bool:
    return e.kind == "write" and e.tag.startswith("journal commit")


def _is_log(e: Any) -> bool:
    return e.kind == "write" and e.tag == "journal log"


REUSE = [
    {"op": "pwrite", "file": "b", "off": 0, "len": 4096, "data": {"seed": 1}},
    {"op": "fsync", "file": "b"},
    {"op": "truncate", "file": "b", "size": 0},
    {"op": "fsync", "file": "b"},
    {"op": "pwrite", "file": "a", "off": 0, "len": 4096, "data": {"seed": 2}},
    {"op": "fsync", "file": "a"},
]


@pytest.fixture(scope="module")
def reuse() -> Execution:
    ex = execute(_program(REUSE))
    assert _clean(ex)
    return ex


def test_clean_run_has_no_crash_findings(reuse: Execution) -> None:
    rep = crash_report(reuse.history, reuse.base, reuse.iolog, reuse.start_mark, seed=3, max_states=400)
    assert rep.findings == [], [f.render() for f in rep.findings]
    assert rep.states > 20 and rep.journal and rep.recoveries >= 1


def test_dropped_log_block_of_a_committed_transaction(reuse: Execution) -> None:
    entries = list(reuse.iolog.entries)
    commit = _find(entries, reuse.start_mark, _is_commit)[0]
    logs = [i for i in _find(entries, reuse.start_mark, _is_log) if i < commit]
    broken = _drop(entries, logs[2])  # a data block of the transaction (logs[0] is its descriptor)
    findings = _check(reuse, broken)
    assert "crash state: journal recovery reported errors" in _titles(findings), _titles(findings)
    f = next(f for f in findings if f.title == "crash state: journal recovery reported errors")
    assert "checksum" in f.message and f.evidence["crash point"]


def test_data_reordered_after_the_commit_that_maps_it(reuse: Execution) -> None:
    entries = list(reuse.iolog.entries)
    data = _find(entries, reuse.start_mark, _is_data)[-1]  # a's write into b's freed block
    commit = next(i for i in _find(entries, data, _is_commit))
    broken = _complete_after(entries, data, commit)
    findings = _check(reuse, broken)
    foreign = [f for f in findings if f.title.startswith("crash: foreign bytes")]
    assert foreign, _titles(findings)
    f = foreign[0]
    assert f.evidence["file"] == "a"
    assert "data of another file" in f.title and "file b" in f.evidence["diffs"][0]["found_by"]
    assert f.evidence["dropped volatile/in-flight writes"]


def test_commit_without_preflush(reuse: Execution) -> None:
    entries = list(reuse.iolog.entries)
    out = list(entries)
    for i in _find(entries, reuse.start_mark, _is_commit):
        out[i] = replace(entries[i], preflush=False)
    findings = _check(reuse, out, max_states=600)
    assert "crash state: journal recovery reported errors" in _titles(findings), _titles(findings)


def test_a_smaller_check_budget_finds_a_subset(reuse: Execution) -> None:
    """The fuzzer checks the first states of the plan only; every signature it reports must be one
    the verdict of record (the full plan) reports too."""
    entries = list(reuse.iolog.entries)
    data = _find(entries, reuse.start_mark, _is_data)[-1]
    commit = next(i for i in _find(entries, data, _is_commit))
    broken = _complete_after(entries, data, commit)
    full = crash_report(reuse.history, reuse.base, broken, reuse.start_mark, seed=4)
    assert full.findings
    for n in (1, 5, 20, 40):
        part = crash_report(reuse.history, reuse.base, broken, reuse.start_mark, seed=4, check_states=n)
        assert part.states == min(n, full.states)
        assert {f.signature for f in part.findings} <= {f.signature for f in full.findings}
    some = crash_report(reuse.history, reuse.base, broken, reuse.start_mark, seed=4, check_states=40)
    assert some.findings, "the first 40 states include the no-crash/all-writes states of each point"


@pytest.mark.parametrize("budget", [1, 6, 40, 120])
def test_a_budgeted_plan_is_the_prefix_of_the_full_plan(reuse: Execution, budget: int) -> None:
    """A small budget plans only its states (the points' durable splits are computed lazily), and
    they are exactly the full plan's first ``budget`` states."""
    entries = list(reuse.iolog.entries)

    def plan(b: int | None) -> list[tuple[int, Any]]:
        rng = random.Random(9)
        marks = _crash_points(entries, reuse.start_mark, rng)
        points = [_Point(u, 0, lbl, entries) for u, lbl in marks]
        return [(s.point.upto, s.key) for s in _plan_states(points, entries, rng, 200, b)]

    full = plan(None)
    assert len(full) > 6
    assert plan(budget) == full[:budget]


def test_in_flight_preflush_commit_lands_only_with_its_log(reuse: Execution) -> None:
    """A PREFLUSH commit block that is still in flight at the crash may have reached the media --
    but then its flush part completed first, so the log blocks it follows are there too."""
    entries = list(reuse.iolog.entries)
    commit = _find(entries, reuse.start_mark, _is_commit)[0]
    broken = _never_completes(entries, commit)
    rep = crash_report(reuse.history, reuse.base, broken, reuse.start_mark, seed=2, max_states=400)
    assert not [f for f in rep.findings if "journal recovery" in f.title], [f.render() for f in rep.findings]


SYNCED = [
    {"op": "pwrite", "file": "a", "off": 0, "len": 4096, "data": {"seed": 3}},
    {"op": "fsync", "file": "a"},
    {"op": "pwrite", "file": "b", "off": 0, "len": 8192, "data": {"seed": 4}},
    {"op": "fsync", "file": "b"},
]


def test_fsynced_data_write_that_never_completes() -> None:
    ex = execute(_program(SYNCED))
    assert _clean(ex) and _check(ex) == []
    entries = list(ex.iolog.entries)
    data = _find(entries, ex.start_mark, _is_data)[0]  # a's write, which its fsync waited for
    findings = _check(ex, _never_completes(entries, data))
    lost = [f for f in findings if f.title.startswith("crash: fsync'd data lost")]
    assert lost, _titles(findings)
    f = lost[0]
    assert f.evidence["file"] == "a" and f.evidence["rule"] == 2
    d = f.evidence["diffs"][0]
    assert d["found_by"] == "zeros" and "op 0" in d["expected_by"]
    assert any("in flight" in w for w in f.evidence["dropped volatile/in-flight writes"])


def test_fsync_that_failed_promises_nothing() -> None:
    ex = execute(_program(SYNCED))
    ops = list(ex.history.ops)
    ops[1] = replace(ops[1], result=-5)  # the fsync of a "failed"
    history = History(ex.history.files, tuple(ops), ex.history.initial)
    entries = list(ex.iolog.entries)
    data = _find(entries, ex.start_mark, _is_data)[0]
    findings = check_crashes(history, ex.base, _never_completes(entries, data), ex.start_mark, seed=1)
    assert not [f for f in findings if "data lost" in f.title], _titles(findings)


# --------------------------------------------------------------------------------------------------
# clean random runs


# derandomized: a fixed sample, so that a model bug this check finds shows up as a stable failure
@settings(
    max_examples=50, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True
)
@given(programs(config=configs(journal=True)), st.integers(0, 2**16))
def test_clean_journaled_runs_have_no_crash_findings(program: Program, seed: int) -> None:
    ex = execute(program)
    assume(_clean(ex))
    findings = _check(ex, seed=seed, max_states=100)
    assert findings == [], "\n\n".join(f.render() for f in findings)


@settings(
    max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True
)
@given(programs(config=configs(journal=False), max_syscalls=6), st.integers(0, 2**16))
def test_no_journal_checks_only_fsync_promises(program: Program, seed: int) -> None:
    ex = execute(program)
    assume(_clean(ex))
    rep = crash_report(ex.history, ex.base, ex.iolog, ex.start_mark, seed=seed, max_states=40)
    assert not rep.journal
    assert all(f.evidence["rule"] == 2 for f in rep.findings)


def test_reports_are_deterministic() -> None:
    ex = execute(standard().with_config(journal=True, device_blocks=2048))
    a = crash_report(ex.history, ex.base, ex.iolog, ex.start_mark, seed=7, max_states=120)
    b = crash_report(ex.history, ex.base, ex.iolog, ex.start_mark, seed=7, max_states=120)
    assert [f.to_json() for f in a.findings] == [f.to_json() for f in b.findings]
    assert (a.states, a.points, a.images, a.recoveries) == (b.states, b.points, b.images, b.recoveries)
    assert a.states == 120


# --------------------------------------------------------------------------------------------------
# the machinery: incremental images, memoized recovery


def _specs(ex: Execution, seed: int, n: int) -> list[Any]:
    """The crash states crash_report would check (seeded), with their points."""
    entries = list(ex.iolog.entries)
    rng = random.Random(seed)
    marks = _crash_points(entries, ex.start_mark, rng)
    points = [_Point(u, 0, lbl, entries) for u, lbl in marks]
    return sorted(_plan_states(points, entries, rng, n), key=lambda s: s.point.upto)


def _replay_state(ex: Execution, spec: Any) -> np.ndarray:
    chosen = set(spec.chosen) | set(spec.point.state.durable)
    return replay(
        ex.base,
        list(ex.iolog.entries),
        upto=spec.point.upto,
        include=lambda e: e.index in chosen,
        torn=dict(spec.torn),
    )


@pytest.mark.parametrize("config", [JOURNAL, {"journal": True, "device_blocks": 2048, "block_size": 1024}])
def test_incremental_images_and_memoized_recovery_match_replay(config: dict[str, Any]) -> None:
    ex = execute(standard().with_config(**config))
    entries = list(ex.iolog.entries)
    specs = _specs(ex, 5, 150)
    assert any(s.torn for s in specs) and any(s.chosen for s in specs)
    ei = Ext4Image(ex.base)
    disk = _Disk(ex.base, entries, ei.block_size // SECTOR_SIZE)
    jr = _Journal(ex.base, ei)
    bs = ei.block_size
    for spec in specs:
        disk.advance(spec.point.state)
        disk.apply(spec)
        expected = _replay_state(ex, spec)
        assert np.array_equal(disk.work, expected), spec
        rec = jr.recover(disk.work, jr.key(disk.work))
        direct = np.frombuffer(recover(expected, strict=False).image, dtype=np.uint8)
        for blk, data in rec.delta:
            disk.put_block(blk, bs, data)
        assert np.array_equal(disk.work, direct), spec
        disk.restore()
        durable = set(spec.point.state.durable)
        only_durable = replay(
            ex.base, entries, upto=spec.point.upto, include=lambda e, d=durable: e.index in d
        )
        assert np.array_equal(disk.work, only_durable)
    assert jr.hits > jr.misses


# --------------------------------------------------------------------------------------------------
# lost data and check_final(unknown=...)


def test_lost_ranges_cover_failed_data_writes() -> None:
    ex = execute(standard())  # a data write of file a fails with EIO, the final content has zeros
    assert ex.image is not None
    assert check_final(ex.history, ex.files)
    lost = lost_ranges(ex.iolog, ex.image)
    assert lost and all(0 <= a < b <= len(ex.files[f]) for f, rs in lost.items() for a, b in rs)
    assert check_final(ex.history, ex.files, unknown=lost) == []
    # the size is still judged
    assert check_final(ex.history, {**ex.files, "a": ex.files["a"] + b"x"}, unknown=lost)


def test_lost_ranges_empty_without_failures(reuse: Execution) -> None:
    assert reuse.image is not None
    assert lost_ranges(reuse.iolog, reuse.image) == {}


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(histories(threads=(1, 3), ops=(1, 5), files=("a",), max_off=6), st.data())
def test_unknown_ranges_agree_with_brute_force(
    hf: tuple[History, dict[str, bytes]], data: st.DataObject
) -> None:
    h, final = hf
    try:
        outcomes = brute_force_finals(h, "a", limit=50_000)
    except RuntimeError:
        assume(False)
        raise
    cand = bytearray(final["a"])
    for _ in range(data.draw(st.integers(0, 3))):
        if cand:
            cand[data.draw(st.integers(0, len(cand) - 1))] = data.draw(st.sampled_from([0, 7, 0xEE]))
    a = data.draw(st.integers(0, 12))
    b = data.draw(st.integers(a, 14))
    unknown = [(a, b)]
    mask = [not a <= i < b for i in range(len(cand))]
    want = any(
        len(o) == len(cand) and all(o[i] == cand[i] for i in range(len(cand)) if mask[i]) for o in outcomes
    )
    got = not check_final(h, {"a": bytes(cand)}, unknown={"a": unknown})
    assert got == want, (h, bytes(cand), unknown)
    if not got:
        (mm,) = check_final(h, {"a": bytes(cand)}, unknown={"a": unknown})
        for d in mm.diffs:  # no difference is reported inside the unknown range
            for i in range(max(a, d.start), min(b, d.end)):
                k = i - d.start
                assert k >= len(d.found) or k >= len(d.expected) or d.found[k] == d.expected[k]


# --------------------------------------------------------------------------------------------------
# e2fsprogs: e2fsck -fy replays crash images as our recover() + reader do


@pytest.mark.e2fsprogs
@needs_e2fsprogs
@pytest.mark.parametrize("program", ["reuse", "standard"])
def test_e2fsck_recovery_gives_the_same_files(program: str, tmp_path: Path) -> None:
    if program == "reuse":
        ex = execute(_program(REUSE))
    else:
        ex = execute(standard().with_config(journal=True, device_blocks=2048))
    specs = _specs(ex, 11, 200)
    random.Random(11).shuffle(specs)
    checked = 0
    for spec in specs:
        crash = _replay_state(ex, spec)
        res = recover(crash, strict=False)
        if not res.needed or res.errors or fsck(res.image):
            continue  # e2fsck -fy would also repair what fsck flags (e.g. i_size), changing files
        ours = Ext4Image(res.image)
        path = tmp_path / f"crash{checked}.img"
        crash.tofile(path)
        rc, out = e2fsck_run(path, "-fy")
        assert rc in (0, 1), out
        fixed = np.fromfile(path, dtype=np.uint8)
        for name in ex.history.files:
            assert debugfs_cat(fixed, name) == ours.read_file(name), (name, spec, out)
        checked += 1
        if checked >= 6:
            break
    assert checked >= 3


@pytest.mark.e2fsprogs
@needs_e2fsprogs
def test_fsck_agrees_with_e2fsck_on_recovered_crash_images() -> None:
    """Our fsck and e2fsck -fn agree on recovered crash images (the standard workload's include
    states that fail fsck, see the report of ``crash_report`` on it)."""
    ex = execute(standard().with_config(journal=True, device_blocks=2048))
    specs = _specs(ex, 3, 200)
    random.Random(3).shuffle(specs)
    for spec in specs[:15]:
        image = recover(_replay_state(ex, spec), strict=False).image
        ours = fsck(image)
        clean, theirs = e2fsck_clean(image)
        assert (not ours) == clean, (spec, ours, theirs)
