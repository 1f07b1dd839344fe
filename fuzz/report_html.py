"""``blkfuzz report``: one self-contained HTML file describing a campaign.

For each finding: its title, category and counts, the minimized reproducer (or the original one
when minimization has not finished) as a program listing and an interleaving timeline (one column
per thread and actor), the differing byte ranges with expected and found values and which syscall
wrote them, the rest of the evidence, and the command that replays it. Then plots of executions
per second, coverage and corpus size over the campaign's time series (``stats.jsonl``).

Reproducers are re-executed to draw their timelines (execution is deterministic, so this shows
exactly what the campaign saw) -- the report reads the campaign directory without locking it, so it
works on a campaign that is still running. The file has no external resources: styles inline, the
data as embedded JSON, and a small script that draws the plots as SVG.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any

from fuzz.campaign import Campaign, FindingRecord, signature_id
from fuzz.program import Program

__all__ = ["build_report", "write_report"]

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1400px; }
h1 { font-size: 1.6em; } h2 { font-size: 1.3em; margin-top: 2em; border-bottom: 1px solid #ccc; }
.summary td { padding: 2px 12px 2px 0; }
.finding { border: 1px solid #ddd; border-radius: 6px; padding: 0.5em 1em; margin: 1em 0; }
.cat { display: inline-block; padding: 1px 8px; border-radius: 10px; background: #eee; font-size: 0.85em; }
.cat-data, .cat-crash-consistency { background: #fdd; } .cat-assertion { background: #fec; }
.cat-deadlock, .cat-hang, .cat-lock-order { background: #def; } .cat-fsck { background: #efd; }
table.timeline { border-collapse: collapse; font-family: monospace; font-size: 12px; }
table.timeline td, table.timeline th { border: 1px solid #ddd; padding: 1px 6px; vertical-align: top; }
table.timeline th { background: #f4f4f4; position: sticky; top: 0; }
td.report { color: #b00; font-weight: bold; }
table.diff { border-collapse: collapse; font-family: monospace; font-size: 12px; }
table.diff td, table.diff th { border: 1px solid #ddd; padding: 2px 6px; }
.found { color: #b00; } .expected { color: #070; }
pre { background: #f8f8f8; padding: 0.5em; overflow-x: auto; }
.plots { display: flex; flex-wrap: wrap; gap: 1.5em; }
.plot svg { border: 1px solid #ddd; background: #fff; }
.muted { color: #777; }
"""

_SCRIPT = r"""
(function () {
  const data = JSON.parse(document.getElementById('blkfuzz-stats').textContent);
  const series = [
    ['execs_per_second', 'executions per second', 'plot-execs'],
    ['coverage', 'coverage (features)', 'plot-coverage'],
    ['corpus', 'corpus size', 'plot-corpus'],
  ];
  const W = 420, H = 220, L = 56, R = 12, T = 24, B = 34;
  const ns = 'http://www.w3.org/2000/svg';
  function el(name, attrs, text) {
    const e = document.createElementNS(ns, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  for (const [key, title, id] of series) {
    const host = document.getElementById(id);
    const pts = data.filter(d => typeof d.t === 'number' && typeof d[key] === 'number')
                    .map(d => [d.t, d[key]]);
    const svg = el('svg', {width: W, height: H, 'data-series': key, 'data-points': pts.length});
    svg.appendChild(el('text', {x: L, y: 16, 'font-size': 13}, title));
    if (pts.length === 0) {
      svg.appendChild(el('text', {x: L, y: H / 2, 'font-size': 12, fill: '#777'}, 'no data yet'));
      host.appendChild(svg);
      continue;
    }
    const x0 = pts[0][0], x1 = Math.max(pts[pts.length - 1][0], x0 + 1e-9);
    const y1 = Math.max(...pts.map(p => p[1]), 1);
    const sx = t => L + (t - x0) / (x1 - x0) * (W - L - R);
    const sy = v => H - B - v / y1 * (H - T - B);
    svg.appendChild(el('line', {x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: '#999'}));
    svg.appendChild(el('line', {x1: L, y1: T, x2: L, y2: H - B, stroke: '#999'}));
    const end = {'font-size': 10, 'text-anchor': 'end'};
    svg.appendChild(el('text', {x: L - 4, y: T + 4, ...end}, String(Math.round(y1))));
    svg.appendChild(el('text', {x: L - 4, y: H - B, ...end}, '0'));
    svg.appendChild(el('text', {x: L, y: H - B + 14, 'font-size': 10}, x0.toFixed(0) + ' s'));
    svg.appendChild(el('text', {x: W - R, y: H - B + 14, ...end}, x1.toFixed(0) + ' s'));
    const line = el('polyline', {
      fill: 'none', stroke: '#2060c0', 'stroke-width': 2, class: 'series',
      points: pts.map(p => sx(p[0]).toFixed(1) + ',' + sy(p[1]).toFixed(1)).join(' '),
    });
    svg.appendChild(line);
    host.appendChild(svg);
  }
  document.body.setAttribute('data-rendered', 'yes');
})();
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _timeline_html(program: Program) -> tuple[str, list[dict[str, Any]]]:
    """Re-execute ``program``; its timeline as an HTML table and the findings it shows now."""
    from fuzz.timeline import _columns, timeline_rows
    from fuzz.verdict import judge

    verdict = judge(program)
    ex = verdict.execution
    cols = _columns(ex)
    out = ['<table class="timeline"><tr><th>step</th>' + "".join(f"<th>{_e(c)}</th>" for c in cols) + "</tr>"]
    prev: tuple[str, str] | None = None
    for row in timeline_rows(ex)[:600]:
        if (row.column, row.text) == prev:
            continue
        prev = (row.column, row.text)
        idx = cols.index(row.column) if row.column in cols else len(cols) - 2
        cells = ["<td></td>"] * len(cols)
        cls = ' class="report"' if row.text.startswith("!!") else ""
        cells[idx] = f"<td{cls}>{_e(row.text)}</td>"
        out.append(f"<tr><td>{row.step}</td>{''.join(cells)}</tr>")
    out.append("</table>")
    return "\n".join(out), [f.to_json() for f in verdict.findings]


def _program_html(program: Program) -> str:
    lines = [f"variants: {', '.join(program.variants) or '-'}   actors: {', '.join(program.actors)}"]
    cfg = program.config
    lines.append(
        f"config: block_size={cfg.block_size} folio_blocks={cfg.folio_blocks} "
        f"device_blocks={cfg.device_blocks} write_path={cfg.write_path} "
        f"inline_data={cfg.inline_data} delalloc={cfg.delalloc} journal={cfg.journal}"
    )
    for tid, calls in enumerate(program.threads):
        lines.append(f"T{tid}:")
        for sc in calls:
            args = ", ".join(f"{k}={v}" for k, v in sc.to_json().items() if k != "op")
            lines.append(f"  {sc.op}({args})")
    lines.append(f"schedule: {list(program.schedule)}")
    return "<pre>" + _e("\n".join(lines)) + "</pre>"


def _who(by: Any) -> str:
    if not isinstance(by, dict):
        return ""
    if by.get("kind") == "op" and isinstance(by.get("op"), dict):
        op = by["op"]
        return f"op {op.get('index')} (T{op.get('tid')} {op.get('op')})"
    return str(by.get("kind", ""))


def _diff_html(evidence: dict[str, Any]) -> str:
    diffs = evidence.get("diffs")
    if not isinstance(diffs, list) or not diffs:
        return ""
    out = [
        '<table class="diff"><tr><th>bytes</th><th>expected</th><th>written by</th>'
        "<th>found</th><th>written by</th></tr>"
    ]
    for d in diffs[:32]:
        if not isinstance(d, dict):
            continue
        expected = _e(str(d.get("expected", ""))[:64])
        found = _e(str(d.get("found", ""))[:64])
        out.append(
            f"<tr><td>[{_e(d.get('start'))}, {_e(d.get('end'))})</td>"
            f'<td class="expected">{expected}</td><td>{_e(_who(d.get("expected_by")))}</td>'
            f'<td class="found">{found}</td><td>{_e(_who(d.get("found_by")))}</td></tr>'
        )
    out.append("</table>")
    return "\n".join(out)


def _evidence_html(evidence: dict[str, Any]) -> str:
    rows = []
    for key, value in evidence.items():
        if key in ("diffs", "linearization"):
            continue
        text = json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else str(value)
        rows.append(f"<tr><td>{_e(key)}</td><td><code>{_e(text[:2000])}</code></td></tr>")
    return '<table class="summary">' + "".join(rows) + "</table>" if rows else ""


def _finding_html(camp: Campaign, rec: FindingRecord, flaky: bool) -> str:
    sid = signature_id(rec.signature)
    sub = "flaky" if flaky else "findings"
    d = camp.path / sub / sid
    programs = camp.reproducers(rec.signature)
    which = "minimized" if rec.minimized and programs else "original"
    parts = [f'<div class="finding" id="f-{sid}" data-signature="{_e(rec.signature)}">']
    parts.append(
        f'<h3><span class="cat cat-{_e(rec.category)}">{_e(rec.category)}</span> {_e(rec.title)}</h3>'
    )
    parts.append(
        f'<table class="summary"><tr><td>signature</td><td><code>{_e(rec.signature)}</code></td></tr>'
        f"<tr><td>hits</td><td>{rec.hits}</td></tr>"
        f"<tr><td>first seen</td><td>{rec.first_seen:.1f} s (execution {rec.first_execution})</td></tr>"
        f"<tr><td>reproduced on re-execution</td>"
        f"<td>{rec.reproduced} of {rec.reproduced + rec.not_reproduced}</td></tr>"
        "</table>"
    )
    finding = rec.finding
    if finding.get("message"):
        parts.append(f"<p>{_e(finding['message'])}</p>")
    raw = finding.get("evidence")
    evidence: dict[str, Any] = raw if isinstance(raw, dict) else {}
    if programs:
        program = programs[0]
        name = "minimized.json" if which == "minimized" else (rec.originals[0] if rec.originals else "")
        path = d / name
        parts.append(
            f"<h4>Replay</h4><pre>blkfuzz replay {_e(path)}\nblkfuzz show {_e(path)}</pre>"
            f"<h4>{which.capitalize()} reproducer ({program.n_syscalls} syscalls)</h4>"
        )
        parts.append(_program_html(program))
        try:
            table, now = _timeline_html(program)
        except Exception as err:  # a reproducer the current model cannot run: still report the rest
            table, now = f'<p class="muted">timeline unavailable: {_e(type(err).__name__)}: {_e(err)}</p>', []
        for f in now:  # the evidence of this reproducer (the minimized one differs from the original)
            if f.get("signature") == rec.signature and isinstance(f.get("evidence"), dict):
                evidence = f["evidence"]
                break
        parts.append(
            "<h4>Byte differences</h4>" + (_diff_html(evidence) or '<p class="muted">none recorded</p>')
        )
        parts.append("<h4>Evidence</h4>" + _evidence_html(evidence))
        parts.append("<h4>Interleaving</h4>" + table)
    else:
        parts.append('<p class="muted">no readable reproducer in the campaign directory</p>')
        parts.append(_diff_html(evidence) + _evidence_html(evidence))
    parts.append("</div>")
    return "\n".join(parts)


def build_report(campaign_dir: str | os.PathLike[str]) -> str:
    """The HTML text of the report of ``campaign_dir``."""
    camp = Campaign.read(campaign_dir)
    stats = camp.stats()
    last = stats[-1] if stats else {}
    findings = list(camp.iter_findings())
    flaky = sorted(camp.flaky.values(), key=lambda r: (r.first_seen, r.signature))
    by_cat: dict[str, int] = {}
    for rec in findings:
        by_cat[rec.category] = by_cat.get(rec.category, 0) + 1
    head = [
        f"<h1>blkfuzz campaign: {_e(Path(campaign_dir).resolve().name)}</h1>",
        '<table class="summary">',
        f"<tr><td>variants</td><td>{_e(', '.join(camp.meta.get('variants', [])) or '(baseline)')}</td></tr>",
        f"<tr><td>run time</td><td>{float(last.get('t', 0.0)):.0f} s</td></tr>",
        f"<tr><td>executions</td><td>{int(last.get('executions', 0))}</td></tr>",
        f"<tr><td>corpus</td><td>{camp.corpus_size} programs</td></tr>",
        f"<tr><td>coverage</td><td>{int(last.get('coverage', 0))} features</td></tr>",
        f"<tr><td>findings</td><td>{len(findings)} ("
        + _e(", ".join(f"{k} {v}" for k, v in sorted(by_cat.items())) or "none")
        + f"); flaky {len(flaky)}</td></tr>",
        "</table>",
    ]
    if camp.problems:
        head.append(
            "<h2>Skipped files</h2><ul>" + "".join(f"<li>{_e(p)}</li>" for p in camp.problems) + "</ul>"
        )
    body = ['<h2>Progress</h2><div class="plots">']
    body += [f'<div class="plot" id="{pid}"></div>' for pid in ("plot-execs", "plot-coverage", "plot-corpus")]
    body.append("</div>")
    body.append(f"<h2>Findings ({len(findings)})</h2>")
    if not findings:
        body.append('<p class="muted">no findings</p>')
    body += [_finding_html(camp, rec, False) for rec in findings]
    if flaky:
        body.append(f"<h2>Flaky ({len(flaky)}): did not reproduce when re-executed</h2>")
        body += [_finding_html(camp, rec, True) for rec in flaky]
    series = [{k: s.get(k) for k in ("t", "execs_per_second", "coverage", "corpus")} for s in stats]
    data = json.dumps(series).replace("</", "<\\/")
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>blkfuzz report</title>'
        f"<style>{_CSS}</style></head><body>\n"
        + "\n".join(head + body)
        + f'\n<script type="application/json" id="blkfuzz-stats">{data}</script>\n'
        + f"<script>{_SCRIPT}</script>\n</body></html>\n"
    )


def write_report(campaign_dir: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Write the report atomically; returns the path written."""
    from fuzz.campaign import atomic_write

    text = build_report(campaign_dir)
    path = Path(out)
    atomic_write(path, text)
    return path
