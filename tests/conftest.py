"""Test configuration: our own Hypothesis profiles.

With ``CI`` set, Hypothesis would silently switch to ``derandomize=True`` without a database; we
register explicit profiles instead so CI explores new examples on every run and prints how to
reproduce a failure.

Without the project's dependencies every test module would fail to import with its own traceback;
the suite stops first with one line saying what to install.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

_DEPENDENCIES = ("numpy", "construct", "hypothesis", "click", "rich")


def pytest_configure(config: pytest.Config) -> None:
    missing = [m for m in _DEPENDENCIES if importlib.util.find_spec(m) is None]
    if missing:
        pytest.exit(
            f"blkfuzz's dependencies are not installed in this Python ({', '.join(missing)} "
            "missing): run pip install -e '.[test]' first (README, Set-up)",
            returncode=2,
        )
    _load_hypothesis_profile()


def _load_hypothesis_profile() -> None:
    from hypothesis import HealthCheck, settings

    settings.register_profile(
        "blkfuzz-ci",
        derandomize=False,
        database=None,
        deadline=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    settings.register_profile("blkfuzz-dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
    settings.load_profile(
        os.environ.get("BLKFUZZ_HYPOTHESIS_PROFILE", "blkfuzz-ci" if os.environ.get("CI") else "blkfuzz-dev")
    )
