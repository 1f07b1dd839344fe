"""The oracle's independent ext4 image reader: image bytes in, files and metadata out.

It decodes with the shared layouts of :mod:`simkernel.fs.ext4.ondisk` (one layout declaration for
writer and reader) but shares no logic with the model: it follows group descriptors, so it also reads
images made by a real ``mkfs.ext4`` (several groups, 32/64-byte descriptors, flex_bg, metadata_csum
whose checksums it ignores, htree directories read linearly, inline files and directories).

Every malformed structure raises :class:`~simkernel.errors.CorruptImageError` whose ``where`` names the
structure (``"inode 12 extent tree"``, ``"directory 2 block 0"``...); a name that is simply absent
raises ``FileNotFoundError``.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

import numpy as np

from simkernel.errors import CorruptImageError
from simkernel.fs.ext4.ondisk import (
    EXT4_BG_BLOCK_UNINIT,
    EXT4_BG_INODE_UNINIT,
    EXT4_EXTENTS_FL,
    EXT4_FEATURE_COMPAT_HAS_JOURNAL,
    EXT4_FEATURE_COMPAT_SPARSE_SUPER2,
    EXT4_FEATURE_INCOMPAT_INLINE_DATA,
    EXT4_FEATURE_RO_COMPAT_GDT_CSUM,
    EXT4_FEATURE_RO_COMPAT_METADATA_CSUM,
    EXT4_FEATURE_RO_COMPAT_SPARSE_SUPER,
    EXT4_FT_DIR,
    EXT4_HUGE_FILE_FL,
    EXT4_INLINE_DOTDOT_SIZE,
    EXT4_MIN_INLINE_DATA_SIZE,
    EXT4_ROOT_INO,
    EXT4_SUPERBLOCK_OFFSET,
    EXT4_SUPERBLOCK_SIZE,
    DirEntry,
    Extent,
    GroupDesc,
    JournalSuperBlock,
    RawInode,
    SuperBlockInfo,
    decode_bitmap,
    decode_dir_block,
    decode_extent_tree,
    decode_group_desc,
    decode_inode,
    decode_journal_superblock,
    decode_superblock,
)

#: read_file refuses files larger than this (a flipped i_size_high byte would ask for terabytes)
DEFAULT_MAX_READ = 1 << 28


@dataclass(frozen=True)
class MappingRun:
    """A maximal run of file blocks with one fate: mapped (``pblk``), unwritten, or a hole (``pblk None``)."""

    lblk: int
    len: int
    pblk: int | None
    unwritten: bool = False


@dataclass(frozen=True)
class FileInfo:
    """A regular file in the root directory as the image describes it."""

    name: str
    ino: int
    size: int
    mode: int
    flags: int
    inline: bool
    extents: list[Extent]
    runs: list[MappingRun]
    links_count: int
    blocks: int


def _name_bytes(name: str | bytes) -> bytes:
    return name if isinstance(name, bytes) else name.encode("utf-8", "surrogateescape")


def _name_str(name: bytes) -> str:
    return name.decode("utf-8", "surrogateescape")


def _group_has_super(group: int, sb: SuperBlockInfo) -> bool:
    """``ext2fs_bg_has_super``: which groups carry a superblock + GDT backup."""
    if group == 0:
        return True
    if sb.has_compat(EXT4_FEATURE_COMPAT_SPARSE_SUPER2):
        return group in sb.backup_bgs
    if group <= 1 or not sb.has_ro_compat(EXT4_FEATURE_RO_COMPAT_SPARSE_SUPER):
        return True
    if not group & 1:
        return False
    for base in (3, 5, 7):
        n = base
        while n < group:
            n *= base
        if n == group:
            return True
    return False


class Ext4Image:
    """Read-only view of an ext4 image (``struct ext4_sb_info`` + ``ext4_iget`` + readdir, in Python)."""

    def __init__(self, data: bytes | bytearray | memoryview | np.ndarray, *, copy: bool = True) -> None:
        """``copy=False`` reads ``data`` in place instead of copying it (a whole image per reader):
        the caller promises not to change ``data`` while this reader is in use. Blocks are then
        returned as read-only memoryviews into it."""
        buf: bytes | memoryview
        if not copy:
            view = (
                np.ascontiguousarray(data, dtype=np.uint8).data
                if isinstance(data, np.ndarray)
                else memoryview(data)
            )
            buf = view.cast("B").toreadonly()
        elif isinstance(data, np.ndarray):
            buf = np.ascontiguousarray(data, dtype=np.uint8).tobytes()
        else:
            buf = bytes(data)
        self._buf = buf
        if len(buf) < EXT4_SUPERBLOCK_OFFSET + EXT4_SUPERBLOCK_SIZE:
            raise CorruptImageError(f"image of {len(buf)} bytes has no superblock", where="superblock")
        sb = decode_superblock(buf[EXT4_SUPERBLOCK_OFFSET : EXT4_SUPERBLOCK_OFFSET + EXT4_SUPERBLOCK_SIZE])
        self.superblock: SuperBlockInfo = sb
        self.block_size: int = sb.block_size
        need = sb.blocks_count * sb.block_size
        if len(buf) < need:
            raise CorruptImageError(
                f"image is {len(buf)} bytes but the superblock says {sb.blocks_count} x {sb.block_size}",
                where="image size",
            )
        self._itable_blocks = -(-sb.inodes_per_group * sb.inode_size // sb.block_size)
        self._csum_groups = sb.has_ro_compat(
            EXT4_FEATURE_RO_COMPAT_GDT_CSUM | EXT4_FEATURE_RO_COMPAT_METADATA_CSUM
        )
        self.groups: list[GroupDesc] = self._read_group_descs()

    @classmethod
    def from_path(cls, path: str | os.PathLike[str]) -> Ext4Image:
        """Read an image file (convenience: everything else works on bytes)."""
        with open(path, "rb") as f:
            return cls(f.read())

    # ---- blocks and groups ------------------------------------------------------------------------

    def read_block(self, blk: int, *, where: str | None = None) -> bytes | memoryview:
        """Block ``blk`` of the filesystem (``sb_bread``); out-of-range numbers are corruption."""
        if not 0 <= blk < self.superblock.blocks_count:
            raise CorruptImageError(
                f"block {blk} outside the filesystem (0..{self.superblock.blocks_count - 1})",
                where=where or f"block {blk}",
            )
        bs = self.block_size
        return self._buf[blk * bs : (blk + 1) * bs]

    def _read_group_descs(self) -> list[GroupDesc]:
        sb = self.superblock
        ngroups = sb.group_count
        gdt_start = (sb.first_data_block + 1) * self.block_size
        gdt_len = ngroups * sb.desc_size
        if gdt_start + gdt_len > sb.blocks_count * self.block_size:
            raise CorruptImageError(
                f"{ngroups} group descriptors run past the filesystem", where="group descriptors"
            )
        out = []
        for g in range(ngroups):
            where = f"group descriptor {g}"
            off = gdt_start + g * sb.desc_size
            gd = decode_group_desc(self._buf[off : off + sb.desc_size], desc_size=sb.desc_size, where=where)
            for what, blk, n in (
                ("block bitmap", gd.block_bitmap, 1),
                ("inode bitmap", gd.inode_bitmap, 1),
                ("inode table", gd.inode_table, self._itable_blocks),
            ):
                if not sb.first_data_block <= blk or blk + n > sb.blocks_count:
                    raise CorruptImageError(
                        f"{what} at block {blk} (+{n}) outside the filesystem", where=where
                    )
            if gd.free_inodes_count > sb.inodes_per_group or gd.free_blocks_count > sb.blocks_per_group:
                raise CorruptImageError(
                    f"free counts ({gd.free_blocks_count} blocks, {gd.free_inodes_count} inodes) too big",
                    where=where,
                )
            out.append(gd)
        return out

    def _group_range(self, g: int) -> tuple[int, int]:
        sb = self.superblock
        start = sb.first_data_block + g * sb.blocks_per_group
        return start, min(sb.blocks_per_group, sb.blocks_count - start)

    def _uninit_block_bitmap(self, g: int) -> np.ndarray:
        """What ``ext4_init_block_bitmap`` computes for a BLOCK_UNINIT group: only metadata in use."""
        sb = self.superblock
        start, n = self._group_range(g)
        used = np.zeros(n, dtype=bool)
        if _group_has_super(g, sb):
            gdt_blocks = -(-sb.group_count * sb.desc_size // self.block_size)
            first = start if not (g == 0 and sb.first_data_block == 0) else 0
            used[first - start : first - start + 1 + gdt_blocks + sb.reserved_gdt_blocks] = True
        for gd in self.groups:
            for blk, cnt in (
                (gd.block_bitmap, 1),
                (gd.inode_bitmap, 1),
                (gd.inode_table, self._itable_blocks),
            ):
                lo, hi = max(blk, start), min(blk + cnt, start + n)
                if lo < hi:
                    used[lo - start : hi - start] = True
        return used

    def block_bitmap(self) -> np.ndarray:
        """In-use flag of every block (index = block number; blocks before s_first_data_block are used)."""
        sb = self.superblock
        out = np.ones(sb.blocks_count, dtype=bool)
        for g, gd in enumerate(self.groups):
            start, n = self._group_range(g)
            if self._csum_groups and gd.flags & EXT4_BG_BLOCK_UNINIT:
                out[start : start + n] = self._uninit_block_bitmap(g)
            else:
                block = self.read_block(gd.block_bitmap, where=f"block bitmap of group {g}")
                out[start : start + n] = decode_bitmap(block, n)
        return out

    def inode_bitmap(self) -> np.ndarray:
        """In-use flag of every inode (index = inode number - 1)."""
        sb = self.superblock
        ipg = sb.inodes_per_group
        out = np.zeros(sb.inodes_count, dtype=bool)
        for g, gd in enumerate(self.groups):
            if self._csum_groups and gd.flags & EXT4_BG_INODE_UNINIT:
                continue
            block = self.read_block(gd.inode_bitmap, where=f"inode bitmap of group {g}")
            n = min(ipg, sb.inodes_count - g * ipg)
            out[g * ipg : g * ipg + n] = decode_bitmap(block, n)
        return out

    # ---- inodes -----------------------------------------------------------------------------------

    def inode(self, ino: int) -> RawInode:
        """Decode inode ``ino`` (``__ext4_get_inode_loc``: group, index, inode table block)."""
        sb = self.superblock
        if not 1 <= ino <= sb.inodes_count:
            raise CorruptImageError(f"inode number {ino} outside 1..{sb.inodes_count}", where=f"inode {ino}")
        g, idx = divmod(ino - 1, sb.inodes_per_group)
        off = self.groups[g].inode_table * self.block_size + idx * sb.inode_size
        return decode_inode(self._buf[off : off + sb.inode_size], ino)

    def _check_data_inode(self, ino: int, inode: RawInode) -> None:
        if inode.has_inline_data and not self.superblock.has_incompat(EXT4_FEATURE_INCOMPAT_INLINE_DATA):
            raise CorruptImageError("INLINE_DATA_FL set but the fs lacks inline_data", where=f"inode {ino}")
        if inode.has_inline_data and inode.has_extents:
            raise CorruptImageError("both INLINE_DATA_FL and EXTENTS_FL set", where=f"inode {ino}")
        if inode.has_inline_data and inode.inline_value is None:
            raise CorruptImageError("INLINE_DATA_FL set but no system.data xattr", where=f"inode {ino}")

    def extent_tree(self, ino: int, inode: RawInode | None = None) -> tuple[list[Extent], list[int]]:
        """Leaf extents and tree blocks of an extent-mapped inode."""
        inode = inode if inode is not None else self.inode(ino)
        if not inode.flags & EXT4_EXTENTS_FL:
            raise CorruptImageError("inode is not extent-mapped", where=f"inode {ino}")
        where = f"inode {ino} extent tree"
        return decode_extent_tree(
            inode.i_block,
            lambda b: self.read_block(b, where=where),
            self.block_size,
            where=where,
            max_block=self.superblock.blocks_count,
        )

    def _blockmap_extents(self, ino: int, inode: RawInode) -> list[Extent]:
        """Runs of an indirect-block-mapped inode (``ext4_ind_map_blocks``), merged into extents."""
        where = f"inode {ino} block map"
        bs, nblocks = self.block_size, self.superblock.blocks_count
        apb = bs // 4
        ptrs = struct.unpack("<15I", inode.i_block)
        pairs: list[tuple[int, int]] = []  # (lblk, pblk)
        budget = [nblocks]  # total pointers visited: a garbage indirect tree cannot loop forever

        def check(pblk: int) -> None:
            if not 1 <= pblk < nblocks:
                raise CorruptImageError(f"block pointer {pblk} outside the filesystem", where=where)
            budget[0] -= 1
            if budget[0] < 0:
                raise CorruptImageError(
                    "block map references more blocks than the filesystem has", where=where
                )

        def walk(pblk: int, level: int, lblk: int) -> None:
            check(pblk)
            if level == 0:
                pairs.append((lblk, pblk))
                return
            child_span = apb ** (level - 1)
            for k, child in enumerate(struct.unpack(f"<{apb}I", self.read_block(pblk, where=where))):
                if child:
                    walk(child, level - 1, lblk + k * child_span)

        for k in range(12):
            if ptrs[k]:
                walk(ptrs[k], 0, k)
        base = 12
        for level in (1, 2, 3):
            if ptrs[11 + level]:
                walk(ptrs[11 + level], level, base)
            base += apb**level
        out: list[Extent] = []
        for lblk, pblk in pairs:
            if out and out[-1].end == lblk and out[-1].pblk + out[-1].len == pblk:
                prev = out[-1]
                out[-1] = Extent(prev.lblk, prev.len + 1, prev.pblk, False)
            else:
                out.append(Extent(lblk, 1, pblk, False))
        return out

    def extents(self, ino: int, inode: RawInode | None = None) -> list[Extent]:
        """Block mapping of a non-inline inode as extents (extent tree or indirect map)."""
        inode = inode if inode is not None else self.inode(ino)
        self._check_data_inode(ino, inode)
        if inode.has_inline_data:
            return []
        if inode.has_extents:
            return self.extent_tree(ino, inode)[0]
        return self._blockmap_extents(ino, inode)

    def mapping(self, ino: int, inode: RawInode | None = None) -> list[MappingRun]:
        """Maximal runs over blocks ``[0, max(EOF block, last mapped block + 1))``; holes have pblk None."""
        inode = inode if inode is not None else self.inode(ino)
        return self._runs(inode, self.extents(ino, inode))

    def _runs(self, inode: RawInode, extents: list[Extent]) -> list[MappingRun]:
        if inode.has_inline_data:
            return []
        bs = self.block_size
        end = -(-inode.size // bs)
        if extents:
            end = max(end, extents[-1].end)
        runs: list[MappingRun] = []

        def add(run: MappingRun) -> None:
            if runs:
                p = runs[-1]
                joinable = p.unwritten == run.unwritten and (
                    (p.pblk is None and run.pblk is None)
                    or (p.pblk is not None and run.pblk is not None and p.pblk + p.len == run.pblk)
                )
                if joinable and p.lblk + p.len == run.lblk:
                    runs[-1] = MappingRun(p.lblk, p.len + run.len, p.pblk, p.unwritten)
                    return
            runs.append(run)

        pos = 0
        for e in extents:
            if e.lblk > pos:
                add(MappingRun(pos, e.lblk - pos, None))
            add(MappingRun(e.lblk, e.len, e.pblk, e.unwritten))
            pos = e.end
        if end > pos:
            add(MappingRun(pos, end - pos, None))
        return runs

    def read_inode_data(
        self, ino: int, inode: RawInode | None = None, *, max_size: int = DEFAULT_MAX_READ
    ) -> bytes:
        """The ``i_size`` bytes a read(2) of the inode returns: holes and unwritten extents read as zeros."""
        inode = inode if inode is not None else self.inode(ino)
        self._check_data_inode(ino, inode)
        size = inode.size
        if size > max_size:
            raise CorruptImageError(f"i_size {size} exceeds the read limit {max_size}", where=f"inode {ino}")
        if inode.has_inline_data:
            # ext4_read_inline_data: i_block holds bytes [0, 60), system.data the rest
            data = inode.i_block[:EXT4_MIN_INLINE_DATA_SIZE] + (inode.inline_value or b"")
            return data[:size].ljust(size, b"\0")
        out = bytearray(size)
        bs = self.block_size
        for e in self.extents(ino, inode):
            start = e.lblk * bs
            if e.unwritten or start >= size:
                continue
            n = min(e.len * bs, size - start)
            src = e.pblk * bs
            out[start : start + n] = self._buf[src : src + n]
        return bytes(out)

    # ---- directories ------------------------------------------------------------------------------

    def dir_entries(self, ino: int = EXT4_ROOT_INO) -> list[DirEntry]:
        """Live entries of a directory, read linearly (htree index blocks look like empty dirents)."""
        inode = self.inode(ino)
        where = f"directory {ino}"
        if not inode.is_dir:
            raise CorruptImageError(f"mode 0o{inode.mode:o} is not a directory", where=where)
        self._check_data_inode(ino, inode)
        if inode.has_inline_data:
            # ext4 inline dir: i_block[0:4] = parent, i_block[4:60] and system.data are dirent regions
            (parent,) = struct.unpack_from("<I", inode.i_block)
            out = [DirEntry(ino, b".", EXT4_FT_DIR), DirEntry(parent, b"..", EXT4_FT_DIR)]
            out += decode_dir_block(
                inode.i_block[EXT4_INLINE_DOTDOT_SIZE:60], where=f"{where} inline i_block"
            )
            if inode.inline_value:
                out += decode_dir_block(inode.inline_value, where=f"{where} inline system.data")
            return out
        bs = self.block_size
        if inode.size % bs or inode.size // bs > self.superblock.blocks_count:
            raise CorruptImageError(
                f"i_size {inode.size} is not a plausible block directory size", where=where
            )
        nblocks = inode.size // bs
        out = []
        for run in self._runs(inode, self.extents(ino, inode)):
            if run.lblk >= nblocks:
                break
            if run.pblk is None or run.unwritten:
                raise CorruptImageError(f"hole or unwritten extent at block {run.lblk}", where=where)
            for k in range(min(run.len, nblocks - run.lblk)):
                block = self.read_block(run.pblk + k, where=f"{where} block {run.lblk + k}")
                out += decode_dir_block(block, where=f"{where} block {run.lblk + k}")
        return out

    def lookup(self, name: str | bytes, dir_ino: int = EXT4_ROOT_INO) -> int:
        """Inode number of ``name`` in directory ``dir_ino`` (``ext4_lookup``); FileNotFoundError if none."""
        want = _name_bytes(name)
        for e in self.dir_entries(dir_ino):
            if e.name == want:
                if not 1 <= e.ino <= self.superblock.inodes_count:
                    raise CorruptImageError(
                        f"entry {want!r} points to inode {e.ino}", where=f"directory {dir_ino} entry {want!r}"
                    )
                return e.ino
        raise FileNotFoundError(f"{_name_str(want)!r} not in directory {dir_ino}")

    def _file_info(self, name: bytes, ino: int, inode: RawInode) -> FileInfo:
        extents = self.extents(ino, inode)
        return FileInfo(
            name=_name_str(name),
            ino=ino,
            size=inode.size,
            mode=inode.mode,
            flags=inode.flags,
            inline=inode.has_inline_data,
            extents=extents,
            runs=self._runs(inode, extents),
            links_count=inode.links_count,
            blocks=inode.blocks,
        )

    def files(self) -> list[FileInfo]:
        """Regular files in the root directory, in directory order."""
        out = []
        for e in self.dir_entries(EXT4_ROOT_INO):
            if e.name in (b".", b".."):
                continue
            if not 1 <= e.ino <= self.superblock.inodes_count:
                raise CorruptImageError(f"entry {e.name!r} points to inode {e.ino}", where="directory 2")
            inode = self.inode(e.ino)
            if inode.is_reg:
                out.append(self._file_info(e.name, e.ino, inode))
        return out

    def file_info(self, name: str | bytes) -> FileInfo:
        """The :class:`FileInfo` of one root-directory regular file."""
        ino = self.lookup(name)
        inode = self.inode(ino)
        if not inode.is_reg:
            raise IsADirectoryError(f"{name!r} is not a regular file")
        return self._file_info(_name_bytes(name), ino, inode)

    def read_file(self, name: str | bytes, *, max_size: int = DEFAULT_MAX_READ) -> bytes:
        """Contents of a root-directory regular file (``size`` bytes; holes/unwritten read as zeros)."""
        ino = self.lookup(name)
        inode = self.inode(ino)
        if not inode.is_reg:
            raise IsADirectoryError(f"{name!r} is not a regular file")
        return self.read_inode_data(ino, inode, max_size=max_size)

    # ---- journal ----------------------------------------------------------------------------------

    def journal_superblock(self) -> JournalSuperBlock | None:
        """The jbd2 superblock of the internal journal, or None without has_journal."""
        sb = self.superblock
        if not sb.has_compat(EXT4_FEATURE_COMPAT_HAS_JOURNAL):
            return None
        ino = sb.journal_inum
        if not ino:
            raise CorruptImageError("has_journal without s_journal_inum", where="superblock")
        inode = self.inode(ino)
        runs = self.extents(ino, inode)
        if not runs or runs[0].lblk != 0 or runs[0].unwritten:
            raise CorruptImageError("journal block 0 is not mapped", where=f"journal inode {ino}")
        return decode_journal_superblock(self.read_block(runs[0].pblk, where="journal superblock"))

    def i_blocks_bytes(self, inode: RawInode) -> int:
        """Bytes that ``i_blocks`` accounts for (512-byte units, fs blocks with HUGE_FILE_FL)."""
        unit = self.block_size if inode.flags & EXT4_HUGE_FILE_FL else 512
        return inode.blocks * unit
