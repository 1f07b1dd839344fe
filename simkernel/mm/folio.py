"""struct folio: a page-cache entry of one or more blocks (include/linux/mm_types.h, page-flags.h).

Folio-level flags (locked, uptodate, dirty, writeback) plus ``private``: buffer heads (ext4 path)
or an iomap_folio_state (iomap path) with per-block uptodate/dirty bits. The model's PAGE_SIZE is the
folio size, so ``mapcount`` (page-table entries) is per folio.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from simkernel.kernel.sched import Task, WaitQueue

if TYPE_CHECKING:
    from simkernel.fs.vfs import AddressSpace


#: the hardware page size (x86-64): a folio larger than this is mapped page by page
HW_PAGE_SIZE = 4096


class Folio:
    """One folio. ``data`` is its memory; ``mapping`` is None once it left the page cache."""

    __slots__ = (
        "data",
        "dirty",
        "error",
        "index",
        "lock_wq",
        "locked",
        "mapcount",
        "mapping",
        "owner",
        "private",
        "pte_end",
        "pte_writable",
        "tagged",
        "uptodate",
        "wb_wq",
        "writeback",
    )

    def __init__(self, mapping: AddressSpace, index: int, size: int) -> None:
        self.mapping: AddressSpace | None = mapping
        self.index = index
        self.data = bytearray(size)
        self.locked = False
        self.owner: Task | None = None
        self.uptodate = False
        self.dirty = False
        #: PAGECACHE_TAG_DIRTY: set with the dirty flag, but cleared only when writeback starts on
        #: the cleaned folio (__folio_start_writeback) or the folio leaves the cache -- so a folio
        #: another task is preparing for IO (cleaned, still locked) stays visible to fsync/sync
        self.tagged = False
        self.writeback = False
        self.error = False
        #: buffer heads (list) for ext4, IomapFolioState for iomap, or None
        self.private: Any = None
        #: page-table entries mapping this folio (one mm in the model: 0 or 1)
        self.mapcount = 0
        #: the PTE allows writes without a fault (cleared by folio_mkclean at writeback)
        self.pte_writable = False
        #: bytes of the folio its PTEs map: the pages below EOF when it was faulted in (a large
        #: folio is mapped page by page, and a page at or past EOF never is: SIGBUS)
        self.pte_end = 0
        self.lock_wq = WaitQueue(f"folio_lock#{mapping.host.i_ino}:{index}", self)
        self.wb_wq = WaitQueue(f"folio_writeback#{mapping.host.i_ino}:{index}", None)

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def pos(self) -> int:
        """folio_pos()"""
        return self.index * len(self.data)

    def holders(self) -> list[Task]:
        return [self.owner] if self.locked and self.owner is not None else []

    def __repr__(self) -> str:
        flags = "".join(
            c
            for c, on in (("L", self.locked), ("U", self.uptodate), ("D", self.dirty), ("W", self.writeback))
            if on
        )
        ino = self.mapping.host.i_ino if self.mapping is not None else "-"
        return f"<folio {ino}:{self.index} {flags}>"
