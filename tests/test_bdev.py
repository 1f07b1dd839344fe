"""BlockDevice against a trivial model: one bytearray for what reads see, one for what is durable."""

from __future__ import annotations

import errno

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    precondition,
    rule,
)

from simkernel.block.bdev import SECTOR_SIZE, BlockDevice, DeviceSnapshot
from simkernel.errors import GeometryError


def make_base(nsectors: int, seed: int = 0) -> np.ndarray:
    base = np.random.default_rng(seed).integers(0, 256, nsectors * SECTOR_SIZE, dtype=np.uint8)
    base.flags.writeable = False
    return base


def payload(seed: int, nsectors: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, nsectors * SECTOR_SIZE, dtype=np.uint8).tobytes()


class DeviceMachine(RuleBasedStateMachine):
    snapshots = Bundle("snapshots")

    @initialize(
        nsectors=st.integers(1, 40),
        chunk_size=st.sampled_from([512, 1024, 4096]),
        seed=st.integers(0, 2**16),
    )
    def setup(self, nsectors: int, chunk_size: int, seed: int) -> None:
        self.base = make_base(nsectors, seed)
        self.base_copy = bytes(self.base)
        self.nsectors = nsectors
        self.dev = BlockDevice(self.base, chunk_size=chunk_size)
        self.cur = bytearray(self.base_copy)
        self.dur = bytearray(self.base_copy)
        self.seed = seed

    def _extent(self, data: st.DataObject) -> tuple[int, int]:
        sector = data.draw(st.integers(0, self.nsectors - 1))
        n = data.draw(st.integers(1, min(self.nsectors - sector, 12)))
        return sector, n

    @rule(data=st.data(), fua=st.booleans(), seed=st.integers(0, 2**16), as_bytearray=st.booleans())
    def write(self, data: st.DataObject, fua: bool, seed: int, as_bytearray: bool) -> None:
        sector, n = self._extent(data)
        buf = payload(seed, n)
        off = sector * SECTOR_SIZE
        if as_bytearray:
            arg = bytearray(buf)
            self.dev.write(sector, arg, fua=fua)  # type: ignore[arg-type]
            arg[:] = bytes(len(arg))  # the device must own its copy
        else:
            self.dev.write(sector, buf, fua=fua)
        self.cur[off : off + len(buf)] = buf
        if fua:
            self.dur[off : off + len(buf)] = buf

    @rule(data=st.data())
    def read(self, data: st.DataObject) -> None:
        sector, n = self._extent(data)
        off = sector * SECTOR_SIZE
        got = self.dev.read(sector, n * SECTOR_SIZE)
        assert type(got) is bytes
        assert got == bytes(self.cur[off : off + n * SECTOR_SIZE])

    @rule()
    def flush(self) -> None:
        self.dev.flush()
        self.dur[:] = self.cur
        assert self.dev.dirty_chunks() == ()

    @rule()
    def power_cut(self) -> None:
        self.dev.power_cut()
        self.cur[:] = self.dur

    @rule(target=snapshots)
    def snapshot(self) -> tuple[DeviceSnapshot, bytes, bytes]:
        return self.dev.snapshot(), bytes(self.cur), bytes(self.dur)

    @rule(snap=snapshots)
    def restore_copy(self, snap: tuple[DeviceSnapshot, bytes, bytes]) -> None:
        """A device restored from an old snapshot shows the old content, whatever happened since."""
        s, cur, dur = snap
        other = BlockDevice.from_snapshot(s)
        assert other.current_image().tobytes() == cur
        assert other.durable_image().tobytes() == dur
        other.write(0, b"\xa5" * SECTOR_SIZE, fua=True)  # must not leak into the snapshot or self.dev
        other.flush()
        assert BlockDevice.from_snapshot(s).current_image().tobytes() == cur

    @rule(snap=consumes(snapshots))
    def restore(self, snap: tuple[DeviceSnapshot, bytes, bytes]) -> None:
        s, cur, dur = snap
        self.dev = BlockDevice.from_snapshot(s)
        self.cur, self.dur = bytearray(cur), bytearray(dur)

    @rule(seed=st.integers(0, 2**16))
    def clone_independent(self, seed: int) -> None:
        twin = self.dev.clone()
        twin.write(0, payload(seed, 1), fua=seed % 2 == 0)
        twin.flush()
        twin.power_cut()
        # the original is untouched (checked by the invariants below)

    @precondition(lambda self: hasattr(self, "dev"))
    @invariant()
    def images_match(self) -> None:
        assert self.dev.current_image().tobytes() == bytes(self.cur)
        assert self.dev.durable_image().tobytes() == bytes(self.dur)
        assert bytes(self.base) == self.base_copy
        assert not self.base.flags.writeable
        changed = set(self.dev.changed_chunks())
        assert set(self.dev.dirty_chunks()) <= changed


DeviceMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestDeviceMachine = DeviceMachine.TestCase


def test_base_is_shared_not_copied() -> None:
    base = make_base(64)
    dev = BlockDevice(base)
    assert np.shares_memory(dev.base, base)
    assert not dev.base.flags.writeable
    snap = dev.snapshot()
    assert snap.base is dev.base
    assert np.shares_memory(dev.clone().base, base)


def test_writeable_base_is_not_modified() -> None:
    base = np.zeros(16 * SECTOR_SIZE, dtype=np.uint8)
    dev = BlockDevice(base)
    dev.write(0, b"\x01" * 4096, fua=True)
    dev.write(8, b"\x02" * 1024)
    dev.flush()
    assert not base.any()
    assert base.flags.writeable  # the caller's array keeps its flags
    img = dev.current_image()
    assert img.flags.writeable and not np.shares_memory(img, base)
    assert img[:4096].tolist() == [1] * 4096 and img[4096:5120].tolist() == [2] * 1024


def test_read_after_partial_writes_across_chunks() -> None:
    base = make_base(24, seed=3)
    dev = BlockDevice(base, chunk_size=4096)
    dev.write(7, b"\x11" * 1024)  # sectors 7..8 straddle chunks 0 and 1
    dev.write(6, b"\x22" * 512, fua=True)
    expect = bytearray(base.tobytes())
    expect[7 * 512 : 9 * 512] = b"\x11" * 1024
    expect[6 * 512 : 7 * 512] = b"\x22" * 512
    assert dev.read(0, len(expect)) == bytes(expect)
    assert dev.dirty_chunks() == (0, 1)
    dev.power_cut()
    durable = bytearray(base.tobytes())
    durable[6 * 512 : 7 * 512] = b"\x22" * 512
    assert dev.read(0, len(durable)) == bytes(durable)


def test_fua_makes_nothing_else_durable() -> None:
    dev = BlockDevice(make_base(16))
    dev.write(0, b"\x01" * 512)
    dev.write(1, b"\x02" * 512, fua=True)  # same chunk as the volatile write
    assert dev.durable_image()[:512].tobytes() == make_base(16)[:512].tobytes()
    assert dev.durable_image()[512:1024].tobytes() == b"\x02" * 512
    assert dev.read(0, 1024) == b"\x01" * 512 + b"\x02" * 512


def test_fua_over_cached_chunk_survives_a_later_flush() -> None:
    dev = BlockDevice(make_base(16))
    dev.write(0, b"\x01" * 4096)
    dev.write(0, b"\x02" * 4096, fua=True)
    assert dev.dirty_chunks() == ()
    dev.write(2, b"\x03" * 512)
    dev.write(0, b"\x04" * 512, fua=True)
    dev.flush()
    assert dev.read(0, 4096) == b"\x04" * 512 + b"\x02" * 512 + b"\x03" * 512 + b"\x02" * 2560


def test_partial_last_chunk() -> None:
    base = make_base(9)  # 4608 bytes: chunk 1 is one sector long
    dev = BlockDevice(base)
    dev.write(8, b"\x07" * 512)
    dev.write(7, b"\x08" * 1024, fua=True)
    assert dev.read(6, 1536) == base[3072:3584].tobytes() + b"\x08" * 1024
    assert dev.changed_chunks() == (0, 1)
    assert dev.nr_sectors == 9 and dev.size == 4608


def test_snapshot_is_immutable_and_restorable_many_times() -> None:
    dev = BlockDevice(make_base(32))
    dev.write(0, b"\x01" * 4096)
    dev.write(8, b"\x02" * 4096, fua=True)
    snap = dev.snapshot()
    before = dev.current_image().tobytes(), dev.durable_image().tobytes()
    dev.write(0, b"\x03" * 512, fua=True)
    dev.write(16, b"\x04" * 512)
    dev.flush()
    dev.power_cut()
    for _ in range(3):
        other = BlockDevice.from_snapshot(snap)
        assert (other.current_image().tobytes(), other.durable_image().tobytes()) == before
        other.write(1, b"\x05" * 512)
        other.flush()
    assert dict(snap.durable).keys() == {1}
    assert dict(snap.cache).keys() == {0}


@pytest.mark.parametrize(
    ("sector", "nbytes"),
    [(-1, 512), (0, 0), (0, 100), (0, 513), (15, 1024), (16, 512), (0, 16 * 512 + 512)],
)
def test_bad_requests_raise_valueerror(sector: int, nbytes: int) -> None:
    dev = BlockDevice(make_base(16))
    with pytest.raises(ValueError, match=f"sector {sector} length {nbytes}"):
        dev.read(sector, nbytes)
    with pytest.raises(ValueError, match=f"sector {sector} length {nbytes}"):
        dev.write(sector, b"\0" * nbytes)
    assert dev.changed_chunks() == ()


@pytest.mark.parametrize(
    "base",
    [
        np.zeros(0, dtype=np.uint8),
        np.zeros(1000, dtype=np.uint8),
        np.zeros(1024, dtype=np.int8),
        np.zeros((2, 512), dtype=np.uint8),
        np.zeros(2048, dtype=np.uint8)[::2],
    ],
)
def test_bad_base_is_geometry_error(base: np.ndarray) -> None:
    with pytest.raises(GeometryError):
        BlockDevice(base)


def test_bad_chunk_size() -> None:
    with pytest.raises(GeometryError):
        BlockDevice(make_base(8), chunk_size=3000)
    with pytest.raises(GeometryError):
        BlockDevice(make_base(8), chunk_size=256)


def test_injection_consumption_and_matching() -> None:
    dev = BlockDevice(make_base(64))
    assert dev.should_fail("write", 0, 8) is None
    dev.inject("write", count=2, sector_range=(16, 24), error=errno.ENOSPC)
    dev.inject("write")
    dev.inject("read", sector_range=(0, 1))
    dev.inject("flush", error=errno.EIO)
    # a write outside [16, 24) consumes the catch-all injection first
    assert dev.should_fail("write", 8, 8) == errno.EIO
    assert dev.should_fail("write", 8, 8) is None
    assert dev.should_fail("write", 23, 1) == errno.ENOSPC
    assert dev.should_fail("write", 12, 8) == errno.ENOSPC  # overlaps [16, 24)
    assert dev.should_fail("write", 16, 8) is None
    assert dev.should_fail("read", 1, 8) is None
    assert dev.should_fail("read", 0, 1) == errno.EIO
    assert dev.injections == (dev.injections[0],) and dev.injections[0].op == "flush"
    assert dev.should_fail("flush") == errno.EIO
    assert dev.should_fail("flush") is None
    assert dev.injections == ()


def test_injection_travels_with_snapshots() -> None:
    dev = BlockDevice(make_base(64))
    dev.inject("write", count=2)
    snap = dev.snapshot()
    assert dev.should_fail("write", 0, 1) == errno.EIO
    twin = BlockDevice.from_snapshot(snap)
    assert twin.injections[0].count == 2
    assert dev.injections[0].count == 1
    clone = dev.clone()
    assert clone.should_fail("write", 0, 1) == errno.EIO
    assert dev.injections[0].count == 1


def test_failed_write_is_not_applied_by_glue() -> None:
    """The glue's contract: ask should_fail, and on an error leave the device alone."""
    dev = BlockDevice(make_base(8))
    before = dev.current_image().tobytes()
    dev.inject("write")
    if dev.should_fail("write", 0, 1) is None:
        dev.write(0, b"\xff" * 512)
    assert dev.current_image().tobytes() == before


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("bogus",), {}),
        (("write",), {"count": 0}),
        (("write",), {"error": -5}),
        (("write",), {"sector_range": (5, 5)}),
        (("write",), {"sector_range": (0, 65)}),
        (("flush",), {"sector_range": (0, 1)}),
    ],
)
def test_bad_injection(args: tuple[str], kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        BlockDevice(make_base(64)).inject(*args, **kwargs)  # type: ignore[arg-type]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 255), st.integers(1, 8), st.booleans()), max_size=20))
def test_snapshot_cost_is_changed_chunks(writes: list[tuple[int, int, bool]]) -> None:
    dev = BlockDevice(make_base(256))
    for sector, n, fua in writes:
        n = min(n, 256 - sector)
        dev.write(sector, b"\x5a" * (n * SECTOR_SIZE), fua=fua)
    snap = dev.snapshot()
    assert len(snap.durable) + len(snap.cache) <= 2 * len(dev.changed_chunks())
    assert set(snap.durable) | set(snap.cache) == set(dev.changed_chunks())
