"""Page faults, mmap and munmap on shared file mappings (mm/memory.c, mm/mmap.c), and reclaim
(mm/vmscan.c, mm/truncate.c's invalidate_mapping_pages).

One process (one mm, one mmap_lock) runs all user threads, as syzkaller's threads do. Each file is
mapped at most once, MAP_SHARED and writable, from offset 0. PTE state lives on the folio
(``mapcount``, ``pte_writable``): a present writable PTE lets a store land without a fault; writeback
write-protects it (folio_mkclean), so the next store faults and goes through ->page_mkwrite again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from simkernel.fs.vfs import EFAULT, File
from simkernel.kernel.sched import KGen
from simkernel.lib.iov_iter import IovIter
from simkernel.locking.rwsem import RwSemaphore
from simkernel.mm.filemap import (
    VM_FAULT_ERROR,
    VM_FAULT_LOCKED,
    VM_FAULT_NOPAGE,
    VM_FAULT_RETRY,
)
from simkernel.mm.folio import HW_PAGE_SIZE, Folio
from simkernel.mm.page_writeback import PageWriteback

VM_FAULT_SIGSEGV = 0x40
#: the virtual size of every mapping (a store past it is SIGSEGV)
MAP_LENGTH = 1 << 26


class VmArea:
    """struct vm_area_struct of a shared writable file mapping."""

    __slots__ = ("length", "vm_file", "vm_ops")

    def __init__(self, file: File, length: int) -> None:
        self.vm_file = file
        self.length = length
        self.vm_ops: Any = None


class MmStruct:
    """struct mm_struct: the address space all user threads share."""

    def __init__(self) -> None:
        self.mmap_lock = RwSemaphore("&mm->mmap_lock", "mmap_lock")
        #: inode number -> mapping of that file
        self.vmas: dict[int, VmArea] = {}


@dataclass
class VmFault:
    """struct vm_fault"""

    vma: VmArea
    pgoff: int
    write: bool
    folio: Folio | None = None
    #: the faulting byte's offset in the folio (the hardware page within a large folio)
    poff: int = 0


class Memory(PageWriteback):
    """Fault handling and the mmap/munmap system calls' kernel side."""

    mm: MmStruct

    # -- faults (mm/memory.c) ------------------------------------------------------------------------

    def handle_mm_fault(self, vma: VmArea, pgoff: int, write: bool, poff: int = 0) -> KGen:
        """handle_mm_fault(): called with mmap_lock held for read; returns a vm_fault_t."""
        if pgoff * self.page_size >= vma.length:
            return VM_FAULT_SIGSEGV
        vmf = VmFault(vma, pgoff, write, poff=poff)
        mapping = vma.vm_file.f_mapping
        folio = mapping.i_pages.get(pgoff)
        if folio is not None and folio.mapcount and poff < folio.pte_end:
            if write and not folio.pte_writable:
                return (yield from self.do_wp_page(vmf, folio))
            return 0
        if not write:
            return (yield from self.do_read_fault(vmf))
        return (yield from self.do_shared_fault(vmf))

    def _do_fault(self, vmf: VmFault) -> KGen:
        """__do_fault(): ->fault; returns (vm_fault_t, locked folio)."""
        return (yield from vmf.vma.vm_ops.fault(vmf))

    def do_read_fault(self, vmf: VmFault) -> KGen:
        ret, folio = yield from self._do_fault(vmf)
        if ret & VM_FAULT_ERROR:
            return ret
        self.finish_fault(vmf, folio, writable=False)
        self.folio_unlock(folio)
        return 0

    def do_shared_fault(self, vmf: VmFault) -> KGen:
        """do_shared_fault(): read the folio, let the filesystem prepare it for writing, map it."""
        ret, folio = yield from self._do_fault(vmf)
        if ret & VM_FAULT_ERROR:
            return ret
        vmf.folio = folio
        if vmf.vma.vm_ops.page_mkwrite is not None:
            self.folio_unlock(folio)
            tmp = yield from self.do_page_mkwrite(vmf, folio)
            if tmp & (VM_FAULT_ERROR | VM_FAULT_NOPAGE):
                return tmp
        self.finish_fault(vmf, folio, writable=True)
        return (yield from self.fault_dirty_shared_page(vmf, folio))

    def do_page_mkwrite(self, vmf: VmFault, folio: Folio) -> KGen:
        """do_page_mkwrite(): ->page_mkwrite; on success the folio is returned locked."""
        ret = yield from vmf.vma.vm_ops.page_mkwrite(vmf)
        if ret & (VM_FAULT_ERROR | VM_FAULT_NOPAGE):
            return ret
        if not ret & VM_FAULT_LOCKED:
            yield from self.folio_lock(folio)
        if folio.mapping is None:
            self.folio_unlock(folio)
            return VM_FAULT_NOPAGE
        return ret | VM_FAULT_LOCKED

    def do_wp_page(self, vmf: VmFault, folio: Folio) -> KGen:
        """do_wp_page() -> wp_page_shared(): a store to a write-protected shared page."""
        vmf.folio = folio
        if vmf.vma.vm_ops.page_mkwrite is not None:
            tmp = yield from self.do_page_mkwrite(vmf, folio)
            if tmp & (VM_FAULT_ERROR | VM_FAULT_NOPAGE):
                return tmp
        else:
            yield from self.folio_lock(folio)
        folio.pte_writable = True  # wp_page_reuse()
        return (yield from self.fault_dirty_shared_page(vmf, folio))

    def finish_fault(self, vmf: VmFault, folio: Folio, writable: bool) -> None:
        """finish_fault() -> set_pte_range(): install the PTEs of the folio's pages below EOF
        (filemap_map_pages() and finish_fault() never map a page at or past it)."""
        folio.mapcount = 1
        folio.pte_writable = writable
        hw = min(HW_PAGE_SIZE, folio.size)
        below = vmf.vma.vm_file.f_inode.i_size - folio.pos
        folio.pte_end = max(0, min(folio.size, -(-below // hw) * hw))

    def fault_dirty_shared_page(self, vmf: VmFault, folio: Folio) -> KGen:
        """fault_dirty_shared_page(): dirty the folio, unlock it, throttle the dirtier."""
        self.folio_mark_dirty(folio)
        self.folio_unlock(folio)
        yield from self.balance_dirty_pages_ratelimited(vmf.vma.vm_file.f_mapping)
        return 0

    # -- user accesses to mapped memory --------------------------------------------------------------

    def user_fault(self, vma: VmArea, pgoff: int, write: bool, poff: int = 0) -> KGen:
        """The arch fault handler: lock_mm_and_find_vma() + handle_mm_fault()."""
        yield from self.down_read(self.mm.mmap_lock)
        try:
            if self.mm.vmas.get(vma.vm_file.f_inode.i_ino) is not vma:
                return VM_FAULT_SIGSEGV
            return (yield from self.handle_mm_fault(vma, pgoff, write, poff))
        finally:
            self.up_read(self.mm.mmap_lock)

    def user_store(
        self, vma: VmArea, off: int, data: bytes, stores: list[tuple[int, int, bytes]] | None = None
    ) -> KGen:
        """A store instruction sequence to mapped file memory; returns 0 or -EFAULT (SIGBUS/SIGSEGV).

        Each page's store is atomic: it lands when a writable PTE is present, otherwise the CPU
        faults and retries the instruction.
        """
        ps = self.page_size
        # a store is atomic per hardware page: a large folio is several of them
        hw = min(HW_PAGE_SIZE, ps)
        done = 0
        while done < len(data):
            pos = off + done
            pgoff, poff = divmod(pos, ps)
            n = min(len(data) - done, hw - poff % hw)
            mapping = vma.vm_file.f_mapping
            while True:
                if self.mm.vmas.get(vma.vm_file.f_inode.i_ino) is not vma:
                    return -EFAULT
                folio = mapping.i_pages.get(pgoff)
                if folio is not None and folio.mapcount and folio.pte_writable and poff < folio.pte_end:
                    folio.data[poff : poff + n] = data[done : done + n]
                    if stores is not None:
                        stores.append((self.sched.step_no, pos, bytes(data[done : done + n])))
                    break
                ret = yield from self.user_fault(vma, pgoff, True, poff)
                if ret & (VM_FAULT_ERROR | VM_FAULT_SIGSEGV):
                    return -EFAULT
                if ret & (VM_FAULT_NOPAGE | VM_FAULT_RETRY):
                    continue
            done += n
            yield
        return 0

    def fault_in_iov_iter_readable(self, i: IovIter, nbytes: int) -> KGen:
        """fault_in_iov_iter_readable(): touch the source pages; returns bytes NOT faulted in."""
        if i.map_vma is None or nbytes <= 0:
            return 0
        ps = self.page_size
        vma = i.map_vma
        assert vma is not None
        start = i.map_off + i.offset
        end = start + nbytes
        # might_fault(): lockdep learns "held locks -> mmap_lock" even when no fault happens
        self.might_lock_read(self.mm.mmap_lock)
        still_mapped = self.mm.vmas.get(vma.vm_file.f_inode.i_ino) is vma
        if not still_mapped:
            return nbytes  # unmapped meanwhile: no VMA at the address, the fault fails (EFAULT)
        pos = start
        while pos < end:
            pgoff = pos // ps
            folio = vma.vm_file.f_mapping.i_pages.get(pgoff)
            if folio is None or not folio.mapcount:
                ret = yield from self.user_fault(vma, pgoff, False)
                if ret & (VM_FAULT_ERROR | VM_FAULT_SIGSEGV):
                    return end - pos
            pos = (pgoff + 1) * ps
        return 0

    def copy_folio_from_iter_atomic(self, folio: Folio, offset: int, nbytes: int, i: IovIter) -> int:
        """copy_folio_from_iter_atomic(): copy with page faults disabled; may come up short."""
        if i.data is not None:
            chunk = i.data[i.offset : i.offset + nbytes]
        else:
            chunk = self.copy_from_mapped_user(i, nbytes)
        n = len(chunk)
        folio.data[offset : offset + n] = chunk
        if n:
            i.copied_log.append((i.offset, bytes(chunk)))
        i.advance(n)
        return n

    def copy_from_mapped_user(self, i: IovIter, nbytes: int) -> bytes:
        """Read user memory that is a file mapping, stopping at the first page without a PTE."""
        ps = self.page_size
        vma: VmArea | None = i.map_vma
        if vma is None or self.mm.vmas.get(vma.vm_file.f_inode.i_ino) is not vma:
            return b""
        mapping = vma.vm_file.f_mapping
        out = bytearray()
        pos = i.map_off + i.offset
        end = pos + nbytes
        while pos < end:
            pgoff, poff = divmod(pos, ps)
            src = mapping.i_pages.get(pgoff)
            if src is None or not src.mapcount:
                break
            n = min(end - pos, ps - poff)
            out += src.data[poff : poff + n]
            pos += n
        return bytes(out)

    # -- mmap / munmap (mm/mmap.c, mm/util.c) --------------------------------------------------------

    def vm_mmap(self, file: File) -> KGen:
        """vm_mmap_pgoff(): mmap_write_lock, then the filesystem's ->mmap."""
        yield from self.down_write(self.mm.mmap_lock)
        try:
            ino = file.f_inode.i_ino
            old = self.mm.vmas.pop(ino, None)
            if old is not None:
                self.zap_vma(old)
            vma = VmArea(file, MAP_LENGTH)
            assert file.f_inode.i_fop is not None
            err = yield from file.f_inode.i_fop.mmap(file, vma)
            if err:
                return err
            self.mm.vmas[ino] = vma
            file.f_mapping.i_mmap_writable += 1
            return 0
        finally:
            self.up_write(self.mm.mmap_lock)

    def vm_munmap(self, file: File) -> KGen:
        """vm_munmap(): remove the mapping and its PTEs."""
        yield from self.down_write(self.mm.mmap_lock)
        vma = self.mm.vmas.pop(file.f_inode.i_ino, None)
        if vma is not None:
            self.zap_vma(vma)
            file.f_mapping.i_mmap_writable -= 1
        self.up_write(self.mm.mmap_lock)
        return 0

    def zap_vma(self, vma: VmArea) -> None:
        for folio in vma.vm_file.f_mapping.i_pages.values():
            if folio.mapcount:
                self.zap_folio_pte(folio)

    # -- reclaim (mm/vmscan.c, mm/truncate.c) --------------------------------------------------------

    def folio_evictable_now(self, folio: Folio) -> bool:
        """What shrink_folio_list() needs: clean, unlocked, not under writeback, not mapped."""
        return (
            not (folio.dirty or folio.writeback or folio.locked or folio.mapcount)
            and folio.mapping is not None
        )

    def filemap_release_folio(self, folio: Folio) -> bool:
        """filemap_release_folio(): let the filesystem drop its private state (buffers, iomap state)."""
        if folio.private is None:
            return True
        mapping = folio.mapping
        if mapping is None or mapping.a_ops is None or mapping.a_ops.release_folio is None:
            return True
        return bool(mapping.a_ops.release_folio(folio))

    def evict_folio(self, folio: Folio) -> bool:
        """Reclaim one folio (shrink_folio_list -> __remove_mapping); False if it cannot go now."""
        if not self.folio_evictable_now(folio):
            return False
        self.cov(f"mm:evict:{'U' if folio.uptodate else 'u'}:{type(folio.private).__name__}")
        folio.locked = True  # folio_trylock() in reclaim context
        try:
            if not self.filemap_release_folio(folio):
                return False
            self.filemap_remove_folio(folio)
            return True
        finally:
            folio.locked = False
            self.wake_up(folio.lock_wq)

    def drop_caches(self) -> int:
        """echo 1 > drop_caches: invalidate_mapping_pages() on every inode."""
        dropped = 0
        for ino in sorted(self.sb.s_inodes):
            mapping = self.sb.s_inodes[ino].i_mapping
            for index in sorted(mapping.i_pages):
                folio = mapping.i_pages[index]
                if self.evict_folio(folio):
                    dropped += 1
        return dropped
