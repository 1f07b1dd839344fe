"""The campaign directory and the hub: single writer, atomic files, dedup, flaky findings, worker
death, resume, and files the campaign did not write."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from fuzz.campaign import Campaign, atomic_write, signature_id
from fuzz.hub import Hub, InlineBackend, Status
from fuzz.program import Program, dump_program, load_program
from fuzz.workers import LocalBackend
from simkernel.errors import CampaignError


def _program(seed: int = 1) -> Program:
    return load_program(
        {
            "format": "blkfuzz-program/1",
            "files": ["a"],
            "threads": [[{"op": "pwrite", "file": "a", "off": 0, "len": 10, "data": {"seed": seed}}]],
        }
    )


def _finding(sig_title: str = "final content: zeros instead of pwrite data") -> dict[str, object]:
    return {
        "category": "data",
        "title": sig_title,
        "signature": f"data: {sig_title}",
        "message": "m",
        "evidence": {},
    }


def test_second_campaign_on_a_directory_in_use_is_refused(tmp_path: Path) -> None:
    with Campaign.open(tmp_path / "c", ()), pytest.raises(CampaignError, match="in use by pid"):
        Campaign.open(tmp_path / "c", ())
    # released on close: the next run may open it
    Campaign.open(tmp_path / "c", ()).close()


def test_campaign_refuses_other_variants_and_non_campaign_directories(tmp_path: Path) -> None:
    Campaign.open(tmp_path / "c", ("iomap",)).close()
    with pytest.raises(CampaignError, match="fuzzes variants"):
        Campaign.open(tmp_path / "c", ("iomap-nocookie",))
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("mine")
    with pytest.raises(CampaignError, match="not a campaign"):
        Campaign.open(tmp_path / "d", ())
    assert (tmp_path / "d" / "notes.txt").read_text() == "mine"


def test_corpus_is_content_addressed_and_reloads(tmp_path: Path) -> None:
    with Campaign.open(tmp_path, ()) as camp:
        assert camp.add_corpus(_program(1))
        assert not camp.add_corpus(_program(1))
        assert camp.add_corpus(_program(2))
    with Campaign.open(tmp_path, ()) as camp:
        progs = camp.corpus()
        assert sorted(p.digest() for p in progs) == sorted([_program(1).digest(), _program(2).digest()])
        assert camp.meta["resumed"] == 1


def test_foreign_and_malformed_files_are_reported_and_skipped(tmp_path: Path) -> None:
    with Campaign.open(tmp_path, ()) as camp:
        camp.add_corpus(_program(1))
        camp.record_finding(_finding(), _program(1), execution=1, elapsed=1.0, reproduced=True)
    (tmp_path / "corpus" / "garbage.json").write_text("{not json")
    (tmp_path / "corpus" / "foreign.json").write_text(json.dumps({"hello": "world"}))
    wrong_name = tmp_path / "corpus" / ("0" * 64 + ".json")
    wrong_name.write_text(dump_program(_program(3)))
    (tmp_path / "findings" / "stray.txt").write_text("x")
    bad = tmp_path / "findings" / "deadbeef"
    bad.mkdir()
    (bad / "finding.json").write_text("[]")
    (tmp_path / "stats.jsonl").write_text('{"t": 1, "executions": 5}\nnot json\n{"t": 2, "executions": 9}\n')
    with Campaign.open(tmp_path, ()) as camp:
        progs = camp.corpus()
        assert [p.digest() for p in progs] == [_program(1).digest()]
        assert len(camp.findings) == 1
        stats = camp.stats()
        assert [s["executions"] for s in stats] == [5, 9]
        text = "\n".join(camp.problems)
        for name in ("garbage.json", "foreign.json", wrong_name.name, "stray.txt", "deadbeef", "line 2"):
            assert name in text, (name, text)
        assert all(line.endswith("(skipped)") for line in camp.problems)


def test_a_torn_stats_line_is_dropped_on_resume(tmp_path: Path) -> None:
    with Campaign.open(tmp_path, ()) as camp:
        camp.append_stats({"t": 1.0, "executions": 3})
    with open(tmp_path / "stats.jsonl", "ab") as f:
        f.write(b'{"t": 2.0, "exec')  # what a kill -9 in the middle of a write leaves
    with Campaign.open(tmp_path, ()) as camp:
        camp.append_stats({"t": 3.0, "executions": 7})
        assert [s["executions"] for s in camp.stats()] == [3, 7]
        assert camp.problems == []


def test_atomic_write_replaces_whole_files_and_leaves_no_temporaries(tmp_path: Path) -> None:
    target = tmp_path / "x" / "f.json"
    atomic_write(target, "one")
    atomic_write(target, "two")
    assert target.read_text() == "two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["f.json"]
    assert (target.stat().st_mode & 0o777) == (0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_findings_are_deduplicated_and_flaky_ones_kept_apart(tmp_path: Path) -> None:
    with Campaign.open(tmp_path, ()) as camp:
        rec, new = camp.record_finding(_finding(), _program(1), execution=1, elapsed=1.0, reproduced=True)
        assert new and not rec.flaky
        rec, new = camp.record_finding(_finding(), _program(2), execution=2, elapsed=2.0, reproduced=True)
        assert not new and rec.hits == 2 and len(rec.originals) == 2
        flaky, new = camp.record_finding(
            _finding("pread: wrong length"), _program(3), execution=3, elapsed=3.0, reproduced=False
        )
        assert flaky.flaky and new
        assert (tmp_path / "flaky" / signature_id(flaky.signature) / "finding.json").exists()
        # it reproduces later: promoted, with its directory
        promoted, new = camp.record_finding(
            _finding("pread: wrong length"), _program(4), execution=4, elapsed=4.0, reproduced=True
        )
        assert new and not promoted.flaky
        assert (tmp_path / "findings" / signature_id(promoted.signature) / "finding.json").exists()
        assert not (tmp_path / "flaky" / signature_id(promoted.signature)).exists()
        camp.record_minimized(rec.signature, _program(1), "report")
    with Campaign.open(tmp_path, ()) as camp:
        assert set(camp.findings) == {
            "data: final content: zeros instead of pwrite data",
            "data: pread: wrong length",
        }
        rec = camp.findings["data: final content: zeros instead of pwrite data"]
        assert rec.hits == 2 and rec.minimized == "minimized.json"
        assert camp.reproducers(rec.signature)[0] == _program(1)


def test_hub_inline_records_corpus_findings_and_stats(tmp_path: Path) -> None:
    """--jobs 1: the hub runs tasks in its own process; a buggy variant's finding is re-executed,
    recorded under findings/, and the corpus and stats are on disk."""
    with Campaign.open(tmp_path, ("iomap-nocookie",)) as camp:
        hub = Hub(camp, InlineBackend(), ("iomap-nocookie",), seed=3, minimize=False)
        summary = hub.run(runs=60)
        assert summary.stopped_by == "runs"
        assert summary.status.executions >= 60
        assert camp.corpus_size > 0
        assert len(list((tmp_path / "corpus").glob("*.json"))) == camp.corpus_size
    stats = [json.loads(line) for line in (tmp_path / "stats.jsonl").read_text().splitlines()]
    assert stats and stats[-1]["executions"] == summary.status.executions
    for sig in summary.new_findings:
        d = tmp_path / "findings" / signature_id(sig)
        rec = json.loads((d / "finding.json").read_text())
        assert rec["signature"] == sig and rec["reproduced"] >= 1
        assert list(d.glob("original-*.json")) and (d / "report.txt").read_text()


def test_killed_worker_is_replaced_and_the_campaign_goes_on(tmp_path: Path) -> None:
    backend = LocalBackend(2)
    killed: list[int] = []
    after_kill: list[int] = []

    def status(st: Status) -> None:
        if not killed and st.executions >= 10:
            pid = backend.pids()[0]
            os.kill(pid, signal.SIGKILL)
            killed.append(st.executions)
        elif killed:
            after_kill.append(st.executions)

    try:
        with Campaign.open(tmp_path, ()) as camp:
            hub = Hub(camp, backend, (), seed=5, minimize=False, status=status, status_every=0.2)
            summary = hub.run(time_limit=60, runs=150)
            corpus = camp.corpus_size
    finally:
        backend.close()
    assert killed, "the worker was never killed"
    assert backend.replaced >= 1
    assert summary.status.replaced_workers >= 1
    assert summary.stopped_by == "runs"
    assert summary.status.executions >= 150 and summary.status.executions > killed[0]
    assert corpus == len(list((tmp_path / "corpus").glob("*.json")))


def _blkfuzz(*args: str) -> list[str]:
    import sys

    return [sys.executable, "-m", "fuzz.cli", *args]


def test_kill_9_of_the_hub_then_the_same_command_resumes_everything(tmp_path: Path) -> None:
    """The hub dies mid-campaign (SIGKILL: no clean-up at all); running the same command again
    resumes with every corpus entry and finding it had written."""
    import subprocess
    import time

    camp = tmp_path / "camp"
    cmd = _blkfuzz(
        "fuzz", "--variant", "ext4-inline-v2", "--jobs", "1", "--seed", "3", "--campaign", str(camp)
    )
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    proc = subprocess.Popen(
        [*cmd, "--time", "120"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            findings = list((camp / "findings").glob("*/finding.json")) if camp.exists() else []
            if findings and len(list((camp / "corpus").glob("*.json"))) >= 20:
                break
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    corpus_before = {p.name for p in (camp / "corpus").glob("*.json")}
    findings_before = {p.parent.name for p in (camp / "findings").glob("*/finding.json")}
    assert findings_before and len(corpus_before) >= 20
    again = subprocess.run([*cmd, "--runs", "20"], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 1, again.stderr  # the findings of the first run are still findings
    assert corpus_before <= {p.name for p in (camp / "corpus").glob("*.json")}
    assert findings_before <= {p.parent.name for p in (camp / "findings").glob("*/finding.json")}
    meta = json.loads((camp / "campaign.json").read_text())
    assert meta["resumed"] == 1
    for d in findings_before:  # the interrupted minimization was finished on resume
        assert (camp / "findings" / d / "minimized.json").exists()


def test_a_campaign_on_a_dask_local_cluster_finds_a_seed_bug(tmp_path: Path) -> None:
    """Workers as tasks on a real LocalCluster (scheduler and worker processes over TCP on
    localhost): the ext4-inline-v2 lock-order cycle is found and recorded by the hub."""
    distributed = pytest.importorskip("distributed")
    from fuzz.workers import DaskBackend

    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, protocol="tcp://", dashboard_address=None
    ) as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        backend = DaskBackend(cluster.scheduler_address)
        try:
            with Campaign.open(tmp_path, ("ext4-inline-v2",)) as camp:
                hub = Hub(camp, backend, ("ext4-inline-v2",), seed=2, minimize=False, stop_on_first=True)
                summary = hub.run(time_limit=120)
        finally:
            backend.close()
    assert summary.stopped_by == "first finding"
    sigs = set(summary.new_findings)
    assert "lock-order: possible deadlock in fault_in_iov_iter_readable" in sigs
    for sig in sigs:
        assert (tmp_path / "findings" / signature_id(sig) / "finding.json").exists()


def test_a_hang_only_under_the_fuzzing_step_limit_is_not_recorded_as_flaky(tmp_path: Path) -> None:
    """A long run reported as a hang under the fuzzing step limit, which finishes when re-executed
    under the runner's limit, is dropped: not a finding, not flaky, not counted in stability."""
    from fuzz.engine import Outcome
    from oracle.findings import Finding

    hang = Finding("hang", "INFO: task hung in mpage_prepare_extent_to_map")
    data = Finding("data", "final content: zeros instead of pwrite data")
    out = Outcome(_program(1), frozenset(), [hang, data], 20_000, 10, 0.1)
    with Campaign.open(tmp_path, ()) as camp:
        hub = Hub(camp, InlineBackend(), (), seed=1, minimize=False)
        hub._on_findings(out, {hang.signature: False, data.signature: False})
        assert set(camp.flaky) == {data.signature}
        assert not camp.findings
        assert hub.checks["not_reproduced"] == 1
