"""Regressions for false alarms on the sound configurations (see ``tests/test_soundness.py``).

``tests/programs/soundness/*.json`` are programs (most of them minimized by the fuzzer) that once
produced a finding on ``iomap``, ``ext4-inline-fixed`` or the default configuration; each one's
``meta.description`` names the kernel behaviour involved. They must replay clean. The unit tests
below pin the oracle rules that some of those fixes introduced.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fuzz.program import load_program_file
from fuzz.verdict import judge
from oracle.crash import _lost_file_ranges
from oracle.history import History, HistoryOp
from oracle.linearize import check_final, check_reads
from simkernel.fs.ext4.ondisk import Extent

PROGRAMS = sorted((Path(__file__).parent / "programs" / "soundness").glob("*.json"))


def test_there_are_regression_programs() -> None:
    assert len(PROGRAMS) >= 10


@pytest.mark.parametrize("path", PROGRAMS, ids=[p.stem for p in PROGRAMS])
def test_regression_program_replays_clean(path: Path) -> None:
    program = load_program_file(path)
    assert program.expect is not None and program.expect.verdict == "clean"
    verdict = judge(program)
    assert verdict.clean, verdict.render(path.name)


def test_failed_ioend_leaves_the_files_unwritten_extents_lost() -> None:
    """A failed bio makes its ioend skip every conversion (ext4_end_io_end()): the file's unwritten
    extents count as lost too, not only the sectors the failed write covered."""
    bs = 1024
    lost = np.zeros(64 * 2, dtype=bool)
    lost[20 * 2 : 21 * 2] = True  # block 20 failed
    extents = [Extent(0, 1, 20, True), Extent(5, 2, 30, True), Extent(9, 1, 40, False)]
    assert _lost_file_ranges(extents, None, lost, bs) == [(0, 1024), (5120, 7168)]
    # no failed sector of this file: its unwritten extents are just unwritten
    assert _lost_file_ranges([Extent(5, 2, 30, True)], None, lost, bs) == []


def _op(index: int, tid: int, op: str, invoke: int, ret: int, result: int, **args: object) -> HistoryOp:
    data = args.pop("data", None)
    out = args.pop("out", None)
    return HistoryOp(
        index=index,
        tid=tid,
        seq=index,
        op=op,
        file="a",
        args=dict(args),
        invoke=invoke,
        ret=ret,
        result=result,
        data=data,  # type: ignore[arg-type]
        out=out,  # type: ignore[arg-type]
    )


def test_read_cut_short_by_a_concurrent_truncate_at_a_folio_boundary() -> None:
    data = bytes(range(1, 201)) * 41  # 8200 bytes
    write = _op(0, 0, "pwrite", 1, 2, len(data), off=0, len=len(data), data=data)
    trunc = _op(1, 1, "truncate", 5, 9, 0, size=0)
    read = _op(2, 2, "pread", 4, 10, 4095, off=1, len=8000, out=data[1:4096])
    hist = History(files=("a",), ops=(write, trunc, read), initial={"a": b""})
    assert check_reads(hist, granule=4096) == []
    # without the concurrent truncate no moment had the file end there
    hist2 = History(files=("a",), ops=(write, read), initial={"a": b""})
    assert check_reads(hist2, granule=4096)
    # nor does a cut in the middle of a folio pass
    mid = _op(2, 2, "pread", 4, 10, 4000, off=1, len=8000, out=data[1:4001])
    assert check_reads(History(files=("a",), ops=(write, trunc, mid), initial={"a": b""}), granule=4096)


def test_failed_zero_range_zeroes_whole_blocks_before_its_edges() -> None:
    data = b"\x07" * 4096
    write = _op(0, 0, "pwrite", 1, 2, 4096, off=0, len=4096, data=data)
    zero = _op(1, 0, "fallocate", 3, 4, -28, mode="zero_range_keep_size", off=100, len=3000)
    # blocks [1024, 3072) zeroed, the partial edges [100, 1024) and [3072, 3100) not
    final = data[:1024] + bytes(2048) + data[3072:]
    hist = History(files=("a",), ops=(write, zero), initial={"a": b""})
    assert check_final(hist, {"a": final}, block_size=1024) == []
    assert check_final(hist, {"a": final})  # as a prefix of the range only, it is not explained
