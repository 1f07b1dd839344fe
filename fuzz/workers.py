"""Where executions run during a campaign: worker processes on this machine, or a Dask cluster.

The hub (``fuzz.hub``) owns every decision and the campaign directory; a worker only runs *tasks*,
pure functions of their arguments (``run_task``):

``EvalTask``
    evaluate a batch of candidates (``fuzz.engine.evaluate``). A finding whose signature the hub has
    not recorded yet is re-executed at once from its recorded numeric schedule, the way a user will
    replay it, so the hub can tell a reproducible finding from a flaky one before recording it.
``MinimizeTask``
    minimize a reproducer (``fuzz.minimize.minimize``): long, so it runs on a worker and the hub
    goes on.

Both backends have the same small interface (:class:`Backend`): ``submit`` a task, ``poll`` for
finished ones, a number of ``slots`` to keep busy. Batches keep the per-task overhead (pickling,
IPC, Dask's scheduler round trip) small next to the executions themselves.

A worker that dies (``kill -9``, out of memory) is noticed through its process sentinel (local)
or the task's error (Dask); the backend reports its lost task as :class:`WorkerLost`, starts a
replacement, and the hub re-submits what must not be lost (minimizations; a lost batch of random
candidates is simply replaced by new ones).
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing as mp
import os
import queue
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, Protocol

from fuzz.engine import Candidate, Outcome, evaluate
from fuzz.program import Program

__all__ = [
    "Backend",
    "DaskBackend",
    "EvalTask",
    "LocalBackend",
    "MinimizeResult",
    "MinimizeTask",
    "TaskResult",
    "WorkerLost",
    "run_task",
]


@dataclass(frozen=True)
class EvalTask:
    candidates: tuple[Candidate, ...]
    #: signatures the hub already recorded (no re-execution needed for those)
    known: frozenset[str] = frozenset()
    oracle: bool = True
    task_id: int = 0


@dataclass(frozen=True)
class MinimizeTask:
    program: Program
    signature: str
    time_limit: float = 30.0
    task_id: int = 0


@dataclass
class EvalResult:
    outcomes: list[Outcome]
    #: per outcome: signature -> did the re-execution show it again (only for unknown signatures)
    reproduced: list[dict[str, bool]]
    #: the worker's process id and resident set size (KiB), for the memory trend
    pid: int = 0
    rss_kib: int = 0
    seconds: float = 0.0


@dataclass
class MinimizeResult:
    signature: str
    original: Program
    minimized: Program | None
    seconds: float
    error: str | None = None


@dataclass
class WorkerLost:
    """A task whose worker died before answering."""

    why: str


TaskResult = EvalResult | MinimizeResult | WorkerLost
Task = EvalTask | MinimizeTask


def _rss_kib() -> int:
    try:
        with open(f"/proc/{os.getpid()}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def reproduces(program: Program, signature: str) -> bool:
    """Does replaying ``program`` (its numeric schedule) show ``signature`` again?"""
    from fuzz.verdict import judge

    try:
        return signature in {f.signature for f in judge(program).findings}
    except Exception:
        return False


#: the model coverage this process's runs showed: a worker's own view of what is new, for the
#: crash-check budget (``fuzz.engine.FUZZ_CRASH_STATES_SEEN``); it holds at most what the hub has
#: seen, so a worker checks in full at least every run that is new to the hub
_SEEN: set[str] = set()


def _novel(coverage: frozenset[str]) -> bool:
    new = not coverage <= _SEEN
    _SEEN.update(coverage)
    return new


def run_task(task: Task) -> TaskResult:
    """Run one task (in a worker process or on a Dask worker)."""
    t0 = time.perf_counter()
    if isinstance(task, MinimizeTask):
        from fuzz.minimize import minimize

        try:
            small = minimize(task.program, task.signature, time_limit=task.time_limit)
        except Exception as err:
            where = traceback.extract_tb(err.__traceback__)[-1]
            return MinimizeResult(
                task.signature,
                task.program,
                None,
                time.perf_counter() - t0,
                f"{type(err).__name__} at {where.name}: {err}",
            )
        return MinimizeResult(task.signature, task.program, small, time.perf_counter() - t0)
    outcomes: list[Outcome] = []
    reproduced: list[dict[str, bool]] = []
    for cand in task.candidates:
        out = evaluate(cand, oracle=task.oracle, novel=_novel)
        outcomes.append(out)
        rep: dict[str, bool] = {}
        for f in out.findings:
            if f.signature not in task.known and f.signature not in rep:
                rep[f.signature] = reproduces(out.program, f.signature)
        reproduced.append(rep)
    return EvalResult(outcomes, reproduced, os.getpid(), _rss_kib(), time.perf_counter() - t0)


class Backend(Protocol):
    #: how many tasks to keep in flight
    slots: int

    def submit(self, task: Task) -> None: ...

    def poll(self, timeout: float) -> list[tuple[Task, TaskResult]]: ...

    def in_flight(self) -> int: ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------------------------------
# local worker processes


def _worker_main(conn: Connection) -> None:
    """A local worker: run tasks from the hub until it closes the pipe."""
    import signal

    # Ctrl-C goes to the whole process group: the hub decides how to stop, workers just finish
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        try:
            result = run_task(task)
        except Exception as err:  # pragma: no cover - run_task catches simulator errors itself
            result = WorkerLost(f"worker raised {type(err).__name__}: {err}")
        try:
            conn.send(result)
        except (BrokenPipeError, OSError):
            return


@dataclass
class _Proc:
    index: int
    process: Any
    conn: Connection
    tasks: list[Task] = field(default_factory=list)
    started: float = 0.0
    answered: int = 0


class LocalBackend:
    """``jobs`` worker processes on this machine, each fed through its own pipe.

    Two tasks are kept queued per worker so a worker never waits for the hub between batches.
    """

    def __init__(self, jobs: int, *, per_worker: int = 2) -> None:
        if jobs < 1:
            raise ValueError("jobs must be at least 1")
        # spawn, not fork: the hub may hold a terminal UI thread and open files; a clean
        # interpreter per worker is what survives being replaced mid-campaign
        self._ctx = mp.get_context("spawn")
        self.jobs = jobs
        self.per_worker = per_worker
        self.slots = jobs * per_worker
        self.replaced = 0
        self._quick_deaths = 0
        self._procs: list[_Proc] = [self._start(i) for i in range(jobs)]
        self._rr = itertools.count()

    def _start(self, index: int) -> _Proc:
        parent, child = self._ctx.Pipe()
        p = self._ctx.Process(target=_worker_main, args=(child,), name=f"blkfuzz-worker-{index}", daemon=True)
        p.start()
        child.close()
        return _Proc(index, p, parent, started=time.monotonic())

    def pids(self) -> list[int]:
        return [p.process.pid for p in self._procs]

    def in_flight(self) -> int:
        return sum(len(p.tasks) for p in self._procs)

    def submit(self, task: Task) -> None:
        proc = min(self._procs, key=lambda p: (len(p.tasks), p.index))
        proc.tasks.append(task)
        with contextlib.suppress(BrokenPipeError, OSError):  # its death is noticed by poll()
            proc.conn.send(task)

    def poll(self, timeout: float) -> list[tuple[Task, TaskResult]]:
        out: list[tuple[Task, TaskResult]] = []
        waitables: dict[Any, _Proc] = {}
        for p in self._procs:
            waitables[p.conn] = p
            waitables[p.process.sentinel] = p
        ready = wait(list(waitables), timeout)
        dead: set[int] = set()
        for obj in ready:
            proc = waitables[obj]
            if obj is proc.conn:
                while proc.tasks and proc.conn.poll():
                    try:
                        result = proc.conn.recv()
                    except (EOFError, OSError):
                        dead.add(proc.index)
                        break
                    out.append((proc.tasks.pop(0), result))
                    proc.answered += 1
            else:
                dead.add(proc.index)
        for index in sorted(dead):
            proc = self._procs[index]
            # drain what it answered before dying
            try:
                while proc.tasks and proc.conn.poll():
                    out.append((proc.tasks.pop(0), proc.conn.recv()))
            except (EOFError, OSError):
                pass
            code = proc.process.exitcode
            proc.process.join(timeout=1)
            why = f"worker {proc.process.pid} died (exit code {code})"
            out.extend((t, WorkerLost(why)) for t in proc.tasks)
            proc.conn.close()
            # a worker that dies before answering anything, again and again, cannot run at all
            # (broken installation, unimportable __main__): stop instead of respawning forever
            self._quick_deaths = self._quick_deaths + 1 if proc.answered == 0 else 0
            if self._quick_deaths > 3 * self.jobs:
                from simkernel.errors import CampaignError

                raise CampaignError(f"worker processes exit at start ({why}); run with --jobs 1 to see why")
            self._procs[index] = self._start(index)
            self.replaced += 1
        return out

    def close(self) -> None:
        for p in self._procs:
            with contextlib.suppress(BrokenPipeError, OSError):
                p.conn.send(None)
        deadline = time.monotonic() + 2.0
        for p in self._procs:
            p.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if p.process.is_alive():
                p.process.terminate()
                p.process.join(timeout=1)
            p.conn.close()


# --------------------------------------------------------------------------------------------------
# Dask distributed


class DaskBackend:
    """Tasks as Dask futures on a ``distributed`` cluster (``address`` like ``tcp://host:8786``, or
    a ``Client``). Keeps two tasks in flight per worker thread of the cluster."""

    def __init__(self, address: Any, *, per_thread: int = 2) -> None:
        try:
            from distributed import Client
        except ImportError:  # pragma: no cover - depends on the optional extra
            from simkernel.errors import CampaignError

            raise CampaignError(
                "--cluster needs dask.distributed: pip install 'blkfuzz[cluster]'", where="--cluster"
            ) from None
        if isinstance(address, Client):
            self.client = address
            self._own = False
        else:
            try:
                self.client = Client(address, timeout="15s", set_as_default=False)
            except OSError as err:
                from simkernel.errors import CampaignError

                raise CampaignError(f"cannot reach the Dask scheduler: {err}", where=str(address)) from None
            self._own = True
        self.per_thread = per_thread
        self._futures: dict[Any, Task] = {}
        self._done: queue.Queue[Any] = queue.Queue()
        self._ids = itertools.count()
        self.replaced = 0
        self.slots = max(1, self._threads() * per_thread)

    def _threads(self) -> int:
        info = self.client.scheduler_info()
        return sum(int(w.get("nthreads", 1)) for w in info.get("workers", {}).values())

    def in_flight(self) -> int:
        return len(self._futures)

    def submit(self, task: Task) -> None:
        fut = self.client.submit(run_task, task, pure=False, key=f"blkfuzz-{os.getpid()}-{next(self._ids)}")
        self._futures[fut] = task
        # completion callbacks run on the client's thread: hand the future over through a queue
        # (distributed.wait() would need a default client, which a library must not install)
        fut.add_done_callback(self._done.put)

    def poll(self, timeout: float) -> list[tuple[Task, TaskResult]]:
        done: list[Any] = []
        try:
            done.append(self._done.get(timeout=timeout))
            while True:
                done.append(self._done.get_nowait())
        except queue.Empty:
            pass
        out: list[tuple[Task, TaskResult]] = []
        for fut in done:
            task = self._futures.pop(fut, None)
            if task is None:
                continue
            try:
                out.append((task, fut.result()))
            except Exception as err:  # the worker died or the task was lost
                out.append((task, WorkerLost(f"dask task failed: {type(err).__name__}: {err}")))
                self.replaced += 1
        self.slots = max(1, self._threads() * self.per_thread)
        return out

    def close(self) -> None:
        for fut in list(self._futures):
            fut.cancel()
        self._futures.clear()
        if self._own:
            self.client.close()


def batch(
    candidates: Sequence[Candidate], known: frozenset[str], task_id: int, oracle: bool = True
) -> EvalTask:
    return EvalTask(tuple(candidates), known, oracle, task_id)
