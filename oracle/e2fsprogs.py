"""Thin wrappers around e2fsprogs (mkfs.ext4, e2fsck, debugfs): the independent cross-check.

Images are passed as bytes and written to a private temporary file, so nothing here touches the
caller's files except :func:`mkfs_ext4` and :func:`debugfs_run` with ``write=True``, which work on a
path on purpose.  Time and UUIDs are pinned (``E2FSPROGS_FAKE_TIME``, ``-U``, ``hash_seed``) so the
tools produce byte-identical images (reference §11.5), and ``E2FSCK_CONFIG``/``MKE2FS_CONFIG`` are not
inherited from the host beyond what the recipe states.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: reference §12 recipe values
FAKE_TIME = 1700000000
DEFAULT_UUID = "11111111-2222-3333-4444-555555555555"
DEFAULT_HASH_SEED = "66666666-7777-8888-9999-000000000000"
MODEL_FEATURES = "none,extent,filetype,sparse_super,large_file,ext_attr"

_SBIN_DIRS = ("/usr/sbin", "/sbin", "/usr/local/sbin")


def _tool(name: str) -> str | None:
    """Locate an e2fsprogs binary on PATH or in the sbin directories (non-root PATHs lack them)."""
    found = shutil.which(name)
    if found:
        return found
    for d in _SBIN_DIRS:
        cand = os.path.join(d, name)
        if os.access(cand, os.X_OK):
            return cand
    return None


def have_e2fsprogs() -> bool:
    """True when mkfs.ext4, e2fsck and debugfs can all be run."""
    return all(_tool(n) for n in ("mkfs.ext4", "e2fsck", "debugfs"))


def _require(name: str) -> str:
    path = _tool(name)
    if path is None:
        raise FileNotFoundError(f"{name} not found (install e2fsprogs)")
    return path


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["E2FSPROGS_FAKE_TIME"] = str(FAKE_TIME)
    # never let a host e2fsck.conf change what -fn reports
    env["E2FSCK_CONFIG"] = os.devnull
    env["LC_ALL"] = "C"
    return env


def _as_bytes(image: bytes | bytearray | memoryview | np.ndarray) -> bytes:
    if isinstance(image, np.ndarray):
        return np.ascontiguousarray(image, dtype=np.uint8).tobytes()
    return bytes(image)


@contextmanager
def _image_file(image: bytes | bytearray | memoryview | np.ndarray) -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="blkfuzz-e2fs-") as d:
        path = os.path.join(d, "image")
        with open(path, "wb") as f:
            f.write(_as_bytes(image))
        yield path


# ---- e2fsck --------------------------------------------------------------------------------------


def _is_benign(line: str) -> bool:
    """Lines of a clean ``e2fsck -fn`` run: version banner, ``Pass N:`` headers, the summary (§11.3)."""
    return not line.strip() or line.startswith(("Pass ", "e2fsck 1.")) or " files (" in line


def e2fsck_clean(
    image: bytes | bytearray | memoryview | np.ndarray, *, allow: Sequence[str] = ()
) -> tuple[bool, list[str]]:
    """Run ``e2fsck -fn`` on the image; return (clean, findings).

    Clean means exit status 0 *and* no output besides the banner, pass headers and summary: several
    real problems exit 0 under ``-n`` (reference §11.3).  ``findings`` lists the other lines (plus
    ``"exit status N"`` when nonzero); lines containing any ``allow`` substring are ignored.
    """
    e2fsck = _require("e2fsck")
    with _image_file(image) as path:
        proc = subprocess.run([e2fsck, "-fn", path], capture_output=True, text=True, env=_env(), check=False)
    findings = [
        line
        for line in (proc.stdout + proc.stderr).splitlines()
        if not _is_benign(line) and not any(a in line for a in allow)
    ]
    if proc.returncode != 0:
        findings.append(f"exit status {proc.returncode}")
    return not findings, findings


# ---- debugfs -------------------------------------------------------------------------------------


def debugfs_run(path: str | os.PathLike[str], commands: Sequence[str], *, write: bool = False) -> str:
    """Run debugfs commands (batched with ``-f``) on an image file; returns stdout + stderr."""
    debugfs = _require("debugfs")
    script = "".join(c.rstrip("\n") + "\n" for c in commands)
    args = [debugfs, *(["-w"] if write else []), "-f", "-", os.fspath(path)]
    proc = subprocess.run(args, input=script, capture_output=True, text=True, env=_env(), check=False)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"debugfs exited {proc.returncode}: {out.strip()}")
    return out


@dataclass(frozen=True)
class DebugfsStat:
    """The fields of ``debugfs -R "stat PATH"`` the tests compare."""

    ino: int
    type: str
    mode: int
    flags: int
    size: int
    links: int
    blockcount: int
    inline_size: int | None
    extents: str
    text: str


_STAT_RE = {
    "ino": re.compile(r"Inode:\s*(\d+)"),
    "type": re.compile(r"Type:\s*(\S+)"),
    "mode": re.compile(r"Mode:\s*([0-7]+)"),
    "flags": re.compile(r"Flags:\s*(0x[0-9a-fA-F]+)"),
    "size": re.compile(r"\bSize:\s*(\d+)"),
    "links": re.compile(r"Links:\s*(\d+)"),
    "blockcount": re.compile(r"Blockcount:\s*(\d+)"),
    "inline_size": re.compile(r"Size of inline data:\s*(\d+)"),
}


def _debugfs_path(name: str) -> str:
    if any(c in name for c in ' "\n\t'):
        raise ValueError(f"name {name!r} cannot be passed to debugfs")
    return name if name.startswith("/") else "/" + name


def _stat_text(path: str, name: str) -> str:
    out = debugfs_run(path, [f"stat {_debugfs_path(name)}"])
    if "File not found" in out or "Inode:" not in out:
        raise FileNotFoundError(f"debugfs: {name!r}: {out.strip()}")
    return out


def _parse_stat(text: str) -> DebugfsStat:
    def grab(key: str) -> str | None:
        m = _STAT_RE[key].search(text)
        return m.group(1) if m else None

    ext = ""
    if "EXTENTS:" in text:
        ext = text.split("EXTENTS:", 1)[1].strip()
    inline = grab("inline_size")
    return DebugfsStat(
        ino=int(grab("ino") or 0),
        type=grab("type") or "",
        mode=int(grab("mode") or "0", 8),
        flags=int(grab("flags") or "0", 16),
        size=int(grab("size") or 0),
        links=int(grab("links") or 0),
        blockcount=int(grab("blockcount") or 0),
        inline_size=int(inline) if inline is not None else None,
        extents=ext,
        text=text,
    )


def debugfs_stat(image: bytes | bytearray | memoryview | np.ndarray, name: str) -> DebugfsStat:
    """``debugfs -R "stat /NAME"`` parsed into a :class:`DebugfsStat`."""
    with _image_file(image) as path:
        return _parse_stat(_stat_text(path, name))


def debugfs_cat(image: bytes | bytearray | memoryview | np.ndarray, name: str) -> bytes:
    """File bytes via ``debugfs -R "cat /NAME"``, truncated to the stat size.

    debugfs 1.47.0 pads inline files shorter than 60 bytes to 60 (reference §7), hence the truncation.
    """
    debugfs = _require("debugfs")
    with _image_file(image) as path:
        st = _parse_stat(_stat_text(path, name))
        proc = subprocess.run(
            [debugfs, "-R", f"cat {_debugfs_path(name)}", path], capture_output=True, env=_env(), check=False
        )
    if proc.returncode != 0:
        raise RuntimeError(f"debugfs cat exited {proc.returncode}: {proc.stderr.decode(errors='replace')}")
    return proc.stdout[: st.size]


# ---- mkfs ----------------------------------------------------------------------------------------


def mkfs_ext4(
    path: str | os.PathLike[str],
    *,
    size_bytes: int,
    block_size: int | None = 4096,
    inodes: int | None = 64,
    inode_size: int | None = 256,
    features: str | None = MODEL_FEATURES,
    inline_data: bool = False,
    journal: bool = False,
    uuid: str = DEFAULT_UUID,
    hash_seed: str = DEFAULT_HASH_SEED,
    extra_args: Sequence[str] = (),
) -> Path:
    """Make a reproducible image with real ``mkfs.ext4`` (reference §12 recipe).

    ``features=None`` keeps the host's mke2fs.conf defaults (flex_bg, 64bit, metadata_csum...);
    otherwise ``-O features[,inline_data][,has_journal]``.  ``None`` for block_size/inodes/inode_size
    omits the option.  Returns the path.
    """
    mkfs = _require("mkfs.ext4")
    p = Path(path)
    with open(p, "wb") as f:
        f.truncate(size_bytes)
    args = [mkfs, "-F", "-q", "-m", "0"]
    if block_size is not None:
        args += ["-b", str(block_size)]
    if inode_size is not None:
        args += ["-I", str(inode_size)]
    if inodes is not None:
        args += ["-N", str(inodes)]
    if features is not None:
        feats = features + (",inline_data" if inline_data else "") + (",has_journal" if journal else "")
        args += ["-O", feats]
    elif inline_data or journal:
        extra = [f for f, on in (("inline_data", inline_data), ("has_journal", journal)) if on]
        args += ["-O", ",".join(extra)]
    args += ["-U", uuid, "-E", f"nodiscard,root_owner=0:0,hash_seed={hash_seed}", *extra_args, str(p)]
    proc = subprocess.run(args, capture_output=True, text=True, env=_env(), check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"mkfs.ext4 failed ({proc.returncode}): {(proc.stdout + proc.stderr).strip()}")
    return p


def e2fsck_run(path: str | os.PathLike[str], *args: str) -> tuple[int, str]:
    """Run ``e2fsck ARGS PATH`` on an image file (e.g. ``-fyD`` on a copy); returns (rc, output)."""
    e2fsck = _require("e2fsck")
    proc = subprocess.run(
        [e2fsck, *args, os.fspath(path)], capture_output=True, text=True, env=_env(), check=False
    )
    return proc.returncode, proc.stdout + proc.stderr
