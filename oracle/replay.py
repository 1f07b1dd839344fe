"""Rebuild disk images at a crash from the block IO log, as dm-log-writes replay and CrashMonkey do.

Everything here depends only on the base image and the log entries (any objects with the fields of
:class:`LogEntry`, e.g. ``simkernel.block.iolog.IoLogEntry``), never on the model's device state.
``log`` is always the *whole* log in order (``log[i].index == i``).

Crash points
------------
A crash point is a log position ``upto``: the crash happens *just before entry* ``upto`` *is
recorded*. Entries ``log[:upto]`` were submitted, and a request counts as completed at the crash iff
its completion was recorded before entry ``upto`` was (``complete_seq < log[upto].submit_seq``).
``upto=None`` (or ``len(log)``) is the end of the log: every recorded completion counts. To crash
right when syscall 3 returned, record a mark then and use the mark's index as ``upto``.

Durability rule (Linux REQ_PREFLUSH / REQ_FUA semantics)
--------------------------------------------------------
At crash point ``upto``, a write ``W`` that completed successfully before the crash is

* **durable** (guaranteed on the media) iff ``W`` has FUA, or some flush ``F`` -- a ``"flush"``
  entry, or a write with ``preflush`` (its flush part precedes its data) -- completed successfully
  before the crash *and* ``W`` completed before ``F`` was **submitted**
  (``W.complete_seq < F.submit_seq``). A flush covers only writes completed before it was
  submitted: a write completing while the flush is in flight is not covered;
* otherwise **volatile**: completed but unflushed, it may or may not be on the media.

A write submitted before the crash and not completed by then is **in flight**: it may have reached
the media, wholly or in part. A write that completed with an error changed nothing.

Replay applies the chosen writes in completion order (in-flight writes after every completed one,
in submission order). Torn writes are sector-granular: ``torn[i] = k`` puts only the first ``k``
sectors of write ``i`` on the media.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

import numpy as np

__all__ = ["SECTOR_SIZE", "CrashState", "LogEntry", "crash_cutoff", "durable_prefix", "replay"]

SECTOR_SIZE: Final = 512


class LogEntry(Protocol):
    """The fields of a block IO log entry the oracle reads (see ``simkernel.block.iolog``)."""

    @property
    def index(self) -> int: ...
    @property
    def kind(self) -> str: ...  # "write" | "flush" | "mark"
    @property
    def sector(self) -> int: ...
    @property
    def nsectors(self) -> int: ...
    @property
    def data(self) -> bytes: ...
    @property
    def fua(self) -> bool: ...
    @property
    def preflush(self) -> bool: ...
    @property
    def status(self) -> int: ...
    @property
    def submit_seq(self) -> int: ...
    @property
    def complete_seq(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class CrashState:
    """Which writes of the log are where at one crash point (entry indices).

    ``completed`` (every write that completed successfully before the crash) is ``durable`` plus
    ``volatile``; all three are in completion order. ``in_flight`` is in submission order.
    """

    upto: int
    durable: tuple[int, ...]
    volatile: tuple[int, ...]
    in_flight: tuple[int, ...]
    completed: tuple[int, ...]


def _check_log(log: Sequence[LogEntry], upto: int | None) -> int:
    for i, e in enumerate(log):
        if e.index != i:
            raise ValueError(f"replay: log entry at position {i} has index {e.index}; pass the whole log")
    if upto is None:
        return len(log)
    if not 0 <= upto <= len(log):
        raise ValueError(f"replay: crash point {upto} is outside the log (0..{len(log)})")
    return upto


def crash_cutoff(log: Sequence[LogEntry], upto: int | None = None) -> int | None:
    """The event-clock value of crash point ``upto``: events with ``seq <`` it happened before the
    crash; ``None`` means every recorded event did."""
    upto = _check_log(log, upto)
    return log[upto].submit_seq if upto < len(log) else None


def _done_before(e: LogEntry, cutoff: int | None) -> bool:
    return e.complete_seq is not None and (cutoff is None or e.complete_seq < cutoff)


def durable_prefix(log: Sequence[LogEntry], upto: int | None = None) -> CrashState:
    """Classify the writes of ``log`` at crash point ``upto`` (see the module docstring for the rule)."""
    upto = _check_log(log, upto)
    cutoff = log[upto].submit_seq if upto < len(log) else None
    # the latest submission of a flush that completed successfully before the crash covers the most
    covered_before = -1
    for e in log[:upto]:
        if (
            (e.kind == "flush" or (e.kind == "write" and e.preflush))
            and e.status == 0
            and _done_before(e, cutoff)
        ):
            covered_before = max(covered_before, e.submit_seq)
    completed: list[LogEntry] = []
    in_flight: list[int] = []
    for e in log[:upto]:
        if e.kind != "write":
            continue
        if not _done_before(e, cutoff):
            in_flight.append(e.index)
        elif e.status == 0:
            completed.append(e)
    completed.sort(key=_completion_key)
    return CrashState(
        upto=upto,
        durable=tuple(e.index for e in completed if _is_durable(e, covered_before)),
        volatile=tuple(e.index for e in completed if not _is_durable(e, covered_before)),
        in_flight=tuple(in_flight),
        completed=tuple(e.index for e in completed),
    )


def _is_durable(e: LogEntry, covered_before: int) -> bool:
    return e.fua or _completion_key(e) < covered_before


def _completion_key(e: LogEntry) -> int:
    assert e.complete_seq is not None
    return e.complete_seq


def replay(
    base: np.ndarray,
    log: Sequence[LogEntry],
    *,
    upto: int | None = None,
    include: Callable[[LogEntry], bool] | None = None,
    torn: Mapping[int, int] | None = None,
) -> np.ndarray:
    """A new image: ``base`` with the chosen writes of ``log`` applied, as on the media at a crash.

    Without ``include`` the chosen writes are all writes that completed successfully before crash
    point ``upto``. With ``include``, they are those it accepts among every write that could be on
    the media at the crash: completed successfully before it, or still in flight. ``torn`` maps an
    entry index to the number of leading sectors of that write that reached the media; a torn
    write is applied (in part) whether or not ``include`` chose it, but it must be one that could be
    on the media. ``base`` is not modified.
    """
    if not isinstance(base, np.ndarray) or base.dtype != np.uint8 or base.ndim != 1:
        raise ValueError("replay: base image must be a 1-D numpy array of uint8")
    upto = _check_log(log, upto)
    cutoff = log[upto].submit_seq if upto < len(log) else None
    torn = dict(torn or {})
    done: list[LogEntry] = []
    flying: list[LogEntry] = []
    for e in log[:upto]:
        if e.kind != "write":
            continue
        if _done_before(e, cutoff):
            if e.status != 0:
                continue
            if include is None or include(e) or e.index in torn:
                done.append(e)
        elif (include is not None and include(e)) or e.index in torn:
            flying.append(e)
    chosen = sorted(done, key=_completion_key) + flying
    chosen_idx = {e.index for e in chosen}
    for i, k in torn.items():
        if i not in chosen_idx:
            raise ValueError(f"replay: torn entry {i} is not a write that could be on the media at the crash")
        if not 0 <= k <= log[i].nsectors:
            raise ValueError(f"replay: torn entry {i} keeps {k} of its {log[i].nsectors} sectors")
    img = np.array(base, copy=True)
    for e in chosen:
        n = torn.get(e.index, e.nsectors)
        off = e.sector * SECTOR_SIZE
        nbytes = n * SECTOR_SIZE
        if len(e.data) != e.nsectors * SECTOR_SIZE or off < 0 or off + e.nsectors * SECTOR_SIZE > img.size:
            raise ValueError(
                f"replay: write #{e.index} at sector {e.sector} length {len(e.data)} bytes does not fit "
                f"a {img.size}-byte image"
            )
        if nbytes:
            img[off : off + nbytes] = np.frombuffer(e.data, dtype=np.uint8, count=nbytes)
    return img
