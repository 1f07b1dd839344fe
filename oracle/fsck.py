"""A small fsck in Python: is an ext4 image structurally consistent? (what ``e2fsck -fn`` checks,
for the structures the model writes).

``fsck(image)`` returns one :class:`FsckProblem` per inconsistency (``[]``: clean). Everything is
read with the oracle's reader (:mod:`oracle.image`) and the shared on-disk layouts; nothing is
repaired. Checked, in e2fsck's pass order:

* **superblock / journal** -- the filesystem state is VALID without ERROR_FS, and the journal
  needs no recovery (``INCOMPAT_RECOVER`` clear, journal superblock ``s_start == 0``): run
  :func:`oracle.jbd2_recovery.recover` first on a crash image;
* **inodes** (pass 1) -- an inode is *in use* if it is reserved (below ``s_first_ino``; e2fsck marks
  those used whatever they hold) or has ``i_links_count > 0``; a deleted inode with a mode must have
  a dtime. For every in-use inode that maps blocks: the extent tree (or indirect block map) is well
  formed and inside the filesystem (:func:`~simkernel.fs.ext4.ondisk.decode_extent_tree`: magic,
  depth, ``eh_entries <= eh_max``, sorted, non-overlapping, non-empty extents, index keys
  consistent with the children); ``i_blocks`` equals the mapped blocks plus the tree blocks (and
  an xattr block); a regular file has no *initialized* block past its size rounded up to a
  block, with e2fsck's tolerance of one block at a block-aligned size (``pass1.c``: a problem when
  ``i_size < last_init_lblock * block_size``, so block ``i_size / block_size`` may be initialized
  when ``i_size`` is aligned -- what inline-data conversion leaves on an empty file); unwritten
  extents past EOF are legal (``fallocate KEEP_SIZE``), and so are any blocks past EOF of an inode
  on the orphan list (a truncate recovery finishes); a block directory's size is its last
  mapped block + 1 in blocks; an inline-data inode has the ``system.data`` xattr, no EXTENTS flag,
  no blocks, and the filesystem has ``inline_data``;
* **block ownership** -- every block is owned by exactly one of: the group metadata (superblock +
  descriptor blocks, bitmaps, inode table), or one inode (its extents, extent-tree blocks, xattr
  block; the journal is inode 8's extents); a block claimed twice is reported once with its owners;
* **directories** (pass 2) -- every entry names an inode number in range that is in use, with the
  file type of its mode; ``.``/``..`` of block directories point at themselves/the parent;
* **link counts** (pass 4) -- every in-use non-reserved inode (and the root) is referenced by as
  many entries as ``i_links_count`` says, and at least once (else it is unattached);
* **bitmaps and counts** (pass 5) -- the block bitmap marks exactly the owned blocks and the inode
  bitmap exactly the in-use inodes (differences reported as runs: ``+N`` in use but free in the
  bitmap, ``-N`` marked but unused), padding bits past the group are set, every group
  descriptor's free block/inode counts equal the zero bits of its bitmaps and its directory count
  the in-use directories, and the superblock's free counts are the sums.

Each problem names the inode or block (``message`` is one line); ``kind`` is a stable short name
(``"block-bitmap"``, ``"double-block"``, ``"extent-tree"``, ``"extent-past-eof"``, ``"i-blocks"``,
``"inline-data"``, ``"dir-size"``, ``"dir-entry"``, ``"link-count"``, ``"unattached-inode"``,
``"inode-bitmap"``, ``"bitmap-padding"``, ``"free-count"``, ``"dir-count"``, ``"zero-dtime"``,
``"superblock"``, ``"journal"``, ``"unreadable"``) for grouping findings.

Cost: the inode table is scanned with numpy and only in-use inodes are decoded, so the model's
small images take well under 2 ms (see ``tests/test_fsck.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from oracle.image import Ext4Image, _group_has_super
from simkernel.errors import CorruptImageError
from simkernel.fs.ext4.ondisk import (
    EXT4_BG_BLOCK_UNINIT,
    EXT4_BG_INODE_UNINIT,
    EXT4_ERROR_FS,
    EXT4_EXTENTS_FL,
    EXT4_FEATURE_COMPAT_HAS_JOURNAL,
    EXT4_FEATURE_INCOMPAT_FILETYPE,
    EXT4_FEATURE_INCOMPAT_INLINE_DATA,
    EXT4_FEATURE_INCOMPAT_RECOVER,
    EXT4_FEATURE_RO_COMPAT_GDT_CSUM,
    EXT4_FEATURE_RO_COMPAT_METADATA_CSUM,
    EXT4_HUGE_FILE_FL,
    EXT4_INLINE_DATA_FL,
    EXT4_ROOT_INO,
    EXT4_VALID_FS,
    S_IFDIR,
    S_IFLNK,
    S_IFMT,
    S_IFREG,
    DirEntry,
    Extent,
    RawInode,
    bitmap_padding_ok,
    decode_dir_block,
    decode_inode,
    decode_journal_superblock,
    file_type_of_mode,
)

__all__ = ["FsckProblem", "FsckResult", "fsck", "fsck_result"]

#: at most this many problems of one kind are listed (a wiped bitmap would list thousands)
MAX_PER_KIND = 16

_META = -1  # owner id of group metadata in the ownership table

# the inode fields the scan reads for every inode (offsets in struct ext4_inode)
_INODE_SCAN = {
    "names": ["mode", "size_lo", "dtime", "links", "flags", "size_hi"],
    "formats": ["<u2", "<u4", "<u4", "<u2", "<u4", "<u4"],
    "offsets": [0x00, 0x04, 0x14, 0x1A, 0x20, 0x6C],
}


@dataclass(frozen=True)
class FsckProblem:
    """One inconsistency: ``kind`` (stable name, see the module docstring), a one-line ``message``
    naming the inode/block, and the inode and block concerned when there is one."""

    kind: str
    message: str
    ino: int | None = None
    block: int | None = None

    def __str__(self) -> str:
        return self.message


@dataclass
class FsckResult:
    """:func:`fsck_result`: the problems, plus what the check decoded on the way, for callers that
    also read files (decoding twice is most of the cost): every in-use inode that was decoded, the
    leaf extents of each inode that maps blocks (only when its map is well formed), and the
    entries of every directory."""

    problems: list[FsckProblem]
    inodes: dict[int, RawInode] = field(default_factory=dict)
    extents: dict[int, list[Extent]] = field(default_factory=dict)
    tree_blocks: dict[int, list[int]] = field(default_factory=dict)
    entries: dict[int, list[DirEntry]] = field(default_factory=dict)


def fsck(image: Ext4Image | bytes | bytearray | memoryview | np.ndarray) -> list[FsckProblem]:
    """Check ``image`` (see the module docstring); ``[]`` when it is clean. An image the reader
    cannot even open (bad superblock or group descriptors) gives one ``"unreadable"`` problem."""
    return fsck_result(image).problems


def fsck_result(image: Ext4Image | bytes | bytearray | memoryview | np.ndarray) -> FsckResult:
    """:func:`fsck` with the decoded inodes, extents and directory entries (see :class:`FsckResult`)."""
    try:
        img = image if isinstance(image, Ext4Image) else Ext4Image(image)
    except CorruptImageError as err:
        return FsckResult([FsckProblem("unreadable", f"{err.where or 'image'}: {err.message}")])
    checker = _Fsck(img)
    problems = checker.run()
    return FsckResult(problems, checker.inodes, checker.extents, checker.trees, checker.entries)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[start, end)`` runs of True in a boolean array."""
    if not mask.any():
        return []
    padded = np.zeros(mask.size + 2, dtype=np.int8)
    padded[1:-1] = mask
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[0::2], edges[1::2])]


def _span(a: int, b: int) -> str:
    return f"{a}" if b == a + 1 else f"{a}-{b - 1}"


class _Fsck:
    def __init__(self, img: Ext4Image) -> None:
        self.img = img
        self.sb = img.superblock
        self.bs = img.block_size
        self.problems: list[FsckProblem] = []
        self._counts: dict[str, int] = {}
        #: owned block ranges: (start, end, owner) with owner = inode number or _META
        self.ranges: list[tuple[int, int, int]] = []
        self.inodes: dict[int, RawInode] = {}
        self.extents: dict[int, list[Extent]] = {}
        self.trees: dict[int, list[int]] = {}
        self.entries: dict[int, list[DirEntry]] = {}

    def add(self, kind: str, message: str, ino: int | None = None, block: int | None = None) -> None:
        n = self._counts.get(kind, 0)
        self._counts[kind] = n + 1
        if n < MAX_PER_KIND:
            self.problems.append(FsckProblem(kind, message, ino, block))
        elif n == MAX_PER_KIND:
            self.problems.append(FsckProblem(kind, f"more {kind} problems not listed"))

    # -- driver ------------------------------------------------------------------------------------

    def run(self) -> list[FsckProblem]:
        self.check_superblock()
        self.orphans = self.orphan_list()
        self.metadata_ranges()
        used = self.scan_inodes()
        self.check_journal()
        try:
            self.check_directories(used)
        except CorruptImageError as err:  # pragma: no cover - decode errors are caught per directory
            self.add("dir-entry", f"{err.where}: {err.message}")
        self.check_blocks()
        self.check_inode_bitmap(used)
        return self.problems

    # -- superblock --------------------------------------------------------------------------------

    def check_superblock(self) -> None:
        sb = self.sb
        if not sb.state & EXT4_VALID_FS or sb.state & EXT4_ERROR_FS:
            what = "has errors (ERROR_FS)" if sb.state & EXT4_ERROR_FS else "was not cleanly unmounted"
            self.add("superblock", f"superblock: filesystem {what} (s_state 0x{sb.state:x})")
        if sb.has_incompat(EXT4_FEATURE_INCOMPAT_RECOVER):
            self.add("journal", "superblock: needs_recovery set: the journal was not replayed")

    def orphan_list(self) -> set[int]:
        """The inodes on the orphan list (``s_last_orphan``, then each one's ``i_dtime``): a
        truncate that committed its new size but not yet the freeing of the blocks past it.
        e2fsck's release_orphan_inodes() (and the kernel's ext4_orphan_cleanup() at mount) finish
        those truncates before anything is checked, so their blocks past i_size are no problem."""
        out: set[int] = set()
        ino = self.sb.last_orphan
        while ino and ino not in out and self.sb.first_ino <= ino <= self.sb.inodes_count:
            try:
                inode = self.img.inode(ino)
            except CorruptImageError:
                break
            if not inode.links_count:
                break
            out.add(ino)
            ino = inode.dtime
        return out

    def check_journal(self) -> None:
        sb = self.sb
        if not sb.has_compat(EXT4_FEATURE_COMPAT_HAS_JOURNAL):
            return
        ext = self.extents.get(sb.journal_inum)
        if not ext or ext[0].lblk != 0 or ext[0].unwritten:
            self.add(
                "journal", f"journal inode {sb.journal_inum}: journal block 0 is not mapped", sb.journal_inum
            )
            return
        try:
            jsb = decode_journal_superblock(self.img.read_block(ext[0].pblk), where="journal superblock")
        except CorruptImageError as err:
            self.add("journal", f"{err.where}: {err.message}")
            return
        if jsb.start:
            self.add("journal", f"journal superblock: s_start {jsb.start} != 0: the log was not replayed")

    def metadata_ranges(self) -> None:
        sb = self.sb
        bs = self.bs
        itb = -(-sb.inodes_per_group * sb.inode_size // bs)
        gdt_blocks = -(-sb.group_count * sb.desc_size // bs)
        for g, gd in enumerate(self.img.groups):
            start = sb.first_data_block + g * sb.blocks_per_group
            if _group_has_super(g, sb):
                self.ranges.append((start, start + 1 + gdt_blocks + sb.reserved_gdt_blocks, _META))
            self.ranges.append((gd.block_bitmap, gd.block_bitmap + 1, _META))
            self.ranges.append((gd.inode_bitmap, gd.inode_bitmap + 1, _META))
            self.ranges.append((gd.inode_table, gd.inode_table + itb, _META))

    # -- pass 1: inodes ----------------------------------------------------------------------------

    def scan_inodes(self) -> np.ndarray:
        """In-use flag per inode (index ino-1); checks every in-use inode's blocks."""
        sb = self.sb
        img = self.img
        ipg = sb.inodes_per_group
        isz = sb.inode_size
        dtype = np.dtype({**_INODE_SCAN, "itemsize": isz})  # type: ignore[call-overload]
        used = np.zeros(sb.inodes_count, dtype=bool)
        first_ino = sb.first_ino
        self.dirs: list[int] = []
        self.dir_groups = [0] * len(img.groups)
        bs = self.bs
        for g, gd in enumerate(img.groups):
            n = min(ipg, sb.inodes_count - g * ipg)
            if n <= 0:
                continue
            table = b"".join(img.read_block(gd.inode_table + k) for k in range(-(-n * isz // bs)))
            arr = np.frombuffer(table, dtype=dtype, count=n)
            inos = np.arange(g * ipg + 1, g * ipg + n + 1)
            links = arr["links"]
            in_use = (links > 0) | (inos < first_ino)
            used[g * ipg : g * ipg + n] = in_use
            zero_dtime = (links == 0) & (inos >= first_ino) & (arr["mode"] != 0) & (arr["dtime"] == 0)
            for k in np.flatnonzero(zero_dtime).tolist():
                self.add(
                    "zero-dtime", f"inode {g * ipg + k + 1}: deleted inode has zero dtime", g * ipg + k + 1
                )
            # only inodes that can own blocks or directory entries need decoding
            interesting = in_use & ((arr["mode"] != 0) | (links > 0))
            for k in np.flatnonzero(interesting).tolist():
                ino = g * ipg + k + 1
                raw = table[k * isz : (k + 1) * isz]
                try:
                    inode = decode_inode(raw, ino)
                except CorruptImageError as err:
                    self.add("unreadable", f"inode {ino}: {err.message}", ino)
                    continue
                self.inodes[ino] = inode
                if inode.mode & S_IFMT == S_IFDIR and (ino >= first_ino or ino == EXT4_ROOT_INO):
                    self.dirs.append(ino)
                    self.dir_groups[g] += 1
                self.check_inode(ino, inode)
        return used

    def check_inode(self, ino: int, inode: RawInode) -> None:
        fmt = inode.mode & S_IFMT
        sb = self.sb
        bs = self.bs
        if inode.flags & EXT4_INLINE_DATA_FL:
            self.check_inline(ino, inode)
            return
        if fmt not in (S_IFREG, S_IFDIR, S_IFLNK, 0):
            return  # device, fifo, socket: no blocks
        has_map = bool(inode.flags & EXT4_EXTENTS_FL) or any(inode.i_block)
        if fmt == S_IFLNK and not inode.flags & EXT4_EXTENTS_FL and inode.blocks == 0:
            return  # fast symlink: the target lives in i_block
        nblocks = 0
        extents: list[Extent] = []
        if has_map:
            try:
                if inode.flags & EXT4_EXTENTS_FL:
                    extents, tree = self.img.extent_tree(ino, inode)
                else:
                    extents, tree = self.img.extents(ino, inode), []
            except CorruptImageError as err:
                self.add("extent-tree", f"inode {ino}: {err.where}: {err.message}", ino)
                return
            self.extents[ino] = extents
            self.trees[ino] = tree
            for e in extents:
                self.ranges.append((e.pblk, e.pblk + e.len, ino))
                nblocks += e.len
            for b in tree:
                self.ranges.append((b, b + 1, ino))
            nblocks += len(tree)
        if inode.file_acl:
            if not sb.first_data_block <= inode.file_acl < sb.blocks_count:
                self.add(
                    "extent-tree", f"inode {ino}: xattr block {inode.file_acl} outside the filesystem", ino
                )
            else:
                self.ranges.append((inode.file_acl, inode.file_acl + 1, ino))
                nblocks += 1
        unit = bs if inode.flags & EXT4_HUGE_FILE_FL else 512
        expect = nblocks * (bs // unit)
        if inode.blocks != expect:
            self.add("i-blocks", f"inode {ino}: i_blocks is {inode.blocks}, should be {expect}", ino)
        if fmt == S_IFREG and ino not in self.orphans:
            eof = inode.size // bs + 1  # the first initialized block e2fsck calls past i_size
            for e in extents:
                if not e.unwritten and e.end > eof:
                    first = max(e.lblk, eof)
                    self.add(
                        "extent-past-eof",
                        f"inode {ino}: initialized block {first} (physical {e.pblk + first - e.lblk}) "
                        f"lies past i_size {inode.size}",
                        ino,
                        e.pblk + first - e.lblk,
                    )
                    break
        elif fmt == S_IFDIR:
            last = extents[-1].end if extents else 0
            if inode.size % bs or inode.size // bs != last:
                self.add(
                    "dir-size",
                    f"directory inode {ino}: i_size is {inode.size}, should be {last * bs}",
                    ino,
                )

    def check_inline(self, ino: int, inode: RawInode) -> None:
        if not self.sb.has_incompat(EXT4_FEATURE_INCOMPAT_INLINE_DATA):
            self.add("inline-data", f"inode {ino}: INLINE_DATA_FL set but the fs lacks inline_data", ino)
        if inode.flags & EXT4_EXTENTS_FL:
            self.add("inline-data", f"inode {ino}: both INLINE_DATA_FL and EXTENTS_FL set", ino)
        if inode.inline_value is None:
            self.add("inline-data", f"inode {ino}: INLINE_DATA_FL set but no system.data xattr", ino)
            return
        if inode.blocks:
            self.add("i-blocks", f"inode {ino}: i_blocks is {inode.blocks}, should be 0 (inline data)", ino)
        # A regular file's i_size may exceed its inline capacity: truncate-up of a file that has
        # no inline data yet (ext4_setattr() converts only an inode that already has some) and a
        # first small write make one, the rest reads as zeros (ext4_read_inline_folio() zeroes
        # past the inline data). e2fsck compares i_size with the inline data size for
        # directories only (check_blocks(): bad_size 7).

    # -- pass 2 + 4: directories and link counts ---------------------------------------------------

    def check_directories(self, used: np.ndarray) -> None:
        sb = self.sb
        refs: dict[int, int] = {}
        for d in self.dirs:
            try:
                entries = self.read_dir(d)
            except CorruptImageError as err:
                self.add("dir-entry", f"directory inode {d}: {err.where}: {err.message}", d)
                continue
            self.entries[d] = entries
            for k, e in enumerate(entries):
                name = e.name.decode("utf-8", "replace")
                where = f"entry {name!r} in directory inode {d}"
                if not 1 <= e.ino <= sb.inodes_count:
                    self.add("dir-entry", f"{where}: inode number {e.ino} out of range", d)
                    continue
                if k == 0 and e.name == b"." and e.ino != d:
                    self.add("dir-entry", f"{where}: '.' points to inode {e.ino}", d)
                if not used[e.ino - 1] or e.ino not in self.inodes:
                    self.add("dir-entry", f"{where}: points to unused inode {e.ino}", e.ino)
                    continue
                refs[e.ino] = refs.get(e.ino, 0) + 1
                want = file_type_of_mode(self.inodes[e.ino].mode)
                if sb.has_incompat(EXT4_FEATURE_INCOMPAT_FILETYPE) and e.file_type != want:
                    self.add(
                        "dir-entry", f"{where}: file type {e.file_type}, inode {e.ino} has type {want}", e.ino
                    )
        for ino, inode in self.inodes.items():
            if ino < sb.first_ino and ino != EXT4_ROOT_INO:
                continue
            n = refs.get(ino, 0)
            if n == 0 and inode.links_count:
                self.add("unattached-inode", f"inode {ino}: in use but no directory entry names it", ino)
            elif n != inode.links_count:
                self.add(
                    "link-count", f"inode {ino}: i_links_count is {inode.links_count}, should be {n}", ino
                )

    def read_dir(self, d: int) -> list[DirEntry]:
        """Entries of directory ``d`` (block directories from the extents already decoded)."""
        inode = self.inodes[d]
        if inode.has_inline_data or d not in self.extents:
            return self.img.dir_entries(d)
        bs = self.bs
        nblocks = inode.size // bs
        out: list[DirEntry] = []
        for e in self.extents[d]:
            for k in range(max(0, min(e.len, nblocks - e.lblk))):
                where = f"directory {d} block {e.lblk + k}"
                if e.unwritten:
                    raise CorruptImageError(f"unwritten extent at block {e.lblk + k}", where=f"directory {d}")
                out += decode_dir_block(self.img.read_block(e.pblk + k, where=where), where=where)
        return out

    # -- pass 5: bitmaps and counts ----------------------------------------------------------------

    def check_blocks(self) -> None:
        sb = self.sb
        img = self.img
        nblocks = sb.blocks_count
        diff = np.zeros(nblocks + 1, dtype=np.int32)
        bad: list[tuple[int, int, int]] = []
        for a, b, owner in self.ranges:
            if a < sb.first_data_block or b > nblocks or a >= b:
                if owner != _META:
                    bad.append((a, b, owner))
                continue
            diff[a] += 1
            diff[b] -= 1
        for a, b, owner in bad:
            self.add("extent-tree", f"inode {owner}: blocks {_span(a, b)} outside the filesystem", owner, a)
        count = np.cumsum(diff[:-1])
        for a, b in _runs(count > 1):
            owners = sorted({o for s, e, o in self.ranges if s < b and a < e})
            names = ", ".join("metadata" if o == _META else f"inode {o}" for o in owners)
            self.add("double-block", f"blocks {_span(a, b)} are claimed by {names}", block=a)
        in_use = count > 0
        in_use[: sb.first_data_block] = True
        try:
            bitmap = img.block_bitmap()
        except CorruptImageError as err:
            self.add("unreadable", f"{err.where}: {err.message}")
            return
        for a, b in _runs(in_use & ~bitmap):
            self.add(
                "block-bitmap", f"block bitmap differences: +{_span(a, b)} (in use, marked free)", block=a
            )
        for a, b in _runs(bitmap & ~in_use):
            self.add(
                "block-bitmap", f"block bitmap differences: -{_span(a, b)} (marked in use, unowned)", block=a
            )
        csum_groups = sb.has_ro_compat(EXT4_FEATURE_RO_COMPAT_GDT_CSUM | EXT4_FEATURE_RO_COMPAT_METADATA_CSUM)
        total_free = 0
        for g, gd in enumerate(img.groups):
            start = sb.first_data_block + g * sb.blocks_per_group
            n = min(sb.blocks_per_group, nblocks - start)
            free = int(n - np.count_nonzero(bitmap[start : start + n]))
            total_free += free
            if gd.free_blocks_count != free:
                self.add(
                    "free-count",
                    f"group {g}: free blocks count is {gd.free_blocks_count}, the bitmap has {free}",
                    block=gd.block_bitmap,
                )
            if not (csum_groups and gd.flags & EXT4_BG_BLOCK_UNINIT):
                raw = img.read_block(gd.block_bitmap)
                if not bitmap_padding_ok(raw, n):
                    self.add(
                        "bitmap-padding", f"group {g}: padding at the end of the block bitmap is not set"
                    )
        if sb.free_blocks_count != total_free:
            self.add(
                "free-count", f"superblock: free blocks count is {sb.free_blocks_count}, counted {total_free}"
            )

    def check_inode_bitmap(self, used: np.ndarray) -> None:
        sb = self.sb
        img = self.img
        try:
            bitmap = img.inode_bitmap()
        except CorruptImageError as err:
            self.add("unreadable", f"{err.where}: {err.message}")
            return
        for a, b in _runs(used & ~bitmap):
            self.add(
                "inode-bitmap",
                f"inode bitmap differences: +{_span(a + 1, b + 1)} (in use, marked free)",
                a + 1,
            )
        for a, b in _runs(bitmap & ~used):
            self.add(
                "inode-bitmap",
                f"inode bitmap differences: -{_span(a + 1, b + 1)} (marked in use, unused)",
                a + 1,
            )
        csum_groups = sb.has_ro_compat(EXT4_FEATURE_RO_COMPAT_GDT_CSUM | EXT4_FEATURE_RO_COMPAT_METADATA_CSUM)
        ipg = sb.inodes_per_group
        total_free = 0
        for g, gd in enumerate(img.groups):
            n = min(ipg, sb.inodes_count - g * ipg)
            free = int(n - np.count_nonzero(bitmap[g * ipg : g * ipg + n]))
            total_free += free
            if gd.free_inodes_count != free:
                self.add(
                    "free-count",
                    f"group {g}: free inodes count is {gd.free_inodes_count}, the bitmap has {free}",
                )
            if gd.used_dirs_count != int(self.dir_groups[g]):
                self.add(
                    "dir-count",
                    f"group {g}: directories count is {gd.used_dirs_count}, counted {self.dir_groups[g]}",
                )
            if not (csum_groups and gd.flags & EXT4_BG_INODE_UNINIT):
                raw = img.read_block(gd.inode_bitmap)
                if not bitmap_padding_ok(raw, n):
                    self.add(
                        "bitmap-padding", f"group {g}: padding at the end of the inode bitmap is not set"
                    )
        if sb.free_inodes_count != total_free:
            self.add(
                "free-count", f"superblock: free inodes count is {sb.free_inodes_count}, counted {total_free}"
            )
