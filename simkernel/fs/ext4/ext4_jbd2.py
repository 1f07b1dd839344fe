"""ext4's journal wrappers (fs/ext4/ext4_jbd2.c, ext4_jbd2.h).

Without a journal, ext4 still hands out "handles": ``current->journal_info`` holds a reference count
disguised as a pointer (ext4_get_nojournal/ext4_put_nojournal), and stopping a handle nobody started
trips ``BUG_ON(ref_cnt == 0)``. With a journal the handle is a real jbd2 handle (fs/jbd2/).
"""

from __future__ import annotations

from typing import Any

from simkernel.fs.ext4.ext4 import Ext4InodeInfo, ext4_handle_valid
from simkernel.kernel.base import KernelBase
from simkernel.kernel.sched import KGen
from simkernel.report import inline

EXT4_NOJOURNAL_MAX_REF_COUNT = 4096


class Ext4Jbd2(KernelBase):
    def ext4_journal_current_handle(self) -> Any:
        """ext4_journal_current_handle(): current->journal_info."""
        return self.current.journal_info

    @inline
    def ext4_get_nojournal(self) -> int:
        """ext4_get_nojournal(): bump the reference count kept in current->journal_info."""
        task = self.current
        ref_cnt = task.journal_info or 0
        self.BUG_ON(ref_cnt >= EXT4_NOJOURNAL_MAX_REF_COUNT, "ref_cnt >= EXT4_NOJOURNAL_MAX_REF_COUNT")
        ref_cnt += 1
        task.journal_info = ref_cnt
        return ref_cnt

    @inline
    def ext4_put_nojournal(self, handle: Any) -> None:
        """ext4_put_nojournal(): drop one no-journal reference; a NULL handle is a kernel BUG."""
        ref_cnt = int(handle or 0)
        self.BUG_ON(ref_cnt == 0, "ref_cnt == 0")
        ref_cnt -= 1
        self.current.journal_info = ref_cnt or None

    def ext4_journal_start(
        self, inode: Ext4InodeInfo, h_type: str, nblocks: int = 1, *, reserved: bool = False
    ) -> KGen:
        """__ext4_journal_start(): returns a handle (a jbd2 handle or a no-journal reference)."""
        journal = inode.i_sb.s_fs_info.s_journal
        if journal is None:
            return self.ext4_get_nojournal()
        return (yield from self.jbd2_journal_start(journal, h_type, nblocks, reserved=reserved))

    def ext4_journal_start_sb(self, sb: Any, h_type: str, nblocks: int = 1) -> KGen:
        journal = sb.s_fs_info.s_journal
        if journal is None:
            return self.ext4_get_nojournal()
        return (yield from self.jbd2_journal_start(journal, h_type, nblocks))

    def _ext4_journal_stop(self, handle: Any) -> int:
        """__ext4_journal_stop()"""
        if not ext4_handle_valid(handle):
            self.ext4_put_nojournal(handle)
            return 0
        return self.jbd2_journal_stop(handle)

    def ext4_journal_stop(self, handle: Any) -> int:
        """ext4_journal_stop()"""
        return self._ext4_journal_stop(handle)

    def ext4_handle_sync(self, handle: Any) -> None:
        if ext4_handle_valid(handle):
            handle.h_sync = True

    def ext4_journal_get_write_access(self, handle: Any, what: Any) -> int:
        """Declares the metadata ``what`` (an inode, "bitmaps", "dir") changes in this handle."""
        if ext4_handle_valid(handle):
            self.jbd2_journal_dirty(handle, what)
        return 0

    def ext4_mark_inode_dirty(self, handle: Any, inode: Ext4InodeInfo) -> int:
        """ext4_mark_inode_dirty(): the raw inode must be written (and journalled) again."""
        sbi = inode.i_sb.s_fs_info
        sbi.dirty_inodes.add(inode.i_ino)
        inode.i_dirty_meta = True
        if ext4_handle_valid(handle):
            self.jbd2_journal_dirty(handle, inode)
            inode.i_sync_tid = handle.h_transaction.t_tid
            inode.i_datasync_tid = handle.h_transaction.t_tid
        return 0

    def ext4_mark_bitmaps_dirty(self, handle: Any) -> None:
        """The block/inode bitmaps, group descriptor and superblock counters changed."""
        sbi = self.sb.s_fs_info
        sbi.dirty_bitmaps = True
        if ext4_handle_valid(handle):
            self.jbd2_journal_dirty(handle, "bitmaps")
