"""Crash-state checking throughput: states per second and the oracle's share of an execution.

    python bench/bench_crash.py [--states N] [--runs R] [--seed S]

The standard workload (``bench.workloads.standard``) with a journal
(``program.with_config(journal=True, device_blocks=2048)``) is executed ``R`` times; after each
execution :func:`oracle.crash.crash_report` checks up to ``N`` crash states (default
``oracle.crash.DEFAULT_MAX_STATES``). Printed: crash states checked per second, milliseconds per
execution for the crash check and for the execution itself (both measured in this run, medians),
and their ratio; plus how much the memoization saved (distinct recovered images, ``recover()``
calls). Also, for reference, the same with a cold cache: every state recovered and read (no
memoization across states) is what a naive replay + recover + read per state costs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.workloads import standard
from fuzz.runner import Execution, execute
from oracle.crash import DEFAULT_MAX_STATES, crash_report
from oracle.fsck import fsck
from oracle.image import Ext4Image
from oracle.jbd2_recovery import recover
from oracle.replay import durable_prefix, replay


def naive_state_seconds(ex: Execution, samples: int = 20) -> float:
    """Seconds per state of the straightforward way: replay from the base, recover, fsck, read."""
    entries = list(ex.iolog.entries)
    step = max(1, (len(entries) - ex.start_mark) // samples)
    t0 = time.perf_counter()
    n = 0
    for upto in range(ex.start_mark, len(entries), step):
        keep = set(durable_prefix(entries, upto).durable)
        img = replay(ex.base, entries, upto=upto, include=lambda e, keep=keep: e.index in keep)
        rec = recover(img, strict=False)
        ei = Ext4Image(rec.image)
        fsck(ei)
        for name in ex.history.files:
            ei.read_file(name)
        n += 1
    return (time.perf_counter() - t0) / max(n, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--states", type=int, default=DEFAULT_MAX_STATES)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    program = standard().with_config(journal=True, device_blocks=2048)
    execute(program)  # warm up imports and caches
    exec_s: list[float] = []
    crash_s: list[float] = []
    rates: list[float] = []
    last = None
    for k in range(args.runs):
        t0 = time.perf_counter()
        ex = execute(program)
        exec_s.append(time.perf_counter() - t0)
        rep = crash_report(
            ex.history, ex.base, ex.iolog, ex.start_mark, seed=args.seed + k, max_states=args.states
        )
        crash_s.append(rep.seconds)
        rates.append(rep.states_per_second)
        last = (ex, rep)
    assert last is not None
    ex, rep = last
    e_ms = statistics.median(exec_s) * 1e3
    c_ms = statistics.median(crash_s) * 1e3
    print(
        f"standard workload, journal, {ex.config.device_blocks} x {ex.config.block_size} B device: "
        f"{len(ex.iolog)} IO log entries, {len(ex.history.ops)} syscalls"
    )
    print(
        f"crash states: {rep.states} per execution at {rep.points} crash points; "
        f"{rep.images} distinct recovered images, {rep.recoveries} recover() calls"
    )
    print(f"  -> {statistics.median(rates):,.0f} crash states/s")
    print(f"crash check: {c_ms:.1f} ms per execution; execution: {e_ms:.1f} ms")
    print(f"  -> crash check / execution = {c_ms / e_ms:.1f}x (oracle share {c_ms / (c_ms + e_ms):.0%})")
    naive = naive_state_seconds(ex)
    per_state = statistics.median(crash_s) / max(rep.states, 1)
    print(
        f"naive replay + recover + fsck + read: {naive * 1e3:.2f} ms per state "
        f"({1 / naive:,.0f} states/s); memoized: {per_state * 1e3:.2f} ms per state "
        f"({naive / per_state:.1f}x faster)"
    )


if __name__ == "__main__":
    main()
