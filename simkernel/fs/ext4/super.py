"""Mount, metadata writeback, sync and unmount (fs/ext4/super.c), inode creation (ialloc.c, namei.c).

The in-memory filesystem is the truth; metadata blocks are encoded from it with the layouts in
``ondisk.py`` when they are written. Without a journal, metadata reaches the disk at sync, fsync (the
file's inode and its extent tree) and unmount; with a journal, at commit (fs/jbd2/).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from simkernel.block.blk_core import REQ_OP_WRITE, Bio
from simkernel.config import SECTOR_SIZE
from simkernel.errors import CorruptImageError
from simkernel.fs.ext4 import ondisk
from simkernel.fs.ext4.ext4 import (
    EXT4_EXTENTS_FL,
    EXT4_INLINE_DATA_FL,
    EXT4_STATE_MAY_INLINE_DATA,
    EXT4_STATE_XATTR,
    Ext4InodeInfo,
    Ext4SbInfo,
    Extent,
    ext4_handle_valid,
)
from simkernel.fs.ext4.inline import EXT4_INLINE_XATTR_OFF
from simkernel.fs.vfs import EEXIST, ENOSPC, S_IFDIR, S_IFREG, SuperBlock
from simkernel.kernel.base import KernelBase
from simkernel.kernel.sched import KGen

FIXED_TIME = ondisk.FIXED_TIME


class Ext4Super(KernelBase):
    sb: SuperBlock

    # -- mount ---------------------------------------------------------------------------------------

    def ext4_fill_super(self) -> None:
        """ext4_fill_super(): read the superblock, bitmaps, inode table and root directory.

        Mount is not schedulable: it runs while no task is active (setup, remount).
        """
        cfg = self.config
        bs = cfg.block_size
        raw_sb = self.bdev.read(ondisk.EXT4_SUPERBLOCK_OFFSET // SECTOR_SIZE, 1024)
        es = ondisk.decode_superblock(raw_sb)
        if es.block_size != bs or es.blocks_count != cfg.device_blocks:
            raise CorruptImageError(
                f"image has {es.blocks_count} blocks of {es.block_size} bytes, config says "
                f"{cfg.device_blocks} of {bs}",
                where="superblock",
            )
        journal_blocks = cfg.journal_blocks if es.has_compat(ondisk.EXT4_FEATURE_COMPAT_HAS_JOURNAL) else 0
        layout = ondisk.compute_layout(bs, es.blocks_count, es.inodes_count, journal_blocks=journal_blocks)
        sb = SuperBlock(bs, self.page_size)
        self.sb = sb
        read = self.read_block_now
        gd = ondisk.decode_group_desc(
            read(layout.gdt_block)[: es.desc_size], desc_size=es.desc_size, where="group descriptor 0"
        )
        if (gd.block_bitmap, gd.inode_bitmap, gd.inode_table) != (
            layout.block_bitmap,
            layout.inode_bitmap,
            layout.inode_table,
        ):
            raise CorruptImageError(
                "group 0 tables are not where the model puts them", where="group descriptor 0"
            )
        bitmap = np.ones(layout.blocks_count, dtype=bool)
        bitmap[layout.first_data_block :] = ondisk.decode_bitmap(
            read(layout.block_bitmap), layout.group_blocks
        )
        ibitmap = ondisk.decode_bitmap(read(layout.inode_bitmap), layout.inodes_count)
        sbi = Ext4SbInfo(
            layout=layout,
            blocks_count=layout.blocks_count,
            inodes_count=layout.inodes_count,
            first_data_block=layout.first_data_block,
            block_bitmap=bitmap,
            inode_bitmap=ibitmap,
            s_freeclusters_counter=int((~bitmap).sum()),
            s_freeinodes_counter=int((~ibitmap).sum()),
            s_inline_data=es.has_incompat(ondisk.EXT4_FEATURE_INCOMPAT_INLINE_DATA),
            s_delalloc=cfg.delalloc,
        )
        sbi.pending_mask = np.zeros(layout.blocks_count, dtype=bool)
        # keep a few blocks back from delalloc promises for extent-tree blocks (s_resv_clusters)
        sbi.s_resv_clusters = 2
        sbi.es = es  # type: ignore[attr-defined]
        sbi.s_last_orphan = es.last_orphan
        sb.s_fs_info = sbi
        for b in range(layout.inode_table, layout.inode_table + layout.inode_table_blocks):
            sbi.itable_raw[b] = bytearray(read(b))
        # the root directory
        root = self.ext4_iget(ondisk.EXT4_ROOT_INO)
        sbi.root_dir_blocks = [e.pblk + k for e in root.i_extents for k in range(e.len)]
        entries: dict[str, int] = {}
        for blk in sbi.root_dir_blocks:
            for de in ondisk.decode_dir_block(read(blk), where=f"root directory block {blk}"):
                entries[de.name.decode("utf-8", "replace")] = de.ino
        sbi.root_entries = entries
        self.root_inode = root
        for name, ino in entries.items():
            if name in (".", "..", "lost+found"):
                continue
            self.ext4_iget(ino)
        if es.has_compat(ondisk.EXT4_FEATURE_COMPAT_HAS_JOURNAL) and cfg.journal:
            self.ext4_load_journal()

    def read_block_now(self, blk: int) -> bytes:
        bs = self.config.block_size
        return self.bdev.read(blk * (bs // SECTOR_SIZE), bs)

    def ext4_iget(self, ino: int) -> Ext4InodeInfo:
        """ext4_iget(): build the in-memory inode from its raw inode."""
        sbi: Ext4SbInfo = self.sb.s_fs_info
        layout = sbi.layout
        raw = ondisk.decode_inode(self.raw_inode_slot(ino), ino)
        inode = Ext4InodeInfo(self.sb, ino, raw.mode)
        inode.i_size = inode.i_disksize = raw.size
        inode.i_flags = raw.flags
        inode.i_links_count = raw.links_count
        inode.i_generation = raw.generation
        if raw.links_count:
            inode.i_next_orphan = raw.dtime  # NEXT_ORPHAN(): i_dtime of a live inode
        if raw.flags & EXT4_INLINE_DATA_FL:
            inode.i_data[:] = raw.i_block
            if raw.inline_value is not None:
                inode.i_inline_off = EXT4_INLINE_XATTR_OFF
                inode.i_inline_value = bytearray(raw.inline_value)
                inode.i_inline_size = ondisk.EXT4_MIN_INLINE_DATA_SIZE + len(raw.inline_value)
                self.ext4_set_inode_state(inode, EXT4_STATE_XATTR)
                # ext4_iget_extra_inode(): a file that has inline data may keep writing inline
                self.ext4_set_inode_state(inode, EXT4_STATE_MAY_INLINE_DATA)
        elif raw.flags & EXT4_EXTENTS_FL:
            leaves, tree = ondisk.decode_extent_tree(
                raw.i_block, self.read_block_now, layout.block_size, where=f"inode {ino} extent tree"
            )
            inode.i_extents = [Extent(e.lblk, e.len, e.pblk, e.unwritten) for e in leaves]
            inode.i_ext_tree_blocks = list(tree)
        if raw.mode & 0o170000 == S_IFREG:
            self.ext4_set_aops(inode)
            inode.i_fop = self.ext4_file_operations()
        self.sb.s_inodes[ino] = inode
        return inode

    def raw_inode_slot(self, ino: int) -> bytearray:
        sbi: Ext4SbInfo = self.sb.s_fs_info
        layout = sbi.layout
        off = (ino - 1) * layout.inode_size
        blk = layout.inode_table + off // layout.block_size
        start = off % layout.block_size
        return sbi.itable_raw[blk][start : start + layout.inode_size]

    # -- encoding metadata ---------------------------------------------------------------------------

    def ext4_raw_inode(self, inode: Ext4InodeInfo) -> tuple[ondisk.RawInode, dict[int, bytes]]:
        """ext4_do_update_inode(): the raw inode (and extent tree blocks) for the in-memory inode."""
        bs = self.sb.s_blocksize
        tree: dict[int, bytes] = {}
        inline_value: bytes | None = None
        if inode.i_flags & EXT4_INLINE_DATA_FL:
            i_block = bytes(inode.i_data)
            if inode.i_inline_off:
                inline_value = bytes(inode.i_inline_value)
            nblocks = 0
        else:
            exts = [ondisk.Extent(e.lblk, e.len, e.pblk, e.unwritten) for e in inode.i_extents]
            i_block, tree = ondisk.encode_extent_tree(exts, list(inode.i_ext_tree_blocks), bs)
            nblocks = sum(e.len for e in inode.i_extents) + len(inode.i_ext_tree_blocks)
        size = inode.i_disksize
        if inode.i_mode & 0o170000 == S_IFDIR:
            size = nblocks * bs
        raw = ondisk.RawInode(
            mode=inode.i_mode,
            size=size,
            links_count=inode.i_links_count,
            blocks=nblocks * (bs // 512),
            flags=inode.i_flags,
            i_block=i_block,
            generation=inode.i_generation,
            dtime=inode.i_next_orphan,
            atime=FIXED_TIME,
            ctime=FIXED_TIME,
            mtime=FIXED_TIME,
            crtime=FIXED_TIME,
            inline_value=inline_value,
            xattr_header=True,
        )
        return raw, tree

    def ext4_metadata_blocks(self, inos: list[int], *, bitmaps: bool, dir: bool) -> dict[int, bytes]:
        """Encode the metadata blocks for these inodes (+ bitmaps/GDT/superblock, + root dir)."""
        sbi: Ext4SbInfo = self.sb.s_fs_info
        layout = sbi.layout
        bs = layout.block_size
        out: dict[int, bytes] = {}
        if dir:
            inos = sorted(set(inos) | {ondisk.EXT4_ROOT_INO})
        for ino in inos:
            inode = self.sb.s_inodes.get(ino)
            off = (ino - 1) * layout.inode_size
            blk = layout.inode_table + off // bs
            start = off % bs
            if inode is None:
                continue
            raw, tree = self.ext4_raw_inode(inode)  # type: ignore[arg-type]
            sbi.itable_raw[blk][start : start + layout.inode_size] = ondisk.encode_inode(
                raw, layout.inode_size
            )
            out[blk] = bytes(sbi.itable_raw[blk])
            out.update(tree)
        if dir:
            for blk, data in self.ext4_dir_blocks().items():
                out[blk] = data
        if bitmaps:
            out.update(self.ext4_bitmap_blocks())
        return out

    def ext4_dir_blocks(self) -> dict[int, bytes]:
        sbi: Ext4SbInfo = self.sb.s_fs_info
        bs = sbi.layout.block_size
        entries = [
            ondisk.DirEntry(
                ino,
                name.encode(),
                ondisk.EXT4_FT_DIR if name in (".", "..", "lost+found") else ondisk.EXT4_FT_REG_FILE,
            )
            for name, ino in sbi.root_entries.items()
        ]
        blocks: dict[int, bytes] = {}
        for blk in sbi.root_dir_blocks:
            chunk: list[ondisk.DirEntry] = []
            while entries and ondisk.dir_entries_fit([*chunk, entries[0]], bs):
                chunk.append(entries.pop(0))
            blocks[blk] = ondisk.encode_dir_block(chunk, bs)
        return blocks

    def ext4_bitmap_blocks(self) -> dict[int, bytes]:
        """Block/inode bitmaps, the group descriptor and the superblock, counts from the bitmaps."""
        sbi: Ext4SbInfo = self.sb.s_fs_info
        layout = sbi.layout
        bs = layout.block_size
        es = sbi.es  # type: ignore[attr-defined]
        out: dict[int, bytes] = {}
        bitmap = sbi.block_bitmap[layout.first_data_block :]
        out[layout.block_bitmap] = ondisk.encode_bitmap(bitmap, bs)
        out[layout.inode_bitmap] = ondisk.encode_bitmap(sbi.inode_bitmap, bs)
        free_blocks = int((~bitmap).sum())
        free_inodes = int((~sbi.inode_bitmap).sum())
        gd = ondisk.encode_group_desc(layout, free_blocks, free_inodes, 2)
        out[layout.gdt_block] = gd.ljust(bs, b"\0")
        sb_raw = ondisk.encode_superblock(
            layout,
            free_blocks=free_blocks,
            free_inodes=free_inodes,
            inline_data=sbi.s_inline_data,
            uuid=es.uuid,
            hash_seed=es.hash_seed,
            needs_recovery=bool(sbi.s_journal is not None and sbi.s_journal.needs_recovery()),
            last_orphan=sbi.s_last_orphan,
        )
        if bs == 1024:
            out[layout.sb_block] = sb_raw
        else:
            out[0] = bytes(1024) + sb_raw + bytes(bs - 2048)
        return out

    # -- writing metadata (no journal) ---------------------------------------------------------------

    def ext4_lock_meta_blocks(self, encode: Callable[[], dict[int, bytes]]) -> KGen:
        """``encode()`` once none of the blocks it returns has a write in flight (lock_buffer()).

        A metadata buffer stays locked while its write is in flight: sync_dirty_buffer() and
        write_dirty_buffer() take the lock before they submit, so two writes of one block never
        overlap and the device cannot land an older copy after a newer one. The caller submits the
        returned blocks before it yields again; encoding after the wait sends the newest state, as
        the buffer's memory always holds it."""
        while True:
            blocks = encode()
            bs = self.sb.s_blocksize
            sectors = {blk * (bs // SECTOR_SIZE) for blk in blocks}
            busy = [
                bio
                for bio in self.inflight
                if bio.op == REQ_OP_WRITE and bio.tag.startswith("meta") and bio.sector in sectors
            ]
            if not busy:
                return blocks
            yield busy[0].wq

    def submit_meta_blocks(self, blocks: dict[int, bytes], wait: bool) -> KGen:
        """Write metadata blocks (sync_dirty_buffer / write_dirty_buffer); returns the first error."""
        bs = self.sb.s_blocksize
        bios = []
        for blk in sorted(blocks):
            bio = Bio(REQ_OP_WRITE, blk * (bs // SECTOR_SIZE), blocks[blk], tag=f"meta {self.meta_tag(blk)}")
            self.submit_bio(bio)
            bios.append(bio)
        err = 0
        if wait:
            for bio in bios:
                while not bio.done:
                    yield bio.wq
                err = err or bio.status
        return err

    def meta_tag(self, blk: int) -> str:
        sbi: Ext4SbInfo = self.sb.s_fs_info
        layout = sbi.layout
        if blk == layout.sb_block or (blk == 0 and layout.block_size > 1024):
            return "superblock"
        if blk == layout.gdt_block:
            return "group descriptors"
        if blk == layout.block_bitmap:
            return "block bitmap"
        if blk == layout.inode_bitmap:
            return "inode bitmap"
        if layout.inode_table <= blk < layout.inode_table + layout.inode_table_blocks:
            return f"inode table {blk - layout.inode_table}"
        if blk in sbi.root_dir_blocks:
            return "root directory"
        if (
            layout.journal_blocks
            and layout.journal_start <= blk < layout.journal_start + layout.journal_blocks
        ):
            return f"journal {blk - layout.journal_start}"
        return f"block {blk}"

    def ext4_write_inode_sync(self, inode: Ext4InodeInfo, datasync: bool) -> KGen:
        """sync_inode_metadata() + sync_mapping_buffers() without a journal: the inode's table block
        and extent tree blocks, written and waited for."""
        sbi: Ext4SbInfo = self.sb.s_fs_info
        if inode.i_ino not in sbi.dirty_inodes:
            return 0
        sbi.dirty_inodes.discard(inode.i_ino)
        inode.i_dirty_meta = False
        blocks = yield from self.ext4_lock_meta_blocks(
            lambda: self.ext4_metadata_blocks([inode.i_ino], bitmaps=False, dir=False)
        )
        return (yield from self.submit_meta_blocks(blocks, wait=True))

    def ext4_write_metadata_block(self, handle: Any, blk: int, data: bytes, what: str) -> KGen:
        """A data block written through a buffer_head (inline conversion), as sync_dirty_buffer()."""
        # With a journal, ext4 journals this block as metadata. The model writes it in place and
        # waits instead, in both modes: a journalled copy would later be checkpointed over data the
        # file's own page cache wrote to the same block (a block-device alias the model does not
        # resolve); written synchronously it is durable before the transaction mapping it commits.
        bs = self.sb.s_blocksize
        bio = Bio(REQ_OP_WRITE, blk * (bs // SECTOR_SIZE), data, tag=f"meta {what}")
        return (yield from self.submit_bio_wait(bio))

    def ext4_sync_metadata(self, wait: bool) -> KGen:
        """Write every dirty metadata block (sync_blockdev of the metadata buffers)."""
        sbi: Ext4SbInfo = self.sb.s_fs_info
        inos = sorted(sbi.dirty_inodes)
        sbi.dirty_inodes.clear()
        for ino in inos:
            inode = self.sb.s_inodes.get(ino)
            if inode is not None:
                inode.i_dirty_meta = False
        dirty_dir = sbi.dirty_dir
        blocks = yield from self.ext4_lock_meta_blocks(
            lambda: self.ext4_metadata_blocks(inos, bitmaps=True, dir=dirty_dir or sbi.dirty_dir)
        )
        sbi.dirty_bitmaps = False
        sbi.dirty_dir = False
        return (yield from self.submit_meta_blocks(blocks, wait))

    def ext4_sync_fs(self, wait: bool) -> KGen:
        """ext4_sync_fs(): journal commit, or metadata writeback; then a cache flush."""
        sbi: Ext4SbInfo = self.sb.s_fs_info
        if sbi.s_journal is not None:
            err = yield from self.jbd2_sync(wait)
        else:
            err = yield from self.ext4_sync_metadata(wait)
        if wait:
            err2 = yield from self.blkdev_issue_flush()
            err = err or err2
        return err

    def ext4_put_super(self) -> KGen:
        """ext4_put_super(): unmount. Destroy the journal (commit, checkpoint, empty log), then write
        the superblock marked clean (RECOVER cleared) with FUA."""
        sbi: Ext4SbInfo = self.sb.s_fs_info
        err = 0
        if sbi.s_journal is not None:
            err = yield from self.jbd2_journal_destroy()
            blocks = self.ext4_bitmap_blocks()
            sb_blk = sbi.layout.sb_block if sbi.layout.block_size == 1024 else 0
            bs = self.sb.s_blocksize
            bio = Bio(
                REQ_OP_WRITE,
                sb_blk * (bs // SECTOR_SIZE),
                blocks[sb_blk],
                fua=True,
                tag="meta superblock (clean)",
            )
            err = err or (yield from self.submit_bio_wait(bio))
        else:
            err = yield from self.ext4_sync_metadata(True)
        err2 = yield from self.blkdev_issue_flush()
        return err or err2

    # -- the orphan list (orphan.c) -------------------------------------------------------------------

    def ext4_orphan_add(self, handle: Any, inode: Ext4InodeInfo) -> int:
        """ext4_orphan_add(): put ``inode`` at the head of the on-disk orphan list, in ``handle``'s
        transaction. A truncate that shrinks the file does this before it commits the new
        i_disksize, so a crash between that commit and the one freeing the blocks past it leaves
        the inode on the list and the next mount's ext4_orphan_cleanup() (or e2fsck's
        release_orphan_inodes()) finishes the truncate. Without a journal there is no list."""
        sbi: Ext4SbInfo = self.sb.s_fs_info
        if sbi.s_journal is None or not ext4_handle_valid(handle):
            return 0
        if inode.i_next_orphan or sbi.s_last_orphan == inode.i_ino:
            return 0  # already on the list
        inode.i_next_orphan = sbi.s_last_orphan
        sbi.s_last_orphan = inode.i_ino
        self.ext4_mark_bitmaps_dirty(handle)  # the superblock
        self.ext4_mark_inode_dirty(handle, inode)
        return 0

    def ext4_orphan_del(self, handle: Any, inode: Ext4InodeInfo) -> int:
        """ext4_orphan_del(): unlink ``inode`` from the orphan list (its predecessor, or the
        superblock when it is the head, now points past it)."""
        sbi: Ext4SbInfo = self.sb.s_fs_info
        ino = inode.i_ino
        if sbi.s_last_orphan == ino:
            sbi.s_last_orphan = inode.i_next_orphan
            self.ext4_mark_bitmaps_dirty(handle)
        else:
            prev: Ext4InodeInfo | None = None
            cur = sbi.s_last_orphan
            seen = 0
            while cur and cur != ino and seen < sbi.inodes_count:
                prev = self.sb.s_inodes.get(cur)  # type: ignore[assignment]
                cur = prev.i_next_orphan if prev is not None else 0
                seen += 1
            if cur != ino or prev is None:
                return 0  # not on the list
            prev.i_next_orphan = inode.i_next_orphan
            self.ext4_mark_inode_dirty(handle, prev)
        inode.i_next_orphan = 0
        self.ext4_mark_inode_dirty(handle, inode)
        return 0

    # -- inode creation (ialloc.c, namei.c) ----------------------------------------------------------

    def ext4_new_inode(self, handle: Any, mode: int) -> Ext4InodeInfo | int:
        """ext4_new_inode(): take the first free inode; new files get an extent root and, on an
        inline_data filesystem, EXT4_STATE_MAY_INLINE_DATA."""
        sbi: Ext4SbInfo = self.sb.s_fs_info
        first = ondisk.EXT4_GOOD_OLD_FIRST_INO  # 11 is lost+found
        free = np.flatnonzero(~sbi.inode_bitmap[first:])
        if not len(free):
            return -ENOSPC
        ino = int(free[0]) + first + 1
        sbi.inode_bitmap[ino - 1] = True
        sbi.s_freeinodes_counter -= 1
        inode = Ext4InodeInfo(self.sb, ino, mode)
        inode.i_generation = 0
        self.ext4_ext_tree_init(handle, inode)
        if sbi.s_inline_data:
            self.ext4_set_inode_state(inode, EXT4_STATE_MAY_INLINE_DATA)
        self.ext4_set_aops(inode)
        inode.i_fop = self.ext4_file_operations()
        self.sb.s_inodes[ino] = inode
        self.ext4_mark_bitmaps_dirty(handle)
        self.ext4_mark_inode_dirty(handle, inode)
        return inode

    def ext4_create(self, name: str) -> KGen:
        """ext4_create(): a new regular file in the root directory; returns the inode or -errno."""
        sbi: Ext4SbInfo = self.sb.s_fs_info
        root = self.root_inode
        yield from self.down_write(root.i_rwsem)
        try:
            if name in sbi.root_entries:
                return -EEXIST
            handle = yield from self.ext4_journal_start(root, "create", 8)
            inode = self.ext4_new_inode(handle, S_IFREG | 0o644)
            if isinstance(inode, int):
                self.ext4_journal_stop(handle)
                return inode
            err = self.ext4_add_entry(handle, name, inode.i_ino)
            if err:
                self.ext4_journal_stop(handle)
                return err
            self.ext4_journal_stop(handle)
            return inode
        finally:
            self.up_write(root.i_rwsem)

    def ext4_add_entry(self, handle: Any, name: str, ino: int) -> int:
        """ext4_add_entry(): append to the root directory, growing it by a block if needed."""
        sbi: Ext4SbInfo = self.sb.s_fs_info
        bs = sbi.layout.block_size
        sbi.root_entries[name] = ino
        entries = [ondisk.DirEntry(i, n.encode(), 1) for n, i in sbi.root_entries.items()]
        need = 0
        while entries:
            chunk: list[ondisk.DirEntry] = []
            while entries and ondisk.dir_entries_fit([*chunk, entries[0]], bs):
                chunk.append(entries.pop(0))
            need += 1
        root = self.root_inode
        while len(sbi.root_dir_blocks) < need:
            lblk = len(sbi.root_dir_blocks)
            pblk, _ = self.ext4_mb_new_blocks(handle, root, sbi.root_dir_blocks[-1] + 1, 1, 0)
            if pblk < 0:
                del sbi.root_entries[name]
                return pblk
            root.i_extents.append(Extent(lblk, 1, pblk, False))
            self.ext4_ext_try_to_merge(root)
            sbi.root_dir_blocks.append(pblk)
            self.ext4_mark_inode_dirty(handle, root)
        sbi.dirty_dir = True
        self.ext4_journal_get_write_access(handle, "dir")
        self.ext4_mark_inode_dirty(handle, root)
        return 0
