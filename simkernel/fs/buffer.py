"""Buffer-head helpers of fs/buffer.c used by ext4's write path.

Buffers are per-block state of a folio; a folio with buffers is dirty iff some buffer is dirty.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from simkernel.fs.buffer_head import BufferHead, folio_buffers
from simkernel.fs.vfs import EFAULT, EIO
from simkernel.kernel.sched import KGen
from simkernel.mm.folio import Folio
from simkernel.mm.memory import Memory, VmFault


class Buffer(Memory):
    def create_empty_buffers(self, folio: Folio, blocksize: int) -> list[BufferHead]:
        """create_empty_buffers(): one buffer per block; uptodate/dirty follow the folio."""
        bhs = [BufferHead(folio, off, blocksize) for off in range(0, folio.size, blocksize)]
        for bh in bhs:
            bh.uptodate = folio.uptodate
            bh.dirty = folio.dirty
        folio.private = bhs
        return bhs

    def mark_buffer_dirty(self, bh: BufferHead) -> None:
        """mark_buffer_dirty(): this buffer dirty, and the folio's flag (not ->dirty_folio, which
        would dirty every buffer of the folio)."""
        if not bh.dirty:
            bh.dirty = True
            folio = bh.b_folio
            if not folio.dirty and folio.mapping is not None:
                self.filemap_dirty_folio(folio.mapping, folio)

    def block_commit_write(self, folio: Folio, frm: int, to: int) -> None:
        """block_commit_write(): buffers in [frm, to) become uptodate and dirty."""
        partial = False
        bhs = folio_buffers(folio)
        if bhs is None:
            return
        for bh in bhs:
            start, end = bh.b_offset, bh.b_offset + bh.b_size
            if end <= frm or start >= to:
                if not bh.uptodate:
                    partial = True
            else:
                bh.uptodate = True
                self.mark_buffer_dirty(bh)
            bh.new = False
        if not partial:
            folio.uptodate = True

    def block_write_end(self, pos: int, length: int, copied: int, folio: Folio) -> int:
        """block_write_end(): a short copy into a !uptodate folio counts as nothing copied."""
        start = pos - folio.pos
        if copied < length and not folio.uptodate:
            copied = 0
        self.folio_zero_new_buffers(folio, start + copied, start + length)
        self.block_commit_write(folio, start, start + copied)
        return copied

    def folio_zero_new_buffers(self, folio: Folio, frm: int, to: int) -> None:
        """folio_zero_new_buffers(): new blocks in [frm, to) that got no data must read as zeros."""
        bhs = folio_buffers(folio)
        if bhs is None or frm >= to:
            return
        for bh in bhs:
            start, end = bh.b_offset, bh.b_offset + bh.b_size
            if bh.new and end > frm and start < to:
                if not folio.uptodate:
                    s, e = max(frm, start), min(to, end)
                    folio.data[s:e] = bytes(e - s)
                    bh.uptodate = True
                bh.new = False
                self.mark_buffer_dirty(bh)

    def block_invalidate_folio(self, folio: Folio, offset: int, length: int) -> None:
        """block_invalidate_folio(): drop buffers entirely inside [offset, offset+length)."""
        bhs = folio_buffers(folio)
        if bhs is None:
            return
        stop = offset + length
        for bh in bhs:
            if bh.b_offset >= offset and bh.b_offset + bh.b_size <= stop:
                # discard_buffer()
                bh.dirty = False
                bh.uptodate = False
                bh.clear_mapping()
        if offset == 0 and length >= folio.size:
            folio.private = None
            folio.dirty = folio.tagged = False

    def try_to_free_buffers(self, folio: Folio) -> bool:
        """try_to_free_buffers(): only when no buffer is dirty (or locked for IO)."""
        bhs = folio_buffers(folio)
        if bhs is None:
            return True
        if folio.writeback or any(bh.dirty for bh in bhs):
            return False
        folio.private = None
        return True

    def block_page_mkwrite(self, vmf: VmFault, get_block: Callable[..., Any]) -> KGen:
        """block_page_mkwrite(): prepare buffers of a faulting folio for writes; folio stays locked.

        Returns 0 (folio locked) or a negative errno.
        """
        folio = vmf.folio
        assert folio is not None
        inode = vmf.vma.vm_file.f_inode
        yield from self.folio_lock(folio)
        size = inode.i_size
        if folio.mapping is not inode.i_mapping or folio.pos >= size:
            # EFAULT is overloaded to mean the folio got truncated (VM_FAULT_NOPAGE)
            self.folio_unlock(folio)
            return -EFAULT
        end = min(folio.size, size - folio.pos)
        ret = yield from self.ext4_block_write_begin(None, folio, folio.pos, end, get_block)
        if ret:
            self.folio_unlock(folio)
            return ret
        self.block_commit_write(folio, 0, end)
        self.folio_mark_dirty(folio)
        yield from self.folio_wait_stable(folio)
        return 0

    def block_read_full_folio(self, folio: Folio, get_block: Callable[..., Any]) -> KGen:
        """block_read_full_folio(): read the !uptodate buffers of a locked folio; unlocks it."""
        inode = folio.mapping.host if folio.mapping is not None else None
        assert inode is not None
        bs = inode.i_sb.s_blocksize
        bhs = folio_buffers(folio) or self.create_empty_buffers(folio, bs)
        lblk0 = folio.pos // bs
        last_block = -(-inode.i_size // bs)
        err = 0
        for i, bh in enumerate(bhs):
            if bh.uptodate:
                continue
            lblk = lblk0 + i
            if not bh.mapped:
                if lblk < last_block:
                    ret = yield from get_block(inode, lblk, bh, False)
                    if ret:
                        err = ret
                        continue
                if not bh.mapped or bh.unwritten or bh.delay:
                    folio.data[bh.b_offset : bh.b_offset + bs] = bytes(bs)
                    bh.uptodate = True
                    continue
            if bh.delay or bh.unwritten:
                folio.data[bh.b_offset : bh.b_offset + bs] = bytes(bs)
                bh.uptodate = True
                continue
            ret, data = yield from self.bdev_read_block(bh.b_blocknr, bs)
            if ret:
                err = ret
                continue
            folio.data[bh.b_offset : bh.b_offset + bs] = data
            bh.uptodate = True
        if all(bh.uptodate for bh in bhs):
            folio.uptodate = True
        elif err:
            folio.error = True
        self.folio_unlock(folio)
        return -EIO if err else 0
