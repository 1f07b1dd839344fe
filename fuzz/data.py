"""Deterministic contents of user buffers.

A ``{"seed": n}`` buffer of ``len`` bytes is :func:`pattern` ``(n, len)``: pseudo-random bytes that
never contain 0x00, so a byte the kernel loses (reads back as zero from a hole or a never-written
block) is always visible as a difference. The bytes depend only on the seed and the length: not on
the machine, the Python hash seed or any global random state.
"""

from __future__ import annotations

import random

from fuzz.program import DataSpec
from simkernel.errors import ProgramError

__all__ = ["ZERO_REPLACEMENT", "data_bytes", "pattern"]

#: the byte written where the generator produced 0x00
ZERO_REPLACEMENT = 0xA5
# bytes.translate table: identity except 0x00 -> 0xA5; translate runs in C, no per-byte Python loop
_NO_ZERO = bytes([ZERO_REPLACEMENT]) + bytes(range(1, 256))


def pattern(seed: int, length: int) -> bytes:
    """Return ``length`` bytes: ``random.Random(seed).randbytes(length)`` with every 0x00 replaced by
    0xA5. ``seed`` and ``length`` must be non-negative ints (``ValueError`` otherwise).

    ``random.Random`` seeded with an int is specified (Mersenne Twister, ``init_by_array`` of the
    seed's 32-bit words) and does not use ``hash()``, so the result is identical on every machine
    and every ``PYTHONHASHSEED``; a private instance keeps the global random state untouched.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        # Random(-n) seeds like Random(n): refuse negatives rather than alias them
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(length, bool) or not isinstance(length, int) or length < 0:
        raise ValueError(f"length must be a non-negative integer, got {length!r}")
    return random.Random(seed).randbytes(length).translate(_NO_ZERO)


def data_bytes(spec: DataSpec, length: int) -> bytes | None:
    """Return the ``length`` bytes of the user buffer described by ``spec``.

    * ``seed`` spec: ``pattern(spec.seed, length)``;
    * ``hex`` spec: ``bytes.fromhex(spec.hex)``, which must be exactly ``length`` bytes;
    * ``map`` spec: ``None`` — the bytes are whatever the mapped file holds when the kernel copies
      them, so only the runner can know them.

    Raises :class:`ProgramError` (a ``ValueError``) if a hex spec is not ``length`` bytes of
    lowercase hex or the spec has no kind set (a validated program never does).
    """
    if spec.seed is not None:
        return pattern(spec.seed, length)
    if spec.hex is not None:
        try:
            data = bytes.fromhex(spec.hex)
        except ValueError:
            raise ProgramError(f"data hex is not hex digits: {spec.hex[:40]!r}") from None
        if len(data) != length:
            raise ProgramError(f"data hex has {len(data)} bytes, len is {length}")
        return data
    if spec.map_file is not None:
        return None
    raise ProgramError("data spec has none of seed, hex, map")
