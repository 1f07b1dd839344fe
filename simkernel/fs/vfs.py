"""VFS structures (include/linux/fs.h): struct inode, address_space, file, errseq_t, operation tables.

Plain data. Behaviour lives in the kernel mixins (mm/filemap.py, fs/read_write.py, fs/ext4/...).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from simkernel.locking.rwsem import RwSemaphore

if TYPE_CHECKING:
    from simkernel.mm.folio import Folio

S_IFMT = 0o170000
S_IFREG = 0o100000
S_IFDIR = 0o040000

# address_space flags (AS_EIO / AS_ENOSPC: legacy per-mapping error bits)
AS_EIO = 1
AS_ENOSPC = 2

# errno values used by the model (Linux numbering)
EPERM, ENOENT, EIO, E2BIG, EBADF, EAGAIN, ENOMEM, EFAULT, EBUSY, EEXIST = 1, 2, 5, 7, 9, 11, 12, 14, 16, 17
EINVAL, EFBIG, ENOSPC, EROFS, ENODATA, EOPNOTSUPP, EDQUOT, EUCLEAN = 22, 27, 28, 30, 61, 95, 122, 117
ERANGE = 34
EFSCORRUPTED = EUCLEAN
ERRNO_NAMES = {
    EPERM: "EPERM",
    ENOENT: "ENOENT",
    EIO: "EIO",
    EBADF: "EBADF",
    EAGAIN: "EAGAIN",
    ENOMEM: "ENOMEM",
    EFAULT: "EFAULT",
    EBUSY: "EBUSY",
    EEXIST: "EEXIST",
    EINVAL: "EINVAL",
    EFBIG: "EFBIG",
    ENOSPC: "ENOSPC",
    EROFS: "EROFS",
    ERANGE: "ERANGE",
    ENODATA: "ENODATA",
    EOPNOTSUPP: "EOPNOTSUPP",
    EDQUOT: "EDQUOT",
    EUCLEAN: "EFSCORRUPTED",
}


# errseq_t layout (lib/errseq.c): errno in the low bits, a SEEN flag, a counter above it
MAX_ERRNO = 4095
ERRSEQ_SEEN = 1 << 12
ERRSEQ_CTR_INC = 1 << 13


class ErrSeq:
    """errseq_t (lib/errseq.c), bit for bit: the latest writeback error, a SEEN flag and a counter.

    A file samples the mapping's errseq at open; fsync reports an error only if one was recorded
    since that sample, and marks it seen, so every open file sees each error once.
    """

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def set(self, err: int) -> None:
        """errseq_set(): record a new error (negative errno); bump the counter if the old one was seen."""
        if not err:
            return
        old = self.value
        new = (old & ~(MAX_ERRNO | ERRSEQ_SEEN)) | (-err & MAX_ERRNO)
        if old & ERRSEQ_SEEN:
            new += ERRSEQ_CTR_INC
        self.value = new

    def sample(self) -> int:
        """errseq_sample(): if nobody has seen the current error yet, the sampler can be the first."""
        old = self.value
        return old if old & ERRSEQ_SEEN else 0

    def check(self, since: int) -> int:
        """errseq_check(): the error recorded since ``since`` (negative errno) or 0."""
        cur = self.value
        if (cur | ERRSEQ_SEEN) == (since | ERRSEQ_SEEN):
            return 0
        return -(cur & MAX_ERRNO)

    def check_and_advance(self, since: int) -> tuple[int, int]:
        """errseq_check_and_advance(): (error to report or 0, new cursor); marks the error seen."""
        old = self.value
        if old == since:
            return 0, since
        new = old | ERRSEQ_SEEN
        self.value = new
        return -(new & MAX_ERRNO), new


@dataclass
class AddressSpaceOperations:
    """struct address_space_operations: bound kernel methods chosen per inode (ext4_set_aops)."""

    name: str
    read_folio: Callable[..., Any]
    writepages: Callable[..., Any]
    dirty_folio: Callable[..., Any]
    write_begin: Callable[..., Any] | None = None
    write_end: Callable[..., Any] | None = None
    release_folio: Callable[..., Any] | None = None
    invalidate_folio: Callable[..., Any] | None = None


@dataclass
class VmOperations:
    """struct vm_operations_struct."""

    fault: Callable[..., Any]
    page_mkwrite: Callable[..., Any]


@dataclass
class FileOperations:
    """struct file_operations (the subset the model's syscalls use)."""

    write_iter: Callable[..., Any]
    read_iter: Callable[..., Any]
    mmap: Callable[..., Any]
    fsync: Callable[..., Any]
    fallocate: Callable[..., Any]
    setattr: Callable[..., Any]


class AddressSpace:
    """struct address_space: the page cache of one inode."""

    __slots__ = (
        "a_ops",
        "flags",
        "host",
        "i_mmap_writable",
        "i_pages",
        "invalidate_lock",
        "wb_err",
        "writeback_index",
    )

    def __init__(self, host: Inode) -> None:
        self.host = host
        #: index -> folio
        self.i_pages: dict[int, Folio] = {}
        self.a_ops: AddressSpaceOperations | None = None
        self.invalidate_lock = RwSemaphore("mapping.invalidate_lock", f"invalidate_lock#{host.i_ino}")
        self.wb_err = ErrSeq()
        self.flags = 0
        self.writeback_index = 0
        #: number of shared writable mappings (mapping_writably_mapped)
        self.i_mmap_writable = 0

    @property
    def nrpages(self) -> int:
        return len(self.i_pages)

    def dirty_indices(self) -> list[int]:
        """Indices of dirty folios, ascending."""
        return sorted(i for i, f in self.i_pages.items() if f.dirty)

    def tagged_dirty_indices(self) -> list[int]:
        """Indices of folios tagged PAGECACHE_TAG_DIRTY, ascending: the dirty ones and those being
        cleaned for writeback right now (what tag_pages_for_writeback() and mapping_tagged() see)."""
        return sorted(i for i, f in self.i_pages.items() if f.dirty or f.tagged)


class Inode:
    """struct inode (the VFS part). Filesystems subclass it (ext4_inode_info)."""

    def __init__(self, sb: Any, ino: int, mode: int) -> None:
        self.i_sb = sb
        self.i_ino = ino
        self.i_mode = mode
        self.i_size = 0
        self.i_nlink = 1
        self.i_blkbits = sb.s_blocksize_bits
        self.i_rwsem = RwSemaphore("&sb->s_type->i_mutex_key", f"i_rwsem#{ino}")
        self.i_mapping = AddressSpace(self)
        #: inode dirty for writeback of its metadata (I_DIRTY_SYNC/DATASYNC)
        self.i_dirty_meta = False
        self.i_fop: FileOperations | None = None

    def __repr__(self) -> str:
        return f"<inode {self.i_ino} size={self.i_size}>"


class File:
    """struct file: one open file description (per user thread and file in the model)."""

    __slots__ = ("f_inode", "f_mapping", "f_wb_err", "name")

    def __init__(self, inode: Inode, name: str) -> None:
        self.f_inode = inode
        self.f_mapping = inode.i_mapping
        self.name = name
        #: file->f_wb_err = filemap_sample_wb_err(mapping) at open
        self.f_wb_err = inode.i_mapping.wb_err.sample()


class SuperBlock:
    """struct super_block (the VFS part); ``s_fs_info`` is the filesystem's own (ext4_sb_info)."""

    def __init__(self, blocksize: int, page_size: int) -> None:
        self.s_blocksize = blocksize
        self.s_blocksize_bits = blocksize.bit_length() - 1
        #: the model's PAGE_SIZE: one folio
        self.page_size = page_size
        self.s_fs_info: Any = None
        #: superblock-wide writeback error cursor (sb->s_wb_err, reported by syncfs)
        self.s_wb_err = ErrSeq()
        #: live inodes by number (the inode cache)
        self.s_inodes: dict[int, Inode] = {}
