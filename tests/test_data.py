"""User-buffer patterns: deterministic everywhere, never zero, and the data specs that use them."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fuzz.data import data_bytes, pattern
from fuzz.program import DataSpec
from simkernel.errors import ProgramError

ROOT = Path(__file__).resolve().parents[1]

#: pinned output: a change here silently changes what every corpus program writes
GOLDEN = {
    (0, 16): "cd072cd8be6f9f62ac4c09c28206e7e3",
    (7, 10): "38b4e652e44da7f29e26",
}
GOLDEN_SHA256_SEED1_4096 = "696ed866c96197bc0cb6072d7d67db67eba8fdc9f3818b8055b166bad6257d89"


def test_golden_values() -> None:
    for (seed, length), hexed in GOLDEN.items():
        assert pattern(seed, length).hex() == hexed
    assert hashlib.sha256(pattern(1, 4096)).hexdigest() == GOLDEN_SHA256_SEED1_4096


def test_same_in_other_processes_with_other_hash_seeds() -> None:
    script = (
        "import hashlib; from fuzz.data import pattern; "
        "print(hashlib.sha256(b''.join(pattern(s, 3000 + s) for s in range(20))).hexdigest())"
    )
    expected = hashlib.sha256(b"".join(pattern(s, 3000 + s) for s in range(20))).hexdigest()
    for hash_seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(ROOT)}
        out = subprocess.run(
            [sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == expected


def test_does_not_touch_global_random_state() -> None:
    random.seed(99)
    before = random.getstate()
    pattern(3, 100)
    assert random.getstate() == before


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**64 - 1), st.integers(0, 5000))
def test_length_and_no_zero_bytes(seed: int, length: int) -> None:
    data = pattern(seed, length)
    assert len(data) == length
    assert b"\x00" not in data
    assert pattern(seed, length) == data


def test_zeros_become_a5() -> None:
    raw = random.Random(5).randbytes(1 << 16)
    assert b"\x00" in raw  # 64 KiB of random bytes contain zeros, so the replacement is exercised
    out = pattern(5, 1 << 16)
    assert out == raw.replace(b"\x00", b"\xa5")


def test_rejects_negative_arguments() -> None:
    with pytest.raises(ValueError):
        pattern(-1, 4)
    with pytest.raises(ValueError):
        pattern(1, -4)


def test_data_bytes() -> None:
    assert data_bytes(DataSpec.from_seed(7), 10) == pattern(7, 10)
    assert data_bytes(DataSpec(hex="00ff10"), 3) == b"\x00\xff\x10"
    assert data_bytes(DataSpec.from_bytes(b""), 0) == b""
    assert data_bytes(DataSpec.mapped("a", 4096), 100) is None
    with pytest.raises(ProgramError):
        data_bytes(DataSpec(hex="00ff"), 3)
    with pytest.raises(ValueError):
        data_bytes(DataSpec(), 3)
