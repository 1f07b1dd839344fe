"""Is what the run left behind (and what its reads returned) the outcome of SOME linearization?

:func:`check_final` judges the final content of every file (size and bytes, as read from the final
image); :func:`check_reads` judges every pread's returned bytes. Both implement exactly the
specification of :mod:`oracle.reference` (:func:`~oracle.reference.brute_force_finals`,
:func:`~oracle.reference.brute_force_read_ok`) -- no false alarms, no missed corruption -- and
return one :class:`Mismatch` per file (or per read) that no linearization explains, naming the
closest linearization's lost write.

Algorithm
---------
Files are independent, so each is checked alone. Its *events* are the ops with a visible effect
(pwrite, truncate, creat, fallocate -- each one atomic point inside ``[invoke, ret]``) and every
mwrite page store (a fixed point at its step); the real-time order makes them an interval order.

The search runs **backwards from the end**, asking at each step "which event can be the last one
of those still unplaced?". Its state is ``(R, U, [lo, hi])``: ``R`` the unplaced events (a
down-set of the order), ``U`` the byte ranges whose final value no placed (= later) event has
explained yet, ``[lo, hi]`` the sizes the file may have at this point. Placing event ``E`` as the
last of ``R`` is possible only if ``E`` is maximal in ``R`` and, on every byte of ``U`` it writes,
its value equals the target byte: that is per-byte provenance, and since data patterns are random
non-zero bytes almost every wrong choice dies at once. ``E`` then explains those bytes (they leave
``U``) and ``[lo, hi]`` becomes its pre-image under ``E``'s size change. An unfinished op may
instead be dropped (it never took effect). When ``R`` holds only unfinished ops, the bytes still
in ``U`` must equal the initial content and the initial size must lie in ``[lo, hi]``.

Bytes past the size are zero at every moment (the model keeps that invariant), so the file is an
infinite zero-extended array, truncate zeroes ``[size, inf)`` and growth changes no byte. The same
invariant normalizes states: the size here is at most ``hi``, so bytes of ``U`` at or above ``hi``
are zero now and, unwritten later, zero at the end -- they must be zero in the target and leave
``U``.

Choices are folded so that each event yields one move, except stores:

* a partial effect (a failed fallocate's zeroed prefix or grown size, an unfinished pwrite's
  prefix) takes its largest prefix consistent with ``U`` -- it dominates every shorter one
  (fewer bytes left to explain, a size interval at least as wide); a partial size growth folds into
  the interval pre-image;
* a store lands only below the size of that moment, so it branches on where that size lies
  relative to the still-unexplained bytes of its page; sizes strictly inside them are enumerated,
  restricted to the values some event can actually produce (a size is always the initial size, a
  truncate's size, the end of a write, fallocate or grown prefix) and, by the normalization above,
  to sizes past the last unexplained non-zero target byte;
* an event whose bytes are all overwritten later and whose size change is absorbed is placed at
  once, without trying the other candidates (a partial-order reduction, proved safe in ``_free``
  below);
* states are memoized, so commuting events cost ``2**k`` states, not ``k!`` orders.

The number of states is at most the number of down-sets of the interval order, ``O(n * 2**w)`` for
``n`` events of which at most ``w`` overlap in time (Helly: pairwise overlapping intervals share a
point), times a few size/``U`` variants; each move costs ``O(|U| log m)`` with mismatch runs
precomputed in ``O(bytes written)`` (numpy). A history that matches is found by a depth-first
search that rarely backtracks: a 50-op history takes 1-3 ms (see ``bench/bench_oracle.py``). The
worst case is exponential in ``w`` (linearizability checking is NP-complete), not in ``n``.

When no linearization matches, a best-first search (Dijkstra) over the same states with cost =
number of differing bytes finds the closest linearization -- among those where partial effects
are all, nothing, or the largest matching prefix -- preferring ones with the found size. It is
replayed forward on :mod:`oracle.reference` with provenance tags to produce the explanation.

Reads are checked one at a time against any linearization (not jointly with the final content or
with each other): a pread is an observation event in the same search, placed where the search
starts explaining the bytes it returned. By default a read must return exactly what the file held
(clipped at EOF); ``short_reads=True`` also accepts a read that stopped early (an I/O error after
some bytes were copied, e.g. under ``fail_read``).
"""

from __future__ import annotations

import heapq
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Final

import numpy as np

from oracle.history import History, HistoryOp
from oracle.reference import TAG_FILL, TAG_INITIAL, Prim, apply_effect

__all__ = ["ByteDiff", "Mismatch", "Source", "check_final", "check_reads"]

INF: Final = 1 << 62
_BIG: Final = 1 << 62

# event kinds
_W, _Z, _ZG, _G, _T, _S, _PW, _PZ, _PG, _OBS, _OBSZ = range(11)
#: a read's two observations: the size it sampled (_OBSZ), then the bytes it copied (_OBS)
_READ_KINDS = frozenset((_OBS, _OBSZ))
#: the hardware page of a mapped source buffer: a copy from it faults a page at a time
SOURCE_PAGE = 4096
#: kinds that may change the size (need the store condition of the partial-order reduction)
_SIZED = frozenset((_W, _ZG, _G, _PW, _PG))
#: at most this many states in the search for the closest linearization (explanations only)
_EXPLAIN_BUDGET: Final = 200_000
#: at most this many states expanded by one exact search: past it the question is undecided and
#: counts as explained (no finding). Some histories -- a long read cut into many folio pieces
#: racing several writes, with short reads allowed -- make the search exponential; a fuzzing run
#: must not hang on one of them.
_FEASIBLE_BUDGET: Final = 50_000


class _Undecided(Exception):
    """The exact search ran out of its budget."""


#: at most this many differing ranges are listed in a Mismatch
_MAX_DIFFS: Final = 32
#: differing runs closer than this with the same expected writer are reported as one range
_COALESCE_GAP: Final = 8


# --------------------------------------------------------------------------------------------------
# explanations


@dataclass(frozen=True)
class Source:
    """Where some bytes came from: ``kind`` is ``"op"`` (``op`` wrote or zeroed them), ``"initial"``
    (the file's initial content), ``"hole"`` (zeros exposed by growth), ``"zeros"`` (found bytes
    that are all zero) or ``"unknown"``; ``matched`` < ``total`` when an op explains only part."""

    kind: str
    op: HistoryOp | None = None
    matched: int = 0
    total: int = 0

    def text(self) -> str:
        if self.kind == "op" and self.op is not None:
            verb = "written" if self.op.op in ("pwrite", "mwrite") else "zeroed"
            part = f" ({self.matched} of {self.total} bytes)" if self.matched < self.total else ""
            return f"{verb} by op {self.op.index} ({self.op.describe()}){part}"
        return {
            "initial": "from the initial content",
            "hole": "from a hole (zeros)",
            "zeros": "zeros",
        }.get(self.kind, "of unknown origin")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.op is not None:
            out["op"] = {"index": self.op.index, "tid": self.op.tid, "op": self.op.op}
            out["matched"] = self.matched
            out["total"] = self.total
        return out


def _what(src: Source, found: bool) -> str:
    """A number-free description of a source, for titles."""
    if src.kind == "op" and src.op is not None:
        if src.op.op in ("pwrite", "mwrite"):
            return f"{'stale ' if found else ''}{src.op.op} data"
        return f"zeros from {src.op.op}"
    return {"initial": "initial data", "hole": "hole zeros", "zeros": "zeros"}.get(src.kind, "unknown bytes")


def _hex(data: bytes, limit: int = 16) -> str:
    return data[:limit].hex() + ("..." if len(data) > limit else "")


@dataclass(frozen=True)
class ByteDiff:
    """Bytes ``[start, end)`` (file offsets) hold ``found`` where the closest linearization has
    ``expected``; ``expected_by`` wrote the expected bytes there, ``found_by`` is the best guess at
    who wrote the found ones."""

    start: int
    end: int
    expected: bytes
    found: bytes
    expected_by: Source
    found_by: Source

    def to_json(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "expected": _hex(self.expected, 64),
            "found": _hex(self.found, 64),
            "expected_by": self.expected_by.to_json(),
            "found_by": self.found_by.to_json(),
        }


@dataclass(frozen=True)
class Mismatch:
    """A file's final content (``kind="final"``) or one pread's result (``kind="read"``, ``read``
    is the pread) that no linearization explains, with the closest linearization's view of it.

    ``diffs``: the differing byte ranges (coalesced, at most 32 listed; ``differing_bytes`` counts
    all). ``size_expected``/``size_found``: file sizes for ``"final"``, returned byte counts for
    ``"read"``; ``size_by`` set the expected size. ``linearization``: the closest linearization's
    events in order (``"op 3"``, ``"op 5 store 0"``).
    """

    file: str
    kind: str
    diffs: tuple[ByteDiff, ...]
    differing_bytes: int
    size_expected: int
    size_found: int
    size_by: Source
    linearization: tuple[str, ...]
    read: HistoryOp | None = None
    note: str = ""

    def title(self) -> str:
        """A stable one-line title for the finding (no offsets or op numbers, so that the same bug
        gets the same signature): what was found instead of what, e.g. ``final content: zeros
        instead of pwrite data``."""
        subject = "final content" if self.kind == "final" else "pread"
        if self.note:
            return f"{subject}: file {self.note}"
        if self.diffs:
            d = self.diffs[0]
            return f"{subject}: {_what(d.found_by, True)} instead of {_what(d.expected_by, False)}"
        if self.kind == "final":
            cause = f" set by {self.size_by.op.op}" if self.size_by.op is not None else ""
            wrong = "too small" if self.size_found < self.size_expected else "too large"
            return f"final size: {wrong}, expected the size{cause}"
        return "pread: wrong length"

    def summary(self) -> str:
        """One line, e.g. ``file a: bytes [40959, 40960) are 00, expected 58 written by op 0
        (T0 pwrite off=40959 len=1)``."""
        parts: list[str] = []
        if self.note:
            parts.append(self.note)
        if self.diffs:
            d = self.diffs[0]
            found_note = f" ({d.found_by.text()})" if d.found_by.kind in ("op", "initial") else ""
            verb = "are" if self.kind == "final" else "read as"
            parts.append(
                f"bytes [{d.start}, {d.end}) {verb} {_hex(d.found)}{found_note}, "
                f"expected {_hex(d.expected)} {d.expected_by.text()}"
            )
            more = len(self.diffs) - 1
            if more > 0 or self.differing_bytes > d.end - d.start:
                parts.append(f"{self.differing_bytes} bytes differ in all")
        if self.size_expected != self.size_found:
            if self.kind == "final":
                op = self.size_by.op
                setter = f"set by op {op.index} ({op.describe()})" if op is not None else "the initial size"
                parts.append(f"size is {self.size_found}, expected {self.size_expected} ({setter})")
            else:
                parts.append(f"returned {self.size_found} bytes, expected {self.size_expected}")
        head = f"file {self.file}: "
        if self.kind == "read" and self.read is not None:
            head += f"op {self.read.index} ({self.read.describe()}): "
        return head + "; ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "kind": self.kind,
            "read": None if self.read is None else self.read.index,
            "summary": self.summary(),
            "diffs": [d.to_json() for d in self.diffs],
            "differing_bytes": self.differing_bytes,
            "size_expected": self.size_expected,
            "size_found": self.size_found,
            "size_by": self.size_by.to_json(),
            "linearization": list(self.linearization),
            "note": self.note,
        }


# --------------------------------------------------------------------------------------------------
# mismatch runs: where an event's bytes differ from the target, as sorted disjoint intervals


class _Runs:
    """Sorted disjoint ``[start, end)`` runs; ``first``/``count`` answer in O(log runs)."""

    __slots__ = ("cum", "ends", "starts")

    def __init__(self, starts: list[int], ends: list[int]) -> None:
        self.starts = starts
        self.ends = ends
        cum = [0]
        for s, e in zip(starts, ends):
            cum.append(cum[-1] + e - s)
        self.cum = cum

    def first(self, x: int, y: int) -> int:
        """The smallest position in a run inside ``[x, y)``, or -1."""
        j = bisect_right(self.ends, x)
        if j < len(self.starts) and self.starts[j] < y:
            return max(self.starts[j], x)
        return -1

    def _below(self, p: int) -> int:
        j = bisect_right(self.starts, p)
        if j == 0:
            return 0
        over = self.ends[j - 1] - p
        return self.cum[j] - over if over > 0 else self.cum[j]

    def count(self, x: int, y: int) -> int:
        """How many positions of ``[x, y)`` lie in runs."""
        return self._below(y) - self._below(x) if y > x else 0

    def last(self, x: int, y: int) -> int:
        """The largest position in a run inside ``[x, y)``, or -1."""
        j = bisect_left(self.starts, y) - 1
        if j >= 0 and self.ends[j] > x:
            return min(self.ends[j], y) - 1
        return -1


_NO_RUNS = _Runs([], [])


def _runs_of_mask(mask: np.ndarray, base: int) -> _Runs:
    """Runs of True in a boolean array, offset by ``base``."""
    if not mask.any():
        return _NO_RUNS
    padded = np.zeros(len(mask) + 2, dtype=np.bool_)
    padded[1:-1] = mask
    edges = (np.flatnonzero(padded[1:] != padded[:-1]) + base).tolist()  # start, end, start, ...
    return _Runs(edges[0::2], edges[1::2])


def _runs_of_pairs(a: bytes, b: bytes, base: int) -> _Runs:
    """Runs of positions where ``a`` and ``b`` (equal length) differ, offset by ``base``."""
    n = len(a)
    if n <= 48:  # numpy's fixed cost dominates for the short writes fuzzers favour
        starts: list[int] = []
        ends: list[int] = []
        inside = False
        for i in range(n):
            if a[i] != b[i]:
                if not inside:
                    starts.append(base + i)
                    inside = True
            elif inside:
                ends.append(base + i)
                inside = False
        if inside:
            ends.append(base + n)
        return _Runs(starts, ends) if starts else _NO_RUNS
    return _runs_of_mask(np.frombuffer(a, dtype=np.uint8) != np.frombuffer(b, dtype=np.uint8), base)


class _Target:
    """The byte values the search must explain: ``data`` at ``[base, base+len(data))``, zero from
    there up to ``end`` (``INF`` for a final state; the read's end for a read), don't-care
    elsewhere (the search never asks about positions outside ``U``)."""

    def __init__(self, base: int, data: bytes, end: int) -> None:
        self.base = base
        self.data = data
        self.end = end
        self._zero_runs: _Runs | None = None

    def slice(self, lo: int, hi: int) -> bytes:
        """Target bytes of ``[lo, hi)`` (``base <= lo``), zero-extended."""
        stop = self.base + len(self.data)
        inside = self.data[lo - self.base : max(lo, min(hi, stop)) - self.base]
        return inside + bytes(hi - lo - len(inside))

    def diff(self, a: int, data: bytes) -> _Runs:
        """Where ``data`` written at ``a`` differs from the target."""
        lo = max(a, self.base)
        hi = min(a + len(data), self.end)
        if lo >= hi:
            return _NO_RUNS
        return _runs_of_pairs(data[lo - a : hi - a], self.slice(lo, hi), lo)

    def zero_runs(self) -> _Runs:
        """Where the target is not zero (what a zeroing event cannot explain)."""
        if self._zero_runs is None:
            self._zero_runs = _runs_of_mask(np.frombuffer(self.data, dtype=np.uint8) != 0, self.base)
        return self._zero_runs


# --------------------------------------------------------------------------------------------------
# events


class _Ev:
    """One event of a file: see the kinds above. ``a``/``b`` bound the bytes it may write
    (``b = INF`` for a truncate), ``grow`` is the largest size it may grow the file to (-1: none)."""

    __slots__ = ("a", "b", "data", "grow", "hi", "kind", "lo", "op", "optional", "piece", "pos", "t")

    def __init__(self, kind: int, op: HistoryOp, pos: int = -1, *, a: int = 0, b: int = 0) -> None:
        self.kind = kind
        self.op = op
        self.pos = pos
        self.a = a
        self.b = b
        self.data: bytes | None = None
        self.grow = -1
        self.t = 0
        #: one folio of a write split by ``_split_writes``
        self.piece = False
        self.optional = not op.completed
        if pos >= 0:
            s = op.stores[pos]
            self.lo = self.hi = (s.step, op.index, pos)
        else:
            self.lo = (op.invoke, -1, -1)
            self.hi = (_BIG if op.ret is None else op.ret, _BIG, _BIG)

    def name(self) -> str:
        return f"op {self.op.index}" + (f" store {self.pos}" if self.pos >= 0 else "")


def _events_of(op: HistoryOp, block_size: int | None = None) -> list[_Ev]:
    """The events of one op (the effect table of :mod:`oracle.reference`).

    ``block_size`` (None: the reference's effects exactly): a zero range that failed or did not
    return zeroes its whole blocks first and its partial edge blocks last (ext4_zero_range():
    ext4_alloc_file_blocks() converts the whole blocks chunk by chunk, ext4_zero_partial_blocks()
    runs only once that succeeded), so its partial effect is a prefix of its whole blocks, or a
    prefix of the full range -- two partial-zero events."""
    name = op.op
    if name == "mwrite":
        evs = []
        for k, s in enumerate(op.stores):
            e = _Ev(_S, op, k, a=s.off, b=s.off + len(s.data))
            e.data = s.data
            e.optional = False  # a recorded store landed
            evs.append(e)
        return evs
    if name == "pread":
        if op.out is None:
            return []
        # filemap_read() samples i_size once the folios are uptodate, then copies them without
        # the folio lock: the bytes it returns may be newer than the size that bounded them (a
        # write's data already in the folio before its write_end raised i_size; a truncate's
        # zeroing of the new EOF folio after the read sampled the old size). So the size is
        # observed at one point and the bytes at the same or a later one, in program order.
        off = op.arg("off")
        return [_Ev(_OBSZ, op, a=off, b=off), _Ev(_OBS, op, a=off, b=off + len(op.out))]
    if name not in ("creat", "pwrite", "truncate", "fallocate"):
        return []
    failed = op.completed and not op.ok
    if name in ("creat", "truncate"):
        if failed:
            return []
        e = _Ev(_T, op, a=0, b=INF)
        e.t = 0 if name == "creat" else op.arg("size")
        e.a = e.t
        return [e]
    off, length = op.arg("off"), op.arg("len")
    if name == "pwrite":
        if failed:
            return []
        if op.completed:
            n = op.result or 0
            if n == 0:
                return []
            e = _Ev(_W, op, a=off, b=off + n)
            e.data = (op.data or b"")[:n]
            e.grow = off + n
            return [e]
        if length == 0:
            return []
        e = _Ev(_PW, op, a=off, b=off + length)
        e.data = op.data  # None: unknown bytes, any value matches
        e.grow = off + length
        return [e]
    mode = op.mode
    end = off + length
    if op.completed and op.ok:
        if mode == "alloc":
            e = _Ev(_G, op)
            e.grow = end
        elif mode == "zero_range":
            e = _Ev(_ZG, op, a=off, b=end)
            e.grow = end
        elif mode in ("punch_hole", "zero_range_keep_size"):
            e = _Ev(_Z, op, a=off, b=end)
        else:
            return []
        return [e]
    if mode == "alloc":
        e = _Ev(_PG, op)
        e.grow = end
    elif mode in ("punch_hole", "zero_range_keep_size", "zero_range"):
        e = _Ev(_PZ, op, a=off, b=end)
        e.grow = end if mode == "zero_range" else -1
        if block_size and mode != "punch_hole":
            a, b = -(-off // block_size) * block_size, end // block_size * block_size
            if a < b and (a, b) != (off, end):
                return [_Ev(_PZ, op, a=a, b=b), e]
    else:
        return []
    return [e]


def _split_writes(
    evs: list[_Ev], ops: Sequence[HistoryOp], granule: int, zero_granule: int | None = None
) -> list[_Ev]:
    """Completed pwrites that overlap in time with a read or an mmap store of the file, cut into
    one event per ``granule`` (folio) they touch.

    A buffered write is atomic only against what serializes on ``i_rwsem`` (other writes,
    truncate, fallocate): it copies folio by folio, and a read (``filemap_read`` takes no
    ``i_rwsem``) or a store through a mapping (``page_mkwrite`` neither) may come between two
    folios; and a read copies folio by folio too, so it may see a later folio of the write and
    not an earlier one: the pieces keep the write's slot in program order but are unordered among
    themselves. (Two writes that both overlap such an op may then interleave by folio in the
    search too: a laxness, never a false alarm.)

    A hole punch or zero range is cut the same way, per ``zero_granule`` (a folio): it holds
    i_rwsem and invalidate_lock, but a read copies an uptodate cached folio without either, and
    zeroing goes folio by folio (truncate_pagecache_range(), then the partial edge blocks), so a
    concurrent read may see one folio before it and the next after it.

    Only the units an overlapping read or store touches are cut apart; the rest of the event stays
    whole (nothing observes it between two of its units), which keeps the search small."""
    windows: list[tuple[int, int, int, int, int]] = []  # (op index, first step, last step, a, b)
    for op in ops:
        if op.op == "pread" and op.out is not None and op.out:
            off = op.arg("off")
            windows.append(
                (op.index, op.invoke, op.ret if op.ret is not None else _BIG, off, off + len(op.out))
            )
        for st in op.stores:
            windows.append((op.index, st.step, st.step, st.off, st.off + len(st.data)))
    if not windows:
        return evs

    def partial_growth(op: HistoryOp, grow: int) -> _Ev:
        # a growing fallocate raises i_size chunk by chunk (ext4_alloc_file_blocks(): epos after
        # each allocation), so a read or store during it may see a size in between
        part = _Ev(_PG, op)
        part.grow = grow
        part.piece = True
        return part

    out: list[_Ev] = []
    for e in evs:
        op = e.op
        end = op.ret if op.ret is not None else _BIG
        growing = e.kind == _ZG or (e.kind == _G and op.op == "fallocate" and not e.piece)
        concurrent = growing and any(
            idx != op.index and lo <= end and op.invoke <= hi for idx, lo, hi, _a, _b in windows
        )
        if e.kind == _G and concurrent:
            out.append(partial_growth(op, e.grow))
        if e.kind not in (_W, _Z, _ZG) or e.b >= INF or (e.kind == _W and e.data is None):
            out.append(e)
            continue
        g = granule if e.kind == _W else zero_granule or granule
        cuts: set[int] = set()
        # a copy from a mapped source stops short at a source page that faults; the folio may be
        # uptodate by then (write_begin read or zeroed its partial blocks), and then the short copy
        # is kept and i_size grows to pos + copied (__iomap_write_end(), block_write_end()): such
        # a write may also be seen ending at any of its source-page boundaries
        src = int(op.args.get("map_off", 0)) if e.kind == _W and op.args.get("map_file") is not None else None
        for idx, lo, hi, a, b in windows:
            if idx != op.index and lo <= end and op.invoke <= hi and a < e.b and e.a < b:
                cuts.update(range(max(a, e.a) // g * g, min(b, e.b) + g, g))
                if src is not None:
                    first = max(a, e.a)
                    x = first + (-(src + first - op.arg("off"))) % SOURCE_PAGE
                    cuts.update(range(x, min(b, e.b) + SOURCE_PAGE, SOURCE_PAGE))
        bounds = [e.a, *sorted(c for c in cuts if e.a < c < e.b), e.b]
        if len(bounds) == 2 and not concurrent:
            out.append(e)
            continue
        for a, b in pairwise(bounds):
            piece = _Ev(_W if e.kind == _W else _Z, op, a=a, b=b)
            if e.kind == _W:
                assert e.data is not None
                piece.data = e.data[a - e.a : b - e.a]
                piece.grow = b
            piece.piece = True
            out.append(piece)
        if e.kind == _ZG:  # the size change of a zero range, as its own pieces
            out.append(partial_growth(op, e.grow))
            grow = _Ev(_G, op)
            grow.grow = e.grow
            grow.piece = True
            out.append(grow)
    return out


# --------------------------------------------------------------------------------------------------
# byte-range sets: U is a flat sorted tuple (s0, e0, s1, e1, ...) of disjoint half-open ranges

_U = tuple[int, ...]


def _pieces(u: _U, a: int, b: int) -> list[tuple[int, int]]:
    out = []
    for k in range(0, len(u), 2):
        s, e = u[k], u[k + 1]
        if e <= a:
            continue
        if s >= b:
            break
        out.append((max(s, a), min(e, b)))
    return out


def _sub(u: _U, a: int, b: int) -> _U:
    out: list[int] = []
    for k in range(0, len(u), 2):
        s, e = u[k], u[k + 1]
        if e <= a or s >= b:
            out += (s, e)
            continue
        if s < a:
            out += (s, a)
        if e > b:
            out += (b, e)
    return tuple(out)


def _add(u: _U, a: int, b: int) -> _U:
    if a >= b:
        return u
    ranges = sorted([(u[k], u[k + 1]) for k in range(0, len(u), 2)] + [(a, b)])
    out: list[int] = []
    for s, e in ranges:
        if out and s <= out[-1]:
            out[-1] = max(out[-1], e)
        else:
            out += (s, e)
    return tuple(out)


# --------------------------------------------------------------------------------------------------
# the search over one file


_State = tuple[int, _U, int, int]  # (R bitmask, U, lo, hi)
#: the choice of an unfinished op that is left out (it never took effect)
_DROP: Final = "drop"
_Move = tuple[int, _U, int, int, Any]  # (cost, U', lo', hi', choice)


class _FileSearch:
    """Events, order and size facts of one file; runs searches against a target."""

    def __init__(
        self,
        history: History,
        file: str,
        granule: int | None = None,
        block_size: int | None = None,
        write_granule: int | None = None,
    ) -> None:
        self.history = history
        self.file = file
        self.initial = history.initial_of(file)
        self.granule = granule
        ops = history.ops_on(file)
        evs = [e for op in ops for e in _events_of(op, block_size)]
        if granule:
            evs = _split_writes(evs, ops, write_granule or granule, granule)
        evs.sort(key=lambda e: (e.lo, e.op.index, e.pos))
        self.evs = evs
        n = len(evs)
        self.n = n
        self.los = [e.lo for e in evs]
        his_sorted = sorted(range(n), key=lambda i: evs[i].hi)
        # pred[i]: events that must come before i; succ[i]: events that must come after i
        prefix_by_hi = [0]
        for i in his_sorted:
            prefix_by_hi.append(prefix_by_hi[-1] | 1 << i)
        his_keys = [evs[i].hi for i in his_sorted]
        # program order within a thread comes from (seq, store position), not from the step keys:
        # a store and the thread's next invoke may share a step
        program = sorted(range(n), key=lambda i: (evs[i].op.tid, evs[i].op.seq, evs[i].pos))
        same_before = [0] * n
        same_after = [0] * n
        # the pieces of one split write are unordered among themselves: a reader may see its
        # second folio and not its first (it read the first before the writer got there)
        pieces: dict[int, int] = {}
        for i, e in enumerate(evs):
            if e.piece:
                pieces[e.op.index] = pieces.get(e.op.index, 0) | 1 << i
        seen: dict[int, int] = {}
        for i in program:
            same_before[i] = seen.get(evs[i].op.tid, 0)
            seen[evs[i].op.tid] = same_before[i] | 1 << i
            if evs[i].piece:
                same_before[i] &= ~pieces[evs[i].op.index]
        seen = {}
        for i in reversed(program):
            same_after[i] = seen.get(evs[i].op.tid, 0)
            seen[evs[i].op.tid] = same_after[i] | 1 << i
            if evs[i].piece:
                same_after[i] &= ~pieces[evs[i].op.index]
        full = (1 << n) - 1
        self.full = full
        # A precedes B iff A.hi < B.lo (or program order): B's predecessors are a prefix of the
        # events sorted by hi, A's successors a suffix of the events sorted by lo (the bit order)
        self.pred = [prefix_by_hi[bisect_left(his_keys, evs[i].lo)] | same_before[i] for i in range(n)]
        self.succ = [full & ~((1 << bisect_right(self.los, evs[i].hi)) - 1) | same_after[i] for i in range(n)]
        self.by_hi_desc = sorted(range(n), key=lambda i: evs[i].hi, reverse=True)
        self.optional = sum(1 << i for i, e in enumerate(evs) if e.optional)
        self.stores = sum(1 << i for i, e in enumerate(evs) if e.kind == _S)
        self.obs = sum(1 << i for i, e in enumerate(evs) if e.kind in _READ_KINDS)
        # every value the size can take: a size is whatever the last size change set
        points = {len(self.initial)}
        ranges: list[tuple[int, int]] = []
        for e in evs:
            if e.kind == _T:
                points.add(e.t)
            elif e.kind in (_W, _ZG, _G):
                points.add(e.grow)
            elif e.kind == _PW:
                ranges.append((e.a + 1, e.grow))
            elif e.kind == _PG or (e.kind == _PZ and e.grow >= 0):
                ranges.append((0, e.grow))
        self.size_points = sorted(points)
        self.size_ranges = sorted(ranges)
        # per-search state
        self.runs: list[_Runs] = []
        self.zero: _Runs = _NO_RUNS
        self.init_runs: _Runs = _NO_RUNS
        self.target = _Target(0, b"", INF)
        self.read_range: tuple[int, int] = (0, 0)
        self.read_size: tuple[int, int] = (0, INF)

    # -- targets ----------------------------------------------------------------------------------

    def _set_target(self, target: _Target) -> None:
        self.target = target
        self.zero = target.zero_runs()
        lo = target.base
        hi = min(target.end, max(len(self.initial), target.base + len(target.data)))
        if lo < hi:
            init = self.initial[lo:hi] + bytes(max(0, hi - max(lo, len(self.initial))))
            self.init_runs = _runs_of_pairs(init, target.slice(lo, hi), lo)
        else:
            self.init_runs = _NO_RUNS
        runs = []
        for e in self.evs:
            if e.kind in (_W, _S) or (e.kind == _PW and e.data is not None):
                assert e.data is not None
                runs.append(target.diff(e.a, e.data))
            elif e.kind in (_Z, _ZG, _T, _PZ):
                runs.append(self.zero)
            else:  # no bytes, or unknown bytes that match anything
                runs.append(_NO_RUNS)
        self.runs = runs

    # -- size facts -------------------------------------------------------------------------------

    def _producible_any(self, lo: int, hi: int) -> bool:
        k = bisect_left(self.size_points, lo)
        if k < len(self.size_points) and self.size_points[k] <= hi:
            return True
        return any(r0 <= hi and lo <= r1 for r0, r1 in self.size_ranges)

    def _producible_between(self, x: int, y: int, exact: bool) -> list[int]:
        """Sizes some event can produce strictly between ``x`` and ``y``, ascending (in cost mode
        only the ends of ranges: explanations need not enumerate every size)."""
        found = set(self.size_points[bisect_right(self.size_points, x) : bisect_left(self.size_points, y)])
        for r0, r1 in self.size_ranges:
            lo, hi = max(r0, x + 1), min(r1, y - 1)
            if lo > hi:
                continue
            if exact:
                found.update(range(lo, hi + 1))
            else:
                found.update((lo, hi))
        return sorted(found)

    # -- moves ------------------------------------------------------------------------------------

    def _maximal(self, r: int) -> Iterator[int]:
        """Events of ``r`` that may be the last of ``r``, latest-ending first."""
        if not r:
            return
        maxlo = self.los[r.bit_length() - 1]
        succ = self.succ
        evs = self.evs
        for i in self.by_hi_desc:
            if evs[i].hi < maxlo:
                break  # ended before the latest start in r: that event must follow it
            if r >> i & 1 and not succ[i] & r:
                yield i

    def _free(self, i: int, r: int, u: _U, lo: int) -> bool:
        """Whether maximal event ``i`` may be placed now without trying the other candidates
        (partial-order reduction).

        Holds when every byte it may write is explained by later events (none in ``U``) and its
        size change is absorbed (largest growth ``<= lo``). Then a linearization of ``r`` that
        works can move ``i`` to the end of ``r`` and keep the final state: the bytes it wrote are
        overwritten later anyway; a size change ``max(., g)`` with ``g <= lo`` commutes with the
        later ones and is absorbed by the size at the end of ``r`` (which is ``>= lo``); the events
        it jumps over behave the same -- except a store (it lands only below the current size) and
        a read (it sees the bytes), so a size-changing event needs every store still in ``r`` to
        precede it, and no read may be pending at all. The rest of that linearization then ends
        with a size in the pre-image of ``[lo, hi]`` under ``i``'s size change, which is what
        ``i``'s own move produces (for a partial effect: the move of the dominant choice).
        """
        e = self.evs[i]
        k = e.kind
        if k in (_T, _OBS, _OBSZ) or r & self.obs:
            return False
        if k != _G and k != _PG and _pieces(u, e.a, e.b):
            return False
        if k in _SIZED or (k == _PZ and e.grow >= 0):
            return e.grow <= lo and not r & self.stores & ~self.pred[i]
        return True

    def _moves(self, i: int, u: _U, lo: int, hi: int, exact: bool) -> list[_Move]:
        """Placing event ``i`` last, from state ``(U, [lo, hi])``: ``(cost, U', lo', hi', choice)``
        where cost counts bytes of ``U`` it would set to a wrong value (exact mode: only cost 0).
        ``choice`` is what a forward replay needs (prefix length / grown size of partial effects).
        Every resulting state is normalized (see :meth:`_normalize`)."""
        out: list[_Move] = []
        for cost, nu, nlo, nhi, choice in self._raw_moves(i, u, lo, hi, exact):
            if nhi < INF and nu and nu[-1] > nhi:
                extra, nu = self._normalize(nu, nhi, exact)
                if extra < 0:
                    continue
                cost += extra
            out.append((cost, nu, nlo, nhi, choice))
        return out

    def _normalize(self, u: _U, hi: int, exact: bool) -> tuple[int, _U]:
        """Drop the bytes of ``U`` at or above ``hi``: the size here is at most ``hi``, so they are
        zero at this point (bytes past the size always are) and, as no later event writes them,
        zero at the end. Returns ``(cost, U')``: the target must be zero there (exact mode: cost
        -1 if it is not; cost mode: the count of non-zero target bytes)."""
        cost = 0
        for x, y in _pieces(u, hi, INF):
            if exact:
                if self.zero.first(x, y) >= 0:
                    return -1, u
            else:
                cost += self.zero.count(x, y)
        return cost, _sub(u, hi, INF)

    def _last_nonzero(self, u: _U) -> int:
        """The largest position of ``U`` whose target byte is not zero (-1: none)."""
        for k in range(len(u) - 2, -1, -2):
            p = self.zero.last(u[k], u[k + 1])
            if p >= 0:
                return p
        return -1

    def _raw_moves(self, i: int, u: _U, lo: int, hi: int, exact: bool) -> list[_Move]:
        e = self.evs[i]
        k = e.kind
        runs = self.runs[i]
        moves: list[_Move] = []
        if k in (_W, _Z, _ZG):
            g = e.grow
            if g > hi:
                return moves
            cost = 0
            for x, y in _pieces(u, e.a, e.b):
                if exact:
                    if runs.first(x, y) >= 0:
                        return moves
                else:
                    cost += runs.count(x, y)
            nlo = lo if g < lo else 0  # pre-image of [lo, hi] under max(., g); g = -1: identity
            moves.append((cost, _sub(u, e.a, e.b), nlo, hi, None))
        elif k == _G:
            if e.grow <= hi:
                moves.append((0, u, lo if e.grow < lo else 0, hi, None))
        elif k == _T:
            if lo <= e.t <= hi:
                cost = 0
                for x, y in _pieces(u, e.t, INF):
                    if exact:
                        if runs.first(x, y) >= 0:
                            return moves
                    else:
                        cost += runs.count(x, y)
                moves.append((cost, _sub(u, e.t, INF), 0, INF, None))
        elif k == _S:
            self._store_moves(e, runs, u, lo, hi, exact, moves)
        elif k == _PW:
            self._prefix_write_moves(e, runs, u, lo, hi, exact, moves)
        elif k == _PZ:
            pieces = _pieces(u, e.a, e.b)
            best = e.b  # the largest prefix that zeroes only bytes that should be zero
            for x, y in pieces:
                m = runs.first(x, y)
                if m >= 0:
                    best = m
                    break
            prefixes = [best - e.a] if exact else sorted({best - e.a, e.b - e.a})
            for kk in prefixes:
                cost = 0 if exact else sum(runs.count(x, min(y, e.a + kk)) for x, y in pieces)
                nu = _sub(u, e.a, e.a + kk)
                if e.grow < 0:
                    moves.append((cost, nu, lo, hi, (kk, 0)))
                elif exact:  # grown to any size <= grow: the union of the pre-images
                    moves.append((cost, nu, 0 if e.grow >= lo else lo, hi, (kk, 0)))
                else:
                    moves.append((cost, nu, lo, hi, (kk, 0)))
                    if e.grow <= hi:
                        moves.append((cost, nu, 0 if e.grow >= lo else lo, hi, (kk, e.grow)))
        elif k == _PG:
            if exact:
                moves.append((0, u, 0 if e.grow >= lo else lo, hi, 0))
            else:
                moves.append((0, u, lo, hi, 0))
                if e.grow <= hi:
                    moves.append((0, u, 0 if e.grow >= lo else lo, hi, e.grow))
        elif k == _OBS:
            moves.append((0, _add(u, *self.read_range), lo, hi, None))
        elif k == _OBSZ:
            clo, chi = max(lo, self.read_size[0]), min(hi, self.read_size[1])
            if clo <= chi:
                moves.append((0, u, clo, chi, None))
        return moves

    def _store_moves(
        self, e: _Ev, runs: _Runs, u: _U, lo: int, hi: int, exact: bool, moves: list[_Move]
    ) -> None:
        """A store covers ``[a, min(b, s))`` where ``s`` is the size at its step; branch on ``s``
        relative to the unexplained bytes of its range (groups of ``s`` leaving the same ``U'``)."""
        pieces = _pieces(u, e.a, e.b)
        if not pieces:
            moves.append((0, u, lo, hi, None))
            return
        first_hi = min(hi, pieces[0][0])
        if lo <= first_hi and self._producible_any(lo, first_hi):
            moves.append((0, u, lo, first_hi, None))  # s below every unexplained byte: no effect
        # a size s leaves the bytes of U at or above s to be zero (see _normalize): in exact mode
        # only sizes past the last non-zero target byte of U can work
        floor = max(lo - 1, self._last_nonzero(u)) if exact else lo - 1
        cost = 0
        for j, (x, y) in enumerate(pieces):
            m = runs.first(x, y)
            # s strictly inside this piece: the store covers [a, s); each s is its own state
            for s in self._producible_between(max(x, floor), min(y, hi + 1), exact):
                if exact and m >= 0 and s > m:
                    break
                moves.append((cost + (0 if exact else runs.count(x, s)), _sub(u, e.a, s), s, s, None))
            if m >= 0:
                if exact:
                    return
                cost += runs.count(x, y)
            # s between this piece and the next: the pieces up to this one are covered
            nlo = max(lo, y)
            nhi = min(hi, pieces[j + 1][0] if j + 1 < len(pieces) else INF)
            if nlo <= nhi and self._producible_any(nlo, nhi):
                moves.append((cost, _sub(u, e.a, y), nlo, nhi, None))

    def _prefix_write_moves(
        self, e: _Ev, runs: _Runs, u: _U, lo: int, hi: int, exact: bool, moves: list[_Move]
    ) -> None:
        """An unfinished pwrite wrote its first ``k`` bytes (``k >= 1``; ``k = 0`` is dropping it
        altogether). Among the ``k`` that match ``U``, the largest of each size class dominates:
        ``a+k >= lo`` gives pre-image ``[0, hi]``, ``a+k < lo`` keeps ``[lo, hi]``."""
        a = e.a
        km = e.b - a
        pieces = _pieces(u, a, e.b)
        for x, y in pieces:
            m = runs.first(x, y)
            if m >= 0:
                km = m - a
                break
        cands: list[int] = []
        kb = min(km, hi - a)
        if kb >= max(1, lo - a):
            cands.append(kb)  # also dominates the smaller class
        else:
            ka = min(km, lo - a - 1)
            if ka >= 1:
                cands.append(ka)
        if not exact and e.b <= hi and (e.b - a) not in cands:
            cands.append(e.b - a)
        for k in cands:
            cost = 0 if exact else sum(runs.count(x, min(y, a + k)) for x, y in pieces)
            moves.append((cost, _sub(u, a, a + k), 0 if a + k >= lo else lo, hi, k))

    # -- terminal ---------------------------------------------------------------------------------

    def _settled(self, st: _State) -> bool:
        """Everything left is unconstrained: no byte to explain, any size, no read pending. Then
        every remaining move is the identity, so any order of the rest completes the search."""
        r, u, lo, hi = st
        return not u and lo == 0 and hi == INF and not r & self.obs

    def _terminal_cost(self, st: _State) -> int:
        """Cost of stopping here (-1: not allowed): the rest must be unfinished ops left out, the
        initial size must fit, and the bytes still in ``U`` are compared with the initial content."""
        r, u, lo, hi = st
        if r & ~self.optional:
            return 0 if self._settled(st) else -1
        if not lo <= len(self.initial) <= hi:
            return -1
        return sum(self.init_runs.count(u[k], u[k + 1]) for k in range(0, len(u), 2))

    def _terminal_ok(self, st: _State) -> bool:
        r, u, lo, hi = st
        if self._settled(st):
            return True
        if r & ~self.optional or not lo <= len(self.initial) <= hi:
            return False
        return all(self.init_runs.first(u[k], u[k + 1]) < 0 for k in range(0, len(u), 2))

    # -- exact search -----------------------------------------------------------------------------

    def _children(self, st: _State) -> Iterator[_State]:
        r, u, lo, hi = st
        cands = list(self._maximal(r))
        for i in cands:
            if self._free(i, r, u, lo):
                # its own moves still apply (a size change widens [lo, hi]); none of the others
                moves = self._moves(i, u, lo, hi, True)
                for _, nu, nlo, nhi, _ in moves:
                    yield (r & ~(1 << i), nu, nlo, nhi)
                if not moves and self.evs[i].optional:
                    yield (r & ~(1 << i), u, lo, hi)
                return
        for i in cands:
            nr = r & ~(1 << i)
            for _, nu, nlo, nhi, _ in self._moves(i, u, lo, hi, True):
                yield (nr, nu, nlo, nhi)
        for i in cands:
            if self.evs[i].optional:  # an unfinished op that never took effect: drop it
                yield (r & ~(1 << i), u, lo, hi)

    def feasible(self, start: _State) -> bool:
        """Depth-first search for a linearization; failures are memoized. Raises
        :class:`_Undecided` past :data:`_FEASIBLE_BUDGET` expanded states."""
        if self._terminal_ok(start):
            return True
        failed: set[_State] = set()
        stack: list[tuple[_State, Iterator[_State]]] = [(start, self._children(start))]
        expanded = 0
        while stack:
            st, it = stack[-1]
            for child in it:
                if child in failed:
                    continue
                if self._terminal_ok(child):
                    return True
                expanded += 1
                if expanded > _FEASIBLE_BUDGET:
                    raise _Undecided
                stack.append((child, self._children(child)))
                break
            else:
                failed.add(st)
                stack.pop()
        return False

    def explained(self, start: _State) -> bool:
        """:meth:`feasible`, with an undecided search (the budget ran out) counted as explained."""
        try:
            return self.feasible(start)
        except _Undecided:
            return True

    # -- closest linearization --------------------------------------------------------------------

    def closest(self, start: _State) -> list[tuple[int, Any]] | None:
        """Dijkstra over the same states with cost = differing bytes; returns the events of the
        cheapest complete linearization in forward order with their choices, or None if there is
        none (or the budget ran out)."""
        dist: dict[_State, int] = {start: 0}
        parent: dict[_State, tuple[_State, int, Any]] = {}
        heap: list[tuple[int, int, bool, _State]] = [(0, 0, False, start)]
        tick = 1
        while heap:
            cost, _, is_end, st = heapq.heappop(heap)
            if is_end:
                return self._witness(st, parent)
            if dist.get(st, INF) < cost:
                continue
            if len(dist) > _EXPLAIN_BUDGET:
                return None
            tc = self._terminal_cost(st)
            if tc >= 0:
                heapq.heappush(heap, (cost + tc, tick, True, st))
                tick += 1
            r, u, lo, hi = st
            cands = list(self._maximal(r))
            free = next((i for i in cands if self._free(i, r, u, lo)), -1)
            for i in [free] if free >= 0 else cands:
                nr = r & ~(1 << i)
                moves = self._moves(i, u, lo, hi, False)
                if self.evs[i].optional:
                    moves.append((0, u, lo, hi, _DROP))
                for dc, nu, nlo, nhi, choice in moves:
                    child = (nr, nu, nlo, nhi)
                    nc = cost + dc
                    if nc < dist.get(child, INF):
                        dist[child] = nc
                        parent[child] = (st, i, choice)
                        heapq.heappush(heap, (nc, tick, False, child))
                        tick += 1
        return None

    def _witness(self, st: _State, parent: dict[_State, tuple[_State, int, Any]]) -> list[tuple[int, Any]]:
        # the search places events from the last one backwards, so walking the parents from the
        # end state back to the start visits them in forward order
        forward: list[tuple[int, Any]] = []
        r = st[0]
        while st in parent:
            st, i, choice = parent[st]
            forward.append((i, choice))
        if r & ~self.optional:  # settled: the rest go first, with no partial effect
            forward = self.in_order(r) + forward
        return forward

    def in_order(self, r: int) -> list[tuple[int, Any]]:
        """The mandatory events of ``r`` in an order that respects real time (a topological order),
        each with its "no partial effect" choice."""
        order: list[tuple[int, Any]] = []
        done = 0
        todo = [i for i in range(self.n) if r >> i & 1 and not self.evs[i].optional]
        while todo:
            rest = []
            for i in todo:
                if self.pred[i] & r & ~done & ~self.optional:
                    rest.append(i)
                else:
                    order.append((i, self._no_choice(i)))
                    done |= 1 << i
            if len(rest) == len(todo):  # cannot happen for a valid history; do not loop forever
                order.extend((i, self._no_choice(i)) for i in rest)
                break
            todo = rest
        return order

    def _no_choice(self, i: int) -> Any:
        k = self.evs[i].kind
        return (0, 0) if k == _PZ else 0 if k in (_PG, _PW) else None

    # -- replay -----------------------------------------------------------------------------------

    def _prims(self, i: int, choice: Any) -> tuple[Prim, ...]:
        e = self.evs[i]
        k = e.kind
        if k == _W:
            assert e.data is not None
            return (Prim.write(e.a, e.data),)
        if k == _S:
            assert e.data is not None
            return (Prim.store(e.a, e.data),)
        if k == _Z:
            return (Prim.zero(e.a, e.b - e.a),)
        if k == _ZG:
            return (Prim.zero(e.a, e.b - e.a), Prim.grow(e.grow))
        if k == _G:
            return (Prim.grow(e.grow),)
        if k == _T:
            return (Prim.truncate(e.t),)
        if k == _PW:
            n = int(choice)
            known = (e.data or b"")[:n]  # unknown bytes (past data) match anything: show the target's
            data = known + self.target.slice(e.a + len(known), e.a + n) if len(known) < n else known
            return (Prim.write(e.a, data),) if n else ()
        if k == _PZ:
            kk, g = choice
            return ((Prim.zero(e.a, kk),) if kk else ()) + ((Prim.grow(g),) if g else ())
        if k == _PG:
            return (Prim.grow(int(choice)),) if choice else ()
        return ()

    def replay(self, order: list[tuple[int, Any]]) -> tuple[bytearray, array[int], int]:
        """Apply ``order`` forward on the reference model (a read stops the replay). Returns the
        content, per-byte provenance tags (op index / TAG_INITIAL / TAG_FILL) and the index of
        the op that last changed the size (-1: the initial size)."""
        buf = bytearray(self.initial)
        tags = array("q", [TAG_INITIAL]) * len(buf)
        size_by = -1
        for i, choice in order:
            e = self.evs[i]
            if e.kind == _OBS:
                break
            if choice == _DROP:
                continue
            before = len(buf)
            apply_effect(buf, self._prims(i, choice), tags, e.op.index)
            if len(buf) != before or e.kind == _T:
                size_by = e.op.index
        return buf, tags, size_by


# --------------------------------------------------------------------------------------------------
# explanations from a replayed witness


def _source_of_tag(tag: int, history: History) -> Source:
    if tag >= 0:
        return Source("op", history.op(tag), 1, 1)
    return Source("initial" if tag == TAG_INITIAL else "hole")


def _found_source(search: _FileSearch, start: int, found: bytes) -> Source:
    """Best guess at who wrote ``found`` at ``start``: the op whose bytes match most positions."""
    if not any(found):
        return Source("zeros")
    end = start + len(found)
    init = search.initial[start:end]
    if init == found:
        return Source("initial")
    best: tuple[int, HistoryOp | None] = (0, None)
    for e in search.evs:
        if e.data is None or e.kind not in (_W, _S, _PW) or e.b <= start or e.a >= end:
            continue
        lo, hi = max(start, e.a), min(end, e.b)
        theirs = np.frombuffer(e.data, dtype=np.uint8, count=hi - lo, offset=lo - e.a)
        ours = np.frombuffer(found, dtype=np.uint8, count=hi - lo, offset=lo - start)
        matched = int(np.count_nonzero(theirs == ours))
        if matched > best[0]:
            best = (matched, e.op)
    if best[1] is not None and best[0] * 2 >= len(found):
        return Source("op", best[1], best[0], len(found))
    return Source("unknown")


def _diffs(
    search: _FileSearch, expected: bytes, tags: array[int], found: bytes, base: int
) -> tuple[tuple[ByteDiff, ...], int]:
    """Coalesced differing ranges of ``expected`` vs ``found`` (both starting at file offset
    ``base``, zero-extended to the longer one), split where the expected writer changes."""
    n = max(len(expected), len(found))
    exp = np.zeros(n, dtype=np.uint8)
    exp[: len(expected)] = np.frombuffer(expected, dtype=np.uint8)
    got = np.zeros(n, dtype=np.uint8)
    got[: len(found)] = np.frombuffer(found, dtype=np.uint8)
    tag = np.full(n, TAG_FILL, dtype=np.int64)
    tag[: len(tags)] = np.frombuffer(tags, dtype=np.int64)[:n]
    runs = _runs_of_mask(exp != got, 0)
    total = runs.cum[-1]
    ranges: list[list[int]] = []  # [start, end, tag]
    for s, e in zip(runs.starts, runs.ends):
        cuts = np.flatnonzero(np.diff(tag[s:e])) + s + 1
        bounds = [s, *cuts.tolist(), e]
        for x, y in pairwise(bounds):
            t = int(tag[x])
            if ranges and ranges[-1][2] == t and x - ranges[-1][1] <= _COALESCE_GAP:
                ranges[-1][1] = y
            else:
                ranges.append([x, y, t])
        if len(ranges) > _MAX_DIFFS:
            break
    out = []
    for x, y, t in ranges[:_MAX_DIFFS]:
        fb = got[x:y].tobytes()
        out.append(
            ByteDiff(
                start=base + x,
                end=base + y,
                expected=exp[x:y].tobytes(),
                found=fb,
                expected_by=_source_of_tag(t, search.history),
                found_by=_found_source(search, base + x, fb),
            )
        )
    return tuple(out), total


# --------------------------------------------------------------------------------------------------
# public API


def _known(ranges: Sequence[tuple[int, int]]) -> _U:
    """The complement in ``[0, INF)`` of ``ranges`` (any order, may overlap): the bytes to explain."""
    u: _U = (0, INF)
    for a, b in ranges:
        if not 0 <= a <= b:
            raise ValueError(f"unknown range [{a}, {b}) is not a byte range")
        u = _sub(u, a, min(b, INF))
    return u


def check_final(
    history: History,
    final: Mapping[str, bytes],
    *,
    unknown: Mapping[str, Sequence[tuple[int, int]]] | None = None,
    any_size: Collection[str] = (),
    granule: int | None = None,
    block_size: int | None = None,
    write_granule: int | None = None,
) -> list[Mismatch]:
    """Judge the final content of every file of ``history``.

    ``final`` maps each file name to its content as read from the final image (its length is the
    size). Returns one :class:`Mismatch` per file whose content no linearization of the history
    produces (see the module docstring); ``[]`` means every file is explained. A file missing from
    ``final`` is reported as a mismatch.

    ``unknown`` maps a file to byte ranges ``[start, end)`` whose value is not judged: any byte
    there is accepted (e.g. what a data write that failed with an I/O error should have written,
    see :func:`oracle.crash.lost_ranges`; ``end`` may exceed the size). The size is still judged,
    and a reported :class:`Mismatch` lists no difference inside those ranges.

    ``granule``: the folio size; a write that overlaps a store or read in time is atomic only
    per folio against them (see ``_split_writes``). None: every write is atomic.
    ``block_size``: the filesystem block size; a zero range that failed zeroes whole blocks
    first (see ``_events_of``). None: partial effects are prefixes of the range.
    ``write_granule``: the unit a write is atomic in against reads and stores, when smaller than
    a folio: iomap_write_iter() copies one folio *of one mapping* at a time, and a mapping may
    end at any block boundary inside a folio, so on the iomap path a write is atomic per block.

    ``any_size``: files whose size is not judged either, nor any byte past the found size (a data
    write that failed may take the size update that follows its completion with it).
    """
    out: list[Mismatch] = []
    for file in history.files:
        search = _FileSearch(history, file, granule, block_size, write_granule)
        if file not in final:
            missing = "missing from the final image"
            out.append(Mismatch(file, "final", (), 0, 0, 0, Source("unknown"), (), note=missing))
            continue
        found = bytes(final[file])
        skip = list((unknown or {}).get(file, ()))
        lo_size, hi_size = len(found), len(found)
        if file in any_size:
            skip.append((len(found), INF))
            lo_size, hi_size = 0, INF
        u0 = _known(skip)
        search._set_target(_Target(0, found, INF))
        r0 = search.full & ~search.obs
        if search.explained((r0, u0, lo_size, hi_size)):
            continue
        order = search.closest((r0, u0, lo_size, hi_size))
        if order is None:  # no linearization has the found size: compare against any size
            order = search.closest((r0, u0, 0, INF))
        if order is None:
            order = search.in_order(r0)
        expected, tags, size_by = search.replay(order)
        if skip:  # unknown bytes are not differences: show the expected value there
            shown = bytearray(found)
            for a, b in skip:
                lo, hi = min(a, len(shown)), min(b, len(shown), len(expected))
                shown[lo:hi] = expected[lo:hi]
                hi2 = min(b, len(shown))
                if hi2 > hi:  # past the expected content the closest linearization reads zeros
                    shown[hi:hi2] = bytes(hi2 - hi)
            found = bytes(shown)
        diffs, total = _diffs(search, bytes(expected), tags, found, 0)
        out.append(
            Mismatch(
                file=file,
                kind="final",
                diffs=diffs,
                differing_bytes=total,
                size_expected=len(expected),
                size_found=len(found),
                size_by=Source("initial") if size_by < 0 else Source("op", history.op(size_by), 1, 1),
                linearization=tuple(search.evs[i].name() for i, c in order if c != _DROP),
            )
        )
    return out


def check_reads(
    history: History,
    *,
    short_reads: bool = False,
    granule: int | None = None,
    block_size: int | None = None,
    write_granule: int | None = None,
) -> list[Mismatch]:
    """Judge every pread that returned bytes, each on its own against any linearization (not jointly
    with the final content or other reads).

    A read must return exactly the file's bytes at its point, clipped at EOF (``short_reads``: or a
    prefix of them). Returns one :class:`Mismatch` (``kind="read"``) per read no linearization
    explains; its sizes are byte counts (returned vs expected). ``granule``, ``block_size``,
    ``write_granule``: as for :func:`check_final`.
    """
    out: list[Mismatch] = []
    for file in history.files:
        reads = [op for op in history.ops_on(file) if op.op == "pread" and op.out is not None]
        if not reads:
            continue
        search = _FileSearch(history, file, granule, block_size, write_granule)
        for read in reads:
            mm = _check_read(search, read, short_reads)
            if mm is not None:
                out.append(mm)
    return out


def _cut_by_shrink(search: _FileSearch, read: HistoryOp, end: int) -> bool:
    """May a read that returned up to ``end`` have been cut short by a concurrent truncate?

    filemap_read() takes no i_rwsem and samples i_size once per batch of folios: a truncate that
    shrinks the file between two batches ends the read at the last folio it copied, so it returns
    a prefix ending at a folio boundary of what the file held when that folio was copied -- not
    the size of any one moment."""
    g = search.granule
    if not g or end % g:
        return False
    ret = read.ret if read.ret is not None else _BIG
    for e in search.evs:
        if e.kind == _T and e.op is not read:
            op_ret = e.op.ret if e.op.ret is not None else _BIG
            if e.op.invoke <= ret and read.invoke <= op_ret:
                return True
    return False


def _read_events(search: _FileSearch, read: HistoryOp) -> tuple[int, int]:
    """The index of ``read``'s byte observation and the bit mask of both its observations."""
    ri = next(i for i, e in enumerate(search.evs) if e.kind == _OBS and e.op is read)
    zi = next(i for i, e in enumerate(search.evs) if e.kind == _OBSZ and e.op is read)
    return ri, 1 << ri | 1 << zi


def _read_by_folio(search: _FileSearch, read: HistoryOp, off: int, n: int) -> bool:
    """Whether each folio of a read that overlaps other ops of the file in time is explained on
    its own: filemap_read() copies folio by folio with no lock that orders it against writers (a
    store through a mapping, a write, a zeroing may land between two folios it copies), so each
    folio may show a different moment of the file. It also copies only up to the i_size it
    sampled and samples it again for the next batch: a file that grew meanwhile makes it go on
    from that old EOF, inside the same folio, at a later moment -- so the pieces are cut at folio
    boundaries and at every size the file may have had. Every piece but the last says the file
    held at least its end; the last one carries the read's size facts (``search.read_size``).
    Checks nothing (False) for a read of one piece or with nothing concurrent."""
    g = search.granule
    assert read.out is not None
    if not g or n <= 1:
        return False
    ret = read.ret if read.ret is not None else _BIG
    if not any(e.op is not read and e.lo[0] <= ret and read.invoke <= e.hi[0] for e in search.evs):
        return False
    cuts = set(range((off // g + 1) * g, off + n, g))
    cuts.update(x for x in search.size_points if off < x < off + n)
    if not cuts:
        return False
    ri, bits = _read_events(search, read)
    start: _State = ((search.full & ~search.obs & ~search.succ[ri]) | bits, (), 0, INF)
    wanted = search.read_size
    try:
        a = off
        for b in [*sorted(cuts), off + n]:
            search.read_range = (a, b)
            search.read_size = wanted if b == off + n else (b, INF)
            search._set_target(_Target(a, read.out[a - off : b - off], b))
            if not search.explained(start):
                return False
            a = b
        return True
    finally:
        search.read_size = wanted


def _check_read(search: _FileSearch, read: HistoryOp, short_reads: bool) -> Mismatch | None:
    assert read.out is not None
    off, length, n = read.arg("off"), read.arg("len"), len(read.out)
    ri, bits = _read_events(search, read)
    search.read_range = (off, off + n)
    if short_reads or n == length or (n and _cut_by_shrink(search, read, off + n)):
        search.read_size = (off + n if n else 0, INF)  # the file held at least the bytes returned
    elif n:
        search.read_size = (off + n, off + n)  # a short read stopped exactly at EOF
    else:
        search.read_size = (0, off)  # nothing returned: at or past EOF
    # the read and everything that may precede it; events that must follow it cannot matter
    r0 = (search.full & ~search.obs & ~search.succ[ri]) | bits
    start: _State = (r0, (), 0, INF)
    if _read_by_folio(search, read, off, n):
        return None
    search.read_range = (off, off + n)
    search._set_target(_Target(off, read.out, off + n))
    if search.explained(start):
        return None
    order = search.closest(start)
    wanted = search.read_size
    if order is None:  # no linearization returns that many bytes: compare the bytes anyway
        search.read_size = (0, INF)
        order = search.closest(start)
        search.read_size = wanted
    if order is None:
        order = search.in_order(r0 & ~bits)
    content, tags, _ = search.replay(order)
    expected = bytes(content[off : off + length])
    expected_n = n if short_reads and n <= len(expected) else len(expected)
    shown = min(n, expected_n)
    diffs, total = _diffs(search, expected[:shown], tags[off : off + shown], read.out[:shown], off)
    return Mismatch(
        file=search.file,
        kind="read",
        diffs=diffs,
        differing_bytes=total,
        size_expected=expected_n,
        size_found=n,
        size_by=Source("unknown"),
        linearization=tuple(search.evs[i].name() for i, c in order if c != _DROP),
        read=read,
    )
