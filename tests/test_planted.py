"""Planted bugs (``tests/planted.py``): each deliberately wrong kernel is caught by the oracle's own
checks, with the right category, on a small program -- and the same program is clean of that finding
on the sound kernel, so it is the plant that is caught, not something else.

The programs in ``tests/programs/planted/`` were found by ``blkfuzz fuzz --variant
tests.planted:NAME`` from scratch and minimized; ``TruncateNoTailZero`` and
``OrderedDataSkipped`` are hand-written (a sequential program shows them) and ``ConvertBeforeIO``'s
schedule was written by intent (writeback, then a commit while the data IO is in flight), all
minimized. ``test_the_fuzzer_catches_plants_from_scratch`` runs the search
itself for the plants it reaches in a few hundred executions.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from fuzz.engine import Engine
from fuzz.program import Program, load_program_file
from fuzz.verdict import judge

PLANTED = Path(__file__).parent / "programs" / "planted"

#: plant -> the category its finding must have (what the oracle check that catches it reports)
CATEGORY = {
    "NoFsyncFlush": "fsck",  # a crash state whose metadata never reached the media fails fsck
    "FdatasyncSkipsSize": "crash-consistency",
    "FreedBlockStaysMarked": "fsck",
    "TruncateNoTailZero": "data",
    "ReclaimDropsDirty": "data",
    "WritebackErrorsUnreported": "data",
    "OrderedDataSkipped": "crash-consistency",  # a crash state maps a block whose data never came
    "ConvertBeforeIO": "crash-consistency",
}


def _sound(program: Program) -> Program:
    return replace(program, variants=tuple(v for v in program.variants if not v.startswith("tests.planted:")))


@pytest.mark.parametrize("name", sorted(CATEGORY))
def test_plant_is_caught_with_its_category(name: str) -> None:
    program = load_program_file(PLANTED / f"{name}.json")
    assert program.variants == (f"tests.planted:{name}",)
    assert program.expect is not None and program.expect.signature
    sig = program.expect.signature
    found = judge(program).signatures()
    assert sig in found, found
    assert sig.split(":", 1)[0] == CATEGORY[name]
    assert sig not in judge(_sound(program)).signatures(), "the sound kernel shows it too"


@pytest.mark.parametrize(
    ("name", "runs"), [("FreedBlockStaysMarked", 50), ("FdatasyncSkipsSize", 100), ("ReclaimDropsDirty", 200)]
)
def test_the_fuzzer_catches_plants_from_scratch(name: str, runs: int) -> None:
    spec = f"tests.planted:{name}"

    def caused_by_the_plant(finding, program):  # type: ignore[no-untyped-def]
        return (
            finding.category == CATEGORY[name]
            and finding.signature not in judge(_sound(program)).signatures()
        )

    eng = Engine([spec], seed=0, minimize=False, target=caused_by_the_plant)
    eng.run(runs=runs)
    assert eng.target_hit is not None
