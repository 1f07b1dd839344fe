"""The block layer between filesystems and the device (block/blk-core.c, block/bio.c).

A write or flush bio is *submitted* (logged, put in flight) and *completed* later as a separate,
schedulable event -- in any order, chosen by the schedule. Completion applies the data to the
device's volatile cache (or media, with FUA), logs it, and runs ``bi_end_io`` in "interrupt
context": a plain function that may wake tasks or queue work, never sleep. Reads complete
synchronously at submission (a preemption point first), which is all the model needs from them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from simkernel.block.bdev import BlockDevice
from simkernel.block.iolog import IoLog
from simkernel.config import SECTOR_SIZE
from simkernel.kernel.base import KernelBase
from simkernel.kernel.sched import KGen, WaitQueue

REQ_OP_READ = "read"
REQ_OP_WRITE = "write"
REQ_OP_FLUSH = "flush"


class Bio:
    """struct bio: one request. ``data`` is the write payload, snapshot at submission."""

    __slots__ = (
        "data",
        "done",
        "end_io",
        "fua",
        "log_index",
        "nbytes",
        "op",
        "preflush",
        "private",
        "sector",
        "status",
        "tag",
        "wq",
    )

    def __init__(
        self,
        op: str,
        sector: int = 0,
        data: bytes = b"",
        *,
        nbytes: int = 0,
        fua: bool = False,
        preflush: bool = False,
        end_io: Callable[[Bio], None] | None = None,
        private: Any = None,
        tag: str = "",
    ) -> None:
        self.op = op
        self.sector = sector
        self.data = data
        self.nbytes = nbytes or len(data)
        self.fua = fua
        self.preflush = preflush
        self.end_io = end_io
        self.private = private
        self.tag = tag
        self.status = 0
        self.done = False
        self.log_index = -1
        self.wq = WaitQueue(f"bio:{tag}")

    def __repr__(self) -> str:
        return f"<bio {self.op} sector={self.sector} len={self.nbytes} {self.tag}>"


class BlockLayer(KernelBase):
    """submit_bio, completion, flush."""

    bdev: BlockDevice
    iolog: IoLog
    #: submitted, not yet completed (FIFO by submission)
    inflight: list[Bio]

    def submit_bio(self, bio: Bio) -> None:
        """submit_bio(): queue a write/flush; it completes when the schedule says so."""
        self.BUG_ON(bio.op == REQ_OP_READ, "asynchronous read bio (use submit_bio_wait)")
        step = self.sched.step_no
        if bio.op == REQ_OP_WRITE:
            if bio.preflush:
                bio.log_index = self.iolog.append_submit(
                    "write",
                    step=step,
                    sector=bio.sector,
                    data=bio.data,
                    fua=bio.fua,
                    preflush=True,
                    tag=bio.tag,
                )
            else:
                bio.log_index = self.iolog.append_submit(
                    "write", step=step, sector=bio.sector, data=bio.data, fua=bio.fua, tag=bio.tag
                )
        else:
            bio.log_index = self.iolog.append_submit("flush", step=step, tag=bio.tag)
        self.inflight.append(bio)

    def bio_complete(self, bio: Bio) -> None:
        """The device finished ``bio`` (an interrupt): apply, log, run bi_end_io."""
        self.inflight.remove(bio)
        nsect = bio.nbytes // SECTOR_SIZE
        err: int | None = None
        if bio.preflush or bio.op == REQ_OP_FLUSH:
            err = self.bdev.should_fail("flush", 0, 0)
            if err is None:
                self.bdev.flush()
        if err is None and bio.op == REQ_OP_WRITE:
            # injected write errors hit data writes: metadata/journal write errors would abort the
            # journal, which the model does not do
            if not bio.tag.startswith(("meta", "journal")):
                err = self.bdev.should_fail("write", bio.sector, nsect)
            if err is None:
                self.bdev.write(bio.sector, bio.data, fua=bio.fua)
        bio.status = -err if err else 0
        self.iolog.mark_complete(bio.log_index, self.sched.step_no, bio.status)
        bio.done = True
        self.wake_up(bio.wq)
        if bio.end_io is not None:
            bio.end_io(bio)

    def submit_bio_wait(self, bio: Bio) -> KGen:
        """submit_bio_wait(): returns 0 or -errno. Reads fill ``bio.data``."""
        if bio.op == REQ_OP_READ:
            yield  # the task sleeps in io_schedule(); others may run
            nsect = bio.nbytes // SECTOR_SIZE
            err = self.bdev.should_fail("read", bio.sector, nsect)
            if err:
                bio.status = -err
                # what a block trace shows: the device failed a read here (the oracle may then
                # accept short reads, as it does after a syscall returned -EIO)
                self.iolog.add_mark(f"read error {bio.sector}+{nsect}", self.sched.step_no)
                return bio.status
            bio.data = self.bdev.read(bio.sector, bio.nbytes)
            return 0
        self.submit_bio(bio)
        while not bio.done:
            yield bio.wq
        return bio.status

    def blkdev_issue_flush(self) -> KGen:
        """blkdev_issue_flush(): an empty PREFLUSH; returns when the device cache is on media."""
        bio = Bio(REQ_OP_FLUSH, tag="flush")
        return (yield from self.submit_bio_wait(bio))

    def bdev_read_block(self, blocknr: int, blocksize: int) -> KGen:
        """sb_bread()-style synchronous block read; returns (errno, bytes)."""
        bio = Bio(REQ_OP_READ, blocknr * (blocksize // SECTOR_SIZE), nbytes=blocksize, tag=f"read {blocknr}")
        err = yield from self.submit_bio_wait(bio)
        return err, bio.data
