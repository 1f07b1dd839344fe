"""Hand-written reproducers of the seed interleavings (../shared/reference/seed-bugs.md).

Each case is a program plus the *intent* of its schedule as directed steps (who runs until when).
``tests/programs/<name>.json`` stores the same program with the explicit numeric schedule those steps
produce; ``test_seed_scenarios.py`` checks both that the stored schedule reproduces the interleaving
and that the steps still produce exactly that schedule. After a model change that moves preemption
points, regenerate with::

    python -m tests.seed_programs --write
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fuzz.directed import Step, blocked, in_function, inode_state, op_returned, task_done
from fuzz.program import Program, dump_program, load_program
from simkernel.fs.ext4.ext4 import EXT4_INLINE_DATA_FL
from simkernel.machine import Machine

PROGRAMS = Path(__file__).parent / "programs"
P = 4096


@dataclass
class Seed:
    name: str
    program: Program
    steps: list[Step]
    description: str


def _b3(variant: str) -> Program:
    return load_program(
        {
            "format": "blkfuzz-program/1",
            "config": {"block_size": 4096, "folio_blocks": 1, "device_blocks": 256},
            "variants": [variant],
            "actors": ["writeback", "complete", "reclaim"],
            "files": ["a"],
            "threads": [
                [
                    {"op": "fallocate", "file": "a", "mode": "alloc", "off": 0, "len": 10 * P},
                    {"op": "pwrite", "file": "a", "off": 10 * P - 1, "len": 1, "data": {"hex": "58"}},
                    {"op": "pwrite", "file": "a", "off": 0, "len": 9 * P + 1, "data": {"seed": 7}},
                ]
            ],
            "meta": {"description": "seed-bugs.md B.3: stale cached iomap zeroes data already on disk"},
        }
    )


B3_STEPS = [
    # W1 done; W2 maps [0, 10P) as UNWRITTEN and starts copying folios
    Step("T0", until=lambda m: len(m.recorder.ops) >= 3 and in_function("T0", "iomap_write_iter")(m)),
    # WB: writeback of folio 9 (unwritten ioend)
    Step("writeback ino=12 folio=9"),
    Step("flush-", until=task_done("flush-")),
    # IOC: the data lands; the completion worker converts block 9 to written (bumps the cookie)
    Step("complete"),
    Step("kworker/", until=task_done("kworker/")),
    # RC: folio 9 is clean and idle: evicted
    Step("reclaim ino=12 folio=9"),
    # W2 reaches pos 9P with its cached UNWRITTEN map
    Step("T0"),
]


def _inline(variant: str, second: dict[str, Any]) -> Program:
    return load_program(
        {
            "format": "blkfuzz-program/1",
            "variants": [variant],
            "actors": ["complete", "fail_alloc"],
            "files": ["a"],
            "threads": [
                [{"op": "pwrite", "file": "a", "off": 0, "len": 90, "data": {"seed": 1}}, second],
                [{"op": "mwrite", "file": "a", "off": 0, "len": 1, "data": {"hex": "4d"}}],
            ],
            "meta": {"description": "seed-bugs.md A.3: page_mkwrite converts inline data while a write runs"},
        }
    )


def _is_inline(inode: Any) -> bool:
    return bool(inode.i_flags & EXT4_INLINE_DATA_FL)


def _w_between_begin_and_end(m: Machine) -> bool:
    """T0 returned from write_begin (holding folio 0) and has not reached write_end yet."""
    inode = m.kernel.lookup("a")
    folio = inode.i_mapping.i_pages.get(0) if inode is not None else None
    return (
        in_function("T0", "generic_perform_write")(m)
        and not in_function("T0", "ext4_da_write_begin")(m)
        and not in_function("T0", "ext4_da_write_end")(m)
        and folio is not None
        and folio.locked
        and folio.owner is not None
        and folio.owner.name == "T0"
    )


A1_STEPS = [
    Step("T0", until=op_returned(0, 0)),  # the file holds 90 inline bytes: S_old = 90
    Step("fail next block allocation"),  # M's real allocation will fail; W's reservation will not
    Step("T1", until=inode_state("a", lambda i: not _is_inline(i))),  # M1-M2b: destroy inline
    Step("T0", until=_w_between_begin_and_end),  # W2b/W2c: lockless MAY_INLINE is false: block path
    Step("T1", until=task_done("T1")),  # M2c fails, M2e restores inline (S_old), SIGBUS
    Step("T0"),  # W3-W5: write_end sees inline data again
]

A2_STEPS = [
    Step("T0", until=op_returned(0, 0)),
    Step("T1", until=in_function("T1", "ext4_page_mkwrite")),  # past the fault's folio lock
    Step("T0", until=in_function("T0", "ext4_write_inline_data_end")),  # W4 chose the inline end
    Step("T1", until=task_done("T1")),  # M converts successfully
    Step("T0"),
]

A3_STEPS = [
    Step("T0", until=op_returned(0, 0)),
    Step("T1", until=in_function("T1", "ext4_page_mkwrite")),
    Step("T0", until=_w_between_begin_and_end),  # W2b went inline: folio 0 without buffers
    Step("T1", until=task_done("T1")),  # M converts successfully
    Step("T0"),  # W4: block path on a folio without buffers
]


def _v2(variant: str) -> Program:
    return load_program(
        {
            "format": "blkfuzz-program/1",
            "variants": [variant],
            "files": ["a", "b"],
            "threads": [
                [
                    {"op": "pwrite", "file": "b", "off": 0, "len": 4096, "data": {"seed": 5}},
                    {
                        "op": "pwrite",
                        "file": "a",
                        "off": 0,
                        "len": 100,
                        "data": {"map": {"file": "b", "off": 0}},
                    },
                ],
                [{"op": "mmap", "file": "a"}],
            ],
            "meta": {
                "description": "seed-bugs.md A.7: write from a mapped buffer while another thread mmaps"
            },
        }
    )


DEADLOCK_STEPS = [
    Step("T0", until=lambda m: any(t.name == "T0" for t in m.kernel.lookup("a").i_rwsem.holders())),
    Step("T1", until=blocked("T1")),  # mmap holds mmap_lock (write), waits for i_rwsem(a)
    Step("T0"),  # faulting in the source buffer needs mmap_lock: ABBA
]

W90 = {"op": "pwrite", "file": "a", "off": 90, "len": 1, "data": {"hex": "57"}}
W10 = {"op": "pwrite", "file": "a", "off": 10, "len": 1, "data": {"hex": "57"}}
W10x5 = {"op": "pwrite", "file": "a", "off": 10, "len": 5, "data": {"seed": 3}}


def seeds() -> list[Seed]:
    out = [Seed(f"b3-{v}", _b3(v), B3_STEPS, "B.3 stale iomap") for v in ("iomap-nocookie", "iomap")]
    for v in ("ext4-inline", "ext4-inline-fixed"):
        out += [
            Seed(f"a1-{v}", _inline(v, W90), A1_STEPS, "A.3 A1: BUG_ON(pos + len > i_inline_size)"),
            Seed(f"a1b-{v}", _inline(v, W10), A1_STEPS, "A1b: journal stop without a handle"),
            Seed(f"a2-{v}", _inline(v, W10x5), A2_STEPS, "A2: BUG_ON(!ext4_has_inline_data)"),
            Seed(f"a3-{v}", _inline(v, W10x5), A3_STEPS, "A3: block write_end on a folio without buffers"),
        ]
    out += [Seed(f"v2-{v}", _v2(v), [], "A.7 lock order") for v in ("ext4-inline", "ext4-inline-v2")]
    out += [
        Seed(f"deadlock-{v}", _v2(v), DEADLOCK_STEPS, "A.7 ABBA deadlock")
        for v in ("ext4-inline", "ext4-inline-v2")
    ]
    return out


def stored(seed: Seed) -> Program:
    return load_program((PROGRAMS / f"{seed.name}.json").read_text(), source=seed.name)


def regenerate(seed: Seed) -> Program:
    from fuzz.runner import directed_schedule

    return directed_schedule(seed.program, seed.steps) if seed.steps else seed.program


def main(argv: list[str]) -> int:
    write = "--write" in argv
    PROGRAMS.mkdir(exist_ok=True)
    for seed in seeds():
        prog = regenerate(seed)
        path = PROGRAMS / f"{seed.name}.json"
        text = dump_program(prog)
        if write:
            path.write_text(text)
        print(f"{seed.name}: {len(prog.schedule)} decisions{' (written)' if write else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
