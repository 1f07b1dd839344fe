"""jbd2 transactions, commit and checkpoint (fs/jbd2/transaction.c, commit.c, checkpoint.c).

Filled in with the crash-consistency work; until then ``Config(journal=True)`` is refused by
validation, so no path reaches these functions.
"""

from __future__ import annotations

from simkernel.kernel.base import KernelBase


class Jbd2(KernelBase):
    """The journal layer (see module docstring)."""
