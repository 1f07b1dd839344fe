"""Micro-benchmark of the simulated block device (prints figures; asserts nothing).

    python bench/bench_bdev.py

1. snapshot / restore / clone cost against a full ``np.copy`` of the device, for 1, 16 and 128 MiB
   devices with 10 changed chunks: the overlays make them O(changed), independent of device size;
2. per-operation costs of 4 KiB reads and writes (base, durable, cached, sub-chunk, FUA), flush,
   and materialising full images.
"""

from __future__ import annotations

import sys
import timeit
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simkernel.block.bdev import BlockDevice, DeviceSnapshot

MiB = 1 << 20


def per_call(fn: Callable[[], object], min_time: float = 0.2) -> float:
    """Best-of-5 seconds per call of ``fn``."""
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    number = max(number, int(number * min_time / 0.2))
    return min(timer.repeat(repeat=5, number=number)) / number


def fmt(seconds: float) -> str:
    if seconds < 1e-6:
        return f"{seconds * 1e9:8.0f} ns"
    if seconds < 1e-3:
        return f"{seconds * 1e6:8.2f} µs"
    return f"{seconds * 1e3:8.2f} ms"


def device_with_changes(size: int, changed: int = 10) -> BlockDevice:
    base = np.zeros(size, dtype=np.uint8)
    base.flags.writeable = False
    dev = BlockDevice(base)
    for i in range(changed):
        stride = dev.nr_sectors // changed
        dev.write(i * stride, bytes([i + 1]) * 4096, fua=i % 2 == 0)
    return dev


def bench_snapshots() -> None:
    print("snapshot cost vs np.copy of the whole device (10 changed chunks)")
    print(f"{'size':>8} {'np.copy':>12} {'snapshot':>12} {'restore+write':>14} {'clone':>12} {'ratio':>8}")
    for mib in (1, 16, 128):
        dev = device_with_changes(mib * MiB)
        t_copy = per_call(partial(np.copy, dev.base), min_time=0.5)

        def snap(dev: BlockDevice = dev) -> None:
            dev.snapshot()
            dev.write(0, b"\0" * 512)  # pay the copy-on-write the snapshot defers

        s = dev.snapshot()

        def restore(s: DeviceSnapshot = s) -> None:
            BlockDevice.from_snapshot(s).write(0, b"\0" * 512)

        t_snap = per_call(snap)
        t_restore = per_call(restore)
        t_clone = per_call(dev.clone)
        print(
            f"{mib:>5} MiB {fmt(t_copy):>12} {fmt(t_snap):>12} {fmt(t_restore):>14} {fmt(t_clone):>12}"
            f" {t_copy / t_clone:>7.0f}x"
        )
    print("  snapshot and restore+write include the deferred copy-on-write of the next write;")
    print("  ratio = np.copy / clone")


def bench_ops() -> None:
    print("\nper-operation cost, 16 MiB device, 4 KiB chunks")
    dev = device_with_changes(16 * MiB, changed=0)
    blk = bytes(range(256)) * 16
    dev.write(8, blk, fua=True)  # chunk 1 durable
    dev.write(16, blk)  # chunk 2 cached
    half = blk[:2048]
    ops: list[tuple[str, Callable[[], object]]] = [
        ("read 4 KiB, base", lambda: dev.read(800, 4096)),
        ("read 4 KiB, durable overlay", lambda: dev.read(8, 4096)),
        ("read 4 KiB, volatile cache", lambda: dev.read(16, 4096)),
        ("read 512 B, volatile cache", lambda: dev.read(17, 512)),
        ("read 16 KiB over 4 chunks", lambda: dev.read(8, 16384)),
        ("write 4 KiB aligned", lambda: dev.write(24, blk)),
        ("write 4 KiB aligned FUA", lambda: dev.write(32, blk, fua=True)),
        ("write 2 KiB into a base chunk", lambda: dev.write(900, half)),
        ("write 2 KiB into a cached chunk", lambda: dev.write(16, half)),
        ("write 4 KiB straddling 2 chunks", lambda: dev.write(44, blk)),
        ("should_fail (nothing armed)", lambda: dev.should_fail("write", 8, 8)),
    ]
    for name, fn in ops:
        print(f"  {name:34s} {fmt(per_call(fn))}")

    def flush_10() -> None:
        for i in range(10):
            dev.write(64 + 8 * i, blk)
        dev.flush()

    print(f"  {'10 x write 4 KiB + flush':34s} {fmt(per_call(flush_10))}")
    print(f"  {'durable_image() (O(size))':34s} {fmt(per_call(dev.durable_image))}")
    print(f"  {'current_image() (O(size))':34s} {fmt(per_call(dev.current_image))}")


if __name__ == "__main__":
    bench_snapshots()
    bench_ops()
