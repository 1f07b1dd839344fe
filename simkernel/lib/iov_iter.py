"""struct iov_iter (lib/iov_iter.c): the user buffer of a write().

A buffer is either plain user memory (``data``) or lies in a shared mapping of a file (``map_vma``):
copying from it then reads that file's page cache, and only works while the page is mapped -- the
copy runs with page faults disabled (copy_folio_from_iter_atomic), so an unmapped source page makes
the copy short, and the caller faults it in (fault_in_iov_iter_readable) under mmap_lock.
"""

from __future__ import annotations

from typing import Any


class IovIter:
    __slots__ = ("copied_log", "count", "data", "map_off", "map_vma", "offset", "total")

    def __init__(self, length: int, data: bytes | None = None, map_vma: Any = None, map_off: int = 0) -> None:
        self.total = length
        #: bytes consumed so far (iov_iter_count = total - offset)
        self.offset = 0
        self.count = length
        self.data = data
        self.map_vma = map_vma
        self.map_off = map_off
        #: (offset in buffer, bytes) of every copy made, for the syscall history
        self.copied_log: list[tuple[int, bytes]] = []

    def advance(self, n: int) -> None:
        self.offset += n
        self.count -= n

    def revert(self, n: int) -> None:
        """iov_iter_revert()"""
        self.offset -= n
        self.count += n

    def written_payload(self) -> bytes:
        """The bytes the kernel copied from the buffer, by buffer offset (last copy wins)."""
        out = bytearray(self.total)
        top = 0
        for off, chunk in self.copied_log:
            out[off : off + len(chunk)] = chunk
            top = max(top, off + len(chunk))
        return bytes(out[:top])
