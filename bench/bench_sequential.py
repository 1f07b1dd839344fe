"""Sequential syscalls per second and remount + read-back time, default configuration.

Prints figures and the ratio against a baseline measured in the same run: the same program with
its syscalls only (the model's cost over bare Python dispatch of the same number of calls).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.workloads import sequential
from fuzz.runner import execute, read_files
from simkernel.machine import Machine


def main() -> None:
    prog = sequential(40)
    execute(prog)  # warm up (mkfs image cache, imports)
    times = []
    for _ in range(7):
        t0 = time.perf_counter()
        ex = execute(prog, trace=False, read_back=False)
        times.append(time.perf_counter() - t0)
    per_run = statistics.median(times)
    n = prog.n_syscalls
    print(f"sequential program: {n} syscalls, median {per_run * 1e3:.1f} ms per execution")
    print(f"  -> {n / per_run:,.0f} syscalls/s (including setup, quiesce and unmount)")
    # remount + read back the files from the image
    m = Machine(ex.config)
    m.setup_files(prog.files)
    rt = []
    for _ in range(7):
        t0 = time.perf_counter()
        m.remount()
        read_files(m.final_image(), prog.files)
        rt.append(time.perf_counter() - t0)
    print(f"remount + read-back: median {statistics.median(rt) * 1e3:.2f} ms")
    # baseline: n Python calls of a trivial dispatcher
    t0 = time.perf_counter()
    for _ in range(1000):
        for i in range(n):
            _ = (i, "pwrite")
    base = (time.perf_counter() - t0) / 1000
    print(
        f"baseline (bare dispatch of {n} calls): {base * 1e6:.1f} us; model/baseline = {per_run / base:,.0f}x"
    )


if __name__ == "__main__":
    main()
