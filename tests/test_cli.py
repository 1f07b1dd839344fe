"""The CLI contract: exit codes, one-line errors for bad input, files written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fuzz.cli import main
from oracle.image import Ext4Image

PROGRAMS = Path(__file__).parent / "programs"

CLEAN = {
    "format": "blkfuzz-program/1",
    "files": ["a"],
    "threads": [
        [
            {"op": "pwrite", "file": "a", "off": 0, "len": 5000, "data": {"seed": 1}},
            {"op": "fsync", "file": "a"},
        ]
    ],
}


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def write(tmp_path: Path, name: str, doc: object) -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def test_replay_clean_prints_sizes_and_writes_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prog = write(tmp_path, "p.json", CLEAN)
    img = tmp_path / "final.img"
    code, out, err = run_cli(["replay", str(prog), "--image-out", str(img)], capsys)
    assert code == 0, err
    assert "clean" in out and "file a: size 5000 sha256" in out
    assert Ext4Image(img.read_bytes()).read_file("a")[:4] != b"\0\0\0\0"
    assert len(Ext4Image(img.read_bytes()).read_file("a")) == 5000


def test_replay_finding_exits_1_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["replay", "--json", str(PROGRAMS / "a1-ext4-inline.json")], capsys)
    assert code == 1
    doc = json.loads(out)
    assert doc["verdict"] == "finding"
    assert doc["findings"][0]["title"] == "kernel BUG in ext4_write_inline_data_end"


def test_replay_directory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    write(tmp_path, "x.json", CLEAN)
    write(tmp_path, "y.json", CLEAN)
    code, out, _ = run_cli(["replay", str(tmp_path)], capsys)
    assert code == 0
    assert out.count("clean") == 2


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ("{not json", "invalid JSON at line 1"),
        ({**CLEAN, "config": {"device_blocks": 10}}, "$.config.device_blocks"),
        ({**CLEAN, "config": {"block_size": 3000}}, "$.config.block_size"),
        (
            {**CLEAN, "threads": [[{"op": "pwrite", "file": "a", "off": -1, "len": 1, "data": {"seed": 1}}]]},
            "$.threads[0][0].off",
        ),
        (
            {
                **CLEAN,
                "threads": [[{"op": "pwrite", "file": "a", "off": 1 << 40, "len": 1, "data": {"seed": 1}}]],
            },
            "$.threads[0][0].off",
        ),
        (
            {**CLEAN, "threads": [[{"op": "pwrite", "file": "zz", "off": 0, "len": 1, "data": {"seed": 1}}]]},
            "$.threads[0][0].file",
        ),
        ({**CLEAN, "variants": ["no-such-variant"]}, "unknown variant 'no-such-variant'"),
        ({**CLEAN, "variants": ["nosuchmodule.x:Y"]}, "cannot import 'nosuchmodule.x'"),
        (
            {**CLEAN, "variants": ["iomap"], "config": {"write_path": "ext4", "inline_data": True}},
            "with variant(s) iomap: inline_data needs the ext4 write path",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], doc: object, needle: str
) -> None:
    prog = write(tmp_path, "bad.json", doc)
    code, _, err = run_cli(["replay", str(prog)], capsys)
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert needle in lines[0]
    assert "Traceback" not in err


def test_missing_file_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["replay", "/nonexistent/p.json"], capsys)
    assert code == 2
    assert err.count("\n") == 1 and "No such file" in err


def test_variants_lists_builtins(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["variants"], capsys)
    assert code == 0
    names = [line.split()[0] for line in out.splitlines()]
    assert names[:5] == ["iomap", "iomap-nocookie", "ext4-inline", "ext4-inline-v2", "ext4-inline-fixed"]
    assert {"eof-folio-no-zero", "punch-no-disksize"} <= set(names)


def test_console_script_runs(tmp_path: Path) -> None:
    prog = write(tmp_path, "p.json", CLEAN)
    proc = subprocess.run(
        [sys.executable, "-m", "fuzz.cli", "replay", str(prog)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "file a: size 5000" in proc.stdout
