"""Sequential semantics of every syscall on the plain bytearray model, and the brute-force
specification of linearizability that :mod:`oracle.linearize` must agree with.

The model of one file is a ``bytearray`` whose length is the file size. Reading past the end gives
nothing; a hole reads as zeros. Every syscall's effect is a short sequence of *primitives*
(:class:`Prim`), applied in order by :func:`apply_prim`:

``write(off, data)``
    bytes ``data`` land at ``off``; the file grows to ``max(size, off+len(data))``, a gap reads as
    zeros.
``zero(off, length)``
    bytes ``[off, min(off+length, size))`` become zero; the size does not change.
``grow(size)``
    the file grows to ``max(size, old size)`` with zeros; never shrinks.
``truncate(size)``
    the file becomes exactly ``size`` bytes: cut, or grown with zeros.
``store(off, data)``
    an mmap store: only the bytes below the current size are file data. mmap allows a store past
    EOF inside the last page, but those bytes are not part of the file; if the file later grows they
    read as zeros (the kernel zeroes the tail of the old last page), which is exactly what dropping
    them gives.

:func:`effects` maps a recorded op to the *set* of effects it may have had:

========================= ===================================================================
op and outcome            possible effects
========================= ===================================================================
creat ok                  ``truncate(0)``
pwrite ok, result n >= 0  ``write(off, data[:n])`` (a short write lands its first n bytes)
pread, fsync, fdatasync,  none (a pread is an observation, see :func:`read_matches`)
mmap, munmap, sync,
remount
truncate(size) ok         ``truncate(size)``
fallocate ok              alloc: ``grow(off+len)``; keep_size: none; punch_hole:
                          ``zero(off, len)``; zero_range: ``zero(off, len)``, ``grow(off+len)``;
                          zero_range_keep_size: ``zero(off, len)``
mwrite (any result)       its recorded stores, in order (a SIGBUS mwrite applied exactly the
                          stores it recorded)
any failure (-errno)      none -- except fallocate, below
fallocate failed          *partial effects a real filesystem may leave behind*: alloc and
                          zero_range may have grown the size to any value between the old size
                          and off+len (ext4 extends i_size per allocated chunk, so an ENOSPC in a
                          later chunk keeps the earlier ones); punch_hole, zero_range and
                          zero_range_keep_size may have zeroed any prefix ``[off, off+k)`` of
                          their range (they zero and unmap piece by piece before failing).
                          A failed truncate changes nothing (the size is set last, after every
                          step that can fail).
never returned (ret None) none, or anything the op could have done: the full effect, a pwrite's
                          first k bytes for any k (it copies folio by folio and grows i_size per
                          folio), or a fallocate's partial effects
========================= ===================================================================

The concurrent semantics (used by :func:`brute_force_finals` and :func:`brute_force_read_ok`, and
implemented fast by :mod:`oracle.linearize`): every op with an effect, and every mwrite store, is an
*event*. A linearization is a total order of the events of one file that respects the real-time
order: event A precedes B if A ended before B began (``A.ret < B.invoke``; a store is a point at
its step; stores at the same step are ordered by op index and position), or A comes before B in
the same thread. Ops that never returned may be placed anywhere after their invoke (and "placed
with no effect" is the same as omitted). Files are independent: ops on one file never change
another.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from oracle.history import EFAULT, History, HistoryOp, Store

__all__ = [
    "TAG_FILL",
    "TAG_INITIAL",
    "Call",
    "Prim",
    "apply_effect",
    "apply_prim",
    "brute_force_finals",
    "brute_force_read_ok",
    "effects",
    "initial_model",
    "must_precede",
    "nominal_effect",
    "read_expected",
    "read_matches",
    "run_sequential",
    "simulate",
]

#: provenance tag of a byte that holds the file's initial content
TAG_INITIAL: Final = -1
#: provenance tag of a zero byte that appeared because the file grew over a hole
TAG_FILL: Final = -2


# --------------------------------------------------------------------------------------------------
# primitives


@dataclass(frozen=True)
class Prim:
    """One primitive effect on a file: ``kind`` is ``"write"`` / ``"store"`` (``off``, ``data``),
    ``"zero"`` (``off``, ``length``), ``"grow"`` / ``"truncate"`` (``size``)."""

    kind: str
    off: int = 0
    data: bytes = b""
    length: int = 0
    size: int = 0

    @staticmethod
    def write(off: int, data: bytes) -> Prim:
        return Prim("write", off=off, data=data)

    @staticmethod
    def store(off: int, data: bytes) -> Prim:
        return Prim("store", off=off, data=data)

    @staticmethod
    def zero(off: int, length: int) -> Prim:
        return Prim("zero", off=off, length=length)

    @staticmethod
    def grow(size: int) -> Prim:
        return Prim("grow", size=size)

    @staticmethod
    def truncate(size: int) -> Prim:
        return Prim("truncate", size=size)


def _resize(buf: bytearray, size: int, tags: array[int] | None) -> None:
    """Set ``len(buf)`` to ``size``: cut, or extend with zeros tagged :data:`TAG_FILL`."""
    old = len(buf)
    if size < old:
        del buf[size:]
        if tags is not None:
            del tags[size:]
    elif size > old:
        buf.extend(bytes(size - old))
        if tags is not None:
            tags.extend(array("q", [TAG_FILL]) * (size - old))


def apply_prim(buf: bytearray, prim: Prim, tags: array[int] | None = None, tag: int = 0) -> None:
    """Apply one primitive to the file ``buf`` in place (semantics in the module docstring).

    ``tags``, if given, is a provenance array parallel to ``buf``: every byte the primitive sets is
    tagged ``tag`` (the op's index); bytes exposed by growth are tagged :data:`TAG_FILL`.
    """
    kind = prim.kind
    if kind == "write":
        end = prim.off + len(prim.data)
        if end > len(buf):
            _resize(buf, end, tags)
        buf[prim.off : end] = prim.data
        if tags is not None:
            tags[prim.off : end] = array("q", [tag]) * len(prim.data)
    elif kind == "store":
        end = min(prim.off + len(prim.data), len(buf))
        if end > prim.off:
            buf[prim.off : end] = prim.data[: end - prim.off]
            if tags is not None:
                tags[prim.off : end] = array("q", [tag]) * (end - prim.off)
    elif kind == "zero":
        end = min(prim.off + prim.length, len(buf))
        if end > prim.off:
            buf[prim.off : end] = bytes(end - prim.off)
            if tags is not None:
                tags[prim.off : end] = array("q", [tag]) * (end - prim.off)
    elif kind == "grow":
        if prim.size > len(buf):
            _resize(buf, prim.size, tags)
    elif kind == "truncate":
        _resize(buf, prim.size, tags)
    else:
        raise ValueError(f"unknown primitive {kind!r}")


def apply_effect(
    buf: bytearray, effect: Iterable[Prim], tags: array[int] | None = None, tag: int = 0
) -> None:
    """Apply the primitives of one effect in order (see :func:`apply_prim`)."""
    for prim in effect:
        apply_prim(buf, prim, tags, tag)


# --------------------------------------------------------------------------------------------------
# effects of recorded ops

Effect = tuple[Prim, ...]


def _fallocate_full(mode: str, off: int, length: int) -> Effect:
    if mode == "alloc":
        return (Prim.grow(off + length),)
    if mode in ("punch_hole", "zero_range_keep_size"):
        return (Prim.zero(off, length),)
    if mode == "zero_range":
        return (Prim.zero(off, length), Prim.grow(off + length))
    return ()  # keep_size: blocks only, nothing visible


def _fallocate_partial(mode: str, off: int, length: int) -> tuple[Effect, ...]:
    """Every effect a failed (or unfinished) fallocate may have left; "no change" first."""
    zeroes = mode in ("punch_hole", "zero_range", "zero_range_keep_size")
    grows = mode in ("alloc", "zero_range")
    prefixes = range(length + 1) if zeroes else range(1)
    sizes = range(off + length + 1) if grows else range(1)
    out: list[Effect] = []
    for k in prefixes:
        for g in sizes:
            eff: list[Prim] = []
            if k:
                eff.append(Prim.zero(off, k))
            if g:
                eff.append(Prim.grow(g))
            out.append(tuple(eff))
    return tuple(out)


def effects(op: HistoryOp) -> tuple[Effect, ...]:
    """All effects ``op`` may have had on its file (the table in the module docstring), as a
    non-empty tuple of alternatives. The first alternative is the *nominal* one: the full effect of
    an op that succeeded, "no change" for one that failed or never returned.

    Partial effects are enumerated exhaustively (every prefix, every size), so use this only on
    small ops (tests, brute force). A never-returned pwrite with unknown ``data`` raises
    ``ValueError``. An mwrite's effect is its stores applied in order (the sequential view; the
    concurrent view treats each store as its own event).
    """
    name = op.op
    if name == "mwrite":
        return (tuple(Prim.store(s.off, s.data) for s in op.stores),)
    if name not in ("creat", "pwrite", "truncate", "fallocate"):
        return ((),)
    if op.completed and not op.ok:
        if name == "fallocate":
            return _fallocate_partial(op.mode, op.arg("off"), op.arg("len"))
        return ((),)
    if name == "creat":
        full: Effect = (Prim.truncate(0),)
    elif name == "truncate":
        full = (Prim.truncate(op.arg("size")),)
    elif name == "fallocate":
        full = _fallocate_full(op.mode, op.arg("off"), op.arg("len"))
    else:  # pwrite
        if op.completed:
            n = op.result or 0
            assert op.data is not None or n == 0
            return ((Prim.write(op.arg("off"), (op.data or b"")[:n]),) if n else (),)
        if op.data is None or len(op.data) < op.arg("len"):
            raise ValueError(f"op {op.index}: an unfinished pwrite with unknown data has no finite effects")
        off = op.arg("off")
        return ((), *((Prim.write(off, op.data[:k]),) for k in range(1, op.arg("len") + 1)))
    if op.completed:
        return (full,)
    if name == "fallocate":
        return _fallocate_partial(op.mode, op.arg("off"), op.arg("len"))
    return ((), full)


def nominal_effect(op: HistoryOp) -> Effect:
    """The effect a sequential run applies: ``effects(op)[0]`` without enumerating the rest."""
    if op.op == "pwrite" and not op.completed:
        return ()
    if op.op == "fallocate" and not (op.completed and op.ok):
        return ()
    return effects(op)[0]


# --------------------------------------------------------------------------------------------------
# reads


def read_expected(buf: bytes | bytearray, off: int, length: int) -> bytes:
    """What ``pread(off, length)`` returns on the model: ``content[off:off+length]``, clipped at EOF."""
    return bytes(buf[off : off + length])


def read_matches(
    buf: bytes | bytearray, off: int, length: int, out: bytes, *, short_reads: bool = False
) -> bool:
    """Whether a pread of ``length`` at ``off`` that returned ``out`` is consistent with ``buf``.

    Strictly (the default) ``out`` must equal :func:`read_expected`. With ``short_reads`` a read may
    also stop early (an I/O error after some bytes were copied makes Linux return the bytes so far):
    ``out`` must then be a prefix of it.
    """
    expected = read_expected(buf, off, length)
    if short_reads:
        return expected[: len(out)] == out
    return expected == out


# --------------------------------------------------------------------------------------------------
# sequential runs


def initial_model(history: History) -> dict[str, bytearray]:
    """``{file: bytearray(initial content)}`` for every file of ``history``."""
    return {f: bytearray(history.initial_of(f)) for f in history.files}


def run_sequential(history: History, *, short_reads: bool = False) -> tuple[dict[str, bytes], list[int]]:
    """Apply every op's nominal effect (:func:`nominal_effect`) in index order, mwrite stores in
    order. Meant for one-thread histories, where index order is the only linearization. Returns
    the final content of every file and the indices of the preads whose ``out`` does not match."""
    model = initial_model(history)
    bad: list[int] = []
    for op in history.ops:
        if op.file is None:
            continue
        buf = model[op.file]
        if op.op == "pread" and op.out is not None:
            if not read_matches(buf, op.arg("off"), op.arg("len"), op.out, short_reads=short_reads):
                bad.append(op.index)
            continue
        apply_effect(buf, nominal_effect(op))
    return {f: bytes(b) for f, b in model.items()}, bad


# --------------------------------------------------------------------------------------------------
# the brute-force specification of the concurrent semantics

_BIG: Final = 1 << 62


@dataclass(frozen=True)
class _BEvent:
    op: HistoryOp
    pos: int  # -1 for the op itself, else the index of its store
    alternatives: tuple[Effect, ...]

    @property
    def start(self) -> tuple[int, int, int]:
        if self.pos >= 0:
            s = self.op.stores[self.pos]
            return (s.step, self.op.index, self.pos)
        return (self.op.invoke, -1, -1)

    @property
    def end(self) -> tuple[int, int, int]:
        if self.pos >= 0:
            return self.start
        return (_BIG if self.op.ret is None else self.op.ret, _BIG, _BIG)


def must_precede(a: _BEvent, b: _BEvent) -> bool:
    """The real-time order of the module docstring, pairwise: same thread -> program order (op
    ``seq``, then store position); else ``a`` ended strictly before ``b`` began."""
    if a.op.tid == b.op.tid:
        return (a.op.seq, a.pos) < (b.op.seq, b.pos)
    return a.end < b.start


def _brute_events(history: History, file: str, read: HistoryOp | None) -> list[_BEvent]:
    evs: list[_BEvent] = []
    for op in history.ops_on(file):
        if op.op == "pread":
            if op is read:
                evs.append(_BEvent(op, -1, ((),)))
            continue
        if op.op == "mwrite":
            evs.extend(_BEvent(op, k, ((Prim.store(s.off, s.data),),)) for k, s in enumerate(op.stores))
            continue
        evs.append(_BEvent(op, -1, effects(op)))
    return evs


def _explore(
    history: History,
    file: str,
    read: HistoryOp | None,
    limit: int,
    start: tuple[int, bytes] | None = None,
) -> Iterable[tuple[int, bytes]]:
    """Every (placed-set, content) reachable by a prefix of a linearization (the read excluded),
    from the empty prefix or from ``start``."""
    evs = _brute_events(history, file, read)
    n = len(evs)
    pred = [sum(1 << j for j in range(n) if must_precede(evs[j], evs[i])) for i in range(n)]
    read_bit = next((1 << i for i, e in enumerate(evs) if e.op is read), 0)
    seen: set[tuple[int, bytes]] = set()
    stack = [start if start is not None else (0, bytes(history.initial_of(file)))]
    while stack:
        state = stack.pop()
        if state in seen:
            continue
        if len(seen) >= limit:
            raise RuntimeError(f"brute force over {n} events exceeded {limit} states")
        seen.add(state)
        yield state
        mask, content = state
        for i in range(n):
            bit = 1 << i
            if mask & bit or bit == read_bit or pred[i] & ~mask & ~read_bit:
                continue
            if read_bit and pred[i] & read_bit:
                continue  # events after the read are irrelevant to it
            for alt in evs[i].alternatives:
                buf = bytearray(content)
                apply_effect(buf, alt)
                stack.append((mask | bit, bytes(buf)))


def brute_force_finals(history: History, file: str, *, limit: int = 1_000_000) -> set[bytes]:
    """Every final content of ``file`` some linearization of ``history`` can produce, by exhaustive
    search over orders and over every alternative of :func:`effects` (slow: small histories only;
    ``RuntimeError`` past ``limit`` states). The specification :func:`oracle.linearize.check_final`
    implements fast."""
    evs = _brute_events(history, file, None)
    full = (1 << len(evs)) - 1
    return {content for mask, content in _explore(history, file, None, limit) if mask == full}


def brute_force_read_ok(
    history: History, index: int, *, short_reads: bool = False, limit: int = 1_000_000
) -> bool:
    """Whether the pread with this ``index`` is explained by some linearization (exhaustive; the
    specification of :func:`oracle.linearize.check_reads`): the size at one point inside the read
    bounds how many bytes it returned, and the bytes are the content at that point or a later one
    of the same linearization, still inside the read (filemap_read() samples i_size, then copies
    without the folio lock). A pread that failed or never returned is trivially consistent."""
    read = history.op(index)
    if read.op != "pread" or read.out is None or read.file is None:
        return True
    evs = _brute_events(history, read.file, read)
    ri = next(i for i, e in enumerate(evs) if e.op is read)
    pred_r = sum(1 << j for j in range(len(evs)) if must_precede(evs[j], evs[ri]))
    succ_r = sum(1 << j for j in range(len(evs)) if must_precede(evs[ri], evs[j]))
    off, length, out = read.arg("off"), read.arg("len"), read.out

    def inside(mask: int) -> bool:
        return mask & pred_r == pred_r and not mask & succ_r

    for mask, content in _explore(history, read.file, read, limit):
        if not inside(mask):
            continue
        n = len(read_expected(content, off, length))  # what the size here lets the read return
        if len(out) > n or (len(out) < n and not short_reads):
            continue
        for later_mask, later in _explore(history, read.file, read, limit, (mask, content)):
            if inside(later_mask):
                copied = bytes(later[off : off + len(out)])
                if copied + bytes(len(out) - len(copied)) == out:
                    return True
    return False


# --------------------------------------------------------------------------------------------------
# a deterministic reference runner (histories for tests and benchmarks)


@dataclass(frozen=True)
class Call:
    """One syscall for :func:`simulate`, with the outcome the reference should give it.

    ``args`` as in :data:`oracle.history.ARG_KEYS`; ``data`` is the user buffer (pwrite/mwrite,
    ``len`` bytes). ``errno`` > 0 makes a pwrite/creat/truncate/fallocate fail with ``-errno``;
    ``written`` makes a pwrite short; a failed fallocate leaves the partial effect ``prefix`` (bytes
    zeroed at the start of its range; zeroing modes only) and ``grow_to`` (the size grows to at
    least that, at most ``off+len``; alloc and zero_range only) -- :func:`simulate` raises
    ``ValueError`` for a partial effect the mode cannot have.
    """

    op: str
    file: str | None = None
    args: Mapping[str, int | str] = field(default_factory=dict)
    data: bytes | None = None
    errno: int = 0
    written: int | None = None
    prefix: int = 0
    grow_to: int = 0


@dataclass
class _Rec:
    index: int
    tid: int
    seq: int
    call: Call
    invoke: int
    ret: int | None = None
    result: int | None = None
    out: bytes | None = None
    stores: list[Store] = field(default_factory=list)

    def freeze(self) -> HistoryOp:
        c = self.call
        return HistoryOp(
            index=self.index,
            tid=self.tid,
            seq=self.seq,
            op=c.op,
            file=c.file,
            args=dict(c.args),
            data=c.data,
            invoke=self.invoke,
            ret=self.ret,
            result=self.result,
            out=self.out,
            stores=tuple(self.stores),
        )


def _effect_of_call(c: Call) -> tuple[int, Effect]:
    """(result, effect) of a non-mwrite, non-pread call executed at its linearization point."""
    if c.op not in ("creat", "pwrite", "truncate", "fallocate"):
        return 0, ()
    if c.errno:
        if c.op != "fallocate":
            return -c.errno, ()
        off, length, mode = int(c.args["off"]), int(c.args["len"]), str(c.args["mode"])
        if (c.prefix and mode not in ("punch_hole", "zero_range", "zero_range_keep_size")) or not (
            0 <= c.prefix <= length
        ):
            raise ValueError(f"a failed fallocate {mode} cannot zero a prefix of {c.prefix} bytes")
        if (c.grow_to and mode not in ("alloc", "zero_range")) or not 0 <= c.grow_to <= off + length:
            raise ValueError(f"a failed fallocate {mode} cannot grow the file to {c.grow_to}")
        eff: list[Prim] = []
        if c.prefix:
            eff.append(Prim.zero(off, c.prefix))
        if c.grow_to:
            eff.append(Prim.grow(c.grow_to))
        return -c.errno, tuple(eff)
    if c.op == "creat":
        return 0, (Prim.truncate(0),)
    if c.op == "truncate":
        return 0, (Prim.truncate(int(c.args["size"])),)
    if c.op == "fallocate":
        return 0, _fallocate_full(str(c.args["mode"]), int(c.args["off"]), int(c.args["len"]))
    assert c.data is not None
    n = len(c.data) if c.written is None else c.written
    return n, ((Prim.write(int(c.args["off"]), c.data[:n]),) if n else ())


def simulate(
    files: Sequence[str],
    threads: Sequence[Sequence[Call]],
    schedule: Sequence[int] = (),
    *,
    initial: Mapping[str, bytes] | None = None,
    page_size: int = 4096,
    stop_after: int | None = None,
) -> tuple[History, dict[str, bytes]]:
    """Run ``threads`` on the reference model under ``schedule`` and record the history.

    Each syscall takes three steps -- invoke, its linearization point (where its effect is applied
    or a pread reads), return -- except mwrite, which takes invoke, one step per page store (a
    store to a page wholly past EOF raises SIGBUS instead: the mwrite stops and returns -14), return.
    Step ``k`` advances thread ``schedule[k]`` (or the next unfinished thread after it, cyclically);
    after the schedule, the lowest unfinished thread runs. With ``stop_after`` the machine stops
    after that many steps: ops in progress never return. Deterministic: the same arguments give the
    same history. Returns the history and the final content of every file.
    """
    model = {f: bytearray((initial or {}).get(f, b"")) for f in files}
    recs: list[_Rec] = []
    clock = {"step": 0}

    def run(tid: int, calls: Sequence[Call]) -> Iterable[None]:
        for seq, c in enumerate(calls):
            rec = _Rec(index=len(recs), tid=tid, seq=seq, call=c, invoke=clock["step"])
            recs.append(rec)
            yield
            buf = model[c.file] if c.file is not None else bytearray()
            if c.op == "mwrite":
                assert c.data is not None and c.file is not None
                off, length = int(c.args["off"]), int(c.args["len"])
                rec.result = 0
                pos = off
                while pos < off + length:
                    end = min(off + length, (pos // page_size + 1) * page_size)
                    if pos // page_size * page_size >= len(buf):
                        rec.result = -EFAULT
                        yield
                        break
                    piece = c.data[pos - off : end - off]
                    apply_prim(buf, Prim.store(pos, piece))
                    rec.stores.append(Store(clock["step"], pos, piece))
                    yield
                    pos = end
            elif c.op == "pread":
                rec.out = read_expected(buf, int(c.args["off"]), int(c.args["len"]))
                rec.result = len(rec.out)
                yield
            else:
                result, eff = _effect_of_call(c)
                apply_effect(buf, eff)
                rec.result = result
                yield
            rec.ret = clock["step"]
            yield

    gens = [iter(run(t, calls)) for t, calls in enumerate(threads)]
    alive = [bool(calls) for calls in threads]
    k = 0
    while any(alive):
        if stop_after is not None and clock["step"] >= stop_after:
            break
        if k < len(schedule):
            t = schedule[k] % len(gens)
            while not alive[t]:
                t = (t + 1) % len(gens)
        else:
            t = alive.index(True)
        k += 1
        try:
            next(gens[t])
        except StopIteration:
            alive[t] = False
            continue
        clock["step"] += 1
    ops = []
    for rec in recs:
        if rec.ret is None:
            rec.result = None
            rec.out = None
        ops.append(rec.freeze())
    history = History(files=tuple(files), ops=tuple(ops), initial=dict(initial or {}))
    return history, {f: bytes(b) for f, b in model.items()}
