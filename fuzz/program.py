"""The program format ``blkfuzz-program/1``: loading, validation, canonical dumping.

A *program* is a JSON document naming the files a run uses, the user threads (lists of syscalls)
and the schedule (scheduler decisions). See ``docs/program-format.md`` for the format reference.

In memory a program is a tree of frozen dataclasses (:class:`Program`, :class:`Syscall`,
:class:`DataSpec`, :class:`Expect`), so the fuzzer and the minimizer edit it with
:func:`dataclasses.replace` or the ``Program.with_*`` helpers and may hash and compare programs.

Everything that is not a valid program is rejected by :func:`load_program` with a
:class:`~simkernel.errors.ProgramError` (also a ``ValueError``) whose ``where`` is a JSON path such as
``$.threads[0][2].off`` and whose message is one line saying what is wrong there.
Constructing the dataclasses directly does not validate; :meth:`Program.validate` does.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import math
import os
import re
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from simkernel.config import Config
from simkernel.errors import GeometryError, ProgramError

__all__ = [
    "ACTORS",
    "FALLOCATE_MODES",
    "FORMAT",
    "MAX_FILES",
    "MAX_LEN",
    "MAX_OFF",
    "MAX_SCHEDULE_LEN",
    "MAX_SCHEDULE_VALUE",
    "MAX_SEED",
    "MAX_SYSCALLS_PER_THREAD",
    "MAX_THREADS",
    "OPS",
    "OP_FIELDS",
    "TOP_KEYS",
    "VERDICTS",
    "DataSpec",
    "Expect",
    "Program",
    "Syscall",
    "dump_program",
    "load_program",
    "load_program_file",
]

#: the exact value of the top-level ``"format"`` key
FORMAT = "blkfuzz-program/1"
#: largest ``off`` / ``size`` (and map offset) a syscall may name
MAX_OFF = 2**24
#: largest ``len`` a syscall may name; so every ``off + len <= MAX_OFF + MAX_LEN``
MAX_LEN = 2**20
#: seeds are non-negative and below 2**64 so that any JSON reader can hold them exactly as u64
MAX_SEED = 2**64 - 1
MAX_FILES = 8
MAX_THREADS = 8
MAX_SYSCALLS_PER_THREAD = 256
MAX_SCHEDULE_LEN = 100_000
#: schedule entries are < 2**16
MAX_SCHEDULE_VALUE = 2**16 - 1

#: background actors a schedule may run, in canonical order (also the default of ``"actors"``)
ACTORS: tuple[str, ...] = (
    "writeback",
    "complete",
    "reclaim",
    "drop_caches",
    "fail_alloc",
    "fail_reserve",
    "fail_write",
    "fail_read",
)
FALLOCATE_MODES: tuple[str, ...] = ("alloc", "keep_size", "punch_hole", "zero_range", "zero_range_keep_size")

#: the keys each op takes besides ``"op"``, in canonical (documented) order
OP_FIELDS: Mapping[str, tuple[str, ...]] = {
    "creat": ("file",),
    "pwrite": ("file", "off", "len", "data"),
    "pread": ("file", "off", "len"),
    "mwrite": ("file", "off", "len", "data"),
    "mmap": ("file",),
    "munmap": ("file",),
    "truncate": ("file", "size"),
    "fallocate": ("file", "mode", "off", "len"),
    "fsync": ("file",),
    "fdatasync": ("file",),
    "sync": (),
    "remount": (),
}
OPS: tuple[str, ...] = tuple(OP_FIELDS)

#: top-level keys in canonical order
TOP_KEYS: tuple[str, ...] = (
    "format",
    "config",
    "variants",
    "actors",
    "files",
    "threads",
    "schedule",
    "expect",
    "meta",
)
VERDICTS: tuple[str, ...] = ("clean", "finding")

_FILE_RE = re.compile(r"[a-z0-9_]{1,16}")
_HEX_RE = re.compile(r"[0-9a-f]*")
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
# a built-in variant name ("iomap-nocookie") or an import path "pkg.module:Class" (attribute may be dotted)
_VARIANT_RE = re.compile(rf"[a-z0-9][a-z0-9_-]{{0,63}}|{_IDENT}(?:\.{_IDENT})*:{_IDENT}(?:\.{_IDENT})*")
_KEY_RE = re.compile(_IDENT)


# --------------------------------------------------------------------------------------------------
# dataclasses


@dataclass(frozen=True)
class DataSpec:
    """Where the bytes of a ``pwrite``/``mwrite`` user buffer come from; exactly one kind is set.

    * ``seed``: the buffer is :func:`fuzz.data.pattern` ``(seed, len)`` (JSON ``{"seed": n}``);
    * ``hex``: the buffer is ``bytes.fromhex(hex)``, lowercase, exactly ``2 * len`` digits
      (JSON ``{"hex": "a5ff"}``);
    * ``map_file`` + ``map_off``: the buffer lies in a shared mapping of file ``map_file`` at offset
      ``map_off`` (JSON ``{"map": {"file": F, "off": n}}``; pwrite only).
    """

    seed: int | None = None
    hex: str | None = None
    map_file: str | None = None
    map_off: int | None = None

    @classmethod
    def from_seed(cls, seed: int) -> DataSpec:
        """``{"seed": seed}``."""
        return cls(seed=seed)

    @classmethod
    def from_bytes(cls, data: bytes) -> DataSpec:
        """``{"hex": data.hex()}``: literal buffer contents."""
        return cls(hex=data.hex())

    @classmethod
    def mapped(cls, file: str, off: int) -> DataSpec:
        """``{"map": {"file": file, "off": off}}``: the buffer is a shared mapping of ``file``."""
        return cls(map_file=file, map_off=off)

    @property
    def kind(self) -> str:
        """``"seed"``, ``"hex"`` or ``"map"`` (for a well-formed spec: the one that is set)."""
        if self.seed is not None:
            return "seed"
        if self.hex is not None:
            return "hex"
        return "map"

    def to_json(self) -> dict[str, Any]:
        """The JSON object; every set field is emitted, so a malformed spec fails re-validation."""
        out: dict[str, Any] = {}
        if self.seed is not None:
            out["seed"] = self.seed
        if self.hex is not None:
            out["hex"] = self.hex
        if self.map_file is not None or self.map_off is not None:
            ref: dict[str, Any] = {}
            if self.map_file is not None:
                ref["file"] = self.map_file
            if self.map_off is not None:
                ref["off"] = self.map_off
            out["map"] = ref
        return out


@dataclass(frozen=True)
class Syscall:
    """One syscall of a user thread. ``op`` is one of :data:`OPS`; the fields it uses are
    ``OP_FIELDS[op]`` and every other field is ``None``:

    ========================== ====================================
    op                         fields
    ========================== ====================================
    creat, mmap, munmap,       file
    fsync, fdatasync
    pwrite, mwrite             file, off, len, data
    pread                      file, off, len
    truncate                   file, size
    fallocate                  file, mode, off, len (len >= 1)
    sync, remount              (none)
    ========================== ====================================
    """

    op: str
    file: str | None = None
    off: int | None = None
    len: int | None = None
    size: int | None = None
    mode: str | None = None
    data: DataSpec | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON object, keys in canonical order; every non-``None`` field is emitted (fields the
        op does not take come last, so that re-validating a malformed syscall names them)."""
        out: dict[str, Any] = {"op": self.op}
        order = OP_FIELDS.get(self.op, ())
        for name in order + tuple(n for n in _SYSCALL_FIELDS if n not in order):
            value = getattr(self, name)
            if value is not None:
                out[name] = value.to_json() if isinstance(value, DataSpec) else value
        return out


_SYSCALL_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Syscall) if f.name != "op")


@dataclass(frozen=True)
class Expect:
    """The recorded verdict of a corpus program: ``verdict`` is ``"clean"`` (``signature`` is None) or
    ``"finding"`` (``signature`` is the finding's signature string)."""

    verdict: str
    signature: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"verdict": self.verdict}
        if self.signature is not None:
            out["signature"] = self.signature
        return out


@dataclass(frozen=True)
class Program:
    """A ``blkfuzz-program/1`` document. Programs from :func:`load_program`, :meth:`validate` and the
    ``with_*`` helpers are valid; the constructor and :func:`dataclasses.replace` do not check.

    ``files``: file names; ``threads``: one tuple of :class:`Syscall` per user thread;
    ``schedule``: scheduler decisions; ``config``: the machine; ``variants``: variant names or
    import paths; ``actors``: background actors the schedule may use (order as given);
    ``expect``: recorded verdict or None; ``meta``: free-form JSON object (not part of
    :meth:`digest`, not part of the hash; treat it as read-only).
    """

    files: tuple[str, ...]
    threads: tuple[tuple[Syscall, ...], ...]
    schedule: tuple[int, ...] = ()
    config: Config = field(default_factory=Config)
    variants: tuple[str, ...] = ()
    actors: tuple[str, ...] = ACTORS
    expect: Expect | None = None
    meta: dict[str, Any] = field(default_factory=dict, hash=False)

    # -- views ------------------------------------------------------------------------------------

    @property
    def n_threads(self) -> int:
        return len(self.threads)

    @property
    def n_syscalls(self) -> int:
        """Total number of syscalls over all threads."""
        return sum(len(t) for t in self.threads)

    def iter_syscalls(self) -> Iterator[tuple[int, int, Syscall]]:
        """Yield ``(thread index, syscall index, syscall)`` in thread order, then program order."""
        for t, thread in enumerate(self.threads):
            for i, call in enumerate(thread):
                yield t, i, call

    # -- serialization ----------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The canonical JSON object: keys in documented order; ``config``, ``variants``, ``actors``
        and ``schedule`` always present; ``expect`` only if set; ``meta`` only if non-empty."""
        out: dict[str, Any] = {
            "format": FORMAT,
            "config": self.config.to_json(),
            "variants": list(self.variants),
            "actors": list(self.actors),
            "files": list(self.files),
            "threads": [[call.to_json() for call in thread] for thread in self.threads],
            "schedule": list(self.schedule),
        }
        if self.expect is not None:
            out["expect"] = self.expect.to_json()
        if self.meta:
            # a copy: the caller may edit the returned document without touching this frozen program
            out["meta"] = copy.deepcopy(self.meta)
        return out

    def digest(self) -> str:
        """Hex sha256 of the compact canonical JSON of this program *without* ``meta``.

        ``meta`` is excluded because it annotates a program (who found it, when) without changing
        what it does: the same program found twice must land in the same corpus file.
        """
        doc = self.to_json()
        doc.pop("meta", None)
        text = json.dumps(doc, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
        return hashlib.sha256(text.encode("ascii")).hexdigest()

    def validate(self) -> Program:
        """Check this program against the format; return an equal program with normalized
        containers (tuples). Raises :class:`ProgramError` naming the first problem."""
        return load_program(self.to_json())

    # -- edits (all validate) ---------------------------------------------------------------------

    def with_threads(self, threads: Sequence[Sequence[Syscall]]) -> Program:
        """This program with ``threads`` replaced; validated (raises :class:`ProgramError`)."""
        return Program(
            files=self.files,
            threads=tuple(tuple(t) for t in threads),
            schedule=self.schedule,
            config=self.config,
            variants=self.variants,
            actors=self.actors,
            expect=self.expect,
            meta=self.meta,
        ).validate()

    def with_schedule(self, schedule: Sequence[int]) -> Program:
        """This program with ``schedule`` replaced; validated (raises :class:`ProgramError`)."""
        return Program(
            files=self.files,
            threads=self.threads,
            schedule=tuple(schedule),
            config=self.config,
            variants=self.variants,
            actors=self.actors,
            expect=self.expect,
            meta=self.meta,
        ).validate()

    def with_variants(self, variants: Sequence[str]) -> Program:
        """This program with ``variants`` (names or import paths) instead of its own; validated."""
        return replace(self, variants=tuple(variants)).validate()

    def with_config(self, config: Config | None = None, /, **changes: Any) -> Program:
        """This program with its config replaced by ``config`` (if given) and then the fields in
        ``changes`` (names of :class:`Config` fields) changed; validated (raises
        :class:`ProgramError` at ``$.config.<field>``, e.g. for an impossible geometry)."""
        base = self.config if config is None else config
        unknown = [k for k in changes if k not in Config.field_names()]
        if unknown:
            raise ProgramError(f"{unknown[0]!r} is not a Config field", where=_key("$.config", unknown[0]))
        new = base.with_(**changes) if changes else base
        return Program(
            files=self.files,
            threads=self.threads,
            schedule=self.schedule,
            config=new,
            variants=self.variants,
            actors=self.actors,
            expect=self.expect,
            meta=self.meta,
        ).validate()


# --------------------------------------------------------------------------------------------------
# loading


def load_program(text_or_dict: str | bytes | Mapping[str, Any], *, source: str = "<program>") -> Program:
    """Parse and validate a program.

    ``text_or_dict`` is JSON text (``str``, or ``bytes`` in UTF-8) or an already-parsed JSON object
    (a mapping; JSON arrays may be lists or tuples). ``source`` names where it came from; it is
    attached to any error as a note (``"in <source>"``, unless it is the default); ``where`` stays a pure
    JSON path.

    Returns the :class:`Program`. Raises :class:`ProgramError` (a ``ValueError``) for invalid JSON text
    (message gives line and column, ``where="$"``) and for anything that does not follow the format.
    """
    try:
        if isinstance(text_or_dict, str | bytes | bytearray):
            doc: Any = _parse_json(text_or_dict)
        else:
            doc = text_or_dict
        return _load_program(doc)
    except ProgramError as e:
        if source != "<program>":
            e.add_note(f"in {source}")
        raise


def load_program_file(path: str | os.PathLike[str]) -> Program:
    """Read and validate the program in file ``path`` (UTF-8 JSON). Raises :class:`ProgramError` for
    a bad program and lets ``OSError`` through if the file cannot be read."""
    with open(path, "rb") as f:
        data = f.read()
    return load_program(data, source=os.fspath(path))


class _JsonObject(dict[str, Any]):
    """A parsed JSON object that remembers keys that occurred more than once (json keeps the last one
    silently; for a hand-edited program that hides typos, so validation rejects it)."""

    duplicates: tuple[str, ...] = ()


def _pairs_hook(pairs: list[tuple[str, Any]]) -> _JsonObject:
    obj = _JsonObject(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dups: list[str] = []
        for k, _ in pairs:
            if k in seen and k not in dups:
                dups.append(k)
            seen.add(k)
        obj.duplicates = tuple(dups)
    return obj


def _parse_json(text: str | bytes | bytearray) -> Any:
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as e:
            raise ProgramError(f"not UTF-8 text (byte {e.start})", where="$") from None
    try:
        return json.loads(text, object_pairs_hook=_pairs_hook)
    except json.JSONDecodeError as e:
        raise ProgramError(f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}", where="$") from None
    except (ValueError, RecursionError) as e:
        # e.g. an integer literal longer than sys.get_int_max_str_digits(), or absurd nesting
        raise ProgramError(f"invalid JSON: {str(e).splitlines()[0]}", where="$") from None


# -- small validators: each returns the checked value or raises ProgramError at ``where`` -----------


def _show(value: Any) -> str:
    """``value`` as JSON for a one-line message, cut to 40 characters."""
    try:
        text = json.dumps(value, ensure_ascii=True)
    except (TypeError, ValueError):
        text = repr(value)
    text = text.replace("\n", " ")
    return text if len(text) <= 40 else text[:37] + "..."


def _key(where: str, key: str) -> str:
    return f"{where}.{key}" if _KEY_RE.fullmatch(key) else f"{where}[{json.dumps(key)}]"


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ProgramError(f"must be a JSON object, got {_show(value)}", where=where)
    for k in value:
        if not isinstance(k, str):
            raise ProgramError(f"object keys must be strings, got {_show(k)}", where=where)
    dups = getattr(value, "duplicates", ())
    if dups:
        raise ProgramError("duplicate key", where=_key(where, dups[0]))
    return value


def _reject_unknown(obj: Mapping[str, Any], allowed: Sequence[str], where: str, context: str = "") -> None:
    for k in obj:
        if k not in allowed:
            close = difflib.get_close_matches(k, allowed, n=1)
            hint = f'did you mean "{close[0]}"?' if close else "allowed: " + (", ".join(allowed) or "none")
            raise ProgramError(f"unknown key{context} ({hint})", where=_key(where, k))


def _require(obj: Mapping[str, Any], key: str, where: str, context: str = "") -> Any:
    if key not in obj:
        raise ProgramError(f"required key is missing{context}", where=_key(where, key))
    return obj[key]


def _array(value: Any, where: str, lo: int, hi: int, what: str) -> Sequence[Any]:
    if not isinstance(value, list | tuple):
        raise ProgramError(f"must be a list of {what}, got {_show(value)}", where=where)
    if not lo <= len(value) <= hi:
        raise ProgramError(f"must have {lo}..{hi} {what}, got {len(value)}", where=where)
    return value


def _is_int(value: Any) -> bool:
    # bool is an int subclass; true/false must not pass for 1/0
    return isinstance(value, int) and not isinstance(value, bool)


def _uint(value: Any, where: str, *, limit: int | None = None, limit_name: str = "", minimum: int = 0) -> int:
    """A non-negative int (``>= minimum``) that is ``<= limit`` if a limit is given."""
    if not _is_int(value) or value < 0:
        raise ProgramError(f"must be a non-negative integer, got {_show(value)}", where=where)
    if value < minimum:
        raise ProgramError(f"must be an integer >= {minimum}, got {value}", where=where)
    if limit is not None and value > limit:
        raise ProgramError(f"must be <= {limit_name} ({limit}), got {value}", where=where)
    return int(value)


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ProgramError(f"must be a string, got {_show(value)}", where=where)
    return value


def _choice(value: Any, where: str, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ProgramError(f"must be one of {', '.join(choices)}; got {_show(value)}", where=where)
    return value


# -- the parts of a program -------------------------------------------------------------------------

# Config field -> Python type, from the annotations so a new Config field is type-checked without edits
_CONFIG_TYPES: dict[str, Any] = typing.get_type_hints(Config)


def _load_config(value: Any, where: str) -> Config:
    obj = _object(value, where)
    names = Config.field_names()
    _reject_unknown(obj, names, where)
    kwargs: dict[str, Any] = {}
    for name in names:
        if name not in obj:
            continue
        w = _key(where, name)
        v = obj[name]
        typ = _CONFIG_TYPES.get(name)
        if typ is bool:
            if not isinstance(v, bool):
                raise ProgramError(f"must be true or false, got {_show(v)}", where=w)
        elif typ is int:
            _uint(v, w)
        elif typ is str:
            _string(v, w)
        elif isinstance(typ, type) and not isinstance(v, typ):
            raise ProgramError(f"must be of type {typ.__name__}, got {_show(v)}", where=w)
        kwargs[name] = v
    config = Config(**kwargs)
    try:
        config.validate()
    except GeometryError as e:
        raise ProgramError(e.message, where=_key(where, e.where) if e.where else where) from None
    return config


def _load_variants(value: Any, where: str) -> tuple[str, ...]:
    items = _array(value, where, 0, 64, "variants")
    out: list[str] = []
    for i, v in enumerate(items):
        w = f"{where}[{i}]"
        name = _string(v, w)
        if not _VARIANT_RE.fullmatch(name):
            raise ProgramError(
                f'must be a variant name like "iomap-nocookie" or an import path like '
                f'"pkg.module:Class", got {_show(name)}',
                where=w,
            )
        if name in out:
            raise ProgramError(f"duplicate variant {_show(name)}", where=w)
        out.append(name)
    return tuple(out)


def _load_actors(value: Any, where: str) -> tuple[str, ...]:
    items = _array(value, where, 0, len(ACTORS), "actors")
    out: list[str] = []
    for i, v in enumerate(items):
        w = f"{where}[{i}]"
        name = _choice(v, w, ACTORS)
        if name in out:
            raise ProgramError(f"duplicate actor {_show(name)}", where=w)
        out.append(name)
    return tuple(out)


def _load_files(value: Any, where: str) -> tuple[str, ...]:
    items = _array(value, where, 1, MAX_FILES, "file names")
    out: list[str] = []
    for i, v in enumerate(items):
        w = f"{where}[{i}]"
        name = _string(v, w)
        if not _FILE_RE.fullmatch(name):
            raise ProgramError(f"must match [a-z0-9_]{{1,16}}, got {_show(name)}", where=w)
        if name in out:
            raise ProgramError(f"duplicate file name {_show(name)}", where=w)
        out.append(name)
    return tuple(out)


def _file_ref(value: Any, where: str, files: tuple[str, ...]) -> str:
    name = _string(value, where)
    if name not in files:
        raise ProgramError(f"unknown file {_show(name)} (files: {', '.join(files)})", where=where)
    return name


def _load_data(value: Any, where: str, files: tuple[str, ...], op: str, length: int) -> DataSpec:
    obj = _object(value, where)
    kinds = ("seed", "hex", "map")
    _reject_unknown(obj, kinds, where)
    present = [k for k in kinds if k in obj]
    if len(present) != 1:
        raise ProgramError(
            f"must have exactly one of seed, hex, map; got {', '.join(present) or 'none'}", where=where
        )
    kind = present[0]
    w = _key(where, kind)
    v = obj[kind]
    if kind == "seed":
        return DataSpec(seed=_uint(v, w, limit=MAX_SEED, limit_name="2**64 - 1"))
    if kind == "hex":
        text = _string(v, w)
        if not _HEX_RE.fullmatch(text):
            raise ProgramError(f"must be lowercase hex digits [0-9a-f], got {_show(text)}", where=w)
        if len(text) != 2 * length:
            raise ProgramError(f"must have exactly 2*len = {2 * length} hex digits, got {len(text)}", where=w)
        return DataSpec(hex=text)
    if op != "pwrite":
        raise ProgramError(f'"map" data is only allowed for pwrite, not {op}', where=w)
    ref = _object(v, w)
    _reject_unknown(ref, ("file", "off"), w)
    file = _file_ref(_require(ref, "file", w), _key(w, "file"), files)
    off = _uint(_require(ref, "off", w), _key(w, "off"), limit=MAX_OFF, limit_name="MAX_OFF")
    return DataSpec(map_file=file, map_off=off)


def _load_syscall(value: Any, where: str, files: tuple[str, ...], n_threads: int) -> Syscall:
    obj = _object(value, where)
    op = _require(obj, "op", where)
    if not isinstance(op, str) or op not in OP_FIELDS:
        raise ProgramError(f"must be one of {', '.join(OPS)}; got {_show(op)}", where=_key(where, "op"))
    allowed = OP_FIELDS[op]
    context = f' for op "{op}"'
    _reject_unknown(obj, ("op", *allowed), where, context)
    if op == "remount" and n_threads != 1:
        raise ProgramError(
            f"remount is only valid in a program with exactly one thread (this one has {n_threads})",
            where=_key(where, "op"),
        )
    kwargs: dict[str, Any] = {}
    for name in allowed:
        w = _key(where, name)
        v = _require(obj, name, where, f" (op {op} needs {', '.join(allowed)})")
        if name == "file":
            kwargs[name] = _file_ref(v, w, files)
        elif name == "off":
            kwargs[name] = _uint(v, w, limit=MAX_OFF, limit_name="MAX_OFF")
        elif name == "len":
            # a zero-length fallocate is EINVAL in Linux; zero-length reads and writes are fine
            minimum = 1 if op == "fallocate" else 0
            kwargs[name] = _uint(v, w, limit=MAX_LEN, limit_name="MAX_LEN", minimum=minimum)
        elif name == "size":
            kwargs[name] = _uint(v, w, limit=MAX_OFF, limit_name="MAX_OFF")
        elif name == "mode":
            kwargs[name] = _choice(v, w, FALLOCATE_MODES)
        elif name == "data":
            kwargs[name] = _load_data(v, w, files, op, kwargs["len"])
    return Syscall(op=op, **kwargs)


def _load_threads(value: Any, where: str, files: tuple[str, ...]) -> tuple[tuple[Syscall, ...], ...]:
    threads = _array(value, where, 1, MAX_THREADS, "threads")
    out: list[tuple[Syscall, ...]] = []
    for t, thread in enumerate(threads):
        wt = f"{where}[{t}]"
        calls = _array(thread, wt, 0, MAX_SYSCALLS_PER_THREAD, "syscalls")
        out.append(tuple(_load_syscall(c, f"{wt}[{i}]", files, len(threads)) for i, c in enumerate(calls)))
    return tuple(out)


def _load_schedule(value: Any, where: str) -> tuple[int, ...]:
    items = _array(value, where, 0, MAX_SCHEDULE_LEN, "schedule entries")
    for i, v in enumerate(items):
        if not _is_int(v) or not 0 <= v <= MAX_SCHEDULE_VALUE:
            raise ProgramError(
                f"must be an integer in 0..{MAX_SCHEDULE_VALUE}, got {_show(v)}", where=f"{where}[{i}]"
            )
    return tuple(int(v) for v in items)


def _load_expect(value: Any, where: str) -> Expect:
    obj = _object(value, where)
    verdict = _choice(_require(obj, "verdict", where), _key(where, "verdict"), VERDICTS)
    if verdict == "clean":
        _reject_unknown(obj, ("verdict",), where, ' for verdict "clean"')
        return Expect(verdict)
    _reject_unknown(obj, ("verdict", "signature"), where)
    w = _key(where, "signature")
    signature = _string(_require(obj, "signature", where, ' for verdict "finding"'), w)
    if not signature or "\n" in signature:
        raise ProgramError("must be a non-empty one-line string", where=w)
    return Expect(verdict, signature)


def _load_meta(value: Any, where: str) -> Any:
    """A deep, plain-JSON copy of ``value`` (dicts, lists, str, finite numbers, bools, None)."""
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ProgramError(f"must be a finite number (JSON has no {value}), got {value}", where=where)
        return value
    if isinstance(value, list | tuple):
        return [_load_meta(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        obj = _object(value, where)
        return {k: _load_meta(v, _key(where, k)) for k, v in obj.items()}
    raise ProgramError(f"is not a JSON value: {_show(value)}", where=where)


def _load_program(doc: Any) -> Program:
    obj = _object(doc, "$")
    _reject_unknown(obj, TOP_KEYS, "$")
    fmt = _require(obj, "format", "$")
    if fmt != FORMAT:
        raise ProgramError(f'must be "{FORMAT}", got {_show(fmt)}', where="$.format")
    config = _load_config(obj["config"], "$.config") if "config" in obj else Config()
    variants = _load_variants(obj["variants"], "$.variants") if "variants" in obj else ()
    actors = _load_actors(obj["actors"], "$.actors") if "actors" in obj else ACTORS
    files = _load_files(_require(obj, "files", "$"), "$.files")
    threads = _load_threads(_require(obj, "threads", "$"), "$.threads", files)
    schedule = _load_schedule(obj["schedule"], "$.schedule") if "schedule" in obj else ()
    expect = _load_expect(obj["expect"], "$.expect") if "expect" in obj else None
    meta: dict[str, Any] = {}
    if "meta" in obj:
        _object(obj["meta"], "$.meta")
        meta = _load_meta(obj["meta"], "$.meta")
    return Program(
        files=files,
        threads=threads,
        schedule=schedule,
        config=config,
        variants=variants,
        actors=actors,
        expect=expect,
        meta=meta,
    )


# --------------------------------------------------------------------------------------------------
# dumping

_WIDTH = 100


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=True, allow_nan=False, separators=(", ", ": "))


def _dump_config(config: dict[str, Any]) -> str:
    lines = [f"    {json.dumps(k)}: {_compact(v)}" for k, v in config.items()]
    return "{\n" + ",\n".join(lines) + "\n  }"


def _dump_threads(threads: list[list[dict[str, Any]]]) -> str:
    parts: list[str] = []
    for thread in threads:
        if not thread:
            parts.append("    []")
        else:
            calls = ",\n".join(f"      {_compact(c)}" for c in thread)
            parts.append("    [\n" + calls + "\n    ]")
    return "[\n" + ",\n".join(parts) + "\n  ]"


def _dump_schedule(schedule: list[int]) -> str:
    one_line = _compact(schedule)
    if len(one_line) <= _WIDTH - len('  "schedule": ,'):
        return one_line
    # long schedules: many numbers per line, wrapped, so a 100k-entry schedule stays a few thousand lines
    lines: list[str] = []
    line = ""
    for v in schedule:
        item = f"{v},"
        if line and len(line) + 1 + len(item) > _WIDTH - 4:
            lines.append(line)
            line = item
        else:
            line = f"{line} {item}" if line else item
    lines.append(line)
    body = "\n".join(f"    {ln}" for ln in lines)
    return "[\n" + body[:-1] + "\n  ]"  # drop the last trailing comma


def dump_program(p: Program) -> str:
    """The canonical, human-readable text of ``p``: 2-space indent, keys in documented order, one
    config field per line, one syscall per line, schedule wrapped at 100 columns, ASCII only,
    trailing newline. ``load_program(dump_program(p)) == p`` for every valid ``p``."""
    doc = p.to_json()
    items: list[str] = []
    for key, value in doc.items():
        if key == "config":
            text = _dump_config(value)
        elif key == "threads":
            text = _dump_threads(value)
        elif key == "schedule":
            text = _dump_schedule(value)
        elif key == "meta":
            # keys sorted: meta has no documented order, and sorting makes the text canonical
            text = json.dumps(
                value, ensure_ascii=True, allow_nan=False, separators=(", ", ": "), sort_keys=True
            )
            if len(text) > _WIDTH - len('  "meta": '):
                text = json.dumps(value, ensure_ascii=True, allow_nan=False, indent=2, sort_keys=True)
                text = text.replace("\n", "\n  ")
        else:
            text = _compact(value)
        items.append(f"  {json.dumps(key)}: {text}")
    return "{\n" + ",\n".join(items) + "\n}\n"
