"""The file mapping: extents and the delayed part of the extent status tree (fs/ext4/extents.c,
extents_status.c), plus fallocate (ext4_fallocate, ext4_zero_range, ext4_alloc_file_blocks).

Every logical block is a hole, delalloc (``i_es_delayed``), unwritten or written (``i_extents``).
Every change of the mapping bumps ``i_es_seq`` -- the sequence an iomap validity cookie samples
(ext4's ``i_es_seq``, XFS's ``if_seq``). The extent functions here run with ``i_data_sem`` held for
write by their callers and do not sleep.
"""

from __future__ import annotations

import bisect
from typing import Any

from simkernel.block.blk_core import REQ_OP_WRITE, Bio
from simkernel.config import SECTOR_SIZE
from simkernel.fs.ext4 import ondisk
from simkernel.fs.ext4.ext4 import (
    EXT4_EXTENTS_FL,
    EXT4_GET_BLOCKS_CONVERT,
    EXT4_GET_BLOCKS_CONVERT_UNWRITTEN,
    EXT4_GET_BLOCKS_CREATE,
    EXT4_GET_BLOCKS_CREATE_UNWRIT_EXT,
    EXT4_GET_BLOCKS_DELALLOC_RESERVE,
    EXT4_GET_BLOCKS_PRE_IO,
    EXT4_GET_BLOCKS_UNWRIT_EXT,
    EXT4_MAP_MAPPED,
    EXT4_MAP_NEW,
    EXT4_MAP_UNWRITTEN,
    EXT4_MB_DELALLOC_RESERVED,
    EXT4_MB_USE_RESERVED,
    EXT_INIT_MAX_LEN,
    EXT_UNWRITTEN_MAX_LEN,
    Ext4InodeInfo,
    Extent,
    MapBlocks,
)
from simkernel.fs.vfs import EFBIG, EINVAL, ENOSPC, EOPNOTSUPP, File
from simkernel.kernel.base import KernelBase
from simkernel.kernel.sched import KGen
from simkernel.mm.filemap import FGP_CREAT, FGP_LOCK

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_ZERO_RANGE = 0x10

#: the largest logical block (2^32 - 1): s_maxbytes for extent files
EXT_MAX_BLOCKS = (1 << 32) - 1


def _runs(blocks: list[int]) -> list[tuple[int, int]]:
    """Sorted block numbers as runs ``(first, count)``."""
    out: list[tuple[int, int]] = []
    for b in blocks:
        if out and out[-1][0] + out[-1][1] == b:
            out[-1] = (out[-1][0], out[-1][1] + 1)
        else:
            out.append((b, 1))
    return out


class Ext4Extents(KernelBase):
    # -- lookup --------------------------------------------------------------------------------------

    @staticmethod
    def ext4_ext_find(inode: Ext4InodeInfo, lblk: int) -> int:
        """Index of the extent containing ``lblk``, or of the first extent after it (may be len)."""
        exts = inode.i_extents
        i = bisect.bisect_right([e.lblk for e in exts], lblk) - 1
        if i >= 0 and exts[i].end > lblk:
            return i
        return i + 1

    def ext4_es_bump_seq(self, inode: Ext4InodeInfo) -> None:
        inode.i_es_seq += 1

    def ext4_es_lookup(self, inode: Ext4InodeInfo, lblk: int) -> tuple[str, Extent | None]:
        """What backs ``lblk``: ("written"|"unwritten", extent), ("delayed", None) or ("hole", None)."""
        i = self.ext4_ext_find(inode, lblk)
        exts = inode.i_extents
        if i < len(exts) and exts[i].lblk <= lblk:
            ext = exts[i]
            return ("unwritten" if ext.unwritten else "written"), ext
        if lblk in inode.i_es_delayed:
            return "delayed", None
        return "hole", None

    # -- extent list maintenance ---------------------------------------------------------------------

    @staticmethod
    def ext4_ext_try_to_merge(inode: Ext4InodeInfo, lo: int | None = None, hi: int | None = None) -> None:
        """ext4_ext_try_to_merge(): join neighbours that are contiguous on disk and of one kind.

        With ``[lo, hi)`` (logical blocks just changed), only pairs with an extent overlapping it,
        as the kernel merges only around the extent it modified (ext4_ext_try_to_merge(ex) tries
        ex - 1 and ex): two unwritten extents elsewhere stay apart -- say, two writebacks' extents
        whose conversions are still pending."""
        out: list[Extent] = []
        for ext in inode.i_extents:
            if out:
                prev = out[-1]
                limit = EXT_UNWRITTEN_MAX_LEN if ext.unwritten else EXT_INIT_MAX_LEN
                near = (
                    lo is None
                    or hi is None
                    or (prev.lblk < hi and prev.end > lo)
                    or (ext.lblk < hi and ext.end > lo)
                )
                if (
                    near
                    and prev.end == ext.lblk
                    and prev.pblk + prev.len == ext.pblk
                    and prev.unwritten == ext.unwritten
                    and prev.len + ext.len <= limit
                ):
                    prev.len += ext.len
                    continue
            out.append(ext)
        inode.i_extents = out

    def ext4_ext_split_at(self, inode: Ext4InodeInfo, lblk: int) -> None:
        """Make ``lblk`` an extent boundary (ext4_split_extent_at)."""
        i = self.ext4_ext_find(inode, lblk)
        exts = inode.i_extents
        if i < len(exts) and exts[i].lblk < lblk < exts[i].end:
            ext = exts[i]
            head = lblk - ext.lblk
            tail = Extent(lblk, ext.len - head, ext.pblk + head, ext.unwritten)
            ext.len = head
            exts.insert(i + 1, tail)

    def ext4_ext_update_tree(
        self, handle: Any, inode: Ext4InodeInfo, mb_flags: int = EXT4_MB_USE_RESERVED
    ) -> int:
        """Grow or shrink the set of extent tree blocks to what the extent count needs.

        New tree blocks are metadata: they may use the reserved pool (EXT4_MB_USE_RESERVED), or,
        for delalloc writeback, they are allocated as the data is (EXT4_MB_DELALLOC_RESERVED:
        ext4_ext_insert_extent() passes it down to ext4_ext_new_meta_block(), so the free-space
        counters are not checked and the data's reservation is not yet released).
        """
        bs = inode.i_sb.s_blocksize
        need = ondisk.extent_tree_blocks_needed(self.ext4_ext_disk_count(inode), bs)
        blocks = inode.i_ext_tree_blocks
        while len(blocks) < need:
            goal = inode.i_extents[0].pblk if inode.i_extents else 0
            pblk, _ = self.ext4_mb_new_blocks(handle, inode, goal, 1, mb_flags)
            if pblk < 0:
                return pblk
            blocks.append(pblk)
        while len(blocks) > need:
            self.ext4_free_blocks(handle, inode, blocks.pop(), 1)
        return 0

    @staticmethod
    def ext4_ext_disk_count(inode: Ext4InodeInfo) -> int:
        """Number of on-disk extent records (long extents need several records)."""
        n = 0
        for ext in inode.i_extents:
            limit = EXT_UNWRITTEN_MAX_LEN if ext.unwritten else EXT_INIT_MAX_LEN
            n += -(-ext.len // limit)
        return n

    def ext4_ext_insert_extent(self, handle: Any, inode: Ext4InodeInfo, new: Extent, flags: int = 0) -> int:
        """ext4_ext_insert_extent(): add a mapping for a range that was a hole. With
        EXT4_GET_BLOCKS_PRE_IO (writeback allocating unwritten blocks for its IO) the new extent is
        not merged with its neighbours, so the conversion at IO completion flips exactly that
        extent and needs no split (and so no tree block)."""
        i = self.ext4_ext_find(inode, new.lblk)
        exts = inode.i_extents
        self.BUG_ON(
            i < len(exts) and exts[i].lblk < new.end,
            "inserting an extent over a mapped range",
            new=repr(new),
            existing=repr(exts[i]) if i < len(exts) else None,
        )
        exts.insert(i, new)
        if not flags & EXT4_GET_BLOCKS_PRE_IO:
            self.ext4_ext_try_to_merge(inode, new.lblk, new.end)
        self.ext4_es_bump_seq(inode)
        mb_flags = (
            EXT4_MB_DELALLOC_RESERVED if flags & EXT4_GET_BLOCKS_DELALLOC_RESERVE else EXT4_MB_USE_RESERVED
        )
        err = self.ext4_ext_update_tree(handle, inode, mb_flags)
        if err:
            # no room for the tree block: undo the insertion (the caller frees the data blocks)
            self.ext4_ext_remove_range(inode, new.lblk, new.len)
            self.ext4_ext_update_tree(handle, inode)
            return err
        self.ext4_mark_inode_dirty(handle, inode)
        return 0

    def ext4_ext_remove_range(self, inode: Ext4InodeInfo, lblk: int, length: int) -> list[tuple[int, int]]:
        """Unmap [lblk, lblk+length); returns the freed physical runs (pblk, count)."""
        end = lblk + length
        self.ext4_ext_split_at(inode, lblk)
        self.ext4_ext_split_at(inode, end)
        freed: list[tuple[int, int]] = []
        keep: list[Extent] = []
        for ext in inode.i_extents:
            if ext.lblk >= lblk and ext.end <= end:
                freed.append((ext.pblk, ext.len))
            else:
                keep.append(ext)
        inode.i_extents = keep
        self.ext4_ext_try_to_merge(inode, lblk, end)
        self.ext4_es_bump_seq(inode)
        return freed

    def ext4_ext_set_unwritten(self, inode: Ext4InodeInfo, lblk: int, length: int, unwritten: bool) -> int:
        """Flip the unwritten state of every mapped block in [lblk, lblk+length); returns blocks changed."""
        end = lblk + length
        self.ext4_ext_split_at(inode, lblk)
        self.ext4_ext_split_at(inode, end)
        changed = 0
        for ext in inode.i_extents:
            if ext.lblk >= lblk and ext.end <= end and ext.unwritten != unwritten:
                ext.unwritten = unwritten
                changed += ext.len
        self.ext4_ext_try_to_merge(inode, lblk, end)
        self.ext4_es_bump_seq(inode)
        return changed

    def ext4_ext_convert(
        self, handle: Any, inode: Ext4InodeInfo, lblk: int, length: int, unwritten: bool
    ) -> int:
        """Flip [lblk, lblk+length) to ``unwritten`` and fit the tree to the new extent count: a
        split in ext4_split_extent_at() may need a new leaf (ext4_ext_insert_extent ->
        ext4_ext_grow_indepth), a merge may leave one empty. When no tree block can be had the
        mapping is left as it was and the error returned; ext4_map_blocks() then tries the
        zeroout fallback (:meth:`ext4_ext_convert_zeroout`)."""
        self.ext4_ext_set_unwritten(inode, lblk, length, unwritten)
        err = self.ext4_ext_update_tree(handle, inode)
        if err:
            self.ext4_ext_set_unwritten(inode, lblk, length, not unwritten)
            self.ext4_ext_update_tree(handle, inode)
            return err
        self.ext4_mark_inode_dirty(handle, inode)
        return 0

    def ext4_ext_convert_zeroout(self, handle: Any, inode: Ext4InodeInfo, map: MapBlocks, flags: int) -> KGen:
        """The zeroout fallback of ext4_split_extent_at() (EXT4_EXT_MAY_ZEROOUT) when splitting the
        extent for a conversion cannot get a tree block: instead of splitting, write zeros and
        convert without a split -- "unwritten to written: zeroout everything around the mapped
        range" (then the whole extent becomes written), "written to unwritten: zeroout only the
        mapped range" (it stays written). Allowed only for an extent inside EOF
        (ext4_split_convert_extents(): ``ee_block + ee_len <= eof_block``); otherwise the split's
        -ENOSPC stands. Caller holds i_data_sem for write; the zeroing IO is synchronous
        (ext4_ext_zeroout -> ext4_issue_zeroout), as in the kernel."""
        lblk = map.m_lblk
        exts = inode.i_extents
        i = self.ext4_ext_find(inode, lblk)
        if not (i < len(exts) and exts[i].lblk <= lblk):
            return -ENOSPC
        ext = exts[i]
        to_written = bool(flags & EXT4_GET_BLOCKS_CONVERT)
        if ext.unwritten != to_written:
            return -ENOSPC
        n = min(map.m_len, ext.end - lblk)
        bs = inode.i_sb.s_blocksize
        eof_block = max(-(-inode.i_disksize // bs), lblk + n)
        if ext.end > eof_block:
            return -ENOSPC
        first, count, pblk = ext.lblk, ext.len, ext.pblk
        if to_written:
            around = [*range(first, lblk), *range(lblk + n, first + count)]
            keep = self.ext4_ext_zeroout_filter(inode, around)
            if keep is None:
                return -ENOSPC
            zero = [(pblk + b - first, m) for b, m in _runs(keep)]
        else:
            zero = [(pblk + lblk - first, n)]
        self.cov(f"ext4:convert:zeroout:{'written' if to_written else 'unwritten'}")
        for start, nblk in zero:
            if nblk <= 0:
                continue
            bio = Bio(
                REQ_OP_WRITE,
                start * (bs // SECTOR_SIZE),
                bytes(nblk * bs),
                tag=f"zeroout ino={inode.i_ino} pblk={start} len={nblk}",
            )
            err = yield from self.submit_bio_wait(bio)
            if err:
                return err
        if to_written:
            # the whole extent flips: no split, so no new tree block (a merge may free one)
            self.ext4_ext_set_unwritten(inode, first, count, False)
            self.ext4_ext_update_tree(handle, inode)
        self.ext4_mark_inode_dirty(handle, inode)
        map.m_pblk = pblk + lblk - first
        map.m_len = n
        map.m_flags = EXT4_MAP_MAPPED
        return n

    def ext4_ext_zeroout_filter(self, inode: Ext4InodeInfo, lblks: list[int]) -> list[int] | None:
        """Which of the unwritten blocks around a conversion the zeroout may zero: not those a
        writeback io_end wrote whose own conversion is still pending (their data is on disk; the
        whole-extent flip makes it readable, as that conversion would), and none at all (None:
        the conversion fails with -ENOSPC) while a bio of an io_end is still in flight there
        (zeros and data would race to the disk). Two writebacks' unwritten extents can share
        one extent: a merge joins them whatever IO is pending (Linux dropped the i_unwritten
        check from ext4_can_extents_be_merged()). Linux zeroes them all (variant
        ``zeroout-wipes-pending-io``): a completed but unconverted neighbour's data is lost."""
        written: set[int] = set()
        for io_end in inode.i_io_ends:
            mine = io_end.written.intersection(lblks)
            if mine and io_end.count:
                return None
            written |= mine
        return [b for b in lblks if b not in written]

    def ext4_ext_find_goal(self, inode: Ext4InodeInfo, lblk: int) -> int:
        """ext4_ext_find_goal(): continue the physical run of the nearest preceding extent."""
        i = self.ext4_ext_find(inode, lblk) - 1
        if 0 <= i < len(inode.i_extents):
            ext = inode.i_extents[i]
            return ext.pblk + (lblk - ext.lblk)
        sbi = inode.i_sb.s_fs_info
        return int(sbi.layout.first_data_free)

    # -- ext4_ext_map_blocks -------------------------------------------------------------------------

    def ext4_ext_map_blocks(self, handle: Any, inode: Ext4InodeInfo, map: MapBlocks, flags: int) -> int:
        """ext4_ext_map_blocks(): look up, and with EXT4_GET_BLOCKS_CREATE allocate, ``map``.

        Returns the number of blocks mapped (0: a hole of ``map.m_len`` blocks) or -errno.
        Caller holds i_data_sem (write if it may allocate or convert).
        """
        lblk = map.m_lblk
        exts = inode.i_extents
        i = self.ext4_ext_find(inode, lblk)
        map.m_flags = 0
        if i < len(exts) and exts[i].lblk <= lblk:
            ext = exts[i]
            n = min(map.m_len, ext.end - lblk)
            map.m_pblk = ext.pblk + (lblk - ext.lblk)
            map.m_len = n
            map.m_flags = EXT4_MAP_MAPPED
            if ext.unwritten:
                if flags & EXT4_GET_BLOCKS_CONVERT:
                    # ext4_convert_unwritten_extents_endio(): IO done, the data is on disk
                    err = self.ext4_ext_convert(handle, inode, lblk, n, False)
                    if err:
                        return err
                else:
                    map.m_flags |= EXT4_MAP_UNWRITTEN
            elif flags & EXT4_GET_BLOCKS_CONVERT_UNWRITTEN:
                # zero range: written blocks become unwritten (they read back as zeros)
                err = self.ext4_ext_convert(handle, inode, lblk, n, True)
                if err:
                    return err
                map.m_flags |= EXT4_MAP_UNWRITTEN
            return n
        # a hole up to the next extent
        nxt = exts[i].lblk if i < len(exts) else EXT_MAX_BLOCKS + 1
        map.m_len = min(map.m_len, nxt - lblk)
        if not flags & EXT4_GET_BLOCKS_CREATE:
            map.m_pblk = 0
            return 0
        unwritten = bool(flags & EXT4_GET_BLOCKS_UNWRIT_EXT)
        want = min(map.m_len, EXT_UNWRITTEN_MAX_LEN if unwritten else EXT_INIT_MAX_LEN)
        ar_flags = EXT4_MB_DELALLOC_RESERVED if flags & EXT4_GET_BLOCKS_DELALLOC_RESERVE else 0
        pblk, count = self.ext4_mb_new_blocks(
            handle, inode, self.ext4_ext_find_goal(inode, lblk), want, ar_flags
        )
        if pblk < 0:
            return pblk
        err = self.ext4_ext_insert_extent(handle, inode, Extent(lblk, count, pblk, unwritten), flags)
        if err:
            self.ext4_free_blocks(handle, inode, pblk, count)
            return err
        map.m_pblk = pblk
        map.m_len = count
        map.m_flags = EXT4_MAP_NEW | EXT4_MAP_MAPPED | (EXT4_MAP_UNWRITTEN if unwritten else 0)
        return count

    def ext4_ext_remove_space(self, handle: Any, inode: Ext4InodeInfo, start: int, end: int) -> int:
        """ext4_ext_remove_space(): unmap blocks [start, end] and free them."""
        for pblk, count in self.ext4_ext_remove_range(inode, start, end - start + 1):
            self.ext4_free_blocks(handle, inode, pblk, count)
        self.ext4_ext_update_tree(handle, inode)
        self.ext4_mark_inode_dirty(handle, inode)
        return 0

    def ext4_ext_tree_init(self, handle: Any, inode: Ext4InodeInfo) -> None:
        """ext4_ext_tree_init(): an empty extent root."""
        inode.i_extents = []
        inode.i_flags |= EXT4_EXTENTS_FL

    # -- extent status: delayed blocks ---------------------------------------------------------------

    def ext4_es_insert_delayed_block(self, inode: Ext4InodeInfo, lblk: int) -> None:
        inode.i_es_delayed.add(lblk)
        self.ext4_es_bump_seq(inode)

    def ext4_es_remove_extent(self, inode: Ext4InodeInfo, lblk: int, length: int) -> int:
        """ext4_es_remove_extent(): forget delalloc blocks in the range, releasing their reservations."""
        gone = [b for b in sorted(inode.i_es_delayed) if lblk <= b < lblk + length]
        if gone:
            inode.i_es_delayed.difference_update(gone)
            self.ext4_da_release_space(inode, len(gone))
            self.ext4_es_bump_seq(inode)
        return len(gone)

    # -- fallocate (extents.c) -----------------------------------------------------------------------

    def ext4_alloc_extend_size(self, handle: Any, inode: Ext4InodeInfo, epos: int) -> KGen:
        """Raise i_size to ``epos`` over blocks fallocate just allocated. "ext4: partial zero eof
        block on unaligned inode size extension" (6.11): the old EOF block's tail (mmap stores
        past EOF) must read as zeros inside the file. Here it is zeroed first, with the old EOF
        folio locked and write-protected until the size has grown, so neither a lockless read
        nor a store sees the tail inside the file unzeroed. Not Linux's order: its
        ext4_alloc_file_blocks() raises i_size, then zeroes (pagecache_isize_extended(),
        ext4_zero_partial_blocks()), and a read in between returns the stale stores (variant
        ``fallocate-zero-after-size``)."""
        old_size = inode.i_size
        ps = self.page_size
        folio = None
        if old_size % ps:
            fgp = FGP_LOCK | (FGP_CREAT if self.config.write_path == "ext4" else 0)
            folio = yield from self._filemap_get_folio(inode.i_mapping, old_size // ps, fgp)
        zero_end = epos
        if folio is not None:
            if self.config.write_path == "iomap":
                zero_end = old_size if self.iomap_zero_eof_gap_locked(inode, folio, old_size, epos) else epos
            else:
                zero_end = yield from self.ext4_zero_eof_gap_locked(inode, folio, old_size, epos)
        inode.i_size = epos
        self.ext4_update_i_disksize(inode, epos)
        if folio is not None:
            self.folio_unlock(folio)
        if zero_end > old_size:
            yield from self.pagecache_isize_extended(inode, old_size, epos)
            return (yield from self.ext4_zero_partial_blocks(handle, inode, old_size, zero_end - old_size))
        return 0

    def ext4_alloc_file_blocks(self, file: File, lblk: int, length: int, new_size: int, flags: int) -> KGen:
        """ext4_alloc_file_blocks(): map [lblk, lblk+length) as unwritten, extending i_size if asked."""
        inode: Ext4InodeInfo = file.f_inode  # type: ignore[assignment]
        bs = inode.i_sb.s_blocksize
        retries = [0]
        while length > 0:
            handle = yield from self.ext4_journal_start(inode, "fallocate", 8)
            map = MapBlocks(lblk, length)
            ret = yield from self.ext4_map_blocks(handle, inode, map, flags)
            if ret <= 0:
                self.ext4_journal_stop(handle)
                if ret == -ENOSPC and (yield from self.ext4_should_retry_alloc(inode.i_sb, retries)):
                    continue
                return ret or -ENOSPC
            lblk += ret
            length -= ret
            epos = min(lblk * bs, new_size) if new_size else 0
            if new_size and epos > inode.i_size:
                ret = yield from self.ext4_alloc_extend_size(handle, inode, epos)
                if ret:
                    self.ext4_journal_stop(handle)
                    return ret
            self.ext4_mark_inode_dirty(handle, inode)
            self.ext4_journal_stop(handle)
        return 0

    def ext4_fallocate(self, file: File, mode: int, offset: int, length: int) -> KGen:
        """ext4_fallocate(): preallocate, punch, or zero a range."""
        inode: Ext4InodeInfo = file.f_inode  # type: ignore[assignment]
        if mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE):
            return -EOPNOTSUPP
        if length <= 0 or offset < 0:
            return -EINVAL
        bs = inode.i_sb.s_blocksize
        if offset + length > (EXT_MAX_BLOCKS + 1) * bs:
            return -EFBIG
        # fallocate converts inline data first, under i_rwsem (no mmap_lock here, so that is legal)
        yield from self.inode_lock(inode)
        ret = yield from self.ext4_convert_inline_data(inode)
        self.inode_unlock(inode)
        if ret:
            return ret
        if mode & FALLOC_FL_PUNCH_HOLE:
            return (yield from self.ext4_punch_hole(file, offset, length))
        if mode & FALLOC_FL_ZERO_RANGE:
            return (yield from self.ext4_zero_range(file, offset, length, mode))
        yield from self.inode_lock(inode)
        try:
            lblk = offset // bs
            max_blocks = -(-(offset + length) // bs) - lblk
            new_size = 0 if mode & FALLOC_FL_KEEP_SIZE else max(offset + length, inode.i_size)
            return (
                yield from self.ext4_alloc_file_blocks(
                    file, lblk, max_blocks, new_size, EXT4_GET_BLOCKS_CREATE_UNWRIT_EXT
                )
            )
        finally:
            self.inode_unlock(inode)

    def ext4_zero_range(self, file: File, offset: int, length: int, mode: int) -> KGen:
        """ext4_zero_range(): make [offset, offset+length) read as zeros, keeping (or allocating) blocks."""
        inode: Ext4InodeInfo = file.f_inode  # type: ignore[assignment]
        mapping = inode.i_mapping
        bs = inode.i_sb.s_blocksize
        end = offset + length
        yield from self.inode_lock(inode)
        try:
            # write out dirty pages in the range first: their data must not land after the zeroing
            ret = yield from self.filemap_write_and_wait_range(mapping, offset, end - 1)
            if ret:
                return ret
            new_size = 0 if mode & FALLOC_FL_KEEP_SIZE else max(end, inode.i_size)
            start_lblk = -(-offset // bs)
            end_lblk = end // bs
            if offset % bs or end % bs:
                # "Preallocate the range including the unaligned edges": unwritten blocks for the
                # edges, and the new size -- with the old EOF block's tail zeroed on the way
                first = offset // bs
                ret = yield from self.ext4_alloc_file_blocks(
                    file, first, -(-end // bs) - first, new_size, EXT4_GET_BLOCKS_CREATE_UNWRIT_EXT
                )
                if ret:
                    return ret
            yield from self.down_write(mapping.invalidate_lock)
            try:
                if end_lblk > start_lblk:
                    # whole blocks: drop cached pages, then allocate/convert them to unwritten
                    ret = yield from self.ext4_update_disksize_before_punch(inode, offset, length)
                    if ret:
                        return ret
                    yield from self.truncate_pagecache_range(inode, start_lblk * bs, end_lblk * bs - 1)
                    yield from self.down_write(inode.i_data_sem)
                    self.ext4_es_remove_extent(inode, start_lblk, end_lblk - start_lblk)
                    self.up_write(inode.i_data_sem)
                    ret = yield from self.ext4_alloc_file_blocks(
                        file,
                        start_lblk,
                        end_lblk - start_lblk,
                        new_size,
                        EXT4_GET_BLOCKS_CREATE_UNWRIT_EXT | EXT4_GET_BLOCKS_CONVERT_UNWRITTEN,
                    )
                    if ret:
                        return ret
                handle = yield from self.ext4_journal_start(inode, "zero_range", 4)
                # the new size first, then the edges (as the kernel orders it): zeroing clipped
                # at i_size must cover the whole range once the file grows over it
                if new_size > inode.i_size:
                    inode.i_size = new_size
                    self.ext4_update_i_disksize(inode, new_size)
                self.ext4_mark_inode_dirty(handle, inode)
                # partial blocks at either end are zeroed through the page cache
                ret = yield from self.ext4_zero_partial_blocks(handle, inode, offset, length)
                self.ext4_journal_stop(handle)
                return ret
            finally:
                self.up_write(mapping.invalidate_lock)
        finally:
            self.inode_unlock(inode)

    def ext4_update_i_disksize(self, inode: Ext4InodeInfo, newsize: int) -> None:
        """ext4_update_i_disksize(): only grows."""
        if newsize > inode.i_disksize:
            inode.i_disksize = newsize
