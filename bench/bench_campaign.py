"""Campaign scaling: executions/s of ``--jobs 2`` (hub + two worker processes) against ``--jobs 1``
(everything in the hub's process), measured in the same run on the baseline configuration, and
the resident memory of each worker over a longer run (the trend should be flat).

    python bench/bench_campaign.py                 # 40 s per setting, 2 min memory run
    python bench/bench_campaign.py --seconds 60 --rss-minutes 30
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fuzz.campaign import Campaign
from fuzz.hub import Hub, InlineBackend, Status
from fuzz.workers import LocalBackend


def run(jobs: int, seconds: float, seed: int, status_every: float = 5.0) -> tuple[float, list[Status]]:
    seen: list[Status] = []
    with tempfile.TemporaryDirectory() as d:
        backend = InlineBackend() if jobs == 1 else LocalBackend(jobs)
        try:
            with Campaign.open(Path(d) / "c", ()) as camp:
                hub = Hub(
                    camp,
                    backend,
                    (),
                    seed=seed,
                    minimize=False,
                    status=seen.append,
                    status_every=status_every,
                )
                t0 = time.monotonic()
                summary = hub.run(time_limit=seconds)
                elapsed = time.monotonic() - t0
        finally:
            backend.close()
    return summary.status.executions / elapsed, seen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=40.0, help="run time per setting")
    ap.add_argument("--rss-minutes", type=float, default=2.0, help="length of the memory run (jobs 2)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    one, _ = run(1, args.seconds, args.seed)
    two, _ = run(2, args.seconds, args.seed)
    print(f"baseline configuration, {args.seconds:.0f} s per setting, no minimization")
    print(f"  --jobs 1 (in-process):     {one:8.1f} executions/s")
    print(f"  --jobs 2 (hub + 2 workers): {two:8.1f} executions/s")
    print(f"  ratio jobs2/jobs1:         {two / one:8.2f}x")

    _, statuses = run(2, args.rss_minutes * 60, args.seed + 1, status_every=max(5.0, args.rss_minutes * 6))
    print(f"worker resident memory over {args.rss_minutes:.0f} min (jobs 2), KiB per worker pid:")
    pids = sorted({pid for s in statuses for pid in s.worker_rss_kib})
    for s in statuses:
        cells = "  ".join(f"{s.worker_rss_kib.get(pid, 0):>8}" for pid in pids)
        print(f"  t={s.seconds:7.0f}s  execs={s.executions:>7}  {cells}")
    for pid in pids:
        series = [s.worker_rss_kib[pid] for s in statuses if pid in s.worker_rss_kib]
        if len(series) >= 2:
            half = len(series) // 2
            early = sum(series[:half]) / half
            late = sum(series[half:]) / (len(series) - half)
            print(
                f"  pid {pid}: first {series[0]} KiB, last {series[-1]} KiB, "
                f"late/early mean {late / early:.3f}"
            )


if __name__ == "__main__":
    main()
