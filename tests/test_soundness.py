"""Soundness in CI: the configurations that model a correct kernel produce no finding at all on
random programs.

Every finding on these configurations is a model bug (the simulation does what Linux does not), an
oracle false alarm (the oracle demands what Linux does not guarantee) or kernel behaviour the oracle
must accept -- never a bug to report. The configurations:

* ``iomap``: the iomap buffered write path with the validity cookie (Linux 6.2+);
* ``ext4-inline-fixed``: ext4 with inline data and a sound inline-to-extent conversion;
* ``ext4``: the default, no variant. With ``inline_data`` on, the baseline model *is* the known-bug
  configuration ``ext4-inline`` (that variant overrides nothing: the kernel's own inline-data
  conversions lose data on ENOSPC and race with page_mkwrite), so the default configuration is
  judged with inline data off (:class:`NoInlineData`, which changes no kernel function); inline
  data is covered by ``ext4-inline-fixed``.

Each configuration runs the plain-random baseline of :class:`fuzz.engine.Engine` (fresh programs,
uniformly random schedules, all ops and actors) for a fixed seed and number of runs, so the test
is deterministic. The default run checks 5,100 programs (about three minutes of one core, split in
chunks for xdist); the ``slow`` variant runs ten times ``RUNS`` per configuration.
"""

from __future__ import annotations

import pytest

from fuzz.engine import Engine, FoundBug
from fuzz.program import dump_program
from simkernel.variants import Variant


class NoInlineData(Variant):
    """The default configuration without inline data: a config-only variant (no kernel override)."""

    name = "no-inline-data"
    description = "the default ext4 configuration with inline data off"
    requires = {"inline_data": False}
    kind = "config"


NO_INLINE = f"{__name__}:NoInlineData"

#: (configuration name, variants, seed)
CONFIGS = [
    ("iomap", ["iomap"], 1),
    ("ext4-inline-fixed", ["ext4-inline-fixed"], 2),
    ("ext4", [NO_INLINE], 3),
]
#: random programs per chunk in the default run; each configuration runs ``CHUNKS`` chunks (seeds
#: ``seed``, ``seed + 10``, ...) so xdist can spread them: 3 x 2 x 850 = 5,100 programs per CI run
RUNS = 850
CHUNKS = 2


def _run(variants: list[str], seed: int, runs: int) -> tuple[int, list[FoundBug]]:
    found: list[FoundBug] = []
    engine = Engine(variants, seed=seed, mode="random", minimize=False, on_finding=found.append)
    stats = engine.run(runs=runs)
    return stats.executions, found


def _report(name: str, found: list[FoundBug]) -> str:
    bug = found[0]
    lines = [
        f"{name}: {len(found)} finding(s) on a sound configuration; the first one, at execution "
        f"{bug.execution_index}:",
        bug.finding.render(),
        "",
        "program (save it and run `python -m fuzz.cli replay FILE`):",
        dump_program(bug.program),
    ]
    lines += [f"other finding: {b.finding.signature}" for b in found[1:]]
    return "\n".join(lines)


@pytest.mark.parametrize("chunk", range(CHUNKS))
@pytest.mark.parametrize(("name", "variants", "seed"), CONFIGS, ids=[c[0] for c in CONFIGS])
def test_sound_configuration_has_no_findings(name: str, variants: list[str], seed: int, chunk: int) -> None:
    executions, found = _run(variants, seed + 10 * chunk, RUNS)
    assert executions == RUNS
    assert not found, _report(name, found)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "variants", "seed"), CONFIGS, ids=[c[0] for c in CONFIGS])
def test_sound_configuration_has_no_findings_slow(name: str, variants: list[str], seed: int) -> None:
    executions, found = _run(variants, seed + 100, 10 * RUNS)
    assert executions == 10 * RUNS
    assert not found, _report(name, found)
