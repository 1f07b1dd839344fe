"""Judge one execution: the model's own detectors, then the independent oracle.

``judge(program)`` runs the program and returns a :class:`Verdict`: the execution plus its findings.
Kernel reports (BUG/WARN, deadlocks, lockdep) become findings as they are; the oracle then checks, from
the history and the final image only, that the final files are the outcome of some linearization of
the syscalls and that every read returned data some linearization allows.
"""

from __future__ import annotations

import hashlib
import re
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


#: errno values an outside checker sees when the device failed an IO
_EIO = 5
#: an unknown range covering any file
_WHOLE_FILE = 1 << 62

#: kernel log and trace lines in which ext4 says a file's writeback ran out of space: the extent
#: tree block a delalloc allocation or an unwritten conversion needs is allocated while the blocks
#: just allocated still count as reserved (ext4_da_update_reserve_space() runs after
#: ext4_ext_insert_extent()), so on a small, nearly full filesystem even the reserved pool
#: (s_resv_clusters, 2% capped at 4096 clusters) may not cover it -- "in the worst case return
#: ENOSPC" (27dd43854227, "ext4: introduce reserved space"). The data is then lost: dropped at
#: once ("Data will be lost"), left unconverted, or left dirty until unmount drops it with the
#: inode (ext4_writepages_result with -ENOSPC: the flusher ignores the error, sync(2) reports none)
_DATA_LOSS = re.compile(
    r"Delayed block allocation failed for inode (\d+) .*with error -28;.*Data will be lost"
    r"|failed to convert unwritten extents to written extents -- potential data loss! "
    r"\(inode (\d+), error -28\)"
    r"|ext4_writepages_result: ino (\d+) ret -28"
)


def reported_losses(ex: Execution) -> set[int]:
    """Inodes whose data ext4 said (in the kernel log) it lost to ENOSPC at writeback."""
    out: set[int] = set()
    for line in ex.messages:
        m = _DATA_LOSS.search(line)
        if m:
            out.add(int(next(g for g in m.groups() if g)))
    return out


#: fallocate modes that drop the page cache of their range before they can fail
_DROPPING_MODES = ("punch_hole", "zero_range", "zero_range_keep_size", "collapse_range", "insert_range")


def failed_range_ops(ex: Execution, folio_size: int) -> dict[str, list[tuple[int, int]]]:
    """File ranges whose bytes a punch, zero range or truncate that failed with -EIO leaves
    unknown: ext4_punch_hole() and ext4_zero_range() write back, then drop the page cache of the
    range (truncate_pagecache_range(), whole folios; a punch past EOF is widened to the end of the
    EOF page) before the partial blocks are zeroed, and that zeroing reads the edge blocks; when
    the read fails the syscall returns -EIO with the blocks still mapped, so a store or write that
    reached the dropped folios after the writeback is gone and the range shows what the disk held.
    What Linux does; an outside checker sees the -EIO and accepts any value there."""
    out: dict[str, list[tuple[int, int]]] = {}
    for op in ex.history.ops:
        if op.file is None or op.result != -_EIO:
            continue
        if op.op == "fallocate" and op.args.get("mode") in _DROPPING_MODES:
            lo, hi = op.arg("off"), op.arg("off") + op.arg("len")
        elif op.op == "truncate":
            lo, hi = op.arg("size"), _WHOLE_FILE
        else:
            continue
        lo -= lo % folio_size
        hi = min(_WHOLE_FILE, -(-hi // folio_size) * folio_size)
        out.setdefault(op.file, []).append((lo, hi))
    return out


def oracle_findings(ex: Execution, *, crashes: bool = True, crash_states: int | None = None) -> list[Finding]:
    """The oracle's checks, from what an outside checker sees (history, IO log, image bytes):

    - the final image: structurally consistent (``oracle.fsck``), every file the outcome of some
      linearization of the syscalls (bytes a failed data write should have written are not judged,
      nor the size of a file that lost one: ``oracle.crash.lost_ranges``; nor anything of a file
      whose data the kernel log says ext4 lost to ENOSPC at writeback: ``reported_losses``);
    - every read returned what some linearization allows (a prefix of it once the device has
      failed an IO: a read that hit EIO part way returns short);
    - a failed data write is reported by the next fsync (``oracle.wb_errors``);
    - with a journal, every crash state (``oracle.crash.check_crashes``, seeded by the history so
      that the verdict is a function of the program).
    """
    from oracle.crash import check_crashes, lost_ranges
    from oracle.fsck import fsck
    from oracle.linearize import check_final, check_reads
    from oracle.wb_errors import check_error_reporting

    out: list[Finding] = []
    # when the first data write failed (injected errors hit data writes only): a read after it may
    # see the failed range stale (the page may have been evicted and read back), and which file
    # the range belonged to then is not known once a later truncate or punch unmapped it from the
    # final image
    failed_at = min(
        (
            e.complete_step
            for e in ex.iolog.entries
            if e.kind == "write" and e.complete_step is not None and e.status < 0
        ),
        default=None,
    )
    failed_writes = failed_at is not None
    # a read IO that failed may cut a pread short after some bytes (Linux returns what it copied)
    # without any syscall returning -EIO; the block trace shows the failure
    eio = any(op.result == -_EIO for op in ex.history.ops) or any(
        e.kind == "mark" and e.tag.startswith("read error ") for e in ex.iolog.entries
    )
    lost: dict[str, list[tuple[int, int]]] = {}
    reported: set[str] = set()
    problems: list[Any] = []
    if ex.image is not None:
        problems = fsck(ex.image)
        for pr in problems[:1]:  # the first inconsistency names the class; the rest are evidence
            out.append(
                Finding(
                    "fsck",
                    f"fsck: {pr.kind} in final image",
                    pr.message,
                    {"problems": [str(q) for q in problems[:20]]},
                )
            )
        if failed_writes and not problems:
            lost = lost_ranges(ex.iolog, ex.image, clip=False)
        losses = reported_losses(ex)
        if losses and not problems:
            # a file whose data the kernel reported lost: none of its bytes, nor its size, is judged
            # (nor in a crash state: what a sync wrote of it may be what was dropped)
            from oracle.image import Ext4Image

            for fi in Ext4Image(ex.image).files():
                if fi.ino in losses:
                    lost[fi.name] = [(0, _WHOLE_FILE)]
                    reported.add(fi.name)
    # sizes of files that lost a data write are not judged; a failed punch changes no size
    any_size = tuple(lost)
    if ex.image is not None and not problems:
        for name, ranges in failed_range_ops(ex, ex.config.folio_size).items():
            lost.setdefault(name, []).extend(ranges)
    granule, block = ex.config.folio_size, ex.config.block_size
    # a write is atomic against reads and stores per folio -- per block on the iomap path, whose
    # mappings may end inside a folio (see oracle.linearize.check_final)
    wgran = block if ex.config.write_path == "iomap" else granule
    for mm in check_reads(
        ex.history, short_reads=eio or failed_writes, granule=granule, block_size=block, write_granule=wgran
    ):
        if mm.file in lost:  # a page whose writeback failed may be evicted and read back stale
            continue
        if (
            failed_at is not None
            and mm.read is not None
            and mm.read.ret is not None
            and mm.read.ret > failed_at
        ):
            continue
        out.append(Finding("data", mm.title(), mm.summary(), mm.to_json()))
    if ex.image is not None:
        for mm in check_final(
            ex.history,
            ex.files,
            unknown=lost,
            any_size=any_size,
            granule=granule,
            block_size=block,
            write_granule=wgran,
        ):
            out.append(Finding("data", mm.title(), mm.summary(), mm.to_json()))
        if failed_writes:
            out.extend(check_error_reporting(ex.history, ex.iolog, ex.image))
    if crashes and ex.config.journal:
        seed = int.from_bytes(hashlib.sha256(ex.history.dumps().encode()).digest()[:8], "little")
        out.extend(
            check_crashes(
                ex.history,
                ex.base,
                ex.iolog,
                ex.start_mark,
                seed=seed,
                check_states=crash_states,
                files=[f for f in ex.history.files if f not in reported] if reported else None,
            )
        )
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


def judge(
    program: Program,
    *,
    oracle: bool = True,
    crashes: bool = True,
    crash_states: int | None = None,
    **kwargs: Any,
) -> Verdict:
    """Run ``program`` and collect every finding (``crashes=False``: skip the crash states;
    ``crash_states``: check only the first that many states of the crash-state plan -- a subset of
    the default check, so every finding it gives, the verdict of record gives too)."""
    ex = execute(program, **kwargs)
    findings = [report_finding(r) for r in ex.reports]
    if oracle and not ex.stopped:
        findings.extend(oracle_findings(ex, crashes=crashes, crash_states=crash_states))
    return Verdict(ex, findings)
