"""ext4's fs/ext4/file.c and fsync.c: write_iter, read_iter, mmap, fsync."""

from __future__ import annotations

from simkernel.fs.ext4.ext4 import Ext4InodeInfo
from simkernel.fs.vfs import EFBIG, File, FileOperations, VmOperations
from simkernel.kernel.base import KernelBase
from simkernel.kernel.sched import KGen
from simkernel.lib.iov_iter import IovIter
from simkernel.mm.memory import VmArea, VmFault

#: s_maxbytes of an extent-mapped file with 4 KiB blocks is 16 TiB; the model caps writes far lower
EXT4_MAX_FILE = 1 << 32


class Ext4File(KernelBase):
    def ext4_file_operations(self) -> FileOperations:
        """ext4_file_operations"""
        return FileOperations(
            write_iter=self.ext4_file_write_iter,
            read_iter=self.ext4_file_read_iter,
            mmap=self.ext4_file_mmap,
            fsync=self.ext4_sync_file,
            fallocate=self.ext4_fallocate,
            setattr=self.ext4_setattr_size,
        )

    def ext4_file_vm_ops(self) -> VmOperations:
        """ext4_file_vm_ops"""
        return VmOperations(fault=self.filemap_fault, page_mkwrite=self.ext4_vm_page_mkwrite)

    def ext4_vm_page_mkwrite(self, vmf: VmFault) -> KGen:
        if self.config.write_path == "iomap":
            return (yield from self.ext4_iomap_page_mkwrite(vmf))
        return (yield from self.ext4_page_mkwrite(vmf))

    def inode_lock(self, inode: Ext4InodeInfo) -> KGen:
        """inode_lock(): down_write(&inode->i_rwsem)."""
        yield from self.down_write(inode.i_rwsem)

    def inode_unlock(self, inode: Ext4InodeInfo) -> None:
        self.up_write(inode.i_rwsem)

    def ext4_file_write_iter(self, file: File, pos: int, i: IovIter) -> KGen:
        """ext4_file_write_iter() -> ext4_buffered_write_iter()"""
        inode: Ext4InodeInfo = file.f_inode  # type: ignore[assignment]
        yield from self.inode_lock(inode)
        try:
            if pos + i.count > EXT4_MAX_FILE:
                return -EFBIG
            if i.count == 0:
                return 0
            if self.config.write_path == "iomap":
                isize = inode.i_size
                bs = inode.i_sb.s_blocksize
                if pos > isize and isize % bs:
                    # ext4_write_checks() / xfs_file_write_checks(): a write starting past EOF
                    # first zeroes the old EOF block's tail, which may hold mmap stores past
                    # EOF (the write-end zeroing of the buffer_head path, done up front)
                    end = min(pos, isize - isize % bs + bs)
                    ret = yield from self.ext4_iomap_zero_range(inode, isize, end - isize)
                    if ret < 0:
                        return ret
                return (yield from self.ext4_iomap_buffered_write(file, pos, i))
            return (yield from self.generic_perform_write(file, pos, i))
        finally:
            self.inode_unlock(inode)

    def ext4_file_read_iter(self, file: File, pos: int, count: int) -> KGen:
        """ext4_file_read_iter() -> generic_file_read_iter() (buffered reads take no inode lock)."""
        return (yield from self.filemap_read(file, pos, count))

    def ext4_file_mmap(self, file: File, vma: VmArea) -> KGen:
        """ext4_file_mmap(): called with mmap_lock held for write."""
        vma.vm_ops = self.ext4_file_vm_ops()
        return 0
        yield  # pragma: no cover - a generator, like every ->mmap

    def ext4_sync_file(self, file: File, start: int, end: int, datasync: bool) -> KGen:
        """ext4_sync_file(): write and wait for data, then make metadata durable, then flush."""
        inode: Ext4InodeInfo = file.f_inode  # type: ignore[assignment]
        sbi = inode.i_sb.s_fs_info
        needs_barrier = True
        if sbi.s_journal is None:
            # ext4_fsync_nojournal() -> generic_buffers_fsync_noflush()
            ret = yield from self.file_write_and_wait_range(file, start, end)
            if not ret:
                ret = yield from self.ext4_write_inode_sync(inode, datasync)
        else:
            ret = yield from self.file_write_and_wait_range(file, start, end)
            if not ret:
                ret, needs_barrier = yield from self.ext4_fsync_journal(inode, datasync)
        if needs_barrier:
            err = yield from self.blkdev_issue_flush()
            ret = ret or err
        err = self.file_check_and_advance_wb_err(file)
        return ret or err
