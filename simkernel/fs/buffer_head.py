"""struct buffer_head (include/linux/buffer_head.h): per-block state of an ext4 folio.

The flags the write path decides on: mapped (has a disk block), new (just allocated), delay (delalloc
reservation, no block yet), unwritten (block allocated, data not yet written: reads as zeros),
uptodate, dirty.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from simkernel.mm.folio import Folio


class BufferHead:
    __slots__ = (
        "b_blocknr",
        "b_folio",
        "b_offset",
        "b_size",
        "delay",
        "dirty",
        "mapped",
        "new",
        "unwritten",
        "uptodate",
    )

    def __init__(self, folio: Folio, offset: int, size: int) -> None:
        self.b_folio = folio
        #: offset of the block inside the folio (bh_offset)
        self.b_offset = offset
        self.b_size = size
        self.b_blocknr = -1
        self.mapped = False
        self.new = False
        self.delay = False
        self.unwritten = False
        self.uptodate = False
        self.dirty = False

    def clear_mapping(self) -> None:
        """clear_buffer_mapped/delay/unwritten/new: the block no longer backs this buffer."""
        self.b_blocknr = -1
        self.mapped = self.delay = self.unwritten = self.new = False

    def __repr__(self) -> str:
        flags = "".join(
            c
            for c, on in (
                ("M", self.mapped),
                ("N", self.new),
                ("D", self.delay),
                ("U", self.unwritten),
                ("u", self.uptodate),
                ("d", self.dirty),
            )
            if on
        )
        return f"<bh @{self.b_offset} blk={self.b_blocknr} {flags}>"


def folio_buffers(folio: Folio) -> list[BufferHead] | None:
    """folio_buffers(): the folio's buffer ring, or None."""
    priv = folio.private
    return priv if isinstance(priv, list) else None
