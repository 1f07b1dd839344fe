"""A simulated machine: a block device holding an ext4 image, a kernel mounted on it, a scheduler.

``Machine`` is the simulated kernel's public face. User space (``fuzz/runner.py``) spawns threads of
syscalls, runs the scheduler, quiesces and unmounts, then takes the final image, the IO log and the
kernel's reports. Phases outside the program's threads (setup, quiesce, remount) run with the default
scheduling policy, so the program's schedule decides only what its threads do.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from simkernel.block.bdev import BlockDevice
from simkernel.block.iolog import IoLog
from simkernel.config import Config
from simkernel.fs.ext4 import ondisk
from simkernel.fs.ext4.mkfs import mkfs
from simkernel.kernel.actors import ACTORS
from simkernel.kernel.kernel import Kernel, compose_kernel
from simkernel.kernel.sched import KGen, ListChooser, Scheduler, Task
from simkernel.report import Report

#: mkfs images by geometry: a memo of a pure function (same config -> same bytes), shared read-only.
#: Bounded, least recently used first out: a campaign draws a new geometry for many fresh programs,
#: and an unbounded memo grew a long-running worker by one image per geometry (issue 6's flat RSS).
_BASE_IMAGES: OrderedDict[tuple[Any, ...], np.ndarray] = OrderedDict()
BASE_IMAGES_KEPT = 16


def base_image(config: Config) -> np.ndarray:
    """The freshly made (read-only) filesystem image for ``config``."""
    key = (
        config.block_size,
        config.device_blocks,
        config.inodes,
        config.inline_data,
        config.journal,
        config.journal_blocks,
    )
    img = _BASE_IMAGES.get(key)
    if img is not None:
        _BASE_IMAGES.move_to_end(key)
    else:
        layout = ondisk.compute_layout(
            config.block_size,
            config.device_blocks,
            config.inodes,
            journal_blocks=config.journal_blocks if config.journal else 0,
        )
        img = mkfs(layout, inline_data=config.inline_data)
        img.flags.writeable = False
        _BASE_IMAGES[key] = img
        while len(_BASE_IMAGES) > BASE_IMAGES_KEPT:
            _BASE_IMAGES.popitem(last=False)
    return img


class _Phase:
    """Default-policy decisions (0) for setup/quiesce, then back to the program's chooser."""

    def next_decision(self) -> int | None:
        return None


class Machine:
    """One simulated machine. Deterministic: the same inputs give the same steps and bytes."""

    def __init__(
        self,
        config: Config,
        variants: Iterable[type] = (),
        *,
        schedule: Iterable[int] = (),
        actors: Iterable[str] = ACTORS,
        max_steps: int = 200_000,
        trace: bool = True,
    ) -> None:
        self.config = config.validate()
        self.base = base_image(config)
        self.bdev = BlockDevice(self.base)
        self.iolog = IoLog()
        self.chooser: Any = ListChooser(schedule)
        self.sched = Scheduler(self._phase_chooser(), self._actions, max_steps=max_steps, trace=trace)
        cls = compose_kernel(tuple(variants))
        self.kernel: Kernel = cls(config, self.sched, self.bdev, self.iolog, frozenset(actors))
        self.kernel.ext4_fill_super()
        #: the user-space history recorder, for authoring predicates (set by the runner)
        self.recorder: Any = None

    # -- plumbing ------------------------------------------------------------------------------------

    def _phase_chooser(self) -> _Phase:
        return _Phase()

    def _actions(self, tasks_runnable: bool) -> list[Any]:
        return self.kernel.background_actions(tasks_runnable)

    @property
    def reports(self) -> list[Report]:
        return self.sched.reports

    @property
    def stopped(self) -> bool:
        return self.sched.stopped

    def run_to_completion(self, gen: KGen, name: str) -> Any:
        """Run one kernel task with the default policy until it finishes (setup, quiesce, remount)."""
        saved = self.sched.chooser
        self.sched.chooser = _Phase()
        task = self.sched.spawn(name, gen, kind="kthread")
        try:
            self.sched.run(lambda: task.state == "done")
        finally:
            self.sched.chooser = saved
        return task.result

    def spawn_user(self, name: str, gen: KGen) -> Task:
        return self.sched.spawn(name, gen, kind="user")

    def run_program(self, until: Callable[[], bool] | None = None) -> None:
        """Run the user threads under the program's schedule until they are all done."""
        self.sched.chooser = self.chooser
        done = until or (lambda: not self.sched.live_tasks("user"))
        self.sched.run(done)

    # -- whole-machine operations --------------------------------------------------------------------

    def setup_files(self, names: Iterable[str]) -> None:
        """Create the program's files (empty) and make that durable before the threads start."""
        k = self.kernel

        def setup() -> KGen:
            for name in names:
                ret = yield from k.sys_creat(name)
                if ret < 0:
                    raise RuntimeError(f"setup: creat({name}) failed with {ret}")
            yield from k.sys_sync()
            return 0

        self.run_to_completion(setup(), "setup")

    def quiesce(self) -> None:
        """All threads done: let kernel threads finish, sync everything, complete all IO."""
        if self.sched.stopped:
            return
        self.sched.chooser = _Phase()
        self.sched.run(lambda: not [t for t in self.sched.live_tasks() if t.kind == "kthread"])
        if self.sched.stopped:
            return
        self.run_to_completion(self.kernel.sys_sync(), "sync")

    def unmount(self) -> None:
        """umount: quiesce, then ext4_put_super() (journal emptied, superblock clean)."""
        self.quiesce()
        if self.sched.stopped:
            return
        self.run_to_completion(self.kernel.ext4_put_super(), "umount")
        self.sched.run(lambda: not self.kernel.inflight)

    def remount(self) -> None:
        """unmount + mount: write everything back, drop all in-memory state, rebuild it from disk."""
        self.unmount()
        if self.sched.stopped:
            return
        config = self.config
        cls = type(self.kernel)
        self.kernel = cls(config, self.sched, self.bdev, self.iolog, self.kernel.actors)
        self.kernel.ext4_fill_super()

    def final_image(self) -> np.ndarray:
        """The disk as it would be found after a clean unmount (durable content)."""
        return self.bdev.durable_image()
