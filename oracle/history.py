"""The syscall history of one run: what every syscall was asked, when it ran and what it returned.

The runner records a :class:`History`; the oracle judges it (see :mod:`oracle.linearize`) together
with the final image, never with the simulator's state.

* :class:`HistoryOp` -- one syscall invocation. ``index`` orders invocations globally (it is the
  op's name in every report: "op 7"); ``tid``/``seq`` are the user thread and the position in it;
  ``invoke``/``ret`` are scheduler steps (``ret`` is ``None`` when the syscall never returned, e.g.
  the machine stopped); ``result`` is the return value (byte count, 0 or ``-errno``; ``None`` iff
  ``ret`` is ``None``; for ``mwrite`` 0 or ``-14`` = SIGBUS); ``data`` is what the kernel copied
  from the user buffer (``pwrite``/``mwrite``; for a ``pwrite`` normally ``len`` bytes of which
  only the first ``result`` were written -- at least those; bytes past ``data`` are unknown, and
  ``None`` means the whole buffer is unknown, as for an unfinished pwrite);
  ``out`` is what ``pread`` returned (``result`` bytes); ``stores`` (``mwrite`` only) is one
  :class:`Store` per page store that landed, in order, each an atomic event at its own step.
* :class:`History` -- the files, the ops sorted by ``index``, and each file's initial content.

Both are frozen dataclasses with a JSON round trip (``to_json()`` gives a JSON-compatible dict,
``from_json()`` takes that dict or its text) whose format is ``blkfuzz-history/1``; byte strings
are lowercase hex. :func:`History.from_json` and :meth:`History.validate` raise
:class:`~simkernel.errors.CorpusError` naming the bad place as a JSON path (``$.ops[3].ret``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from simkernel.errors import CorpusError

__all__ = [
    "ARG_KEYS",
    "EFAULT",
    "EXTRA_ARG_KEYS",
    "FALLOCATE_MODES",
    "FILE_OPS",
    "HISTORY_FORMAT",
    "OPS",
    "History",
    "HistoryOp",
    "Store",
]

HISTORY_FORMAT = "blkfuzz-history/1"

#: errno of SIGBUS/EFAULT: an mwrite that took SIGBUS returns ``-EFAULT``
EFAULT = 14

#: the integer/string arguments each op records in ``args`` (the file and the buffer are fields);
#: the same names as the program format (``fuzz.program.OP_FIELDS``), which the oracle does not import
ARG_KEYS: Mapping[str, tuple[str, ...]] = {
    "creat": (),
    "pwrite": ("off", "len"),
    "pread": ("off", "len"),
    "mwrite": ("off", "len"),
    "mmap": (),
    "munmap": (),
    "truncate": ("size",),
    "fallocate": ("mode", "off", "len"),
    "fsync": (),
    "fdatasync": (),
    "sync": (),
    "remount": (),
}
#: optional extra args: a pwrite whose buffer lies in a mapping names it (informational only)
EXTRA_ARG_KEYS: Mapping[str, tuple[str, ...]] = {"pwrite": ("map_file", "map_off")}
OPS: tuple[str, ...] = tuple(ARG_KEYS)
#: ops that name a file (all but sync and remount)
FILE_OPS: frozenset[str] = frozenset(op for op in OPS if op not in ("sync", "remount"))
FALLOCATE_MODES: tuple[str, ...] = ("alloc", "keep_size", "punch_hole", "zero_range", "zero_range_keep_size")


@dataclass(frozen=True)
class Store:
    """One page store of an ``mwrite`` that landed: ``data`` written at file offset ``off`` at
    scheduler step ``step``, atomically (only the bytes below the file size at that moment are file
    data, see :mod:`oracle.reference`)."""

    step: int
    off: int
    data: bytes

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "off": self.off, "data": self.data.hex()}


@dataclass(frozen=True)
class HistoryOp:
    """One syscall invocation (see the module docstring for the meaning of each field)."""

    index: int
    tid: int
    seq: int
    op: str
    file: str | None
    args: dict[str, int | str] = field(default_factory=dict, hash=False)
    data: bytes | None = None
    invoke: int = 0
    ret: int | None = None
    result: int | None = None
    out: bytes | None = None
    stores: tuple[Store, ...] = ()

    # -- views ------------------------------------------------------------------------------------

    @property
    def completed(self) -> bool:
        """The syscall returned (``ret`` is set)."""
        return self.ret is not None

    @property
    def ok(self) -> bool:
        """It returned a non-negative result."""
        return self.result is not None and self.result >= 0

    def arg(self, name: str) -> int:
        """The integer argument ``name`` (``KeyError`` if absent, ``TypeError`` if not an int)."""
        value = self.args[name]
        if not isinstance(value, int):
            raise TypeError(f"op {self.index}: argument {name} is not an integer")
        return value

    @property
    def mode(self) -> str:
        """The fallocate mode."""
        return str(self.args["mode"])

    def describe(self) -> str:
        """Short text naming the op for reports: ``T0 pwrite off=40959 len=1`` (the file is not
        named: reports are per file)."""
        parts = [f"T{self.tid} {self.op}"]
        if self.op == "fallocate":
            parts.append(str(self.args.get("mode")))
        keys = [k for k in ARG_KEYS.get(self.op, ()) if k != "mode" and k in self.args]
        parts.extend(f"{k}={self.args[k]}" for k in keys)
        return " ".join(parts)

    # -- JSON -------------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "index": self.index,
            "tid": self.tid,
            "seq": self.seq,
            "op": self.op,
            "file": self.file,
            "args": dict(self.args),
            "invoke": self.invoke,
            "ret": self.ret,
            "result": self.result,
        }
        if self.data is not None:
            out["data"] = self.data.hex()
        if self.out is not None:
            out["out"] = self.out.hex()
        if self.stores:
            out["stores"] = [s.to_json() for s in self.stores]
        return out


@dataclass(frozen=True)
class History:
    """A whole run's syscall history: ``files`` (names), ``ops`` (sorted by ``index``) and
    ``initial`` (each file's content before the first op; the setup creates files empty, so a
    missing entry means ``b""``)."""

    files: tuple[str, ...]
    ops: tuple[HistoryOp, ...]
    initial: dict[str, bytes] = field(default_factory=dict, hash=False)

    def initial_of(self, file: str) -> bytes:
        """The initial content of ``file`` (``b""`` when not given)."""
        return self.initial.get(file, b"")

    def ops_on(self, file: str) -> tuple[HistoryOp, ...]:
        """The ops that name ``file``, in index order."""
        return tuple(o for o in self.ops if o.file == file)

    def op(self, index: int) -> HistoryOp:
        """The op with this ``index`` (``KeyError`` if there is none)."""
        for o in self.ops:
            if o.index == index:
                return o
        raise KeyError(index)

    # -- JSON -------------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """JSON-compatible dict (``format``, ``files``, ``initial`` as hex, ``ops``)."""
        return {
            "format": HISTORY_FORMAT,
            "files": list(self.files),
            "initial": {f: self.initial[f].hex() for f in self.files if f in self.initial},
            "ops": [o.to_json() for o in self.ops],
        }

    def dumps(self) -> str:
        """Compact JSON text of :meth:`to_json`."""
        return json.dumps(self.to_json(), separators=(",", ":"))

    @classmethod
    def from_json(cls, doc: Any) -> History:
        """Load what :meth:`to_json` produced (a dict, or its JSON text); validates (see
        :meth:`validate`) and raises :class:`CorpusError` naming the bad place."""
        if isinstance(doc, str | bytes):
            try:
                doc = json.loads(doc)
            except (ValueError, UnicodeDecodeError) as exc:
                raise CorpusError(f"history is not valid JSON: {exc}", where="$") from None
        if not isinstance(doc, dict):
            raise CorpusError("history must be a JSON object", where="$")
        if doc.get("format") != HISTORY_FORMAT:
            raise CorpusError(f"not a {HISTORY_FORMAT} document", where="$.format")
        files = doc.get("files")
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise CorpusError("must be a list of strings", where="$.files")
        raw_initial = doc.get("initial", {})
        if not isinstance(raw_initial, dict):
            raise CorpusError("must be an object", where="$.initial")
        initial = {k: _hex(v, f"$.initial.{k}") for k, v in raw_initial.items()}
        raw_ops = doc.get("ops")
        if not isinstance(raw_ops, list):
            raise CorpusError("must be a list", where="$.ops")
        ops = tuple(_op_from_json(o, f"$.ops[{i}]") for i, o in enumerate(raw_ops))
        history = cls(files=tuple(files), ops=ops, initial=initial)
        history.validate()
        return history

    # -- validation -------------------------------------------------------------------------------

    def validate(self) -> None:
        """Check the invariants the oracle relies on; raise :class:`CorpusError` at the first
        violation. Checked: distinct files; ops sorted by strictly increasing ``index``; op names,
        files and ``args`` keys/types as in :data:`ARG_KEYS`; per thread ``seq`` = 0, 1, 2... in
        index order, ``invoke <= ret <= next invoke`` and only the last op may be unfinished;
        ``result`` is ``None`` iff ``ret`` is; buffers (``data`` covers ``result`` bytes of a
        pwrite, ``out`` has ``result`` bytes); stores only on mwrite, inside ``[off, off+len)``,
        at non-decreasing steps inside ``[invoke, ret]``; an mwrite returns 0 or ``-EFAULT``."""
        if len(set(self.files)) != len(self.files):
            raise CorpusError("file names are not distinct", where="$.files")
        for name in self.initial:
            if name not in self.files:
                raise CorpusError(f"initial content for unknown file {name!r}", where="$.initial")
        last: dict[int, HistoryOp] = {}
        prev_index = -1
        for i, o in enumerate(self.ops):
            where = f"$.ops[{i}]"
            if o.index <= prev_index:
                raise CorpusError("ops must be sorted by strictly increasing index", where=f"{where}.index")
            prev_index = o.index
            _validate_op(o, self.files, where)
            before = last.get(o.tid)
            expect_seq = 0 if before is None else before.seq + 1
            if o.seq != expect_seq:
                raise CorpusError(f"thread {o.tid} seq must be {expect_seq}", where=f"{where}.seq")
            if before is not None:
                if before.ret is None:
                    raise CorpusError(
                        f"thread {o.tid} invokes op {o.index} after op {before.index} never returned",
                        where=f"{where}.invoke",
                    )
                if o.invoke < before.ret:
                    raise CorpusError(
                        f"invoked at step {o.invoke} before the thread's previous op returned "
                        f"(step {before.ret})",
                        where=f"{where}.invoke",
                    )
            last[o.tid] = o


def _validate_op(o: HistoryOp, files: tuple[str, ...], where: str) -> None:
    if o.op not in ARG_KEYS:
        raise CorpusError(f"unknown op {o.op!r}", where=f"{where}.op")
    if o.op in FILE_OPS:
        if o.file not in files:
            raise CorpusError(f"unknown file {o.file!r}", where=f"{where}.file")
    elif o.file is not None:
        raise CorpusError(f"{o.op} names no file", where=f"{where}.file")
    keys = ARG_KEYS[o.op]
    extra = EXTRA_ARG_KEYS.get(o.op, ())
    if not set(keys) <= set(o.args) <= set(keys) | set(extra):
        raise CorpusError(
            f"args of {o.op} must be {list(keys)} (optionally {list(extra)})", where=f"{where}.args"
        )
    for k in o.args:
        v = o.args[k]
        if k == "map_file":
            if not isinstance(v, str):
                raise CorpusError("must be a string", where=f"{where}.args.{k}")
        elif k == "mode":
            if v not in FALLOCATE_MODES:
                raise CorpusError(f"unknown fallocate mode {v!r}", where=f"{where}.args.mode")
        elif type(v) is not int or v < 0:
            raise CorpusError("must be a non-negative integer", where=f"{where}.args.{k}")
    if o.invoke < 0 or (o.ret is not None and o.ret < o.invoke):
        raise CorpusError("needs 0 <= invoke <= ret", where=f"{where}.ret")
    if (o.result is None) != (o.ret is None):
        raise CorpusError("result must be null exactly when ret is null", where=f"{where}.result")
    n = o.result
    if o.op in ("pwrite", "pread") and n is not None and n > o.arg("len"):
        raise CorpusError(f"result {n} exceeds len", where=f"{where}.result")
    if o.op == "pwrite":
        # data may stop short of len (what was copied before a fault); it must cover what was written
        written = n if n is not None and n > 0 else 0
        if (o.data is None and written) or (
            o.data is not None and not written <= len(o.data) <= o.arg("len")
        ):
            raise CorpusError(
                "pwrite data must cover the bytes written and not exceed len", where=f"{where}.data"
            )
    elif o.op == "mwrite":
        if n is not None and n not in (0, -EFAULT):
            raise CorpusError("mwrite returns 0 or -14 (SIGBUS)", where=f"{where}.result")
    elif o.data is not None:
        raise CorpusError(f"{o.op} has no data", where=f"{where}.data")
    if o.op == "pread" and n is not None and n >= 0:
        if o.out is None or len(o.out) != n:
            raise CorpusError("pread out must be result bytes", where=f"{where}.out")
    elif o.out is not None:
        raise CorpusError("only a pread that returned bytes has out", where=f"{where}.out")
    if o.stores and o.op != "mwrite":
        raise CorpusError(f"{o.op} has no stores", where=f"{where}.stores")
    prev_step = o.invoke
    for pos, s in enumerate(o.stores):
        w = f"{where}.stores[{pos}]"
        if s.step < prev_step or (o.ret is not None and s.step > o.ret):
            raise CorpusError("store steps must be non-decreasing inside [invoke, ret]", where=f"{w}.step")
        prev_step = s.step
        off, length = o.arg("off"), o.arg("len")
        if s.off < off or s.off + len(s.data) > off + length:
            raise CorpusError("store lies outside the mwrite's range", where=f"{w}.off")


def _hex(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise CorpusError("must be a hex string", where=where)
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise CorpusError("is not valid hex", where=where) from None


def _int(obj: dict[str, Any], key: str, where: str, *, null: bool = False) -> Any:
    v = obj.get(key)
    if v is None and null:
        return None
    if type(v) is not int:
        raise CorpusError("must be an integer" + (" or null" if null else ""), where=f"{where}.{key}")
    return v


def _op_from_json(obj: Any, where: str) -> HistoryOp:
    if not isinstance(obj, dict):
        raise CorpusError("must be an object", where=where)
    op = obj.get("op")
    if not isinstance(op, str):
        raise CorpusError("must be a string", where=f"{where}.op")
    file = obj.get("file")
    if file is not None and not isinstance(file, str):
        raise CorpusError("must be a string or null", where=f"{where}.file")
    args = obj.get("args", {})
    if not isinstance(args, dict) or not all(type(v) in (int, str) for v in args.values()):
        raise CorpusError("must be an object of integers and strings", where=f"{where}.args")
    stores_raw = obj.get("stores", [])
    if not isinstance(stores_raw, list):
        raise CorpusError("must be a list", where=f"{where}.stores")
    stores = []
    for k, s in enumerate(stores_raw):
        w = f"{where}.stores[{k}]"
        if not isinstance(s, dict):
            raise CorpusError("must be an object", where=w)
        data = _hex(s.get("data"), f"{w}.data")
        stores.append(Store(step=_int(s, "step", w), off=_int(s, "off", w), data=data))
    return HistoryOp(
        index=_int(obj, "index", where),
        tid=_int(obj, "tid", where),
        seq=_int(obj, "seq", where),
        op=op,
        file=file,
        args=dict(args),
        data=_hex(obj["data"], f"{where}.data") if obj.get("data") is not None else None,
        invoke=_int(obj, "invoke", where),
        ret=_int(obj, "ret", where, null=True),
        result=_int(obj, "result", where, null=True),
        out=_hex(obj["out"], f"{where}.out") if obj.get("out") is not None else None,
        stores=tuple(stores),
    )
