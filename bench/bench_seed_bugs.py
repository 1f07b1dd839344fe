"""Time to rediscover the seed bugs from a cold start, coverage-guided vs plain random search.

For each target (variant, finding signature) and each seed, an :class:`~fuzz.engine.Engine` starts
with an empty corpus on one core and runs until the target signature shows up (or ``--budget``
seconds pass); the same is done with ``mode="random"`` (fresh uniformly random programs and
schedules, no corpus, no feedback) side by side. Prints the per-seed times, the medians and the
ratio random/fuzz. With ``--save DIR`` the first hit of each target is minimized and written there
(the corpus reproducers in ``corpus/`` were made this way).

    python bench/bench_seed_bugs.py [--seeds 10] [--budget 120] [--only iomap-nocookie] [--save DIR]
                                    [--first-seed 0] [--jobs 2]

``--jobs N`` runs N searches at a time, each in its own process on its own core (every search is
still a one-core search; on a machine with fewer idle cores than N the times grow).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import multiprocessing as mp
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fuzz.engine import Engine
from fuzz.minimize import minimize
from fuzz.program import Expect, Program, dump_program

#: (variant, signature of the seed bug there)
TARGETS = [
    ("iomap-nocookie", "data: final content: zeros instead of pwrite data"),
    ("ext4-inline", "assertion: kernel BUG in ext4_write_inline_data_end"),
    ("ext4-inline-v2", "lock-order: possible deadlock in fault_in_iov_iter_readable"),
]


def time_to_find(
    variant: str, signature: str, seed: int, mode: str, budget: float
) -> tuple[float | None, Program | None]:
    """Seconds until ``signature`` is found (None: not within ``budget``), and the program."""
    eng = Engine(
        [variant],
        seed=seed,
        mode=mode,
        minimize=False,
        target=lambda f, p: f.signature == signature,
    )
    t0 = time.monotonic()
    eng.run(time_limit=budget)
    hit = eng.target_hit
    if hit is None:
        return None, None
    return time.monotonic() - t0, hit.program


def _search(job: tuple[str, str, int, str, float]) -> tuple[float | None, Program | None]:
    return time_to_find(*job)


def _median(times: list[float | None], budget: float) -> str:
    vals = [t if t is not None else float("inf") for t in times]
    med = statistics.median(vals)
    return f">{budget:.0f}" if med == float("inf") else f"{med:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--budget", type=float, default=120.0, help="seconds per search")
    ap.add_argument("--only", help="one variant")
    ap.add_argument("--no-random", action="store_true", help="skip the random baseline")
    ap.add_argument("--save", type=Path, help="minimize the first hit of each target into this directory")
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=1, help="searches run at a time (one core each)")
    args = ap.parse_args()
    last = args.first_seed + args.seeds - 1
    print(f"seeds {args.first_seed}..{last}, budget {args.budget:.0f}s per search, one core per search")
    print(f"{'target':<70} {'fuzz median s':>14} {'random median s':>16}")
    for variant, sig in TARGETS:
        if args.only and variant != args.only:
            continue
        fuzz_t: list[float | None] = []
        rand_t: list[float | None] = []
        saved = False
        seeds = range(args.first_seed, args.first_seed + args.seeds)
        modes = ["fuzz"] if args.no_random else ["fuzz", "random"]
        jobs = [(variant, sig, seed, mode, args.budget) for seed in seeds for mode in modes]
        with cf.ProcessPoolExecutor(max(1, args.jobs), mp_context=mp.get_context("spawn")) as pool:
            results = list(pool.map(_search, jobs))
        for seed in seeds:
            t, prog = results.pop(0)
            fuzz_t.append(t)
            line = f"  {variant} seed {seed}: fuzz {'-' if t is None else f'{t:.1f}s'}"
            if not args.no_random:
                r, _ = results.pop(0)
                rand_t.append(r)
                line += f", random {'-' if r is None else f'{r:.1f}s'}"
            print(line, flush=True)
            if args.save and prog is not None and not saved:
                t0 = time.monotonic()
                small = minimize(prog, sig, time_limit=30.0)
                took = time.monotonic() - t0
                small = replace(
                    small, expect=Expect("finding", sig), meta={"found_by": f"bench_seed_bugs seed {seed}"}
                )
                args.save.mkdir(parents=True, exist_ok=True)
                out = args.save / f"{variant}.json"
                out.write_text(dump_program(small))
                print(
                    f"    minimized in {took:.1f}s: {small.n_threads} threads, {small.n_syscalls} syscalls, "
                    f"{sum(1 for d in small.schedule if d)} preemptions -> {out}",
                    flush=True,
                )
                saved = True
        rand = _median(rand_t, args.budget) if rand_t else "-"
        found = sum(t is not None for t in fuzz_t)
        print(
            f"{variant + ' / ' + sig:<70} {_median(fuzz_t, args.budget):>14} {rand:>16}"
            f"  (found {found}/{len(fuzz_t)})"
        )


if __name__ == "__main__":
    main()
