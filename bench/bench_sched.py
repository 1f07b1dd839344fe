"""Scheduler steps/s and executions/s for the fixed standard workload (bench/workloads.py),
with the cost of a bare generator loop of the same step count measured in the same run (the floor).

Then the same workload under PCT plans (as the fuzzer runs it): the scheduler asks a
:class:`~fuzz.mutate.PlanChooser` to pick from the runnable tasks and enumerates the background
actions only when the plan may fire one; the baseline is the same plans through the full option
list at every step (``choose_option``), which gives the same decisions."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.workloads import standard
from fuzz.mutate import PlanChooser, random_plan
from fuzz.runner import execute


class EagerPlanChooser:
    """The baseline: the same plan, shown every option (tasks and all background actions): only
    ``choose_option`` is offered to the scheduler."""

    def __init__(self, plan: Any) -> None:
        self.inner = PlanChooser(plan)

    def choose_option(self, options: list[Any]) -> int:
        return self.inner.choose_option(options)

    @property
    def pos(self) -> int:
        return self.inner.pos

    @property
    def decisions(self) -> list[int]:
        return self.inner.decisions


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

    import random

    rng = random.Random(0)
    plans = [random_plan(rng, prog.n_threads, steps, len(prog.actors)) for _ in range(20)]

    def planned(cls: type[PlanChooser] | type[EagerPlanChooser]) -> tuple[float, list[tuple[int, ...]]]:
        t0 = time.perf_counter()
        scheds = []
        for plan in plans:
            ex = execute(prog, trace=False, chooser_factory=lambda _m, plan=plan: cls(plan))
            scheds.append(ex.schedule)
        return (time.perf_counter() - t0) / len(plans), scheds

    lazy = min(planned(PlanChooser)[0] for _ in range(3))
    eager = min(planned(EagerPlanChooser)[0] for _ in range(3))
    assert planned(PlanChooser)[1] == planned(EagerPlanChooser)[1], "lazy and eager plans disagree"
    print(f"PCT plans ({len(plans)}, actors: {', '.join(prog.actors) or 'none'}):")
    print(f"  lazy action enumeration:  {lazy * 1e3:.1f} ms per execution")
    print(f"  every option, every step: {eager * 1e3:.1f} ms per execution ({eager / lazy:.2f}x)")


if __name__ == "__main__":
    main()
