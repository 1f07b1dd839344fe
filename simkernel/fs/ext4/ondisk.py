"""ext4 and jbd2 on-disk layouts, declared once for the kernel's writer and the oracle's reader.

Every structure is a compiled construct ``Struct`` (offsets checked by ``sizeof`` asserts against
e2fsprogs 1.47 ``ext2_fs.h``/``kernel-jbd.h``); bitmaps are numpy bool arrays.  Around the Structs sit
pure encode/decode helpers on plain data (no model state): the simulated kernel encodes metadata blocks
from its in-memory state with them, and ``oracle.image`` decodes images with them.

ext4 integers are little-endian, jbd2 integers big-endian.  Decoders raise
:class:`~simkernel.errors.CorruptImageError` naming the structure (``where``) and never leak
``struct.error``/``IndexError``; encoders raise ``ValueError`` on impossible input.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from construct import (
    Array,
    Bytes,
    ConstructError,
    Int8ub,
    Int8ul,
    Int16ub,
    Int16ul,
    Int32ub,
    Int32ul,
    Int64ub,
    Int64ul,
    Struct,
)

from simkernel.config import JBD2_MIN_JOURNAL_BLOCKS
from simkernel.errors import CorruptImageError, GeometryError

# --------------------------------------------------------------------------------------------------
# constants (kernel names)
# --------------------------------------------------------------------------------------------------

EXT4_SUPER_MAGIC = 0xEF53
EXT4_SUPERBLOCK_OFFSET = 1024
EXT4_SUPERBLOCK_SIZE = 1024
EXT4_MIN_BLOCK_SIZE = 1024
EXT4_MAX_BLOCK_SIZE = 65536
EXT4_GOOD_OLD_INODE_SIZE = 128
EXT4_GOOD_OLD_FIRST_INO = 11
EXT4_GOOD_OLD_REV = 0
EXT4_DYNAMIC_REV = 1
EXT4_MIN_DESC_SIZE = 32
EXT4_MIN_DESC_SIZE_64BIT = 64
EXT4_MAX_DESC_SIZE = 1024
EXT4_N_BLOCKS = 15
EXT4_INODE_EXTRA_FIELDS_SIZE = 32  # sizeof(ext4_inode) - EXT4_GOOD_OLD_INODE_SIZE (i_extra_isize .. i_projid)
EXT4_DEFAULT_EXTRA_ISIZE = 32

# reserved inodes
EXT4_BAD_INO = 1
EXT4_ROOT_INO = 2
EXT4_USR_QUOTA_INO = 3
EXT4_GRP_QUOTA_INO = 4
EXT4_BOOT_LOADER_INO = 5
EXT4_UNDEL_DIR_INO = 6
EXT4_RESIZE_INO = 7
EXT4_JOURNAL_INO = 8

# s_state
EXT4_VALID_FS = 0x0001
EXT4_ERROR_FS = 0x0002
EXT4_ORPHAN_FS = 0x0004
# s_errors
EXT4_ERRORS_CONTINUE = 1
# s_flags
EXT2_FLAGS_SIGNED_HASH = 0x0001
EXT2_FLAGS_UNSIGNED_HASH = 0x0002
# s_def_hash_version
EXT2_HASH_HALF_MD4 = 1
# s_jnl_backup_type
EXT3_JNL_BACKUP_BLOCKS = 1
# s_default_mount_opts (mke2fs default on Debian: user_xattr, acl)
EXT4_DEFM_XATTR_USER = 0x0004
EXT4_DEFM_ACL = 0x0008

# feature bits
EXT4_FEATURE_COMPAT_DIR_PREALLOC = 0x0001
EXT4_FEATURE_COMPAT_IMAGIC_INODES = 0x0002
EXT4_FEATURE_COMPAT_HAS_JOURNAL = 0x0004
EXT4_FEATURE_COMPAT_EXT_ATTR = 0x0008
EXT4_FEATURE_COMPAT_RESIZE_INODE = 0x0010
EXT4_FEATURE_COMPAT_DIR_INDEX = 0x0020
EXT4_FEATURE_COMPAT_SPARSE_SUPER2 = 0x0200
EXT4_FEATURE_COMPAT_ORPHAN_FILE = 0x1000

EXT4_FEATURE_INCOMPAT_COMPRESSION = 0x0001
EXT4_FEATURE_INCOMPAT_FILETYPE = 0x0002
EXT4_FEATURE_INCOMPAT_RECOVER = 0x0004
EXT4_FEATURE_INCOMPAT_JOURNAL_DEV = 0x0008
EXT4_FEATURE_INCOMPAT_META_BG = 0x0010
EXT4_FEATURE_INCOMPAT_EXTENTS = 0x0040
EXT4_FEATURE_INCOMPAT_64BIT = 0x0080
EXT4_FEATURE_INCOMPAT_MMP = 0x0100
EXT4_FEATURE_INCOMPAT_FLEX_BG = 0x0200
EXT4_FEATURE_INCOMPAT_EA_INODE = 0x0400
EXT4_FEATURE_INCOMPAT_DIRDATA = 0x1000
EXT4_FEATURE_INCOMPAT_CSUM_SEED = 0x2000
EXT4_FEATURE_INCOMPAT_LARGEDIR = 0x4000
EXT4_FEATURE_INCOMPAT_INLINE_DATA = 0x8000
EXT4_FEATURE_INCOMPAT_ENCRYPT = 0x10000
EXT4_FEATURE_INCOMPAT_CASEFOLD = 0x20000

EXT4_FEATURE_RO_COMPAT_SPARSE_SUPER = 0x0001
EXT4_FEATURE_RO_COMPAT_LARGE_FILE = 0x0002
EXT4_FEATURE_RO_COMPAT_HUGE_FILE = 0x0008
EXT4_FEATURE_RO_COMPAT_GDT_CSUM = 0x0010
EXT4_FEATURE_RO_COMPAT_DIR_NLINK = 0x0020
EXT4_FEATURE_RO_COMPAT_EXTRA_ISIZE = 0x0040
EXT4_FEATURE_RO_COMPAT_BIGALLOC = 0x0200
EXT4_FEATURE_RO_COMPAT_METADATA_CSUM = 0x0400

#: the model's feature recipe (reference §12: ``-O none,extent,filetype,sparse_super,large_file,ext_attr``)
MODEL_FEATURE_COMPAT = EXT4_FEATURE_COMPAT_EXT_ATTR
MODEL_FEATURE_INCOMPAT = EXT4_FEATURE_INCOMPAT_FILETYPE | EXT4_FEATURE_INCOMPAT_EXTENTS
MODEL_FEATURE_RO_COMPAT = EXT4_FEATURE_RO_COMPAT_SPARSE_SUPER | EXT4_FEATURE_RO_COMPAT_LARGE_FILE

# bg_flags
EXT4_BG_INODE_UNINIT = 0x0001
EXT4_BG_BLOCK_UNINIT = 0x0002
EXT4_BG_INODE_ZEROED = 0x0004

# i_mode
S_IFMT = 0o170000
S_IFSOCK = 0o140000
S_IFLNK = 0o120000
S_IFREG = 0o100000
S_IFBLK = 0o060000
S_IFDIR = 0o040000
S_IFCHR = 0o020000
S_IFIFO = 0o010000

# i_flags
EXT4_SECRM_FL = 0x00000001
EXT4_SYNC_FL = 0x00000008
EXT4_IMMUTABLE_FL = 0x00000010
EXT4_APPEND_FL = 0x00000020
EXT4_NOATIME_FL = 0x00000080
EXT4_INDEX_FL = 0x00001000
EXT4_HUGE_FILE_FL = 0x00040000
EXT4_EXTENTS_FL = 0x00080000
EXT4_EA_INODE_FL = 0x00200000
EXT4_INLINE_DATA_FL = 0x10000000

# extents
EXT4_EXT_MAGIC = 0xF30A
EXT4_MAX_EXTENT_DEPTH = 5
EXT_INIT_MAX_LEN = 1 << 15  # 32768: ee_len values above it mean "unwritten"
EXT_UNWRITTEN_MAX_LEN = EXT_INIT_MAX_LEN - 1
EXT4_EXT_ROOT_ENTRIES = 4  # (60 - 12) // 12
EXT4_MAX_LOGICAL_BLOCK = 1 << 32

# in-inode extended attributes / inline data
EXT4_XATTR_MAGIC = 0xEA020000
EXT4_XATTR_PAD = 4
EXT4_XATTR_INDEX_USER = 1
EXT4_XATTR_INDEX_POSIX_ACL_ACCESS = 2
EXT4_XATTR_INDEX_POSIX_ACL_DEFAULT = 3
EXT4_XATTR_INDEX_TRUSTED = 4
EXT4_XATTR_INDEX_SECURITY = 6
EXT4_XATTR_INDEX_SYSTEM = 7
EXT4_XATTR_SYSTEM_DATA = b"data"
EXT4_MIN_INLINE_DATA_SIZE = 60  # sizeof(i_block)
EXT4_INLINE_DOTDOT_SIZE = 4  # inline dirs: i_block[0:4] = parent inode

# directory entries
EXT4_NAME_LEN = 255
EXT4_DIR_ENTRY_HEADER_LEN = 8
EXT4_DIR_ROUND = 4
EXT4_MAX_REC_LEN = (1 << 16) - 1
EXT4_FT_UNKNOWN = 0
EXT4_FT_REG_FILE = 1
EXT4_FT_DIR = 2
EXT4_FT_CHRDEV = 3
EXT4_FT_BLKDEV = 4
EXT4_FT_FIFO = 5
EXT4_FT_SOCK = 6
EXT4_FT_SYMLINK = 7
EXT4_FT_DIR_CSUM = 0xDE

# jbd2
JBD2_MAGIC_NUMBER = 0xC03B3998
JBD2_DESCRIPTOR_BLOCK = 1
JBD2_COMMIT_BLOCK = 2
JBD2_SUPERBLOCK_V1 = 3
JBD2_SUPERBLOCK_V2 = 4
JBD2_REVOKE_BLOCK = 5
JBD2_FC_BLOCK = 6
JBD2_FEATURE_COMPAT_CHECKSUM = 0x1
JBD2_FEATURE_INCOMPAT_REVOKE = 0x1
JBD2_FEATURE_INCOMPAT_64BIT = 0x2
JBD2_FEATURE_INCOMPAT_ASYNC_COMMIT = 0x4
JBD2_FEATURE_INCOMPAT_CSUM_V2 = 0x8
JBD2_FEATURE_INCOMPAT_CSUM_V3 = 0x10
JBD2_FEATURE_INCOMPAT_FAST_COMMIT = 0x20
JBD2_FLAG_ESCAPE = 0x1
JBD2_FLAG_SAME_UUID = 0x2
JBD2_FLAG_DELETED = 0x4
JBD2_FLAG_LAST_TAG = 0x8
JBD2_CRC32_CHKSUM = 1
JBD2_MD5_CHKSUM = 2
JBD2_SHA1_CHKSUM = 3
JBD2_CRC32C_CHKSUM = 4
JBD2_SUPERBLOCK_SIZE = 1024

#: fixed timestamp for everything mkfs writes (no wall clock: images are deterministic); same as the
#: reference recipe's E2FSPROGS_FAKE_TIME, and in the past so e2fsck never sees a "future" time.
FIXED_TIME = 1700000000

# --------------------------------------------------------------------------------------------------
# construct layouts (compiled once at import)
# --------------------------------------------------------------------------------------------------

_SUPERBLOCK = Struct(
    "s_inodes_count" / Int32ul,  # 0x00
    "s_blocks_count_lo" / Int32ul,  # 0x04
    "s_r_blocks_count_lo" / Int32ul,  # 0x08
    "s_free_blocks_count_lo" / Int32ul,  # 0x0C
    "s_free_inodes_count" / Int32ul,  # 0x10
    "s_first_data_block" / Int32ul,  # 0x14
    "s_log_block_size" / Int32ul,  # 0x18
    "s_log_cluster_size" / Int32ul,  # 0x1C
    "s_blocks_per_group" / Int32ul,  # 0x20
    "s_clusters_per_group" / Int32ul,  # 0x24
    "s_inodes_per_group" / Int32ul,  # 0x28
    "s_mtime" / Int32ul,  # 0x2C
    "s_wtime" / Int32ul,  # 0x30
    "s_mnt_count" / Int16ul,  # 0x34
    "s_max_mnt_count" / Int16ul,  # 0x36
    "s_magic" / Int16ul,  # 0x38
    "s_state" / Int16ul,  # 0x3A
    "s_errors" / Int16ul,  # 0x3C
    "s_minor_rev_level" / Int16ul,  # 0x3E
    "s_lastcheck" / Int32ul,  # 0x40
    "s_checkinterval" / Int32ul,  # 0x44
    "s_creator_os" / Int32ul,  # 0x48
    "s_rev_level" / Int32ul,  # 0x4C
    "s_def_resuid" / Int16ul,  # 0x50
    "s_def_resgid" / Int16ul,  # 0x52
    "s_first_ino" / Int32ul,  # 0x54
    "s_inode_size" / Int16ul,  # 0x58
    "s_block_group_nr" / Int16ul,  # 0x5A
    "s_feature_compat" / Int32ul,  # 0x5C
    "s_feature_incompat" / Int32ul,  # 0x60
    "s_feature_ro_compat" / Int32ul,  # 0x64
    "s_uuid" / Bytes(16),  # 0x68
    "s_volume_name" / Bytes(16),  # 0x78
    "s_last_mounted" / Bytes(64),  # 0x88
    "s_algorithm_usage_bitmap" / Int32ul,  # 0xC8
    "s_prealloc_blocks" / Int8ul,  # 0xCC
    "s_prealloc_dir_blocks" / Int8ul,  # 0xCD
    "s_reserved_gdt_blocks" / Int16ul,  # 0xCE
    "s_journal_uuid" / Bytes(16),  # 0xD0
    "s_journal_inum" / Int32ul,  # 0xE0
    "s_journal_dev" / Int32ul,  # 0xE4
    "s_last_orphan" / Int32ul,  # 0xE8
    "s_hash_seed" / Bytes(16),  # 0xEC (4 x le32; kept as the 16 raw bytes)
    "s_def_hash_version" / Int8ul,  # 0xFC
    "s_jnl_backup_type" / Int8ul,  # 0xFD
    "s_desc_size" / Int16ul,  # 0xFE
    "s_default_mount_opts" / Int32ul,  # 0x100
    "s_first_meta_bg" / Int32ul,  # 0x104
    "s_mkfs_time" / Int32ul,  # 0x108
    "s_jnl_blocks" / Array(17, Int32ul),  # 0x10C
    "s_blocks_count_hi" / Int32ul,  # 0x150
    "s_r_blocks_count_hi" / Int32ul,  # 0x154
    "s_free_blocks_count_hi" / Int32ul,  # 0x158
    "s_min_extra_isize" / Int16ul,  # 0x15C
    "s_want_extra_isize" / Int16ul,  # 0x15E
    "s_flags" / Int32ul,  # 0x160
    "s_raid_stride" / Int16ul,  # 0x164
    "s_mmp_interval" / Int16ul,  # 0x166
    "s_mmp_block" / Int64ul,  # 0x168
    "s_raid_stripe_width" / Int32ul,  # 0x170
    "s_log_groups_per_flex" / Int8ul,  # 0x174
    "s_checksum_type" / Int8ul,  # 0x175
    "s_encryption_level" / Int8ul,  # 0x176
    "s_reserved_pad" / Int8ul,  # 0x177
    "s_kbytes_written" / Int64ul,  # 0x178
    "s_snap_and_errors" / Bytes(0x200 - 0x180),  # 0x180 snapshot + error-tracking fields
    "s_mount_opts" / Bytes(64),  # 0x200
    "s_usr_quota_inum" / Int32ul,  # 0x240
    "s_grp_quota_inum" / Int32ul,  # 0x244
    "s_overhead_clusters" / Int32ul,  # 0x248
    "s_backup_bgs" / Array(2, Int32ul),  # 0x24C
    "s_encrypt_algos" / Bytes(4),  # 0x254
    "s_encrypt_pw_salt" / Bytes(16),  # 0x258
    "s_lpf_ino" / Int32ul,  # 0x268
    "s_prj_quota_inum" / Int32ul,  # 0x26C
    "s_checksum_seed" / Int32ul,  # 0x270
    "s_time_hi"
    / Bytes(8),  # 0x274 s_{wtime,mtime,mkfs_time,lastcheck,first_error_time,last_error_time}_hi + pad
    "s_encoding" / Int16ul,  # 0x27C
    "s_encoding_flags" / Int16ul,  # 0x27E
    "s_orphan_file_inum" / Int32ul,  # 0x280
    "s_reserved" / Bytes(94 * 4),  # 0x284
    "s_checksum" / Int32ul,  # 0x3FC
)
assert _SUPERBLOCK.sizeof() == EXT4_SUPERBLOCK_SIZE
#: ``struct ext4_super_block`` (1024 bytes at byte offset 1024)
EXT4_SUPER_BLOCK = _SUPERBLOCK.compile()

_GROUP_DESC64 = Struct(
    "bg_block_bitmap_lo" / Int32ul,  # 0x00
    "bg_inode_bitmap_lo" / Int32ul,  # 0x04
    "bg_inode_table_lo" / Int32ul,  # 0x08
    "bg_free_blocks_count_lo" / Int16ul,  # 0x0C
    "bg_free_inodes_count_lo" / Int16ul,  # 0x0E
    "bg_used_dirs_count_lo" / Int16ul,  # 0x10
    "bg_flags" / Int16ul,  # 0x12
    "bg_exclude_bitmap_lo" / Int32ul,  # 0x14
    "bg_block_bitmap_csum_lo" / Int16ul,  # 0x18
    "bg_inode_bitmap_csum_lo" / Int16ul,  # 0x1A
    "bg_itable_unused_lo" / Int16ul,  # 0x1C
    "bg_checksum" / Int16ul,  # 0x1E
    "bg_block_bitmap_hi" / Int32ul,  # 0x20
    "bg_inode_bitmap_hi" / Int32ul,  # 0x24
    "bg_inode_table_hi" / Int32ul,  # 0x28
    "bg_free_blocks_count_hi" / Int16ul,  # 0x2C
    "bg_free_inodes_count_hi" / Int16ul,  # 0x2E
    "bg_used_dirs_count_hi" / Int16ul,  # 0x30
    "bg_itable_unused_hi" / Int16ul,  # 0x32
    "bg_exclude_bitmap_hi" / Int32ul,  # 0x34
    "bg_block_bitmap_csum_hi" / Int16ul,  # 0x38
    "bg_inode_bitmap_csum_hi" / Int16ul,  # 0x3A
    "bg_reserved" / Int32ul,  # 0x3C
)
_GROUP_DESC32 = Struct(*_GROUP_DESC64.subcons[:12])
assert _GROUP_DESC64.sizeof() == 64 and _GROUP_DESC32.sizeof() == 32
#: ``struct ext4_group_desc`` with the 64bit feature (64 bytes)
EXT4_GROUP_DESC64 = _GROUP_DESC64.compile()
#: ``struct ext4_group_desc`` without 64bit (32 bytes)
EXT4_GROUP_DESC32 = _GROUP_DESC32.compile()

_INODE_BASE = Struct(
    "i_mode" / Int16ul,  # 0x00
    "i_uid" / Int16ul,  # 0x02
    "i_size_lo" / Int32ul,  # 0x04
    "i_atime" / Int32ul,  # 0x08
    "i_ctime" / Int32ul,  # 0x0C
    "i_mtime" / Int32ul,  # 0x10
    "i_dtime" / Int32ul,  # 0x14
    "i_gid" / Int16ul,  # 0x18
    "i_links_count" / Int16ul,  # 0x1A
    "i_blocks_lo" / Int32ul,  # 0x1C
    "i_flags" / Int32ul,  # 0x20
    "l_i_version" / Int32ul,  # 0x24
    "i_block" / Bytes(60),  # 0x28
    "i_generation" / Int32ul,  # 0x64
    "i_file_acl_lo" / Int32ul,  # 0x68
    "i_size_high" / Int32ul,  # 0x6C
    "i_obso_faddr" / Int32ul,  # 0x70
    "l_i_blocks_high" / Int16ul,  # 0x74
    "l_i_file_acl_high" / Int16ul,  # 0x76
    "l_i_uid_high" / Int16ul,  # 0x78
    "l_i_gid_high" / Int16ul,  # 0x7A
    "l_i_checksum_lo" / Int16ul,  # 0x7C
    "l_i_reserved" / Int16ul,  # 0x7E
)
_INODE_EXTRA_FIELDS = (
    "i_extra_isize" / Int16ul,  # 0x80
    "i_checksum_hi" / Int16ul,  # 0x82
    "i_ctime_extra" / Int32ul,  # 0x84
    "i_mtime_extra" / Int32ul,  # 0x88
    "i_atime_extra" / Int32ul,  # 0x8C
    "i_crtime" / Int32ul,  # 0x90
    "i_crtime_extra" / Int32ul,  # 0x94
    "i_version_hi" / Int32ul,  # 0x98
    "i_projid" / Int32ul,  # 0x9C
)
_INODE_LARGE = Struct(*_INODE_BASE.subcons, *_INODE_EXTRA_FIELDS)
_INODE256 = Struct(*_INODE_BASE.subcons, *_INODE_EXTRA_FIELDS, "i_tail" / Bytes(256 - 0xA0))
assert _INODE_BASE.sizeof() == EXT4_GOOD_OLD_INODE_SIZE
assert _INODE_LARGE.sizeof() == EXT4_GOOD_OLD_INODE_SIZE + EXT4_INODE_EXTRA_FIELDS_SIZE
assert _INODE256.sizeof() == 256
#: ``struct ext4_inode``, the 128-byte "good old" part
EXT4_INODE_BASE = _INODE_BASE.compile()
#: ``struct ext4_inode`` up to ``i_projid`` (160 bytes: base + the extra fields of i_extra_isize=32)
EXT4_INODE_LARGE = _INODE_LARGE.compile()
#: a whole 256-byte inode: base + extra fields + 96-byte tail (in-inode xattr area)
EXT4_INODE256 = _INODE256.compile()

_EXTENT_HEADER = Struct(
    "eh_magic" / Int16ul,  # 0xF30A
    "eh_entries" / Int16ul,
    "eh_max" / Int16ul,
    "eh_depth" / Int16ul,
    "eh_generation" / Int32ul,
)
_EXTENT = Struct(
    "ee_block" / Int32ul,
    "ee_len" / Int16ul,
    "ee_start_hi" / Int16ul,
    "ee_start_lo" / Int32ul,
)
_EXTENT_IDX = Struct(
    "ei_block" / Int32ul,
    "ei_leaf_lo" / Int32ul,
    "ei_leaf_hi" / Int16ul,
    "ei_unused" / Int16ul,
)
_EXTENT_TAIL = Struct("et_checksum" / Int32ul)
assert _EXTENT_HEADER.sizeof() == _EXTENT.sizeof() == _EXTENT_IDX.sizeof() == 12
#: ``struct ext4_extent_header``
EXT4_EXTENT_HEADER = _EXTENT_HEADER.compile()
#: ``struct ext4_extent`` (leaf entry)
EXT4_EXTENT = _EXTENT.compile()
#: ``struct ext4_extent_idx`` (index entry)
EXT4_EXTENT_IDX = _EXTENT_IDX.compile()
#: ``struct ext4_extent_tail`` (metadata_csum only)
EXT4_EXTENT_TAIL = _EXTENT_TAIL.compile()


_NP_FORMATS: tuple[tuple[Any, str], ...] = (
    (Int8ul, "u1"),
    (Int16ul, "<u2"),
    (Int32ul, "<u4"),
    (Int64ul, "<u8"),
    (Int8ub, "u1"),
    (Int16ub, ">u2"),
    (Int32ub, ">u4"),
    (Int64ub, ">u8"),
)


def struct_dtype(st: Any) -> np.dtype:
    """A numpy structured dtype with the same fields as a flat construct Struct of integers.

    Arrays of fixed-size entries (extent tree nodes) are decoded/encoded in bulk with it, so the
    construct declaration stays the single source of the layout.
    """
    names, formats = [], []
    for sc in st.subcons:
        fmt = next((f for c, f in _NP_FORMATS if sc.subcon is c), None)
        if fmt is None:
            raise TypeError(f"field {sc.name} is not a plain integer")
        names.append(sc.name)
        formats.append(fmt)
    dt = np.dtype({"names": names, "formats": formats})
    assert dt.itemsize == st.sizeof()
    return dt


#: ``struct ext4_extent`` / ``struct ext4_extent_idx`` as numpy dtypes (derived from the Structs above)
EXT4_EXTENT_DTYPE = struct_dtype(_EXTENT)
EXT4_EXTENT_IDX_DTYPE = struct_dtype(_EXTENT_IDX)

_XATTR_IBODY_HEADER = Struct("h_magic" / Int32ul)
_XATTR_ENTRY = Struct(
    "e_name_len" / Int8ul,
    "e_name_index" / Int8ul,
    "e_value_offs" / Int16ul,
    "e_value_inum" / Int32ul,
    "e_value_size" / Int32ul,
    "e_hash" / Int32ul,
)
assert _XATTR_ENTRY.sizeof() == 16
#: ``struct ext4_xattr_ibody_header``
EXT4_XATTR_IBODY_HEADER = _XATTR_IBODY_HEADER.compile()
#: ``struct ext4_xattr_entry`` without the name (``e_name`` follows, padded to 4)
EXT4_XATTR_ENTRY = _XATTR_ENTRY.compile()

_DIR_ENTRY2 = Struct(
    "inode" / Int32ul,
    "rec_len" / Int16ul,
    "name_len" / Int8ul,
    "file_type" / Int8ul,
)
assert _DIR_ENTRY2.sizeof() == EXT4_DIR_ENTRY_HEADER_LEN
#: ``struct ext4_dir_entry_2`` without the name (name_len bytes follow)
EXT4_DIR_ENTRY_2 = _DIR_ENTRY2.compile()

_JBD2_HEADER = Struct("h_magic" / Int32ub, "h_blocktype" / Int32ub, "h_sequence" / Int32ub)
_JBD2_SUPERBLOCK = Struct(
    "s_header" / _JBD2_HEADER,  # 0x00
    "s_blocksize" / Int32ub,  # 0x0C
    "s_maxlen" / Int32ub,  # 0x10
    "s_first" / Int32ub,  # 0x14
    "s_sequence" / Int32ub,  # 0x18
    "s_start" / Int32ub,  # 0x1C
    "s_errno" / Int32ub,  # 0x20
    "s_feature_compat" / Int32ub,  # 0x24
    "s_feature_incompat" / Int32ub,  # 0x28
    "s_feature_ro_compat" / Int32ub,  # 0x2C
    "s_uuid" / Bytes(16),  # 0x30
    "s_nr_users" / Int32ub,  # 0x40
    "s_dynsuper" / Int32ub,  # 0x44
    "s_max_transaction" / Int32ub,  # 0x48
    "s_max_trans_data" / Int32ub,  # 0x4C
    "s_checksum_type" / Int8ub,  # 0x50
    "s_padding2" / Bytes(3),  # 0x51
    "s_num_fc_blks" / Int32ub,  # 0x54
    "s_head" / Int32ub,  # 0x58 (newer kernels; padding in e2fsprogs 1.47.0)
    "s_padding" / Bytes(40 * 4),  # 0x5C
    "s_checksum" / Int32ub,  # 0xFC
    "s_users" / Bytes(16 * 48),  # 0x100
)
_JBD2_TAG3 = Struct(
    "t_blocknr" / Int32ub, "t_flags" / Int32ub, "t_blocknr_high" / Int32ub, "t_checksum" / Int32ub
)
_JBD2_TAG = Struct(
    "t_blocknr" / Int32ub, "t_checksum" / Int16ub, "t_flags" / Int16ub, "t_blocknr_high" / Int32ub
)
_JBD2_COMMIT = Struct(
    "h_header" / _JBD2_HEADER,  # 0x00
    "h_chksum_type" / Int8ub,  # 0x0C
    "h_chksum_size" / Int8ub,  # 0x0D
    "h_padding" / Bytes(2),  # 0x0E
    "h_chksum" / Array(8, Int32ub),  # 0x10
    "h_commit_sec" / Int64ub,  # 0x30
    "h_commit_nsec" / Int32ub,  # 0x38
)
_JBD2_REVOKE_HEADER = Struct("r_header" / _JBD2_HEADER, "r_count" / Int32ub)
_JBD2_BLOCK_TAIL = Struct("t_checksum" / Int32ub)
assert _JBD2_HEADER.sizeof() == 12
assert _JBD2_SUPERBLOCK.sizeof() == JBD2_SUPERBLOCK_SIZE
assert _JBD2_TAG3.sizeof() == 16 and _JBD2_TAG.sizeof() == 12
assert _JBD2_COMMIT.sizeof() == 0x3C
assert _JBD2_REVOKE_HEADER.sizeof() == 16
#: ``journal_header_t``
JBD2_HEADER = _JBD2_HEADER.compile()
#: ``journal_superblock_t`` (v1/v2, 1024 bytes at journal block 0)
JBD2_SUPERBLOCK = _JBD2_SUPERBLOCK.compile()
#: ``journal_block_tag3_t`` (CSUM_V3 descriptor tag, 16 bytes)
JBD2_BLOCK_TAG3 = _JBD2_TAG3.compile()
#: ``journal_block_tag_t`` (8 bytes without 64BIT, 12 with; CSUM_V2 adds 2 bytes after)
JBD2_BLOCK_TAG = _JBD2_TAG.compile()
#: ``struct commit_header``
JBD2_COMMIT_HEADER = _JBD2_COMMIT.compile()
#: ``jbd2_journal_revoke_header_t``
JBD2_REVOKE_HEADER = _JBD2_REVOKE_HEADER.compile()
#: ``struct jbd2_journal_block_tail``
JBD2_BLOCK_TAIL = _JBD2_BLOCK_TAIL.compile()

_U32 = struct.Struct("<I")

# zero-filled containers to build from (compiled build needs every field present)
_SB_ZERO: dict[str, Any] = dict(EXT4_SUPER_BLOCK.parse(bytes(EXT4_SUPERBLOCK_SIZE)))
_GD64_ZERO: dict[str, Any] = dict(EXT4_GROUP_DESC64.parse(bytes(64)))
_GD32_KEYS = tuple(sc.name for sc in _GROUP_DESC32.subcons)
_JSB_ZERO: dict[str, Any] = dict(JBD2_SUPERBLOCK.parse(bytes(JBD2_SUPERBLOCK_SIZE)))
for _d in (_SB_ZERO, _GD64_ZERO, _JSB_ZERO):
    _d.pop("_io", None)


_SIZEOF: dict[int, int] = {}


def _parse(st: Any, data: bytes | bytearray | memoryview, where: str, what: str) -> Any:
    """Parse ``data`` with a compiled Struct, turning short input/garbage into CorruptImageError."""
    need = _SIZEOF.get(id(st))
    if need is None:  # construct recomputes sizeof() on every call (~50 us): cache it
        need = _SIZEOF[id(st)] = int(st.sizeof())
    if len(data) < need:
        raise CorruptImageError(f"{what} needs {need} bytes, got {len(data)}", where=where)
    try:
        return st.parse(bytes(data[:need]))
    except (ConstructError, struct.error, ValueError) as exc:  # pragma: no cover - fixed-size structs
        raise CorruptImageError(f"cannot parse {what}: {exc}", where=where) from None


# --------------------------------------------------------------------------------------------------
# geometry
# --------------------------------------------------------------------------------------------------


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


@dataclass(frozen=True)
class Layout:
    """Where mkfs puts every metadata block of a single-group filesystem (mke2fs ``ext2fs_initialize``)."""

    block_size: int
    blocks_count: int
    inodes_count: int
    inode_size: int
    first_data_block: int
    blocks_per_group: int
    sb_block: int
    gdt_block: int
    block_bitmap: int
    inode_bitmap: int
    inode_table: int
    inode_table_blocks: int
    root_dir_block: int
    lost_found_block: int
    journal_start: int
    journal_blocks: int
    first_data_free: int

    @property
    def group_blocks(self) -> int:
        """Blocks covered by the (only) group's block bitmap: ``blocks_count - first_data_block``."""
        return self.blocks_count - self.first_data_block

    @property
    def inodes_per_block(self) -> int:
        """``EXT4_INODES_PER_BLOCK``."""
        return self.block_size // self.inode_size

    @property
    def log_block_size(self) -> int:
        """``s_log_block_size``: block size = 1024 << this."""
        return (self.block_size // EXT4_MIN_BLOCK_SIZE).bit_length() - 1

    @property
    def has_journal(self) -> bool:
        """True when journal inode 8 owns ``[journal_start, journal_start + journal_blocks)``."""
        return self.journal_blocks > 0

    @property
    def metadata_blocks(self) -> tuple[int, int]:
        """Half-open block range ``[first_data_block, first_data_free)`` that mkfs marks in use."""
        return self.first_data_block, self.first_data_free

    def inode_offset(self, ino: int) -> int:
        """Byte offset of inode ``ino`` (1-based) in the image."""
        if not 1 <= ino <= self.inodes_count:
            raise ValueError(f"inode {ino} outside 1..{self.inodes_count}")
        return self.inode_table * self.block_size + (ino - 1) * self.inode_size


def compute_layout(
    block_size: int, blocks_count: int, inodes_count: int, *, journal_blocks: int = 0
) -> Layout:
    """Single-group layout as mke2fs would place it (``ext2fs_initialize`` + ``ext2fs_allocate_tables``)."""
    inode_size = 256
    if not (_is_pow2(block_size) and EXT4_MIN_BLOCK_SIZE <= block_size <= EXT4_MAX_BLOCK_SIZE):
        raise GeometryError(
            f"block_size {block_size} is not a power of two in 1024..65536", where="block_size"
        )
    blocks_per_group = 8 * block_size  # the block bitmap is one block
    first_data_block = 1 if block_size == 1024 else 0
    if blocks_count > blocks_per_group + first_data_block:
        raise GeometryError(
            f"blocks_count {blocks_count} exceeds one block group "
            f"({blocks_per_group + first_data_block} blocks at {block_size}-byte blocks)",
            where="blocks_count",
        )
    if not 16 <= inodes_count <= 8 * block_size:
        raise GeometryError(
            f"inodes_count {inodes_count} must be between 16 and {8 * block_size}", where="inodes_count"
        )
    if journal_blocks < 0 or 0 < journal_blocks < JBD2_MIN_JOURNAL_BLOCKS:
        raise GeometryError(
            f"journal_blocks {journal_blocks} must be 0 or at least {JBD2_MIN_JOURNAL_BLOCKS}",
            where="journal_blocks",
        )
    # mke2fs: round inodes up to a multiple of 8 (bitmap splicing) and to whole inode-table blocks
    per_block = block_size // inode_size
    inodes = -(-inodes_count // 8) * 8
    itable_blocks = -(-inodes // per_block)
    inodes = itable_blocks * per_block
    inodes = -(-inodes // 8) * 8
    itable_blocks = -(-inodes // per_block)
    if inodes > 8 * block_size:  # the inode bitmap is one block too
        raise GeometryError(
            f"inodes_count {inodes_count} rounds to {inodes}, more than {8 * block_size}",
            where="inodes_count",
        )
    sb_block = first_data_block  # byte 1024 = block 1 at 1K, inside block 0 otherwise
    gdt_block = first_data_block + 1
    block_bitmap = gdt_block + 1
    inode_bitmap = block_bitmap + 1
    inode_table = inode_bitmap + 1
    root_dir_block = inode_table + itable_blocks
    lost_found_block = root_dir_block + 1
    journal_start = lost_found_block + 1 if journal_blocks else 0
    first_data_free = lost_found_block + 1 + journal_blocks
    # "metadata + 16 data blocks": root and lost+found count among the 16 data blocks
    need = root_dir_block + journal_blocks + 16
    if blocks_count < need:
        raise GeometryError(
            f"blocks_count {blocks_count} too small: metadata needs {root_dir_block + journal_blocks} blocks "
            f"and at least 16 data blocks must remain",
            where="blocks_count",
        )
    return Layout(
        block_size=block_size,
        blocks_count=blocks_count,
        inodes_count=inodes,
        inode_size=inode_size,
        first_data_block=first_data_block,
        blocks_per_group=blocks_per_group,
        sb_block=sb_block,
        gdt_block=gdt_block,
        block_bitmap=block_bitmap,
        inode_bitmap=inode_bitmap,
        inode_table=inode_table,
        inode_table_blocks=itable_blocks,
        root_dir_block=root_dir_block,
        lost_found_block=lost_found_block,
        journal_start=journal_start,
        journal_blocks=journal_blocks,
        first_data_free=first_data_free,
    )


def uuid_from_seed(seed: int, *, purpose: bytes = b"uuid") -> bytes:
    """A deterministic RFC 4122 version-4-shaped 16-byte UUID (``s_uuid``/``s_hash_seed``) from a seed."""
    raw = bytearray(hashlib.sha256(b"blkfuzz:" + purpose + b":" + str(seed).encode()).digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    return bytes(raw)


# --------------------------------------------------------------------------------------------------
# superblock and group descriptors
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SuperBlockInfo:
    """Decoded ``struct ext4_super_block`` (64-bit counts already combined)."""

    inodes_count: int
    blocks_count: int
    r_blocks_count: int
    free_blocks_count: int
    free_inodes_count: int
    first_data_block: int
    log_block_size: int
    block_size: int
    blocks_per_group: int
    clusters_per_group: int
    inodes_per_group: int
    mtime: int
    wtime: int
    mnt_count: int
    max_mnt_count: int
    magic: int
    state: int
    errors: int
    lastcheck: int
    rev_level: int
    first_ino: int
    inode_size: int
    block_group_nr: int
    feature_compat: int
    feature_incompat: int
    feature_ro_compat: int
    uuid: bytes
    volume_name: bytes
    reserved_gdt_blocks: int
    journal_uuid: bytes
    journal_inum: int
    last_orphan: int
    hash_seed: bytes
    def_hash_version: int
    jnl_backup_type: int
    desc_size: int  # effective descriptor size: s_desc_size with 64bit, else 32
    mkfs_time: int
    jnl_blocks: tuple[int, ...]
    min_extra_isize: int
    want_extra_isize: int
    flags: int
    log_groups_per_flex: int
    checksum_type: int
    kbytes_written: int
    first_meta_bg: int
    backup_bgs: tuple[int, int]
    checksum: int

    @property
    def group_count(self) -> int:
        """``ext4_groups_count``: ceil((blocks_count - first_data_block) / blocks_per_group)."""
        return -(-(self.blocks_count - self.first_data_block) // self.blocks_per_group)

    def has_compat(self, bit: int) -> bool:
        """``ext4_has_feature_*`` for s_feature_compat."""
        return bool(self.feature_compat & bit)

    def has_incompat(self, bit: int) -> bool:
        """``ext4_has_feature_*`` for s_feature_incompat."""
        return bool(self.feature_incompat & bit)

    def has_ro_compat(self, bit: int) -> bool:
        """``ext4_has_feature_*`` for s_feature_ro_compat."""
        return bool(self.feature_ro_compat & bit)


def journal_i_block(layout: Layout) -> bytes:
    """The 60-byte ``i_block`` of journal inode 8: one contiguous extent per 32768 blocks."""
    if not layout.journal_blocks:
        raise ValueError("layout has no journal")
    extents = []
    lblk = 0
    while lblk < layout.journal_blocks:
        n = min(EXT_INIT_MAX_LEN, layout.journal_blocks - lblk)
        extents.append(Extent(lblk, n, layout.journal_start + lblk, False))
        lblk += n
    root, tree = encode_extent_tree(extents, [], layout.block_size)
    assert not tree
    return root


def encode_superblock(
    layout: Layout,
    *,
    free_blocks: int,
    free_inodes: int,
    inline_data: bool,
    uuid: bytes,
    hash_seed: bytes | None = None,
    mkfs_time: int = FIXED_TIME,
    wtime: int = FIXED_TIME,
    mtime: int = 0,
    lastcheck: int = FIXED_TIME,
    mnt_count: int = 0,
    state: int = EXT4_VALID_FS,
    needs_recovery: bool = False,
    kbytes_written: int = 0,
    volume_name: bytes = b"",
    last_orphan: int = 0,
) -> bytes:
    """``struct ext4_super_block`` (1024 bytes) for the model's feature recipe (reference §12)."""
    if len(uuid) != 16:
        raise ValueError("uuid must be 16 bytes")
    if len(volume_name) > 16:
        raise ValueError("volume_name is at most 16 bytes")
    compat = MODEL_FEATURE_COMPAT
    incompat = MODEL_FEATURE_INCOMPAT
    if inline_data:
        incompat |= EXT4_FEATURE_INCOMPAT_INLINE_DATA
    jnl_blocks = [0] * 17
    if layout.has_journal:
        compat |= EXT4_FEATURE_COMPAT_HAS_JOURNAL
        # s_jnl_blocks: backup of the journal inode's i_block words + i_size_high + i_size
        jnl_blocks[:15] = struct.unpack("<15I", journal_i_block(layout))
        jsize = layout.journal_blocks * layout.block_size
        jnl_blocks[15] = jsize >> 32
        jnl_blocks[16] = jsize & 0xFFFFFFFF
    if needs_recovery:
        if not layout.has_journal:
            raise ValueError("needs_recovery without a journal")
        incompat |= EXT4_FEATURE_INCOMPAT_RECOVER
    sb = dict(_SB_ZERO)
    sb.update(
        s_inodes_count=layout.inodes_count,
        s_blocks_count_lo=layout.blocks_count,
        s_free_blocks_count_lo=free_blocks,
        s_free_inodes_count=free_inodes,
        s_first_data_block=layout.first_data_block,
        s_log_block_size=layout.log_block_size,
        s_log_cluster_size=layout.log_block_size,
        # mke2fs writes 8*bs even when the only group is shorter
        s_blocks_per_group=layout.blocks_per_group,
        s_clusters_per_group=layout.blocks_per_group,
        s_inodes_per_group=layout.inodes_count,
        s_mtime=mtime,
        s_wtime=wtime,
        s_mnt_count=mnt_count,
        s_max_mnt_count=0xFFFF,
        s_magic=EXT4_SUPER_MAGIC,
        s_state=state,
        s_errors=EXT4_ERRORS_CONTINUE,
        s_lastcheck=lastcheck,
        s_rev_level=EXT4_DYNAMIC_REV,
        s_first_ino=EXT4_GOOD_OLD_FIRST_INO,
        s_inode_size=layout.inode_size,
        s_feature_compat=compat,
        s_feature_incompat=incompat,
        s_feature_ro_compat=MODEL_FEATURE_RO_COMPAT,
        s_uuid=bytes(uuid),
        s_volume_name=volume_name.ljust(16, b"\0"),
        s_last_mounted=bytes(64),
        s_journal_uuid=bytes(16),
        s_journal_inum=EXT4_JOURNAL_INO if layout.has_journal else 0,
        s_last_orphan=last_orphan,
        s_hash_seed=bytes(hash_seed) if hash_seed is not None else bytes(uuid),
        s_def_hash_version=EXT2_HASH_HALF_MD4,
        s_jnl_backup_type=EXT3_JNL_BACKUP_BLOCKS if layout.has_journal else 0,
        s_desc_size=0,  # mke2fs writes 0 without 64bit
        s_default_mount_opts=EXT4_DEFM_XATTR_USER | EXT4_DEFM_ACL,
        s_mkfs_time=mkfs_time,
        s_jnl_blocks=jnl_blocks,
        s_min_extra_isize=EXT4_DEFAULT_EXTRA_ISIZE,
        s_want_extra_isize=EXT4_DEFAULT_EXTRA_ISIZE,
        # e2fsck sets one of the hash-signedness flags if neither is present; mke2fs on x86 sets signed
        s_flags=EXT2_FLAGS_SIGNED_HASH,
        s_kbytes_written=kbytes_written,
        s_backup_bgs=[0, 0],
    )
    out: bytes = EXT4_SUPER_BLOCK.build(sb)
    return out


#: decoded superblocks by their raw bytes: the oracle decodes the same few superblocks for every
#: crash state it reads (a pure function of 1 KiB, and SuperBlockInfo is frozen); bounded
_SUPERBLOCKS: dict[bytes, SuperBlockInfo] = {}
_SUPERBLOCKS_KEPT = 64


def decode_superblock(raw: bytes | bytearray | memoryview, *, where: str = "superblock") -> SuperBlockInfo:
    """Parse and sanity-check ``struct ext4_super_block`` (e2fsck ``check_super_block`` basics)."""
    key = bytes(raw)
    info = _SUPERBLOCKS.get(key)
    if info is None:
        info = _decode_superblock(key, where)
        if len(_SUPERBLOCKS) >= _SUPERBLOCKS_KEPT:
            del _SUPERBLOCKS[next(iter(_SUPERBLOCKS))]  # oldest first (dicts keep insertion order)
        _SUPERBLOCKS[key] = info
    return info


def _decode_superblock(raw: bytes, where: str) -> SuperBlockInfo:
    c = _parse(EXT4_SUPER_BLOCK, raw, where, "superblock")
    if c.s_magic != EXT4_SUPER_MAGIC:
        raise CorruptImageError(f"bad magic 0x{c.s_magic:04x} (expected 0xef53)", where=where)
    if c.s_log_block_size > 6:
        raise CorruptImageError(f"s_log_block_size {c.s_log_block_size} out of range", where=where)
    bs = EXT4_MIN_BLOCK_SIZE << c.s_log_block_size
    incompat, ro_compat = c.s_feature_incompat, c.s_feature_ro_compat
    unsupported = [
        (incompat, EXT4_FEATURE_INCOMPAT_COMPRESSION, "compression"),
        (incompat, EXT4_FEATURE_INCOMPAT_JOURNAL_DEV, "journal_dev"),
        (incompat, EXT4_FEATURE_INCOMPAT_META_BG, "meta_bg"),
        (incompat, EXT4_FEATURE_INCOMPAT_DIRDATA, "dirdata"),
        (ro_compat, EXT4_FEATURE_RO_COMPAT_BIGALLOC, "bigalloc"),
    ]
    for word, bit, name in unsupported:
        if word & bit:
            raise CorruptImageError(f"unsupported feature {name}", where=where)
    if c.s_rev_level == EXT4_GOOD_OLD_REV:
        inode_size, first_ino = EXT4_GOOD_OLD_INODE_SIZE, EXT4_GOOD_OLD_FIRST_INO
    elif c.s_rev_level == EXT4_DYNAMIC_REV:
        inode_size, first_ino = c.s_inode_size, c.s_first_ino
    else:
        raise CorruptImageError(f"unknown s_rev_level {c.s_rev_level}", where=where)
    if not (_is_pow2(inode_size) and EXT4_GOOD_OLD_INODE_SIZE <= inode_size <= bs):
        raise CorruptImageError(f"s_inode_size {inode_size} invalid for {bs}-byte blocks", where=where)
    is64 = bool(incompat & EXT4_FEATURE_INCOMPAT_64BIT)
    blocks = c.s_blocks_count_lo | ((c.s_blocks_count_hi << 32) if is64 else 0)
    r_blocks = c.s_r_blocks_count_lo | ((c.s_r_blocks_count_hi << 32) if is64 else 0)
    free_blocks = c.s_free_blocks_count_lo | ((c.s_free_blocks_count_hi << 32) if is64 else 0)
    if is64:
        desc_size = c.s_desc_size
        if not (_is_pow2(desc_size) and EXT4_MIN_DESC_SIZE_64BIT <= desc_size <= EXT4_MAX_DESC_SIZE):
            raise CorruptImageError(f"s_desc_size {desc_size} invalid with 64bit", where=where)
    else:
        desc_size = EXT4_MIN_DESC_SIZE
    if c.s_first_data_block != (1 if bs == 1024 else 0):
        raise CorruptImageError(
            f"s_first_data_block {c.s_first_data_block} wrong for {bs}-byte blocks", where=where
        )
    if blocks <= c.s_first_data_block:
        raise CorruptImageError(f"s_blocks_count {blocks} too small", where=where)
    if not 8 <= c.s_blocks_per_group <= 8 * bs or c.s_blocks_per_group % 8:
        raise CorruptImageError(f"s_blocks_per_group {c.s_blocks_per_group} invalid", where=where)
    if c.s_clusters_per_group != c.s_blocks_per_group or c.s_log_cluster_size != c.s_log_block_size:
        raise CorruptImageError("cluster size differs from block size without bigalloc", where=where)
    ipg = c.s_inodes_per_group
    if not 1 <= ipg <= 8 * bs:
        raise CorruptImageError(f"s_inodes_per_group {ipg} invalid", where=where)
    groups = -(-(blocks - c.s_first_data_block) // c.s_blocks_per_group)
    # ext4_fill_super: "inodes count not valid" unless it is exactly groups x inodes_per_group
    if c.s_inodes_count != ipg * groups:
        raise CorruptImageError(
            f"s_inodes_count {c.s_inodes_count} != {groups} groups x {ipg} inodes", where=where
        )
    if not EXT4_ROOT_INO < first_ino <= c.s_inodes_count:
        raise CorruptImageError(f"s_first_ino {first_ino} invalid", where=where)
    return SuperBlockInfo(
        inodes_count=c.s_inodes_count,
        blocks_count=blocks,
        r_blocks_count=r_blocks,
        free_blocks_count=free_blocks,
        free_inodes_count=c.s_free_inodes_count,
        first_data_block=c.s_first_data_block,
        log_block_size=c.s_log_block_size,
        block_size=bs,
        blocks_per_group=c.s_blocks_per_group,
        clusters_per_group=c.s_clusters_per_group,
        inodes_per_group=ipg,
        mtime=c.s_mtime,
        wtime=c.s_wtime,
        mnt_count=c.s_mnt_count,
        max_mnt_count=c.s_max_mnt_count,
        magic=c.s_magic,
        state=c.s_state,
        errors=c.s_errors,
        lastcheck=c.s_lastcheck,
        rev_level=c.s_rev_level,
        first_ino=first_ino,
        inode_size=inode_size,
        block_group_nr=c.s_block_group_nr,
        feature_compat=c.s_feature_compat,
        feature_incompat=incompat,
        feature_ro_compat=ro_compat,
        uuid=bytes(c.s_uuid),
        volume_name=bytes(c.s_volume_name).rstrip(b"\0"),
        reserved_gdt_blocks=c.s_reserved_gdt_blocks,
        journal_uuid=bytes(c.s_journal_uuid),
        journal_inum=c.s_journal_inum,
        last_orphan=c.s_last_orphan,
        hash_seed=bytes(c.s_hash_seed),
        def_hash_version=c.s_def_hash_version,
        jnl_backup_type=c.s_jnl_backup_type,
        desc_size=desc_size,
        mkfs_time=c.s_mkfs_time,
        jnl_blocks=tuple(c.s_jnl_blocks),
        min_extra_isize=c.s_min_extra_isize,
        want_extra_isize=c.s_want_extra_isize,
        flags=c.s_flags,
        log_groups_per_flex=c.s_log_groups_per_flex,
        checksum_type=c.s_checksum_type,
        kbytes_written=c.s_kbytes_written,
        first_meta_bg=c.s_first_meta_bg,
        backup_bgs=(c.s_backup_bgs[0], c.s_backup_bgs[1]),
        checksum=c.s_checksum,
    )


@dataclass(frozen=True)
class GroupDesc:
    """Decoded ``struct ext4_group_desc`` (hi halves combined for 64-byte descriptors)."""

    block_bitmap: int
    inode_bitmap: int
    inode_table: int
    free_blocks_count: int
    free_inodes_count: int
    used_dirs_count: int
    flags: int
    itable_unused: int
    checksum: int
    block_bitmap_csum: int
    inode_bitmap_csum: int


def encode_group_desc(
    layout: Layout,
    free_blocks: int,
    free_inodes: int,
    used_dirs: int,
    *,
    desc_size: int = EXT4_MIN_DESC_SIZE,
    flags: int = 0,
    itable_unused: int = 0,
) -> bytes:
    """``struct ext4_group_desc`` of group 0 (32 bytes, or 64 with the 64bit layout)."""
    limit = 0xFFFF if desc_size == EXT4_MIN_DESC_SIZE else 0xFFFFFFFF
    for name, value in (("free_blocks", free_blocks), ("free_inodes", free_inodes), ("used_dirs", used_dirs)):
        if not 0 <= value <= limit:
            raise ValueError(f"{name} {value} does not fit a {desc_size}-byte descriptor")
    gd = dict(_GD64_ZERO)
    gd.update(
        bg_block_bitmap_lo=layout.block_bitmap,
        bg_inode_bitmap_lo=layout.inode_bitmap,
        bg_inode_table_lo=layout.inode_table,
        bg_free_blocks_count_lo=free_blocks & 0xFFFF,
        bg_free_inodes_count_lo=free_inodes & 0xFFFF,
        bg_used_dirs_count_lo=used_dirs & 0xFFFF,
        bg_flags=flags,
        bg_itable_unused_lo=itable_unused & 0xFFFF,
    )
    if desc_size == EXT4_MIN_DESC_SIZE:
        out32: bytes = EXT4_GROUP_DESC32.build({k: gd[k] for k in _GD32_KEYS})
        return out32
    if desc_size != EXT4_MIN_DESC_SIZE_64BIT:
        raise ValueError(f"desc_size {desc_size} must be 32 or 64")
    gd.update(
        bg_free_blocks_count_hi=free_blocks >> 16,
        bg_free_inodes_count_hi=free_inodes >> 16,
        bg_used_dirs_count_hi=used_dirs >> 16,
        bg_itable_unused_hi=itable_unused >> 16,
    )
    out64: bytes = EXT4_GROUP_DESC64.build(gd)
    return out64


def decode_group_desc(raw: bytes | bytearray | memoryview, *, desc_size: int, where: str) -> GroupDesc:
    """Parse one ``struct ext4_group_desc`` (``desc_size`` 32, or ≥ 64 with 64bit)."""
    if desc_size == EXT4_MIN_DESC_SIZE:
        c = _parse(EXT4_GROUP_DESC32, raw, where, "group descriptor")
        return GroupDesc(
            block_bitmap=c.bg_block_bitmap_lo,
            inode_bitmap=c.bg_inode_bitmap_lo,
            inode_table=c.bg_inode_table_lo,
            free_blocks_count=c.bg_free_blocks_count_lo,
            free_inodes_count=c.bg_free_inodes_count_lo,
            used_dirs_count=c.bg_used_dirs_count_lo,
            flags=c.bg_flags,
            itable_unused=c.bg_itable_unused_lo,
            checksum=c.bg_checksum,
            block_bitmap_csum=c.bg_block_bitmap_csum_lo,
            inode_bitmap_csum=c.bg_inode_bitmap_csum_lo,
        )
    if desc_size < EXT4_MIN_DESC_SIZE_64BIT:
        raise CorruptImageError(f"descriptor size {desc_size} invalid", where=where)
    c = _parse(EXT4_GROUP_DESC64, raw, where, "group descriptor")
    return GroupDesc(
        block_bitmap=c.bg_block_bitmap_lo | c.bg_block_bitmap_hi << 32,
        inode_bitmap=c.bg_inode_bitmap_lo | c.bg_inode_bitmap_hi << 32,
        inode_table=c.bg_inode_table_lo | c.bg_inode_table_hi << 32,
        free_blocks_count=c.bg_free_blocks_count_lo | c.bg_free_blocks_count_hi << 16,
        free_inodes_count=c.bg_free_inodes_count_lo | c.bg_free_inodes_count_hi << 16,
        used_dirs_count=c.bg_used_dirs_count_lo | c.bg_used_dirs_count_hi << 16,
        flags=c.bg_flags,
        itable_unused=c.bg_itable_unused_lo | c.bg_itable_unused_hi << 16,
        checksum=c.bg_checksum,
        block_bitmap_csum=c.bg_block_bitmap_csum_lo | c.bg_block_bitmap_csum_hi << 16,
        inode_bitmap_csum=c.bg_inode_bitmap_csum_lo | c.bg_inode_bitmap_csum_hi << 16,
    )


# --------------------------------------------------------------------------------------------------
# bitmaps
# --------------------------------------------------------------------------------------------------


def encode_bitmap(used: np.ndarray, block_size: int) -> bytes:
    """One block/inode bitmap block (``ext4_block_bitmap``): bit i = LSB-first; padding bits set."""
    used = np.asarray(used, dtype=bool)
    nbits = 8 * block_size
    if used.ndim != 1 or used.size > nbits:
        raise ValueError(f"bitmap of {used.size} bits does not fit a {block_size}-byte block")
    # e2fsck: "Padding at end of inode/block bitmap is not set" unless bits past the group are 1
    bits = np.ones(nbits, dtype=bool)
    bits[: used.size] = used
    return np.packbits(bits, bitorder="little").tobytes()


def decode_bitmap(data: bytes | bytearray | memoryview | np.ndarray, nbits: int) -> np.ndarray:
    """The first ``nbits`` bits of a bitmap block as a bool array (``ext4_test_bit`` order)."""
    arr = np.frombuffer(bytes(data), dtype=np.uint8) if not isinstance(data, np.ndarray) else data
    if nbits < 0 or nbits > 8 * arr.size:
        raise CorruptImageError(f"bitmap of {arr.size} bytes has no {nbits} bits", where="bitmap")
    return np.unpackbits(arr.astype(np.uint8, copy=False), bitorder="little", count=nbits).astype(bool)


def bitmap_padding_ok(data: bytes | bytearray | memoryview, nbits: int) -> bool:
    """True when every bit past ``nbits`` is set (e2fsck ``check_block_bitmap_end``)."""
    arr = np.frombuffer(bytes(data), dtype=np.uint8)
    bits = np.unpackbits(arr, bitorder="little")
    return bool(bits[nbits:].all())


# --------------------------------------------------------------------------------------------------
# inodes and in-inode extended attributes
# --------------------------------------------------------------------------------------------------


def ea_hash(name: bytes, value: bytes) -> int:
    """``ext2fs_ext_attr_hash_entry`` / kernel ``ext4_xattr_hash_entry`` of one xattr entry."""
    h = 0
    for ch in name:
        h = ((h << 5) ^ (h >> 27) ^ ch) & 0xFFFFFFFF
    if value:
        for (w,) in struct.iter_unpack("<I", value + bytes(-len(value) % 4)):
            h = ((h << 16) ^ (h >> 16) ^ w) & 0xFFFFFFFF
    return h


def _xattr_entry_size(name_len: int) -> int:
    """EXT4_XATTR_LEN(name_len): 16-byte entry + name, rounded to 4."""
    return (16 + name_len + EXT4_XATTR_PAD - 1) & ~(EXT4_XATTR_PAD - 1)


def _xattr_value_size(size: int) -> int:
    """EXT4_XATTR_SIZE(size): value rounded to 4."""
    return (size + EXT4_XATTR_PAD - 1) & ~(EXT4_XATTR_PAD - 1)


def max_inline_value_size(inode_size: int = 256, extra_isize: int = EXT4_DEFAULT_EXTRA_ISIZE) -> int:
    """Largest ``system.data`` value that fits the ibody xattr area (``ext4_get_max_inline_size``)."""
    area = inode_size - EXT4_GOOD_OLD_INODE_SIZE - extra_isize
    # ibody header (4) + one entry with the 4-byte name "data" (20) + the 4-byte end marker
    free = area - 4 - _xattr_entry_size(len(EXT4_XATTR_SYSTEM_DATA)) - 4
    return max(0, free & ~(EXT4_XATTR_PAD - 1))


def inline_capacity(inode_size: int = 256, extra_isize: int = EXT4_DEFAULT_EXTRA_ISIZE) -> int:
    """Most bytes an inline file can hold: i_block (60) + max ``system.data`` (128 for 256-byte inodes)."""
    if inode_size <= EXT4_GOOD_OLD_INODE_SIZE:
        return 0  # 128-byte inodes have no xattr space; mke2fs refuses inline_data there
    return EXT4_MIN_INLINE_DATA_SIZE + max_inline_value_size(inode_size, extra_isize)


@dataclass
class RawInode:
    """Plain-data ``struct ext4_inode`` plus its ``system.data`` in-inode xattr (inline data tail)."""

    mode: int = 0
    uid: int = 0
    gid: int = 0
    size: int = 0
    links_count: int = 0
    blocks: int = 0  # i_blocks in 512-byte units (fs blocks with HUGE_FILE_FL)
    flags: int = 0
    i_block: bytes = bytes(60)
    generation: int = 0
    atime: int = 0
    ctime: int = 0
    mtime: int = 0
    crtime: int = 0
    dtime: int = 0
    extra_isize: int = EXT4_DEFAULT_EXTRA_ISIZE
    inline_value: bytes | None = None  # system.data value; None = no such xattr, b"" = present and empty
    file_acl: int = 0
    atime_extra: int = 0
    ctime_extra: int = 0
    mtime_extra: int = 0
    crtime_extra: int = 0
    #: other in-inode xattrs as (name_index, name, value), written after system.data
    xattrs: tuple[tuple[int, bytes, bytes], ...] = ()
    #: write the ibody header (magic + end marker) even with no entries, as e2fsprogs does for new inodes
    xattr_header: bool = False

    @property
    def file_type(self) -> int:
        """``i_mode & S_IFMT``."""
        return self.mode & S_IFMT

    @property
    def is_reg(self) -> bool:
        """``S_ISREG(i_mode)``."""
        return self.mode & S_IFMT == S_IFREG

    @property
    def is_dir(self) -> bool:
        """``S_ISDIR(i_mode)``."""
        return self.mode & S_IFMT == S_IFDIR

    @property
    def has_extents(self) -> bool:
        """``EXT4_EXTENTS_FL`` in i_flags."""
        return bool(self.flags & EXT4_EXTENTS_FL)

    @property
    def has_inline_data(self) -> bool:
        """``EXT4_INLINE_DATA_FL`` in i_flags."""
        return bool(self.flags & EXT4_INLINE_DATA_FL)


def encode_inode(ino: RawInode, inode_size: int = 256) -> bytes:
    """``struct ext4_inode`` + ibody ``ext4_xattr_ibody_header`` (``system.data``) as e2fsprogs writes it."""
    if not _is_pow2(inode_size) or inode_size < EXT4_GOOD_OLD_INODE_SIZE:
        raise ValueError(f"inode_size {inode_size} invalid")
    if len(ino.i_block) != 60:
        raise ValueError("i_block must be 60 bytes")
    large = inode_size > EXT4_GOOD_OLD_INODE_SIZE
    extra_isize = ino.extra_isize if large else 0
    if extra_isize % 4 or not 0 <= extra_isize <= min(EXT4_INODE_EXTRA_FIELDS_SIZE, inode_size - 128):
        raise ValueError(f"extra_isize {extra_isize} invalid for {inode_size}-byte inodes")
    fields = {
        "i_mode": ino.mode,
        "i_uid": ino.uid & 0xFFFF,
        "i_size_lo": ino.size & 0xFFFFFFFF,
        "i_atime": ino.atime & 0xFFFFFFFF,
        "i_ctime": ino.ctime & 0xFFFFFFFF,
        "i_mtime": ino.mtime & 0xFFFFFFFF,
        "i_dtime": ino.dtime & 0xFFFFFFFF,
        "i_gid": ino.gid & 0xFFFF,
        "i_links_count": ino.links_count,
        "i_blocks_lo": ino.blocks & 0xFFFFFFFF,
        "i_flags": ino.flags,
        "l_i_version": 0,
        "i_block": bytes(ino.i_block),
        "i_generation": ino.generation,
        "i_file_acl_lo": ino.file_acl & 0xFFFFFFFF,
        "i_size_high": ino.size >> 32,
        "i_obso_faddr": 0,
        "l_i_blocks_high": ino.blocks >> 32,
        "l_i_file_acl_high": ino.file_acl >> 32,
        "l_i_uid_high": ino.uid >> 16,
        "l_i_gid_high": ino.gid >> 16,
        "l_i_checksum_lo": 0,
        "l_i_reserved": 0,
    }
    if not large:
        if ino.inline_value is not None or ino.xattrs:
            raise ValueError("128-byte inodes have no room for in-inode xattrs")
        base: bytes = EXT4_INODE_BASE.build(fields)
        return base
    fields.update(
        i_extra_isize=extra_isize,
        i_checksum_hi=0,
        i_ctime_extra=ino.ctime_extra,
        i_mtime_extra=ino.mtime_extra,
        i_atime_extra=ino.atime_extra,
        i_crtime=ino.crtime & 0xFFFFFFFF,
        i_crtime_extra=ino.crtime_extra,
        i_version_hi=0,
        i_projid=0,
    )
    buf = bytearray(inode_size)
    head = EXT4_INODE_LARGE.build(fields)
    area_start = EXT4_GOOD_OLD_INODE_SIZE + extra_isize
    # fields past i_extra_isize do not exist in this inode: that space belongs to the xattr area
    buf[:area_start] = head[:area_start]
    entries: list[tuple[int, bytes, bytes]] = []
    if ino.inline_value is not None:
        entries.append((EXT4_XATTR_INDEX_SYSTEM, EXT4_XATTR_SYSTEM_DATA, bytes(ino.inline_value)))
    entries.extend((i, bytes(n), bytes(v)) for i, n, v in ino.xattrs)
    if entries or ino.xattr_header:
        _write_ibody_xattrs(buf, area_start, entries)
    return bytes(buf)


def _write_ibody_xattrs(buf: bytearray, area_start: int, entries: list[tuple[int, bytes, bytes]]) -> None:
    """Lay out ``ext4_xattr_ibody_header`` + entries; values packed from the inode end (e2fsprogs order)."""
    end = len(buf)
    if area_start + 4 + 4 > end:
        raise ValueError("no room for in-inode xattrs")
    buf[area_start : area_start + 4] = EXT4_XATTR_IBODY_HEADER.build({"h_magic": EXT4_XATTR_MAGIC})
    first = area_start + 4  # in-inode e_value_offs is relative to the first entry
    off = first
    value_end = end
    for index, name, value in entries:
        if not 1 <= len(name) <= 255:
            raise ValueError(f"xattr name {name!r} must be 1..255 bytes")
        esize = _xattr_entry_size(len(name))
        vsize = _xattr_value_size(len(value))
        value_end -= vsize
        # the 4-byte end marker must still fit between the entries and the values
        if off + esize + 4 > value_end:
            raise ValueError(f"in-inode xattrs do not fit ({len(value)}-byte value for {name!r})")
        entry = {
            "e_name_len": len(name),
            "e_name_index": index,
            "e_value_offs": value_end - first,
            "e_value_inum": 0,
            "e_value_size": len(value),
            # in-inode entries carry hash 0, as both the kernel (ext4_xattr_set_entry hashes only
            # block entries) and e2fsprogs write them; e2fsck accepts 0 but aborts on a wrong non-zero one
            "e_hash": 0,
        }
        buf[off : off + 16] = EXT4_XATTR_ENTRY.build(entry)
        buf[off + 16 : off + 16 + len(name)] = name
        buf[value_end : value_end + len(value)] = value
        off += esize
    # end marker: the 4 zero bytes at ``off`` are already zero


def _decode_ibody_xattrs(raw: bytes, area_start: int, where: str) -> list[tuple[int, bytes, bytes]] | None:
    """Entries of the in-inode xattr area (kernel ``xattr_check_inode``/e2fsck ``check_ea_in_inode``).

    None when the area has no ``ext4_xattr_ibody_header`` magic.
    """
    end = len(raw)
    if area_start + 4 > end:
        return None
    (magic,) = _U32.unpack_from(raw, area_start)
    if magic != EXT4_XATTR_MAGIC:
        return None
    first = area_start + 4
    off = first
    out: list[tuple[int, bytes, bytes]] = []
    regions: list[tuple[int, int, bytes]] = []
    while True:
        if off + 4 > end:
            raise CorruptImageError(
                "in-inode xattr entries run past the inode without an end marker", where=where
            )
        if _U32.unpack_from(raw, off)[0] == 0:
            break
        if off + 16 > end:
            raise CorruptImageError("in-inode xattr entry truncated", where=where)
        e = EXT4_XATTR_ENTRY.parse(raw[off : off + 16])
        esize = _xattr_entry_size(e.e_name_len)
        if e.e_name_len == 0 or off + esize > end:
            raise CorruptImageError(f"in-inode xattr entry at byte {off} has bad name length", where=where)
        name = raw[off + 16 : off + 16 + e.e_name_len]
        if e.e_value_inum:
            raise CorruptImageError(f"xattr {name!r} stored in an EA inode (unsupported)", where=where)
        vstart = first + e.e_value_offs
        if e.e_value_size and (vstart < first or vstart + e.e_value_size > end):
            raise CorruptImageError(
                f"xattr {name!r} value (offs {e.e_value_offs}, size {e.e_value_size}) outside the inode",
                where=where,
            )
        value = raw[vstart : vstart + e.e_value_size] if e.e_value_size else b""
        if e.e_value_size:
            regions.append((vstart, vstart + _xattr_value_size(e.e_value_size), name))
        out.append((e.e_name_index, bytes(name), bytes(value)))
        off += esize
    # e2fsck region_allocate: header+entries+end marker and the (padded) values must not overlap
    regions.sort()
    prev_end, prev_name = off + 4, b"(entry table)"
    for start, stop, name in regions:
        if start < prev_end or stop > end:
            raise CorruptImageError(
                f"xattr {name!r} value overlaps {prev_name!r} or the inode end", where=where
            )
        prev_end, prev_name = stop, name
    return out


def decode_inode(raw: bytes | bytearray | memoryview, ino: int) -> RawInode:
    """Parse ``struct ext4_inode`` and its in-inode xattrs; ``ino`` is only used in error messages."""
    where = f"inode {ino}"
    raw = bytes(raw)
    size = len(raw)
    if size < EXT4_GOOD_OLD_INODE_SIZE or not _is_pow2(size):
        raise CorruptImageError(f"inode record of {size} bytes", where=where)
    if size == EXT4_GOOD_OLD_INODE_SIZE:
        c = EXT4_INODE_BASE.parse(raw)
        extra_isize = 0
    else:
        head = raw[: EXT4_GOOD_OLD_INODE_SIZE + EXT4_INODE_EXTRA_FIELDS_SIZE]
        c = EXT4_INODE_LARGE.parse(head)
        extra_isize = c.i_extra_isize
        if extra_isize % 4 or EXT4_GOOD_OLD_INODE_SIZE + extra_isize > size:
            raise CorruptImageError(
                f"i_extra_isize {extra_isize} invalid for {size}-byte inodes", where=where
            )

    def extra(field: str, offset: int) -> int:
        # a field exists only if i_extra_isize covers it (EXT4_FITS_IN_INODE)
        return int(c[field]) if extra_isize >= offset + 4 - EXT4_GOOD_OLD_INODE_SIZE else 0

    inline_value: bytes | None = None
    others: list[tuple[int, bytes, bytes]] = []
    entries = None
    if size > EXT4_GOOD_OLD_INODE_SIZE:
        entries = _decode_ibody_xattrs(raw, EXT4_GOOD_OLD_INODE_SIZE + extra_isize, where)
        for index, name, value in entries or ():
            if index == EXT4_XATTR_INDEX_SYSTEM and name == EXT4_XATTR_SYSTEM_DATA and inline_value is None:
                inline_value = value
            else:
                others.append((index, name, value))
    return RawInode(
        mode=c.i_mode,
        uid=c.i_uid | c.l_i_uid_high << 16,
        gid=c.i_gid | c.l_i_gid_high << 16,
        size=c.i_size_lo | c.i_size_high << 32,
        links_count=c.i_links_count,
        blocks=c.i_blocks_lo | c.l_i_blocks_high << 32,
        flags=c.i_flags,
        i_block=bytes(c.i_block),
        generation=c.i_generation,
        atime=c.i_atime,
        ctime=c.i_ctime,
        mtime=c.i_mtime,
        crtime=extra("i_crtime", 0x90),
        dtime=c.i_dtime,
        extra_isize=extra_isize,
        inline_value=inline_value,
        file_acl=c.i_file_acl_lo | c.l_i_file_acl_high << 32,
        atime_extra=extra("i_atime_extra", 0x8C),
        ctime_extra=extra("i_ctime_extra", 0x84),
        mtime_extra=extra("i_mtime_extra", 0x88),
        crtime_extra=extra("i_crtime_extra", 0x94),
        xattrs=tuple(others),
        xattr_header=entries is not None,
    )


# --------------------------------------------------------------------------------------------------
# extent trees
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Extent:
    """One leaf ``struct ext4_extent``: logical ``[lblk, lblk+len)`` -> physical ``[pblk, pblk+len)``."""

    lblk: int
    len: int
    pblk: int
    unwritten: bool

    @property
    def end(self) -> int:
        """First logical block after the extent."""
        return self.lblk + self.len


def extents_per_block(block_size: int) -> int:
    """``ext4_ext_space_block``: entries in a tree block (340 at 4K, 84 at 1K)."""
    return (block_size - 12) // 12


def _tree_level_sizes(n_extents: int, block_size: int) -> list[int]:
    """Number of tree blocks per level, leaves first, for the densest tree holding ``n_extents``."""
    if n_extents <= EXT4_EXT_ROOT_ENTRIES:
        return []
    per = extents_per_block(block_size)
    levels: list[int] = []
    n = n_extents
    while n > EXT4_EXT_ROOT_ENTRIES:
        n = -(-n // per)
        levels.append(n)
    if len(levels) > EXT4_MAX_EXTENT_DEPTH:
        raise ValueError(f"{n_extents} extents need depth {len(levels)} > {EXT4_MAX_EXTENT_DEPTH}")
    return levels


def extent_tree_blocks_needed(n_extents: int, block_size: int) -> int:
    """Tree blocks (leaves + index blocks) an ext4 extent tree of ``n_extents`` leaves needs."""
    if n_extents < 0:
        raise ValueError("negative extent count")
    return sum(_tree_level_sizes(n_extents, block_size))


def _encode_header(entries: int, maximum: int, depth: int) -> bytes:
    out: bytes = EXT4_EXTENT_HEADER.build(
        {
            "eh_magic": EXT4_EXT_MAGIC,
            "eh_entries": entries,
            "eh_max": maximum,
            "eh_depth": depth,
            "eh_generation": 0,
        }
    )
    return out


def _encode_index_entry(lblk: int, child: int) -> bytes:
    out: bytes = EXT4_EXTENT_IDX.build(
        {"ei_block": lblk, "ei_leaf_lo": child & 0xFFFFFFFF, "ei_leaf_hi": child >> 32, "ei_unused": 0}
    )
    return out


def validate_extents(extents: Sequence[Extent]) -> None:
    """Raise ValueError unless extents are sorted, disjoint and within ext4's length limits."""
    prev_end = 0
    for i, e in enumerate(extents):
        limit = EXT_UNWRITTEN_MAX_LEN if e.unwritten else EXT_INIT_MAX_LEN
        if not 1 <= e.len <= limit:
            kind = "unwritten" if e.unwritten else "initialized"
            raise ValueError(f"extent {i}: {kind} length {e.len} outside 1..{limit}")
        if e.lblk < prev_end:
            raise ValueError(f"extent {i} at lblk {e.lblk} overlaps or is out of order")
        if e.lblk + e.len > EXT4_MAX_LOGICAL_BLOCK:
            raise ValueError(f"extent {i} ends past logical block 2^32")
        if e.pblk < 0 or e.pblk + e.len > 1 << 48:
            raise ValueError(f"extent {i} physical block {e.pblk} outside 48 bits")
        prev_end = e.lblk + e.len


def encode_extent_tree(
    extents: list[Extent], tree_blocks: list[int], block_size: int
) -> tuple[bytes, dict[int, bytes]]:
    """Build an extent tree (``ext4_extent_header`` + ``ext4_extent``/``ext4_extent_idx`` nodes).

    Returns the 60-byte i_block root and ``{block number: block bytes}`` for the tree blocks.
    ``tree_blocks`` (``extent_tree_blocks_needed`` of them) are used leaves first, then each index
    level, left to right; leaves are filled densely because e2fsck offers to "narrow"/"shorten"
    sparser trees (pass 1E).
    """
    validate_extents(extents)
    levels = _tree_level_sizes(len(extents), block_size)
    if len(tree_blocks) != sum(levels):
        raise ValueError(f"{len(extents)} extents need {sum(levels)} tree blocks, got {len(tree_blocks)}")
    if len(set(tree_blocks)) != len(tree_blocks):
        raise ValueError("tree blocks must be distinct")
    per = extents_per_block(block_size)
    blocks: dict[int, bytes] = {}
    # entries of the current level as one structured array (first lblk of each entry alongside)
    leaf = np.zeros(len(extents), dtype=EXT4_EXTENT_DTYPE)
    if extents:
        cols = np.array([(e.lblk, e.len, e.pblk, e.unwritten) for e in extents], dtype=np.int64)
        leaf["ee_block"] = cols[:, 0]
        leaf["ee_len"] = cols[:, 1] + cols[:, 3] * EXT_INIT_MAX_LEN  # unwritten: length + 32768
        leaf["ee_start_hi"] = cols[:, 2] >> 32
        leaf["ee_start_lo"] = cols[:, 2] & 0xFFFFFFFF
    entries: np.ndarray = leaf
    firsts = np.array([e.lblk for e in extents], dtype=np.int64)
    depth = 0
    pos = 0
    for count in levels:
        children = np.array(tree_blocks[pos : pos + count], dtype=np.int64)
        for j in range(count):
            chunk = entries[j * per : (j + 1) * per]
            body = _encode_header(len(chunk), per, depth) + chunk.tobytes()
            blocks[int(children[j])] = body.ljust(block_size, b"\0")
        parents = np.zeros(count, dtype=EXT4_EXTENT_IDX_DTYPE)
        firsts = firsts[::per][:count]
        parents["ei_block"] = firsts
        parents["ei_leaf_lo"] = children & 0xFFFFFFFF
        parents["ei_leaf_hi"] = children >> 32
        entries = parents
        pos += count
        depth += 1
    root = _encode_header(len(entries), EXT4_EXT_ROOT_ENTRIES, depth) + entries.tobytes()
    return root.ljust(60, b"\0"), blocks


def decode_extent_tree(
    i_block: bytes,
    read_block: Callable[[int], bytes | memoryview],
    block_size: int,
    *,
    where: str,
    max_block: int | None = None,
) -> tuple[list[Extent], list[int]]:
    """Walk an extent tree from the i_block root (kernel ``ext4_ext_check``/``__ext4_ext_check``).

    Returns the leaf extents in logical order and the tree block numbers (leaves first, then each
    index level, left to right: the order ``encode_extent_tree`` consumes).  ``max_block`` bounds
    physical block numbers (exclusive).
    """
    if len(i_block) < 60:
        raise CorruptImageError("i_block shorter than 60 bytes", where=where)
    per = extents_per_block(block_size)
    by_depth: dict[int, list[int]] = {}
    seen: set[int] = set()
    leaves: list[Extent] = []

    def check_phys(pblk: int, length: int, what: str) -> None:
        if max_block is not None and (pblk < 1 or pblk + length > max_block):
            raise CorruptImageError(f"{what} block {pblk}+{length} outside the filesystem", where=where)

    def walk(node: bytes, capacity: int, expect_depth: int | None, lo: int, hi: int, label: str) -> None:
        h = EXT4_EXTENT_HEADER.parse(node[:12])
        if h.eh_magic != EXT4_EXT_MAGIC:
            raise CorruptImageError(f"{label}: bad extent header magic 0x{h.eh_magic:04x}", where=where)
        if h.eh_max == 0 or h.eh_max > capacity:
            raise CorruptImageError(f"{label}: eh_max {h.eh_max} exceeds room for {capacity}", where=where)
        if h.eh_entries > h.eh_max:
            raise CorruptImageError(f"{label}: eh_entries {h.eh_entries} > eh_max {h.eh_max}", where=where)
        if h.eh_depth > EXT4_MAX_EXTENT_DEPTH:
            raise CorruptImageError(f"{label}: eh_depth {h.eh_depth} > {EXT4_MAX_EXTENT_DEPTH}", where=where)
        if expect_depth is not None:
            if h.eh_depth != expect_depth:
                raise CorruptImageError(
                    f"{label}: eh_depth {h.eh_depth}, expected {expect_depth}", where=where
                )
            if h.eh_entries == 0:
                raise CorruptImageError(f"{label}: empty non-root node", where=where)
        n = h.eh_entries
        if h.eh_depth == 0:
            arr = np.frombuffer(node, dtype=EXT4_EXTENT_DTYPE, count=n, offset=12)
            lblk = arr["ee_block"].astype(np.int64)
            raw_len = arr["ee_len"].astype(np.int64)
            unwritten = raw_len > EXT_INIT_MAX_LEN
            length = np.where(unwritten, raw_len - EXT_INIT_MAX_LEN, raw_len)
            pblk = arr["ee_start_lo"].astype(np.int64) | arr["ee_start_hi"].astype(np.int64) << 32
            ends = lblk + length
            starts_ok = np.empty(n, dtype=bool)
            if n:
                starts_ok[0] = lblk[0] >= lo
                starts_ok[1:] = lblk[1:] >= ends[:-1]
            bad = (length == 0) | ~starts_ok | (ends > hi)
            if max_block is not None:
                bad |= (pblk < 1) | (pblk + length > max_block)
            if bad.any():
                k = int(np.argmax(bad))
                raise CorruptImageError(
                    f"{label}: extent {k} (lblk {lblk[k]}, len {length[k]}, pblk {pblk[k]}) is empty, "
                    f"out of order, outside [{lo}, {hi}) or outside the filesystem",
                    where=where,
                )
            leaves.extend(
                Extent(a, b, c, d)
                for a, b, c, d in zip(lblk.tolist(), length.tolist(), pblk.tolist(), unwritten.tolist())
            )
            return
        idx = np.frombuffer(node, dtype=EXT4_EXTENT_IDX_DTYPE, count=n, offset=12)
        first = idx["ei_block"].astype(np.int64).tolist()
        child_blocks = (
            idx["ei_leaf_lo"].astype(np.int64) | idx["ei_leaf_hi"].astype(np.int64) << 32
        ).tolist()
        prev = -1
        for k in range(n):
            if first[k] <= prev or first[k] < lo or first[k] >= hi:
                raise CorruptImageError(
                    f"{label}: index entry {k} lblk {first[k]} out of order or outside [{lo}, {hi})",
                    where=where,
                )
            prev = first[k]
            child = child_blocks[k]
            check_phys(child, 1, f"{label}: index entry {k}")
            if child in seen:
                raise CorruptImageError(f"{label}: tree block {child} referenced twice", where=where)
            seen.add(child)
            by_depth.setdefault(h.eh_depth - 1, []).append(child)
            data = read_block(child)
            if len(data) != block_size:
                raise CorruptImageError(f"tree block {child} read {len(data)} bytes", where=where)
            # e2fsck scan_extent_node: a child's entries start at its index entry's ei_block
            child_hi = first[k + 1] if k + 1 < n else hi
            walk(bytes(data), per, h.eh_depth - 1, first[k], child_hi, f"tree block {child}")

    walk(bytes(i_block[:60]), EXT4_EXT_ROOT_ENTRIES, None, 0, EXT4_MAX_LOGICAL_BLOCK, "i_block root")
    tree_blocks = [b for d in sorted(by_depth) for b in by_depth[d]]
    return leaves, tree_blocks


# --------------------------------------------------------------------------------------------------
# directory entries
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DirEntry:
    """One ``struct ext4_dir_entry_2`` (name without the NUL, file_type = EXT4_FT_*)."""

    ino: int
    name: bytes
    file_type: int


def dir_rec_len(name_len: int) -> int:
    """EXT4_DIR_REC_LEN: the minimum rec_len of an entry with a ``name_len``-byte name."""
    return (EXT4_DIR_ENTRY_HEADER_LEN + name_len + EXT4_DIR_ROUND - 1) & ~(EXT4_DIR_ROUND - 1)


def _rec_len_to_disk(rec_len: int, block_size: int) -> int:
    """``ext4_rec_len_to_disk``: 65536-byte records are stored as EXT4_MAX_REC_LEN."""
    if rec_len == 65536 and block_size == 65536:
        return EXT4_MAX_REC_LEN
    return rec_len


def _rec_len_from_disk(dlen: int, block_size: int) -> int:
    """``ext4_rec_len_from_disk``."""
    if block_size == 65536 and (dlen == EXT4_MAX_REC_LEN or dlen == 0):
        return 65536
    return dlen


def dir_entries_fit(entries: Sequence[DirEntry], block_size: int) -> bool:
    """True when ``entries`` fit in one directory block (or inline region) of ``block_size`` bytes."""
    return sum(dir_rec_len(len(e.name)) for e in entries) <= block_size


def encode_dir_block(entries: list[DirEntry], block_size: int) -> bytes:
    """A linear directory block of ``ext4_dir_entry_2``s tiling it exactly (last rec_len to the end).

    ``block_size`` may also be an inline-dir region size (56, or the system.data value size).
    An empty list gives one unused entry (inode 0) spanning the block.
    """
    if block_size < EXT4_DIR_ENTRY_HEADER_LEN or block_size % 4:
        raise ValueError(f"directory region of {block_size} bytes")
    if not entries:
        return EXT4_DIR_ENTRY_2.build(
            {"inode": 0, "rec_len": _rec_len_to_disk(block_size, block_size), "name_len": 0, "file_type": 0}
        ).ljust(block_size, b"\0")
    if not dir_entries_fit(entries, block_size):
        raise ValueError(f"{len(entries)} directory entries do not fit in {block_size} bytes")
    out = bytearray(block_size)
    off = 0
    last = len(entries) - 1
    for i, e in enumerate(entries):
        if not 1 <= len(e.name) <= EXT4_NAME_LEN:
            raise ValueError(f"directory entry name {e.name!r} must be 1..255 bytes")
        if not 0 <= e.ino <= 0xFFFFFFFF or not 0 <= e.file_type <= 0xFF:
            raise ValueError(f"directory entry {e.name!r} has bad inode/file_type")
        rec_len = block_size - off if i == last else dir_rec_len(len(e.name))
        out[off : off + 8] = EXT4_DIR_ENTRY_2.build(
            {
                "inode": e.ino,
                "rec_len": _rec_len_to_disk(rec_len, block_size),
                "name_len": len(e.name),
                "file_type": e.file_type,
            }
        )
        out[off + 8 : off + 8 + len(e.name)] = e.name
        off += rec_len
    return bytes(out)


def decode_dir_block(data: bytes | bytearray | memoryview, *, where: str) -> list[DirEntry]:
    """Entries of one linear directory block (``ext4_check_dir_entry`` rules); inode-0 slots skipped."""
    data = bytes(data)
    size = len(data)
    out: list[DirEntry] = []
    off = 0
    while off < size:
        if off + EXT4_DIR_ENTRY_HEADER_LEN > size:
            raise CorruptImageError(
                f"directory entry header at byte {off} crosses the block end", where=where
            )
        d = EXT4_DIR_ENTRY_2.parse(data[off : off + 8])
        rec_len = _rec_len_from_disk(d.rec_len, size)
        if rec_len < dir_rec_len(1) or rec_len % 4:  # ext4_check_dir_entry: rec_len >= EXT4_DIR_REC_LEN(1)
            raise CorruptImageError(f"rec_len {rec_len} at byte {off} is invalid", where=where)
        if off + rec_len > size:
            raise CorruptImageError(f"rec_len {rec_len} at byte {off} runs past the block end", where=where)
        if EXT4_DIR_ENTRY_HEADER_LEN + d.name_len > rec_len:
            raise CorruptImageError(
                f"name_len {d.name_len} does not fit rec_len {rec_len} at byte {off}", where=where
            )
        if d.inode:
            if d.name_len == 0:
                raise CorruptImageError(
                    f"entry for inode {d.inode} at byte {off} has an empty name", where=where
                )
            out.append(DirEntry(d.inode, data[off + 8 : off + 8 + d.name_len], d.file_type))
        off += rec_len
    return out


def file_type_of_mode(mode: int) -> int:
    """EXT4_FT_* for an i_mode (``fs_umode_to_ftype``)."""
    return {
        S_IFREG: EXT4_FT_REG_FILE,
        S_IFDIR: EXT4_FT_DIR,
        S_IFCHR: EXT4_FT_CHRDEV,
        S_IFBLK: EXT4_FT_BLKDEV,
        S_IFIFO: EXT4_FT_FIFO,
        S_IFSOCK: EXT4_FT_SOCK,
        S_IFLNK: EXT4_FT_SYMLINK,
    }.get(mode & S_IFMT, EXT4_FT_UNKNOWN)


# --------------------------------------------------------------------------------------------------
# jbd2
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JournalSuperBlock:
    """Decoded ``journal_superblock_t``."""

    blocktype: int
    sequence_header: int
    blocksize: int
    maxlen: int
    first: int
    sequence: int
    start: int
    errno: int
    feature_compat: int
    feature_incompat: int
    feature_ro_compat: int
    uuid: bytes
    nr_users: int
    checksum_type: int
    num_fc_blks: int
    checksum: int


def encode_journal_superblock(
    *,
    block_size: int,
    maxlen: int,
    uuid: bytes,
    first: int = 1,
    sequence: int = 1,
    start: int = 0,
    errno: int = 0,
    feature_compat: int = 0,
    feature_incompat: int = 0,
    feature_ro_compat: int = 0,
    nr_users: int = 1,
    checksum_type: int = 0,
    checksum: int = 0,
) -> bytes:
    """``journal_superblock_t`` v2 (1024 bytes) as ``ext2fs_create_journal_superblock`` writes it."""
    if len(uuid) != 16:
        raise ValueError("uuid must be 16 bytes")
    sb = dict(_JSB_ZERO)
    sb.update(
        s_header={"h_magic": JBD2_MAGIC_NUMBER, "h_blocktype": JBD2_SUPERBLOCK_V2, "h_sequence": 0},
        s_blocksize=block_size,
        s_maxlen=maxlen,
        s_first=first,
        s_sequence=sequence,
        s_start=start,
        s_errno=errno & 0xFFFFFFFF,
        s_feature_compat=feature_compat,
        s_feature_incompat=feature_incompat,
        s_feature_ro_compat=feature_ro_compat,
        s_uuid=bytes(uuid),
        s_nr_users=nr_users,
        s_checksum_type=checksum_type,
        s_checksum=checksum,
    )
    out: bytes = JBD2_SUPERBLOCK.build(sb)
    return out


def decode_journal_header(raw: bytes | bytearray | memoryview, *, where: str) -> tuple[int, int, int]:
    """``journal_header_t`` as (magic, blocktype, sequence); the caller decides what a bad magic means."""
    c = _parse(JBD2_HEADER, raw, where, "journal header")
    return int(c.h_magic), int(c.h_blocktype), int(c.h_sequence)


def decode_journal_superblock(
    raw: bytes | bytearray | memoryview, *, where: str = "journal superblock"
) -> JournalSuperBlock:
    """Parse ``journal_superblock_t`` (jbd2 ``journal_load`` checks: magic, type, first/maxlen)."""
    c = _parse(JBD2_SUPERBLOCK, raw, where, "journal superblock")
    if c.s_header.h_magic != JBD2_MAGIC_NUMBER:
        raise CorruptImageError(f"bad jbd2 magic 0x{c.s_header.h_magic:08x}", where=where)
    if c.s_header.h_blocktype not in (JBD2_SUPERBLOCK_V1, JBD2_SUPERBLOCK_V2):
        raise CorruptImageError(f"journal superblock type {c.s_header.h_blocktype}", where=where)
    if not 0 < c.s_first < c.s_maxlen:
        raise CorruptImageError(f"s_first {c.s_first} / s_maxlen {c.s_maxlen} invalid", where=where)
    return JournalSuperBlock(
        blocktype=c.s_header.h_blocktype,
        sequence_header=c.s_header.h_sequence,
        blocksize=c.s_blocksize,
        maxlen=c.s_maxlen,
        first=c.s_first,
        sequence=c.s_sequence,
        start=c.s_start,
        errno=c.s_errno,
        feature_compat=c.s_feature_compat,
        feature_incompat=c.s_feature_incompat,
        feature_ro_compat=c.s_feature_ro_compat,
        uuid=bytes(c.s_uuid),
        nr_users=c.s_nr_users,
        checksum_type=c.s_checksum_type,
        num_fc_blks=c.s_num_fc_blks,
        checksum=c.s_checksum,
    )


def jbd2_tag_bytes(feature_incompat: int) -> int:
    """``journal_tag_bytes``: size of one descriptor tag (without the 16-byte UUID)."""
    if feature_incompat & JBD2_FEATURE_INCOMPAT_CSUM_V3:
        return 16  # journal_block_tag3_t
    size = 12  # journal_block_tag_t
    if feature_incompat & JBD2_FEATURE_INCOMPAT_CSUM_V2:
        size += 2
    return size if feature_incompat & JBD2_FEATURE_INCOMPAT_64BIT else size - 4


# --------------------------------------------------------------------------------------------------
# jbd2 log blocks: checksums, descriptor/revoke/commit blocks (shared by simkernel.fs.jbd2.log, the
# kernel's commit path, and oracle.jbd2_recovery, the oracle's replay).  Formats follow
# include/linux/jbd2.h and e2fsprogs 1.47 kernel-jbd.h; checksum rules are reference §10.
# --------------------------------------------------------------------------------------------------

#: ``JBD2_CRC32_CHKSUM_SIZE``: h_chksum_size of a v1 (COMPAT_CHECKSUM) commit block
JBD2_CRC32_CHKSUM_SIZE = 4
#: ``sizeof(struct jbd2_journal_block_tail)``: csum v2/v3 tail of descriptor and revoke blocks
JBD2_BLOCK_TAIL_SIZE = 4
#: ``sizeof(jbd2_journal_revoke_header_t)``: header + r_count
JBD2_REVOKE_HEADER_SIZE = 16
#: the UUID that follows a tag without JBD2_FLAG_SAME_UUID
JBD2_UUID_SIZE = 16
#: ``sizeof(journal_header_t)``
JBD2_HEADER_SIZE = 12
#: byte offset of ``h_chksum[0]`` in a commit block
JBD2_COMMIT_CHKSUM_OFFSET = 0x10
#: byte offset of ``s_checksum`` in the journal superblock
JBD2_SUPERBLOCK_CSUM_OFFSET = 0xFC
#: feature bits e2fsprogs 1.47 knows (JBD2_KNOWN_*_FEATURES)
JBD2_KNOWN_COMPAT_FEATURES = JBD2_FEATURE_COMPAT_CHECKSUM
JBD2_KNOWN_INCOMPAT_FEATURES = (
    JBD2_FEATURE_INCOMPAT_REVOKE
    | JBD2_FEATURE_INCOMPAT_64BIT
    | JBD2_FEATURE_INCOMPAT_ASYNC_COMMIT
    | JBD2_FEATURE_INCOMPAT_CSUM_V2
    | JBD2_FEATURE_INCOMPAT_CSUM_V3
    | JBD2_FEATURE_INCOMPAT_FAST_COMMIT
)

_CRC32C_POLY = 0x82F63B78  # Castagnoli, reflected
_CRC_CHUNK = 4096
#: lazily built crc32c tables (built once, ~25 ms; never mutated afterwards)
_CRC32C_TABLES: dict[str, np.ndarray] = {}
_BE32 = struct.Struct(">I")
_BE16 = struct.Struct(">H")
_BE64 = struct.Struct(">Q")
#: bit-reversal of every byte value (crc32_be via zlib's reflected crc32)
_REVERSE_BITS = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


def _crc32c_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(byte table, position table flattened, row offsets): row k = a byte followed by k zero bytes."""
    if not _CRC32C_TABLES:
        t = np.arange(256, dtype=np.uint32)
        for _ in range(8):
            t = np.where(t & 1, (t >> 1) ^ np.uint32(_CRC32C_POLY), t >> 1).astype(np.uint32)
        pos = np.empty((_CRC_CHUNK, 256), dtype=np.uint32)
        cur = t.copy()
        pos[0] = cur
        for k in range(1, _CRC_CHUNK):
            cur = (cur >> 8) ^ t[cur & 0xFF]
            pos[k] = cur
        _CRC32C_TABLES["byte"] = t
        _CRC32C_TABLES["pos"] = pos.ravel()
        _CRC32C_TABLES["rows"] = np.arange(_CRC_CHUNK - 1, -1, -1, dtype=np.int64) * 256
    return _CRC32C_TABLES["byte"], _CRC32C_TABLES["pos"], _CRC32C_TABLES["rows"]


def jbd2_crc32c(seed: int, data: bytes | bytearray | memoryview) -> int:
    """Raw CRC32C (``crc32c_le``/``jbd2_chksum``: reflected Castagnoli, no pre/post inversion).

    Linear-algebra form: the register starting at ``seed`` equals XOR-ing ``seed`` (little-endian)
    into the first four bytes and starting at 0, and the CRC of ``n`` bytes from 0 is the XOR of one
    table entry per (position, byte value); numpy does a 4 KiB block in ~20 us.
    """
    byte_tab, pos, rows = _crc32c_tables()
    crc = seed & 0xFFFFFFFF
    buf = memoryview(bytes(data)) if not isinstance(data, bytes) else memoryview(data)
    off = 0
    n_all = len(buf)
    while n_all - off >= 4:
        n = min(_CRC_CHUNK, n_all - off)
        chunk = np.frombuffer(buf[off : off + n], dtype=np.uint8).copy()
        chunk[:4] ^= np.frombuffer(crc.to_bytes(4, "little"), dtype=np.uint8)
        crc = int(np.bitwise_xor.reduce(pos.take(rows[_CRC_CHUNK - n :] + chunk)))
        off += n
    for b in bytes(buf[off:]):
        crc = (crc >> 8) ^ int(byte_tab[(crc ^ b) & 0xFF])
    return crc


def jbd2_crc32_be(seed: int, data: bytes | bytearray | memoryview) -> int:
    """Raw big-endian CRC32 (kernel ``crc32_be``, poly 0x04C11DB7, MSB first, no inversion).

    The v1 (COMPAT_CHECKSUM) commit checksum.  Computed with zlib's reflected CRC32 on bit-reversed
    bytes: crc32_be(s, d) = rev32(R(rev32(s), rev8(d))), R(s, d) = ~zlib.crc32(d, ~s).
    """
    import zlib

    def rev32(x: int) -> int:
        return int(f"{x & 0xFFFFFFFF:032b}"[::-1], 2)

    r = ~zlib.crc32(bytes(data).translate(_REVERSE_BITS), ~rev32(seed) & 0xFFFFFFFF) & 0xFFFFFFFF
    return rev32(r)


def jbd2_has_csum_v2or3(feature_incompat: int) -> bool:
    """``jbd2_journal_has_csum_v2or3``."""
    return bool(feature_incompat & (JBD2_FEATURE_INCOMPAT_CSUM_V2 | JBD2_FEATURE_INCOMPAT_CSUM_V3))


def jbd2_csum_seed(uuid: bytes) -> int:
    """``j_csum_seed = jbd2_chksum(journal, ~0, sb->s_uuid, 16)``."""
    return jbd2_crc32c(0xFFFFFFFF, uuid)


def jbd2_superblock_csum(raw: bytes | bytearray | memoryview) -> int:
    """``jbd2_superblock_csum``: crc32c(~0) of the 1024-byte journal superblock with s_checksum = 0."""
    sb = bytearray(raw[:JBD2_SUPERBLOCK_SIZE])
    if len(sb) != JBD2_SUPERBLOCK_SIZE:
        raise ValueError("journal superblock must be 1024 bytes")
    sb[JBD2_SUPERBLOCK_CSUM_OFFSET : JBD2_SUPERBLOCK_CSUM_OFFSET + 4] = bytes(4)
    return jbd2_crc32c(0xFFFFFFFF, sb)


def update_journal_superblock(
    raw: bytes | bytearray | memoryview,
    *,
    start: int | None = None,
    sequence: int | None = None,
    errno: int | None = None,
    feature_compat: int | None = None,
    feature_incompat: int | None = None,
) -> bytes:
    """The journal superblock ``raw`` (1024 bytes) with fields replaced, as ``jbd2_write_superblock``
    writes it: with csum v2/v3 ``s_checksum_type`` is crc32c and ``s_checksum`` is recomputed."""
    sb = bytearray(raw[:JBD2_SUPERBLOCK_SIZE])
    if len(sb) != JBD2_SUPERBLOCK_SIZE:
        raise ValueError("journal superblock must be 1024 bytes")
    for off, value in (
        (0x1C, start),
        (0x18, sequence),
        (0x20, None if errno is None else errno & 0xFFFFFFFF),
        (0x24, feature_compat),
        (0x28, feature_incompat),
    ):
        if value is not None:
            sb[off : off + 4] = _BE32.pack(value)
    incompat = _BE32.unpack_from(sb, 0x28)[0]
    if jbd2_has_csum_v2or3(incompat):
        sb[0x50] = JBD2_CRC32C_CHKSUM
        csum = jbd2_superblock_csum(sb)
        sb[JBD2_SUPERBLOCK_CSUM_OFFSET : JBD2_SUPERBLOCK_CSUM_OFFSET + 4] = _BE32.pack(csum)
    return bytes(sb)


def jbd2_block_tail_csum(block: bytes | bytearray | memoryview, csum_seed: int) -> int:
    """``jbd2_descriptor_block_csum``: crc32c(seed) of a descriptor/revoke block with its tail zeroed."""
    buf = bytearray(block)
    buf[-JBD2_BLOCK_TAIL_SIZE:] = bytes(JBD2_BLOCK_TAIL_SIZE)
    return jbd2_crc32c(csum_seed, buf)


def jbd2_commit_csum(block: bytes | bytearray | memoryview, csum_seed: int) -> int:
    """``jbd2_commit_block_csum``: crc32c(seed) of the commit block with ``h_chksum[0]`` zeroed."""
    buf = bytearray(block)
    buf[JBD2_COMMIT_CHKSUM_OFFSET : JBD2_COMMIT_CHKSUM_OFFSET + 4] = bytes(4)
    return jbd2_crc32c(csum_seed, buf)


def jbd2_tag_csum(csum_seed: int, sequence: int, stored: bytes | bytearray | memoryview) -> int:
    """``jbd2_block_tag_csum_set``: crc32c over be32(tid) then the block *as stored* (escaped)."""
    return jbd2_crc32c(jbd2_crc32c(csum_seed, _BE32.pack(sequence & 0xFFFFFFFF)), stored)


def jbd2_escape(data: bytes | bytearray | memoryview) -> tuple[bytes, bool]:
    """``jbd2_journal_write_metadata_buffer``: a block starting with the jbd2 magic is logged with
    those 4 bytes zeroed and JBD2_FLAG_ESCAPE in its tag.  Returns (stored bytes, escaped)."""
    buf = bytes(data)
    if buf[:4] == _BE32.pack(JBD2_MAGIC_NUMBER):
        return bytes(4) + buf[4:], True
    return buf, False


def jbd2_unescape(stored: bytes | bytearray | memoryview) -> bytes:
    """Replay of an ESCAPE-flagged block: put the magic back."""
    return _BE32.pack(JBD2_MAGIC_NUMBER) + bytes(stored[4:])


def jbd2_descriptor_capacity(block_size: int, feature_incompat: int) -> int:
    """Tags the kernel puts in one descriptor block (``jbd2_journal_commit_transaction`` loop).

    After each tag it closes the descriptor when ``space_left < tag_bytes + 16 + csum_size``; the
    first tag also carries the 16-byte UUID.
    """
    tag = jbd2_tag_bytes(feature_incompat)
    csum = JBD2_BLOCK_TAIL_SIZE if jbd2_has_csum_v2or3(feature_incompat) else 0
    space = block_size - JBD2_HEADER_SIZE
    n = 0
    while True:
        space -= tag + (JBD2_UUID_SIZE if n == 0 else 0)
        n += 1
        if space < tag + JBD2_UUID_SIZE + csum:
            return n


def jbd2_revoke_record_size(feature_incompat: int) -> int:
    """Bytes per revoke record: 8 with 64BIT, else 4."""
    return 8 if feature_incompat & JBD2_FEATURE_INCOMPAT_64BIT else 4


def jbd2_revoke_capacity(block_size: int, feature_incompat: int) -> int:
    """Records per revoke block (``write_one_revoke_record``)."""
    csum = JBD2_BLOCK_TAIL_SIZE if jbd2_has_csum_v2or3(feature_incompat) else 0
    return (block_size - csum - JBD2_REVOKE_HEADER_SIZE) // jbd2_revoke_record_size(feature_incompat)


def _jbd2_header(blocktype: int, sequence: int) -> bytes:
    return _BE32.pack(JBD2_MAGIC_NUMBER) + _BE32.pack(blocktype) + _BE32.pack(sequence & 0xFFFFFFFF)


@dataclass(frozen=True)
class JournalTag:
    """One descriptor tag: target fs block, JBD2_FLAG_* bits, stored checksum (0 without v2/v3)."""

    blocknr: int
    flags: int
    checksum: int


def encode_jbd2_descriptor_block(
    sequence: int,
    tags: Sequence[tuple[int, bool, int]],
    *,
    uuid: bytes,
    block_size: int,
    feature_incompat: int,
    csum_seed: int = 0,
) -> bytes:
    """A descriptor block for ``tags`` = [(fs block, escaped, tag checksum)] in log order.

    The first tag carries the UUID, later ones JBD2_FLAG_SAME_UUID, the last one
    JBD2_FLAG_LAST_TAG; with csum v2/v3 the tail holds the block checksum.
    """
    if not tags:
        raise ValueError("a descriptor block needs at least one tag")
    if len(tags) > jbd2_descriptor_capacity(block_size, feature_incompat):
        raise ValueError(f"{len(tags)} tags do not fit one {block_size}-byte descriptor block")
    if len(uuid) != JBD2_UUID_SIZE:
        raise ValueError("uuid must be 16 bytes")
    is64 = bool(feature_incompat & JBD2_FEATURE_INCOMPAT_64BIT)
    v3 = bool(feature_incompat & JBD2_FEATURE_INCOMPAT_CSUM_V3)
    v2 = bool(feature_incompat & JBD2_FEATURE_INCOMPAT_CSUM_V2)
    size = jbd2_tag_bytes(feature_incompat)
    out = bytearray(block_size)
    out[:JBD2_HEADER_SIZE] = _jbd2_header(JBD2_DESCRIPTOR_BLOCK, sequence)
    off = JBD2_HEADER_SIZE
    for i, (blocknr, escaped, csum) in enumerate(tags):
        if not 0 <= blocknr < (1 << 64 if is64 else 1 << 32):
            raise ValueError(f"block number {blocknr} does not fit the tag")
        flags = (JBD2_FLAG_ESCAPE if escaped else 0) | (JBD2_FLAG_SAME_UUID if i else 0)
        if i == len(tags) - 1:
            flags |= JBD2_FLAG_LAST_TAG
        tag = bytearray(size)
        tag[0:4] = _BE32.pack(blocknr & 0xFFFFFFFF)
        if v3:
            tag[4:8] = _BE32.pack(flags)
            tag[12:16] = _BE32.pack(csum & 0xFFFFFFFF)
        else:
            tag[4:6] = _BE16.pack(csum & 0xFFFF if v2 else 0)
            tag[6:8] = _BE16.pack(flags)
        if is64:
            tag[8:12] = _BE32.pack(blocknr >> 32)
        out[off : off + size] = tag
        off += size
        if i == 0:
            out[off : off + JBD2_UUID_SIZE] = uuid
            off += JBD2_UUID_SIZE
    if jbd2_has_csum_v2or3(feature_incompat):
        out[-JBD2_BLOCK_TAIL_SIZE:] = _BE32.pack(jbd2_block_tail_csum(out, csum_seed))
    return bytes(out)


def decode_jbd2_descriptor_tags(
    block: bytes | bytearray | memoryview, *, feature_incompat: int
) -> list[JournalTag]:
    """Tags of a descriptor block, walked as recovery.c does (``count_tags``/PASS_REPLAY loop):

    tags follow the header while a whole tag fits before the (csum v2/v3) tail; a tag without
    SAME_UUID is followed by 16 UUID bytes; LAST_TAG ends the list.  Flags are the be16 at tag offset
    6 (the low half of tag3's be32 ``t_flags``).
    """
    size = len(block) - (JBD2_BLOCK_TAIL_SIZE if jbd2_has_csum_v2or3(feature_incompat) else 0)
    tag_bytes = jbd2_tag_bytes(feature_incompat)
    is64 = bool(feature_incompat & JBD2_FEATURE_INCOMPAT_64BIT)
    v3 = bool(feature_incompat & JBD2_FEATURE_INCOMPAT_CSUM_V3)
    v2 = bool(feature_incompat & JBD2_FEATURE_INCOMPAT_CSUM_V2)
    out: list[JournalTag] = []
    off = JBD2_HEADER_SIZE
    while off + tag_bytes <= size:
        blocknr = _BE32.unpack_from(block, off)[0]
        if is64:
            blocknr |= _BE32.unpack_from(block, off + 8)[0] << 32
        flags = _BE16.unpack_from(block, off + 6)[0]
        if v3:
            csum = _BE32.unpack_from(block, off + 12)[0]
        elif v2:
            csum = _BE16.unpack_from(block, off + 4)[0]
        else:
            csum = 0
        out.append(JournalTag(blocknr, flags, csum))
        off += tag_bytes
        if not flags & JBD2_FLAG_SAME_UUID:
            off += JBD2_UUID_SIZE
        if flags & JBD2_FLAG_LAST_TAG:
            break
    return out


def encode_jbd2_revoke_block(
    sequence: int,
    blocknrs: Sequence[int],
    *,
    block_size: int,
    feature_incompat: int,
    csum_seed: int = 0,
) -> bytes:
    """A revoke block (``write_one_revoke_record`` + ``flush_descriptor``); r_count counts the
    16-byte header too."""
    if len(blocknrs) > jbd2_revoke_capacity(block_size, feature_incompat):
        raise ValueError(f"{len(blocknrs)} revoke records do not fit one {block_size}-byte block")
    rsize = jbd2_revoke_record_size(feature_incompat)
    out = bytearray(block_size)
    out[:JBD2_HEADER_SIZE] = _jbd2_header(JBD2_REVOKE_BLOCK, sequence)
    off = JBD2_REVOKE_HEADER_SIZE
    for blocknr in blocknrs:
        if not 0 <= blocknr < 1 << (8 * rsize):
            raise ValueError(f"block number {blocknr} does not fit a revoke record")
        out[off : off + rsize] = (_BE64 if rsize == 8 else _BE32).pack(blocknr)
        off += rsize
    out[JBD2_HEADER_SIZE:JBD2_REVOKE_HEADER_SIZE] = _BE32.pack(off)
    if jbd2_has_csum_v2or3(feature_incompat):
        out[-JBD2_BLOCK_TAIL_SIZE:] = _BE32.pack(jbd2_block_tail_csum(out, csum_seed))
    return bytes(out)


def decode_jbd2_revoke_block(
    block: bytes | bytearray | memoryview, *, feature_incompat: int, where: str
) -> list[int]:
    """Revoked block numbers (``scan_revoke_records``); an r_count past the block (or into the
    csum tail) is corruption (-EINVAL there)."""
    csum = JBD2_BLOCK_TAIL_SIZE if jbd2_has_csum_v2or3(feature_incompat) else 0
    rcount = _BE32.unpack_from(block, JBD2_HEADER_SIZE)[0]
    if rcount > len(block) - csum:
        raise CorruptImageError(f"revoke block r_count {rcount} exceeds the block", where=where)
    rsize = jbd2_revoke_record_size(feature_incompat)
    fmt = _BE64 if rsize == 8 else _BE32
    out: list[int] = []
    off = JBD2_REVOKE_HEADER_SIZE
    while off + rsize <= rcount:
        out.append(fmt.unpack_from(block, off)[0])
        off += rsize
    return out


@dataclass(frozen=True)
class JournalCommit:
    """Decoded ``struct commit_header``."""

    sequence: int
    chksum_type: int
    chksum_size: int
    chksum0: int
    commit_sec: int
    commit_nsec: int


def encode_jbd2_commit_block(
    sequence: int,
    *,
    block_size: int,
    feature_compat: int,
    feature_incompat: int,
    csum_seed: int = 0,
    crc32_sum: int = 0,
    commit_sec: int = FIXED_TIME,
    commit_nsec: int = 0,
) -> bytes:
    """The commit block (``journal_submit_commit_record``): v1 stores the crc32_be of the
    transaction's descriptor+data blocks, v2/v3 the crc32c of the block itself in ``h_chksum[0]``."""
    out = bytearray(block_size)
    out[:JBD2_HEADER_SIZE] = _jbd2_header(JBD2_COMMIT_BLOCK, sequence)
    out[0x30:0x38] = _BE64.pack(commit_sec)
    out[0x38:0x3C] = _BE32.pack(commit_nsec)
    if feature_compat & JBD2_FEATURE_COMPAT_CHECKSUM:
        out[0x0C] = JBD2_CRC32_CHKSUM
        out[0x0D] = JBD2_CRC32_CHKSUM_SIZE
        out[JBD2_COMMIT_CHKSUM_OFFSET : JBD2_COMMIT_CHKSUM_OFFSET + 4] = _BE32.pack(crc32_sum & 0xFFFFFFFF)
    if jbd2_has_csum_v2or3(feature_incompat):
        out[JBD2_COMMIT_CHKSUM_OFFSET : JBD2_COMMIT_CHKSUM_OFFSET + 4] = _BE32.pack(
            jbd2_commit_csum(out, csum_seed)
        )
    return bytes(out)


def decode_jbd2_commit_block(block: bytes | bytearray | memoryview, *, where: str) -> JournalCommit:
    """Fields of a commit block (no validation: recovery decides what a mismatch means)."""
    c = _parse(JBD2_COMMIT_HEADER, block, where, "commit block")
    return JournalCommit(
        sequence=c.h_header.h_sequence,
        chksum_type=c.h_chksum_type,
        chksum_size=c.h_chksum_size,
        chksum0=c.h_chksum[0],
        commit_sec=c.h_commit_sec,
        commit_nsec=c.h_commit_nsec,
    )
