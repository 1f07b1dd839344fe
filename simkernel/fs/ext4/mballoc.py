"""Block allocation and delalloc reservation (fs/ext4/mballoc.c, balloc.c, the reservation parts of
inode.c).

Two levels, each able to fail with ENOSPC independently:

* *reservation* (delalloc): counters only. ``s_dirtyclusters_counter`` counts blocks promised to
  dirty delalloc data; ext4_claim_free_clusters() refuses when free - dirty would go negative.
* *allocation*: the block bitmap. ext4_mb_new_blocks() finds a free run near a goal. Allocations
  that consume a reservation (EXT4_MB_DELALLOC_RESERVED) cannot fail for lack of space: the
  reservation guaranteed it.

Fault injection (armed by the schedule): ``sbi.inject["alloc"]`` fails the next allocation that is
*not* backed by a reservation (neither a delalloc reservation nor the reserved pool) -- what a
corrupt group or a racing allocator does to the inline-data conversion in page_mkwrite -- and
``sbi.inject["reserve"]`` fails the next reservation.
"""

from __future__ import annotations

from typing import Any

from simkernel.fs.ext4.ext4 import (
    EXT4_FREECLUSTERS_WATERMARK,
    EXT4_MB_DELALLOC_RESERVED,
    EXT4_MB_USE_RESERVED,
    Ext4InodeInfo,
    Ext4SbInfo,
)
from simkernel.fs.vfs import ENOSPC
from simkernel.kernel.base import KernelBase
from simkernel.kernel.sched import KGen


class Ext4Mballoc(KernelBase):
    def EXT4_SB(self, sb: Any) -> Ext4SbInfo:
        sbi: Ext4SbInfo = sb.s_fs_info
        return sbi

    # -- counters ------------------------------------------------------------------------------------

    def ext4_has_free_clusters(self, sbi: Ext4SbInfo, nclusters: int, flags: int = 0) -> bool:
        """ext4_has_free_clusters(): room for ``nclusters`` more promises?"""
        free = sbi.s_freeclusters_counter
        dirty = sbi.s_dirtyclusters_counter
        # s_resv_clusters keeps room for metadata (extent tree blocks) that delalloc writeback needs
        resv = 0 if flags & EXT4_MB_USE_RESERVED else sbi.s_resv_clusters
        return free - dirty - resv >= nclusters

    def ext4_claim_free_clusters(self, sbi: Ext4SbInfo, nclusters: int, flags: int = 0) -> int:
        """ext4_claim_free_clusters(): take a delalloc promise or return -ENOSPC."""
        if self.ext4_has_free_clusters(sbi, nclusters, flags):
            sbi.s_dirtyclusters_counter += nclusters
            return 0
        return -ENOSPC

    def ext4_nonda_switch(self, sb: Any) -> bool:
        """ext4_nonda_switch(): fall back to non-delalloc when free space runs low."""
        sbi = self.EXT4_SB(sb)
        free = sbi.s_freeclusters_counter
        dirty = sbi.s_dirtyclusters_counter
        if dirty and free < 2 * dirty:
            self.try_to_writeback_inodes_sb(sb, "fs_free_space")
        return 2 * free < 3 * dirty or free < dirty + EXT4_FREECLUSTERS_WATERMARK

    def ext4_should_retry_alloc(self, sb: Any, retries: list[int]) -> KGen:
        """ext4_should_retry_alloc(): retry an allocation that failed with ENOSPC (at most 3 times)?
        Without a journal nothing frees space by waiting, so never; with blocks freed in a
        transaction that has not committed, commit it (and wait) first."""
        sbi = self.EXT4_SB(sb)
        if sbi.s_journal is None:
            return False
        retries[0] += 1
        if retries[0] > 3:
            return False
        if sbi.s_mb_free_pending == 0:
            # "it's possible we just missed a transaction commit that did so"
            return self.ext4_has_free_clusters(sbi, 1)
        yield from self.jbd2_journal_force_commit_nested(sbi.s_journal)
        return True

    # -- delalloc reservation (inode.c) --------------------------------------------------------------

    def ext4_da_reserve_space(self, inode: Ext4InodeInfo, nr: int = 1) -> int:
        """ext4_da_reserve_space(): reserve ``nr`` blocks for delalloc data (quota + counters)."""
        sbi = self.EXT4_SB(inode.i_sb)
        err = sbi.inject.pop("reserve", 0)
        if err:
            return -err
        if self.ext4_claim_free_clusters(sbi, nr):
            return -ENOSPC
        inode.i_reserved_data_blocks += nr
        return 0

    def ext4_da_release_space(self, inode: Ext4InodeInfo, to_free: int) -> None:
        """ext4_da_release_space(): give back reservations (truncate/punch of delalloc blocks)."""
        if not to_free:
            return
        sbi = self.EXT4_SB(inode.i_sb)
        self.WARN_ON(
            to_free > inode.i_reserved_data_blocks,
            "ext4_da_release_space: releasing more than reserved",
            ino=inode.i_ino,
            to_free=to_free,
            reserved=inode.i_reserved_data_blocks,
        )
        to_free = min(to_free, inode.i_reserved_data_blocks)
        inode.i_reserved_data_blocks -= to_free
        sbi.s_dirtyclusters_counter -= to_free

    def ext4_da_update_reserve_space(self, inode: Ext4InodeInfo, used: int) -> None:
        """ext4_da_update_reserve_space(): delalloc blocks got real blocks; drop their promises."""
        sbi = self.EXT4_SB(inode.i_sb)
        if self.WARN_ON(
            used > inode.i_reserved_data_blocks,
            "used > ei->i_reserved_data_blocks",
            ino=inode.i_ino,
            used=used,
            reserved=inode.i_reserved_data_blocks,
        ):
            used = inode.i_reserved_data_blocks
        inode.i_reserved_data_blocks -= used
        sbi.s_dirtyclusters_counter -= used

    # -- real allocation (mballoc.c) -----------------------------------------------------------------

    def ext4_mb_new_blocks(
        self, handle: Any, inode: Ext4InodeInfo, goal: int, length: int, flags: int
    ) -> tuple[int, int]:
        """ext4_mb_new_blocks(): allocate up to ``length`` contiguous blocks near ``goal``.

        Returns (pblk, count) or (-errno, 0). Marks the bitmap; the caller records the mapping.
        """
        sbi = self.EXT4_SB(inode.i_sb)
        reserved = bool(flags & EXT4_MB_DELALLOC_RESERVED)
        if not reserved:
            # the injected failure stands for a racing allocator: it cannot take blocks of the
            # reserved pool, which is what EXT4_MB_USE_RESERVED allocations (extent tree blocks
            # for writeback and IO-completion conversions) are backed by
            err = 0 if flags & EXT4_MB_USE_RESERVED else sbi.inject.pop("alloc", 0)
            if err:
                return -err, 0
            # an unreserved allocation may not eat blocks promised to delalloc data
            if not self.ext4_has_free_clusters(sbi, 1, flags):
                return -ENOSPC, 0
            resv = 0 if flags & EXT4_MB_USE_RESERVED else sbi.s_resv_clusters
            length = min(length, sbi.s_freeclusters_counter - sbi.s_dirtyclusters_counter - resv)
        # blocks freed in a transaction that has not committed yet are not allocatable
        bitmap = sbi.block_bitmap | sbi.pending_mask if sbi.s_journal is not None else sbi.block_bitmap
        nblocks = sbi.blocks_count
        start = goal if sbi.first_data_block <= goal < nblocks else sbi.first_data_block
        pblk = self.mb_find_free_run(bitmap, start, nblocks, length)
        if pblk < 0 and start > sbi.first_data_block:
            pblk = self.mb_find_free_run(bitmap, sbi.first_data_block, nblocks, length)
        if pblk < 0:
            return -ENOSPC, 0
        count = 1
        while count < length and pblk + count < nblocks and not bitmap[pblk + count]:
            count += 1
        sbi.block_bitmap[pblk : pblk + count] = True
        sbi.s_freeclusters_counter -= count
        self.ext4_mark_bitmaps_dirty(handle)
        return pblk, count

    @staticmethod
    def mb_find_free_run(bitmap: Any, start: int, end: int, want: int) -> int:
        """First free block at or after ``start``, preferring the start of a run of ``want``."""
        free = ~bitmap[start:end]
        if not free.any():
            return -1
        first = int(free.argmax()) + start
        if want <= 1:
            return first
        # prefer a run long enough for the whole request (mballoc's goal/best-fit, simplified)
        idx = first
        while idx < end:
            if bitmap[idx]:
                idx += 1
                continue
            run_end = idx
            while run_end < end and run_end - idx < want and not bitmap[run_end]:
                run_end += 1
            if run_end - idx >= want:
                return idx
            idx = run_end + 1
        return first

    def ext4_free_blocks(self, handle: Any, inode: Ext4InodeInfo, pblk: int, count: int) -> None:
        """ext4_free_blocks(): with a journal, freed blocks are reusable only after the freeing
        transaction commits (otherwise a crash could expose another file's data in them)."""
        sbi = self.EXT4_SB(inode.i_sb)
        self.WARN_ON(
            not sbi.block_bitmap[pblk : pblk + count].all(), "freeing free blocks", pblk=pblk, count=count
        )
        if sbi.s_journal is not None:
            self.jbd2_defer_free(handle, pblk, count)
        else:
            sbi.block_bitmap[pblk : pblk + count] = False
            sbi.s_freeclusters_counter += count
        self.ext4_mark_bitmaps_dirty(handle)

    def try_to_writeback_inodes_sb(self, sb: Any, reason: str) -> None:
        """Kick the flusher (does not wait)."""
        self.wb_start_background_writeback(reason)

    def ext4_count_free_clusters(self, sb: Any) -> int:
        return int(self.EXT4_SB(sb).s_freeclusters_counter)
