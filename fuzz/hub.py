"""The campaign hub: one process that owns the search and the campaign directory.

The hub runs the engine's decisions (``Engine.propose`` / ``Engine.feedback``: corpus, coverage,
energy, mutation) and ships batches of candidates to workers (``fuzz.workers``), which only
evaluate. Everything that is written goes through the hub (:class:`fuzz.campaign.Campaign`, the
single writer):

* a run that added coverage -> ``corpus/<digest>.json``;
* a finding -> deduplicated by signature; a signature new to the campaign was re-executed by the
  worker from its numeric schedule; if that showed it again it goes to ``findings/`` and a
  minimization task is queued, otherwise to ``flaky/`` (counted in the stability figure);
* every few seconds -> a line of ``stats.jsonl``, and the status display.

Resuming: a campaign directory that already holds a corpus and findings is loaded first; the corpus
programs are re-run (to rebuild coverage) before anything new, known signatures are not recorded
again (only counted), and findings whose minimization never finished are minimized again.
"""

from __future__ import annotations

import os
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fuzz.campaign import Campaign
from fuzz.engine import Engine, Outcome
from fuzz.program import Expect, Program
from fuzz.workers import (
    Backend,
    EvalResult,
    EvalTask,
    MinimizeResult,
    MinimizeTask,
    Task,
    TaskResult,
    WorkerLost,
    run_task,
)

__all__ = ["Hub", "HubSummary", "InlineBackend", "Status"]

#: seconds between two lines of stats.jsonl
STATS_EVERY = 5.0
#: a batch should take about this long on a worker (amortizes IPC, keeps feedback fresh)
BATCH_SECONDS = 0.25


class InlineBackend:
    """Run tasks in the hub's own process (``--jobs 1``): no IPC, deterministic order."""

    slots = 1
    replaced = 0

    def __init__(self) -> None:
        self._queue: deque[Task] = deque()

    def submit(self, task: Task) -> None:
        self._queue.append(task)

    def in_flight(self) -> int:
        return len(self._queue)

    def poll(self, timeout: float) -> list[tuple[Task, TaskResult]]:
        if not self._queue:
            return []
        task = self._queue.popleft()
        return [(task, run_task(task))]

    def close(self) -> None:
        self._queue.clear()


@dataclass
class Status:
    """One snapshot of a running campaign (what the status line, stats.jsonl and --stats-json show)."""

    seconds: float
    executions: int
    execs_per_second: float
    recent_execs_per_second: float
    corpus: int
    coverage: int
    findings: dict[str, int]
    flaky: int
    stability: float | None
    since_new_coverage: float | None
    since_new_finding: float | None
    workers: int
    replaced_workers: int
    minimizing: int
    worker_rss_kib: dict[str, int] = field(default_factory=dict)
    simulator_errors: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "t": round(self.seconds, 3),
            "executions": self.executions,
            "execs_per_second": round(self.execs_per_second, 1),
            "recent_execs_per_second": round(self.recent_execs_per_second, 1),
            "corpus": self.corpus,
            "coverage": self.coverage,
            "findings": dict(sorted(self.findings.items())),
            "flaky": self.flaky,
            "stability": None if self.stability is None else round(self.stability, 4),
            "since_new_coverage": None
            if self.since_new_coverage is None
            else round(self.since_new_coverage, 1),
            "since_new_finding": None if self.since_new_finding is None else round(self.since_new_finding, 1),
            "workers": self.workers,
            "replaced_workers": self.replaced_workers,
            "minimizing": self.minimizing,
            "worker_rss_kib": dict(sorted(self.worker_rss_kib.items())),
            "simulator_errors": self.simulator_errors,
        }

    def line(self) -> str:
        found = ", ".join(f"{k} {v}" for k, v in sorted(self.findings.items())) or "none"
        stab = "-" if self.stability is None else f"{100 * self.stability:.0f}%"
        return (
            f"[{self.seconds:8.1f}s] execs {self.executions} ({self.recent_execs_per_second:.0f}/s) "
            f"corpus {self.corpus} cov {self.coverage} findings: {found} flaky {self.flaky} "
            f"stability {stab}"
        )


@dataclass
class HubSummary:
    status: Status
    #: signatures recorded in this run (new to the campaign)
    new_findings: list[str]
    #: every finding signature of the campaign
    findings: list[str]
    stopped_by: str


def _finding_report(program: Program, signature: str) -> str:
    """The text report of a reproducer: the verdict, then its timeline."""
    from fuzz.timeline import render_timeline
    from fuzz.verdict import judge

    v = judge(program)
    text = v.render()
    how = "replay: blkfuzz replay minimized.json (or an original-*.json) in this directory"
    return f"{text}\n\n{render_timeline(v.execution)}\n\n{how}\n"


class Hub:
    """Drive a campaign on a backend until a limit; see the module docstring."""

    def __init__(
        self,
        campaign: Campaign,
        backend: Backend,
        variants: Sequence[str],
        *,
        seed: int = 0,
        minimize: bool = True,
        minimize_time: float = 30.0,
        stop_on_first: bool = False,
        status: Callable[[Status], None] | None = None,
        status_every: float = 1.0,
        stop_file: str | os.PathLike[str] | None = None,
        oracle: bool = True,
    ) -> None:
        self.campaign = campaign
        self.backend = backend
        self.variants = tuple(variants)
        self.minimize = minimize
        self.minimize_time = minimize_time
        self.stop_on_first = stop_on_first
        self.status_cb = status
        self.status_every = status_every
        self.stop_file = Path(stop_file) if stop_file else None
        self.oracle = oracle
        stats = campaign.stats()
        last = stats[-1] if stats else {}
        self.prior_seconds = float(last.get("t", 0.0))
        self.prior_executions = int(last.get("executions", 0))
        self.engine = Engine(
            self.variants,
            seed=seed + int(campaign.meta.get("resumed", 0)) * 1_000_003,
            minimize=False,
            seeds=campaign.corpus(),
            oracle=oracle,
        )
        self.engine.on_new_input = self._new_input
        self._task_ids = 0
        self._batch = 4
        self._exec_seconds: deque[float] = deque(maxlen=256)
        self._recent: deque[tuple[float, int]] = deque(maxlen=64)
        self._rss: dict[str, int] = {}
        self._minimizing: set[str] = set()
        self._dirty: set[str] = set()
        self.new_findings: list[str] = []
        self.checks = Counter[str]()
        self._last_new_finding: float | None = None
        self._t0 = 0.0
        self._stop_reason = ""
        for rec in campaign.findings.values():
            self.checks["reproduced"] += rec.reproduced
            self.checks["not_reproduced"] += rec.not_reproduced
        for rec in campaign.flaky.values():
            self.checks["reproduced"] += rec.reproduced
            self.checks["not_reproduced"] += rec.not_reproduced

    # -- helpers -----------------------------------------------------------------------------------

    def elapsed(self) -> float:
        return self.prior_seconds + (time.monotonic() - self._t0)

    def _new_input(self, program: Program) -> None:
        self.campaign.add_corpus(program)

    def _known(self) -> frozenset[str]:
        return frozenset(self.campaign.findings)

    def _submit_eval(self) -> None:
        n = self._batch
        cands = [self.engine.propose() for _ in range(n)]
        self._task_ids += 1
        self.backend.submit(EvalTask(tuple(cands), self._known(), self.oracle, self._task_ids))

    def _submit_minimize(self, signature: str, program: Program) -> None:
        if not self.minimize or signature in self._minimizing:
            return
        self._minimizing.add(signature)
        self._task_ids += 1
        self.backend.submit(MinimizeTask(program, signature, self.minimize_time, self._task_ids))

    def _tune_batch(self) -> None:
        if self._exec_seconds:
            avg = sum(self._exec_seconds) / len(self._exec_seconds)
            self._batch = max(1, min(64, round(BATCH_SECONDS / max(avg, 1e-4))))

    # -- results -----------------------------------------------------------------------------------

    def _on_eval(self, task: EvalTask, res: EvalResult) -> None:
        if res.pid:
            self._rss[str(res.pid)] = res.rss_kib
        for cand, out, rep in zip(task.candidates, res.outcomes, res.reproduced, strict=True):
            self._exec_seconds.append(out.seconds)
            self.engine.feedback(cand, out, rep)
            if out.error is not None:
                self.campaign.record_error(out.error, out.program)
            self._on_findings(out, rep)
        self._tune_batch()

    def _on_findings(self, out: Outcome, rep: dict[str, bool]) -> None:
        seen: set[str] = set()
        now = self.elapsed()
        for f in out.findings:
            sig = f.signature
            if sig in seen:
                continue
            seen.add(sig)
            if sig in self.campaign.findings:  # known and reproducible: count the hit
                rec = self.campaign.findings[sig]
                rec.hits += 1
                rec.last_seen = now
                self._dirty.add(sig)
                continue
            reproduced = rep.get(sig, False)
            if f.category == "hang" and not reproduced:
                # a run that outgrew the fuzzing step limit and then finished under the runner's
                # (the re-execution's) limit: a long run, not a hang and not nondeterminism, so
                # neither a finding nor a flaky one (Engine.feedback drops it the same way)
                continue
            self.checks["reproduced" if reproduced else "not_reproduced"] += 1
            program = replace(out.program, expect=Expect("finding", sig))
            report = ""
            if reproduced:
                try:
                    report = _finding_report(out.program, sig)
                except Exception as err:  # keep the finding even if rendering fails
                    report = f"{f.render()}\n\n(report rendering failed: {type(err).__name__}: {err})\n"
            else:
                report = f.render() + "\n\n(did not reproduce when re-executed: flaky)\n"
            rec, new = self.campaign.record_finding(
                f.to_json(),
                program,
                execution=self.prior_executions + self.engine.stats.executions,
                elapsed=now,
                reproduced=reproduced,
                report=report,
            )
            if new and not rec.flaky:
                self.new_findings.append(sig)
                self._last_new_finding = now
                self._submit_minimize(sig, program)
                if self.stop_on_first and not self._stop_reason:
                    self._stop_reason = "first finding"

    def _on_minimized(self, task: MinimizeTask, res: MinimizeResult) -> None:
        self._minimizing.discard(task.signature)
        if res.minimized is None:
            return
        small = res.minimized
        try:
            report = _finding_report(small, task.signature)
        except Exception as err:
            report = f"(report rendering failed: {type(err).__name__}: {err})\n"
        self.campaign.record_minimized(task.signature, small, report)

    def _handle(self, task: Task, result: TaskResult) -> None:
        if isinstance(result, WorkerLost):
            if isinstance(task, MinimizeTask):  # must not be lost: run it again
                self._minimizing.discard(task.signature)
                self._submit_minimize(task.signature, task.program)
            return  # a lost batch of candidates is replaced by new ones
        if isinstance(task, EvalTask) and isinstance(result, EvalResult):
            self._on_eval(task, result)
        elif isinstance(task, MinimizeTask) and isinstance(result, MinimizeResult):
            self._on_minimized(task, result)

    # -- status ------------------------------------------------------------------------------------

    def status(self) -> Status:
        st = self.engine.stats
        now = self.elapsed()
        execs = self.prior_executions + st.executions
        self._recent.append((time.monotonic(), st.executions))
        t_old, n_old = self._recent[0]
        dt = time.monotonic() - t_old
        recent = (st.executions - n_old) / dt if dt > 0.5 else st.execs_per_second
        by_cat = Counter(rec.category for rec in self.campaign.findings.values())
        checks = self.checks["reproduced"] + self.checks["not_reproduced"]
        last_cov = self.prior_seconds + st.last_new_coverage if st.last_new_coverage else None
        last_find = self._last_new_finding
        if last_find is None and self.campaign.findings:
            last_find = max(r.first_seen for r in self.campaign.findings.values())
        run_seconds = max(time.monotonic() - self._t0, 1e-9)
        return Status(
            seconds=now,
            executions=execs,
            execs_per_second=st.executions / run_seconds,
            recent_execs_per_second=recent,
            corpus=self.campaign.corpus_size,
            coverage=st.coverage,
            findings=dict(by_cat),
            flaky=len(self.campaign.flaky),
            stability=(self.checks["reproduced"] / checks) if checks else None,
            since_new_coverage=None if last_cov is None else now - last_cov,
            since_new_finding=None if last_find is None else now - last_find,
            workers=getattr(self.backend, "jobs", self.backend.slots),
            replaced_workers=getattr(self.backend, "replaced", 0),
            minimizing=len(self._minimizing),
            worker_rss_kib=dict(self._rss),
            simulator_errors=st.errors,
        )

    def _flush(self) -> Status:
        for sig in sorted(self._dirty):
            rec = self.campaign.findings.get(sig)
            if rec is not None:
                self.campaign.save_record(rec)
        self._dirty.clear()
        status = self.status()
        self.campaign.append_stats(status.to_json())
        return status

    # -- the loop ----------------------------------------------------------------------------------

    def run(self, *, time_limit: float | None = None, runs: int | None = None) -> HubSummary:
        """Fuzz until ``time_limit`` seconds of this run, ``runs`` executions of this run, the first
        finding (``stop_on_first``), the stop file, or Ctrl-C (KeyboardInterrupt propagates after
        the campaign directory is brought up to date)."""
        self._t0 = time.monotonic()
        self.engine._started = self._t0  # the engine's clock: this run's seconds
        last_stats = last_status = time.monotonic()
        for rec in list(self.campaign.findings.values()):  # resume unfinished minimizations
            if rec.minimized is None:
                reps = self.campaign.reproducers(rec.signature)
                if reps:
                    self._submit_minimize(rec.signature, reps[0])
        interrupted = False
        try:
            while not self._stop_reason:
                if runs is not None and self.engine.stats.executions >= runs:
                    self._stop_reason = "runs"
                    break
                if time_limit is not None and time.monotonic() - self._t0 >= time_limit:
                    self._stop_reason = "time"
                    break
                if self.stop_file is not None and self.stop_file.exists():
                    self._stop_reason = "stop file"
                    break
                while self.backend.in_flight() < self.backend.slots:
                    self._submit_eval()
                for task, result in self.backend.poll(0.1):
                    self._handle(task, result)
                self.engine.stats.seconds = time.monotonic() - self._t0
                now = time.monotonic()
                if now - last_stats >= STATS_EVERY:
                    last_stats = now
                    self._flush()
                if self.status_cb is not None and now - last_status >= self.status_every:
                    last_status = now
                    self.status_cb(self.status())
        except KeyboardInterrupt:
            interrupted = True
            self._stop_reason = "interrupted"
        finally:
            if not interrupted:
                self._drain()
            status = self._flush()
        if interrupted:
            raise KeyboardInterrupt
        return HubSummary(
            status,
            list(self.new_findings),
            sorted(self.campaign.findings),
            self._stop_reason,
        )

    def _drain(self) -> None:
        """Stop proposing; collect the batches in flight and finish queued minimizations (a
        minimization is bounded by its own time limit)."""
        deadline = time.monotonic() + self.minimize_time + 10.0
        while self.backend.in_flight() and time.monotonic() < deadline:
            for task, result in self.backend.poll(0.2):
                if isinstance(task, EvalTask) and not isinstance(result, EvalResult):
                    continue
                self._handle(task, result)
