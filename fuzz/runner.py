"""Run one program on a fresh machine: the user-space side of an execution.

``execute(program)`` builds the machine (config + variants), creates the program's files, runs one
user thread per syscall list under the program's schedule, records the syscall history (what strace
would see: arguments, the bytes copied from user buffers, results, and invocation/return steps),
quiesces (sync, all IO complete), and reads the final image back with the oracle's reader.
Everything is deterministic: the same program gives the same history, bytes and reports.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from fuzz.data import data_bytes
from fuzz.program import Program, Syscall
from oracle.history import History, HistoryOp, Store
from simkernel.block.iolog import IoLog
from simkernel.config import Config
from simkernel.errors import CorruptImageError, GeometryError, VariantError
from simkernel.fs.vfs import EFAULT, File
from simkernel.kernel.sched import KGen, TraceEvent
from simkernel.lib.iov_iter import IovIter
from simkernel.machine import Machine
from simkernel.report import Report
from simkernel.variants import Variant, apply_requirements, resolve_variants


@dataclass
class Execution:
    """Everything one run produced; the oracle reads ``history``, ``image``, ``base`` and ``iolog``."""

    program: Program
    config: Config
    variants: tuple[str, ...]
    history: History
    reports: list[Report]
    #: the final durable image after quiescing (None if the machine stopped: a fatal report)
    image: np.ndarray | None
    #: the image before the program (after mkfs), for crash-state replays with the IO log
    base: np.ndarray
    iolog: IoLog
    trace: list[TraceEvent]
    steps: int
    decisions_used: int
    #: IO log position where the program's threads started (crash points start here)
    start_mark: int
    #: final file contents read back from ``image`` with the oracle's reader
    files: dict[str, bytes] = field(default_factory=dict)
    #: kernel messages (ext4_msg lines)
    messages: list[str] = field(default_factory=list)
    #: the decisions this run followed (the program's schedule, or what a directed chooser chose)
    schedule: tuple[int, ...] = ()
    #: semantic coverage the model reported (kernel decisions, lock-order edges, preemption sites)
    coverage: frozenset[str] = frozenset()

    @property
    def stopped(self) -> bool:
        return any(r.fatal for r in self.reports)

    def image_digest(self) -> str:
        return hashlib.sha256(self.image.tobytes()).hexdigest() if self.image is not None else ""


def effective_config(program: Program, variants: tuple[type[Variant], ...]) -> Config:
    """The program's config with the variants' requirements applied."""
    default = Config()
    explicit = [f.name for f in fields(Config) if getattr(program.config, f.name) != getattr(default, f.name)]
    config = apply_requirements(program.config, variants, explicit)
    try:
        return config.validate()
    except GeometryError as err:
        names = ", ".join(v.name for v in variants)
        if not names:
            raise
        raise VariantError(f"with variant(s) {names}: {err.message}", where=f"$.config.{err.where}") from None


class _Recorder:
    """Collects the history while threads run."""

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self.ops: list[HistoryOp] = []
        #: user task name -> the file its syscall in progress works on (None between syscalls)
        self.current: dict[str, str | None] = {}

    def record(
        self,
        tid: int,
        seq: int,
        sc: Syscall,
        invoke: int,
        ret: int | None,
        result: int | None,
        *,
        data: bytes | None = None,
        out: bytes | None = None,
        stores: tuple[Store, ...] = (),
    ) -> None:
        args: dict[str, int | str] = {}
        for name in ("off", "len", "size", "mode"):
            value = getattr(sc, name)
            if value is not None:
                args[name] = value
        if sc.data is not None and sc.data.map_file is not None:
            args["map_file"] = sc.data.map_file
            args["map_off"] = sc.data.map_off or 0
        self.ops.append(
            HistoryOp(
                index=len(self.ops),
                tid=tid,
                seq=seq,
                op=sc.op,
                file=sc.file,
                args=args,
                data=data,
                invoke=invoke,
                ret=ret,
                result=result,
                out=out,
                stores=stores,
            )
        )


def _thread(
    machine: Machine, rec: _Recorder, tid: int, calls: list[tuple[int, Syscall]], files: dict[str, File]
) -> KGen:
    """A user thread: its syscalls in order, each recorded with its invocation and return step."""
    for seq, sc in calls:
        k = machine.kernel
        sched = machine.sched
        invoke = sched.step_no
        slot = len(rec.ops)
        rec.record(tid, seq, sc, invoke, None, None)
        rec.current[f"T{tid}"] = sc.file
        file = files.get(sc.file) if sc.file is not None else None
        data: bytes | None = None
        out: bytes | None = None
        stores: list[tuple[int, int, bytes]] = []
        op = sc.op
        name, off, length, size, mode = sc.file or "", sc.off or 0, sc.len or 0, sc.size or 0, sc.mode or ""
        if op == "creat":
            result = yield from k.sys_creat(name)
        elif op == "pwrite":
            assert sc.data is not None and sc.len is not None and sc.off is not None
            payload = data_bytes(sc.data, sc.len)
            if payload is None:
                src = files.get(sc.data.map_file or "")
                vma = k.mm.vmas.get(src.f_inode.i_ino) if src is not None else None
                if src is not None and vma is None:
                    # the buffer lies in a mapping of the source file: user space mapped it earlier
                    yield from k.sys_mmap(src)
                    vma = k.mm.vmas.get(src.f_inode.i_ino)
                it = IovIter(sc.len, None, vma, sc.data.map_off or 0)
                result = -EFAULT if vma is None else (yield from k.sys_pwrite64(file, sc.off, it))
            else:
                it = IovIter(sc.len, payload)
                result = yield from k.sys_pwrite64(file, sc.off, it)
            data = it.written_payload()
        elif op == "pread":
            r = yield from k.sys_pread64(file, off, length)
            if isinstance(r, bytes):
                out, result = r, len(r)
            else:
                result = r
        elif op == "mwrite":
            assert sc.data is not None and sc.len is not None
            payload = data_bytes(sc.data, sc.len) or b""
            result = yield from k.sys_mwrite(file, off, payload, stores)
            data = payload
        elif op == "mmap":
            result = yield from k.sys_mmap(file)
        elif op == "munmap":
            result = yield from k.sys_munmap(file)
        elif op == "truncate":
            result = yield from k.sys_ftruncate(file, size)
        elif op == "fallocate":
            result = yield from k.sys_fallocate(file, mode, off, length)
        elif op in ("fsync", "fdatasync"):
            result = yield from k.sys_fsync(file, op == "fdatasync")
        elif op == "sync":
            result = yield from k.sys_sync()
        else:  # pragma: no cover - remount is handled by the runner, validation rejects others
            raise AssertionError(f"unexpected op {op}")
        rec.current[f"T{tid}"] = None
        old = rec.ops[slot]
        rec.ops[slot] = HistoryOp(
            index=old.index,
            tid=old.tid,
            seq=old.seq,
            op=old.op,
            file=old.file,
            args=old.args,
            data=data,
            invoke=old.invoke,
            ret=sched.step_no,
            result=int(result),
            out=out,
            stores=tuple(Store(step, off, chunk) for step, off, chunk in stores),
        )
    return 0


def _outcome(result: int | None) -> str:
    """The coarse outcome of a syscall for coverage: error number, zero, or positive."""
    if result is None:
        return "none"
    return str(result) if result <= 0 else "+"


def _open_all(machine: Machine, names: tuple[str, ...]) -> dict[str, File]:
    out: dict[str, File] = {}
    for name in names:
        f = machine.kernel.do_filp_open(name)
        if f is not None:
            out[name] = f
    return out


def execute(
    program: Program,
    *,
    max_steps: int = 200_000,
    trace: bool = True,
    read_back: bool = True,
    chooser_factory: Any = None,
) -> Execution:
    """Run ``program`` once; see the module docstring.

    ``chooser_factory(machine)`` replaces the program's schedule with another decision source
    (``fuzz.directed.DirectedChooser`` when authoring schedules by intent)."""
    variants = resolve_variants(program.variants)
    config = effective_config(program, variants)
    machine = Machine(
        config, variants, schedule=program.schedule, actors=program.actors, max_steps=max_steps, trace=trace
    )
    machine.setup_files(program.files)
    start_mark = machine.iolog.add_mark("program starts", machine.sched.step_no)
    rec = _Recorder(machine)
    machine.recorder = rec
    if chooser_factory is not None:
        machine.chooser = chooser_factory(machine)
    threads = [list(enumerate(calls)) for calls in program.threads]
    if len(threads) == 1 and any(sc.op == "remount" for _, sc in threads[0]):
        _run_with_remounts(machine, rec, threads[0], program.files)
    else:
        for tid, calls in enumerate(threads):
            machine.spawn_user(
                f"T{tid}", _thread(machine, rec, tid, calls, _open_all(machine, program.files))
            )
        machine.run_program()
    machine.unmount()
    if machine.stopped:
        machine.sched.shutdown()
    image: np.ndarray | None = None
    files: dict[str, bytes] = {}
    if not machine.stopped:
        image = machine.final_image()
        if read_back:
            files = read_files(image, program.files)
    machine.iolog.add_mark("program ends", machine.sched.step_no)
    return Execution(
        program=program,
        config=config,
        variants=tuple(v.name for v in variants),
        history=History(
            files=tuple(program.files), ops=tuple(rec.ops), initial={f: b"" for f in program.files}
        ),
        reports=list(machine.reports),
        image=image,
        base=machine.base,
        iolog=machine.iolog,
        trace=machine.sched.trace,
        steps=machine.sched.step_no,
        decisions_used=getattr(machine.chooser, "pos", 0),
        schedule=tuple(getattr(machine.chooser, "decisions", program.schedule)),
        coverage=frozenset(machine.sched.coverage | {f"sys:{o.op}:{_outcome(o.result)}" for o in rec.ops}),
        start_mark=start_mark,
        files=files,
        messages=list(machine.kernel.sb.s_fs_info.messages),
    )


def directed_schedule(program: Program, steps: list[Any]) -> Program:
    """Run ``program`` following directed ``steps`` and return it with the equivalent numeric schedule."""
    from fuzz.directed import DirectedChooser

    ex = execute(program, chooser_factory=lambda m: DirectedChooser(m, steps))
    decisions = list(ex.schedule)
    while decisions and decisions[-1] == 0:
        decisions.pop()
    return program.with_schedule(tuple(decisions))


def _run_with_remounts(
    machine: Machine, rec: _Recorder, calls: list[tuple[int, Syscall]], names: tuple[str, ...]
) -> None:
    """A single thread whose remounts split it into segments; each remount quiesces the machine."""
    segment: list[tuple[int, Syscall]] = []
    pending = list(calls)
    while pending or segment:
        while pending and pending[0][1].op != "remount":
            segment.append(pending.pop(0))
        if segment:
            machine.spawn_user("T0", _thread(machine, rec, 0, segment, _open_all(machine, names)))
            machine.run_program()
            segment = []
            if machine.stopped:
                return
        if pending:
            seq, sc = pending.pop(0)
            invoke = machine.sched.step_no
            machine.remount()
            rec.record(0, seq, sc, invoke, machine.sched.step_no, 0)
            if machine.stopped:
                return


def read_files(image: np.ndarray, names: tuple[str, ...] | list[str]) -> dict[str, bytes]:
    """Read the program's files back from an image with the oracle's reader."""
    from oracle.image import Ext4Image

    ei = Ext4Image(image)
    out: dict[str, bytes] = {}
    for name in names:
        try:
            out[name] = ei.read_file(name)
        except FileNotFoundError:
            raise CorruptImageError(
                f"file {name!r} missing from the final image", where="root directory"
            ) from None
    return out


def summarize(execution: Execution) -> dict[str, Any]:
    """Sizes and digests of the final files (what ``blkfuzz replay`` prints)."""
    return {
        name: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()[:16]}
        for name, data in sorted(execution.files.items())
    }
