"""generic_perform_write(): the write(2) loop of mm/filemap.c shared by ext4's buffered path.

Per chunk (one folio at most): fault in the user buffer *first* (it may be a mapping of a file --
that takes mmap_lock for read, under i_rwsem), ->write_begin (locks the folio, maps blocks), copy with
page faults disabled, ->write_end (dirties, updates i_size, unlocks). A short copy into a !uptodate
folio counts as nothing and the loop retries after faulting the source in.
"""

from __future__ import annotations

from simkernel.fs.vfs import EFAULT, File
from simkernel.kernel.sched import KGen
from simkernel.lib.iov_iter import IovIter
from simkernel.mm.memory import Memory


class FilemapWrite(Memory):
    def write_end_size(self, old_size: int, pos: int, copied: int) -> int:
        """The i_size a ->write_end leaves after copying ``copied`` bytes at ``pos`` (not a kernel
        function: the rule generic_write_end(), ext4's write_end and iomap_write_end() share).

        Linux sets ``pos + copied`` whenever that is past the old size, so a copy that came up
        empty at ``pos`` > EOF (the source faulted; write_end rejected a short copy into a folio
        that is not uptodate) still grows the file to ``pos``; when the retry then fails
        (-ENOSPC, -EFAULT) the write returns an error and leaves the file longer. The model
        grows the file only by bytes that were copied. Variant ``empty-copy-grows-file``
        restores Linux's rule."""
        return max(old_size, pos + copied) if copied else old_size

    def generic_perform_write(self, file: File, pos: int, i: IovIter) -> KGen:
        """generic_perform_write(); returns bytes written or a negative errno."""
        mapping = file.f_mapping
        a_ops = mapping.a_ops
        assert a_ops is not None and a_ops.write_begin is not None and a_ops.write_end is not None
        chunk = self.page_size
        written = 0
        status = 0
        retry = 0
        while i.count:
            offset = pos % chunk
            nbytes = min(chunk - offset, i.count)
            if retry:
                # a short copy was rejected: retry with just the bytes that did copy
                nbytes, retry = min(nbytes, retry), 0
            yield from self.balance_dirty_pages_ratelimited(mapping)
            # bring in the user page we copy from *first*: copying from the page we are writing to,
            # not yet uptodate, would otherwise deadlock
            if (yield from self.fault_in_iov_iter_readable(i, nbytes)) == nbytes:
                status = -EFAULT
                break
            status, folio, fsdata = yield from a_ops.write_begin(file, mapping, pos, nbytes)
            if status < 0:
                break
            # the writer holds the folio lock here; on a preemptible kernel it can still be preempted
            yield
            offset = pos - folio.pos
            nbytes = min(nbytes, folio.size - offset)
            copied = self.copy_folio_from_iter_atomic(folio, offset, nbytes, i)
            status = yield from a_ops.write_end(file, mapping, pos, nbytes, copied, folio, fsdata)
            if status != copied:
                i.revert(copied - max(status, 0))
                if status < 0:
                    break
            yield  # cond_resched()
            if status == 0:
                # a short copy made write_end reject the whole chunk: retry with what did copy, or
                # (nothing copied) fault the source in and retry
                if copied:
                    retry = copied
                    continue
                if (yield from self.fault_in_iov_iter_readable(i, nbytes)) == nbytes:
                    status = -EFAULT
                    break
                continue
            pos += status
            written += status
        return written if written else status
