"""The block IO log: every write and flush request the device saw, as dm-log-writes records them.

The log is append-only plain data. The block-layer glue appends an entry when a request is
*submitted* (:meth:`IoLog.append_submit`) and fills in its completion later
(:meth:`IoLog.mark_complete`); the fuzzer adds *marks* (:meth:`IoLog.add_mark`, e.g. "syscall 3
returned") so that crash points can be named. The oracle reads :attr:`IoLog.entries` (frozen
:class:`IoLogEntry` records) without touching model state, and rebuilds crash images from them
with :mod:`oracle.replay`.

Time. Besides the scheduler ``step`` the caller passes, the log keeps its own event clock: every
submission, completion and mark takes the next ``seq`` number, so ``submit_seq`` / ``complete_seq``
order all events exactly even when several happen in the same scheduler step. Entry ``index`` is the
position in the log (submission order); completions happen in ``complete_seq`` order.

A reproducer saves the log with :meth:`IoLog.to_json` (payloads in base64) and loads it back with
:meth:`IoLog.from_json`, which raises :class:`~simkernel.errors.CorpusError` on a malformed file.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any, Final, Literal

from simkernel.config import SECTOR_SIZE
from simkernel.errors import CorpusError

__all__ = ["LOG_FORMAT", "LOG_VERSION", "IoLog", "IoLogEntry", "LogKind"]

LogKind = Literal["write", "flush", "mark"]
KINDS: Final = ("write", "flush", "mark")
LOG_FORMAT: Final = "blkfuzz-iolog"
LOG_VERSION: Final = 1


@dataclass(frozen=True, slots=True)
class IoLogEntry:
    """One request (or mark) in the log.

    * ``kind``: ``"write"`` (``data`` is the payload, ``nsectors`` sectors at ``sector``),
      ``"flush"`` (an empty PREFLUSH request: ``sector``/``nsectors`` 0, ``data`` empty,
      ``preflush`` True) or ``"mark"`` (a named point in time: ``tag`` is the label, it "completes"
      when it is recorded).
    * ``fua`` / ``preflush``: REQ_FUA / REQ_PREFLUSH. A write may carry both (a journal commit).
    * ``submit_step`` / ``complete_step``: scheduler steps; ``complete_step`` is ``None`` while the
      request is in flight or if it never completed.
    * ``status``: 0 or ``-errno`` (meaningful once completed).
    * ``submit_seq`` / ``complete_seq``: the log's event clock at submission / completion.
    """

    index: int
    kind: LogKind
    sector: int
    nsectors: int
    data: bytes
    fua: bool
    preflush: bool
    submit_step: int
    complete_step: int | None
    status: int
    tag: str
    submit_seq: int
    complete_seq: int | None = None

    @property
    def completed(self) -> bool:
        return self.complete_seq is not None

    @property
    def ok(self) -> bool:
        """Completed successfully."""
        return self.complete_seq is not None and self.status == 0

    def describe(self) -> str:
        """One human-readable line, for reports."""
        if self.kind == "mark":
            return f"#{self.index} mark {self.tag!r} @step {self.submit_step}"
        flags = "".join(f for f, on in (("P", self.preflush), ("F", self.fua)) if on)
        what = "flush" if self.kind == "flush" else f"write {self.sector}+{self.nsectors}"
        if self.complete_step is None:
            done = "in flight"
        else:
            done = f"done @step {self.complete_step}" + (f" status {self.status}" if self.status else "")
        if flags:
            what += " " + flags
        tag = f" [{self.tag}]" if self.tag else ""
        return f"#{self.index} {what}{tag} submitted @step {self.submit_step}, {done}"


class IoLog:
    """The append-only log of one execution."""

    __slots__ = ("_clock", "_entries")

    def __init__(self) -> None:
        self._entries: list[IoLogEntry] = []
        self._clock = 0

    def _tick(self) -> int:
        seq = self._clock
        self._clock += 1
        return seq

    @property
    def clock(self) -> int:
        """The next event-clock value (= number of events recorded so far)."""
        return self._clock

    @property
    def entries(self) -> tuple[IoLogEntry, ...]:
        """All entries, in log (submission) order; ``entries[i].index == i``."""
        return tuple(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, index: int) -> IoLogEntry:
        return self._entries[index]

    def __iter__(self) -> Iterator[IoLogEntry]:
        return iter(tuple(self._entries))

    def __repr__(self) -> str:
        return f"IoLog(entries={len(self._entries)}, clock={self._clock})"

    def append_submit(
        self,
        kind: Literal["write", "flush"],
        *,
        step: int,
        sector: int = 0,
        data: bytes = b"",
        fua: bool = False,
        preflush: bool = False,
        tag: str = "",
    ) -> int:
        """Record the submission of a write (``data`` at ``sector``) or a flush; return its index."""
        if kind == "write":
            if type(data) is not bytes:
                data = bytes(data)
            if sector < 0 or not data or len(data) % SECTOR_SIZE:
                raise ValueError(
                    f"io log: write at sector {sector} length {len(data)} bytes is not a sector-aligned write"
                )
            nsectors = len(data) // SECTOR_SIZE
        elif kind == "flush":
            if data or sector or fua:
                raise ValueError("io log: a flush carries no data, sector or FUA")
            nsectors = 0
            preflush = True
        else:
            raise ValueError(f"io log: cannot submit a {kind!r} entry (expected 'write' or 'flush')")
        index = len(self._entries)
        self._entries.append(
            IoLogEntry(
                index=index,
                kind=kind,
                sector=sector,
                nsectors=nsectors,
                data=data,
                fua=bool(fua),
                preflush=bool(preflush),
                submit_step=step,
                complete_step=None,
                status=0,
                tag=tag,
                submit_seq=self._tick(),
            )
        )
        return index

    def mark_complete(self, index: int, step: int, status: int = 0) -> None:
        """Record that request ``index`` completed at ``step`` with ``status`` (0 or ``-errno``)."""
        if not 0 <= index < len(self._entries):
            raise ValueError(f"io log: no entry {index} (the log has {len(self._entries)})")
        e = self._entries[index]
        if e.kind == "mark":
            raise ValueError(f"io log: entry {index} is a mark, it cannot complete")
        if e.complete_seq is not None:
            raise ValueError(f"io log: entry {index} already completed at step {e.complete_step}")
        if status > 0:
            raise ValueError(f"io log: status {status} of entry {index} must be 0 or -errno")
        if step < e.submit_step:
            raise ValueError(f"io log: entry {index} completes at step {step} before its submission step")
        self._entries[index] = replace(e, complete_step=step, status=status, complete_seq=self._tick())

    def add_mark(self, label: str, step: int) -> int:
        """Record a named point in time (e.g. ``"syscall 3 returned"``); return its index."""
        index = len(self._entries)
        seq = self._tick()
        self._entries.append(
            IoLogEntry(
                index=index,
                kind="mark",
                sector=0,
                nsectors=0,
                data=b"",
                fua=False,
                preflush=False,
                submit_step=step,
                complete_step=step,
                status=0,
                tag=label,
                submit_seq=seq,
                complete_seq=seq,
            )
        )
        return index

    def in_flight(self) -> tuple[int, ...]:
        """Indices of requests submitted but not completed."""
        return tuple(e.index for e in self._entries if e.complete_seq is None)

    def copy(self) -> IoLog:
        """An independent copy (entries are immutable, so O(len))."""
        new = IoLog()
        new._entries = list(self._entries)
        new._clock = self._clock
        return new

    # --- JSON -------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible dict; payloads in base64."""
        out = []
        for e in self._entries:
            d = asdict(e)
            d["data"] = base64.b64encode(e.data).decode("ascii")
            out.append(d)
        return {"format": LOG_FORMAT, "version": LOG_VERSION, "clock": self._clock, "entries": out}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> IoLog:
        """Load a log saved by :meth:`to_json`; raises :class:`CorpusError` naming the bad field."""
        try:
            obj = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CorpusError(f"io log is not valid JSON: {exc}", where="$") from None
        return cls.from_dict(obj)

    @classmethod
    def from_dict(cls, obj: Any) -> IoLog:
        if not isinstance(obj, dict):
            raise CorpusError("io log must be a JSON object", where="$")
        if obj.get("format") != LOG_FORMAT:
            raise CorpusError(f"not a {LOG_FORMAT} file", where="$.format")
        if obj.get("version") != LOG_VERSION:
            raise CorpusError(f"unsupported io log version {obj.get('version')!r}", where="$.version")
        raw = obj.get("entries")
        if not isinstance(raw, list):
            raise CorpusError("must be a list", where="$.entries")
        entries = [_entry_from_dict(d, i) for i, d in enumerate(raw)]
        seqs = [e.submit_seq for e in entries] + [
            e.complete_seq for e in entries if e.complete_seq is not None and e.kind != "mark"
        ]
        clock = obj.get("clock")
        if type(clock) is not int or clock < 0:
            raise CorpusError("must be a non-negative integer", where="$.clock")
        if len(set(seqs)) != len(seqs) or any(s >= clock for s in seqs):
            raise CorpusError(
                "event sequence numbers are not distinct and below the clock", where="$.entries"
            )
        log = cls()
        log._entries = entries
        log._clock = clock
        return log


_INT_FIELDS = ("index", "sector", "nsectors", "submit_step", "status", "submit_seq")
_OPT_INT_FIELDS = ("complete_step", "complete_seq")


def _entry_from_dict(d: Any, i: int) -> IoLogEntry:
    where = f"$.entries[{i}]"
    if not isinstance(d, dict):
        raise CorpusError("must be an object", where=where)
    for name in _INT_FIELDS:
        if type(d.get(name)) is not int:
            raise CorpusError("must be an integer", where=f"{where}.{name}")
    for name in _OPT_INT_FIELDS:
        v = d.get(name)
        if v is not None and type(v) is not int:
            raise CorpusError("must be an integer or null", where=f"{where}.{name}")
    for name in ("fua", "preflush"):
        if type(d.get(name)) is not bool:
            raise CorpusError("must be a boolean", where=f"{where}.{name}")
    if not isinstance(d.get("tag"), str):
        raise CorpusError("must be a string", where=f"{where}.tag")
    kind = d.get("kind")
    if kind not in KINDS:
        raise CorpusError(f"unknown kind {kind!r}", where=f"{where}.kind")
    b64 = d.get("data")
    if not isinstance(b64, str):
        raise CorpusError("must be a base64 string", where=f"{where}.data")
    try:
        data = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise CorpusError("is not valid base64", where=f"{where}.data") from None
    e = IoLogEntry(
        index=d["index"],
        kind=kind,
        sector=d["sector"],
        nsectors=d["nsectors"],
        data=data,
        fua=d["fua"],
        preflush=d["preflush"],
        submit_step=d["submit_step"],
        complete_step=d["complete_step"],
        status=d["status"],
        tag=d["tag"],
        submit_seq=d["submit_seq"],
        complete_seq=d["complete_seq"],
    )
    if e.index != i:
        raise CorpusError(f"index {e.index} is not the entry's position {i}", where=f"{where}.index")
    if (e.complete_step is None) != (e.complete_seq is None):
        raise CorpusError("complete_step and complete_seq must both be set or both null", where=where)
    if e.status > 0:
        raise CorpusError("status must be 0 or -errno", where=f"{where}.status")
    if e.kind == "write":
        if e.sector < 0 or e.nsectors <= 0 or len(data) != e.nsectors * SECTOR_SIZE:
            raise CorpusError("write payload does not match nsectors", where=where)
    elif data or e.nsectors or e.sector:
        raise CorpusError(f"a {e.kind} entry carries no data or sectors", where=where)
    if e.complete_seq is not None and e.complete_seq < e.submit_seq:
        raise CorpusError("completes before it was submitted", where=f"{where}.complete_seq")
    if e.kind == "mark" and e.complete_seq != e.submit_seq:
        raise CorpusError("a mark completes when it is recorded", where=where)
    return e
