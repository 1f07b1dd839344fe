"""The simulated block device: a sector-addressed store with a volatile write cache.

A :class:`BlockDevice` is pure data, with no scheduler: the block-layer glue (bios, the in-flight
queue, completion callbacks, wait queues) decides *when* a request reaches the device and calls
:meth:`BlockDevice.write` / :meth:`BlockDevice.read` / :meth:`BlockDevice.flush` at that moment.

Storage is three layers, read top-down:

1. the **volatile write cache**: writes that completed but were not flushed. Lost at a power cut;
2. the **durable overlay**: content that reached the media (flushed, or written with FUA);
3. the **base image**: a read-only ``np.ndarray`` of ``uint8`` shared by every device made from it.
   It is never copied or written.

Both overlays map a chunk number to the *whole* chunk's content as immutable ``bytes``
(``chunk_size`` bytes, 4096 by default; the device's last chunk may be shorter). A cache chunk
always holds the chunk's *current* content, so its sectors that were not written since the last
flush equal the durable ones, and a flush may move whole chunks. Because chunks are immutable, a
:meth:`~BlockDevice.snapshot` shares the overlay dicts with the device (the device copies a dict
before its next change: copy-on-write), so snapshots and clones cost O(chunks changed), never
O(device size). Only :meth:`~BlockDevice.durable_image` and :meth:`~BlockDevice.current_image`
materialise a full image.

Durability rules (what the glue must follow so that the device agrees with
:func:`oracle.replay.durable_prefix`): call :meth:`~BlockDevice.write` when a write *completes*
(its data is then in the volatile cache, or durable at once with ``fua=True``, which makes nothing
else durable) and :meth:`~BlockDevice.flush` when a PREFLUSH request is *processed* (it drains the
cache: every write completed so far becomes durable).

Fault injection: :meth:`~BlockDevice.inject` arms failures, and the glue asks
:meth:`~BlockDevice.should_fail` before applying a request; a failed request is simply not applied,
so the device itself stays a plain store.

Requests that are not sector-aligned or not inside the device are model bugs: they raise a plain
``ValueError`` with a one-line message naming the sector and length.
"""

from __future__ import annotations

import errno
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np

from simkernel.config import SECTOR_SIZE
from simkernel.errors import GeometryError

__all__ = [
    "CHUNK_SIZE",
    "FAULT_OPS",
    "SECTOR_SIZE",
    "BlockDevice",
    "DeviceSnapshot",
    "Injection",
]

#: default overlay granularity in bytes (one 4 KiB filesystem block)
CHUNK_SIZE: Final = 4096
#: operations :meth:`BlockDevice.inject` can make fail
FAULT_OPS: Final = ("read", "write", "flush")

FaultOp = Literal["read", "write", "flush"]


@dataclass(frozen=True, slots=True)
class Injection:
    """One armed fault: the next ``count`` requests of kind ``op`` that overlap ``sector_range``
    (half-open ``[start, end)`` in sectors; ``None`` = anywhere) fail with ``error`` (a positive errno)."""

    op: FaultOp
    count: int
    sector_range: tuple[int, int] | None
    error: int

    def matches(self, op: str, sector: int, nsectors: int) -> bool:
        if op != self.op:
            return False
        if self.sector_range is None:
            return True
        lo, hi = self.sector_range
        return sector < hi and lo < sector + max(nsectors, 1)


@dataclass(frozen=True, slots=True, eq=False)
class DeviceSnapshot:
    """The full state of a :class:`BlockDevice` at one moment; immutable, O(chunks changed) to take.

    ``durable`` and ``cache`` map chunk numbers to whole-chunk ``bytes``; ``base`` is the shared,
    read-only base image. ``injections`` are the faults still armed. The mappings are shared with
    the device that took the snapshot (which copies them before its next change): never mutate them.
    """

    base: np.ndarray
    chunk_size: int
    durable: Mapping[int, bytes]
    cache: Mapping[int, bytes]
    injections: tuple[Injection, ...]


class BlockDevice:
    """A block device of ``base.size`` bytes over a shared read-only base image.

    ``chunk_size`` (a power of two, a multiple of :data:`SECTOR_SIZE`) is the overlay granularity;
    requests may be any sector-aligned size regardless of it.
    """

    __slots__ = (
        "_base",
        "_base_mv",
        "_cache",
        "_cache_shared",
        "_chunk_shift",
        "_chunk_size",
        "_durable",
        "_durable_shared",
        "_injections",
        "_nr_sectors",
        "_size",
    )

    def __init__(self, base: np.ndarray, *, chunk_size: int = CHUNK_SIZE) -> None:
        if not isinstance(base, np.ndarray) or base.dtype != np.uint8 or base.ndim != 1:
            raise GeometryError("base image must be a 1-D numpy array of uint8", where="block device")
        if not base.flags.c_contiguous:
            raise GeometryError("base image must be a contiguous array", where="block device")
        if base.size == 0 or base.size % SECTOR_SIZE:
            raise GeometryError(
                f"device size {base.size} is not a positive multiple of {SECTOR_SIZE}", where="block device"
            )
        if chunk_size < SECTOR_SIZE or chunk_size & (chunk_size - 1):
            raise GeometryError(
                f"chunk size {chunk_size} is not a power of two >= {SECTOR_SIZE}", where="block device"
            )
        view = base.view()
        view.flags.writeable = False  # a read-only view: O(1), and the model cannot scribble on the base
        self._base = view
        self._base_mv = view.data
        self._size: int = int(base.size)
        self._nr_sectors = self._size // SECTOR_SIZE
        self._chunk_size = chunk_size
        self._chunk_shift = chunk_size.bit_length() - 1
        self._durable: dict[int, bytes] = {}
        self._cache: dict[int, bytes] = {}
        # a shared dict also belongs to a snapshot (or another device): copy it before changing it
        self._durable_shared = False
        self._cache_shared = False
        self._injections: list[Injection] = []

    # --- geometry -------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Device size in bytes."""
        return self._size

    @property
    def nr_sectors(self) -> int:
        """Device size in 512-byte sectors."""
        return self._nr_sectors

    @property
    def chunk_size(self) -> int:
        """Overlay granularity in bytes."""
        return self._chunk_size

    @property
    def base(self) -> np.ndarray:
        """The shared base image (a read-only view; never copied)."""
        return self._base

    def __repr__(self) -> str:
        return (
            f"BlockDevice(sectors={self._nr_sectors}, durable_chunks={len(self._durable)}, "
            f"cached_chunks={len(self._cache)}, injections={len(self._injections)})"
        )

    # --- I/O --------------------------------------------------------------------------------------

    def _check(self, what: str, sector: int, nbytes: int) -> int:
        """Validate a request; return its byte offset."""
        if (
            sector < 0
            or nbytes <= 0
            or nbytes % SECTOR_SIZE
            or sector + nbytes // SECTOR_SIZE > self._nr_sectors
        ):
            raise ValueError(
                f"block device {what}: sector {sector} length {nbytes} bytes is not a sector-aligned "
                f"request inside the device ({self._nr_sectors} sectors)"
            )
        return sector * SECTOR_SIZE

    def _chunk_len(self, ci: int) -> int:
        start = ci << self._chunk_shift
        return min(self._chunk_size, self._size - start)

    def _base_chunk(self, ci: int) -> bytes:
        start = ci << self._chunk_shift
        return self._base_mv[start : start + self._chunk_size].tobytes()

    def read(self, sector: int, nbytes: int) -> bytes:
        """What a read of ``nbytes`` at ``sector`` sees now: volatile cache over durable over base."""
        off = self._check("read", sector, nbytes)
        shift = self._chunk_shift
        ci = off >> shift
        o = off - (ci << shift)
        if o + nbytes <= self._chunk_size:  # fast path: inside one chunk
            chunk = self._cache.get(ci)
            if chunk is None:
                chunk = self._durable.get(ci)
                if chunk is None:
                    return self._base_mv[off : off + nbytes].tobytes()
            if o == 0 and nbytes == len(chunk):
                return chunk
            return chunk[o : o + nbytes]
        parts: list[bytes] = []
        end = off + nbytes
        while off < end:
            ci = off >> shift
            o = off - (ci << shift)
            take = min(self._chunk_size - o, end - off)
            chunk = self._cache.get(ci)
            if chunk is None:
                chunk = self._durable.get(ci)
            if chunk is None:
                parts.append(self._base_mv[off : off + take].tobytes())
            elif o == 0 and take == len(chunk):
                parts.append(chunk)
            else:
                parts.append(chunk[o : o + take])
            off += take
        return b"".join(parts)

    def write(self, sector: int, data: bytes, *, fua: bool = False) -> None:
        """Apply a *completed* write: it lands in the volatile cache, or with ``fua`` on the media at
        once (and nothing else becomes durable)."""
        if type(data) is not bytes:
            data = bytes(data)  # own an immutable copy of a bytearray/memoryview
        n = len(data)
        off = self._check("write", sector, n)
        if fua and self._durable_shared:
            self._durable = dict(self._durable)
            self._durable_shared = False
        if self._cache_shared and (not fua or self._cache):
            self._cache = dict(self._cache)
            self._cache_shared = False
        durable = self._durable
        cache = self._cache
        shift = self._chunk_shift
        pos = 0
        while pos < n:
            at = off + pos
            ci = at >> shift
            o = at - (ci << shift)
            clen = self._chunk_len(ci)
            take = min(clen - o, n - pos)
            piece = data if take == n else data[pos : pos + take]
            whole = o == 0 and take == clen
            if fua:
                if whole:
                    durable[ci] = piece
                    cache.pop(ci, None)  # the cache copy would be identical: drop it
                else:
                    old = durable.get(ci)
                    if old is None:
                        old = self._base_chunk(ci)
                    durable[ci] = old[:o] + piece + old[o + take :]
                    cached = cache.get(ci)
                    if cached is not None:
                        cache[ci] = cached[:o] + piece + cached[o + take :]
            elif whole:
                cache[ci] = piece
            else:
                old = cache.get(ci)
                if old is None:
                    old = durable.get(ci)
                    if old is None:
                        old = self._base_chunk(ci)
                cache[ci] = old[:o] + piece + old[o + take :]
            pos += take

    def flush(self) -> None:
        """PREFLUSH: everything in the volatile cache becomes durable."""
        if not self._cache:
            return
        if self._durable_shared:
            self._durable = {**self._durable, **self._cache}
            self._durable_shared = False
        else:
            self._durable.update(self._cache)
        self._cache = {}
        self._cache_shared = False

    def power_cut(self) -> None:
        """Lose the volatile write cache, as a power failure does: reads then see the durable content."""
        self._cache = {}
        self._cache_shared = False

    # --- fault injection -------------------------------------------------------------------------

    def inject(
        self,
        op: FaultOp,
        *,
        count: int = 1,
        sector_range: tuple[int, int] | None = None,
        error: int = errno.EIO,
    ) -> None:
        """Make the next ``count`` ``op`` requests that overlap ``sector_range`` (half-open
        ``[start, end)`` in sectors, ``None`` = any) fail with ``error``.

        Injections are matched in the order they were armed; the first match is consumed.
        """
        if op not in FAULT_OPS:
            raise ValueError(f"block device inject: unknown op {op!r} (expected one of {FAULT_OPS})")
        if count < 1:
            raise ValueError(f"block device inject: count {count} must be >= 1")
        if error <= 0:
            raise ValueError(f"block device inject: error {error} must be a positive errno")
        if sector_range is not None:
            lo, hi = sector_range
            if op == "flush":
                raise ValueError("block device inject: a flush has no sector range")
            if not 0 <= lo < hi <= self._nr_sectors:
                raise ValueError(
                    f"block device inject: sector range [{lo}, {hi}) is empty or outside the device "
                    f"({self._nr_sectors} sectors)"
                )
            sector_range = (int(lo), int(hi))
        self._injections.append(Injection(op, int(count), sector_range, int(error)))

    def should_fail(self, op: FaultOp, sector: int = 0, nsectors: int = 0) -> int | None:
        """The errno the request fails with (consuming one injection), or ``None`` if it succeeds."""
        if not self._injections:
            return None
        for i, inj in enumerate(self._injections):
            if inj.matches(op, sector, nsectors):
                if inj.count == 1:
                    del self._injections[i]
                else:
                    self._injections[i] = Injection(inj.op, inj.count - 1, inj.sector_range, inj.error)
                return inj.error
        return None

    @property
    def injections(self) -> tuple[Injection, ...]:
        """The faults still armed, in matching order."""
        return tuple(self._injections)

    # --- snapshots and images ----------------------------------------------------------------------

    def snapshot(self) -> DeviceSnapshot:
        """The device's state now; O(1) here, the device copies O(chunks changed) on its next change."""
        self._durable_shared = True
        self._cache_shared = True
        return DeviceSnapshot(
            base=self._base,
            chunk_size=self._chunk_size,
            durable=self._durable,
            cache=self._cache,
            injections=tuple(self._injections),
        )

    @classmethod
    def from_snapshot(cls, snap: DeviceSnapshot) -> BlockDevice:
        """A new device in the state ``snap`` recorded (the snapshot stays usable)."""
        dev = cls(snap.base, chunk_size=snap.chunk_size)
        # nobody changes a snapshot's dicts any more: share them and copy on the first change
        dev._durable = _adopt(snap.durable)
        dev._cache = _adopt(snap.cache)
        dev._durable_shared = True
        dev._cache_shared = True
        dev._injections = list(snap.injections)
        return dev

    def clone(self) -> BlockDevice:
        """An independent copy of this device (content and armed faults)."""
        return BlockDevice.from_snapshot(self.snapshot())

    def dirty_chunks(self) -> tuple[int, ...]:
        """Chunk numbers holding unflushed (volatile) data, ascending."""
        return tuple(sorted(self._cache))

    def changed_chunks(self) -> tuple[int, ...]:
        """Chunk numbers whose content may differ from the base image (durable or volatile), ascending."""
        return tuple(sorted(self._durable.keys() | self._cache.keys()))

    def durable_image(self) -> np.ndarray:
        """A new array: what survives a power cut now (base + durable overlay). O(device size)."""
        img = np.array(self._base, copy=True)
        self._paint(img, self._durable)
        return img

    def current_image(self) -> np.ndarray:
        """A new array: what reads see now (base + durable + volatile cache). O(device size)."""
        img = np.array(self._base, copy=True)
        self._paint(img, self._durable)
        self._paint(img, self._cache)
        return img

    def _paint(self, img: np.ndarray, overlay: Mapping[int, bytes]) -> None:
        shift = self._chunk_shift
        for ci, chunk in overlay.items():
            start = ci << shift
            img[start : start + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)


def _adopt(m: Mapping[int, bytes]) -> dict[int, bytes]:
    """The dict behind a snapshot mapping, to share copy-on-write (a copy if it is another mapping)."""
    return m if type(m) is dict else dict(m)
