"""Micro-benchmark of the linearizability oracle (prints figures; asserts nothing but agreement).

    python bench/bench_oracle.py [--histories N] [--seed S]

1. ``check_final`` and ``check_reads`` on random 50-syscall histories over 1-4 files and 2-3
   threads (offsets up to 64 KiB, writes up to 8 KiB, 4 KiB pages, random non-zero data like
   ``fuzz.data.pattern``), each built by running a random interleaving on the reference model
   (:func:`oracle.reference.simulate`) -- so every check accepts; and the same histories with one
   byte of one file's final content zeroed -- a lost write, which the check rejects and explains;
2. the brute-force specification (:func:`oracle.reference.brute_force_finals`) against
   ``check_final`` on small histories in the same run: 6 syscalls on one file from 3 threads, then
   6 and 8 syscalls that all overlap in time (one per thread, round robin), within a few KiB --
   the exhaustive search grows with the number of interleavings, the fast one does not.

Median and p99 of the per-history wall time. Histories come from a seeded ``random.Random``, so the
same arguments measure the same histories.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from oracle.history import History
from oracle.linearize import check_final, check_reads
from oracle.reference import Call, brute_force_finals, simulate

T = TypeVar("T")
MODES = ("alloc", "keep_size", "punch_hole", "zero_range", "zero_range_keep_size")


def _data(rng: random.Random, n: int) -> bytes:
    return bytes(rng.randrange(1, 256) for _ in range(n))


def random_call(
    rng: random.Random, files: list[str], max_off: int, max_len: int, failures: bool = True
) -> Call:
    """One syscall with a plausible mix: mostly writes, some mmap stores, truncates, fallocates,
    reads, syncs; a few failures and short writes (unless ``failures`` is false)."""
    f = rng.choice(files)
    kind = rng.choices(
        ["pwrite", "mwrite", "pread", "truncate", "fallocate", "creat", "fsync"],
        weights=[8, 3, 3, 2, 2, 0.3, 1],
    )[0]
    off, n = rng.randrange(max_off + 1), rng.randrange(1, max_len + 1)
    if not failures and kind in ("creat", "fsync", "pread"):
        kind = "pwrite"
    if kind == "pwrite":
        if failures and rng.random() < 0.05:
            return Call("pwrite", f, {"off": off, "len": n}, _data(rng, n), errno=28)
        if failures and rng.random() < 0.05:
            return Call("pwrite", f, {"off": off, "len": n}, _data(rng, n), written=rng.randrange(n + 1))
        return Call("pwrite", f, {"off": off, "len": n}, _data(rng, n))
    if kind == "mwrite":
        return Call("mwrite", f, {"off": off, "len": n}, _data(rng, n))
    if kind == "pread":
        return Call("pread", f, {"off": off, "len": n})
    if kind == "truncate":
        return Call("truncate", f, {"size": rng.randrange(max_off + max_len + 1)})
    if kind == "fallocate":
        mode = rng.choice(MODES)
        if failures and rng.random() < 0.1:  # failed: the partial effects the model allows
            prefix = n // 2 if mode in ("punch_hole", "zero_range", "zero_range_keep_size") else 0
            grow = off + n // 2 if mode in ("alloc", "zero_range") else 0
            return Call(
                "fallocate", f, {"mode": mode, "off": off, "len": n}, errno=28, prefix=prefix, grow_to=grow
            )
        return Call("fallocate", f, {"mode": mode, "off": off, "len": n})
    if kind == "creat":
        return Call("creat", f)
    return Call("fsync", f)


def random_history(
    rng: random.Random, n_ops: int, max_off: int, max_len: int, page: int
) -> tuple[History, dict[str, bytes]]:
    """``n_ops`` syscalls over 1-4 files and 2-3 threads under a random schedule."""
    files = ["a", "b", "c", "d"][: rng.randrange(1, 5)]
    n_threads = rng.randrange(2, 4)
    threads: list[list[Call]] = [[] for _ in range(n_threads)]
    for _ in range(n_ops):
        threads[rng.randrange(n_threads)].append(random_call(rng, files, max_off, max_len))
    schedule = [rng.randrange(n_threads) for _ in range(n_ops * 4)]
    return simulate(files, threads, schedule, page_size=page)


def contended_history(rng: random.Random, n_ops: int, n_threads: int) -> tuple[History, dict[str, bytes]]:
    """``n_ops`` syscalls on one file from ``n_threads`` threads, round robin (with one syscall per
    thread, all of them overlap), within 8 KiB, no failures (the brute force enumerates every
    partial effect of a failure, which would dominate)."""
    threads: list[list[Call]] = [[] for _ in range(n_threads)]
    for k in range(n_ops):
        threads[k % n_threads].append(random_call(rng, ["a"], 6 * 1024, 2 * 1024, failures=False))
    schedule = [i % n_threads for i in range(n_ops * 8)]
    return simulate(["a"], threads, schedule, page_size=4096)


def lose_one_byte(rng: random.Random, final: dict[str, bytes]) -> dict[str, bytes] | None:
    """Zero one non-zero byte of one file (None if every byte is zero)."""
    choices = [(f, i) for f, data in final.items() for i in range(0, len(data), 97) if data[i]]
    if not choices:
        return None
    f, i = rng.choice(choices)
    out = dict(final)
    out[f] = final[f][:i] + b"\0" + final[f][i + 1 :]
    return out


def timed(fn: Callable[..., T], *args: Any) -> tuple[float, T]:
    """(seconds, result) of ``fn(*args)``."""
    t0 = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - t0, result


def describe(name: str, times: list[float]) -> str:
    ms = sorted(t * 1e3 for t in times)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    median = statistics.median(ms)
    return f"{name:<44} n={len(ms):<5} median {median:8.3f} ms   p99 {p99:8.3f} ms   max {ms[-1]:8.3f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--histories", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    t_final, t_reads, t_bad = [], [], []
    rejected = 0
    for _ in range(args.histories):
        history, final = random_history(rng, 50, 64 * 1024, 8 * 1024, 4096)
        dt, res = timed(check_final, history, final)
        assert res == [], "an execution of the reference was rejected"
        t_final.append(dt)
        dt, res = timed(check_reads, history)
        assert res == [], "a read of the reference was rejected"
        t_reads.append(dt)
        bad = lose_one_byte(rng, final)
        if bad is not None:
            dt, res = timed(check_final, history, bad)
            rejected += bool(res)
            t_bad.append(dt)
    print("random 50-syscall histories, 1-4 files, 2-3 threads, 4 KiB pages")
    print(describe("check_final (accepts)", t_final))
    print(describe("check_reads (accepts)", t_reads))
    print(describe(f"check_final, one byte lost ({rejected} rejected)", t_bad))

    baselines = ((6, 3, max(20, args.histories // 5)), (6, 6, max(10, args.histories // 10)), (8, 8, 5))
    for n_ops, n_threads, count in baselines:
        t_fast, t_brute = [], []
        for _ in range(count):
            history, final = contended_history(rng, n_ops, n_threads)
            dt_b, outcomes = timed(brute_force_finals, history, "a")
            dt_f, res = timed(check_final, history, final)
            assert res == [] and final["a"] in outcomes
            t_brute.append(dt_b)
            t_fast.append(dt_f)
        print(f"contended {n_ops}-syscall histories, one file, {n_threads} threads (brute-force baseline)")
        print(describe("check_final", t_fast))
        print(describe("brute_force_finals", t_brute))


if __name__ == "__main__":
    main()
