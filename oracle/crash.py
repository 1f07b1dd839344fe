"""Crash-state checking: what could the disk hold if the machine lost power at some point of the run,
and is every such state one the filesystem promises to recover from?

:func:`check_crashes` rebuilds crash images from the block IO log (as dm-log-writes/CrashMonkey do,
with :mod:`oracle.replay`'s durability rule), recovers the journal of each with
:func:`oracle.jbd2_recovery.recover` (``strict=False``: what ``e2fsck -fy`` leaves), and judges the
result with four rules. :func:`lost_ranges` maps data writes that failed with an I/O error to the
file bytes they should have written (``oracle.linearize.check_final(..., unknown=...)`` accepts any
value there).

Crash points and states
-----------------------
A crash point is an IO log position ``upto`` (the crash happens just before entry ``upto`` is
recorded, see :mod:`oracle.replay`) at or after ``start_mark`` (the setup before it is durable). Its
scheduler step ``c`` is the submission step of entry ``upto`` (the end of the log: after every
step). Points: for every flush, PREFLUSH write and FUA write at or after ``start_mark``, the point
just before it is submitted, just before its completion is recorded and right after; plus a seeded
sample of the other positions. At each point :func:`oracle.replay.durable_prefix` splits the writes
into *durable* (always on the media), *volatile* (completed, unflushed) and *in flight*; a crash
*state* keeps the durable ones and a subset of the others: always none of them and all of them,
then seeded random subsets and, on a sample, one write *torn* (only its first ``k`` 512-byte
sectors land; never the jbd2 superblock, a jbd2 commit block or the ext4 superblock block: Linux
does not protect those multi-sector structures against tearing either). A subset in which an
in-flight PREFLUSH write landed also keeps every write that completed before that write was
submitted (its flush part came first). At most ``max_states``
states are checked: "none"/"all" of every point first, then the random and torn ones.

Without a journal only rule 2 (and the size part of rule 4) is checked, on the crash image as is:
no-journal ext4 promises nothing after a crash beyond the data and inode of fsync'd files (its
bitmaps are legitimately stale, unwritten metadata is lost, reused blocks show stale data), and a
file whose extent tree has tree blocks is skipped (a later tree split may legitimately leave the
fsync'd blocks unreachable).

The rules
---------
Below, "op invoked before the crash" means ``op.invoke <= c``; a sync op *promises* when it
returned 0 strictly before the crash (``ret < c``). Files are judged one at a time; a byte's value
is judged on the infinite zero-extended file (bytes past the size are zero).

1. **structure** (category ``"fsck"``): the recovered image passes :func:`oracle.fsck.fsck`, journal
   recovery reported no error (a checksum failure in a committed transaction means the log the
   model wrote was not durable when its commit block was), and every file of the program exists.
2. **durability** (``"crash-consistency"``): let ``F`` be the latest fsync/fdatasync of the file, or
   sync, that returned 0 before the crash. ``R`` is the set of ops on the file that completed before
   ``F`` was invoked (or precede it in its thread) and were invoked after the file's last failed
   fsync/fdatasync returned (an error reported there may have lost anything earlier: errseq
   semantics), or after the last remount that followed a failed write (the unmount drops the
   unreported error with the inode). A sync promises nothing if some write failed before it returned
   (sync(2) reports no errors). Then every byte must hold a value ``R`` leaves there -- the value of
   an op of ``R`` not overwritten for sure by a later op of ``R`` (a concurrent or partial op leaves
   several candidates), or the initial content -- unless an op not in ``R`` invoked before the crash
   may have changed it: then also that op's value (its data, or zero for punch/zero range/
   truncate). Ordered mode makes data blocks individually old or new, so bytes are judged one by
   one, not as a whole linearization. The size is judged with rule 4, with the ops of ``R`` exact.
3. **no foreign bytes**: every byte is zero, the initial content, or a byte some pwrite/mwrite
   store invoked before the crash wrote to this file at this offset.
4. **prefix-consistent size**: the size must be the one some linearization of a *prefix* of the
   history gives (:func:`oracle.linearize.check_final` on a rewritten history, bytes not judged):
   metadata reaches the disk in transaction order, so there is a cut ``k`` (a step, at least
   ``F.invoke - 1`` when ``F`` exists, at most ``c``) such that the ops that completed by ``k`` took
   effect, those running at ``k`` may or may not have (with their partial effects), those invoked
   after ``k`` did not. A pwrite's size change is not exact even when it completed -- delalloc
   writeback moves ``i_disksize`` later, page by page -- so it may grow the size to any value up to
   its end (unless it is in ``R``: fsync wrote it back); truncate, creat and fallocate change the
   size in their own transaction and are exact. mwrite never changes the size.

Bytes on sectors a write that failed with an I/O error before the crash covered (see
:func:`lost_ranges`) are accepted whatever they hold, in every rule.

Findings explain themselves: the crash point (IO log index, step, the last ops completed before
it), the writes kept, dropped and torn, the rule, the file, the differing byte ranges (found and
expected, and which op wrote the found bytes) or the sizes; one finding per distinct title, with
the number of states that showed it.

Performance
-----------
The durable image of the current point is kept in one array and advanced point by point (only the
newly durable writes are rebuilt); a state applies its optional writes to the blocks they touch and
undoes them afterwards. Journal recovery is memoized on the bytes it can read (journal superblock,
ext4 superblock, group descriptors, journal inode, and the log blocks a structural walk from
``s_start`` visits; an uncommitted tail changes nothing): most states recover the same committed
transactions, and a hit applies the recorded changes without copying the image. States whose
images differ only inside the journal reuse the files and verdict of the first; fsck verdicts are
memoized on the metadata blocks they read (crash images mostly differ in file data); the reader
works on the image array in place. ``bench/bench_crash.py`` measures states per second.
"""

from __future__ import annotations

import bisect
import hashlib
import random
import re
import struct
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, Protocol

import numpy as np

from oracle.findings import Finding
from oracle.fsck import FsckResult, fsck_result
from oracle.history import History, HistoryOp
from oracle.image import DEFAULT_MAX_READ, Ext4Image
from oracle.jbd2_recovery import recover_in_place
from oracle.linearize import check_final
from oracle.replay import SECTOR_SIZE, CrashState, LogEntry, durable_prefix
from simkernel.errors import CorruptImageError
from simkernel.fs.ext4.ondisk import (
    EXT4_FEATURE_COMPAT_HAS_JOURNAL,
    EXT4_ROOT_INO,
    EXT4_SUPERBLOCK_OFFSET,
    JBD2_COMMIT_BLOCK,
    JBD2_DESCRIPTOR_BLOCK,
    JBD2_MAGIC_NUMBER,
    JBD2_REVOKE_BLOCK,
    JBD2_SUPERBLOCK_V1,
    JBD2_SUPERBLOCK_V2,
    decode_jbd2_descriptor_tags,
)

__all__ = ["DEFAULT_MAX_STATES", "CrashReport", "check_crashes", "crash_report", "lost_ranges"]

#: states checked per execution unless told otherwise
DEFAULT_MAX_STATES: Final = 200
#: a never-reached step ("after everything") and an unbounded file offset
_END: Final = 1 << 62
_INF: Final = 1 << 62
#: how many completed ops a finding lists before the crash point
_LAST_OPS: Final = 4
#: how many differing ranges a finding lists
_MAX_DIFFS: Final = 8
#: zeroing fallocate modes
_ZEROING: Final = ("punch_hole", "zero_range", "zero_range_keep_size")
_SYNC_OPS: Final = ("fsync", "fdatasync", "sync")
_BE32 = struct.Struct(">I")


class CrashLogEntry(LogEntry, Protocol):
    """The IO log fields the crash checker reads (``simkernel.block.iolog.IoLogEntry`` has them)."""

    @property
    def submit_step(self) -> int: ...
    @property
    def complete_step(self) -> int | None: ...
    @property
    def tag(self) -> str: ...


def _entries(iolog: Any) -> list[Any]:
    """The entries of an ``IoLog`` or of a sequence of entries."""
    entries = getattr(iolog, "entries", iolog)
    return list(entries)


def _describe(e: Any) -> str:
    if hasattr(e, "describe"):
        return str(e.describe())
    what = "flush" if e.kind == "flush" else f"write {e.sector}+{e.nsectors}"
    return f"#{e.index} {what}"


# --------------------------------------------------------------------------------------------------
# lost data: writes that failed with an I/O error


def _lost_sectors(entries: Sequence[Any], nsectors: int, cutoff: int | None) -> np.ndarray:
    """Sectors some write that failed (completed with ``status < 0`` before ``cutoff``) covered,
    and those of the data writes to the same inode that were in flight with it (its ioend's).

    Not only the sectors whose *last* write failed: after a writeback error the page may be evicted
    and read back from the disk, stale, and a later successful writeback then persists the stale
    bytes -- the loss outlives the failed write."""
    lost = np.zeros(0, dtype=bool)
    failed: list[Any] = []
    for e in entries:
        if e.kind != "write" or e.status == 0 or e.complete_seq is None:
            continue
        if cutoff is not None and e.complete_seq >= cutoff:
            continue
        if not lost.size:
            lost = np.zeros(nsectors, dtype=bool)
        lost[max(0, e.sector) : min(nsectors, e.sector + e.nsectors)] = True
        failed.append(e)
    # the writes of one ioend are converted together or not at all (see _lost_file_ranges): a
    # data write of the same inode in flight with a failed one may be in its ioend, and its
    # blocks may read back as zeros -- and, evicted and read back so, be written again as zeros
    for e in failed:
        ino = _DATA_INO.match(e.tag)
        if ino is None:
            continue
        for f in entries:
            if f.kind != "write" or f.complete_seq is None or f is e:
                continue
            if cutoff is not None and f.complete_seq >= cutoff:
                continue
            fi = _DATA_INO.match(f.tag)
            if fi is None or fi.group(1) != ino.group(1):
                continue
            if f.submit_seq <= e.complete_seq and e.submit_seq <= f.complete_seq:
                lost[max(0, f.sector) : min(nsectors, f.sector + f.nsectors)] = True
    return lost


_DATA_INO = re.compile(r"data ino=(\d+) ")


def _lost_file_ranges(
    extents: Sequence[Any], size: int | None, lost: np.ndarray, bs: int
) -> list[tuple[int, int]]:
    """Byte ranges of one file (extents, size) that lie on ``lost`` sectors, sorted and merged.

    A file that lost a sector also has every one of its unwritten extents counted as lost: the
    writes of one ioend complete together, and when any of its bios failed the completion converts
    none of the ioend's unwritten extents ("Do not convert the unwritten extents if data writeback
    fails, or stale data may be exposed", ext4_end_io_end(); xfs_end_ioend() likewise skips the
    conversion on error), so blocks whose own write succeeded may still read back as zeros."""
    spb = bs // SECTOR_SIZE
    ranges: list[tuple[int, int]] = []
    for e in extents:
        s0, s1 = e.pblk * spb, min((e.pblk + e.len) * spb, lost.size)
        if s0 >= s1:
            continue
        for a, b in _runs(lost[s0:s1]):
            start = e.lblk * bs + a * SECTOR_SIZE
            end = e.lblk * bs + b * SECTOR_SIZE
            if size is not None:
                end = min(end, size)
            if start < end:
                ranges.append((start, end))
    if ranges:
        for e in extents:
            if e.unwritten:
                start, end = e.lblk * bs, (e.lblk + e.len) * bs
                if size is not None:
                    end = min(end, size)
                if start < end:
                    ranges.append((start, end))
    ranges.sort()
    merged: list[tuple[int, int]] = []
    for a, b in ranges:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def lost_ranges(
    iolog: Any,
    final_image: np.ndarray | bytes | Ext4Image,
    *,
    upto: int | None = None,
    clip: bool = True,
) -> dict[str, list[tuple[int, int]]]:
    """Which file bytes of ``final_image`` a failed data write should have written.

    A sector is *lost* when a write to it that completed (before crash point ``upto``; by default
    the whole log) failed (``status < 0``): it may hold what it held before (stale data, zeros,
    another file's old bytes) -- even after a later successful write, since a page whose writeback
    failed may be evicted and read back stale, then written again. Lost sectors are mapped to file
    byte ranges through the image's extent maps (written and unwritten extents: a failed write to an
    unwritten extent leaves it unconverted, reading zeros instead of the data), clipped to the file
    size unless ``clip`` is false (a failed write past the on-disk size: the size update that
    should have followed it may be lost too). Returns ``{file: [(start, end), ...]}`` (sorted,
    merged) for the root-directory files that have any; pass it as ``unknown=`` to
    :func:`oracle.linearize.check_final`.
    """
    entries = _entries(iolog)
    img = final_image if isinstance(final_image, Ext4Image) else Ext4Image(final_image)
    cutoff = None
    if upto is not None and upto < len(entries):
        cutoff = entries[upto].submit_seq
    nsectors = img.superblock.blocks_count * img.block_size // SECTOR_SIZE
    lost = _lost_sectors(entries, nsectors, cutoff)
    out: dict[str, list[tuple[int, int]]] = {}
    if lost.any():
        for fi in img.files():
            r = _lost_file_ranges(fi.extents, fi.size if clip else None, lost, img.block_size)
            if r:
                out[fi.name] = r
    return out


# --------------------------------------------------------------------------------------------------
# crash points and states


class _Point:
    """A crash point; its durable/volatile/in-flight split is computed when first asked for (a
    small check budget needs it for only a few of the points)."""

    __slots__ = ("_entries", "_state", "label", "step", "upto")

    def __init__(self, upto: int, step: int, label: str, entries: Sequence[Any]) -> None:
        self.upto = upto
        self.step = step
        self.label = label
        self._entries = entries
        self._state: CrashState | None = None

    @property
    def state(self) -> CrashState:
        if self._state is None:
            self._state = durable_prefix(self._entries, self.upto)
        return self._state


@dataclass(frozen=True)
class _StateSpec:
    point: _Point
    chosen: tuple[int, ...]  # optional writes kept (volatile + in flight), entry indices
    torn: tuple[tuple[int, int], ...]  # (entry index, sectors kept)
    label: str

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.point.state.durable, self.chosen, self.torn)


def _is_untearable(e: Any) -> bool:
    """jbd2 superblock / commit blocks and the ext4 superblock block are never torn."""
    data = e.data
    if len(data) >= 8:
        magic, blocktype = struct.unpack_from(">II", data)
        if magic == JBD2_MAGIC_NUMBER and blocktype in (
            JBD2_COMMIT_BLOCK,
            JBD2_SUPERBLOCK_V1,
            JBD2_SUPERBLOCK_V2,
        ):
            return True
    start = e.sector * SECTOR_SIZE
    return start <= EXT4_SUPERBLOCK_OFFSET < start + e.nsectors * SECTOR_SIZE


def _crash_points(entries: Sequence[Any], start_mark: int, rng: random.Random) -> list[tuple[int, str]]:
    n = len(entries)
    seqs = [e.submit_seq for e in entries]
    points: dict[int, str] = {}
    for e in entries[start_mark:]:
        barrier = e.kind == "flush" or (e.kind == "write" and (e.fua or e.preflush))
        if not barrier:
            continue
        what = "flush" if e.kind == "flush" else "PREFLUSH/FUA write"
        points.setdefault(e.index, f"just before {what} #{e.index} is submitted")
        if e.complete_seq is not None:
            j = bisect.bisect_right(seqs, e.complete_seq)
            if j - 1 >= start_mark:
                points.setdefault(j - 1, f"just before {what} #{e.index} completes")
            points.setdefault(j, f"right after {what} #{e.index} completed")
    points.setdefault(n, "after the whole log")
    others = [u for u in range(start_mark, n) if u not in points]
    for u in rng.sample(others, min(len(others), max(4, len(points) // 2))):
        points[u] = "sampled point"
    return sorted((u, lbl) for u, lbl in points.items() if start_mark <= u <= n)


def _preflush_closure(
    state: CrashState, entries: Sequence[Any], chosen: tuple[int, ...], torn: tuple[tuple[int, int], ...]
) -> tuple[tuple[int, ...], tuple[tuple[int, int], ...]]:
    """``chosen``/``torn`` plus what a landed in-flight PREFLUSH write forces: its flush part
    completed before its data reached the media, so every write that completed before it was
    submitted is on the media too, whole."""
    flying = set(state.in_flight)
    landed = [i for i in chosen if i in flying] + [i for i, k in torn if k > 0]
    barriers = [entries[i].submit_seq for i in landed if entries[i].preflush]
    if not barriers:
        return chosen, torn
    cover = max(barriers)
    forced = {i for i in state.volatile if entries[i].complete_seq < cover}
    return tuple(sorted(set(chosen) | forced)), tuple(t for t in torn if t[0] not in forced)


def _plan_states(
    points: list[_Point],
    entries: Sequence[Any],
    rng: random.Random,
    max_states: int,
    budget: int | None = None,
) -> list[_StateSpec]:
    """none/all of every point first, then random subsets and torn writes, round robin; ``budget``:
    stop after the plan's first that many states (the same ones the whole plan starts with)."""
    if len(points) > max_states:  # keep evenly spaced points (the end of the log always)
        step = len(points) / max_states
        points = [points[int(i * step)] for i in range(max_states - 1)] + [points[-1]]
    limit = max_states if budget is None else min(max_states, budget)
    specs: list[_StateSpec] = []
    seen: set[tuple[Any, ...]] = set()

    def add(spec: _StateSpec) -> None:
        if len(specs) < limit and (spec.point.upto, spec.key) not in seen:
            seen.add((spec.point.upto, spec.key))
            specs.append(spec)

    # "none" states at distinct points are never duplicates: within budget they are the plan's
    # first states, and no other point's split need be computed
    if budget is not None and budget <= len(points):
        return [_StateSpec(p, (), (), "none of the volatile/in-flight writes") for p in points[:budget]]
    opts = {p.upto: p.state.volatile + p.state.in_flight for p in points}
    for p in points:
        add(_StateSpec(p, (), (), "none of the volatile/in-flight writes"))
    for p in points:
        if opts[p.upto]:
            add(_StateSpec(p, tuple(sorted(opts[p.upto])), (), "all of the volatile/in-flight writes"))
    rounds = 0
    while len(specs) < limit and rounds < 64:
        rounds += 1
        grew = False
        for p in points:
            opt = opts[p.upto]
            if len(opt) < 2 and not any(entries[i].nsectors > 1 for i in opt):
                continue
            chosen = tuple(sorted(i for i in opt if rng.random() < 0.5))
            torn: tuple[tuple[int, int], ...] = ()
            label = "random subset"
            tearable = [i for i in opt if entries[i].nsectors > 1 and not _is_untearable(entries[i])]
            if tearable and rounds % 2 == 0:
                i = rng.choice(tearable)
                torn = ((i, rng.randint(1, entries[i].nsectors - 1)),)
                chosen = tuple(x for x in chosen if x != i)
                label = "random subset with a torn write"
            chosen, torn = _preflush_closure(p.state, entries, chosen, torn)
            before = len(specs)
            add(_StateSpec(p, chosen, torn, label))
            grew = grew or len(specs) > before
            if len(specs) >= limit:
                break
        if not grew and rounds > 8:
            break
    # in priority order (the caller sorts by crash point): a shorter budget checks a prefix
    return specs


# --------------------------------------------------------------------------------------------------
# images


class _Disk:
    """The durable image of the current crash point, plus per-state changes that are undone."""

    def __init__(self, base: np.ndarray, entries: Sequence[Any], spb: int) -> None:
        self.base = base
        self.work = np.array(base, dtype=np.uint8, copy=True)
        self.entries = entries
        self.spb = spb
        self.durable: set[int] = set()
        self.by_block: dict[int, list[int]] = {}
        for e in entries:
            if e.kind == "write":
                for b in range(e.sector // spb, (e.sector + e.nsectors - 1) // spb + 1):
                    self.by_block.setdefault(b, []).append(e.index)
        self.undo: list[tuple[int, np.ndarray]] = []

    @staticmethod
    def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
        ranges.sort()
        out: list[tuple[int, int]] = []
        for a, b in ranges:
            if out and a <= out[-1][1]:
                out[-1] = (out[-1][0], max(out[-1][1], b))
            else:
                out.append((a, b))
        return out

    def _rebuild(
        self,
        sector_ranges: list[tuple[int, int]],
        done: set[int],
        flying: set[int],
        torn: dict[int, int],
        save: bool,
    ) -> None:
        """Recompute these sector ranges from the base and the chosen writes, in replay order."""
        entries = self.entries
        work = self.work
        for s0, s1 in self._merge(sector_ranges):
            a, b = s0 * SECTOR_SIZE, s1 * SECTOR_SIZE
            if save:
                self.undo.append((a, work[a:b].copy()))
            work[a:b] = self.base[a:b]
            cands: set[int] = set()
            for blk in range(s0 // self.spb, (s1 - 1) // self.spb + 1):
                cands.update(self.by_block.get(blk, ()))
            applied = [entries[i] for i in cands if i in done]
            applied.sort(key=lambda e: e.complete_seq)
            applied += sorted((entries[i] for i in cands if i in flying), key=lambda e: e.index)
            for e in applied:
                n = torn.get(e.index, e.nsectors)
                lo, hi = max(s0, e.sector), min(s1, e.sector + n)
                if lo >= hi:
                    continue
                off = (lo - e.sector) * SECTOR_SIZE
                work[lo * SECTOR_SIZE : hi * SECTOR_SIZE] = np.frombuffer(
                    e.data, dtype=np.uint8, count=(hi - lo) * SECTOR_SIZE, offset=off
                )

    def advance(self, state: CrashState) -> None:
        new = [i for i in state.durable if i not in self.durable]
        if not new:
            return
        self.durable.update(new)
        ranges = [(self.entries[i].sector, self.entries[i].sector + self.entries[i].nsectors) for i in new]
        self._rebuild(ranges, self.durable, set(), {}, save=False)

    def apply(self, spec: _StateSpec) -> None:
        st = spec.point.state
        torn = dict(spec.torn)
        chosen = set(spec.chosen) | set(torn)
        if not chosen:
            return
        volatile = set(st.volatile)
        done = self.durable | (chosen & volatile)
        flying = chosen - volatile
        ranges = []
        for i in chosen:
            e = self.entries[i]
            ranges.append((e.sector, e.sector + torn.get(i, e.nsectors)))
        self._rebuild(ranges, done, flying, torn, save=True)

    def put_block(self, blk: int, bs: int, data: bytes) -> None:
        a = blk * bs
        self.undo.append((a, self.work[a : a + bs].copy()))
        self.work[a : a + bs] = np.frombuffer(data, dtype=np.uint8)

    def restore(self) -> None:
        while self.undo:
            a, saved = self.undo.pop()
            self.work[a : a + saved.size] = saved


class _WorkImage(Ext4Image):
    """The reader over the checker's work array in place (no copy: 8 MiB per crash image on the
    benchmark's device). While ``recording`` is a set, every block read through
    :meth:`read_block` is added to it."""

    recording: set[int] | None = None

    def read_block(self, blk: int, *, where: str | None = None) -> bytes | memoryview:
        if self.recording is not None:
            self.recording.add(blk)
        return super().read_block(blk, where=where)

    def __init__(self, work: np.ndarray) -> None:
        super().__init__(work, copy=False)


class _FsckCache:
    """Memoized :func:`oracle.fsck.fsck_result`: its verdict depends only on the blocks it read
    (superblock, group descriptors, bitmaps, inode tables, directory and extent-tree blocks,
    journal superblock), not on file data, and crash images mostly differ in data. A result is kept
    under the digest of the blocks its run read; an image is looked up under the few most recent
    such block sets."""

    def __init__(self) -> None:
        self.tables: list[tuple[tuple[int, ...], dict[bytes, FsckResult]]] = []
        self.hits = 0
        self.misses = 0

    @staticmethod
    def _digest(work: np.ndarray, bs: int, blocks: tuple[int, ...]) -> bytes:
        h = hashlib.blake2b(digest_size=20)
        for b in blocks:
            h.update(work[b * bs : (b + 1) * bs].data)
        return h.digest()

    def check(self, img: Ext4Image, work: np.ndarray) -> FsckResult:
        if not isinstance(img, _WorkImage):
            return fsck_result(img)
        bs = img.block_size
        for blocks, table in self.tables[:4]:
            hit = table.get(self._digest(work, bs, blocks))
            if hit is not None:
                self.hits += 1
                return hit
        self.misses += 1
        sb = img.superblock
        gdt_blocks = -(-sb.group_count * sb.desc_size // bs)
        img.recording = {
            EXT4_SUPERBLOCK_OFFSET // bs,
            *range(sb.first_data_block + 1, sb.first_data_block + 1 + gdt_blocks),
        }
        try:
            res = fsck_result(img)
            blocks = tuple(sorted(b for b in img.recording if 0 <= b < sb.blocks_count))
        finally:
            img.recording = None
        for k, (seen, _table) in enumerate(self.tables):
            if seen == blocks:
                self.tables.insert(0, self.tables.pop(k))
                break
        else:
            self.tables.insert(0, (blocks, {}))
        self.tables[0][1][self._digest(work, bs, blocks)] = res
        return res


@dataclass
class _Recovered:
    """What journal recovery did to one crash image (memoized on the bytes it reads)."""

    delta: list[tuple[int, bytes]] = field(default_factory=list)
    errors: tuple[str, ...] = ()
    transactions: tuple[int, ...] = ()
    failure: str | None = None  # recover() raised: the journal cannot be read at all


class _Journal:
    """Memoized :func:`oracle.jbd2_recovery.recover` for the images of one execution."""

    def __init__(self, base: np.ndarray, img: Ext4Image) -> None:
        sb = img.superblock
        self.bs = bs = img.block_size
        ino = sb.journal_inum
        self.inode_off = (
            img.groups[(ino - 1) // sb.inodes_per_group].inode_table * bs
            + ((ino - 1) % sb.inodes_per_group) * sb.inode_size
        )
        self.inode_size = sb.inode_size
        self.inode_raw = base[self.inode_off : self.inode_off + sb.inode_size].tobytes()
        inode = img.inode(ino)
        extents, tree = img.extent_tree(ino, inode)
        nblocks = inode.size // bs
        jmap = [-1] * nblocks
        for e in extents:
            for k in range(e.len):
                if e.lblk + k < nblocks:
                    jmap[e.lblk + k] = e.pblk + k
        self.jmap = jmap
        gdt_blocks = -(-sb.group_count * sb.desc_size // bs)
        self.static_blocks = sorted(
            {
                EXT4_SUPERBLOCK_OFFSET // bs,
                *range(sb.first_data_block + 1, sb.first_data_block + 1 + gdt_blocks),
                *tree,
            }
        )
        self.sb_block = EXT4_SUPERBLOCK_OFFSET // bs
        self.cache: dict[bytes, _Recovered] = {}
        self.hits = 0
        self.misses = 0

    def _block(self, work: np.ndarray, blk: int) -> memoryview:
        return work[blk * self.bs : (blk + 1) * self.bs].data

    def _footprint(self, work: np.ndarray) -> list[int] | None:
        """Journal blocks recovery's scan reads, walking the log structurally (None: give up)."""
        if not self.jmap or self.jmap[0] < 0:
            return None
        jsb = bytes(self._block(work, self.jmap[0]))
        magic, blocktype = struct.unpack_from(">II", jsb)
        if magic != JBD2_MAGIC_NUMBER or blocktype not in (JBD2_SUPERBLOCK_V1, JBD2_SUPERBLOCK_V2):
            return None
        maxlen, first, sequence, start = struct.unpack_from(">IIII", jsb, 0x10)
        incompat = 0 if blocktype == JBD2_SUPERBLOCK_V1 else _BE32.unpack_from(jsb, 0x28)[0]
        if not start:
            return []
        if maxlen > len(self.jmap) or first < 1 or first >= maxlen:
            return None
        out: list[int] = []
        committed = 0  # blocks up to the last commit block: an uncommitted tail changes nothing
        cur, seq = start, sequence
        for _ in range(4 * maxlen):
            if cur >= maxlen or self.jmap[cur] < 0:
                break
            out.append(cur)
            block = self._block(work, self.jmap[cur])
            m, t, s = struct.unpack_from(">III", block)
            nxt = cur + 1 if cur + 1 < maxlen else first
            if m != JBD2_MAGIC_NUMBER or s != seq:
                break
            if t == JBD2_DESCRIPTOR_BLOCK:
                try:
                    ntags = len(decode_jbd2_descriptor_tags(bytes(block), feature_incompat=incompat))
                except (CorruptImageError, struct.error):
                    return None
                for _k in range(ntags):
                    out.append(nxt)
                    nxt = nxt + 1 if nxt + 1 < maxlen else first
                cur = nxt
            elif t == JBD2_COMMIT_BLOCK:
                seq = (seq + 1) & 0xFFFFFFFF
                cur = nxt
                committed = len(out)
            elif t == JBD2_REVOKE_BLOCK:
                cur = nxt
            else:
                break
        else:
            return None
        return out[:committed]

    def key(self, work: np.ndarray) -> bytes | None:
        """A digest of everything recovery of ``work`` can depend on (None: not memoizable)."""
        if work[self.inode_off : self.inode_off + self.inode_size].tobytes() != self.inode_raw:
            return None
        foot = self._footprint(work)
        if foot is None:
            return None
        h = hashlib.blake2b(digest_size=20)
        for blk in self.static_blocks:
            h.update(self._block(work, blk))
        h.update(self._block(work, self.jmap[0]))
        h.update(struct.pack(f"<{len(foot)}I", *foot))
        for jb in foot:
            h.update(self._block(work, self.jmap[jb]))
        return h.digest()

    def recover(self, work: np.ndarray, key: bytes | None) -> _Recovered:
        if key is not None:
            hit = self.cache.get(key)
            if hit is not None:
                self.hits += 1
                return hit
        self.misses += 1
        try:
            res = recover_in_place(bytearray(work.data), strict=False)
        except CorruptImageError as err:
            out = _Recovered(failure=f"{err.where or 'journal'}: {err.message}")
        else:
            bs = self.bs
            blocks = {self.sb_block, *(r.fs_block for r in res.replayed)}
            if self.jmap and self.jmap[0] >= 0:
                blocks.add(self.jmap[0])
            img = res.image
            delta = [(b, bytes(img[b * bs : (b + 1) * bs])) for b in sorted(blocks)]
            out = _Recovered(delta=delta, errors=res.errors, transactions=res.transactions)
        if key is not None:
            self.cache[key] = out
        return out


# --------------------------------------------------------------------------------------------------
# the rules


@dataclass(frozen=True)
class _Piece:
    """What one op may put at ``[a, b)``: ``data`` (None: zeros) -- ``unknown`` bytes match
    anything -- and whether it surely does (a definite effect shadows what came before)."""

    a: int
    b: int
    op: HistoryOp
    data: bytes | None
    definite: bool
    step: int  # when it can have happened at the earliest (store step, else invoke)
    unknown: bool = False


def _pieces(op: HistoryOp) -> list[_Piece]:
    name = op.op
    inv = op.invoke
    if name == "mwrite":
        return [_Piece(s.off, s.off + len(s.data), op, s.data, False, s.step) for s in op.stores]
    if name == "pwrite":
        off, length = op.arg("off"), op.arg("len")
        if op.completed:
            n = op.result or 0
            if n <= 0:
                return []
            return [_Piece(off, off + n, op, (op.data or b"")[:n], True, inv)]
        known = op.data or b""
        out = [_Piece(off, off + len(known), op, known, False, inv)] if known else []
        if len(known) < length:
            out.append(_Piece(off + len(known), off + length, op, None, False, inv, unknown=True))
        return out
    if name == "fallocate" and op.mode in _ZEROING:
        off, length = op.arg("off"), op.arg("len")
        return [_Piece(off, off + length, op, None, op.completed and op.ok, inv)]
    if name in ("truncate", "creat"):
        if op.completed and not op.ok:
            return []
        t = op.arg("size") if name == "truncate" else 0
        return [_Piece(t, _INF, op, None, op.completed, inv)]
    return []


def _must_precede(a: HistoryOp, b: HistoryOp) -> bool:
    if a.tid == b.tid:
        return a.seq < b.seq
    return a.ret is not None and a.ret < b.invoke


def _allow(ok: np.ndarray, content: np.ndarray, p: _Piece) -> None:
    """Mark the bytes of ``content`` that piece ``p`` explains."""
    a, b = p.a, min(p.b, content.size)
    if a >= b:
        return
    if p.unknown:
        ok[a:b] = True
    elif p.data is None:
        ok[a:b] |= content[a:b] == 0
    else:
        ok[a:b] |= content[a:b] == np.frombuffer(p.data, dtype=np.uint8, count=b - a)


@dataclass(frozen=True)
class _Promise:
    sync: HistoryOp  # F
    required: tuple[HistoryOp, ...]  # R
    segments: tuple[tuple[int, int, tuple[_Piece | None, ...]], ...]  # candidates (None: initial)


@dataclass
class _Violation:
    rule: int
    category: str
    title: str
    file: str | None
    message: str
    evidence: dict[str, Any]


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    if not mask.any():
        return []
    padded = np.zeros(mask.size + 2, dtype=np.int8)
    padded[1:-1] = mask
    edges = np.flatnonzero(np.diff(padded)).tolist()
    return list(zip(edges[0::2], edges[1::2]))


def _hex(data: bytes, limit: int = 16) -> str:
    return data[:limit].hex() + ("..." if len(data) > limit else "")


class _Judge:
    """Rules 2-4 for the files of one history."""

    def __init__(self, history: History, files: Sequence[str], entries: Sequence[Any], journal: bool) -> None:
        self.history = history
        self.files = tuple(files)
        self.journal = journal
        self.ops = {f: history.ops_on(f) for f in self.files}
        self.pieces = {f: [p for op in self.ops[f] for p in _pieces(op)] for f in self.files}
        self.init = {f: history.initial_of(f) for f in self.files}
        self.syncs = [o for o in history.ops if o.op in _SYNC_OPS]
        self.failed_steps = sorted(
            e.complete_step
            for e in entries
            if e.kind != "mark" and e.complete_step is not None and e.status != 0
        )
        self._promises: dict[tuple[str, int], _Promise | None] = {}
        self._sizes: dict[tuple[str, int, int, int], bool] = {}
        self.size_checks = 0
        # every op that carries data, for explaining where found bytes came from
        self.sources = [(o, p) for o in history.ops if o.file is not None for p in _pieces(o) if p.data]

    # -- rule 2: what a successful sync promises ---------------------------------------------------

    def promise(self, file: str, c: int) -> _Promise | None:
        cands = [
            o
            for o in self.syncs
            if o.ret is not None
            and o.ret < c
            and o.result == 0
            and (o.op == "sync" or o.file == file)
            and not (o.op == "sync" and bisect.bisect_left(self.failed_steps, o.ret + 1) > 0)
        ]
        if not cands:
            return None
        f = max(cands, key=lambda o: (o.invoke, o.index))
        key = (file, f.index)
        if key not in self._promises:
            self._promises[key] = self._make_promise(file, f)
        return self._promises[key]

    def _make_promise(self, file: str, f: HistoryOp) -> _Promise:
        ops = self.ops[file]
        failed = [
            o.ret
            for o in ops
            if o.op in ("fsync", "fdatasync")
            and o.ret is not None
            and o.result is not None
            and o.result < 0
            and o.ret <= f.invoke  # the same step when the thread's next call is F
        ]
        # a remount after a failed write drops the error with the inode (errseq lives in the
        # in-memory mapping): an fsync after it cannot report what that write lost, so it
        # promises nothing about the ops before the remount either
        failed += [
            o.ret
            for o in self.history.ops
            if o.op == "remount"
            and o.ret is not None
            and o.ret <= f.invoke
            and bisect.bisect_left(self.failed_steps, o.ret) > 0
        ]
        floor = max(failed) if failed else -1
        required = tuple(
            o
            for o in ops
            if o.invoke > floor
            and o.completed
            and o is not f
            and ((o.ret is not None and o.ret < f.invoke) or (o.tid == f.tid and o.seq < f.seq))
        )
        pieces = [p for o in required for p in _pieces(o)]
        bounds = sorted(
            {0, len(self.init[file]), *(p.a for p in pieces), *(p.b for p in pieces if p.b < _INF)}
        )
        segs: list[tuple[int, int, tuple[_Piece | None, ...]]] = []
        for k, s in enumerate(bounds):
            e = bounds[k + 1] if k + 1 < len(bounds) else _INF
            touching = [p for p in pieces if p.a <= s and e <= p.b]
            definite = [p for p in touching if p.definite]
            cands: list[_Piece | None] = [
                p for p in touching if not any(q is not p and _must_precede(p.op, q.op) for q in definite)
            ]
            cands.sort(key=lambda p: (p is not None and not p.definite, -(p.op.index if p else -1)))
            if not definite:
                cands.append(None)
            segs.append((s, e, tuple(cands)))
        return _Promise(f, required, tuple(segs))

    # -- rule 4 (and the size part of rule 2) ------------------------------------------------------

    def size_ok(self, file: str, size: int, c: int, promise: _Promise | None) -> bool:
        ops = [
            o
            for o in self.ops[file]
            if o.invoke <= c and o.op not in ("pread", "mmap", "munmap", "fsync", "fdatasync")
        ]
        low = promise.sync.invoke - 1 if promise is not None else -1
        cuts = {low, min(c, _END)}
        for o in ops:
            for v in (o.invoke, o.ret):
                if v is not None and low < v <= c:
                    cuts.add(v)
        required = {o.index for o in promise.required} if promise is not None else set()
        sync = -1 if promise is None else promise.sync.index
        for k in sorted(cuts, reverse=True):
            key = (file, sync, k, size)
            hit = self._sizes.get(key)
            if hit is None:
                hit = self._sizes[key] = self._size_at_cut(file, ops, k, size, required)
            if hit:
                return True
        return False

    def _size_at_cut(self, file: str, ops: list[HistoryOp], k: int, size: int, required: set[int]) -> bool:
        self.size_checks += 1
        out: list[HistoryOp] = []
        for o in ops:
            if o.invoke > k or o.op == "mwrite":
                continue
            done = o.ret is not None and o.ret <= k
            if o.index in required:
                out.append(o)
                continue
            if o.op == "pwrite":
                n = (o.result or 0) if done else o.arg("len")
                if n <= 0:
                    continue
                # delalloc: the on-disk size follows writeback, to any value up to the write's end
                o = replace(
                    o, op="fallocate", args={"mode": "alloc", "off": o.arg("off"), "len": n}, data=None
                )
                o = replace(o, ret=o.ret if done else None, result=-28 if done else None)
            elif not done:
                o = replace(o, ret=None, result=None)
            out.append(o)
        hist = History(files=(file,), ops=tuple(out), initial={file: self.init[file]})
        return not check_final(hist, {file: bytes(size)}, unknown={file: [(0, _INF)]})

    # -- bytes -------------------------------------------------------------------------------------

    def judge(
        self, file: str, content: bytes, c: int, lost: list[tuple[int, int]], no_bytes: bool = False
    ) -> list[_Violation]:
        out: list[_Violation] = []
        arr = np.frombuffer(content, dtype=np.uint8)
        n = arr.size
        lost_mask = np.zeros(n, dtype=bool)
        for a, b in lost:
            lost_mask[a : min(b, n)] = True
        promise = self.promise(file, c)
        init = np.zeros(n, dtype=np.uint8)
        raw_init = self.init[file][:n]
        init[: len(raw_init)] = np.frombuffer(raw_init, dtype=np.uint8)
        foreign = np.zeros(n, dtype=bool)
        if self.journal:
            ok3 = (arr == 0) | (arr == init) | lost_mask
            for p in self.pieces[file]:
                if (p.data is not None and p.step <= c) or (p.unknown and p.step <= c):
                    _allow(ok3, arr, p)
            foreign = ~ok3
            if foreign.any():
                out.append(self._foreign(file, arr, foreign, c))
        if promise is not None and not no_bytes:
            ok2 = lost_mask | foreign
            for s, e, cands in promise.segments:
                e2 = min(e, n)
                if s >= e2:
                    continue
                for cand in cands:
                    if cand is None:
                        ok2[s:e2] |= arr[s:e2] == init[s:e2]
                    else:
                        data = cand.data[s - cand.a : e2 - cand.a] if cand.data is not None else None
                        sub = _Piece(0, e2 - s, cand.op, data, cand.definite, cand.step, cand.unknown)
                        _allow(ok2[s:e2], arr[s:e2], sub)
            req = {o.index for o in promise.required}
            for p in self.pieces[file]:
                if p.op.index in req or p.op.invoke > c:
                    continue
                if self.journal:
                    _allow(ok2, arr, p)
                else:  # no ordering without a journal: a later op may leave any stale bytes
                    ok2[p.a : min(p.b, n)] = True
            if not ok2.all():
                out.append(self._lost_data(file, arr, ~ok2, promise, init))
        if not self.size_ok(file, n, c, promise):
            out.append(self._bad_size(file, n, c, promise))
        return out

    # -- explanations ------------------------------------------------------------------------------

    def source_of(self, file: str, start: int, found: bytes, c: int) -> tuple[str, str]:
        """(short class for titles, text) of who wrote ``found`` at ``start`` of ``file``."""
        if not any(found):
            return "zeros", "zeros"
        probe = found[: min(len(found), 16)]
        best: tuple[int, str, str] | None = None
        for op, p in self.sources:
            assert p.data is not None
            if op.file == file and p.a <= start < p.b:
                k = start - p.a
                if p.data[k : k + len(probe)] == probe:
                    when = (
                        "invoked after the crash point" if op.invoke > c else "invoked before the crash point"
                    )
                    cls = "data written after the crash point" if op.invoke > c else "stale data of this file"
                    rank = 0
                    text = f"written by op {op.index} ({op.describe()}, {when})"
                    if best is None or rank < best[0]:
                        best = (rank, cls, text)
                    continue
            pos = p.data.find(probe)
            if pos >= 0:
                rank = 1 if op.file != file else 2
                cls = "data of another file" if op.file != file else "this file's data at another offset"
                text = f"op {op.index}'s data ({op.describe()}) for file {op.file} at offset {p.a + pos}"
                if best is None or rank < best[0]:
                    best = (rank, cls, text)
        if best is not None:
            return best[1], best[2]
        if len(found) >= 4 and _BE32.unpack_from(found, 0)[0] == JBD2_MAGIC_NUMBER:
            return "journal block", "a jbd2 journal block"
        return "unknown bytes", "of unknown origin"

    def _diff_list(
        self, file: str, arr: np.ndarray, bad: np.ndarray, c: int, expected: Any
    ) -> tuple[list[dict[str, Any]], str]:
        diffs: list[dict[str, Any]] = []
        cls0 = ""
        for a, b in _runs(bad)[:_MAX_DIFFS]:
            found = arr[a:b].tobytes()
            cls, text = self.source_of(file, a, found, c)
            cls0 = cls0 or cls
            exp, exp_by = expected(a, b)
            diffs.append(
                {
                    "start": a,
                    "end": b,
                    "found": _hex(found, 32),
                    "found_by": text,
                    "expected": _hex(exp, 32),
                    "expected_by": exp_by,
                }
            )
        return diffs, cls0

    def _foreign(self, file: str, arr: np.ndarray, bad: np.ndarray, c: int) -> _Violation:
        def expected(a: int, b: int) -> tuple[bytes, str]:
            return b"", "zeros, the file's earlier content, or bytes written there before the crash"

        diffs, cls = self._diff_list(file, arr, bad, c, expected)
        d = diffs[0]
        msg = (
            f"file {file}: bytes [{d['start']}, {d['end']}) hold {d['found']} ({d['found_by']}): "
            f"no op on {file} invoked before the crash wrote them there; "
            f"{int(bad.sum())} foreign bytes in all"
        )
        return _Violation(
            3, "crash-consistency", f"crash: foreign bytes in a file ({cls})", file, msg, {"diffs": diffs}
        )

    def _lost_data(
        self, file: str, arr: np.ndarray, bad: np.ndarray, promise: _Promise, init: np.ndarray
    ) -> _Violation:
        segs = promise.segments
        starts = [s for s, _, _ in segs]

        def expected(a: int, b: int) -> tuple[bytes, str]:
            k = bisect.bisect_right(starts, a) - 1
            _, e, cands = segs[k]
            hi = min(b, e)
            p = cands[0] if cands else None
            if p is None:
                return init[a:hi].tobytes(), "the initial content"
            if p.data is None:
                return bytes(hi - a), f"zeroed by op {p.op.index} ({p.op.describe()})"
            return p.data[a - p.a : hi - p.a], f"written by op {p.op.index} ({p.op.describe()})"

        c_dummy = promise.sync.ret or 0
        diffs, cls = self._diff_list(file, arr, bad, c_dummy + 1, expected)
        first_exp = expected(diffs[0]["start"], diffs[0]["end"])[1]
        what = "zeros" if first_exp.startswith(("zeroed", "the initial")) else "synced data"
        f = promise.sync
        d = diffs[0]
        msg = (
            f"file {file}: op {f.index} ({f.describe()}) returned 0 at step {f.ret}, yet bytes "
            f"[{d['start']}, {d['end']}) hold {d['found']} ({d['found_by']}), expected {d['expected']} "
            f"{d['expected_by']}; no later op may have changed them; {int(bad.sum())} bytes in all"
        )
        title = f"crash: {f.op}'d data lost ({cls} instead of {what})"
        return _Violation(2, "crash-consistency", title, file, msg, {"diffs": diffs, "sync": f.index})

    def _bad_size(self, file: str, size: int, c: int, promise: _Promise | None) -> _Violation:
        ops = [o for o in self.ops[file] if o.invoke <= c]
        changers = [o for o in ops if o.op in ("pwrite", "truncate", "creat", "fallocate")]
        ev: dict[str, Any] = {
            "size_found": size,
            "size_changing_ops_before_crash": [
                f"op {o.index} ({o.describe()}) -> {o.result}" for o in changers[-8:]
            ],
        }
        if promise is not None:
            f = promise.sync
            ev["sync"] = f.index
            msg = (
                f"file {file}: size {size} after recovery, but op {f.index} ({f.describe()}) returned 0 "
                f"at step {f.ret}: no prefix of the history that includes the "
                f"{len(promise.required)} ops completed before it gives that size"
            )
            return _Violation(2, "crash-consistency", f"crash: {f.op}'d file size lost", file, msg, ev)
        msg = f"file {file}: size {size} after recovery is not the size of any prefix of the history"
        return _Violation(4, "crash-consistency", "crash: impossible file size after recovery", file, msg, ev)


# --------------------------------------------------------------------------------------------------
# the driver


@dataclass
class CrashReport:
    """What :func:`crash_report` did: the findings, and how much work it took."""

    findings: list[Finding]
    states: int = 0
    points: int = 0
    images: int = 0  # distinct crash images recovered and read
    recoveries: int = 0  # recover() calls (memoization misses)
    seconds: float = 0.0
    journal: bool = True

    @property
    def states_per_second(self) -> float:
        return self.states / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _ImageResult:
    """What one recovered crash image holds: file contents (None: missing/unreadable), their
    extents (when needed to map lost sectors), whether they have extent-tree blocks, and the
    structural violations (rule 1)."""

    files: dict[str, bytes | None]
    extents: dict[str, tuple[int, list[Any]]]
    tree_blocks: dict[str, bool]
    structural: list[_Violation]
    transactions: tuple[int, ...] = ()


def crash_report(
    history: History,
    base: np.ndarray,
    iolog: Any,
    start_mark: int,
    *,
    seed: int,
    max_states: int = DEFAULT_MAX_STATES,
    files: Sequence[str] | None = None,
    check_states: int | None = None,
) -> CrashReport:
    """:func:`check_crashes` with statistics (see the module docstring)."""
    t0 = time.perf_counter()
    entries = _entries(iolog)
    names = tuple(history.files if files is None else files)
    base = np.asarray(base, dtype=np.uint8)
    base_img = Ext4Image(base)
    journal = base_img.superblock.has_compat(EXT4_FEATURE_COMPAT_HAS_JOURNAL)
    bs = base_img.block_size
    rng = random.Random(seed)
    points: list[_Point] = []
    for upto, label in _crash_points(entries, start_mark, rng):
        step = entries[upto].submit_step if upto < len(entries) else _END
        points.append(_Point(upto, step, label, entries))
    specs = _plan_states(points, entries, rng, max_states, check_states)
    if check_states is not None:
        # the first states of the full plan: what a smaller budget finds, the full one finds too
        specs = specs[:check_states]
    specs.sort(key=lambda s: s.point.upto)
    disk = _Disk(base, entries, bs // SECTOR_SIZE)
    reader = _WorkImage
    fsck_cache = _FsckCache()
    jr = _Journal(base, base_img) if journal else None
    judge = _Judge(history, names, entries, journal)
    nsectors = base.size // SECTOR_SIZE
    failures = any(e.kind == "write" and e.complete_seq is not None and e.status != 0 for e in entries)
    spb = bs // SECTOR_SIZE
    jblocks = set(jr.jmap) if jr is not None else set()
    in_journal = {
        e.index
        for e in entries
        if e.kind == "write"
        and all(b in jblocks for b in range(e.sector // spb, (e.sector + e.nsectors - 1) // spb + 1))
    }
    by_state: dict[tuple[Any, ...], _ImageResult] = {}
    by_content: dict[tuple[Any, ...], _ImageResult] = {}
    found: dict[str, tuple[Finding, int]] = {}
    report = CrashReport(findings=[], journal=journal)
    for spec in specs:
        disk.advance(spec.point.state)
        res = by_state.get(spec.key)
        if res is None:
            disk.apply(spec)
            try:
                ckey: tuple[Any, ...] | None = None
                rkey = jr.key(disk.work) if jr is not None else b""
                if rkey is not None:
                    applied = set(spec.point.state.durable) | set(spec.chosen)
                    ckey = (
                        tuple(sorted(i for i in applied if i not in in_journal)),
                        tuple(t for t in spec.torn if t[0] not in in_journal),
                        rkey,
                    )
                    res = by_content.get(ckey)
                if res is None:
                    res = _read_state(
                        disk, jr, rkey, bs, names, need_extents=failures, reader=reader, fsck_cache=fsck_cache
                    )
                    if ckey is not None:
                        by_content[ckey] = res
            finally:
                disk.restore()
            by_state[spec.key] = res
        report.states += 1
        lost: dict[str, list[tuple[int, int]]] = {}
        if failures:
            cut = _cutoff(entries, spec.point.upto)
            lost_sectors = _lost_sectors(entries, nsectors, cut)
            lost = _map_lost_extents(res.extents, lost_sectors, bs)
        violations = list(res.structural)
        for name in names:
            content = res.files.get(name)
            if content is None:
                continue
            no_bytes = not journal and res.tree_blocks.get(name, False)
            violations += judge.judge(name, content, spec.point.step, lost.get(name, []), no_bytes=no_bytes)
        for v in violations:
            _record(found, v, spec, entries, history, res)
    report.points = len({s.point.upto for s in specs})
    report.images = len(by_content) if journal else len(by_state)
    report.recoveries = jr.misses if jr is not None else 0
    report.findings = [_finalize(f, n) for f, n in found.values()]
    report.seconds = time.perf_counter() - t0
    return report


def check_crashes(
    history: History,
    base: np.ndarray,
    iolog: Any,
    start_mark: int,
    *,
    seed: int,
    max_states: int = DEFAULT_MAX_STATES,
    files: Sequence[str] | None = None,
    check_states: int | None = None,
) -> list[Finding]:
    """Check crash states of one execution (see the module docstring); one finding per distinct
    problem. ``iolog`` is the execution's ``IoLog`` (or its entries), ``base`` the image before the
    setup, ``start_mark`` the log index where the program's threads started, ``files`` the files
    to judge (default: the history's), ``check_states`` how many states of the ``max_states`` plan
    to check (its first ones, so a finding seen with fewer is seen with all). Deterministic for a
    given ``seed``."""
    return crash_report(
        history,
        base,
        iolog,
        start_mark,
        seed=seed,
        max_states=max_states,
        files=files,
        check_states=check_states,
    ).findings


def _read_state(
    disk: _Disk,
    jr: _Journal | None,
    rkey: bytes | None,
    bs: int,
    names: Sequence[str],
    *,
    need_extents: bool,
    reader: Any = Ext4Image,
    fsck_cache: _FsckCache | None = None,
) -> _ImageResult:
    """Recover (journal mode), fsck and read the files of the state image in ``disk.work``."""
    structural: list[_Violation] = []
    transactions: tuple[int, ...] = ()
    if jr is not None:
        rec = jr.recover(disk.work, rkey)
        if rec.failure is not None:
            v = _Violation(1, "fsck", "crash state: journal cannot be recovered", None, rec.failure, {})
            return _ImageResult({}, {}, {}, [v])
        for blk, data in rec.delta:
            disk.put_block(blk, bs, data)
        transactions = rec.transactions
        if rec.errors:
            msg = "journal recovery: " + "; ".join(rec.errors[:3])
            ev = {"errors": list(rec.errors)}
            structural.append(
                _Violation(1, "fsck", "crash state: journal recovery reported errors", None, msg, ev)
            )
    try:
        img = reader(disk.work)
    except CorruptImageError as err:
        v = _Violation(1, "fsck", "crash state: image unreadable", None, f"{err.where}: {err.message}", {})
        return _ImageResult({}, {}, {}, [*structural, v])
    files: dict[str, bytes | None] = {}
    extents: dict[str, tuple[int, list[Any]]] = {}
    trees: dict[str, bool] = {}
    if jr is not None:
        checked = fsck_cache.check(img, disk.work) if fsck_cache is not None else fsck_result(img)
        for p in checked.problems:
            title = f"crash state fails fsck: {p.kind}"
            structural.append(_Violation(1, "fsck", title, None, p.message, {"problem": p.message}))
        root = checked.entries.get(EXT4_ROOT_INO)
        if root is None:
            try:
                root = img.dir_entries()
            except CorruptImageError:
                root = []
        inodes, maps, tree_map = checked.inodes, checked.extents, checked.tree_blocks
    else:
        try:
            root = img.dir_entries()
        except CorruptImageError:
            root = []
        inodes, maps, tree_map = {}, {}, {}
    inos = {e.name.decode("utf-8", "surrogateescape"): e.ino for e in root}
    for name in names:
        ino = inos.get(name)
        try:
            if ino is None:
                raise FileNotFoundError(name)
            inode = inodes.get(ino) or img.inode(ino)
            if not inode.is_reg:
                raise IsADirectoryError(f"{name!r} is not a regular file")
            if ino in maps and not inode.has_inline_data:
                ext, tree = maps[ino], tree_map.get(ino, [])
            elif inode.has_extents and not inode.has_inline_data:
                ext, tree = img.extent_tree(ino, inode)
            else:
                ext, tree = img.extents(ino, inode), []
            files[name] = _read_data(img, ino, inode, ext)
            extents[name] = (inode.size, ext)
            trees[name] = bool(tree)
        except FileNotFoundError:
            files[name] = None
            if jr is not None:
                msg = f"file {name} is not in the root directory"
                structural.append(
                    _Violation(1, "fsck", "crash state: file missing after recovery", name, msg, {})
                )
        except (CorruptImageError, IsADirectoryError) as err:
            files[name] = None
            if jr is not None:
                msg = f"file {name}: {err}"
                title = "crash state: file unreadable after recovery"
                structural.append(_Violation(1, "fsck", title, name, msg, {}))
    return _ImageResult(files, extents, trees, structural, transactions)


def _read_data(img: Ext4Image, ino: int, inode: Any, extents: Sequence[Any]) -> bytes:
    """``Ext4Image.read_inode_data`` with the extents already decoded."""
    if inode.has_inline_data:
        return img.read_inode_data(ino, inode)
    size = inode.size
    if size > DEFAULT_MAX_READ:
        raise CorruptImageError(
            f"i_size {size} exceeds the read limit {DEFAULT_MAX_READ}", where=f"inode {ino}"
        )
    out = bytearray(size)
    bs = img.block_size
    for e in extents:
        start = e.lblk * bs
        if e.unwritten or start >= size:
            continue
        n = min(e.len * bs, size - start)
        for k in range(-(-n // bs)):
            m = min(bs, n - k * bs)
            out[start + k * bs : start + k * bs + m] = img.read_block(e.pblk + k, where=f"inode {ino}")[:m]
    return bytes(out)


def _map_lost_extents(
    extents: Mapping[str, tuple[int, list[Any]]], lost: np.ndarray, bs: int
) -> dict[str, list[tuple[int, int]]]:
    out: dict[str, list[tuple[int, int]]] = {}
    if not lost.size or not lost.any():
        return out
    for name, (size, ext) in extents.items():
        r = _lost_file_ranges(ext, size, lost, bs)
        if r:
            out[name] = r
    return out


def _cutoff(entries: Sequence[Any], upto: int) -> int | None:
    return entries[upto].submit_seq if upto < len(entries) else None


def _record(
    found: dict[str, tuple[Finding, int]],
    v: _Violation,
    spec: _StateSpec,
    entries: Sequence[Any],
    history: History,
    res: _ImageResult,
) -> None:
    key = f"{v.category}: {v.title}"
    if key in found:
        f, n = found[key]
        found[key] = (f, n + 1)
        return
    p = spec.point
    st = p.state
    chosen = set(spec.chosen)
    torn = dict(spec.torn)
    completed = sorted(
        (o for o in history.ops if o.ret is not None and o.ret < p.step), key=lambda o: (o.ret, o.index)
    )
    step_text = "end of the run" if p.step >= _END else f"step {p.step}"
    evidence: dict[str, Any] = {
        "rule": v.rule,
        "crash point": f"IO log index {p.upto} ({p.label}), {step_text}",
        "state": spec.label,
        "last ops completed before the crash": [
            f"op {o.index} T{o.tid} {o.op}{' ' + o.file if o.file else ''} -> {o.result} (step {o.ret})"
            for o in completed[-_LAST_OPS:]
        ],
        "durable writes": len(st.durable),
        "kept volatile/in-flight writes": [_describe(entries[i]) for i in sorted(chosen)],
        "dropped volatile/in-flight writes": [
            _describe(entries[i])
            for i in sorted(set(st.volatile) | set(st.in_flight))
            if i not in chosen and i not in torn
        ],
        "torn writes": [
            f"{_describe(entries[i])}: first {k} of {entries[i].nsectors} sectors"
            for i, k in sorted(torn.items())
        ],
        "recovered transactions": list(res.transactions),
    }
    if v.file is not None:
        evidence["file"] = v.file
    evidence.update(v.evidence)
    where = f"crash at IO log index {p.upto} ({step_text}; {spec.label}): "
    found[key] = (Finding(v.category, v.title, where + v.message, evidence), 1)


def _finalize(f: Finding, n: int) -> Finding:
    f.evidence["states showing it"] = n
    return f
