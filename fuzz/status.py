"""What a running campaign shows: a live panel on a terminal, plain lines otherwise, JSON for tools.

:class:`StatusDisplay` is the hub's status callback. On a terminal (stderr is a TTY) it keeps a rich
``Live`` panel up to date; when stderr is a file or a pipe it prints one plain line every
``plain_every`` seconds (CI logs stay readable); with ``stats_json`` it also rewrites that file
atomically with the latest figures (``--stats-json``), which a wrapper script can poll.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import IO, Any

from fuzz.hub import Status

__all__ = ["StatusDisplay", "format_age"]


def format_age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    s = int(seconds)
    if s < 60:
        return f"{s}s ago"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s ago"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m ago"


def _duration(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{(s % 3600) // 60:02d}:{s % 60:02d}"


class StatusDisplay:
    def __init__(
        self,
        *,
        stream: IO[str] | None = None,
        live: bool | None = None,
        plain_every: float = 10.0,
        stats_json: str | Path | None = None,
        title: str = "blkfuzz",
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.live_enabled = self.stream.isatty() if live is None else live
        self.plain_every = plain_every
        self.stats_json = Path(stats_json) if stats_json else None
        self.title = title
        self._live: Any = None
        self._last_plain = 0.0
        self.last: Status | None = None

    # the hub calls this about once a second
    def __call__(self, status: Status) -> None:
        self.last = status
        if self.live_enabled:
            self._update_live(status)
        elif time.monotonic() - self._last_plain >= self.plain_every:
            self._last_plain = time.monotonic()
            print(status.line(), file=self.stream, flush=True)
        if self.stats_json is not None:
            self._write_json(status)

    def _write_json(self, status: Status) -> None:
        from fuzz.campaign import atomic_write

        assert self.stats_json is not None
        atomic_write(self.stats_json, json.dumps(status.to_json(), indent=2, sort_keys=True) + "\n")

    def _panel(self, st: Status) -> Any:
        from rich.table import Table

        table = Table(title=self.title, show_header=False, expand=False)
        table.add_column(style="bold")
        table.add_column()
        found = ", ".join(f"{k} {v}" for k, v in sorted(st.findings.items())) or "none"
        stab = "-" if st.stability is None else f"{100 * st.stability:.1f}%"
        rows = [
            ("run time", _duration(st.seconds)),
            (
                "executions",
                f"{st.executions:,}  ({st.recent_execs_per_second:,.0f}/s now, "
                f"{st.execs_per_second:,.0f}/s avg)",
            ),
            ("corpus", f"{st.corpus:,} programs"),
            ("coverage", f"{st.coverage:,} features  (new {format_age(st.since_new_coverage)})"),
            ("findings", f"{found}  (new {format_age(st.since_new_finding)})"),
            ("flaky", f"{st.flaky}  (stability {stab})"),
            ("workers", f"{st.workers}  (replaced {st.replaced_workers}, minimizing {st.minimizing})"),
        ]
        if st.simulator_errors:
            rows.append(("simulator errors", str(st.simulator_errors)))
        for k, v in rows:
            table.add_row(k, v)
        return table

    def _update_live(self, status: Status) -> None:
        from rich.console import Console
        from rich.live import Live

        if self._live is None:
            console = Console(file=self.stream)
            self._live = Live(self._panel(status), console=console, refresh_per_second=2, transient=False)
            self._live.start()
        else:
            self._live.update(self._panel(status))

    def close(self, final: Status | None = None) -> None:
        """Stop the live panel (leaving its last state on screen) and write the final figures."""
        status = final or self.last
        if self._live is not None:
            if status is not None:
                self._live.update(self._panel(status))
            self._live.stop()
            self._live = None
        elif status is not None:
            print(status.line(), file=self.stream, flush=True)
        if status is not None and self.stats_json is not None:
            self._write_json(status)
