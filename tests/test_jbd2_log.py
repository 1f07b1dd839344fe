"""jbd2 commit path (simkernel.fs.jbd2.log) against the oracle's recovery (oracle.jbd2_recovery) and
against e2fsck 1.47: random transaction streams wrap the log, the machine crashes at a random point,
and recovery must give exactly the last committed, unrevoked version of every block."""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oracle.e2fsprogs import debugfs_run, e2fsck_clean, e2fsck_run, have_e2fsprogs
from oracle.image import Ext4Image
from oracle.jbd2_recovery import RecoveryResult, recover
from simkernel.errors import CorruptImageError
from simkernel.fs.ext4 import ondisk as od
from simkernel.fs.ext4.mkfs import mkfs
from simkernel.fs.jbd2 import log

needs_e2fsprogs = pytest.mark.skipif(not have_e2fsprogs(), reason="e2fsprogs not installed")

REVOKE = od.JBD2_FEATURE_INCOMPAT_REVOKE
FORMATS: dict[str, tuple[int, int]] = {
    "v3": (0, REVOKE | od.JBD2_FEATURE_INCOMPAT_CSUM_V3),
    "plain": (0, REVOKE),
    "v1": (od.JBD2_FEATURE_COMPAT_CHECKSUM, REVOKE),
    "v3-64bit": (0, REVOKE | od.JBD2_FEATURE_INCOMPAT_CSUM_V3 | od.JBD2_FEATURE_INCOMPAT_64BIT),
    "v2": (0, REVOKE | od.JBD2_FEATURE_INCOMPAT_CSUM_V2),
    "plain-64bit": (0, REVOKE | od.JBD2_FEATURE_INCOMPAT_64BIT),
}
MAGIC = struct.pack(">I", od.JBD2_MAGIC_NUMBER)
POOL = 48  # fs blocks that transactions log (collisions: the same block in many transactions)
REVOKE_POOL = 600  # fs blocks that may be revoked (the first POOL are the logged ones)
SPACING = 4


# ---- checksums ------------------------------------------------------------------------------------


def _crc32c_ref(seed: int, data: bytes) -> int:
    c = seed
    for b in data:
        c ^= b
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    return c


def _crc32_be_ref(seed: int, data: bytes) -> int:
    c = seed
    for b in data:
        c ^= b << 24
        for _ in range(8):
            c = ((c << 1) ^ 0x04C11DB7 if c & 0x80000000 else c << 1) & 0xFFFFFFFF
    return c


def test_crc32c_known_vector() -> None:
    # the standard CRC32C check value is ~crc_raw(~0, "123456789")
    assert ~od.jbd2_crc32c(0xFFFFFFFF, b"123456789") & 0xFFFFFFFF == 0xE3069283


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 0xFFFFFFFF), data=st.binary(max_size=300), pad=st.sampled_from([0, 4093, 4096, 5000])
)
def test_crcs_match_bitwise_reference(seed: int, data: bytes, pad: int) -> None:
    data = data + bytes(range(256)) * (pad // 256) + bytes(pad % 256)
    assert od.jbd2_crc32c(seed, data) == _crc32c_ref(seed, data)
    short = data[:40]
    assert od.jbd2_crc32_be(seed, short) == _crc32_be_ref(seed, short)


# ---- block formats --------------------------------------------------------------------------------


def test_descriptor_capacity_matches_the_kernel_loop() -> None:
    # jbd2_journal_commit_transaction closes a descriptor when space_left < tag + 16 + csum, so
    # n = (bs - header - uuid - 16 - csum) // tag_bytes
    v3 = REVOKE | od.JBD2_FEATURE_INCOMPAT_CSUM_V3
    assert od.jbd2_descriptor_capacity(4096, v3) == (4096 - 12 - 16 - 16 - 4) // 16 == 253
    assert od.jbd2_descriptor_capacity(1024, v3) == 61
    assert od.jbd2_descriptor_capacity(4096, REVOKE) == (4096 - 12 - 16 - 16) // 8 == 506
    assert od.jbd2_revoke_capacity(4096, v3) == (4096 - 16 - 4) // 4
    assert od.jbd2_revoke_capacity(1024, v3 | od.JBD2_FEATURE_INCOMPAT_64BIT) == (1024 - 16 - 4) // 8


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_descriptor_round_trip(fmt: str) -> None:
    _compat, incompat = FORMATS[fmt]
    n = od.jbd2_descriptor_capacity(1024, incompat)
    is64 = bool(incompat & od.JBD2_FEATURE_INCOMPAT_64BIT)
    tags = [((7 << 33 if is64 else 0) + 1000 + i, i % 3 == 0, 0xABCD1234 + i) for i in range(n)]
    blk = od.encode_jbd2_descriptor_block(
        9, tags, uuid=bytes(range(16)), block_size=1024, feature_incompat=incompat, csum_seed=77
    )
    dec = od.decode_jbd2_descriptor_tags(blk, feature_incompat=incompat)
    assert [t.blocknr for t in dec] == [t[0] for t in tags]
    assert [bool(t.flags & od.JBD2_FLAG_ESCAPE) for t in dec] == [t[1] for t in tags]
    assert [t.flags & od.JBD2_FLAG_SAME_UUID for t in dec] == [0] + [od.JBD2_FLAG_SAME_UUID] * (n - 1)
    assert [t.flags & od.JBD2_FLAG_LAST_TAG for t in dec] == [0] * (n - 1) + [od.JBD2_FLAG_LAST_TAG]
    if incompat & od.JBD2_FEATURE_INCOMPAT_CSUM_V3:
        assert [t.checksum for t in dec] == [t[2] for t in tags]
        assert struct.unpack(">I", blk[-4:])[0] == od.jbd2_block_tail_csum(blk, 77)
    with pytest.raises(ValueError, match="do not fit"):
        od.encode_jbd2_descriptor_block(
            9, [*tags, (1, False, 0)], uuid=bytes(16), block_size=1024, feature_incompat=incompat
        )


def test_revoke_block_round_trip_and_bad_count() -> None:
    inc = REVOKE | od.JBD2_FEATURE_INCOMPAT_64BIT
    blk = od.encode_jbd2_revoke_block(5, [3, 1 << 40, 7], block_size=1024, feature_incompat=inc)
    assert od.decode_jbd2_revoke_block(blk, feature_incompat=inc, where="x") == [3, 1 << 40, 7]
    assert struct.unpack_from(">I", blk, 12)[0] == 16 + 3 * 8
    bad = blk[:12] + struct.pack(">I", 2000) + blk[16:]
    with pytest.raises(CorruptImageError) as exc:
        od.decode_jbd2_revoke_block(bad, feature_incompat=inc, where="journal block 4")
    assert exc.value.where == "journal block 4"


# ---- the writer's state machine -------------------------------------------------------------------


@dataclass(frozen=True)
class Fs:
    layout: od.Layout
    image: np.ndarray
    uuid: bytes

    @property
    def bs(self) -> int:
        return self.layout.block_size

    def pool_block(self, i: int) -> int:
        return self.layout.first_data_free + SPACING * i


def _make_fs(block_size: int = 1024, blocks: int = 4096) -> Fs:
    lay = od.compute_layout(block_size, blocks, 64, journal_blocks=1024)
    img = mkfs(lay, inline_data=False)
    assert lay.first_data_free + SPACING * REVOKE_POOL < lay.blocks_count
    return Fs(lay, img, Ext4Image(img).superblock.uuid)


FS_1K = _make_fs()


def _geom(fs: Fs, fmt: str = "v3") -> log.JournalGeometry:
    compat, incompat = FORMATS[fmt]
    return log.JournalGeometry.from_layout(
        fs.layout, fs.uuid, feature_compat=compat, feature_incompat=incompat
    )


def _state(fs: Fs) -> log.JournalState:
    jsb = Ext4Image(fs.image).journal_superblock()
    assert jsb is not None
    return log.initial_state(jsb)


def test_state_rules_first_commit_checkpoint_unmount() -> None:
    fs, geom = FS_1K, _geom(FS_1K)
    st0 = _state(fs)
    assert (st0.start, st0.sequence, st0.head, st0.next_tid) == (0, 1, 1, 2)
    assert log.space_left(st0) == 1023
    blk = [(fs.pool_block(0), bytes(fs.bs))]
    p1 = log.plan_transaction(geom, st0, 2, blk, [fs.pool_block(1)])
    # JBD2_FLUSHED: the first commit points the on-disk superblock at itself
    assert p1.superblock is not None
    jsb = od.decode_journal_superblock(p1.superblock.data)
    assert (jsb.start, jsb.sequence, jsb.feature_incompat) == (1, 2, geom.feature_incompat)
    assert jsb.checksum == od.jbd2_superblock_csum(p1.superblock.data)
    assert [w.kind for w in p1.log] == ["revoke", "descriptor", "data"]
    assert [w.jblock for w in (*p1.log, p1.commit)] == [1, 2, 3, 4]
    assert p1.commit_write[0] == fs.layout.journal_start + 4
    assert p1.nblocks == log.blocks_needed(geom, 1, 1) == 4
    st1 = p1.new_state
    assert (st1.start, st1.sequence, st1.head, st1.next_tid) == (1, 2, 5, 3)
    assert log.space_left(st1) == 1023 - 4
    p2 = log.plan_transaction(geom, st1, 3, [])  # an empty transaction is just a commit block
    assert p2.superblock is None and p2.log == () and p2.commit.jblock == 5
    st2 = p2.new_state
    cp = log.checkpoint(geom, st2, 2)
    assert cp.released == (2,) and cp.superblock is not None
    assert (cp.new_state.start, cp.new_state.sequence) == (5, 3)
    assert log.checkpoint(geom, cp.new_state, 2).superblock is None  # the tail does not move
    cp_all = log.checkpoint(geom, cp.new_state, 3)
    assert (cp_all.new_state.start, cp_all.new_state.sequence, cp_all.new_state.live) == (6, 4, ())
    assert log.space_left(cp_all.new_state) == 1023
    flushed = log.mark_empty(geom, st2)
    assert (flushed.new_state.start, flushed.new_state.sequence, flushed.new_state.next_tid) == (0, 4, 4)
    gone = log.mark_empty(geom, st2, unmount=True)  # jbd2_journal_destroy bumps the tid first
    assert gone.superblock is not None
    assert od.decode_journal_superblock(gone.superblock.data).sequence == 5
    # the next commit after a flush goes on from the head, with the superblock rewritten
    p3 = log.plan_transaction(geom, flushed.new_state, 4, [])
    assert p3.superblock is not None and od.decode_journal_superblock(p3.superblock.data).start == 6


def test_plan_rejects_kernel_mistakes() -> None:
    fs, geom = FS_1K, _geom(FS_1K)
    st0 = _state(fs)
    b = fs.pool_block(0)
    data = bytes(fs.bs)
    with pytest.raises(ValueError, match="expects tid 2"):
        log.plan_transaction(geom, st0, 3, [])
    with pytest.raises(ValueError, match="logged twice"):
        log.plan_transaction(geom, st0, 2, [(b, data), (b, data)])
    with pytest.raises(ValueError, match="both logged and revoked"):
        log.plan_transaction(geom, st0, 2, [(b, data)], [b])
    with pytest.raises(ValueError, match="belongs to the journal"):
        log.plan_transaction(geom, st0, 2, [(fs.layout.journal_start + 5, data)])
    with pytest.raises(ValueError, match="outside the filesystem"):
        log.plan_transaction(geom, st0, 2, [], [fs.layout.blocks_count])
    with pytest.raises(ValueError, match="not 1024"):
        log.plan_transaction(geom, st0, 2, [(b, data[:-4])])
    many = [(fs.pool_block(0) + i, data) for i in range(1010)]
    assert log.blocks_needed(geom, 1010) > log.space_left(st0)
    with pytest.raises(ValueError, match="checkpoint first"):
        log.plan_transaction(geom, st0, 2, many)
    with pytest.raises(ValueError, match="not supported"):
        log.JournalGeometry.from_layout(
            fs.layout, fs.uuid, feature_incompat=od.JBD2_FEATURE_INCOMPAT_FAST_COMMIT
        )


# ---- the crash harness ----------------------------------------------------------------------------


def _content(tid: int, blk: int, magic: bool, bs: int) -> bytes:
    head = (MAGIC if magic else b"DATA") + struct.pack("<II", tid, blk)
    return head + np.random.default_rng(tid * 100003 + blk).bytes(bs - len(head))


@dataclass
class Txn:
    """One transaction of a scenario: logged pool indices (with 'starts with the magic'), revoked
    revoke-pool indices, then what happens before it commits."""

    blocks: list[tuple[int, bool]]
    revokes: list[int]
    checkpoint: int = 0  # checkpoint this many oldest live transactions before committing
    writeback: list[int] = field(default_factory=list)  # live blocks written back early (pool idx)
    bulk: int = 0  # also log this many filler blocks (revoke-pool indices POOL..): wraps the log fast


@dataclass
class Scenario:
    fmt: str
    txns: list[Txn]
    crash: str  # "none": all committed | "no_commit": the last commit block is lost | "partial"
    durable: list[bool]  # partial: which log writes of the last transaction reached the disk
    sb_durable: bool  # no_commit/partial: did its superblock write (if any) reach the disk
    first_sequence: int = 1


@dataclass
class Outcome:
    crash_image: np.ndarray
    expected: np.ndarray  # data area as recovery must leave it
    committed: list[int]  # tids recovery must replay
    end_transaction: int
    sb_start_on_disk: int
    sb_sequence_on_disk: int
    log_blocks: int  # journal blocks written in all (> 1023: the log wrapped)


def _set_recover(img: np.ndarray) -> None:
    off = od.EXT4_SUPERBLOCK_OFFSET + 0x60
    inc = int.from_bytes(img[off : off + 4].tobytes(), "little") | od.EXT4_FEATURE_INCOMPAT_RECOVER
    img[off : off + 4] = np.frombuffer(inc.to_bytes(4, "little"), dtype=np.uint8)


def _run(fs: Fs, sc: Scenario) -> Outcome:
    bs = fs.bs
    img = fs.image.copy()
    geom = _geom(fs, sc.fmt)
    jsb_off = fs.layout.journal_start * bs
    if sc.first_sequence != 1:
        raw = od.update_journal_superblock(
            img[jsb_off : jsb_off + 1024].tobytes(), sequence=sc.first_sequence
        )
        img[jsb_off : jsb_off + 1024] = np.frombuffer(raw, dtype=np.uint8)
    _set_recover(img)  # ext4_setup_super at mount

    def put(blk: int, data: bytes) -> None:
        img[blk * bs : (blk + 1) * bs] = np.frombuffer(data, dtype=np.uint8)

    state = _state(Fs(fs.layout, img, fs.uuid))
    # committed transactions not yet behind the tail: tid -> (blocks, revokes)
    live: dict[int, tuple[dict[int, bytes], set[int]]] = {}

    def do_checkpoint(n: int) -> None:
        nonlocal state
        tids = [t.tid for t in state.live][:n]
        if not tids:
            return
        for tid in tids:  # write back in place (+ flush), then move the tail with FUA
            for blk, data in live.pop(tid)[0].items():
                put(blk, data)
        cp = log.checkpoint(geom, state, tids[-1])
        if cp.superblock_write:
            put(*cp.superblock_write)
        state = cp.new_state

    last = len(sc.txns) - 1
    log_blocks = 0
    for i, t in enumerate(sc.txns):
        tid = state.next_tid
        blocks = {fs.pool_block(p): _content(tid, fs.pool_block(p), magic, bs) for p, magic in t.blocks}
        for j in range(POOL, POOL + t.bulk):
            blocks.setdefault(fs.pool_block(j), _content(tid, fs.pool_block(j), j % 7 == 0, bs))
        revokes = [fs.pool_block(r) for r in t.revokes if fs.pool_block(r) not in blocks]
        do_checkpoint(t.checkpoint)
        for p in t.writeback:  # early writeback of a live buffer (its newest logged version)
            blk = fs.pool_block(p)
            newest = [b[blk] for b, _ in live.values() if blk in b]
            if newest:
                put(blk, newest[-1])
        while log.blocks_needed(geom, len(blocks), len(revokes)) > log.space_left(state):
            do_checkpoint(1)
        plan = log.plan_transaction(geom, state, tid, list(blocks.items()), revokes)
        log_blocks += plan.nblocks
        crashing = i == last and sc.crash != "none"
        if plan.superblock_write and (not crashing or sc.sb_durable):
            put(*plan.superblock_write)
        for k, (blk, data) in enumerate(plan.log_writes):
            if not crashing or sc.crash == "no_commit" or (k < len(sc.durable) and sc.durable[k]):
                put(blk, data)
        if crashing:
            break
        put(*plan.commit_write)
        state = plan.new_state
        live[tid] = (blocks, set(revokes))

    jsb = od.decode_journal_superblock(img[jsb_off : jsb_off + 1024].tobytes())
    expected = img.copy()
    committed = sorted(live, key=lambda tid: (tid - jsb.sequence) & 0xFFFFFFFF) if jsb.start else []
    revoked: dict[int, int] = {}
    for tid in committed:
        for blk in live[tid][1]:
            revoked[blk] = tid  # committed in tid order: the last one is the highest
    for tid in committed:
        for blk, data in live[tid][0].items():
            r = revoked.get(blk)
            if r is None or log.tid_gt(tid, r):
                expected[blk * bs : (blk + 1) * bs] = np.frombuffer(data, dtype=np.uint8)
    end = (committed[-1] + 1) & 0xFFFFFFFF if committed else jsb.sequence
    return Outcome(img, expected, committed, end, jsb.start, jsb.sequence, log_blocks)


def _check(fs: Fs, out: Outcome, res: RecoveryResult) -> None:
    bs = fs.bs
    got = np.frombuffer(res.image, dtype=np.uint8)
    lo, hi = fs.layout.first_data_free * bs, fs.layout.blocks_count * bs
    if not np.array_equal(got[lo:hi], out.expected[lo:hi]):
        bad = np.flatnonzero((got[lo:hi] != out.expected[lo:hi]).reshape(-1, bs).any(axis=1))
        raise AssertionError(f"fs blocks {(bad + fs.layout.first_data_free).tolist()} differ")
    # nothing else moved but the superblock's RECOVER bit and the journal superblock
    jsb_blk = fs.layout.journal_start
    meta = slice(bs * (1 if bs > 1024 else 2), jsb_blk * bs)
    assert np.array_equal(got[meta], out.crash_image[meta])
    assert np.array_equal(got[(jsb_blk + 1) * bs : lo], out.crash_image[(jsb_blk + 1) * bs : lo])
    sb = Ext4Image(res.image).superblock
    assert not sb.has_incompat(od.EXT4_FEATURE_INCOMPAT_RECOVER)
    assert sb.state == od.EXT4_VALID_FS
    assert res.journal_superblock is not None
    assert res.journal_superblock.start == 0
    assert res.journal_superblock.sequence == (out.end_transaction + 1) & 0xFFFFFFFF
    assert res.needed == bool(out.sb_start_on_disk)
    assert list(res.transactions) == out.committed
    if res.needed:
        assert res.end_transaction == out.end_transaction
    assert res.errors == () and res.failed_commit is None


txn_strategy = st.builds(
    Txn,
    blocks=st.lists(
        st.tuples(st.integers(0, POOL - 1), st.booleans()), max_size=70, unique_by=lambda t: t[0]
    ),
    revokes=st.one_of(
        st.lists(st.integers(0, POOL + 20), max_size=6, unique=True),
        st.integers(240, 300).map(lambda n: list(range(REVOKE_POOL - n, REVOKE_POOL))),
    ),
    checkpoint=st.sampled_from([0, 0, 0, 1, 2, 9]),
    writeback=st.lists(st.integers(0, POOL - 1), max_size=3),
    bulk=st.sampled_from([0, 0, 0, 60, 250, 500]),
)
scenario_strategy = st.builds(
    Scenario,
    fmt=st.sampled_from(sorted(FORMATS)),
    txns=st.lists(txn_strategy, min_size=1, max_size=30),
    crash=st.sampled_from(["none", "no_commit", "partial"]),
    durable=st.lists(st.booleans(), max_size=80),
    sb_durable=st.booleans(),
    first_sequence=st.sampled_from([1, 1, 0xFFFFFFFC]),
)


@settings(
    max_examples=45, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(sc=scenario_strategy)
def test_recovery_replays_exactly_the_committed_unrevoked_blocks(sc: Scenario) -> None:
    out = _run(FS_1K, sc)
    _check(FS_1K, out, recover(out.crash_image))


def test_log_wraps_and_tids_wrap() -> None:
    # a deterministic long run: the log wraps several times, tids wrap past 2**32
    rng = random.Random(5)
    sc = _random_scenario(rng, "v3", n=60, crash="no_commit")
    sc.first_sequence = 0xFFFFFFF0
    out = _run(FS_1K, sc)
    res = recover(out.crash_image)
    _check(FS_1K, out, res)
    assert out.log_blocks > 3 * 1023
    assert any(t < 0x100 for t in res.transactions)


def _random_scenario(rng: random.Random, fmt: str, *, n: int, crash: str) -> Scenario:
    txns = []
    for _ in range(n):
        k = rng.choice([0, 1, 5, 20, 40, 65])
        blocks = [(p, rng.random() < 0.2) for p in rng.sample(range(POOL), min(k, POOL))]
        revokes = rng.sample(range(POOL + 20), rng.choice([0, 0, 1, 3]))
        if rng.random() < 0.1:
            revokes = list(range(REVOKE_POOL - 260, REVOKE_POOL))
        checkpoint, writeback = rng.choice([0, 0, 0, 1, 3]), rng.sample(range(POOL), rng.choice([0, 2]))
        txns.append(Txn(blocks, revokes, checkpoint, writeback, rng.choice([0, 0, 0, 100, 300, 400])))
    durable = [rng.random() < 0.5 for _ in range(200)]
    return Scenario(fmt, txns, crash, durable, rng.random() < 0.5)


def test_exactly_full_log_recovers() -> None:
    fs, geom = FS_1K, _geom(FS_1K)
    img = fs.image.copy()
    _set_recover(img)
    state = _state(fs)
    expected: dict[int, bytes] = {}
    for n in (500, 503):  # 510 + 513 blocks = the whole 1023-block log
        blocks = [(fs.pool_block(0) + i, _content(state.next_tid, i, i % 5 == 0, fs.bs)) for i in range(n)]
        plan = log.plan_transaction(geom, state, state.next_tid, blocks)
        for b, data in [*([plan.superblock_write] if plan.superblock_write else []), *plan.log_writes]:
            img[b * fs.bs : (b + 1) * fs.bs] = np.frombuffer(data, dtype=np.uint8)
        b, data = plan.commit_write
        img[b * fs.bs : (b + 1) * fs.bs] = np.frombuffer(data, dtype=np.uint8)
        state = plan.new_state
        expected.update(blocks)
    assert log.space_left(state) == 0 and state.head == state.start == 1
    with pytest.raises(ValueError, match="checkpoint first"):
        log.plan_transaction(geom, state, state.next_tid, [])
    res = recover(img)
    assert res.transactions == (2, 3) and res.end_transaction == 4
    got = np.frombuffer(res.image, dtype=np.uint8)
    assert all(got[b * fs.bs : (b + 1) * fs.bs].tobytes() == d for b, d in expected.items())


@pytest.mark.parametrize("fmt", ["v3", "plain"])
def test_commit_durable_but_a_log_block_lost(fmt: str) -> None:
    """The bug class the PREFLUSH on the commit block prevents: with checksums recovery notices the
    stale log block; without them it replays stale bytes over the filesystem."""
    fs, geom = FS_1K, _geom(FS_1K, fmt)
    img = fs.image.copy()
    _set_recover(img)
    state = _state(fs)
    blocks = [(fs.pool_block(i), _content(2, i, False, fs.bs)) for i in range(3)]
    plan = log.plan_transaction(geom, state, 2, blocks)
    assert plan.superblock_write is not None
    lost = plan.log[2]  # the second data block never reached the disk
    assert lost.kind == "data"
    for w in (plan.superblock, *plan.log, plan.commit):
        if w is not None and w is not lost:
            img[w.fs_block * fs.bs : (w.fs_block + 1) * fs.bs] = np.frombuffer(w.data, dtype=np.uint8)
    if fmt == "v3":
        with pytest.raises(CorruptImageError) as exc:
            recover(img)
        assert exc.value.where == f"journal block {lost.jblock} (fs block {lost.fs_block})"
    else:
        res = recover(img)
        got = np.frombuffer(res.image, dtype=np.uint8)
        assert lost.target is not None
        assert got[lost.target * fs.bs : (lost.target + 1) * fs.bs].tobytes() == bytes(fs.bs)  # stale zeros


def test_log_without_recover_flag_is_still_replayed() -> None:
    out, _g = _committed_image()
    img = out.crash_image.copy()
    off = od.EXT4_SUPERBLOCK_OFFSET + 0x60
    inc = int.from_bytes(img[off : off + 4].tobytes(), "little") & ~od.EXT4_FEATURE_INCOMPAT_RECOVER
    img[off : off + 4] = np.frombuffer(inc.to_bytes(4, "little"), dtype=np.uint8)
    res = recover(img)
    assert res.needed and not res.recover_flag and res.transactions == (2, 3, 4)


# ---- corruption -----------------------------------------------------------------------------------


def _committed_image(fmt: str = "v3") -> tuple[Outcome, log.JournalGeometry]:
    sc = Scenario(
        fmt,
        [
            Txn([(0, False), (1, True), (2, False)], [5]),
            Txn([(3, False), (1, False)], []),
            Txn([(4, False)], [3]),
        ],
        "none",
        [],
        True,
    )
    return _run(FS_1K, sc), _geom(FS_1K, fmt)


def _flip(img: np.ndarray, fs_block: int, offset: int) -> np.ndarray:
    bad = img.copy()
    bad[fs_block * FS_1K.bs + offset] ^= 0x40
    return bad


def test_clean_run_and_journal_block_positions() -> None:
    out, _geom3 = _committed_image()
    res = recover(out.crash_image)
    _check(FS_1K, out, res)
    assert res.transactions == (2, 3, 4)
    assert res.revoked == {FS_1K.pool_block(5): 2, FS_1K.pool_block(3): 4}
    assert [r.fs_block for r in res.revoke_hits] == [FS_1K.pool_block(3)]
    assert res.blocks_written[FS_1K.pool_block(1)] == 3
    # a journal that needs no recovery and no RECOVER flag: untouched
    again = recover(res.image)
    assert not again.needed and again.image == res.image


def test_corrupt_data_block_strict_and_lenient() -> None:
    out, _geom3 = _committed_image()
    start = FS_1K.layout.journal_start
    # log: tid 2 = revoke 1, descriptor 2, data 3-5, commit 6; tid 3 = descriptor 7, data 8 (pool 3,
    # revoked by tid 4: skipped before its checksum is looked at) and 9 (pool 1), commit 10; tid 4 = 11-14
    bad = _flip(out.crash_image, start + 9, 100)
    with pytest.raises(CorruptImageError) as exc:
        recover(bad)
    assert exc.value.where == f"journal block 9 (fs block {start + 9})"
    assert recover(_flip(out.crash_image, start + 8, 100)).errors == ()
    res = recover(bad, strict=False)
    assert [r.fs_block for r in res.bad_blocks] == [FS_1K.pool_block(1)]
    assert res.errors and res.transactions == (2, 3, 4)
    sb = Ext4Image(res.image).superblock
    assert not sb.state & od.EXT4_VALID_FS  # a recovery error: e2fsck forces a full check
    assert res.journal_superblock is not None and res.journal_superblock.sequence == 2  # unchanged


def test_corrupt_commit_and_descriptor() -> None:
    out, _geom3 = _committed_image()
    start = FS_1K.layout.journal_start
    bad = _flip(out.crash_image, start + 10, 200)  # commit block of tid 3
    with pytest.raises(CorruptImageError, match="transaction 3"):
        recover(bad)
    res = recover(bad, strict=False)
    assert res.failed_commit == 3 and res.transactions == (2,)
    assert Ext4Image(res.image).superblock.state & od.EXT4_ERROR_FS
    bad = _flip(out.crash_image, start + 7, 500)  # descriptor of tid 3, followed by its commit
    with pytest.raises(CorruptImageError) as exc:
        recover(bad)
    assert exc.value.where == f"journal block 7 (fs block {start + 7})"
    res = recover(bad, strict=False)
    assert res.transactions == () and res.errors  # recovery failed: nothing replayed, log discarded
    assert res.journal_superblock is not None and res.journal_superblock.start == 0
    # an unreadable journal superblock is always an error
    with pytest.raises(CorruptImageError) as exc:
        recover(_flip(out.crash_image, start, 0x40), strict=False)
    assert exc.value.where == "journal superblock"


def test_plain_journal_replays_garbage_silently() -> None:
    # without checksums a torn data block is replayed as is: what a non-metadata_csum kernel does
    out, _g = _committed_image("plain")
    start = FS_1K.layout.journal_start
    bad = _flip(out.crash_image, start + 9, 100)
    res = recover(bad)
    assert res.errors == () and res.transactions == (2, 3, 4)
    got = np.frombuffer(res.image, dtype=np.uint8)
    blk = FS_1K.pool_block(1)
    assert got[blk * FS_1K.bs + 100] != out.expected[blk * FS_1K.bs + 100]


# ---- e2fsck 1.47 as the reference --------------------------------------------------------------


def _e2fsck_replay(img: np.ndarray, tmp: Path, name: str) -> tuple[int, str, np.ndarray]:
    path = tmp / name
    img.tofile(path)
    rc, text = e2fsck_run(path, "-E", "journal_only", "-y")
    return rc, text, np.fromfile(path, dtype=np.uint8)


def _compare_with_e2fsck(fs: Fs, crash: np.ndarray, res: RecoveryResult, theirs: np.ndarray) -> None:
    ours = np.frombuffer(res.image, dtype=np.uint8)
    bs = fs.bs
    diff = np.flatnonzero((ours != theirs).reshape(-1, bs).any(axis=1)).tolist()
    sb_block = od.EXT4_SUPERBLOCK_OFFSET // bs
    assert set(diff) <= {sb_block}, diff  # e2fsck also rewrites s_wtime/s_kbytes_written
    a, b = Ext4Image(res.image).superblock, Ext4Image(theirs.tobytes()).superblock
    assert (a.feature_incompat, a.state) == (b.feature_incompat, b.state)
    assert Ext4Image(res.image).journal_superblock() == Ext4Image(theirs.tobytes()).journal_superblock()


@pytest.mark.e2fsprogs
@needs_e2fsprogs
@pytest.mark.parametrize(
    ("fmt", "seed", "crash"),
    [
        ("v3", 1, "partial"),
        ("v3", 2, "none"),
        ("plain", 3, "no_commit"),
        ("v1", 4, "none"),
        ("v3-64bit", 5, "partial"),
        ("v2", 6, "none"),
        ("plain-64bit", 7, "no_commit"),
    ],
)
def test_recovery_matches_e2fsck(tmp_path: Path, fmt: str, seed: int, crash: str) -> None:
    sc = _random_scenario(random.Random(seed), fmt, n=25, crash=crash)
    if seed == 2:
        sc.first_sequence = 0xFFFFFFFE
    out = _run(FS_1K, sc)
    res = recover(out.crash_image)
    _check(FS_1K, out, res)
    assert res.needed and res.transactions, "the sample should replay something"
    assert out.log_blocks > 2 * 1023, "the sample should wrap the log"
    rc, text, theirs = _e2fsck_replay(out.crash_image, tmp_path, "crash.img")
    assert rc == 0, text
    _compare_with_e2fsck(FS_1K, out.crash_image, res, theirs)


@pytest.mark.e2fsprogs
@needs_e2fsprogs
def test_lenient_recovery_matches_e2fsck_on_bad_checksums(tmp_path: Path) -> None:
    out, _g = _committed_image()
    start = FS_1K.layout.journal_start
    cases = [
        (start + 9, 100, "Journal checksum error found"),  # a data block: skipped, the rest replayed
        (start + 10, 200, "Journal transaction 3 was corrupt, replay was aborted"),  # commit block
        (start + 7, 500, "Journal checksum error found"),  # a descriptor: recovery fails, log dropped
    ]
    for k, (blk, off, message) in enumerate(cases):
        bad = _flip(out.crash_image, blk, off)
        res = recover(bad, strict=False)
        rc, text, theirs = _e2fsck_replay(bad, tmp_path, f"bad{k}.img")
        assert rc == 0 and message in text, text
        _compare_with_e2fsck(FS_1K, bad, res, theirs)


def _changed_blocks(a: np.ndarray, b: np.ndarray, bs: int) -> list[int]:
    return np.flatnonzero((a != b).reshape(-1, bs).any(axis=1)).tolist()


@pytest.mark.e2fsprogs
@needs_e2fsprogs
@pytest.mark.parametrize("block_size", [1024, 4096])
def test_replayed_metadata_is_e2fsck_clean(tmp_path: Path, block_size: int) -> None:
    """Transactions made of real metadata (what debugfs changed: bitmaps, GDT, superblock, inode
    table, directory blocks): recovery yields exactly the post-change image, which e2fsck accepts."""
    fs = _make_fs(block_size, 4096)
    bs = fs.bs
    host = tmp_path / "payload"
    host.write_bytes(bytes(range(256)) * 40)
    steps = [["mkdir d", "mkdir d/e"], [f"write {host} d/f", "symlink s /d/e"]]
    images = [fs.image.copy()]
    path = tmp_path / "work.img"
    images[0].tofile(path)
    for cmds in steps:
        debugfs_run(path, cmds, write=True)
        images.append(np.fromfile(path, dtype=np.uint8))
    sb_block = od.EXT4_SUPERBLOCK_OFFSET // bs
    jlo, jhi = fs.layout.journal_start, fs.layout.journal_start + fs.layout.journal_blocks
    geom = _geom(fs)
    for committed in (1, 2):
        crash = images[0].copy()
        _set_recover(crash)
        state = _state(Fs(fs.layout, crash, fs.uuid))
        for i in range(2):
            changed = _changed_blocks(images[i], images[i + 1], bs)
            assert changed and not any(jlo <= b < jhi for b in changed)
            blocks = []
            for b in changed:
                data = images[i + 1][b * bs : (b + 1) * bs].copy()
                if b == sb_block:  # the kernel's in-memory superblock has RECOVER set
                    _set_recover_block(data, od.EXT4_SUPERBLOCK_OFFSET % bs)
                blocks.append((b, data.tobytes()))
            plan = log.plan_transaction(geom, state, state.next_tid, blocks)
            writes = [*([plan.superblock_write] if plan.superblock_write else []), *plan.log_writes]
            if i < committed:
                writes.append(plan.commit_write)
            for b, raw in writes:
                crash[b * bs : (b + 1) * bs] = np.frombuffer(raw, dtype=np.uint8)
            state = plan.new_state
        res = recover(crash)
        ours = np.frombuffer(res.image, dtype=np.uint8)
        post = images[committed]
        diff = _changed_blocks(ours, post, bs)
        assert all(jlo <= b < jhi for b in diff), diff  # only the journal differs
        clean, findings = e2fsck_clean(ours)
        assert clean, findings
        rd = Ext4Image(res.image)
        assert rd.lookup("d")
        if committed == 2:
            assert rd.read_inode_data(rd.lookup("f", rd.lookup("d"))) == host.read_bytes()
        else:
            with pytest.raises(FileNotFoundError):
                rd.lookup("f", rd.lookup("d"))
        # the crash image itself is not clean before recovery, and e2fsck's replay agrees with ours
        assert not e2fsck_clean(crash)[0]
        rc, text, theirs = _e2fsck_replay(crash, tmp_path, f"crash{committed}.img")
        assert rc == 0, text
        _compare_with_e2fsck(fs, crash, res, theirs)


def _set_recover_block(block: np.ndarray, sb_off: int) -> None:
    off = sb_off + 0x60
    inc = int.from_bytes(block[off : off + 4].tobytes(), "little") | od.EXT4_FEATURE_INCOMPAT_RECOVER
    block[off : off + 4] = np.frombuffer(inc.to_bytes(4, "little"), dtype=np.uint8)
