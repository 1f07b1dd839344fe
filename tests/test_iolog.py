"""The block IO log, and crash images replayed from it (oracle.replay) against the device."""

from __future__ import annotations

import errno
import json
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oracle.replay import crash_cutoff, durable_prefix, replay
from simkernel.block.bdev import SECTOR_SIZE, BlockDevice
from simkernel.block.iolog import IoLog, IoLogEntry
from simkernel.errors import CorpusError

NSECTORS = 24


def make_base(nsectors: int = NSECTORS, seed: int = 0) -> np.ndarray:
    base = np.random.default_rng(seed).integers(0, 256, nsectors * SECTOR_SIZE, dtype=np.uint8)
    base.flags.writeable = False
    return base


def fill(byte: int, nsectors: int = 1) -> bytes:
    return bytes([byte]) * (nsectors * SECTOR_SIZE)


# --- the log itself ------------------------------------------------------------------------------


def test_append_complete_mark() -> None:
    log = IoLog()
    w = log.append_submit("write", step=3, sector=8, data=fill(1, 2), fua=True, tag="meta sb")
    f = log.append_submit("flush", step=4)
    m = log.add_mark("syscall 0 returned", step=5)
    assert (w, f, m) == (0, 1, 2)
    assert log.in_flight() == (0, 1)
    log.mark_complete(f, step=6, status=-errno.EIO)
    log.mark_complete(w, step=7)
    e = log[0]
    assert (e.kind, e.sector, e.nsectors, e.fua, e.preflush, e.tag) == ("write", 8, 2, True, False, "meta sb")
    assert (e.submit_step, e.complete_step, e.status, e.ok) == (3, 7, 0, True)
    assert (log[1].preflush, log[1].status, log[1].ok) == (True, -errno.EIO, False)
    assert (log[2].kind, log[2].tag, log[2].complete_step) == ("mark", "syscall 0 returned", 5)
    # event clock: submit w, submit f, mark, complete f, complete w
    assert [x.submit_seq for x in log.entries] == [0, 1, 2]
    assert [x.complete_seq for x in log.entries] == [4, 3, 2]
    assert log.clock == 5 and log.in_flight() == ()
    assert "write 8+2 F [meta sb]" in e.describe()
    assert isinstance(log.entries, tuple) and len(log) == 3


def test_entries_are_frozen_and_copy_is_independent() -> None:
    log = IoLog()
    log.append_submit("write", step=0, data=fill(1))
    with pytest.raises(AttributeError):
        log[0].status = -5  # type: ignore[misc]
    twin = log.copy()
    twin.mark_complete(0, 1)
    assert log[0].complete_step is None and twin[0].complete_step == 1


@pytest.mark.parametrize(
    "call",
    [
        lambda log: log.append_submit("write", step=0, data=b"x" * 100),
        lambda log: log.append_submit("write", step=0, data=b""),
        lambda log: log.append_submit("write", step=0, sector=-1, data=fill(0)),
        lambda log: log.append_submit("flush", step=0, data=fill(0)),
        lambda log: log.append_submit("mark", step=0),
        lambda log: log.mark_complete(5, 0),
        lambda log: log.mark_complete(0, 9, status=5),
        lambda log: log.mark_complete(1, 9),  # a mark
        lambda log: (log.mark_complete(0, 9), log.mark_complete(0, 9)),
        lambda log: log.mark_complete(0, 0),  # before its submission step
    ],
)
def test_log_misuse_raises(call: object) -> None:
    log = IoLog()
    log.append_submit("write", step=1, data=fill(0))
    log.add_mark("m", step=1)
    with pytest.raises(ValueError):
        call(log)  # type: ignore[operator]


# --- JSON ----------------------------------------------------------------------------------------

log_ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("write"),
            st.integers(0, 100),
            st.binary(min_size=1, max_size=3),
            st.booleans(),
            st.booleans(),
        ),
        st.tuples(st.just("flush")),
        st.tuples(st.just("mark"), st.text(max_size=8)),
        st.tuples(st.just("complete"), st.integers(0, 50), st.sampled_from([0, -errno.EIO, -errno.ENOSPC])),
    ),
    max_size=30,
)


def build_log(ops: list[tuple]) -> IoLog:
    log = IoLog()
    for step, op in enumerate(ops):
        if op[0] == "write":
            _, sector, pattern, fua, preflush = op
            data = (pattern * SECTOR_SIZE)[: SECTOR_SIZE * len(pattern)]
            log.append_submit(
                "write", step=step, sector=sector, data=data, fua=fua, preflush=preflush, tag="t"
            )
        elif op[0] == "flush":
            log.append_submit("flush", step=step)
        elif op[0] == "mark":
            log.add_mark(op[1], step)
        elif log.in_flight():
            pending = log.in_flight()
            log.mark_complete(pending[op[1] % len(pending)], step, op[2])
    return log


@settings(max_examples=100, deadline=None)
@given(log_ops)
def test_json_round_trip(ops: list[tuple]) -> None:
    log = build_log(ops)
    text = log.to_json()
    back = IoLog.from_json(text)
    assert back.entries == log.entries
    assert back.clock == log.clock
    assert back.to_json() == text
    # the loaded log keeps working
    back.add_mark("after load", 10**6)
    assert back[-1].submit_seq == log.clock


def _saved() -> dict:
    log = IoLog()
    log.append_submit("write", step=0, sector=2, data=fill(9), tag="data ino=12 lblk=3")
    log.mark_complete(0, 1)
    log.append_submit("flush", step=2)
    return json.loads(log.to_json())


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda d: d.update(format="other"), "$.format"),
        (lambda d: d.update(version=99), "$.version"),
        (lambda d: d.update(entries={}), "$.entries"),
        (lambda d: d["entries"][0].update(sector="2"), "$.entries[0].sector"),
        (lambda d: d["entries"][0].update(data="!!"), "$.entries[0].data"),
        (lambda d: d["entries"][0].update(nsectors=2), "$.entries[0]"),
        (lambda d: d["entries"][1].update(index=7), "$.entries[1].index"),
        (lambda d: d["entries"][1].update(kind="trim"), "$.entries[1].kind"),
        (lambda d: d["entries"][0].update(complete_seq=None), "$.entries[0]"),
        (lambda d: d["entries"][0].update(fua=1), "$.entries[0].fua"),
        (lambda d: d.update(clock=1), "$.entries"),
    ],
)
def test_json_errors_name_the_field(mutate: object, where: str) -> None:
    d = _saved()
    mutate(d)  # type: ignore[operator]
    with pytest.raises(CorpusError) as info:
        IoLog.from_json(json.dumps(d))
    assert info.value.where == where
    assert isinstance(info.value, ValueError)


def test_json_not_json() -> None:
    with pytest.raises(CorpusError):
        IoLog.from_json("{nope")


# --- durability rule -----------------------------------------------------------------------------


def test_flush_covers_only_writes_completed_before_its_submission() -> None:
    log = IoLog()
    a = log.append_submit("write", step=0, sector=0, data=fill(1))
    b = log.append_submit("write", step=0, sector=1, data=fill(2))
    log.mark_complete(a, 1)
    f = log.append_submit("flush", step=2)
    log.mark_complete(b, 3)  # completes while the flush is in flight
    m_before_flush_done = log.add_mark("before", 4)
    log.mark_complete(f, 5)
    end = len(log)
    s = durable_prefix(log.entries, m_before_flush_done)
    assert (s.durable, s.volatile, s.in_flight) == ((), (a, b), ())
    s = durable_prefix(log.entries, end)
    assert (s.durable, s.volatile, s.completed) == ((a,), (b,), (a, b))
    assert durable_prefix(log.entries) == s
    s = durable_prefix(log.entries, f)  # crash just before the flush was submitted: b in flight
    assert (s.durable, s.volatile, s.in_flight) == ((), (a,), (b,))


def test_fua_failed_flush_and_preflush_write() -> None:
    log = IoLog()
    a = log.append_submit("write", step=0, sector=0, data=fill(1))
    log.mark_complete(a, 1)
    f = log.append_submit("flush", step=1)
    log.mark_complete(f, 2, -errno.EIO)  # a failed flush guarantees nothing
    b = log.append_submit("write", step=2, sector=1, data=fill(2), fua=True)
    log.mark_complete(b, 3)
    s = durable_prefix(log.entries)
    assert (s.durable, s.volatile) == ((b,), (a,))
    c = log.append_submit("write", step=4, sector=2, data=fill(3), preflush=True)
    bad = log.append_submit("write", step=4, sector=3, data=fill(4))
    log.mark_complete(bad, 5, -errno.EIO)
    s = durable_prefix(log.entries)  # the commit write has not completed: its preflush may not have either
    assert (s.durable, s.volatile, s.in_flight) == ((b,), (a,), (c,))
    log.mark_complete(c, 6)
    s = durable_prefix(log.entries)  # c's preflush covered a; c itself is not FUA
    assert (s.durable, s.volatile, s.completed) == ((a, b), (c,), (a, b, c))
    assert bad not in s.completed


def test_crash_cutoff() -> None:
    log = IoLog()
    log.append_submit("write", step=0, data=fill(1))
    log.mark_complete(0, 0)
    log.add_mark("m", 0)
    assert crash_cutoff(log.entries, 0) == 0
    assert crash_cutoff(log.entries, 1) == 2
    assert crash_cutoff(log.entries, 2) is None
    with pytest.raises(ValueError):
        crash_cutoff(log.entries, 3)
    with pytest.raises(ValueError, match="whole log"):
        durable_prefix(log.entries[1:])


# --- replay --------------------------------------------------------------------------------------


def test_torn_and_in_flight_writes() -> None:
    base = make_base()
    log = IoLog()
    a = log.append_submit("write", step=0, sector=0, data=fill(1, 4))
    b = log.append_submit("write", step=0, sector=2, data=fill(2, 4))
    log.mark_complete(b, 1)
    log.mark_complete(a, 2)  # completes last: wins on sectors 2..3
    c = log.append_submit("write", step=3, sector=10, data=fill(3, 3))  # never completes
    img = replay(base, log.entries)
    assert img[: 6 * 512].tobytes() == fill(1, 4) + fill(2, 2)
    assert img[10 * 512 : 13 * 512].tobytes() == base[10 * 512 : 13 * 512].tobytes()
    img = replay(base, log.entries, torn={a: 1})
    assert img[: 6 * 512].tobytes() == fill(1, 1) + base[512:1024].tobytes() + fill(2, 4)
    img = replay(base, log.entries, torn={c: 2})  # an in-flight write torn after 2 sectors
    assert img[10 * 512 : 13 * 512].tobytes() == fill(3, 2) + base[12 * 512 : 13 * 512].tobytes()
    img = replay(base, log.entries, include=lambda e: e.index == c)
    assert img[10 * 512 : 13 * 512].tobytes() == fill(3, 3)
    assert img[:512].tobytes() == base[:512].tobytes()
    img = replay(base, log.entries, torn={a: 0, b: 4})
    assert img[:512].tobytes() == base[:512].tobytes()
    with pytest.raises(ValueError):
        replay(base, log.entries, torn={a: 5})
    with pytest.raises(ValueError):
        replay(base, log.entries, upto=c, torn={c: 1})  # c was not submitted at that crash point
    assert not base.flags.writeable


def test_replay_rejects_writes_outside_base() -> None:
    log = IoLog()
    log.append_submit("write", step=0, sector=NSECTORS, data=fill(1))
    log.mark_complete(0, 1)
    with pytest.raises(ValueError, match="does not fit"):
        replay(make_base(), log.entries)


# --- the device and the log together, as the block-layer glue drives them --------------------------


@dataclass
class Glue:
    """A tiny stand-in for the block layer: requests are in flight between submit and complete."""

    base: np.ndarray
    dev: BlockDevice = field(init=False)
    log: IoLog = field(default_factory=IoLog)
    pending: dict[int, int | None] = field(default_factory=dict)  # index -> errno decided at submit
    last_flush: int | None = None  # index of the latest flush that the device processed
    step: int = 0
    # device images just before entry k was appended: (current, durable or None if not comparable)
    states: list[tuple[bytes, bytes | None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.dev = BlockDevice(self.base, chunk_size=1024)

    def _record(self) -> None:
        self.step += 1
        comparable = self.last_flush is None or self.last_flush not in self.pending
        cur = self.dev.current_image().tobytes()
        self.states.append((cur, self.dev.durable_image().tobytes() if comparable else None))

    def submit_write(self, sector: int, data: bytes, fua: bool, preflush: bool) -> None:
        self._record()
        err = self.dev.should_fail("write", sector, len(data) // SECTOR_SIZE)
        i = self.log.append_submit(
            "write", step=self.step, sector=sector, data=data, fua=fua, preflush=preflush
        )
        if preflush and err is None:
            self.dev.flush()  # the flush part runs when the request is processed
            self.last_flush = i
        self.pending[i] = err

    def submit_flush(self) -> None:
        self._record()
        err = self.dev.should_fail("flush")
        i = self.log.append_submit("flush", step=self.step)
        if err is None:
            self.dev.flush()
            self.last_flush = i
        self.pending[i] = err

    def mark(self) -> None:
        self._record()
        self.log.add_mark(f"mark {len(self.log)}", self.step)

    def complete(self, pick: int) -> None:
        if not self.pending:
            return
        i = list(self.pending)[pick % len(self.pending)]
        err = self.pending.pop(i)
        e = self.log[i]
        if err is None and e.kind == "write":
            self.dev.write(e.sector, e.data, fua=e.fua)  # data lands when the write completes
        self.log.mark_complete(i, self.step, -err if err else 0)


glue_ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("write"),
            st.integers(0, NSECTORS - 1),
            st.integers(1, 5),
            st.integers(0, 255),
            st.booleans(),
            st.booleans(),
        ),
        st.tuples(st.just("flush")),
        st.tuples(st.just("mark")),
        st.tuples(st.just("complete"), st.integers(0, 20)),
        st.tuples(st.just("complete"), st.integers(0, 20)),
        st.tuples(st.just("inject"), st.sampled_from(["write", "flush"]), st.integers(1, 2)),
    ),
    max_size=40,
)


def run_glue(ops: list[tuple], seed: int) -> Glue:
    g = Glue(make_base(seed=seed))
    for op in ops:
        if op[0] == "write":
            _, sector, n, byte, fua, preflush = op
            n = min(n, NSECTORS - sector)
            g.submit_write(sector, fill(byte, n), fua, preflush)
        elif op[0] == "flush":
            g.submit_flush()
        elif op[0] == "mark":
            g.mark()
        elif op[0] == "complete":
            g.complete(op[1])
        else:
            g.dev.inject(op[1], count=op[2])
    return g


def durable_replay(base: np.ndarray, log: IoLog, upto: int | None) -> bytes:
    durable = set(durable_prefix(log.entries, upto).durable)
    return replay(base, log.entries, upto=upto, include=lambda e: e.index in durable).tobytes()


@settings(max_examples=200, deadline=None)
@given(glue_ops, st.integers(0, 2**16))
def test_replay_reproduces_device_at_every_crash_point(ops: list[tuple], seed: int) -> None:
    g = run_glue(ops, seed)
    base = g.base
    for upto, (cur, dur) in enumerate(g.states):
        assert replay(base, g.log.entries, upto=upto).tobytes() == cur
        if dur is not None:
            assert durable_replay(base, g.log, upto) == dur
        s = durable_prefix(g.log.entries, upto)
        assert sorted(s.completed) == sorted(s.durable + s.volatile)
        assert not set(s.completed) & set(s.in_flight)
    # end of the log, then again once everything completed
    for _ in range(2):
        assert replay(base, g.log.entries).tobytes() == g.dev.current_image().tobytes()
        if g.last_flush is None or g.last_flush not in g.pending:
            assert durable_replay(base, g.log, None) == g.dev.durable_image().tobytes()
        while g.pending:
            g.complete(0)
    assert bytes(base) == make_base(seed=seed).tobytes()


@settings(max_examples=100, deadline=None)
@given(glue_ops, st.integers(0, 2**16))
def test_synchronous_io_durable_image(ops: list[tuple], seed: int) -> None:
    """Each request completes before the next one: the device's durable image is exactly the
    replay of the durable writes, and its current image the replay of all of them."""
    g = Glue(make_base(seed=seed))
    for op in ops:
        if op[0] == "write":
            _, sector, n, byte, fua, preflush = op
            g.submit_write(sector, fill(byte, min(n, NSECTORS - sector)), fua, preflush)
        elif op[0] == "flush":
            g.submit_flush()
        elif op[0] == "inject":
            g.dev.inject(op[1], count=op[2])
        else:
            continue
        g.complete(0)
        assert durable_replay(g.base, g.log, None) == g.dev.durable_image().tobytes()
        assert replay(g.base, g.log.entries).tobytes() == g.dev.current_image().tobytes()


def test_replay_accepts_loaded_log() -> None:
    g = run_glue(
        [("write", 0, 3, 7, False, False), ("complete", 0), ("flush",), ("write", 4, 2, 8, True, False)],
        seed=1,
    )
    loaded = IoLog.from_json(g.log.to_json())
    assert replay(g.base, loaded.entries).tobytes() == replay(g.base, g.log.entries).tobytes()
    assert isinstance(loaded[0], IoLogEntry)
