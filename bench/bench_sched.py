"""Scheduler steps/s and executions/s for the fixed standard workload (bench/workloads.py),
with the cost of a bare generator loop of the same step count measured in the same run (the floor)."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.workloads import standard
from fuzz.runner import execute


def bare_loop(steps: int) -> float:
    """Drive `steps` generator yields round-robin over 3 generators: the scheduling floor."""

    def gen(n: int):  # type: ignore[no-untyped-def]
        for _ in range(n):
            yield None

    t0 = time.perf_counter()
    gens = [gen(steps // 3 + 1) for _ in range(3)]
    done = 0
    while done < steps:
        for g in gens:
            next(g, None)
            done += 1
    return time.perf_counter() - t0


def main() -> None:
    prog = standard()
    execute(prog)  # warm up
    times, steps = [], 0
    for _ in range(9):
        t0 = time.perf_counter()
        ex = execute(prog, trace=False)
        times.append(time.perf_counter() - t0)
        steps = ex.steps
    t = statistics.median(times)
    floor = statistics.median(bare_loop(steps) for _ in range(9))
    print(f"standard workload: {steps} scheduler steps, {len(ex.history.ops)} syscalls")
    print(f"  executions/s:  {1 / t:,.1f}   ({t * 1e3:.1f} ms each, oracle excluded)")
    print(f"  steps/s:       {steps / t:,.0f}")
    print(f"  bare generator loop of {steps} steps: {floor * 1e6:.0f} us -> {steps / floor:,.0f} steps/s")
    print(f"  model / floor: {t / floor:,.0f}x")


if __name__ == "__main__":
    main()
