"""The oracle's own jbd2 journal recovery: what ``e2fsck`` (1.47) does to a crash image's journal.

``recover(image)`` finds the internal journal (``s_journal_inum``, normally inode 8, through its
extent tree), checks the journal superblock as ``e2fsck_journal_load`` does, and when ``s_start != 0``
runs the three passes of ``e2fsck/recovery.c`` (identical to the kernel's ``fs/jbd2/recovery.c``):

* PASS_SCAN from ``s_start`` expecting tid ``s_sequence``, wrapping from ``s_maxlen`` to ``s_first``:
  stop at the first block without the jbd2 magic or with another sequence; a descriptor skips its data
  blocks, a commit block ends a transaction.  The end is the first tid without a (valid) commit
  block, so an uncommitted tail is ignored.  Checksums: a v1 (COMPAT_CHECKSUM) or v2/v3 commit
  checksum mismatch ends the log there and marks the commit failed; a descriptor/revoke block with a
  bad v2/v3 checksum followed by a commit block with a commit time not older than the previous one is
  a corrupt journal (recovery fails), otherwise stale and the end of the log.
* PASS_REVOKE: per revoked block, the highest revoking tid.
* PASS_REPLAY: each tag of each committed transaction is copied to its fs block unless revoked by a
  tid >= the tag's, or (v2/v3) its tag checksum does not match; ESCAPE puts the magic back.

Afterwards, as e2fsck does: the journal superblock gets ``s_start = 0`` and ``s_sequence`` = end + 1
(recomputed checksum with v2/v3) and the fs superblock loses ``INCOMPAT_RECOVER``.

``strict=True`` (the default) raises :class:`~simkernel.errors.CorruptImageError` naming the journal
block for anything e2fsck would report as a journal error (bad checksums, failed commit, bad revoke
block).  ``strict=False`` reproduces what ``e2fsck -fy`` leaves on disk instead (checked against
e2fsck 1.47 in tests/test_jbd2_log.py): blocks with bad tag checksums skipped, the rest replayed;
after a failed pass the journal is discarded; the fs superblock gets ``s_state`` without VALID
(recovery error) or with ERROR_FS (failed commit, ``s_errno``), and the errors are listed in
``RecoveryResult.errors``.  A journal the oracle cannot read at all (no journal inode, holes, bad
superblock, unsupported features such as fast commits) and a tag that points outside the filesystem
or into the journal itself always raise.

Recovery also runs when ``s_start != 0`` but ``INCOMPAT_RECOVER`` is clear (``e2fsck -y`` answers
"run journal anyway"; a kernel mount would wipe the log instead): ``RecoveryResult.recover_flag``
tells which case it was.  The reader is independent of the kernel model: it shares only the on-disk
layouts (``simkernel.fs.ext4.ondisk``) and the ``oracle.image`` reader.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field, replace

import numpy as np

from oracle.image import Ext4Image
from simkernel.errors import CorruptImageError
from simkernel.fs.ext4.ondisk import (
    EXT4_ERROR_FS,
    EXT4_FEATURE_COMPAT_HAS_JOURNAL,
    EXT4_FEATURE_INCOMPAT_RECOVER,
    EXT4_FEATURE_RO_COMPAT_METADATA_CSUM,
    EXT4_SUPERBLOCK_OFFSET,
    EXT4_VALID_FS,
    JBD2_COMMIT_BLOCK,
    JBD2_CRC32_CHKSUM,
    JBD2_CRC32_CHKSUM_SIZE,
    JBD2_CRC32C_CHKSUM,
    JBD2_DESCRIPTOR_BLOCK,
    JBD2_FEATURE_COMPAT_CHECKSUM,
    JBD2_FEATURE_INCOMPAT_ASYNC_COMMIT,
    JBD2_FEATURE_INCOMPAT_CSUM_V2,
    JBD2_FEATURE_INCOMPAT_CSUM_V3,
    JBD2_FEATURE_INCOMPAT_FAST_COMMIT,
    JBD2_FLAG_ESCAPE,
    JBD2_KNOWN_INCOMPAT_FEATURES,
    JBD2_MAGIC_NUMBER,
    JBD2_REVOKE_BLOCK,
    JBD2_SUPERBLOCK_SIZE,
    JBD2_SUPERBLOCK_V1,
    JournalSuperBlock,
    decode_jbd2_commit_block,
    decode_jbd2_descriptor_tags,
    decode_jbd2_revoke_block,
    decode_journal_superblock,
    jbd2_block_tail_csum,
    jbd2_commit_csum,
    jbd2_crc32_be,
    jbd2_crc32c,
    jbd2_csum_seed,
    jbd2_has_csum_v2or3,
    jbd2_superblock_csum,
    jbd2_tag_csum,
    jbd2_unescape,
    update_journal_superblock,
)

_TID_MASK = 0xFFFFFFFF
_BE32 = struct.Struct(">I")
_LE16 = struct.Struct("<H")
_LE32 = struct.Struct("<I")


def _tid_gt(x: int, y: int) -> bool:
    d = (x - y) & _TID_MASK
    return 0 < d < 0x80000000


def _tid_geq(x: int, y: int) -> bool:
    return ((x - y) & _TID_MASK) < 0x80000000


class _Pass(enum.Enum):
    SCAN = "scan"
    REVOKE = "revoke"
    REPLAY = "replay"


@dataclass(frozen=True)
class ReplayedBlock:
    """One journal copy written back (or skipped): its transaction, journal block and fs block."""

    tid: int
    jblock: int
    fs_block: int


@dataclass(frozen=True)
class RecoveryResult:
    """The recovered image and what recovery did (``struct recovery_info`` and more)."""

    #: bytes from :func:`recover`; the replayed buffer itself from :func:`recover_in_place`
    image: bytes | bytearray
    #: the journal superblock had ``s_start != 0`` (there was a log to scan)
    needed: bool
    #: the fs superblock had ``INCOMPAT_RECOVER`` set
    recover_flag: bool
    #: ``info->start_transaction``: the tid expected first (``s_sequence``)
    start_transaction: int = 0
    #: ``info->end_transaction``: the first tid not replayed
    end_transaction: int = 0
    #: tids of the committed transactions replayed, in order
    transactions: tuple[int, ...] = ()
    #: every tag copy written, in replay order (a block logged twice appears twice)
    replayed: tuple[ReplayedBlock, ...] = ()
    #: tags skipped because a revoke record with tid >= theirs covers the block
    revoke_hits: tuple[ReplayedBlock, ...] = ()
    #: revoke records of committed transactions: fs block -> highest revoking tid
    revoked: dict[int, int] = field(default_factory=dict)
    #: tags skipped because their v2/v3 checksum does not match (strict=False only)
    bad_blocks: tuple[ReplayedBlock, ...] = ()
    #: ``journal->j_failed_commit``: tid whose commit block failed its checksum (strict=False only)
    failed_commit: int | None = None
    #: what e2fsck would report (strict=False only; strict mode raises instead)
    errors: tuple[str, ...] = ()
    #: the journal superblock as left in ``image``
    journal_superblock: JournalSuperBlock | None = None

    @property
    def blocks_written(self) -> dict[int, int]:
        """fs block -> tid of the copy it ended up with."""
        return {r.fs_block: r.tid for r in self.replayed}

    @property
    def nr_replays(self) -> int:
        """``info->nr_replays``."""
        return len(self.replayed)

    @property
    def nr_revokes(self) -> int:
        """Distinct revoked blocks (``info->nr_revokes`` counts records, duplicates included)."""
        return len(self.revoked)


class _RecoveryFailed(Exception):
    """A pass returned an error (``goto failed``): e2fsck discards the journal."""

    def __init__(self, message: str, where: str) -> None:
        super().__init__(message)
        self.message = message
        self.where = where


@dataclass
class _Info:
    start_transaction: int = 0
    end_transaction: int | None = None
    transactions: list[int] = field(default_factory=list)
    replayed: list[ReplayedBlock] = field(default_factory=list)
    revoke_hits: list[ReplayedBlock] = field(default_factory=list)
    bad_blocks: list[ReplayedBlock] = field(default_factory=list)
    revoked: dict[int, int] = field(default_factory=dict)
    failed_commit: int | None = None
    errors: list[str] = field(default_factory=list)


class _Journal:
    """``journal_t`` for one image: the block map of the journal inode plus the superblock fields."""

    def __init__(self, buf: bytearray, img: Ext4Image, strict: bool) -> None:
        sb = img.superblock
        self.buf = buf
        self.bs = sb.block_size
        self.fs_blocks = sb.blocks_count
        self.strict = strict
        ino = sb.journal_inum
        if not ino:
            raise CorruptImageError("has_journal without s_journal_inum", where="superblock")
        where = f"journal inode {ino}"
        inode = img.inode(ino)
        extents = img.extents(ino, inode)
        nblocks = inode.size // self.bs
        jmap = np.full(nblocks, -1, dtype=np.int64)
        for e in extents:
            lo, hi = e.lblk, min(e.lblk + e.len, nblocks)
            if lo < hi:
                jmap[lo:hi] = np.arange(e.pblk, e.pblk + (hi - lo), dtype=np.int64)
        if nblocks == 0 or jmap[0] < 0:
            raise CorruptImageError("journal block 0 is not mapped", where=where)
        jsb = decode_journal_superblock(self._block(int(jmap[0])), where="journal superblock")
        self.jsb = jsb
        self.jsb_fs_block = int(jmap[0])
        w = "journal superblock"
        compat, incompat = jsb.feature_compat, jsb.feature_incompat
        if jsb.blocktype == JBD2_SUPERBLOCK_V1:
            compat = incompat = 0  # e2fsck clear_v2_journal_fields
        elif jsb.nr_users > 1:
            raise CorruptImageError(f"journal shared by {jsb.nr_users} filesystems", where=w)
        if incompat & ~JBD2_KNOWN_INCOMPAT_FEATURES or jsb.feature_ro_compat:
            raise CorruptImageError(
                f"unsupported journal features incompat 0x{incompat:x} ro_compat 0x{jsb.feature_ro_compat:x}",
                where=w,
            )
        if incompat & JBD2_FEATURE_INCOMPAT_FAST_COMMIT:
            raise CorruptImageError("fast-commit journals are not supported by the oracle", where=w)
        v2or3 = jbd2_has_csum_v2or3(incompat)
        if incompat & JBD2_FEATURE_INCOMPAT_CSUM_V2 and incompat & JBD2_FEATURE_INCOMPAT_CSUM_V3:
            raise CorruptImageError("both CSUM_V2 and CSUM_V3 set", where=w)
        if v2or3 and compat & JBD2_FEATURE_COMPAT_CHECKSUM:
            raise CorruptImageError("COMPAT_CHECKSUM with CSUM_V2/V3", where=w)
        raw_sb = self._block(self.jsb_fs_block)[:JBD2_SUPERBLOCK_SIZE]
        if v2or3:
            if jsb.checksum_type != JBD2_CRC32C_CHKSUM:
                raise CorruptImageError(f"checksum type {jsb.checksum_type}, expected crc32c", where=w)
            if jbd2_superblock_csum(raw_sb) != jsb.checksum:
                raise CorruptImageError("journal superblock checksum mismatch", where=w)
        if jsb.blocksize != self.bs:
            raise CorruptImageError(f"s_blocksize {jsb.blocksize} != fs block size {self.bs}", where=w)
        if jsb.maxlen > nblocks:
            raise CorruptImageError(f"s_maxlen {jsb.maxlen} > {nblocks} journal inode blocks", where=w)
        holes = np.flatnonzero(jmap[: jsb.maxlen] < 0)
        if holes.size:
            raise CorruptImageError(f"journal block {int(holes[0])} is not mapped", where=where)
        self.jmap = jmap[: jsb.maxlen].tolist()
        self.journal_fs_blocks = set(self.jmap)
        self.compat, self.incompat = compat, incompat
        self.v2or3 = v2or3
        self.v3 = bool(incompat & JBD2_FEATURE_INCOMPAT_CSUM_V3)
        self.checksum_v1 = bool(compat & JBD2_FEATURE_COMPAT_CHECKSUM)
        self.async_commit = bool(incompat & JBD2_FEATURE_INCOMPAT_ASYNC_COMMIT)
        self.first, self.last, self.maxlen = jsb.first, jsb.maxlen, jsb.maxlen
        self.csum_seed = jbd2_csum_seed(jsb.uuid) if v2or3 else 0

    def _block(self, fs_block: int) -> bytes:
        return bytes(self.buf[fs_block * self.bs : (fs_block + 1) * self.bs])

    def wrap(self, x: int) -> int:
        return x - (self.last - self.first) if x >= self.last else x

    def jread(self, jblock: int) -> bytes:
        if jblock >= self.maxlen:
            raise _RecoveryFailed(
                f"log block {jblock} past s_maxlen {self.maxlen}", f"journal block {jblock}"
            )
        return self._block(self.jmap[jblock])

    def where(self, jblock: int) -> str:
        return f"journal block {jblock} (fs block {self.jmap[jblock]})"

    def tail_csum_ok(self, block: bytes) -> bool:
        return not self.v2or3 or _BE32.unpack_from(block, self.bs - 4)[0] == jbd2_block_tail_csum(
            block, self.csum_seed
        )

    def commit_csum_ok(self, block: bytes) -> bool:
        return not self.v2or3 or _BE32.unpack_from(block, 0x10)[0] == jbd2_commit_csum(block, self.csum_seed)

    def tag_csum_ok(self, stored_csum: int, data: bytes, sequence: int) -> bool:
        if not self.v2or3:
            return True
        csum = jbd2_tag_csum(self.csum_seed, sequence, data)
        return stored_csum == (csum if self.v3 else csum & 0xFFFF)

    def count_tags(self, block: bytes) -> int:
        return len(decode_jbd2_descriptor_tags(block, feature_incompat=self.incompat))


def _do_one_pass(j: _Journal, info: _Info, pss: _Pass) -> str | None:
    """``do_one_pass``; returns an error for a pass that "succeeded" with errors (success != 0).

    Raises _RecoveryFailed for ``goto failed``."""
    next_commit_id = j.jsb.sequence
    next_log_block = j.jsb.start
    if pss is _Pass.SCAN:
        info.start_transaction = next_commit_id
    crc32_sum = 0xFFFFFFFF
    need_check_commit_time = False
    bad_csum_block: int | None = None
    last_trans_commit_time = 0
    success: str | None = None
    while True:
        if pss is not _Pass.SCAN:
            assert info.end_transaction is not None
            if _tid_geq(next_commit_id, info.end_transaction):
                break
        this_block = next_log_block
        block = j.jread(next_log_block)
        next_log_block = j.wrap(next_log_block + 1)
        magic, blocktype, sequence = struct.unpack_from(">III", block)
        if magic != JBD2_MAGIC_NUMBER or sequence != next_commit_id:
            break
        if blocktype == JBD2_DESCRIPTOR_BLOCK:
            if not j.tail_csum_ok(block):
                if pss is not _Pass.SCAN:
                    raise _RecoveryFailed("descriptor block checksum mismatch", j.where(this_block))
                need_check_commit_time = True
                bad_csum_block = this_block if bad_csum_block is None else bad_csum_block
            if pss is not _Pass.REPLAY:
                if (
                    pss is _Pass.SCAN
                    and j.checksum_v1
                    and not need_check_commit_time
                    and info.end_transaction is None
                ):
                    # calc_chksums: the descriptor, then every data block it describes
                    crc32_sum = jbd2_crc32_be(crc32_sum, block)
                    for _ in range(j.count_tags(block)):
                        io_block = next_log_block
                        next_log_block = j.wrap(next_log_block + 1)
                        crc32_sum = jbd2_crc32_be(crc32_sum, j.jread(io_block))
                    continue
                next_log_block = j.wrap(next_log_block + j.count_tags(block))
                continue
            for tag in decode_jbd2_descriptor_tags(block, feature_incompat=j.incompat):
                io_block = next_log_block
                next_log_block = j.wrap(next_log_block + 1)
                data = j.jread(io_block)
                rec = ReplayedBlock(next_commit_id, io_block, tag.blocknr)
                revoked_by = info.revoked.get(tag.blocknr)
                if revoked_by is not None and not _tid_gt(next_commit_id, revoked_by):
                    info.revoke_hits.append(rec)
                    continue
                if not j.tag_csum_ok(tag.checksum, data, sequence):
                    msg = (
                        f"data block checksum mismatch (transaction {next_commit_id}, fs block {tag.blocknr})"
                    )
                    if j.strict:
                        raise CorruptImageError(msg, where=j.where(io_block))
                    info.bad_blocks.append(rec)
                    info.errors.append(f"{j.where(io_block)}: {msg}")
                    success = "EFSBADCRC"
                    continue
                if not 0 <= tag.blocknr < j.fs_blocks:
                    raise CorruptImageError(
                        f"tag for fs block {tag.blocknr} outside the filesystem (0..{j.fs_blocks - 1})",
                        where=j.where(this_block),
                    )
                if tag.blocknr in j.journal_fs_blocks:
                    raise CorruptImageError(
                        f"tag for fs block {tag.blocknr}, a block of the journal itself",
                        where=j.where(this_block),
                    )
                if tag.flags & JBD2_FLAG_ESCAPE:
                    data = jbd2_unescape(data)
                j.buf[tag.blocknr * j.bs : (tag.blocknr + 1) * j.bs] = data
                info.replayed.append(rec)
            continue
        if blocktype == JBD2_COMMIT_BLOCK:
            commit = decode_jbd2_commit_block(block, where=j.where(this_block))
            commit_time = commit.commit_sec
            if need_check_commit_time:
                if commit_time >= last_trans_commit_time:
                    assert bad_csum_block is not None
                    raise _RecoveryFailed(
                        f"invalid checksum found in transaction {next_commit_id}", j.where(bad_csum_block)
                    )
                break  # ignore_crc_mismatch: stale blocks, end of the log
            chksum_error = False
            if pss is _Pass.SCAN and j.checksum_v1:
                if info.end_transaction is not None:
                    info.failed_commit = info.end_transaction
                    break
                ok = (
                    crc32_sum == commit.chksum0
                    and commit.chksum_type == JBD2_CRC32_CHKSUM
                    and commit.chksum_size == JBD2_CRC32_CHKSUM_SIZE
                ) or (commit.chksum_type == 0 and commit.chksum_size == 0 and commit.chksum0 == 0)
                chksum_error = not ok
                crc32_sum = 0xFFFFFFFF
            if pss is _Pass.SCAN and (chksum_error or not j.commit_csum_ok(block)):
                if commit_time < last_trans_commit_time:
                    break  # ignore_crc_mismatch
                info.end_transaction = next_commit_id
                if not j.async_commit:
                    info.failed_commit = next_commit_id
                    break
            if pss is _Pass.SCAN:
                last_trans_commit_time = commit_time
            if pss is _Pass.REPLAY:
                info.transactions.append(next_commit_id)
            next_commit_id = (next_commit_id + 1) & _TID_MASK
            continue
        if blocktype == JBD2_REVOKE_BLOCK:
            if pss is _Pass.SCAN and not j.tail_csum_ok(block):
                need_check_commit_time = True
                bad_csum_block = this_block if bad_csum_block is None else bad_csum_block
            if pss is not _Pass.REVOKE:
                continue
            try:
                records = decode_jbd2_revoke_block(
                    block, feature_incompat=j.incompat, where=j.where(this_block)
                )
            except CorruptImageError as err:
                raise _RecoveryFailed(err.message, err.where or j.where(this_block)) from None
            for blocknr in records:  # jbd2_journal_set_revoke keeps the highest tid
                old = info.revoked.get(blocknr)
                if old is None or _tid_gt(next_commit_id, old):
                    info.revoked[blocknr] = next_commit_id
            continue
        break  # unrecognised block type: end of scan

    if pss is _Pass.SCAN:
        if info.end_transaction is None:
            info.end_transaction = next_commit_id
    elif info.end_transaction != next_commit_id:
        msg = (
            f"recovery pass {pss.value} ended at transaction {next_commit_id}, "
            f"expected {info.end_transaction}"
        )
        if j.strict:
            raise CorruptImageError(msg, where="journal")
        success = success or "EIO"
        info.errors.append(msg)
    return success


def _set_fs_superblock(buf: bytearray, *, clear_valid: bool, set_error: bool) -> None:
    """e2fsck_clear_recover (+ EXT2_ERROR_FS / !VALID_FS), recomputing a metadata_csum checksum."""
    off = EXT4_SUPERBLOCK_OFFSET
    incompat = _LE32.unpack_from(buf, off + 0x60)[0]
    _LE32.pack_into(buf, off + 0x60, incompat & ~EXT4_FEATURE_INCOMPAT_RECOVER)
    state = _LE16.unpack_from(buf, off + 0x3A)[0]
    if clear_valid:
        state &= ~EXT4_VALID_FS
    if set_error:
        state |= EXT4_ERROR_FS
    _LE16.pack_into(buf, off + 0x3A, state)
    if _LE32.unpack_from(buf, off + 0x64)[0] & EXT4_FEATURE_RO_COMPAT_METADATA_CSUM:
        _LE32.pack_into(buf, off + 0x3FC, jbd2_crc32c(0xFFFFFFFF, bytes(buf[off : off + 0x3FC])))


def recover(image: bytes | bytearray | memoryview | np.ndarray, *, strict: bool = True) -> RecoveryResult:
    """Replay the journal of ``image`` as e2fsck does; see the module docstring."""
    if isinstance(image, np.ndarray):
        image = np.ascontiguousarray(image, dtype=np.uint8).data
    res = recover_in_place(bytearray(image), strict=strict)
    return replace(res, image=bytes(res.image))


def recover_in_place(buf: bytearray, *, strict: bool = True) -> RecoveryResult:
    """:func:`recover` on ``buf`` itself: the result's ``image`` *is* ``buf``, replayed (no copy of
    the image; the crash checker runs this on every crash state)."""
    # the reader only locates the journal (superblock, journal inode), before anything is replayed
    img = Ext4Image(buf, copy=False)
    sb = img.superblock
    recover_flag = sb.has_incompat(EXT4_FEATURE_INCOMPAT_RECOVER)
    if not sb.has_compat(EXT4_FEATURE_COMPAT_HAS_JOURNAL):
        if recover_flag:
            raise CorruptImageError("needs_recovery set without has_journal", where="superblock")
        return RecoveryResult(image=buf, needed=False, recover_flag=False)
    j = _Journal(buf, img, strict)
    jsb = j.jsb
    if not jsb.start:
        if not recover_flag:
            return RecoveryResult(image=buf, needed=False, recover_flag=False, journal_superblock=jsb)
        # e2fsck runs recovery anyway: nothing to replay, s_sequence + 1, RECOVER cleared
        new_seq = (jsb.sequence + 1) & _TID_MASK
        _write_jsb(j, start=0, sequence=new_seq, errno=None)
        _set_fs_superblock(buf, clear_valid=False, set_error=bool(jsb.errno))
        return RecoveryResult(
            image=buf,
            needed=False,
            recover_flag=True,
            start_transaction=jsb.sequence,
            end_transaction=jsb.sequence,
            journal_superblock=decode_journal_superblock(_jsb_bytes(j)),
        )

    info = _Info()
    error: str | None = None
    try:
        for pss in (_Pass.SCAN, _Pass.REVOKE, _Pass.REPLAY):
            error = _do_one_pass(j, info, pss)
            if error:
                break
    except _RecoveryFailed as failed:
        if strict:
            raise CorruptImageError(failed.message, where=failed.where) from None
        info.errors.append(f"{failed.where}: {failed.message}")
        error = "failed"
    if info.end_transaction is None:  # PASS_SCAN itself failed
        info.end_transaction = info.start_transaction
    if strict and info.failed_commit is not None:
        raise CorruptImageError(
            f"commit block of transaction {info.failed_commit} fails its checksum", where="journal"
        )
    if info.failed_commit is not None:
        info.errors.append(f"journal transaction {info.failed_commit} was corrupt, replay was aborted")
    if error:
        # recover_ext3_journal "goto errout": s_sequence stays, the log is discarded
        new_seq = jsb.sequence
    else:
        new_seq = (info.end_transaction + 1) & _TID_MASK
    _write_jsb(j, start=0, sequence=new_seq, errno=None if error else 0)
    _set_fs_superblock(
        buf,
        clear_valid=bool(error),
        set_error=not error and (info.failed_commit is not None or bool(jsb.errno)),
    )
    return RecoveryResult(
        image=buf,
        needed=True,
        recover_flag=recover_flag,
        start_transaction=info.start_transaction,
        end_transaction=info.end_transaction,
        transactions=tuple(info.transactions),
        replayed=tuple(info.replayed),
        revoke_hits=tuple(info.revoke_hits),
        revoked=dict(info.revoked),
        bad_blocks=tuple(info.bad_blocks),
        failed_commit=info.failed_commit,
        errors=tuple(info.errors),
        journal_superblock=decode_journal_superblock(_jsb_bytes(j)),
    )


def _jsb_bytes(j: _Journal) -> bytes:
    return j._block(j.jsb_fs_block)[:JBD2_SUPERBLOCK_SIZE]


def _write_jsb(j: _Journal, *, start: int, sequence: int, errno: int | None) -> None:
    """``e2fsck_journal_release(ctx, journal, reset=1)``: s_sequence, s_start = 0, checksum."""
    raw = update_journal_superblock(_jsb_bytes(j), start=start, sequence=sequence, errno=errno)
    off = j.jsb_fs_block * j.bs
    j.buf[off : off + JBD2_SUPERBLOCK_SIZE] = raw
