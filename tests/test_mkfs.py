"""The pure-Python mkfs: deterministic bytes, e2fsck-clean for every geometry, readable by the oracle."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from oracle.e2fsprogs import debugfs_run, e2fsck_clean, have_e2fsprogs
from oracle.image import Ext4Image
from simkernel.fs.ext4 import ondisk as od
from simkernel.fs.ext4.mkfs import LOST_FOUND_INO, mkfs

needs_e2fsprogs = pytest.mark.skipif(not have_e2fsprogs(), reason="e2fsprogs not installed")


def _layout(block_size: int, journal: bool) -> od.Layout:
    # the journal needs >= 1024 blocks, so journalled devices are bigger
    blocks = 2048 if journal else {1024: 512, 2048: 256, 4096: 256}[block_size]
    return od.compute_layout(block_size, blocks, 40, journal_blocks=1024 if journal else 0)


MATRIX = list(itertools.product((1024, 2048, 4096), (False, True), (False, True)))


def test_mkfs_is_deterministic() -> None:
    lay = _layout(4096, False)
    a = mkfs(lay, inline_data=False)
    b = mkfs(lay, inline_data=False)
    assert a.dtype == np.uint8 and a.size == lay.blocks_count * lay.block_size
    assert np.array_equal(a, b)
    c = mkfs(lay, inline_data=False, uuid_seed=1)
    assert not np.array_equal(a, c)
    assert Ext4Image(c).superblock.uuid == od.uuid_from_seed(1)


@pytest.mark.parametrize(("block_size", "inline", "journal"), MATRIX)
def test_mkfs_reads_back(block_size: int, inline: bool, journal: bool) -> None:
    lay = _layout(block_size, journal)
    img = Ext4Image(mkfs(lay, inline_data=inline))
    sb = img.superblock
    assert (sb.block_size, sb.blocks_count, sb.inodes_count) == (
        block_size,
        lay.blocks_count,
        lay.inodes_count,
    )
    assert sb.has_incompat(od.EXT4_FEATURE_INCOMPAT_INLINE_DATA) == inline
    assert sb.feature_compat & ~od.EXT4_FEATURE_COMPAT_HAS_JOURNAL == od.MODEL_FEATURE_COMPAT
    assert sb.feature_ro_compat == od.MODEL_FEATURE_RO_COMPAT
    assert img.files() == []
    names = [(e.name, e.ino) for e in img.dir_entries()]
    assert names == [(b".", 2), (b"..", 2), (b"lost+found", LOST_FOUND_INO)]
    assert [(e.name, e.ino) for e in img.dir_entries(LOST_FOUND_INO)] == [(b".", 11), (b"..", 2)]
    lf = img.inode(LOST_FOUND_INO)
    assert lf.mode == od.S_IFDIR | 0o700 and lf.links_count == 2
    assert img.inode(2).links_count == 3
    # bitmaps agree with the group descriptor and the superblock
    blocks, inodes = img.block_bitmap(), img.inode_bitmap()
    gd = img.groups[0]
    assert int((~blocks).sum()) == gd.free_blocks_count == sb.free_blocks_count
    assert int((~inodes).sum()) == gd.free_inodes_count == sb.free_inodes_count
    assert inodes[:11].all() and not inodes[11:].any()
    assert blocks[: lay.first_data_free].all() and not blocks[lay.first_data_free :].any()
    jsb = img.journal_superblock()
    if journal:
        assert jsb is not None
        assert (jsb.maxlen, jsb.start, jsb.sequence, jsb.blocksize) == (1024, 0, 1, block_size)
        assert img.extents(8) == [od.Extent(0, 1024, lay.journal_start, False)]
    else:
        assert jsb is None


@pytest.mark.e2fsprogs
@needs_e2fsprogs
@pytest.mark.parametrize(("block_size", "inline", "journal"), MATRIX)
def test_mkfs_is_e2fsck_clean(block_size: int, inline: bool, journal: bool) -> None:
    clean, findings = e2fsck_clean(mkfs(_layout(block_size, journal), inline_data=inline))
    assert clean, findings


@pytest.mark.e2fsprogs
@needs_e2fsprogs
def test_mkfs_smallest_and_largest_are_clean() -> None:
    for lay in (
        od.compute_layout(1024, 8193, 8192),  # one full 1K group, the most inodes
        od.compute_layout(4096, 32768, 16, journal_blocks=4096),
        od.compute_layout(1024, 1 + 4 + 4 + 16, 16),  # metadata + 16 data blocks
    ):
        clean, findings = e2fsck_clean(mkfs(lay, inline_data=True))
        assert clean, (lay, findings)


@pytest.mark.e2fsprogs
@needs_e2fsprogs
def test_debugfs_sees_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "j.img"
    mkfs(_layout(4096, True), inline_data=False).tofile(path)
    out = debugfs_run(path, ["logdump", "stat <8>"])
    assert "Journal starts at block 0, transaction 1" in out  # empty journal: s_start 0, s_sequence 1
    assert "(0-1023)" in out


@pytest.mark.e2fsprogs
@needs_e2fsprogs
def test_e2fsck_clean_catches_findings_that_exit_zero() -> None:
    lay = _layout(4096, False)
    img = mkfs(lay, inline_data=False)
    # a wrong superblock free-blocks count: e2fsck -n exits 0 but prints "Free blocks count wrong"
    bad = img.copy()
    bad[1024 + 0x0C] ^= 0x01
    clean, findings = e2fsck_clean(bad)
    assert not clean and any("Free blocks count wrong" in f for f in findings), findings
    # a cleared block-bitmap bit of the root directory block: rc 4
    bad = img.copy()
    bit = lay.root_dir_block - lay.first_data_block
    bad[lay.block_bitmap * lay.block_size + bit // 8] &= ~(1 << (bit % 8)) & 0xFF
    clean, findings = e2fsck_clean(bad)
    assert not clean and "exit status 4" in findings, findings
    # bitmap padding cleared
    bad = img.copy()
    bad[(lay.block_bitmap + 1) * lay.block_size - 1] = 0
    clean, findings = e2fsck_clean(bad)
    assert not clean and any("Padding at end" in f for f in findings), findings


def test_base_image_memo_is_bounded_and_returns_the_same_bytes() -> None:
    """A long campaign draws many geometries; the worker keeps only the most recent images, and an
    image made again after eviction is byte-identical (the memo is of a pure function)."""
    from simkernel import machine
    from simkernel.config import Config

    first = machine.base_image(Config(block_size=1024, device_blocks=512)).copy()
    for extra in range(machine.BASE_IMAGES_KEPT + 4):
        machine.base_image(Config(block_size=1024, device_blocks=520 + 8 * extra))
        assert len(machine._BASE_IMAGES) <= machine.BASE_IMAGES_KEPT
    again = machine.base_image(Config(block_size=1024, device_blocks=512))
    assert not again.flags.writeable
    assert np.array_equal(first, again)
