"""The fixed standard workloads the benchmarks measure. Do not change them: figures compare across
versions only while these stay the same. Add a new workload instead."""

from __future__ import annotations

import random

from fuzz.program import Program, load_program


def standard() -> Program:
    """2 threads x 10 syscalls on 2 files (4 KiB blocks, 1-block folios, 256 blocks, ext4 path,
    delalloc), every background actor enabled, and a fixed 300-decision schedule (80% zeros)."""
    rng = random.Random(20261122)
    schedule = [0 if rng.random() < 0.8 else rng.randrange(1, 8) for _ in range(300)]
    t0 = [
        {"op": "pwrite", "file": "a", "off": 0, "len": 9000, "data": {"seed": 1}},
        {"op": "pread", "file": "a", "off": 100, "len": 5000},
        {"op": "mwrite", "file": "a", "off": 4000, "len": 300, "data": {"seed": 2}},
        {"op": "pwrite", "file": "b", "off": 4095, "len": 2, "data": {"seed": 3}},
        {"op": "fsync", "file": "a"},
        {"op": "truncate", "file": "a", "size": 6000},
        {"op": "pwrite", "file": "a", "off": 6000, "len": 4096, "data": {"seed": 4}},
        {"op": "fallocate", "file": "b", "mode": "punch_hole", "off": 0, "len": 4096},
        {"op": "pread", "file": "b", "off": 0, "len": 8192},
        {"op": "fdatasync", "file": "b"},
    ]
    t1 = [
        {"op": "pwrite", "file": "b", "off": 0, "len": 12000, "data": {"seed": 5}},
        {"op": "mwrite", "file": "b", "off": 10, "len": 20, "data": {"seed": 6}},
        {"op": "pread", "file": "a", "off": 0, "len": 4096},
        {"op": "fallocate", "file": "a", "mode": "alloc", "off": 8192, "len": 8192},
        {"op": "pwrite", "file": "a", "off": 1, "len": 100, "data": {"seed": 7}},
        {"op": "sync"},
        {"op": "truncate", "file": "b", "size": 100},
        {"op": "pwrite", "file": "b", "off": 200, "len": 50, "data": {"seed": 8}},
        {"op": "fallocate", "file": "a", "mode": "zero_range", "off": 50, "len": 5000},
        {"op": "fsync", "file": "b"},
    ]
    return load_program(
        {"format": "blkfuzz-program/1", "files": ["a", "b"], "threads": [t0, t1], "schedule": schedule}
    )


def sequential(n: int = 40) -> Program:
    """One thread, ``n`` syscalls cycling pwrite/pread/fsync over 2 files, default configuration."""
    ops = []
    for i in range(n):
        f = "ab"[i % 2]
        kind = i % 4
        if kind in (0, 1):
            ops.append(
                {
                    "op": "pwrite",
                    "file": f,
                    "off": (i * 1234) % 20000,
                    "len": 1000 + i * 10,
                    "data": {"seed": i},
                }
            )
        elif kind == 2:
            ops.append({"op": "pread", "file": f, "off": 0, "len": 8192})
        else:
            ops.append({"op": "fsync", "file": f})
    return load_program({"format": "blkfuzz-program/1", "files": ["a", "b"], "threads": [ops]})
