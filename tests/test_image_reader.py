"""oracle.image.Ext4Image against debugfs, on images we encode ourselves and on real mkfs.ext4 images."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from oracle.e2fsprogs import (
    debugfs_cat,
    debugfs_run,
    debugfs_stat,
    e2fsck_clean,
    e2fsck_run,
    have_e2fsprogs,
    mkfs_ext4,
)
from oracle.image import Ext4Image, MappingRun
from simkernel.errors import CorruptImageError
from simkernel.fs.ext4 import ondisk as od
from simkernel.fs.ext4.mkfs import mkfs
from simkernel.fs.ext4.ondisk import DirEntry, Extent, RawInode

needs_e2fsprogs = pytest.mark.skipif(not have_e2fsprogs(), reason="e2fsprogs not installed")
e2fs = [pytest.mark.e2fsprogs, needs_e2fsprogs]

# --------------------------------------------------------------------------------------------------
# a tiny writer built only from the ondisk encoders (what the kernel model will do at unmount)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """One regular file: inline contents, or extents ``(lblk, nblocks, unwritten)`` filled with noise."""

    name: str
    size: int = 0
    inline: bytes | None = None
    extents: tuple[tuple[int, int, bool], ...] = ()


def build_image(
    layout: od.Layout, inline_data: bool, specs: list[Spec], seed: int = 0
) -> tuple[bytes, dict[str, bytes]]:
    """mkfs + regular files in the root directory; returns (image, {name: expected contents})."""
    img = mkfs(layout, inline_data=inline_data)
    bs = layout.block_size
    rng = np.random.default_rng(seed)
    next_blk, next_ino = layout.first_data_free, od.EXT4_GOOD_OLD_FIRST_INO + 1
    entries = [
        DirEntry(2, b".", od.EXT4_FT_DIR),
        DirEntry(2, b"..", od.EXT4_FT_DIR),
        DirEntry(11, b"lost+found", od.EXT4_FT_DIR),
    ]
    expected: dict[str, bytes] = {}
    for spec in specs:
        ino, next_ino = next_ino, next_ino + 1
        if spec.inline is not None:
            data = spec.inline
            inode = RawInode(
                mode=od.S_IFREG | 0o644,
                links_count=1,
                size=len(data),
                flags=od.EXT4_INLINE_DATA_FL,
                i_block=data[:60].ljust(60, b"\0"),
                inline_value=data[60:],  # the xattr must exist even when empty (e2fsck)
            )
        else:
            out = bytearray(spec.size)
            extents = []
            for lblk, n, unwritten in spec.extents:
                extents.append(Extent(lblk, n, next_blk, unwritten))
                if not unwritten:
                    noise = rng.integers(1, 256, n * bs, dtype=np.uint8)
                    img[next_blk * bs : (next_blk + n) * bs] = noise
                    start = lblk * bs
                    if start < spec.size:
                        stop = min(spec.size, start + n * bs)
                        out[start:stop] = noise[: stop - start].tobytes()
                next_blk += n
            ntree = od.extent_tree_blocks_needed(len(extents), bs)
            tree_blocks = list(range(next_blk, next_blk + ntree))
            next_blk += ntree
            root, blocks = od.encode_extent_tree(extents, tree_blocks, bs)
            for blk, content in blocks.items():
                img[blk * bs : (blk + 1) * bs] = np.frombuffer(content, dtype=np.uint8)
            data = bytes(out)
            inode = RawInode(
                mode=od.S_IFREG | 0o644,
                links_count=1,
                size=spec.size,
                # e2fsck: i_blocks counts data (incl. unwritten) and tree blocks, in 512-byte units
                blocks=(sum(n for _, n, _ in spec.extents) + ntree) * (bs // 512),
                flags=od.EXT4_EXTENTS_FL,
                i_block=root,
            )
        inode.atime = inode.ctime = inode.mtime = inode.crtime = od.FIXED_TIME
        off = layout.inode_offset(ino)
        img[off : off + layout.inode_size] = np.frombuffer(od.encode_inode(inode), dtype=np.uint8)
        entries.append(DirEntry(ino, spec.name.encode(), od.EXT4_FT_REG_FILE))
        expected[spec.name] = data
    assert next_blk <= layout.blocks_count
    root_block = od.encode_dir_block(entries, bs)
    img[layout.root_dir_block * bs : (layout.root_dir_block + 1) * bs] = np.frombuffer(
        root_block, dtype=np.uint8
    )
    block_used = np.zeros(layout.group_blocks, dtype=bool)
    block_used[: next_blk - layout.first_data_block] = True
    inode_used = np.zeros(layout.inodes_count, dtype=bool)
    inode_used[: next_ino - 1] = True
    for blk, used in ((layout.block_bitmap, block_used), (layout.inode_bitmap, inode_used)):
        img[blk * bs : (blk + 1) * bs] = np.frombuffer(od.encode_bitmap(used, bs), dtype=np.uint8)
    free_blocks = int((~block_used).sum())
    free_inodes = int((~inode_used).sum())
    gd = od.encode_group_desc(layout, free_blocks, free_inodes, 2)
    img[layout.gdt_block * bs : layout.gdt_block * bs + len(gd)] = np.frombuffer(gd, dtype=np.uint8)
    sb = od.encode_superblock(
        layout,
        free_blocks=free_blocks,
        free_inodes=free_inodes,
        inline_data=inline_data,
        uuid=od.uuid_from_seed(0),
    )
    img[1024:2048] = np.frombuffer(sb, dtype=np.uint8)
    return img.tobytes(), expected


def _noise(n: int, seed: int) -> bytes:
    return np.random.default_rng(seed).integers(1, 256, n, dtype=np.uint8).tobytes()


INLINE_SPECS = [Spec(f"inl{n}", inline=_noise(n, n)) for n in (0, 59, 60, 61, 128)]
EXTENT_SPECS_4K = [
    Spec("contig", 3 * 4096 - 100, extents=((0, 3, False),)),
    Spec("deep", 11 * 4096, extents=tuple((2 * i, 1, False) for i in range(6))),  # > 4 extents: depth 1
    Spec("unwritten", 5 * 4096 - 7, extents=((0, 2, False), (2, 3, True))),
    Spec("prealloc", 100, extents=((0, 1, False), (1, 4, True))),  # unwritten past EOF (KEEP_SIZE)
    Spec("sparse", 12 * 4096 - 5, extents=((10, 2, False),)),
    Spec("tailhole", 9 * 4096 + 1, extents=((0, 1, False),)),
    Spec("empty", 0),
]


@pytest.fixture(scope="module")
def built_4k() -> tuple[bytes, dict[str, bytes]]:
    return build_image(od.compute_layout(4096, 256, 64), True, INLINE_SPECS + EXTENT_SPECS_4K)


@pytest.fixture(scope="module")
def built_1k_deep() -> tuple[bytes, dict[str, bytes]]:
    # 400 one-block extents at 1K: 5 leaves under one index block = depth 2
    specs = [
        Spec("depth2", 800 * 1024, extents=tuple((2 * i, 1, i % 7 == 3) for i in range(400))),
        Spec("four", 8 * 1024 - 1, extents=((0, 1, False), (2, 1, True), (4, 1, False), (6, 2, False))),
    ]
    return build_image(od.compute_layout(1024, 2048, 32), False, specs, seed=1)


def test_reader_on_built_image(built_4k: tuple[bytes, dict[str, bytes]]) -> None:
    raw, expected = built_4k
    img = Ext4Image(raw)
    infos = {f.name: f for f in img.files()}
    assert list(infos) == list(expected)
    for name, data in expected.items():
        assert img.read_file(name) == data, name
        assert infos[name].size == len(data)
    assert infos["inl128"].inline and infos["inl0"].inline and not infos["deep"].inline
    assert len(infos["deep"].extents) == 6
    _, tree_blocks = img.extent_tree(infos["deep"].ino)
    assert len(tree_blocks) == 1
    assert infos["unwritten"].runs[1] == MappingRun(2, 3, infos["unwritten"].extents[1].pblk, True)
    assert infos["sparse"].runs[0] == MappingRun(0, 10, None)
    assert infos["tailhole"].runs[-1] == MappingRun(1, 9, None)
    assert infos["empty"].runs == [] and infos["empty"].extents == []
    assert img.read_file(b"contig") == expected["contig"]
    with pytest.raises(FileNotFoundError):
        img.read_file("nope")
    with pytest.raises(IsADirectoryError):
        img.read_file("lost+found")


@pytest.mark.e2fsprogs
@needs_e2fsprogs
def test_built_images_are_clean_and_match_debugfs(
    built_4k: tuple[bytes, dict[str, bytes]], built_1k_deep: tuple[bytes, dict[str, bytes]]
) -> None:
    for raw, expected in (built_4k, built_1k_deep):
        clean, findings = e2fsck_clean(raw)
        assert clean, findings
        img = Ext4Image(raw)
        for name, data in expected.items():
            assert debugfs_cat(raw, name) == data == img.read_file(name), name
    st = debugfs_stat(built_4k[0], "inl61")
    assert st.size == 61 and st.inline_size == 61 and st.flags == od.EXT4_INLINE_DATA_FL
    st = debugfs_stat(built_1k_deep[0], "depth2")
    assert "ETB1" in st.extents and "[u]" in st.extents  # a level-1 index block and unwritten extents


def test_depth2_tree_reads_back(built_1k_deep: tuple[bytes, dict[str, bytes]]) -> None:
    raw, expected = built_1k_deep
    img = Ext4Image(raw)
    info = img.file_info("depth2")
    assert len(info.extents) == 400 and sum(e.unwritten for e in info.extents) == 57
    _, tree_blocks = img.extent_tree(info.ino)
    assert len(tree_blocks) == 6
    assert img.read_file("depth2") == expected["depth2"]


# --------------------------------------------------------------------------------------------------
# real mkfs.ext4 images populated by debugfs
# --------------------------------------------------------------------------------------------------


def _host_files(tmp: Path, bs: int) -> dict[str, bytes]:
    files = {f"s{n}": _noise(n, n + 1000) for n in (0, 11, 59, 60, 61, 128, 129, 5000)}
    # debugfs write skips all-zero blocks: alternating zero blocks give holes and > 4 extents (depth 1)
    # (ending on a data block: debugfs on an inline_data fs drops a trailing zero block from i_size)
    files["holes"] = b"".join(_noise(bs, i) if i % 2 == 0 else bytes(bs) for i in range(13))
    files["fal"] = _noise(3 * bs + 17, 77)
    for name, data in files.items():
        (tmp / name).write_bytes(data)
    return files


def _populate(path: Path, tmp: Path, files: dict[str, bytes], bs: int) -> dict[str, bytes]:
    cmds = [f"write {tmp / name} {name}" for name in files]
    cmds += ["mkdir d", f"write {tmp / 's11'} d/inner"]
    # an unwritten region inside i_size: preallocate past EOF, then grow i_size over it
    cmds += ["fallocate fal 5 9", f"sif fal size {10 * bs}"]
    out = debugfs_run(path, cmds, write=True)
    assert "rror" not in out and "not found" not in out, out
    expected = dict(files)
    fal = files["fal"]
    expected["fal"] = fal + bytes(10 * bs - len(fal))
    return expected


def _check_against_debugfs(raw: bytes, expected: dict[str, bytes]) -> Ext4Image:
    img = Ext4Image(raw)
    names = {f.name for f in img.files()}
    assert names == set(expected)
    for name, data in expected.items():
        got = img.read_file(name)
        assert got == data, name
        assert debugfs_cat(raw, name) == got, name
    return img


@pytest.mark.e2fsprogs
@needs_e2fsprogs
@pytest.mark.parametrize("inline", [False, True])
def test_reader_on_model_recipe_mkfs(tmp_path: Path, inline: bool) -> None:
    bs = 4096
    path = mkfs_ext4(tmp_path / "ref.img", size_bytes=8 << 20, inline_data=inline)
    expected = _populate(path, tmp_path, _host_files(tmp_path, bs), bs)
    raw = path.read_bytes()
    clean, findings = e2fsck_clean(raw)
    assert clean, findings
    img = _check_against_debugfs(raw, expected)
    infos = {f.name: f for f in img.files()}
    assert infos["s128"].inline == inline and not infos["s129"].inline
    assert infos["s0"].inline == inline
    assert len(infos["holes"].extents) == 7
    assert any(e.unwritten for e in infos["fal"].extents)
    inner = [e.name for e in img.dir_entries(img.lookup("d"))]
    assert b"inner" in inner and b".." in inner
    # byte-exact decode/encode of every in-use inode written by mke2fs/debugfs
    used = img.inode_bitmap()
    for ino in np.flatnonzero(used) + 1:
        off = img.groups[0].inode_table * bs + (int(ino) - 1) * 256
        rawino = raw[off : off + 256]
        assert od.encode_inode(od.decode_inode(rawino, int(ino))) == rawino, ino
    blocks = img.block_bitmap()
    assert int((~blocks).sum()) == img.groups[0].free_blocks_count == img.superblock.free_blocks_count


@pytest.mark.e2fsprogs
@needs_e2fsprogs
def test_reader_on_default_features_mkfs(tmp_path: Path) -> None:
    # host mke2fs.conf defaults: flex_bg, 64bit, metadata_csum, dir_index, has_journal, ... at 1K blocks
    path = mkfs_ext4(
        tmp_path / "def.img",
        size_bytes=64 << 20,
        block_size=None,
        inodes=None,
        inode_size=None,
        features=None,
    )
    bs = Ext4Image(path.read_bytes()).block_size
    expected = _populate(path, tmp_path, _host_files(tmp_path, bs), bs)
    # ln does not grow a directory: expand it first (6 blocks of 1K hold 300 names)
    cmds = ["mkdir big"] + ["expand_dir big"] * 5 + [f"ln s11 big/name{i:03d}" for i in range(300)]
    out = debugfs_run(path, cmds, write=True)
    assert "No free space" not in out and "rror" not in out, out
    work = tmp_path / "fixed.img"
    shutil.copy(path, work)
    rc, out = e2fsck_run(work, "-fyD")  # fixes the hard-link counts and turns big/ into an htree
    assert rc in (0, 1), out
    raw = work.read_bytes()
    img = _check_against_debugfs(raw, expected)
    sb = img.superblock
    for bit in (od.EXT4_FEATURE_INCOMPAT_64BIT, od.EXT4_FEATURE_INCOMPAT_FLEX_BG):
        assert sb.has_incompat(bit)
    assert sb.has_ro_compat(od.EXT4_FEATURE_RO_COMPAT_METADATA_CSUM)
    assert sb.desc_size == 64 and sb.group_count > 1
    big = img.lookup("big")
    assert img.inode(big).flags & od.EXT4_INDEX_FL
    names = {e.name for e in img.dir_entries(big)}
    assert names == {b".", b".."} | {f"name{i:03d}".encode() for i in range(300)}
    # per-group free counts (with BLOCK_UNINIT groups computed) match the descriptors
    blocks, inodes = img.block_bitmap(), img.inode_bitmap()
    for g, gd in enumerate(img.groups):
        start = sb.first_data_block + g * sb.blocks_per_group
        n = min(sb.blocks_per_group, sb.blocks_count - start)
        assert int((~blocks[start : start + n]).sum()) == gd.free_blocks_count, g
        ipg = sb.inodes_per_group
        assert int((~inodes[g * ipg : (g + 1) * ipg]).sum()) == gd.free_inodes_count, g
    jsb = img.journal_superblock()
    assert jsb is not None and jsb.start == 0


# --------------------------------------------------------------------------------------------------
# corrupt input: CorruptImageError and nothing else
# --------------------------------------------------------------------------------------------------


def _exercise(raw: bytes) -> None:
    """Everything the oracle does with an image."""
    img = Ext4Image(raw)
    img.block_bitmap()
    img.inode_bitmap()
    img.journal_superblock()
    for f in img.files():
        img.read_inode_data(f.ino, max_size=1 << 22)
        img.mapping(f.ino)
    img.dir_entries(11)


def _metadata_ranges(raw: bytes) -> list[tuple[int, int]]:
    img = Ext4Image(raw)
    bs = img.block_size
    gd = img.groups[0]
    ranges = [
        (1024, 2048),
        (bs * (img.superblock.first_data_block + 1), bs * (img.superblock.first_data_block + 1) + 32),
    ]
    ranges += [
        (gd.block_bitmap * bs, gd.block_bitmap * bs + bs),
        (gd.inode_bitmap * bs, gd.inode_bitmap * bs + bs),
    ]
    itable = gd.inode_table * bs
    ranges.append((itable, itable + 32 * 256))
    root = img.extents(2)[0].pblk
    ranges.append((root * bs, root * bs + bs))
    for f in img.files():
        if f.extents and not f.inline:
            _, tree = img.extent_tree(f.ino)
            ranges += [(b * bs, b * bs + 12 * 30) for b in tree]
    return ranges


@pytest.mark.parametrize("which", ["4k", "1k"])
def test_random_metadata_flips_raise_only_corrupt_image_error(
    which: str, built_4k: tuple[bytes, dict[str, bytes]], built_1k_deep: tuple[bytes, dict[str, bytes]]
) -> None:
    raw = (built_4k if which == "4k" else built_1k_deep)[0]
    _exercise(raw)
    ranges = _metadata_ranges(raw)
    rng = np.random.default_rng(1234)
    outcomes = {"ok": 0, "corrupt": 0}
    for trial in range(300):
        bad = bytearray(raw)
        for _ in range(int(rng.integers(1, 4))):
            lo, hi = ranges[int(rng.integers(len(ranges)))]
            pos = int(rng.integers(lo, hi))
            bad[pos] = (
                int(rng.integers(0, 256)) if rng.random() < 0.5 else bad[pos] ^ (1 << int(rng.integers(8)))
            )
        try:
            _exercise(bytes(bad))
            outcomes["ok"] += 1
        except CorruptImageError as exc:
            assert exc.where, exc
            assert "\n" not in str(exc)
            outcomes["corrupt"] += 1
        except Exception as exc:  # pragma: no cover - the failure we are looking for
            raise AssertionError(f"trial {trial}: {type(exc).__name__}: {exc}") from exc
    assert outcomes["corrupt"] > 20, outcomes


def test_truncated_images_raise_corrupt_image_error(built_4k: tuple[bytes, dict[str, bytes]]) -> None:
    raw = built_4k[0]
    for n in (0, 100, 1500, 2047, 2048, 4096, len(raw) // 2, len(raw) - 1):
        with pytest.raises(CorruptImageError):
            _exercise(raw[:n])


def _find_file(raw: bytes, name: str) -> tuple[Ext4Image, int]:
    img = Ext4Image(raw)
    return img, img.lookup(name)


def test_targeted_corruptions_name_the_structure(built_4k: tuple[bytes, dict[str, bytes]]) -> None:
    raw = built_4k[0]
    img, deep = _find_file(raw, "deep")
    bs = img.block_size
    _, (tree_block,) = img.extent_tree(deep)

    def expect(mutate: dict[int, int], where: str, action: str = "exercise") -> None:
        bad = bytearray(raw)
        for pos, value in mutate.items():
            bad[pos] = value
        with pytest.raises(CorruptImageError) as ei:
            if action == "deep":
                Ext4Image(bytes(bad)).read_file("deep")
            else:
                _exercise(bytes(bad))
        assert ei.value.where is not None and ei.value.where.startswith(where), ei.value

    expect({tree_block * bs: 0}, f"inode {deep} extent tree", "deep")  # leaf magic
    expect({1024 + 0x38: 0}, "superblock")
    root_dir = img.extents(2)[0].pblk
    expect({root_dir * bs + 4: 3}, "directory 2 block 0")  # rec_len of "."
    gdt = bs * (img.superblock.first_data_block + 1)
    expect({gdt + 8: 0xFF, gdt + 9: 0xFF}, "group descriptor 0")  # inode table past the fs
    ino_off = img.groups[0].inode_table * bs + (deep - 1) * 256
    expect({ino_off + 0x28: 0}, f"inode {deep} extent tree", "deep")  # root header magic in i_block
    inl = img.lookup("inl61")
    inl_off = img.groups[0].inode_table * bs + (inl - 1) * 256
    expect({inl_off + 0xA3: 0}, f"inode {inl}")  # ibody magic gone: no system.data
