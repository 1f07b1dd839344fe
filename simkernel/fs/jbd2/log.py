"""jbd2's commit path as data: which journal blocks a transaction writes, where, and in which order.

Pure functions over plain values (no scheduler, no I/O), mirroring fs/jbd2/commit.c
(``jbd2_journal_commit_transaction``), revoke.c (``jbd2_journal_write_revoke_records``), journal.c
(``jbd2_journal_next_log_block``, ``journal_reset``, ``jbd2_mark_journal_empty``,
``jbd2_journal_update_sb_log_tail``) and checkpoint.c (``jbd2_cleanup_journal_tail``).  The kernel
model turns the plans into bios; the oracle (``oracle.jbd2_recovery``) replays what reached the disk.

Format (``JournalGeometry`` defaults): jbd2 superblock v2 with ``INCOMPAT_REVOKE | INCOMPAT_CSUM_V3``
and crc32c, 32-bit block numbers (no ``INCOMPAT_64BIT``: the model's ext4 has no 64bit feature, and
the kernel only sets it on 64bit filesystems).  CSUM_V3 is what the kernel uses on metadata_csum
filesystems (today's mkfs default); it is chosen here, although the model's ext4 has no metadata_csum,
because its per-block checksums let recovery tell a durable commit block whose log blocks never
reached the disk (a missing PREFLUSH) from a good transaction, and e2fsck 1.47 replays it on any
ext4.  The kernel-faithful format for a non-metadata_csum fs (no journal checksums, 8-byte tags) is
``feature_incompat=JBD2_FEATURE_INCOMPAT_REVOKE``; ``JBD2_FEATURE_COMPAT_CHECKSUM`` (v1, mount option
``journal_checksum``) and ``INCOMPAT_64BIT`` are supported too.

Log layout of one transaction, in write order (all in ``[s_first, s_maxlen)``, wrapping from
``s_maxlen - 1`` to ``s_first``): revoke blocks, then per batch a descriptor followed by its data
blocks (escaped when they begin with the jbd2 magic), then the commit block.

Journal superblock (``s_start``/``s_sequence``) rules modelled here:

* mkfs / clean unmount: ``s_start = 0`` (empty).  Mount of such a journal: next tid = ``s_sequence + 1``,
  head = ``s_first`` (``jbd2_journal_recover`` no-recovery branch + ``journal_reset``);
* the first commit after that (``JBD2_FLUSHED``) first writes the superblock with ``s_start = head``,
  ``s_sequence = tid`` (a plain write, made durable by the commit block's PREFLUSH);
* a checkpoint moves the tail: ``s_start`` = first log block of the oldest transaction still needed,
  ``s_sequence`` = its tid; with nothing left, ``s_start = head`` and ``s_sequence = next tid`` (still
  non-zero: recovery finds nothing there);
* ``jbd2_journal_flush``: ``s_start = 0``, ``s_sequence = next tid``; unmount
  (``jbd2_journal_destroy``) first bumps the next tid, so ``s_sequence = next tid + 1``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from simkernel.fs.ext4.ondisk import (
    FIXED_TIME,
    JBD2_CRC32C_CHKSUM,
    JBD2_FEATURE_COMPAT_CHECKSUM,
    JBD2_FEATURE_INCOMPAT_64BIT,
    JBD2_FEATURE_INCOMPAT_CSUM_V2,
    JBD2_FEATURE_INCOMPAT_CSUM_V3,
    JBD2_FEATURE_INCOMPAT_REVOKE,
    JBD2_SUPERBLOCK_SIZE,
    JournalSuperBlock,
    Layout,
    encode_jbd2_commit_block,
    encode_jbd2_descriptor_block,
    encode_jbd2_revoke_block,
    encode_journal_superblock,
    jbd2_crc32_be,
    jbd2_csum_seed,
    jbd2_descriptor_capacity,
    jbd2_escape,
    jbd2_has_csum_v2or3,
    jbd2_revoke_capacity,
    jbd2_tag_bytes,
    jbd2_tag_csum,
    update_journal_superblock,
)

#: the journal format the model writes (see module docstring)
DEFAULT_FEATURE_COMPAT = 0
DEFAULT_FEATURE_INCOMPAT = JBD2_FEATURE_INCOMPAT_REVOKE | JBD2_FEATURE_INCOMPAT_CSUM_V3
#: what this writer can produce
WRITER_COMPAT_FEATURES = JBD2_FEATURE_COMPAT_CHECKSUM
WRITER_INCOMPAT_FEATURES = (
    JBD2_FEATURE_INCOMPAT_REVOKE
    | JBD2_FEATURE_INCOMPAT_64BIT
    | JBD2_FEATURE_INCOMPAT_CSUM_V2
    | JBD2_FEATURE_INCOMPAT_CSUM_V3
)

TID_MASK = 0xFFFFFFFF


def tid_gt(x: int, y: int) -> bool:
    """``tid_gt``: x is a later transaction than y (32-bit wrap-around)."""
    d = (x - y) & TID_MASK
    return 0 < d < 0x80000000


def tid_geq(x: int, y: int) -> bool:
    """``tid_geq``."""
    return ((x - y) & TID_MASK) < 0x80000000


@dataclass(frozen=True)
class JournalGeometry:
    """Where the journal lives and how it is formatted (the parts of ``journal_t`` that never change).

    ``fs_start`` is the fs block of journal block 0 (the journal superblock): the model's journal
    inode 8 is one contiguous run (``Layout.journal_start``).  ``fs_blocks`` (the fs size) bounds
    the block numbers a transaction may log.
    """

    fs_start: int
    maxlen: int
    block_size: int
    uuid: bytes
    first: int = 1
    feature_compat: int = DEFAULT_FEATURE_COMPAT
    feature_incompat: int = DEFAULT_FEATURE_INCOMPAT
    fs_blocks: int | None = None
    csum_seed: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        bs = self.block_size
        if bs < 1024 or bs > 65536 or bs & (bs - 1):
            raise ValueError(f"journal block size {bs} is not a power of two in 1024..65536")
        if len(self.uuid) != 16:
            raise ValueError("journal uuid must be 16 bytes")
        if not 0 < self.first < self.maxlen:
            raise ValueError(f"journal s_first {self.first} / s_maxlen {self.maxlen} invalid")
        if self.fs_start < 0 or (self.fs_blocks is not None and self.fs_start + self.maxlen > self.fs_blocks):
            raise ValueError(f"journal blocks {self.fs_start}+{self.maxlen} outside the filesystem")
        if self.feature_compat & ~WRITER_COMPAT_FEATURES or self.feature_incompat & ~WRITER_INCOMPAT_FEATURES:
            raise ValueError(
                f"journal features compat 0x{self.feature_compat:x} incompat 0x{self.feature_incompat:x} "
                "not supported by the writer"
            )
        v2 = self.feature_incompat & JBD2_FEATURE_INCOMPAT_CSUM_V2
        v3 = self.feature_incompat & JBD2_FEATURE_INCOMPAT_CSUM_V3
        if v2 and v3:
            raise ValueError("CSUM_V2 and CSUM_V3 are exclusive")
        if (v2 or v3) and self.feature_compat & JBD2_FEATURE_COMPAT_CHECKSUM:
            raise ValueError("COMPAT_CHECKSUM (v1) and CSUM_V2/V3 are exclusive")
        object.__setattr__(self, "csum_seed", jbd2_csum_seed(self.uuid))

    @classmethod
    def from_layout(
        cls,
        layout: Layout,
        uuid: bytes,
        *,
        feature_compat: int = DEFAULT_FEATURE_COMPAT,
        feature_incompat: int = DEFAULT_FEATURE_INCOMPAT,
    ) -> JournalGeometry:
        """The internal journal of a model filesystem (``uuid`` = the fs ``s_uuid``, as mke2fs copies it)."""
        if not layout.has_journal:
            raise ValueError("layout has no journal")
        return cls(
            fs_start=layout.journal_start,
            maxlen=layout.journal_blocks,
            block_size=layout.block_size,
            uuid=uuid,
            feature_compat=feature_compat,
            feature_incompat=feature_incompat,
            fs_blocks=layout.blocks_count,
        )

    @property
    def has_csum_v2or3(self) -> bool:
        return jbd2_has_csum_v2or3(self.feature_incompat)

    @property
    def tag_bytes(self) -> int:
        """``journal_tag_bytes``."""
        return jbd2_tag_bytes(self.feature_incompat)

    @property
    def tags_per_descriptor(self) -> int:
        return jbd2_descriptor_capacity(self.block_size, self.feature_incompat)

    @property
    def revokes_per_block(self) -> int:
        return jbd2_revoke_capacity(self.block_size, self.feature_incompat)

    def fs_block(self, jblock: int) -> int:
        """``jbd2_journal_bmap``: fs block of journal block ``jblock``."""
        if not 0 <= jblock < self.maxlen:
            raise ValueError(f"journal block {jblock} outside 0..{self.maxlen - 1}")
        return self.fs_start + jblock

    def is_journal_block(self, fs_block: int) -> bool:
        return self.fs_start <= fs_block < self.fs_start + self.maxlen


class LiveTransaction(NamedTuple):
    """A committed transaction still needed by recovery (not yet behind the on-disk tail)."""

    tid: int
    start: int  # journal block of its first log block (``t_log_start``)
    nblocks: int  # log blocks it occupies, commit block included


@dataclass(frozen=True)
class JournalState:
    """The journal's moving parts.

    ``start``/``sequence`` are the on-disk superblock's ``s_start``/``s_sequence`` (``j_tail``,
    ``j_tail_sequence``; ``start == 0``: the log is empty on disk).  ``head`` is the next log block
    to write (``j_head``), ``next_tid`` the tid of the next transaction (``j_transaction_sequence``),
    ``live`` the committed transactions from the tail on, oldest first.
    """

    first: int
    maxlen: int
    start: int
    sequence: int
    head: int
    next_tid: int
    live: tuple[LiveTransaction, ...] = ()

    def __post_init__(self) -> None:
        if not 0 < self.first < self.maxlen:
            raise ValueError(f"journal first {self.first} / maxlen {self.maxlen} invalid")
        if not self.first <= self.head < self.maxlen:
            raise ValueError(f"journal head {self.head} outside [{self.first}, {self.maxlen})")
        if self.start and not self.first <= self.start < self.maxlen:
            raise ValueError(f"journal start {self.start} outside [{self.first}, {self.maxlen})")
        if not self.start and self.live:
            raise ValueError("an empty journal (start 0) has no live transactions")
        if self.live:
            if (self.live[0].start, self.live[0].tid) != (self.start, self.sequence):
                raise ValueError("the oldest live transaction must sit at the tail (start, sequence)")
            for a, b in zip(self.live, self.live[1:]):
                if b.tid != (a.tid + 1) & TID_MASK:
                    raise ValueError("live transactions must have consecutive tids")
            if (self.live[-1].tid + 1) & TID_MASK != self.next_tid:
                raise ValueError("next_tid must follow the newest live transaction")

    @property
    def log_length(self) -> int:
        """Blocks of the circular log: ``s_maxlen - s_first``."""
        return self.maxlen - self.first

    @property
    def tail(self) -> int:
        """``j_tail``: where the oldest needed block is (the head when nothing is live)."""
        return self.start if self.start else self.head

    def advance(self, jblock: int, n: int = 1) -> int:
        """``jblock`` moved ``n`` blocks forward in the log, wrapping at ``maxlen`` to ``first``."""
        return self.first + (jblock - self.first + n) % self.log_length


class LogWrite(NamedTuple):
    """One journal block to write: journal block index, fs block, contents, and what it is."""

    jblock: int
    fs_block: int
    data: bytes
    kind: str  # "revoke" | "descriptor" | "data" | "commit" | "superblock"
    target: int | None = None  # data blocks: the fs block recovery copies it to


@dataclass(frozen=True)
class TransactionPlan:
    """The writes of one commit (``jbd2_journal_commit_transaction``) and the state after it.

    Kernel order: ``superblock_write`` first when present (plain write, wait for completion), then
    every ``log_writes`` block (plain REQ_SYNC writes, any order, wait for all completions), then
    ``commit_write`` with REQ_PREFLUSH | REQ_FUA; the transaction is durable when that completes.
    """

    tid: int
    superblock: LogWrite | None
    log: tuple[LogWrite, ...]
    commit: LogWrite
    new_state: JournalState

    @property
    def superblock_write(self) -> tuple[int, bytes] | None:
        """(fs block, bytes) of the journal superblock to write before the log, or None."""
        return None if self.superblock is None else (self.superblock.fs_block, self.superblock.data)

    @property
    def log_writes(self) -> list[tuple[int, bytes]]:
        """(fs block, bytes) of the revoke, descriptor and data blocks, in log order."""
        return [(w.fs_block, w.data) for w in self.log]

    @property
    def commit_write(self) -> tuple[int, bytes]:
        """(fs block, bytes) of the commit block: write it only after every log write completed."""
        return self.commit.fs_block, self.commit.data

    @property
    def nblocks(self) -> int:
        """Log blocks used (commit included)."""
        return len(self.log) + 1


@dataclass(frozen=True)
class CheckpointPlan:
    """A log-tail move: the state after it and the superblock write that makes it durable (or None
    when the on-disk tail does not change)."""

    new_state: JournalState
    superblock: LogWrite | None
    released: tuple[int, ...]

    @property
    def superblock_write(self) -> tuple[int, bytes] | None:
        return None if self.superblock is None else (self.superblock.fs_block, self.superblock.data)


def initial_state(jsb: JournalSuperBlock) -> JournalState:
    """The state after mounting a journal that needs no recovery (``s_start == 0``).

    ``jbd2_journal_recover``: next tid = ``s_sequence + 1``; ``journal_reset``: head = tail =
    ``s_first`` (the superblock write is deferred to the first commit, ``JBD2_FLUSHED``).
    """
    if jsb.start:
        raise ValueError(f"journal needs recovery (s_start {jsb.start}); replay it before mounting")
    return JournalState(
        first=jsb.first,
        maxlen=jsb.maxlen,
        start=0,
        sequence=jsb.sequence,
        head=jsb.first,
        next_tid=(jsb.sequence + 1) & TID_MASK,
    )


def space_left(state: JournalState) -> int:
    """Free log blocks (``j_free``): the log length minus the blocks from the tail to the head."""
    if not state.live:
        return state.log_length
    used = (state.head - state.tail) % state.log_length
    return state.log_length - (used or state.log_length)


def blocks_needed(geom: JournalGeometry, nblocks: int, nrevokes: int = 0) -> int:
    """Log blocks a transaction with ``nblocks`` journalled blocks and ``nrevokes`` revokes takes:
    revoke blocks + descriptors + data blocks + the commit block."""
    per_desc = geom.tags_per_descriptor
    per_revoke = geom.revokes_per_block
    return -(-nrevokes // per_revoke) + -(-nblocks // per_desc) + nblocks + 1


def journal_superblock(geom: JournalGeometry, *, start: int, sequence: int) -> bytes:
    """The journal superblock block (``jbd2_write_superblock``) as the kernel writes it: the mkfs
    superblock (v2, ``nr_users`` 1, fs uuid) with the geometry's features and ``s_start``/``s_sequence``;
    csum v2/v3 set ``s_checksum_type`` crc32c and ``s_checksum``.  Padded with zeros to a block."""
    raw = encode_journal_superblock(
        block_size=geom.block_size,
        maxlen=geom.maxlen,
        uuid=geom.uuid,
        first=geom.first,
        sequence=sequence & TID_MASK,
        start=start,
        feature_compat=geom.feature_compat,
        feature_incompat=geom.feature_incompat,
        checksum_type=JBD2_CRC32C_CHKSUM if geom.has_csum_v2or3 else 0,
    )
    raw = update_journal_superblock(raw)  # checksum
    return raw + bytes(geom.block_size - JBD2_SUPERBLOCK_SIZE)


def _sb_write(geom: JournalGeometry, start: int, sequence: int) -> LogWrite:
    return LogWrite(
        0, geom.fs_block(0), journal_superblock(geom, start=start, sequence=sequence), "superblock"
    )


def _check_state(geom: JournalGeometry, state: JournalState) -> None:
    if (state.first, state.maxlen) != (geom.first, geom.maxlen):
        raise ValueError(
            f"journal state [{state.first}, {state.maxlen}) does not match the geometry "
            f"[{geom.first}, {geom.maxlen})"
        )


def plan_transaction(
    geom: JournalGeometry,
    state: JournalState,
    tid: int,
    blocks: Sequence[tuple[int, bytes]],
    revokes: Sequence[int] = (),
    *,
    commit_sec: int = FIXED_TIME,
    commit_nsec: int = 0,
) -> TransactionPlan:
    """Lay out transaction ``tid``: ``blocks`` = [(fs block, full block contents)] to journal (the
    ``t_buffers`` list, in order), ``revokes`` = fs blocks freed in this transaction.

    Raises ``ValueError`` for a kernel-side mistake: wrong tid, a block logged twice, a block both
    logged and revoked (the kernel cancels the revoke, ``jbd2_journal_cancel_revoke``), a block of the
    journal itself or outside the fs, or a transaction that does not fit ``space_left`` (checkpoint
    first).  ``commit_sec``/``commit_nsec`` go to the commit block (the kernel's wall clock).
    """
    _check_state(geom, state)
    tid &= TID_MASK
    if tid != state.next_tid:
        raise ValueError(f"transaction {tid} out of order: the journal expects tid {state.next_tid}")
    bs = geom.block_size
    seen: set[int] = set()
    for blk, data in blocks:
        if blk in seen:
            raise ValueError(f"block {blk} logged twice in transaction {tid}")
        seen.add(blk)
        if len(data) != bs:
            raise ValueError(f"block {blk}: contents are {len(data)} bytes, not {bs}")
        _check_target(geom, blk, "logged")
    revoked: set[int] = set()
    for blk in revokes:
        if blk in revoked:
            raise ValueError(f"block {blk} revoked twice in transaction {tid}")
        revoked.add(blk)
        if blk in seen:
            raise ValueError(f"block {blk} both logged and revoked in transaction {tid}")
        _check_target(geom, blk, "revoked")
    need = blocks_needed(geom, len(blocks), len(revokes))
    free = space_left(state)
    if need > free:
        raise ValueError(f"transaction {tid} needs {need} log blocks, {free} free: checkpoint first")

    start, sequence, sb = state.start, state.sequence, None
    if not state.start:
        # JBD2_FLUSHED: the on-disk superblock says "empty"; point it at this transaction first
        start, sequence = state.head, tid
        sb = _sb_write(geom, start, sequence)
    pos = state.head
    out: list[LogWrite] = []

    def take() -> tuple[int, int]:
        nonlocal pos
        jb = pos
        pos = state.advance(pos)
        return jb, geom.fs_block(jb)

    inc, seed = geom.feature_incompat, geom.csum_seed
    per = geom.revokes_per_block
    for i in range(0, len(revokes), per):
        jb, fb = take()
        data = encode_jbd2_revoke_block(
            tid, revokes[i : i + per], block_size=bs, feature_incompat=inc, csum_seed=seed
        )
        out.append(LogWrite(jb, fb, data, "revoke"))
    v1 = bool(geom.feature_compat & JBD2_FEATURE_COMPAT_CHECKSUM)
    v2 = bool(inc & JBD2_FEATURE_INCOMPAT_CSUM_V2)
    crc32_sum = 0xFFFFFFFF
    per = geom.tags_per_descriptor
    for i in range(0, len(blocks), per):
        djb, dfb = take()
        tags: list[tuple[int, bool, int]] = []
        datas: list[LogWrite] = []
        for blk, contents in blocks[i : i + per]:
            stored, escaped = jbd2_escape(contents)
            csum = jbd2_tag_csum(seed, tid, stored) if geom.has_csum_v2or3 else 0
            tags.append((blk, escaped, csum & 0xFFFF if v2 else csum))
            jb, fb = take()
            datas.append(LogWrite(jb, fb, stored, "data", blk))
        desc = encode_jbd2_descriptor_block(
            tid, tags, uuid=geom.uuid, block_size=bs, feature_incompat=inc, csum_seed=seed
        )
        if v1:  # jbd2_checksum_data over wbuf[]: the descriptor, then each (escaped) data block
            crc32_sum = jbd2_crc32_be(crc32_sum, desc)
            for w in datas:
                crc32_sum = jbd2_crc32_be(crc32_sum, w.data)
        out.append(LogWrite(djb, dfb, desc, "descriptor"))
        out.extend(datas)
    cjb, cfb = take()
    commit = encode_jbd2_commit_block(
        tid,
        block_size=bs,
        feature_compat=geom.feature_compat,
        feature_incompat=inc,
        csum_seed=seed,
        crc32_sum=crc32_sum,
        commit_sec=commit_sec,
        commit_nsec=commit_nsec,
    )
    assert len(out) + 1 == need
    new_state = replace(
        state,
        start=start,
        sequence=sequence,
        head=pos,
        next_tid=(tid + 1) & TID_MASK,
        live=(*state.live, LiveTransaction(tid, state.head, need)),
    )
    return TransactionPlan(tid, sb, tuple(out), LogWrite(cjb, cfb, commit, "commit"), new_state)


def _check_target(geom: JournalGeometry, blk: int, what: str) -> None:
    if blk < 0 or (geom.fs_blocks is not None and blk >= geom.fs_blocks):
        raise ValueError(f"{what} block {blk} outside the filesystem")
    if geom.is_journal_block(blk):
        raise ValueError(f"{what} block {blk} belongs to the journal")
    limit = 1 << 64 if geom.feature_incompat & JBD2_FEATURE_INCOMPAT_64BIT else 1 << 32
    if blk >= limit:
        raise ValueError(f"{what} block {blk} needs INCOMPAT_64BIT")


def checkpoint(geom: JournalGeometry, state: JournalState, through_tid: int) -> CheckpointPlan:
    """Release every live transaction with tid <= ``through_tid`` (``jbd2_cleanup_journal_tail``).

    Precondition (the caller's job, as in checkpoint.c): every block those transactions logged has
    been written back in place *and flushed* (``blkdev_issue_flush``) before the superblock write,
    which the kernel submits with REQ_SYNC | REQ_FUA.  The new tail is the oldest remaining
    transaction, or the head with ``s_sequence`` = the next tid when none remains.  No write when the
    tail does not move.
    """
    _check_state(geom, state)
    keep = tuple(t for t in state.live if tid_gt(t.tid, through_tid))
    released = tuple(t.tid for t in state.live if not tid_gt(t.tid, through_tid))
    if not state.start or not released:
        return CheckpointPlan(state, None, ())
    if keep:
        start, sequence = keep[0].start, keep[0].tid
    else:
        start, sequence = state.head, state.next_tid
    new_state = replace(state, start=start, sequence=sequence, live=keep)
    return CheckpointPlan(new_state, _sb_write(geom, start, sequence), released)


def mark_empty(geom: JournalGeometry, state: JournalState, *, unmount: bool = False) -> CheckpointPlan:
    """``jbd2_mark_journal_empty``: every transaction checkpointed, ``s_start = 0``.

    ``unmount`` (``jbd2_journal_destroy``) bumps the next tid first, so ``s_sequence`` = next tid + 1,
    and is written with REQ_PREFLUSH | REQ_FUA; ``jbd2_journal_flush`` writes ``s_sequence`` = next tid
    with REQ_FUA after flushing the checkpointed blocks.  Same precondition as :func:`checkpoint` for
    all live transactions.  Already empty on disk: no write (unless unmounting bumps the tid, which
    the kernel also only records in memory).
    """
    _check_state(geom, state)
    next_tid = (state.next_tid + 1) & TID_MASK if unmount else state.next_tid
    released = tuple(t.tid for t in state.live)
    if not state.start:  # already empty on disk: the superblock keeps its s_sequence
        return CheckpointPlan(replace(state, next_tid=next_tid), None, released)
    new_state = replace(state, start=0, sequence=next_tid, next_tid=next_tid, live=())
    return CheckpointPlan(new_state, _sb_write(geom, 0, next_tid), released)
