"""fs/iomap/iter.c: the iomap iterator."""

from __future__ import annotations

from simkernel.fs.iomap.iomap import IOMAP_F_STALE, Iomap, IomapIter, IomapOps
from simkernel.fs.vfs import EIO
from simkernel.kernel.base import KernelBase
from simkernel.kernel.sched import KGen


class IomapIterMixin(KernelBase):
    def iomap_iter_advance(self, it: IomapIter) -> int:
        """iomap_iter_advance(): a stale mapping remaps even when nothing was processed (6.2+)."""
        stale = bool(it.iomap.flags & IOMAP_F_STALE)
        if it.iomap.length:
            if it.processed < 0:
                return it.processed
            if not it.processed and not stale:
                return 0
            if self.WARN_ON(it.processed > it.length(), "iter->processed > iomap_length(iter)"):
                return -EIO
            it.pos += it.processed
            it.len -= it.processed
            if not it.len:
                return 0
        it.processed = 0
        it.iomap = Iomap()
        it.srcmap = Iomap()
        return 1

    def iomap_iter_done(self, it: IomapIter) -> None:
        """iomap_iter_done(): sanity checks on the mapping ->iomap_begin returned."""
        self.WARN_ON(it.iomap.offset > it.pos, "iter->iomap.offset > iter->pos")
        self.WARN_ON(it.iomap.length == 0, "iter->iomap.length == 0")
        self.WARN_ON(
            it.iomap.offset + it.iomap.length <= it.pos,
            "iter->iomap.offset + iter->iomap.length <= iter->pos",
        )
        self.WARN_ON(it.iomap.flags & IOMAP_F_STALE, "iter->iomap.flags & IOMAP_F_STALE")

    def iomap_iter(self, it: IomapIter, ops: IomapOps) -> KGen:
        """iomap_iter(): finish the previous mapping (->iomap_end), advance, map the next range."""
        if it.iomap.length and ops.iomap_end is not None:
            ret = yield from ops.iomap_end(
                it.inode, it.pos, it.length(), max(it.processed, 0), it.flags, it.iomap
            )
            if ret < 0 and not it.processed:
                return ret
        ret = self.iomap_iter_advance(it)
        if ret <= 0:
            return ret
        ret = yield from ops.iomap_begin(it.inode, it.pos, it.len, it.flags, it.iomap, it.srcmap)
        if ret < 0:
            return ret
        self.iomap_iter_done(it)
        return 1
