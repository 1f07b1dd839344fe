"""ext4 in-memory structures and constants (fs/ext4/ext4.h, ext4_extents.h).

The in-memory state is the source of truth; on-disk blocks are encoded from it when written
(simkernel/fs/ext4/ondisk.py declares the layouts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from simkernel.fs.vfs import Inode
from simkernel.locking.rwsem import RwSemaphore

# i_flags (persistent)
EXT4_EXTENTS_FL = 0x00080000
EXT4_INLINE_DATA_FL = 0x10000000

# i_state bits (in memory only)
EXT4_STATE_NEW = 1 << 1
EXT4_STATE_XATTR = 1 << 2
EXT4_STATE_NO_EXPAND = 1 << 3
EXT4_STATE_MAY_INLINE_DATA = 1 << 10

EXT4_MIN_INLINE_DATA_SIZE = 60

# ext4_map_blocks() flags (EXT4_GET_BLOCKS_*)
EXT4_GET_BLOCKS_CREATE = 0x0001
EXT4_GET_BLOCKS_UNWRIT_EXT = 0x0002
EXT4_GET_BLOCKS_CREATE_UNWRIT_EXT = EXT4_GET_BLOCKS_UNWRIT_EXT | EXT4_GET_BLOCKS_CREATE
EXT4_GET_BLOCKS_DELALLOC_RESERVE = 0x0004
EXT4_GET_BLOCKS_PRE_IO = 0x0008
EXT4_GET_BLOCKS_CONVERT = 0x0010
EXT4_GET_BLOCKS_IO_CREATE_EXT = EXT4_GET_BLOCKS_PRE_IO | EXT4_GET_BLOCKS_CREATE_UNWRIT_EXT
EXT4_GET_BLOCKS_CONVERT_UNWRITTEN = 0x0100
EXT4_GET_BLOCKS_ZERO = 0x0200
EXT4_GET_BLOCKS_METADATA_NOFAIL = 0x0020

# map->m_flags
EXT4_MAP_NEW = 1 << 0
EXT4_MAP_MAPPED = 1 << 1
EXT4_MAP_UNWRITTEN = 1 << 2
EXT4_MAP_BOUNDARY = 1 << 3
EXT4_MAP_DELAYED = 1 << 4

# mballoc ar.flags
EXT4_MB_DELALLOC_RESERVED = 0x0400
EXT4_MB_USE_RESERVED = 0x2000

# write_begin fsdata
FALL_BACK_TO_NONDELALLOC = 1
CONVERT_INLINE_DATA = 2

EXT_INIT_MAX_LEN = 1 << 15
EXT_UNWRITTEN_MAX_LEN = EXT_INIT_MAX_LEN - 1

# ext4_nonda_switch() watermark (EXT4_FREECLUSTERS_WATERMARK is 4 * percpu batch on SMP; small here)
EXT4_FREECLUSTERS_WATERMARK = 8


@dataclass
class MapBlocks:
    """struct ext4_map_blocks"""

    m_lblk: int
    m_len: int
    m_pblk: int = 0
    m_flags: int = 0
    #: extent-status sequence number sampled with the mapping (iomap validity cookie)
    m_seq: int = 0


class Extent:
    """One extent of the file mapping: ``len`` blocks from logical ``lblk`` at physical ``pblk``."""

    __slots__ = ("lblk", "len", "pblk", "unwritten")

    def __init__(self, lblk: int, length: int, pblk: int, unwritten: bool) -> None:
        self.lblk = lblk
        self.len = length
        self.pblk = pblk
        self.unwritten = unwritten

    @property
    def end(self) -> int:
        return self.lblk + self.len

    def __repr__(self) -> str:
        return f"({self.lblk}-{self.end - 1}{'[u]' if self.unwritten else ''}):{self.pblk}"


class Ext4InodeInfo(Inode):
    """struct ext4_inode_info (embedding struct inode)."""

    def __init__(self, sb: Any, ino: int, mode: int) -> None:
        super().__init__(sb, ino, mode)
        self.i_flags = 0
        self.i_state = 0
        self.i_disksize = 0
        self.i_links_count = 1
        self.i_generation = 0
        self.i_times = (0, 0, 0, 0)
        #: i_block[]: inline data bytes [0, 60) when INLINE_DATA is set
        self.i_data = bytearray(EXT4_MIN_INLINE_DATA_SIZE)
        #: offset of the system.data xattr entry in the raw inode; 0 = none
        self.i_inline_off = 0
        #: inline capacity: 60 + system.data value size
        self.i_inline_size = 0
        #: the system.data xattr value (inline bytes past 60)
        self.i_inline_value = bytearray()
        #: the extent tree's leaves (what is on disk once written), sorted by lblk
        self.i_extents: list[Extent] = []
        #: blocks holding extent tree nodes (index/leaf blocks), for depth >= 1
        self.i_ext_tree_blocks: list[int] = []
        #: extent status tree, delayed part: logical blocks with a delalloc reservation
        self.i_es_delayed: set[int] = set()
        #: io_ends that submitted a bio and are not released yet, in submission order (what
        #: Linux's i_unwritten counted): a zeroout must not wipe what they wrote
        self.i_io_ends: list[Any] = []
        #: bumped on every change of the mapping (what an iomap validity cookie samples)
        self.i_es_seq = 0
        self.i_reserved_data_blocks = 0
        self.i_data_sem = RwSemaphore("&ei->i_data_sem", f"i_data_sem#{ino}")
        self.xattr_sem = RwSemaphore("&ei->xattr_sem", f"xattr_sem#{ino}")
        #: NEXT_ORPHAN(inode): the next inode of the on-disk orphan list (stored in i_dtime)
        self.i_next_orphan = 0
        #: jbd2: transaction id of the last change fsync/fdatasync must commit
        self.i_sync_tid = 0
        self.i_datasync_tid = 0


@dataclass
class Ext4SbInfo:
    """struct ext4_sb_info (the parts the model uses)."""

    layout: Any
    blocks_count: int
    inodes_count: int
    first_data_block: int
    #: block bitmap of the single group (True = in use), the allocator's truth
    block_bitmap: np.ndarray
    inode_bitmap: np.ndarray
    s_freeclusters_counter: int
    s_dirtyclusters_counter: int = 0
    #: blocks kept back from delalloc promises for metadata (s_resv_clusters)
    s_resv_clusters: int = 0
    s_freeinodes_counter: int = 0
    s_inline_data: bool = False
    s_delalloc: bool = True
    s_journal: Any = None
    #: blocks freed but not reusable until the freeing transaction commits (jbd2): counted in
    #: s_freeclusters_counter already, kept out of the allocator by ``pending_mask``
    s_mb_free_pending: int = 0
    #: the allocator's view of those blocks (True = freed, not yet allocatable)
    pending_mask: Any = None
    #: raw inode table blocks as last read/written (slots of unknown inodes are preserved)
    itable_raw: dict[int, bytearray] = field(default_factory=dict)
    #: metadata that must be written at the next sync: "bitmaps", "sb", inode numbers
    dirty_bitmaps: bool = False
    dirty_inodes: set[int] = field(default_factory=set)
    root_dir_blocks: list[int] = field(default_factory=list)
    #: root directory entries: name -> inode number (insertion ordered)
    root_entries: dict[str, int] = field(default_factory=dict)
    dirty_dir: bool = False
    #: armed fault injections: "alloc" (next unreserved block allocation), "reserve" (next delalloc
    #: reservation) -> errno to return
    inject: dict[str, int] = field(default_factory=dict)
    #: head of the on-disk orphan list (es->s_last_orphan); 0 = empty
    s_last_orphan: int = 0
    #: "Delayed block allocation failed" and similar ext4_msg lines
    messages: list[str] = field(default_factory=list)


class Handle:
    """A jbd2 handle (handle_t) when the filesystem has a journal."""

    __slots__ = ("h_ref", "h_sync", "h_transaction", "h_type")

    def __init__(self, transaction: Any, h_type: str) -> None:
        self.h_transaction = transaction
        self.h_ref = 1
        self.h_sync = False
        self.h_type = h_type


def ext4_handle_valid(handle: Any) -> bool:
    """ext4_handle_valid(): a real jbd2 handle, not a no-journal reference count."""
    return isinstance(handle, Handle)
