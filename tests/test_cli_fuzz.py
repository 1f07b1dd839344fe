"""``blkfuzz fuzz``, ``minimize``, ``show`` and ``report`` through the CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fuzz.cli import main
from fuzz.program import load_program_file
from fuzz.verdict import judge

PROGRAMS = Path(__file__).parent / "programs"


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def test_fuzz_writes_a_campaign_and_finds_the_v2_inversion(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    camp = tmp_path / "camp"
    stats = tmp_path / "status.json"
    code, out, err = run_cli(
        [
            "fuzz",
            "--variant",
            "ext4-inline-v2",
            "--jobs",
            "1",
            "--runs",
            "400",
            "--seed",
            "1",
            "--campaign",
            str(camp),
            "--stop-on-first",
            "--stats-json",
            str(stats),
            "--minimize-time",
            "20",
        ],
        capsys,
    )
    assert code == 1, err
    assert "possible deadlock in fault_in_iov_iter_readable" in out
    [finding] = [d for d in (camp / "findings").iterdir() if d.is_dir()]
    minimized = load_program_file(finding / "minimized.json")
    assert minimized.expect is not None and minimized.expect.signature in judge(minimized).signatures()
    assert list(finding.glob("original-*.json"))
    assert (finding / "report.txt").read_text().strip()
    assert json.loads(stats.read_text())["executions"] > 0
    assert (camp / "stats.jsonl").read_text().strip()

    # the report of that campaign
    html = tmp_path / "r.html"
    code, out, _ = run_cli(["report", str(camp), "-o", str(html)], capsys)
    assert code == 0 and html.exists()
    assert "fault_in_iov_iter_readable" in html.read_text()


def test_fuzz_exits_0_without_findings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(
        ["fuzz", "--variant", "iomap", "--jobs", "1", "--runs", "5", "--campaign", str(tmp_path / "c")],
        capsys,
    )
    assert code == 0, err
    assert "execs" in err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["fuzz", "--variant", "no-such-variant", "--runs", "1"], "no-such-variant"),
        (["fuzz", "--time", "1", "--runs", "1"], "not both"),
    ],
)
def test_fuzz_bad_input_is_one_line_exit_2(
    args: list[str], needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli([*args, "--campaign", str(tmp_path / "c")], capsys)
    assert code == 2
    assert needle in err
    assert "Traceback" not in err
    assert not (tmp_path / "c").exists()


def test_fuzz_refuses_a_non_campaign_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    code, _, err = run_cli(["fuzz", "--runs", "1", "--jobs", "1", "--campaign", str(tmp_path)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_minimize_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_path = tmp_path / "small.json"
    src = PROGRAMS / "a2-ext4-inline.json"
    code, out, _ = run_cli(["minimize", str(src), "-o", str(out_path)], capsys)
    assert code == 1  # the result shows a finding
    small = load_program_file(out_path)
    big = load_program_file(src)
    assert small.n_syscalls <= big.n_syscalls
    assert small.expect is not None and small.expect.signature in judge(small).signatures()
    assert "wrote" in out


def test_minimize_cli_refuses_a_clean_program(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(
        ["minimize", str(PROGRAMS / "b3-iomap.json"), "-o", str(tmp_path / "x.json")], capsys
    )
    assert code == 2 and "does not show" in err
    assert not (tmp_path / "x.json").exists()


def test_show_prints_the_program_and_its_timeline(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["show", str(PROGRAMS / "a1-ext4-inline.json")], capsys)
    assert code == 1
    assert "T0:" in out and "T1:" in out and "step" in out
    assert "kernel BUG in ext4_write_inline_data_end" in out


def test_show_into_a_closed_pipe_stops_quietly() -> None:
    """``blkfuzz show P | head -1``: the reader exits early; no internal-error message."""
    import subprocess
    import sys

    # a timeline longer than the pipe's buffer, so the writer is still writing when the reader goes
    path = Path(__file__).parent / "programs" / "soundness" / "jbd2-revoked-block-not-checkpointed.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fuzz.cli", "show", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # the reader goes away after one line
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert first.startswith(b"variants:")
    assert "internal error" not in err and "Traceback" not in err
    assert proc.returncode == 141
