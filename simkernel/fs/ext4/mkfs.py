"""A pure-Python mkfs for the model's single-group ext4 layout (mke2fs without e2fsprogs).

Produces the same shape of filesystem as the reference recipe
``mkfs.ext4 -O none,extent,filetype,sparse_super,large_file,ext_attr[,inline_data][,has_journal]``:
superblock, one 32-byte group descriptor, bitmaps, inode table, root directory (inode 2),
lost+found (inode 11) and optionally an empty jbd2 journal in inode 8.  Bytes depend only on the
arguments (fixed times, UUID derived from ``uuid_seed``), and every image passes ``e2fsck -fn``.
"""

from __future__ import annotations

import numpy as np

from simkernel.fs.ext4.ondisk import (
    EXT4_EXTENTS_FL,
    EXT4_FT_DIR,
    EXT4_GOOD_OLD_FIRST_INO,
    EXT4_JOURNAL_INO,
    EXT4_ROOT_INO,
    EXT4_SUPERBLOCK_OFFSET,
    FIXED_TIME,
    S_IFDIR,
    S_IFREG,
    DirEntry,
    Extent,
    Layout,
    RawInode,
    encode_bitmap,
    encode_dir_block,
    encode_extent_tree,
    encode_group_desc,
    encode_inode,
    encode_journal_superblock,
    encode_superblock,
    journal_i_block,
    uuid_from_seed,
)

#: inode number of lost+found (mke2fs: the first non-reserved inode)
LOST_FOUND_INO = EXT4_GOOD_OLD_FIRST_INO


def _dir_inode(mode: int, links: int, block: int, layout: Layout) -> RawInode:
    """A one-block extent-mapped directory inode (``ext2fs_mkdir`` on an extents fs)."""
    root, tree = encode_extent_tree([Extent(0, 1, block, False)], [], layout.block_size)
    assert not tree
    return RawInode(
        mode=S_IFDIR | mode,
        links_count=links,
        # e2fsck: a block directory's i_size must be nblocks * block_size
        size=layout.block_size,
        blocks=layout.block_size // 512,
        flags=EXT4_EXTENTS_FL,
        i_block=root,
        atime=FIXED_TIME,
        ctime=FIXED_TIME,
        mtime=FIXED_TIME,
        crtime=FIXED_TIME,
    )


def mkfs(layout: Layout, *, inline_data: bool, uuid_seed: int = 0) -> np.ndarray:
    """Build a fresh filesystem image (mke2fs): uint8 array of ``blocks_count * block_size`` bytes."""
    bs = layout.block_size
    img = np.zeros(layout.blocks_count * bs, dtype=np.uint8)
    uuid = uuid_from_seed(uuid_seed)
    hash_seed = uuid_from_seed(uuid_seed, purpose=b"hash_seed")

    def put(offset: int, data: bytes) -> None:
        img[offset : offset + len(data)] = np.frombuffer(data, dtype=np.uint8)

    # ---- inodes -------------------------------------------------------------------------------
    inodes: dict[int, RawInode] = {}
    # inode 1 (bad blocks): mke2fs only sets the times and leaves i_extra_isize 0
    inodes[1] = RawInode(atime=FIXED_TIME, ctime=FIXED_TIME, mtime=FIXED_TIME, extra_isize=0)
    # root: "." + ".." + lost+found's ".." -> 3 links
    inodes[EXT4_ROOT_INO] = _dir_inode(0o755, 3, layout.root_dir_block, layout)
    inodes[LOST_FOUND_INO] = _dir_inode(0o700, 2, layout.lost_found_block, layout)
    if layout.has_journal:
        jsize = layout.journal_blocks * bs
        inodes[EXT4_JOURNAL_INO] = RawInode(
            mode=S_IFREG | 0o600,
            links_count=1,
            size=jsize,
            blocks=jsize // 512,
            flags=EXT4_EXTENTS_FL,
            i_block=journal_i_block(layout),
            atime=FIXED_TIME,
            ctime=FIXED_TIME,
            mtime=FIXED_TIME,
            crtime=FIXED_TIME,
        )
    itable = layout.inode_table * bs
    for ino, inode in inodes.items():
        put(itable + (ino - 1) * layout.inode_size, encode_inode(inode, layout.inode_size))

    # ---- directories --------------------------------------------------------------------------
    root_entries = [
        DirEntry(EXT4_ROOT_INO, b".", EXT4_FT_DIR),
        DirEntry(EXT4_ROOT_INO, b"..", EXT4_FT_DIR),
        DirEntry(LOST_FOUND_INO, b"lost+found", EXT4_FT_DIR),
    ]
    put(layout.root_dir_block * bs, encode_dir_block(root_entries, bs))
    lf_entries = [DirEntry(LOST_FOUND_INO, b".", EXT4_FT_DIR), DirEntry(EXT4_ROOT_INO, b"..", EXT4_FT_DIR)]
    put(layout.lost_found_block * bs, encode_dir_block(lf_entries, bs))

    # ---- journal ------------------------------------------------------------------------------
    if layout.has_journal:
        # empty journal (s_start 0); the rest of the journal blocks stay zero as mke2fs leaves them
        put(
            layout.journal_start * bs,
            encode_journal_superblock(block_size=bs, maxlen=layout.journal_blocks, uuid=uuid),
        )

    # ---- bitmaps ------------------------------------------------------------------------------
    block_used = np.zeros(layout.group_blocks, dtype=bool)
    block_used[: layout.first_data_free - layout.first_data_block] = True
    put(layout.block_bitmap * bs, encode_bitmap(block_used, bs))
    inode_used = np.zeros(layout.inodes_count, dtype=bool)
    # inodes 1..10 are reserved and marked in use even when zeroed; 11 is lost+found
    inode_used[:LOST_FOUND_INO] = True
    put(layout.inode_bitmap * bs, encode_bitmap(inode_used, bs))

    # ---- group descriptor + superblock --------------------------------------------------------
    free_blocks = int(layout.group_blocks - block_used.sum())
    free_inodes = int(layout.inodes_count - inode_used.sum())
    put(layout.gdt_block * bs, encode_group_desc(layout, free_blocks, free_inodes, used_dirs=2))
    put(
        EXT4_SUPERBLOCK_OFFSET,
        encode_superblock(
            layout,
            free_blocks=free_blocks,
            free_inodes=free_inodes,
            inline_data=inline_data,
            uuid=uuid,
            hash_seed=hash_seed,
        ),
    )
    return img
