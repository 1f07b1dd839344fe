"""The same program gives the same bytes, verdict and image hash in any process, under any
PYTHONHASHSEED."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def replay_all(hashseed: str) -> str:
    env = {**os.environ, "PYTHONHASHSEED": hashseed}
    proc = subprocess.run(
        [sys.executable, "-m", "fuzz.cli", "replay", "--json", "tests/programs", "corpus"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        check=False,
    )
    assert proc.returncode in (0, 1), proc.stderr
    return proc.stdout


def test_replays_identical_across_processes_and_hash_seeds() -> None:
    a = replay_all("0")
    b = replay_all("4242")
    assert a and a == b
    assert len(a.splitlines()) >= 14
