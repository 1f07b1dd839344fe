"""Round trips and error paths of the shared on-disk layouts (simkernel.fs.ext4.ondisk)."""

from __future__ import annotations

import contextlib
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simkernel.errors import CorruptImageError, GeometryError
from simkernel.fs.ext4 import ondisk as od
from simkernel.fs.ext4.ondisk import DirEntry, Extent, RawInode

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---- struct sizes / constants ---------------------------------------------------------------------


def test_struct_sizes_match_the_kernel() -> None:
    assert od.EXT4_SUPER_BLOCK.sizeof() == 1024
    assert od.EXT4_GROUP_DESC32.sizeof() == 32
    assert od.EXT4_GROUP_DESC64.sizeof() == 64
    assert od.EXT4_INODE_BASE.sizeof() == 128
    assert od.EXT4_INODE_LARGE.sizeof() == 160
    assert od.EXT4_INODE256.sizeof() == 256
    assert od.EXT4_EXTENT_HEADER.sizeof() == od.EXT4_EXTENT.sizeof() == od.EXT4_EXTENT_IDX.sizeof() == 12
    assert od.EXT4_XATTR_ENTRY.sizeof() == 16
    assert od.EXT4_DIR_ENTRY_2.sizeof() == 8
    assert od.JBD2_SUPERBLOCK.sizeof() == 1024
    assert od.JBD2_BLOCK_TAG3.sizeof() == 16
    assert od.jbd2_tag_bytes(0) == 8
    assert od.jbd2_tag_bytes(od.JBD2_FEATURE_INCOMPAT_64BIT) == 12
    assert od.jbd2_tag_bytes(od.JBD2_FEATURE_INCOMPAT_CSUM_V2) == 10
    assert od.jbd2_tag_bytes(od.JBD2_FEATURE_INCOMPAT_CSUM_V3) == 16


def test_inline_capacity_is_128_for_256_byte_inodes() -> None:
    # reference §7: 60 + (256 - 160 - 4 header - 20 entry - 4 end marker)
    assert od.max_inline_value_size() == 68
    assert od.inline_capacity() == 128
    assert od.inline_capacity(128, 0) == 0
    assert od.inline_capacity(512) == 60 + 68 + 256


# ---- layout --------------------------------------------------------------------------------------


def test_layout_4k() -> None:
    lay = od.compute_layout(4096, 256, 32)
    assert (lay.first_data_block, lay.sb_block, lay.gdt_block) == (0, 0, 1)
    assert (lay.block_bitmap, lay.inode_bitmap, lay.inode_table) == (2, 3, 4)
    assert lay.inodes_count == 32 and lay.inode_table_blocks == 2
    assert (lay.root_dir_block, lay.lost_found_block, lay.first_data_free) == (6, 7, 8)
    assert lay.journal_blocks == lay.journal_start == 0


def test_layout_1k_rounds_inodes_like_mke2fs() -> None:
    lay = od.compute_layout(1024, 512, 20)
    assert lay.first_data_block == 1 and lay.sb_block == 1 and lay.gdt_block == 2
    assert lay.inodes_count == 24 and lay.inode_table_blocks == 6  # multiple of 8, whole blocks
    assert od.compute_layout(4096, 256, 17).inodes_count == 32  # fills the second itable block


def test_layout_journal_is_contiguous_after_lost_found() -> None:
    lay = od.compute_layout(4096, 2048, 64, journal_blocks=1024)
    assert lay.journal_start == lay.lost_found_block + 1
    assert lay.first_data_free == lay.journal_start + 1024


@pytest.mark.parametrize(
    ("args", "kwargs", "field"),
    [
        ((3000, 256, 32), {}, "block_size"),
        ((4096, 32769, 32), {}, "blocks_count"),
        ((1024, 8194, 32), {}, "blocks_count"),
        ((4096, 256, 15), {}, "inodes_count"),
        ((1024, 512, 8193), {}, "inodes_count"),
        ((4096, 20, 32), {}, "blocks_count"),
        ((4096, 1000, 32), {"journal_blocks": 1024}, "blocks_count"),
        ((4096, 4000, 32), {"journal_blocks": 100}, "journal_blocks"),
    ],
)
def test_layout_geometry_errors(args: tuple[int, int, int], kwargs: dict[str, int], field: str) -> None:
    with pytest.raises(GeometryError) as ei:
        od.compute_layout(*args, **kwargs)
    assert ei.value.where == field
    assert "\n" not in str(ei.value)


def test_layout_largest_single_group() -> None:
    assert od.compute_layout(1024, 8193, 16).group_blocks == 8192
    assert od.compute_layout(4096, 32768, 16).group_blocks == 32768


# ---- superblock / group descriptors ----------------------------------------------------------------


@pytest.mark.parametrize("journal", [False, True])
@pytest.mark.parametrize("inline", [False, True])
def test_superblock_round_trip(inline: bool, journal: bool) -> None:
    lay = od.compute_layout(4096, 4096, 64, journal_blocks=1024 if journal else 0)
    uuid = od.uuid_from_seed(7)
    raw = od.encode_superblock(lay, free_blocks=100, free_inodes=50, inline_data=inline, uuid=uuid)
    assert len(raw) == 1024
    sb = od.decode_superblock(raw)
    assert (sb.blocks_count, sb.inodes_count, sb.block_size) == (4096, 64, 4096)
    assert (sb.free_blocks_count, sb.free_inodes_count) == (100, 50)
    assert sb.uuid == uuid and sb.inode_size == 256 and sb.first_ino == 11
    assert sb.min_extra_isize == sb.want_extra_isize == 32
    assert sb.max_mnt_count == 0xFFFF and sb.state == od.EXT4_VALID_FS and sb.rev_level == 1
    assert sb.feature_ro_compat == od.MODEL_FEATURE_RO_COMPAT
    assert sb.has_incompat(od.EXT4_FEATURE_INCOMPAT_INLINE_DATA) == inline
    assert sb.has_compat(od.EXT4_FEATURE_COMPAT_HAS_JOURNAL) == journal
    assert sb.desc_size == 32 and sb.group_count == 1
    if journal:
        assert sb.journal_inum == 8 and sb.jnl_backup_type == 1
        assert sb.jnl_blocks[16] == 1024 * 4096
        ext, _ = od.decode_extent_tree(
            struct.pack("<15I", *sb.jnl_blocks[:15]), lambda b: b"", 4096, where="jnl_blocks"
        )
        assert ext == [Extent(0, 1024, lay.journal_start, False)]
    # byte-exact re-encode of the decoded fields
    assert od.encode_superblock(lay, free_blocks=100, free_inodes=50, inline_data=inline, uuid=uuid) == raw


def test_superblock_decode_errors() -> None:
    lay = od.compute_layout(4096, 256, 32)
    raw = bytearray(
        od.encode_superblock(lay, free_blocks=1, free_inodes=1, inline_data=False, uuid=bytes(16))
    )
    for off, value in [(0x38, 0), (0x18, 9), (0x58, 100), (0x00, 33), (0x05, 0), (0x60, 0x10)]:
        bad = bytearray(raw)
        bad[off] = value
        with pytest.raises(CorruptImageError) as ei:
            od.decode_superblock(bytes(bad))
        assert ei.value.where == "superblock"
    with pytest.raises(CorruptImageError):
        od.decode_superblock(bytes(raw[:100]))


@given(st.binary(min_size=1024, max_size=1024))
@FAST
def test_superblock_decode_never_crashes(raw: bytes) -> None:
    with contextlib.suppress(CorruptImageError):
        od.decode_superblock(raw)


@pytest.mark.parametrize("desc_size", [32, 64])
def test_group_desc_round_trip(desc_size: int) -> None:
    lay = od.compute_layout(4096, 256, 32)
    raw = od.encode_group_desc(lay, 1234, 21, 2, desc_size=desc_size, flags=od.EXT4_BG_INODE_ZEROED)
    assert len(raw) == desc_size
    gd = od.decode_group_desc(raw, desc_size=desc_size, where="gd")
    assert (gd.block_bitmap, gd.inode_bitmap, gd.inode_table) == (2, 3, 4)
    assert (gd.free_blocks_count, gd.free_inodes_count, gd.used_dirs_count) == (1234, 21, 2)
    assert gd.flags == od.EXT4_BG_INODE_ZEROED
    with pytest.raises(ValueError):
        od.encode_group_desc(lay, 70000, 0, 0)
    with pytest.raises(CorruptImageError):
        od.decode_group_desc(raw[:10], desc_size=desc_size, where="gd")


# ---- bitmaps -------------------------------------------------------------------------------------


@given(st.sampled_from([1024, 2048, 4096]), st.data())
@FAST
def test_bitmap_round_trip_with_padding(block_size: int, data: st.DataObject) -> None:
    n = data.draw(st.integers(0, 8 * block_size))
    seed = data.draw(st.integers(0, 2**32 - 1))
    used = np.random.default_rng(seed).random(n) < 0.3
    raw = od.encode_bitmap(used, block_size)
    assert len(raw) == block_size
    assert np.array_equal(od.decode_bitmap(raw, n), used)
    assert od.bitmap_padding_ok(raw, n)
    # bit i is bit (i % 8) of byte i // 8, LSB first
    if n:
        i = int(np.argmax(used)) if used.any() else 0
        assert bool(raw[i // 8] >> (i % 8) & 1) == bool(used[i])


def test_bitmap_errors() -> None:
    with pytest.raises(ValueError):
        od.encode_bitmap(np.zeros(8193, dtype=bool), 1024)
    with pytest.raises(CorruptImageError):
        od.decode_bitmap(bytes(4), 33)


# ---- inodes --------------------------------------------------------------------------------------

_u32 = st.integers(0, 2**32 - 1)
_u16 = st.integers(0, 2**16 - 1)


@st.composite
def raw_inodes(draw: st.DrawFn) -> RawInode:
    inline = draw(st.booleans())
    extra = draw(st.sampled_from([0, 4, 8, 16, 28, 32])) if not inline else 32
    value: bytes | None = None
    if inline:
        value = draw(st.binary(max_size=od.max_inline_value_size()))
    xattrs: tuple[tuple[int, bytes, bytes], ...] = ()
    if not inline and extra == 32 and draw(st.booleans()):
        xattrs = ((od.EXT4_XATTR_INDEX_USER, b"k", draw(st.binary(max_size=40))),)
    return RawInode(
        mode=draw(_u16),
        uid=draw(_u32),
        gid=draw(_u32),
        size=draw(st.integers(0, 2**64 - 1)),
        links_count=draw(_u16),
        blocks=draw(st.integers(0, 2**48 - 1)),
        flags=draw(_u32),
        i_block=draw(st.binary(min_size=60, max_size=60)),
        generation=draw(_u32),
        atime=draw(_u32),
        ctime=draw(_u32),
        mtime=draw(_u32),
        crtime=draw(_u32) if extra >= 0x94 - 128 else 0,
        dtime=draw(_u32),
        extra_isize=extra,
        inline_value=value,
        file_acl=draw(st.integers(0, 2**48 - 1)),
        atime_extra=draw(_u32) if extra >= 0x90 - 128 else 0,
        ctime_extra=draw(_u32) if extra >= 0x88 - 128 else 0,
        mtime_extra=draw(_u32) if extra >= 0x8C - 128 else 0,
        crtime_extra=draw(_u32) if extra >= 0x98 - 128 else 0,
        xattrs=xattrs,
        xattr_header=bool(value is not None or xattrs),
    )


@given(raw_inodes())
@FAST
def test_inode_round_trip(ino: RawInode) -> None:
    raw = od.encode_inode(ino)
    assert len(raw) == 256
    assert od.decode_inode(raw, 12) == ino
    assert od.encode_inode(od.decode_inode(raw, 12)) == raw


def test_inline_value_sits_at_the_inode_end() -> None:
    value = bytes(range(40))
    raw = od.encode_inode(RawInode(inline_value=value, flags=od.EXT4_INLINE_DATA_FL))
    assert raw[0xA0:0xA4] == (0xEA020000).to_bytes(4, "little")
    entry = od.EXT4_XATTR_ENTRY.parse(raw[0xA4:0xB4])
    assert (entry.e_name_len, entry.e_name_index, entry.e_value_size) == (4, 7, 40)
    assert entry.e_value_offs == 52 and raw[216:256] == value  # reference §7 example
    assert raw[0xB4:0xB8] == b"data" and raw[0xB8:0xBC] == bytes(4)  # name, then end marker
    empty = od.decode_inode(od.encode_inode(RawInode(inline_value=b"")), 12)
    assert empty.inline_value == b""
    assert od.decode_inode(od.encode_inode(RawInode()), 12).inline_value is None


def test_inline_value_too_big() -> None:
    od.encode_inode(RawInode(inline_value=bytes(68)))
    with pytest.raises(ValueError):
        od.encode_inode(RawInode(inline_value=bytes(69)))
    with pytest.raises(ValueError):
        od.encode_inode(RawInode(inline_value=b""), inode_size=128)


def test_128_byte_inode() -> None:
    ino = RawInode(mode=od.S_IFREG | 0o644, size=5, extra_isize=0, links_count=1)
    raw = od.encode_inode(ino, 128)
    assert len(raw) == 128 and od.decode_inode(raw, 3) == ino


def test_decode_inode_errors_name_the_inode() -> None:
    good = bytearray(od.encode_inode(RawInode(inline_value=b"abc")))
    bad = bytearray(good)
    bad[0x80] = 200  # i_extra_isize past the inode
    with pytest.raises(CorruptImageError) as ei:
        od.decode_inode(bytes(bad), 17)
    assert ei.value.where == "inode 17"
    bad = bytearray(good)
    bad[0xA6] = 250  # e_value_offs outside
    with pytest.raises(CorruptImageError):
        od.decode_inode(bytes(bad), 17)
    bad = bytearray(good)
    bad[0xB8:] = b"\xff" * (256 - 0xB8)  # no end marker: a bogus entry running off the inode
    with pytest.raises(CorruptImageError):
        od.decode_inode(bytes(bad), 17)
    with pytest.raises(CorruptImageError):
        od.decode_inode(bytes(100), 17)
    bad = bytearray(good)
    bad[0xA6] = 0  # value offset 0: the value overlaps the entry table
    with pytest.raises(CorruptImageError):
        od.decode_inode(bytes(bad), 17)


@given(st.binary(min_size=256, max_size=256))
@FAST
def test_decode_inode_never_crashes(raw: bytes) -> None:
    raw = raw[:0xA0] + (0xEA020000).to_bytes(4, "little") + raw[0xA4:]  # exercise the xattr parser
    with contextlib.suppress(CorruptImageError):
        od.decode_inode(raw, 5)


# ---- extent trees --------------------------------------------------------------------------------


@st.composite
def extent_lists(draw: st.DrawFn, max_n: int = 1500) -> list[Extent]:
    n = draw(st.one_of(st.integers(0, 8), st.integers(0, max_n)))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    out = []
    lblk = int(rng.integers(0, 100))
    for _ in range(n):
        unwritten = bool(rng.random() < 0.3)
        limit = od.EXT_UNWRITTEN_MAX_LEN if unwritten else od.EXT_INIT_MAX_LEN
        length = int(rng.integers(1, 40)) if rng.random() < 0.95 else limit
        out.append(Extent(lblk, length, int(rng.integers(1, 2**40)), unwritten))
        lblk += length + int(rng.integers(0, 3))
    return out


def _tree_round_trip(extents: list[Extent], block_size: int) -> tuple[bytes, dict[int, bytes]]:
    need = od.extent_tree_blocks_needed(len(extents), block_size)
    tree_blocks = [1000 + 7 * i for i in range(need)]
    root, blocks = od.encode_extent_tree(extents, tree_blocks, block_size)
    assert len(root) == 60 and set(blocks) == set(tree_blocks)
    assert all(len(b) == block_size for b in blocks.values())
    got, got_blocks = od.decode_extent_tree(root, blocks.__getitem__, block_size, where="t")
    assert got == extents
    assert got_blocks == tree_blocks
    return root, blocks


@given(extent_lists(), st.sampled_from([1024, 2048, 4096]))
@FAST
def test_extent_tree_round_trip(extents: list[Extent], block_size: int) -> None:
    _tree_round_trip(extents, block_size)


def test_extent_tree_depths() -> None:
    assert od.extent_tree_blocks_needed(0, 4096) == 0
    assert od.extent_tree_blocks_needed(4, 4096) == 0
    assert od.extent_tree_blocks_needed(5, 4096) == 1
    assert od.extent_tree_blocks_needed(4 * 340, 4096) == 4
    assert od.extent_tree_blocks_needed(4 * 340 + 1, 4096) == 5 + 1
    assert od.extent_tree_blocks_needed(4 * 84 + 1, 1024) == 5 + 1
    assert od.extent_tree_blocks_needed(4 * 84 * 84 + 1, 1024) == 4 * 84 + 1 + 5 + 1
    ext = [Extent(2 * i, 1, 10 + i, i % 3 == 0) for i in range(4 * 84 + 1)]
    root, _ = _tree_round_trip(ext, 1024)
    assert od.EXT4_EXTENT_HEADER.parse(root[:12]).eh_depth == 2


def test_extent_tree_encode_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        od.encode_extent_tree([Extent(0, 5, 10, False), Extent(4, 1, 20, False)], [], 4096)  # overlap
    with pytest.raises(ValueError):
        od.encode_extent_tree([Extent(5, 1, 10, False), Extent(0, 1, 20, False)], [], 4096)  # unsorted
    with pytest.raises(ValueError):
        od.encode_extent_tree([Extent(0, 32768, 10, True)], [], 4096)  # unwritten max is 32767
    with pytest.raises(ValueError):
        od.encode_extent_tree([Extent(0, 32769, 10, False)], [], 4096)
    with pytest.raises(ValueError):
        od.encode_extent_tree([Extent(0, 0, 10, False)], [], 4096)
    with pytest.raises(ValueError):
        od.encode_extent_tree([Extent(2 * i, 1, 10, False) for i in range(5)], [], 4096)  # needs a block
    root, _ = od.encode_extent_tree([Extent(0, 32768, 10, False), Extent(40000, 32767, 9, True)], [], 4096)
    got, _ = od.decode_extent_tree(root, lambda b: b"", 4096, where="t")
    assert got == [Extent(0, 32768, 10, False), Extent(40000, 32767, 9, True)]


def test_extent_tree_decode_errors() -> None:
    ext = [Extent(2 * i, 1, 100 + i, False) for i in range(10)]
    root, blocks = od.encode_extent_tree(ext, [50], 4096)
    leaf = blocks[50]

    def decode(r: bytes, leafdata: bytes, **kw: int) -> None:
        od.decode_extent_tree(r, {50: leafdata}.__getitem__, 4096, where="inode 12 extent tree", **kw)

    cases = [
        (b"\x00" + root[1:], leaf),  # root magic
        (root, b"\x00" + leaf[1:]),  # leaf magic
        (root[:2] + b"\x05\x00" + root[4:], leaf),  # root entries > max
        (root[:4] + b"\x05\x00" + root[6:], leaf),  # root eh_max > 4
        (root[:6] + b"\x02\x00" + root[8:], leaf),  # depth mismatch with the child
        (root, leaf[:6] + b"\x01\x00" + leaf[8:]),  # leaf claims depth 1
        (root, leaf[: 12 + 4] + b"\x00\x00" + leaf[18:]),  # zero-length extent
        (root, leaf[:24] + leaf[12:24] + leaf[36:]),  # duplicate (overlapping) extent
    ]
    for r, lf in cases:
        with pytest.raises(CorruptImageError) as ei:
            decode(r, lf)
        assert ei.value.where == "inode 12 extent tree"
    with pytest.raises(CorruptImageError):
        decode(root, leaf, max_block=105)  # physical block past the fs
    # two index entries sharing one child block
    shared = od._encode_header(2, 4, 1) + od._encode_index_entry(0, 50) + od._encode_index_entry(100, 50)
    with pytest.raises(CorruptImageError):
        decode(shared.ljust(60, b"\0"), leaf)


@given(st.binary(min_size=60, max_size=60), st.binary(min_size=1024, max_size=1024))
@FAST
def test_extent_decode_never_crashes(root: bytes, block: bytes) -> None:
    root = b"\x0a\xf3" + root[2:]
    block = b"\x0a\xf3" + block[2:]
    with contextlib.suppress(CorruptImageError):
        od.decode_extent_tree(root, lambda b: block, 1024, where="t", max_block=2**20)


# ---- directory blocks ----------------------------------------------------------------------------

_names = st.binary(min_size=1, max_size=255)


@given(
    st.lists(st.tuples(st.integers(1, 2**32 - 1), _names, st.integers(0, 7)), max_size=40),
    st.sampled_from([56, 1024, 4096]),
)
@FAST
def test_dir_block_round_trip(items: list[tuple[int, bytes, int]], size: int) -> None:
    entries = [DirEntry(i, n, t) for i, n, t in items]
    if not od.dir_entries_fit(entries, size):
        with pytest.raises(ValueError):
            od.encode_dir_block(entries, size)
        return
    raw = od.encode_dir_block(entries, size)
    assert len(raw) == size
    assert od.decode_dir_block(raw, where="d") == entries


def test_dir_block_layout() -> None:
    raw = od.encode_dir_block([DirEntry(2, b".", 2), DirEntry(2, b"..", 2)], 1024)
    first = od.EXT4_DIR_ENTRY_2.parse(raw[:8])
    second = od.EXT4_DIR_ENTRY_2.parse(raw[12:20])
    assert first.rec_len == 12 and second.rec_len == 1024 - 12  # last entry runs to the block end
    empty = od.encode_dir_block([], 4096)
    assert od.EXT4_DIR_ENTRY_2.parse(empty[:8]).rec_len == 4096
    assert od.decode_dir_block(empty, where="d") == []


def test_dir_block_decode_errors() -> None:
    raw = bytearray(od.encode_dir_block([DirEntry(2, b".", 2), DirEntry(2, b"..", 2)], 1024))
    for off, value in [(4, 0), (4, 13), (16, 0xFF), (6, 200)]:
        bad = bytearray(raw)
        bad[off] = value
        if off == 16:
            bad[17] = 0xFF
        with pytest.raises(CorruptImageError) as ei:
            od.decode_dir_block(bytes(bad), where="directory 2 block 0")
        assert ei.value.where == "directory 2 block 0"


@given(st.binary(min_size=64, max_size=64))
@FAST
def test_dir_decode_never_crashes(raw: bytes) -> None:
    with contextlib.suppress(CorruptImageError):
        od.decode_dir_block(raw, where="d")


# ---- jbd2 ----------------------------------------------------------------------------------------


def test_journal_superblock_round_trip() -> None:
    uuid = od.uuid_from_seed(3)
    raw = od.encode_journal_superblock(block_size=4096, maxlen=1024, uuid=uuid, sequence=5, start=1)
    assert len(raw) == 1024 and raw[:4] == bytes.fromhex("c03b3998")
    jsb = od.decode_journal_superblock(raw)
    assert (jsb.blocktype, jsb.blocksize, jsb.maxlen, jsb.first) == (4, 4096, 1024, 1)
    assert (jsb.sequence, jsb.start, jsb.nr_users, jsb.uuid) == (5, 1, 1, uuid)
    assert od.decode_journal_header(raw, where="j") == (od.JBD2_MAGIC_NUMBER, od.JBD2_SUPERBLOCK_V2, 0)
    with pytest.raises(CorruptImageError):
        od.decode_journal_superblock(bytes(1024))
    tag = od.JBD2_BLOCK_TAG3.build({"t_blocknr": 7, "t_flags": 8, "t_blocknr_high": 0, "t_checksum": 1})
    assert tag == bytes.fromhex("00000007000000080000000000000001")


def test_ea_hash_matches_reference_formula() -> None:
    assert od.ea_hash(b"data", b"") == od.ea_hash(b"data", b"")
    h = 0
    for c in b"data":
        h = ((h << 5) ^ (h >> 27) ^ c) & 0xFFFFFFFF
    assert od.ea_hash(b"data", b"") == h
