"""Test configuration: our own Hypothesis profiles.

With ``CI`` set, Hypothesis would silently switch to ``derandomize=True`` without a database; we
register explicit profiles instead so CI explores new examples on every run and prints how to
reproduce a failure.
"""

from __future__ import annotations

import os

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
