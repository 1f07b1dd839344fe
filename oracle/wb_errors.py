"""Writeback errors must reach fsync: the rule that makes a lost write *reported*, not silent.

A data write that fails with an I/O error loses what it carried; that is allowed (the final and
crash checks accept any value there, see :func:`oracle.crash.lost_ranges`) only because the kernel
tells the application: since Linux 4.13 every file descriptor open when the error happened sees it
once, at its next fsync/fdatasync (errseq_t; Jeff Layton, "fs: new infrastructure for writeback
error handling and reporting"). So, from the history and the block IO log alone:

    if a write to a block of file ``f`` failed and completed at step ``s``, then the first
    fsync/fdatasync of ``f`` that a thread *invokes* after ``s`` must not return 0 -- unless that
    thread's previous fsync of ``f`` was still running at ``s`` (it may have been the one that
    reported the error). A write that failed *while* the fsync ran must be reported by it too when
    nothing else modified ``f`` meanwhile: fsync writes every dirty folio and waits for every folio
    under writeback before it samples the error, so a failed write it did not wait for can only
    carry data dirtied after its own writeback pass -- which a concurrent writer could do.

Every user thread has its own descriptor for each file, opened before the program starts, so the
thread is the descriptor. A remount between the failure and the fsync drops the in-memory error
with the inode (a descriptor opened after an error does not see it): such pairs are not judged --
nor a failure of a write the remount's own unmount issued (it ends before the inode is evicted).
``sync(2)`` returns nothing and is not judged.

Which file a failed write belonged to is read from the final image (extent maps). To stay sound
when blocks change owner, a failed write is attributed only when exactly one file maps its blocks
at the end and no op that frees blocks (truncate, punch hole, zero range, creat) was running at or
invoked after the failure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from oracle.findings import Finding
from oracle.history import History, HistoryOp
from oracle.image import Ext4Image

__all__ = ["check_error_reporting"]

SECTOR_SIZE = 512
_FREES_BLOCKS = frozenset({"truncate", "creat"})
_FREEING_MODES = frozenset({"punch_hole", "zero_range", "zero_range_keep_size"})
_MODIFIES = frozenset({"pwrite", "mwrite", "truncate", "fallocate", "creat"})


def _frees_blocks(op: HistoryOp) -> bool:
    return op.op in _FREES_BLOCKS or (op.op == "fallocate" and op.args.get("mode") in _FREEING_MODES)


def _owner(img: Ext4Image, files: Sequence[Any], first: int, last: int) -> tuple[str, int] | None:
    """The single file mapping sectors [first, last] (and the file offset of ``first``), or None."""
    bs = img.block_size
    spb = bs // SECTOR_SIZE
    owners: list[tuple[str, int]] = []
    for fi in files:
        for e in fi.extents:
            if e.pblk is None:
                continue
            s0, s1 = e.pblk * spb, (e.pblk + e.len) * spb
            if s0 <= last and first < s1:
                off = e.lblk * bs + (max(first, s0) - s0) * SECTOR_SIZE
                owners.append((fi.name, off))
    names = {name for name, _ in owners}
    return owners[0] if len(names) == 1 else None


def check_error_reporting(
    history: History, iolog: Any, final_image: np.ndarray | bytes | Ext4Image
) -> list[Finding]:
    """Findings for fsync/fdatasync calls that returned 0 although a write to their file had
    failed since the thread's previous fsync of it (see the module docstring)."""
    entries = list(getattr(iolog, "entries", iolog))
    failed = [
        e
        for e in entries
        if e.kind == "write" and e.complete_seq is not None and e.status < 0 and e.complete_step is not None
    ]
    if not failed:
        return []
    img = final_image if isinstance(final_image, Ext4Image) else Ext4Image(final_image)
    files = [fi for fi in img.files() if fi.name in history.files]
    ops = sorted(history.ops, key=lambda o: (o.invoke, o.index))
    # (invoke, ret) of each remount: its unmount evicts the inode, and the error with it -- also
    # an error of a write its own unmount writeback issued
    remounts = [(o.invoke, o.ret if o.ret is not None else 1 << 62) for o in ops if o.op == "remount"]
    # an op that frees blocks may do so any time until it returns (creat's truncate waits for
    # writeback first, then frees the blocks the failed write covered)
    last_free = max((o.ret if o.ret is not None else 1 << 62 for o in ops if _frees_blocks(o)), default=-1)
    failures: list[tuple[int, str, int, Any]] = []  # (step, file, file offset, entry)
    for e in failed:
        if e.complete_step <= last_free:
            continue
        owner = _owner(img, files, e.sector, e.sector + e.nsectors - 1)
        if owner is not None:
            failures.append((e.complete_step, owner[0], owner[1], e))
    if not failures:
        return []
    out: dict[str, Finding] = {}
    by_fd: dict[tuple[int, str], list[HistoryOp]] = {}
    for op in ops:
        if op.op in ("fsync", "fdatasync") and op.file is not None:
            by_fd.setdefault((op.tid, op.file), []).append(op)
    modifiers = [o for o in ops if o.op in _MODIFIES]
    for (tid, name), syncs in sorted(by_fd.items()):
        prev_ret = -1
        for s in syncs:
            if s.result == 0 and s.ret is not None:
                concurrent = any(
                    m.file == name
                    and m.tid != tid
                    and m.invoke <= s.ret
                    and (m.ret is None or m.ret >= s.invoke)
                    for m in modifiers
                )
                end = s.invoke if concurrent else s.ret
                for step, fname, off, e in failures:
                    if fname != name or not (prev_ret < step < end):
                        continue
                    if any(step < r_ret and r_inv < s.invoke for r_inv, r_ret in remounts):
                        continue
                    title = f"{s.op}: returned 0 after a writeback error"
                    if title in out:
                        continue
                    out[title] = Finding(
                        "data",
                        title,
                        f"file {name}: a write of {e.nsectors * SECTOR_SIZE} bytes at file offset {off} "
                        f"failed with {e.status} at step {step}; T{tid}'s next {s.op} (op {s.index}, "
                        f"steps {s.invoke}-{s.ret}) returned 0, so the lost data went unreported",
                        {
                            "file": name,
                            "failed write": e.describe() if hasattr(e, "describe") else str(e.index),
                            "failed at step": step,
                            "file offset": off,
                            "fsync op": {
                                "index": s.index,
                                "tid": s.tid,
                                "op": s.op,
                                "invoke": s.invoke,
                                "ret": s.ret,
                            },
                            "previous fsync of this file by the thread returned at step": prev_ret,
                        },
                    )
            prev_ret = s.ret if s.ret is not None else 1 << 62
    return list(out.values())
