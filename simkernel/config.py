"""Machine configuration: geometry of the block device and filesystem, and mount options.

A :class:`Config` is plain data, validated once; the same config always builds the same image.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from simkernel.errors import GeometryError

BLOCK_SIZES = (1024, 2048, 4096)
SECTOR_SIZE = 512
WRITE_PATHS = ("ext4", "iomap")
#: the largest folio we model (a PMD-sized folio would be 2 MiB; this keeps images tiny)
MAX_FOLIO_SIZE = 64 * 1024
#: ext4 refuses journals shorter than this many blocks (jbd2 JBD2_MIN_JOURNAL_BLOCKS)
JBD2_MIN_JOURNAL_BLOCKS = 1024


@dataclass(frozen=True)
class Config:
    """Geometry and mount options of one simulated machine.

    ``folio_blocks`` blocks make one folio; the model's PAGE_SIZE is the folio size, so mmap faults
    and page-granular decisions happen per folio.
    """

    block_size: int = 4096
    folio_blocks: int = 1
    device_blocks: int = 256
    inodes: int = 32
    inline_data: bool = False
    write_path: str = "ext4"
    delalloc: bool = True
    journal: bool = False
    journal_blocks: int = JBD2_MIN_JOURNAL_BLOCKS

    @property
    def folio_size(self) -> int:
        return self.block_size * self.folio_blocks

    @property
    def device_size(self) -> int:
        return self.block_size * self.device_blocks

    @property
    def sectors_per_block(self) -> int:
        return self.block_size // SECTOR_SIZE

    def validate(self) -> Config:
        """Raise :class:`GeometryError` naming the first impossible field; return self."""
        if self.block_size not in BLOCK_SIZES:
            raise GeometryError(
                f"block_size {self.block_size} is not one of {BLOCK_SIZES}", where="block_size"
            )
        if self.folio_blocks < 1 or self.folio_blocks & (self.folio_blocks - 1):
            raise GeometryError(
                f"folio_blocks {self.folio_blocks} must be a power of two >= 1", where="folio_blocks"
            )
        if self.folio_size > MAX_FOLIO_SIZE:
            raise GeometryError(
                f"folio size {self.folio_size} exceeds {MAX_FOLIO_SIZE} bytes", where="folio_blocks"
            )
        if self.write_path not in WRITE_PATHS:
            raise GeometryError(
                f"write_path {self.write_path!r} is not one of {WRITE_PATHS}", where="write_path"
            )
        if self.inline_data and self.write_path != "ext4":
            raise GeometryError("inline_data needs the ext4 write path", where="inline_data")
        if not 16 <= self.inodes <= 8 * self.block_size:
            raise GeometryError(
                f"inodes {self.inodes} must be between 16 and {8 * self.block_size}", where="inodes"
            )
        # the on-disk layout owns the remaining rules (one block group, room for metadata + data)
        from simkernel.fs.ext4.ondisk import compute_layout

        if self.journal and self.journal_blocks < JBD2_MIN_JOURNAL_BLOCKS:
            raise GeometryError(
                f"journal_blocks {self.journal_blocks} below jbd2 minimum {JBD2_MIN_JOURNAL_BLOCKS}",
                where="journal_blocks",
            )
        try:
            compute_layout(
                self.block_size,
                self.device_blocks,
                self.inodes,
                journal_blocks=self.journal_blocks if self.journal else 0,
            )
        except GeometryError as err:
            fld = {"blocks_count": "device_blocks", "inodes_count": "inodes"}.get(err.where or "", err.where)
            msg = err.message.replace("blocks_count", "device_blocks").replace("inodes_count", "inodes")
            raise GeometryError(msg, where=fld) from None
        return self

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def with_(self, **changes: Any) -> Config:
        return replace(self, **changes)
