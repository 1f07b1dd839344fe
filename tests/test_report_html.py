"""``blkfuzz report``: the HTML file is self-contained, and a real browser (headless Chromium)
renders its findings and draws its plots."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from fuzz.campaign import Campaign, signature_id
from fuzz.program import load_program_file
from fuzz.report_html import build_report, write_report
from fuzz.verdict import judge

PROGRAMS = Path(__file__).parent / "programs"


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _campaign_with_a_finding(root: Path) -> tuple[str, int]:
    """A campaign directory holding B.3's corruption (as the hub records it) and a stats series."""
    program = load_program_file(PROGRAMS / "b3-iomap-nocookie.json")
    verdict = judge(program)
    finding = next(f for f in verdict.findings if f.category == "data")
    with Campaign.open(root, ("iomap-nocookie",)) as camp:
        camp.record_finding(finding.to_json(), program, execution=7, elapsed=1.5, reproduced=True, report="r")
        camp.record_minimized(finding.signature, program, "r")
        for i in range(6):
            camp.append_stats(
                {
                    "t": 5.0 * (i + 1),
                    "executions": 50 * (i + 1),
                    "execs_per_second": 10.0 + i,
                    "coverage": 100 + 20 * i,
                    "corpus": 10 + 3 * i,
                }
            )
    return finding.signature, 6


def test_report_is_self_contained_and_names_each_finding(tmp_path: Path) -> None:
    signature, _ = _campaign_with_a_finding(tmp_path / "c")
    text = build_report(tmp_path / "c")
    assert (
        "<script src" not in text
        and "<link" not in text
        and "http://" not in text.replace("http://www.w3.org/2000/svg", "")
    )
    assert signature in text
    sid = signature_id(signature)
    assert f"findings/{sid}/minimized.json" in text  # how to replay it
    assert 'class="diff"' in text and 'class="timeline"' in text


def test_report_of_a_running_campaign_does_not_take_its_lock(tmp_path: Path) -> None:
    _campaign_with_a_finding(tmp_path / "c")
    with Campaign.open(tmp_path / "c", ("iomap-nocookie",)):
        assert "blkfuzz campaign" in build_report(tmp_path / "c")


@pytest.mark.skipif(_chromium() is None, reason="needs chromium (.ci/run installs it)")
def test_chromium_renders_findings_and_plots(tmp_path: Path) -> None:
    signature, points = _campaign_with_a_finding(tmp_path / "c")
    out = write_report(tmp_path / "c", tmp_path / "report.html")
    browser = _chromium()
    assert browser is not None
    proc = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", out.resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    dom = proc.stdout
    assert 'data-rendered="yes"' in dom, proc.stderr[-2000:]
    # every plot was drawn by the page's script, with one vertex per stats line
    for series in ("execs_per_second", "coverage", "corpus"):
        m = re.search(rf'<svg[^>]*data-series="{series}"[^>]*data-points="(\d+)"', dom)
        assert m and int(m.group(1)) == points, series
    polylines = re.findall(r'<polyline[^>]*points="([^"]+)"', dom)
    assert len(polylines) == 3 and all(len(p.split()) == points for p in polylines)
    # the finding: title, category, byte diff and timeline rows
    assert f'data-signature="{signature}"' in dom
    assert re.search(r'<td class="found">[0-9a-f]+', dom)
    assert len(re.findall(r"<tr><td>\d+</td>", dom)) > 5
