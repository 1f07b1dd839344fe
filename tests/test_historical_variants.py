"""Historical bugs whose fixes the baseline model carries: each built-in "bug" variant reverts one
fix, and a small program shows the data loss the fix prevents -- and is clean on the baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fuzz.program import Program, load_program, load_program_file
from fuzz.verdict import judge


def _pwrite(file: str, off: int, length: int, seed: int = 1) -> dict[str, Any]:
    return {"op": "pwrite", "file": file, "off": off, "len": length, "data": {"seed": seed}}


def _program(
    threads: list[list[dict[str, Any]]],
    config: dict[str, Any],
    variants: list[str],
    schedule: list[int] | None = None,
    files: tuple[str, ...] = ("a",),
) -> Program:
    return load_program(
        {
            "format": "blkfuzz-program/1",
            "config": config,
            "variants": variants,
            "actors": [],
            "files": list(files),
            "threads": threads,
            "schedule": schedule or [],
        }
    )


# a store past EOF into the EOF folio, then a write that extends the file past that folio: the
# stored bytes must not become file data (they are past EOF when stored). They land past the EOF
# *block*: the EOF block's own tail is zeroed by the write path whatever pagecache_isize_extended()
# does (ext4_write_checks / xfs_file_write_checks), the rest of the folio only by the 6.12 fix
EOF_STORE = [
    [
        _pwrite("a", 0, 1),
        {"op": "mmap", "file": "a"},
        {"op": "mwrite", "file": "a", "off": 1100, "len": 100, "data": {"seed": 3}},
        _pwrite("a", 8192, 4, seed=2),
        # a write into that block makes the folio's stale bytes around it durable too
        _pwrite("a", 1024, 1, seed=4),
        {"op": "pread", "file": "a", "off": 0, "len": 1300},
    ]
]
EOF_CONFIG = {"block_size": 1024, "folio_blocks": 4, "write_path": "iomap"}

# punch_hole starts (nothing dirty to flush), a delalloc write extends the file before punch takes
# i_rwsem, then punch drops the new folios: their writeback would have moved i_disksize
PUNCH = [
    [{"op": "fallocate", "file": "a", "mode": "punch_hole", "off": 0, "len": 16384}],
    [_pwrite("a", 15, 12288)],
]
PUNCH_CONFIG = {"block_size": 1024, "folio_blocks": 4}

# an inline file grows past its inline capacity into folio 1 (a delalloc conversion: the inline
# data stays until writeback), then a read of another block of folio 1 reads the folio -- bugzilla
# 200681: ext4_readpage_inline() zeroed it, written buffer and all (1 KiB blocks, 4 KiB folios)
INLINE_READ = [
    [
        _pwrite("a", 0, 1),
        _pwrite("a", 5000, 10, seed=2),
        {"op": "pread", "file": "a", "off": 6144, "len": 10},
        {"op": "pread", "file": "a", "off": 4096, "len": 4096},
    ]
]
INLINE_CONFIG = {"block_size": 1024, "folio_blocks": 4, "inline_data": True}

# an inline file grows past its inline capacity (a delalloc conversion: MAY_INLINE_DATA cleared,
# the inline data kept until writeback), is truncated to 0, and a one-byte write takes the block
# path into a new folio 0 that stays partly uptodate (1 KiB blocks, 4 KiB folios); a store faults
# the folio in: Linux's ext4_read_inline_folio() fills it all from the (empty) inline area
INLINE_READ_BLOCK = [
    [
        _pwrite("a", 0, 1),
        _pwrite("a", 131, 3, seed=2),
        {"op": "creat", "file": "a"},
        _pwrite("a", 0, 1, seed=3),
        {"op": "mwrite", "file": "a", "off": 1, "len": 4, "data": {"seed": 4}},
    ]
]


@pytest.mark.parametrize(
    ("variant", "threads", "config", "schedule", "titles"),
    [
        (
            "eof-folio-no-zero",
            EOF_STORE,
            EOF_CONFIG,
            [],
            {
                "pread: stale mwrite data instead of hole zeros",
                "final content: stale mwrite data instead of hole zeros",
            },
        ),
        (
            "punch-no-disksize",
            PUNCH,
            PUNCH_CONFIG,
            [0, 0, 1],
            {"final size: too small, expected the size set by pwrite"},
        ),
        (
            "inline-read-wipes-folio",
            INLINE_READ,
            INLINE_CONFIG,
            [],
            {"pread: zeros instead of pwrite data", "final content: zeros instead of pwrite data"},
        ),
        (
            "inline-read-wipes-block",
            INLINE_READ_BLOCK,
            INLINE_CONFIG,
            [],
            {"final content: zeros instead of pwrite data"},
        ),
    ],
)
def test_reverted_fix_loses_data_and_baseline_does_not(
    variant: str,
    threads: list[list[dict[str, Any]]],
    config: dict[str, Any],
    schedule: list[int],
    titles: set[str],
) -> None:
    base = ["iomap"] if config.get("write_path") == "iomap" else []
    buggy = judge(_program(threads, config, [*base, variant], schedule))
    assert {f.title for f in buggy.findings} == titles
    assert all(f.category == "data" for f in buggy.findings)
    sound = judge(_program(threads, config, base, schedule))
    assert sound.clean, [f.title for f in sound.findings]


def test_io_end_converting_unsubmitted_ranges_leaves_an_extent_past_eof() -> None:
    """An io_end whose folios a racing truncate cut to nothing must not convert its mapped ranges
    later: by then a fallocate may have put new unwritten blocks there (ext4_io_end_ranges())."""
    path = (
        Path(__file__).parent / "programs" / "soundness" / "endio-skips-unwritten-ranges-after-truncate.json"
    )
    program = load_program_file(path)
    assert judge(program).clean
    buggy = judge(program.with_variants([*program.variants, "endio-converts-unsubmitted"]))
    assert [f.category for f in buggy.findings][:1] == ["fsck"], buggy.render(path.name)
    assert any("extent-past-eof" in f.title for f in buggy.findings)


def test_zeroout_at_io_completion_spares_blocks_another_io_end_wrote() -> None:
    """A conversion that cannot split its extent zeroes the rest of it; blocks another writeback
    wrote and has not converted yet must keep their data (ext4_ext_zeroout_filter())."""
    path = Path(__file__).parent / "programs" / "soundness" / "zeroout-spares-pending-io.json"
    program = load_program_file(path)
    assert judge(program).clean
    buggy = judge(program.with_variants([*program.variants, "zeroout-wipes-pending-io"]))
    assert "final content: zeros instead of pwrite data" in [f.title for f in buggy.findings]


def test_fallocate_zeroes_the_old_eof_tail_before_the_size_grows() -> None:
    """A size-extending fallocate must not let a read see mmap stores past the old EOF as file
    data between raising i_size and zeroing the tail (ext4_alloc_extend_size())."""
    path = Path(__file__).parent / "programs" / "soundness" / "fallocate-zeroes-tail-before-size.json"
    program = load_program_file(path)
    assert judge(program).clean
    buggy = judge(program.with_variants([*program.variants, "fallocate-zero-after-size"]))
    assert [f.title for f in buggy.findings] == ["pread: stale mwrite data instead of hole zeros"]


def test_truncate_up_zeroes_the_old_eof_folio_before_the_size_grows() -> None:
    """A truncate up must zero the old EOF folio's post-EOF part before writeback can see the new
    size: writeback in between writes the stale mmap stores as file data and cleans the folio,
    so pagecache_isize_extended() skips it (ext4_setattr_extend_size())."""
    path = Path(__file__).parent / "programs" / "soundness" / "truncate-up-zeroes-folio-before-size.json"
    program = load_program_file(path)
    assert judge(program).clean
    buggy = judge(program.with_variants([*program.variants, "truncate-up-zero-after-size"]))
    assert [f.title for f in buggy.findings] == ["final content: stale mwrite data instead of hole zeros"]
