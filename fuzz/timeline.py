"""An execution as a timeline: one column per user thread, one for kernel threads, one for the
background actions the schedule chose -- the shape of the interleaving tables in the bug notes.

Rows are scheduler steps at which something visible happened: a syscall invoked or returned, a task
resumed (with the kernel function it resumed in), an action fired, the kernel reported something.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

from fuzz.runner import Execution
from oracle.history import HistoryOp


@dataclass
class _Row:
    step: int
    column: str
    text: str


def describe_call(op: HistoryOp) -> str:
    """``pwrite(a, off=0, len=36865)``"""
    args = ", ".join(f"{k}={v}" for k, v in op.args.items())
    target = op.file or ""
    inner = ", ".join(x for x in (target, args) if x)
    return f"{op.op}({inner})"


def describe_result(op: HistoryOp) -> str:
    if op.ret is None:
        return "(never returned)"
    if op.result is None:
        return "= ?"
    if op.op == "mwrite" and op.result == -14:
        return "= SIGBUS"
    return f"= {op.result}"


def _columns(ex: Execution) -> list[str]:
    threads = sorted({f"T{op.tid}" for op in ex.history.ops}, key=lambda s: int(s[1:]))
    return [*threads, "kernel threads", "actions"]


def timeline_rows(ex: Execution) -> list[_Row]:
    """The visible events of the program phase, in step order."""
    rows: list[_Row] = []
    start = min((op.invoke for op in ex.history.ops), default=0)
    for op in ex.history.ops:
        rows.append(_Row(op.invoke, f"T{op.tid}", f"{describe_call(op)} ->"))
        if op.ret is not None:
            rows.append(_Row(op.ret, f"T{op.tid}", f"<- {op.op} {describe_result(op)}"))
        for store in op.stores:
            rows.append(_Row(store.step, f"T{op.tid}", f"store {len(store.data)}B at {store.off}"))
    for ev in ex.trace:
        if ev.step < start:
            continue
        if ev.who.startswith("T") and ev.who[1:].isdigit():
            rows.append(_Row(ev.step, ev.who, ev.what))
        elif ev.who in ("writeback", "complete", "reclaim", "drop_caches") or ev.who.startswith("fail"):
            rows.append(_Row(ev.step, "actions", ev.what))
        elif ev.who in ("sync", "umount", "setup"):
            continue
        else:
            rows.append(_Row(ev.step, "kernel threads", f"{ev.who} {ev.what}"))
    for rep in ex.reports:
        rows.append(
            _Row(rep.step, f"{rep.task}" if rep.task.startswith("T") else "kernel threads", f"!! {rep.title}")
        )
    order = {"T": 0, "k": 1, "a": 2}
    rows.sort(key=lambda r: (r.step, order.get(r.column[0], 0)))
    return rows


def render_timeline(ex: Execution, *, width: int = 34, limit: int = 400) -> str:
    """A fixed-width table: step | T0 | T1 | ... | kernel threads | actions."""
    cols = _columns(ex)
    rows = timeline_rows(ex)
    header = "step  | " + " | ".join(c.ljust(width) for c in cols)
    out = [header, "-" * len(header)]
    shown = rows[:limit]
    # collapse consecutive "runs" rows of the same task that add nothing
    prev: tuple[str, str] | None = None
    for row in shown:
        key = (row.column, row.text)
        if key == prev:
            continue
        prev = key
        cells = [""] * len(cols)
        cells[cols.index(row.column) if row.column in cols else len(cols) - 2] = row.text
        wrapped = [textwrap.wrap(c, width) or [""] for c in cells]
        height = max(len(w) for w in wrapped)
        for line in range(height):
            parts = [(w[line] if line < len(w) else "").ljust(width) for w in wrapped]
            label = f"{row.step:<5}" if line == 0 else " " * 5
            out.append(f"{label} | " + " | ".join(parts))
    if len(rows) > limit:
        out.append(f"... {len(rows) - limit} more events")
    return "\n".join(line.rstrip() for line in out)


def render_program(ex: Execution) -> str:
    """The program's threads, one syscall per line, followed by its timeline."""
    lines = []
    prog = ex.program
    lines.append(f"variants: {', '.join(ex.variants) or '-'}   files: {', '.join(prog.files)}")
    cfg = ex.config
    lines.append(
        f"config: block_size={cfg.block_size} folio_blocks={cfg.folio_blocks} "
        f"device_blocks={cfg.device_blocks} "
        f"write_path={cfg.write_path} inline_data={cfg.inline_data} "
        f"delalloc={cfg.delalloc} journal={cfg.journal}"
    )
    for tid, calls in enumerate(prog.threads):
        lines.append(f"T{tid}:")
        for sc in calls:
            args = ", ".join(f"{k}={v}" for k, v in sc.to_json().items() if k not in ("op",))
            lines.append(f"  {sc.op}({args})")
    lines.append(f"schedule: {list(prog.schedule)}")
    lines.append("")
    lines.append(render_timeline(ex))
    return "\n".join(lines)
