"""Judge one execution: the model's own detectors, then the independent oracle.

``judge(program)`` runs the program and returns a :class:`Verdict`: the execution plus its findings.
Kernel reports (BUG/WARN, deadlocks, lockdep) become findings as they are; the oracle then checks, from
the history and the final image only, that the final files are the outcome of some linearization of
the syscalls and that every read returned data some linearization allows.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from fuzz.program import Program
from fuzz.runner import Execution, execute, summarize
from oracle.findings import Finding
from simkernel.report import Report


def report_finding(rep: Report) -> Finding:
    """A kernel report as a finding (assertion, deadlock, lock-order, hang)."""
    evidence: dict[str, Any] = {"task": rep.task, "step": rep.step}
    if rep.stack:
        evidence["call trace"] = list(rep.stack)
    for key, value in rep.details.items():
        evidence[key] = value
    return Finding(category=rep.category, title=rep.title, message=rep.message, evidence=evidence)


def oracle_findings(ex: Execution) -> list[Finding]:
    """The oracle's checks of the final image and the reads (only what an outside checker sees)."""
    from oracle.linearize import check_final, check_reads

    out: list[Finding] = []
    for mm in check_reads(ex.history):
        out.append(Finding("data", mm.title(), mm.summary(), mm.to_json()))
    if ex.image is not None:
        for mm in check_final(ex.history, ex.files):
            out.append(Finding("data", mm.title(), mm.summary(), mm.to_json()))
    return out


@dataclass
class Verdict:
    execution: Execution
    findings: list[Finding] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.findings

    def signatures(self) -> list[str]:
        return sorted({f.signature for f in self.findings})

    def to_json(self, source: str = "") -> dict[str, Any]:
        ex = self.execution
        return {
            "program": source,
            "verdict": "finding" if self.findings else "clean",
            "findings": [f.to_json() for f in self.findings],
            "files": summarize(ex),
            "image_sha256": ex.image_digest(),
            "history_sha256": hashlib.sha256(ex.history.dumps().encode()).hexdigest(),
            "trace_sha256": hashlib.sha256(
                "\n".join(f"{t.step} {t.who} {t.what}" for t in ex.trace).encode()
            ).hexdigest(),
            "steps": ex.steps,
            "variants": list(ex.variants),
        }

    def render(self, source: str = "") -> str:
        ex = self.execution
        head = f"{source}: " if source else ""
        status = "FINDING" if self.findings else "clean"
        lines = [f"{head}{status} ({ex.steps} steps, variants: {', '.join(ex.variants) or '-'})"]
        for name, info in summarize(ex).items():
            lines.append(f"  file {name}: size {info['size']} sha256 {info['sha256']}")
        if ex.image is not None:
            lines.append(f"  image sha256 {ex.image_digest()[:16]}")
        for finding in self.findings:
            lines.append("")
            lines.append(finding.render())
        return "\n".join(lines)


def judge(program: Program, *, oracle: bool = True, **kwargs: Any) -> Verdict:
    """Run ``program`` and collect every finding."""
    ex = execute(program, **kwargs)
    findings = [report_finding(r) for r in ex.reports]
    if oracle and not ex.stopped:
        findings.extend(oracle_findings(ex))
    return Verdict(ex, findings)
