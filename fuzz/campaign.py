"""The campaign directory: everything a long fuzzing campaign keeps, on disk, crash-safe.

Layout (``blkfuzz-campaign/1``)::

    DIR/campaign.json          what is being fuzzed (variants) and the format version
    DIR/lock                   held (flock) by the hub while the campaign runs
    DIR/corpus/<digest>.json   content-addressed programs: the inputs that added coverage
    DIR/findings/<id>/         one directory per finding signature:
        finding.json             category, title, signature, counts, first/last seen, evidence
        original-<digest>.json   reproducers as found (up to MAX_ORIGINALS)
        minimized.json           the minimized reproducer (when minimization finished)
        report.txt               the finding and its timeline, for people
    DIR/flaky/<id>/            findings whose re-execution did not reproduce them (same files)
    DIR/stats.jsonl            one JSON object per line: the campaign's time series
    DIR/errors/<digest>.json   programs on which the simulator itself raised (bugs in blkfuzz)

The hub is the single writer. Every file is written atomically (a temporary file in the same
directory, fsync, rename, fsync of the directory), so a ``kill -9`` at any instant leaves either the
old or the new file and never a torn one; ``stats.jsonl`` is append-only and a torn last line is
ignored on reading. Files the campaign did not write (a malformed program, an editor's backup, a
foreign JSON document) are reported and skipped, never fatal: a campaign must not die on its own
directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fuzz.program import Program, dump_program, load_program
from simkernel.errors import BlkfuzzError, CampaignError, CorpusError

__all__ = [
    "CAMPAIGN_FORMAT",
    "MAX_ORIGINALS",
    "Campaign",
    "FindingRecord",
    "atomic_write",
]

CAMPAIGN_FORMAT = "blkfuzz-campaign/1"
_UMASK = os.umask(0)
os.umask(_UMASK)
#: original reproducers kept per finding (the first ones; later hits are only counted)
MAX_ORIGINALS = 5


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old file or the new one, never a mix:
    temporary file in the same directory (rename is atomic only within a filesystem), fsync,
    rename, fsync of the directory (so the rename itself is durable)."""
    raw = data.encode() if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp creates 0600; a campaign's files are ordinary files
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        dfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


@dataclass
class FindingRecord:
    """What the campaign knows about one finding signature (``finding.json``)."""

    signature: str
    category: str
    title: str
    #: the finding as first recorded (``Finding.to_json()``)
    finding: dict[str, Any]
    hits: int = 1
    first_seen: float = 0.0
    last_seen: float = 0.0
    first_execution: int = 0
    originals: list[str] = field(default_factory=list)
    minimized: str | None = None
    minimized_calls: int | None = None
    flaky: bool = False
    #: re-executions that did / did not reproduce it
    reproduced: int = 0
    not_reproduced: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "format": CAMPAIGN_FORMAT,
            "signature": self.signature,
            "category": self.category,
            "title": self.title,
            "hits": self.hits,
            "first_seen": round(self.first_seen, 3),
            "last_seen": round(self.last_seen, 3),
            "first_execution": self.first_execution,
            "originals": self.originals,
            "minimized": self.minimized,
            "minimized_calls": self.minimized_calls,
            "flaky": self.flaky,
            "reproduced": self.reproduced,
            "not_reproduced": self.not_reproduced,
            "finding": self.finding,
        }

    @classmethod
    def from_json(cls, doc: Any, where: str) -> FindingRecord:
        if not isinstance(doc, dict) or doc.get("format") != CAMPAIGN_FORMAT:
            raise CorpusError(f"not a {CAMPAIGN_FORMAT} finding record", where=where)
        try:
            rec = cls(
                signature=str(doc["signature"]),
                category=str(doc["category"]),
                title=str(doc["title"]),
                finding=dict(doc["finding"]),
                hits=int(doc["hits"]),
                first_seen=float(doc["first_seen"]),
                last_seen=float(doc["last_seen"]),
                first_execution=int(doc["first_execution"]),
                originals=[str(x) for x in doc["originals"]],
                minimized=None if doc["minimized"] is None else str(doc["minimized"]),
                minimized_calls=None if doc.get("minimized_calls") is None else int(doc["minimized_calls"]),
                flaky=bool(doc["flaky"]),
                reproduced=int(doc.get("reproduced", 0)),
                not_reproduced=int(doc.get("not_reproduced", 0)),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise CorpusError(
                f"malformed finding record ({type(err).__name__}: {err})", where=where
            ) from None
        return rec


def signature_id(signature: str) -> str:
    """The directory name of a signature (stable, filesystem-safe)."""
    import hashlib

    return hashlib.sha256(signature.encode()).hexdigest()[:16]


class Campaign:
    """An open campaign directory, locked for this process (the hub).

    ``Campaign.open(path, variants)`` creates the directory or resumes it; a directory another live
    process holds is refused with :class:`CampaignError`, as is one that fuzzes other variants.
    ``problems`` lists the files that were skipped while loading (one line each).
    """

    def __init__(self, path: Path, lock_fd: int, meta: dict[str, Any]) -> None:
        self.path = path
        self._lock_fd = lock_fd
        self.meta = meta
        self.problems: list[str] = []
        self.findings: dict[str, FindingRecord] = {}
        self.flaky: dict[str, FindingRecord] = {}
        self._corpus_digests: set[str] = set()

    # -- opening -----------------------------------------------------------------------------------

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], variants: tuple[str, ...], *, seed: int | None = None
    ) -> Campaign:
        root = Path(path)
        if root.exists() and not root.is_dir():
            raise CampaignError("not a directory", where=str(root))
        try:
            root.mkdir(parents=True, exist_ok=True)
            lock_fd = os.open(root / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise CampaignError(f"cannot use campaign directory: {err.strerror}", where=str(root)) from None
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(lock_fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(lock_fd)
            raise CampaignError(
                f"campaign directory is in use by {holder}; stop that campaign or use another --campaign",
                where=str(root),
            ) from None
        os.ftruncate(lock_fd, 0)
        os.pwrite(lock_fd, f"pid {os.getpid()}\n".encode(), 0)
        try:
            meta = cls._load_meta(root, variants, seed)
        except BaseException:
            os.close(lock_fd)
            raise
        camp = cls(root, lock_fd, meta)
        camp._load()
        return camp

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> Campaign:
        """Open a campaign directory read-only, without the lock (a report of a running campaign).
        Nothing is written; what cannot be read is listed in ``problems``."""
        root = Path(path)
        meta_path = root / "campaign.json"
        try:
            meta = json.loads(meta_path.read_text())
        except FileNotFoundError:
            raise CampaignError("not a campaign directory (no campaign.json)", where=str(root)) from None
        except (OSError, ValueError) as err:
            raise CampaignError(f"unreadable campaign description: {err}", where=str(meta_path)) from None
        if not isinstance(meta, dict) or meta.get("format") != CAMPAIGN_FORMAT:
            raise CampaignError(f"not a {CAMPAIGN_FORMAT} directory", where=str(meta_path))
        camp = cls(root, -1, meta)
        camp._load(write=False)
        return camp

    @staticmethod
    def _load_meta(root: Path, variants: tuple[str, ...], seed: int | None) -> dict[str, Any]:
        meta_path = root / "campaign.json"
        if meta_path.exists():
            try:
                meta = json.loads(meta_path.read_text())
            except (OSError, ValueError) as err:
                raise CampaignError(f"unreadable campaign description: {err}", where=str(meta_path)) from None
            if not isinstance(meta, dict) or meta.get("format") != CAMPAIGN_FORMAT:
                raise CampaignError(f"not a {CAMPAIGN_FORMAT} directory", where=str(meta_path))
            if list(meta.get("variants", [])) != list(variants):
                raise CampaignError(
                    f"this campaign fuzzes variants {meta.get('variants')}, not {list(variants)}; "
                    "pass the same --variant options or use another --campaign directory",
                    where=str(meta_path),
                )
            meta["resumed"] = int(meta.get("resumed", 0)) + 1
        else:
            entries = [p.name for p in root.iterdir() if p.name != "lock"]
            if entries:
                raise CampaignError(
                    f"directory is not empty and is not a campaign (has {sorted(entries)[0]!r})",
                    where=str(root),
                )
            meta = {
                "format": CAMPAIGN_FORMAT,
                "variants": list(variants),
                "created": time.time(),
                "resumed": 0,
            }
            if seed is not None:
                meta["seed"] = seed
        atomic_write(meta_path, json.dumps(meta, indent=2, sort_keys=True) + "\n")
        return meta

    def close(self) -> None:
        if self._lock_fd >= 0:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                os.close(self._lock_fd)
            self._lock_fd = -1

    def __enter__(self) -> Campaign:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- loading -----------------------------------------------------------------------------------

    def _skip(self, path: Path, why: str) -> None:
        self.problems.append(f"{path}: {why} (skipped)")

    def _load(self, write: bool = True) -> None:
        for sub in ("corpus", "findings", "flaky", "errors"):
            if write:
                (self.path / sub).mkdir(exist_ok=True)
            elif not (self.path / sub).is_dir():
                continue
        stats = self.path / "stats.jsonl"
        if write and stats.exists():  # drop a line a kill -9 tore, so later appends start on a fresh line
            raw = stats.read_bytes()
            if raw and not raw.endswith(b"\n"):
                atomic_write(stats, raw[: raw.rfind(b"\n") + 1])
        corpus_dir = self.path / "corpus"
        for path in sorted(corpus_dir.iterdir()) if corpus_dir.is_dir() else ():
            if path.name.startswith(".") and path.name.endswith(".tmp"):
                if not write:
                    continue
                with contextlib.suppress(OSError):
                    path.unlink()  # a write a kill -9 interrupted
                continue
            if path.suffix == ".json":
                self._corpus_digests.add(path.stem)
        for sub, table in (("findings", self.findings), ("flaky", self.flaky)):
            if not (self.path / sub).is_dir():
                continue
            for d in sorted((self.path / sub).iterdir()):
                if not d.is_dir():
                    self._skip(d, "not a finding directory")
                    continue
                rec_path = d / "finding.json"
                try:
                    doc = json.loads(rec_path.read_text())
                    rec = FindingRecord.from_json(doc, str(rec_path))
                except FileNotFoundError:
                    self._skip(d, "no finding.json")
                    continue
                except (OSError, ValueError, BlkfuzzError) as err:
                    self._skip(rec_path, str(err).removeprefix(f"{rec_path}: "))
                    continue
                if signature_id(rec.signature) != d.name:
                    self._skip(d, "directory name does not match the signature in finding.json")
                    continue
                table[rec.signature] = rec

    def corpus(self) -> list[Program]:
        """The stored corpus, in digest order; malformed or foreign files are skipped (``problems``)."""
        out: list[Program] = []
        for path in sorted((self.path / "corpus").glob("*.json")):
            program = self._read_program(path)
            if program is None:
                continue
            if program.digest() != path.stem:
                self._skip(path, "file name is not the program's digest")
                continue
            out.append(program)
        return out

    def _read_program(self, path: Path) -> Program | None:
        try:
            return load_program(path.read_bytes())
        except (OSError, BlkfuzzError) as err:
            self._skip(path, str(err))
            return None

    def reproducers(self, signature: str) -> list[Program]:
        """The minimized reproducer (first) and the originals of a recorded finding."""
        rec = self.findings.get(signature) or self.flaky.get(signature)
        if rec is None:
            return []
        d = self._finding_dir(rec)
        names = ([rec.minimized] if rec.minimized else []) + list(rec.originals)
        out = []
        for name in names:
            p = self._read_program(d / name)
            if p is not None:
                out.append(p)
        return out

    def stats(self) -> list[dict[str, Any]]:
        """The time series in ``stats.jsonl`` (a torn last line, from a kill -9, is ignored)."""
        path = self.path / "stats.jsonl"
        out: list[dict[str, Any]] = []
        try:
            text = path.read_text()
        except FileNotFoundError:
            return out
        for n, line in enumerate(text.splitlines(), 1):
            try:
                doc = json.loads(line)
            except ValueError:
                if n != len(text.splitlines()):
                    self._skip(path, f"line {n} is not JSON")
                continue
            if isinstance(doc, dict):
                out.append(doc)
        return out

    # -- writing (hub only) ------------------------------------------------------------------------

    def has_program(self, digest: str) -> bool:
        return digest in self._corpus_digests

    def add_corpus(self, program: Program) -> bool:
        """Store a corpus program (content-addressed); False if it was already there."""
        digest = program.digest()
        if digest in self._corpus_digests:
            return False
        atomic_write(self.path / "corpus" / f"{digest}.json", dump_program(program))
        self._corpus_digests.add(digest)
        return True

    @property
    def corpus_size(self) -> int:
        return len(self._corpus_digests)

    def _finding_dir(self, rec: FindingRecord) -> Path:
        return self.path / ("flaky" if rec.flaky else "findings") / signature_id(rec.signature)

    def record_finding(
        self,
        finding: dict[str, Any],
        program: Program,
        *,
        execution: int,
        elapsed: float,
        reproduced: bool,
        report: str = "",
    ) -> tuple[FindingRecord, bool]:
        """Record one hit of a finding (already re-executed: ``reproduced`` says whether it showed
        again). Returns the record and whether its signature is new to the campaign (or became
        reproducible). A finding that did not reproduce goes to ``flaky/`` unless it reproduced
        before."""
        sig = str(finding["signature"])
        rec = self.findings.get(sig) or self.flaky.get(sig)
        new = rec is None
        if rec is None:
            rec = FindingRecord(
                signature=sig,
                category=str(finding["category"]),
                title=str(finding["title"]),
                finding=finding,
                hits=0,
                first_seen=elapsed,
                first_execution=execution,
                flaky=not reproduced,
            )
        rec.hits += 1
        rec.last_seen = elapsed
        if reproduced:
            rec.reproduced += 1
        else:
            rec.not_reproduced += 1
        if rec.flaky and reproduced:  # it reproduced now: promote it
            old = self._finding_dir(rec)
            rec.flaky = False
            self.flaky.pop(sig, None)
            new_dir = self._finding_dir(rec)
            if old.exists() and not new_dir.exists():
                os.replace(old, new_dir)
                _fsync_dir(new_dir.parent)
            rec.finding = finding
            new = True
        (self.flaky if rec.flaky else self.findings)[sig] = rec
        d = self._finding_dir(rec)
        digest = program.digest()
        name = f"original-{digest[:16]}.json"
        if len(rec.originals) < MAX_ORIGINALS and name not in rec.originals:
            atomic_write(d / name, dump_program(program))
            rec.originals.append(name)
        if report and (new or not (d / "report.txt").exists()):
            atomic_write(d / "report.txt", report)
        atomic_write(d / "finding.json", json.dumps(rec.to_json(), indent=2, sort_keys=True) + "\n")
        return rec, new

    def save_record(self, rec: FindingRecord) -> None:
        """Write a record's ``finding.json`` (after its counters changed)."""
        atomic_write(
            self._finding_dir(rec) / "finding.json",
            json.dumps(rec.to_json(), indent=2, sort_keys=True) + "\n",
        )

    def record_minimized(self, signature: str, program: Program, report: str = "") -> FindingRecord | None:
        rec = self.findings.get(signature) or self.flaky.get(signature)
        if rec is None:
            return None
        d = self._finding_dir(rec)
        atomic_write(d / "minimized.json", dump_program(program))
        rec.minimized = "minimized.json"
        rec.minimized_calls = program.n_syscalls
        if report:
            atomic_write(d / "report.txt", report)
        atomic_write(d / "finding.json", json.dumps(rec.to_json(), indent=2, sort_keys=True) + "\n")
        return rec

    def record_error(self, message: str, program: Program) -> None:
        """A simulator exception (a bug in blkfuzz): keep the program that raised it."""
        digest = program.digest()
        path = self.path / "errors" / f"{digest[:16]}.json"
        if not path.exists():
            atomic_write(
                path, dump_program(replace(program, meta={**(program.meta or {}), "error": message}))
            )

    def append_stats(self, doc: dict[str, Any]) -> None:
        """Append one line to ``stats.jsonl`` (one write of one line: a crash tears at most it)."""
        line = (json.dumps(doc, sort_keys=True) + "\n").encode()
        fd = os.open(self.path / "stats.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def iter_findings(self) -> Iterator[FindingRecord]:
        yield from sorted(self.findings.values(), key=lambda r: (r.first_seen, r.signature))
