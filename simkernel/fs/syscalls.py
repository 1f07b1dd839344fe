"""System call entry points of the VFS the model supports (fs/read_write.c, fs/open.c, fs/sync.c,
mm/mmap.c, mm/util.c).

User threads call these through the runner (user space, ``fuzz/runner.py``). One process: all threads
share the mm; each thread has its own open file description of each file (its own errseq cursor).
"""

from __future__ import annotations

from simkernel.fs.vfs import EBADF, EINVAL, File, Inode
from simkernel.kernel.base import KernelBase
from simkernel.kernel.sched import KGen
from simkernel.lib.iov_iter import IovIter
from simkernel.mm.page_writeback import LLONG_MAX

FALLOC_MODES = {
    "alloc": 0,
    "keep_size": 0x01,
    "punch_hole": 0x01 | 0x02,
    "zero_range": 0x10,
    "zero_range_keep_size": 0x10 | 0x01,
}


class Syscalls(KernelBase):
    def lookup(self, name: str) -> Inode | None:
        ino = self.sb.s_fs_info.root_entries.get(name)
        if ino is None or name in (".", "..", "lost+found"):
            return None
        return self.sb.s_inodes.get(ino)

    def do_filp_open(self, name: str) -> File | None:
        """open() of an existing file: a new open file description."""
        inode = self.lookup(name)
        return File(inode, name) if inode is not None else None

    def sys_creat(self, name: str) -> KGen:
        """open(O_CREAT|O_WRONLY|O_TRUNC): create, or truncate to 0; returns 0 or -errno."""
        inode = self.lookup(name)
        if inode is None:
            ret = yield from self.ext4_create(name)
            return ret if isinstance(ret, int) else 0
        return (yield from self.do_truncate(inode, 0))

    def do_truncate(self, inode: Inode, size: int) -> KGen:
        """do_truncate(): notify_change(ATTR_SIZE) under i_rwsem."""
        if size < 0:
            return -EINVAL
        yield from self.inode_lock(inode)
        try:
            assert inode.i_fop is not None
            return (yield from inode.i_fop.setattr(inode, size))
        finally:
            self.inode_unlock(inode)

    def sys_ftruncate(self, file: File | None, size: int) -> KGen:
        if file is None:
            return -EBADF
        return (yield from self.do_truncate(file.f_inode, size))

    def sys_pwrite64(self, file: File | None, pos: int, i: IovIter) -> KGen:
        """pwrite64() -> vfs_write() -> ->write_iter(); returns bytes written or -errno."""
        if file is None:
            return -EBADF
        if pos < 0:
            return -EINVAL
        assert file.f_inode.i_fop is not None
        return (yield from file.f_inode.i_fop.write_iter(file, pos, i))

    def sys_pread64(self, file: File | None, pos: int, count: int) -> KGen:
        """pread64() -> ->read_iter(); returns bytes or -errno."""
        if file is None:
            return -EBADF
        if pos < 0:
            return -EINVAL
        assert file.f_inode.i_fop is not None
        return (yield from file.f_inode.i_fop.read_iter(file, pos, count))

    def sys_fallocate(self, file: File | None, mode: str, offset: int, length: int) -> KGen:
        """fallocate() -> vfs_fallocate()"""
        if file is None:
            return -EBADF
        if mode not in FALLOC_MODES or offset < 0 or length <= 0:
            return -EINVAL
        assert file.f_inode.i_fop is not None
        return (yield from file.f_inode.i_fop.fallocate(file, FALLOC_MODES[mode], offset, length))

    def sys_fsync(self, file: File | None, datasync: bool) -> KGen:
        """fsync()/fdatasync() -> vfs_fsync_range(file, 0, LLONG_MAX)"""
        if file is None:
            return -EBADF
        assert file.f_inode.i_fop is not None
        return (yield from file.f_inode.i_fop.fsync(file, 0, LLONG_MAX, datasync))

    def sys_sync(self) -> KGen:
        """sync() -> ksys_sync(): write all data and wait, then sync_fs (journal commit or metadata
        writeback) and flush the device cache. sync(2) reports no errors."""
        yield from self.sync_inodes_sb()
        yield from self.ext4_sync_fs(True)
        return 0

    def sys_mmap(self, file: File | None) -> KGen:
        """mmap(MAP_SHARED, PROT_READ|PROT_WRITE) of the whole file."""
        if file is None:
            return -EBADF
        return (yield from self.vm_mmap(file))

    def sys_munmap(self, file: File | None) -> KGen:
        if file is None:
            return -EBADF
        return (yield from self.vm_munmap(file))

    def sys_mwrite(
        self, file: File | None, off: int, data: bytes, stores: list[tuple[int, int, bytes]] | None = None
    ) -> KGen:
        """A user store of ``data`` at file offset ``off`` through the file's shared mapping; the
        mapping is created first if the file is not mapped. Returns 0, or -EFAULT on SIGBUS/SIGSEGV."""
        if file is None:
            return -EBADF
        vma = self.mm.vmas.get(file.f_inode.i_ino)
        if vma is None or vma.vm_file is not file:
            if vma is None:
                err = yield from self.vm_mmap(file)
                if err:
                    return err
            vma = self.mm.vmas[file.f_inode.i_ino]
        return (yield from self.user_store(vma, off, data, stores))
