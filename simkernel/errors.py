"""The project's error hierarchy.

Every error a user can cause (a malformed program, an impossible geometry, a corrupt image, a bad
corpus file) is a :class:`BlkfuzzError` *and* the matching builtin (``ValueError``, ``OSError``...), so
callers may catch either. The message is one line that names what is wrong and where; the CLI prints
it and exits 2 (see ``fuzz.cli``).

Errors that describe a *finding* (a kernel BUG in the simulated kernel) are not errors of this kind:
they are reports, see :mod:`simkernel.report`.
"""

from __future__ import annotations


class BlkfuzzError(Exception):
    """Base class of every error blkfuzz raises on purpose."""

    #: short machine-readable kind, used in JSON output
    kind = "error"

    def __init__(self, message: str, *, where: str | None = None) -> None:
        self.message = message
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class ProgramError(BlkfuzzError, ValueError):
    """A program (JSON) does not follow the program format.

    ``where`` is a JSON path like ``$.threads[0][2].off``.
    """

    kind = "program"


class GeometryError(BlkfuzzError, ValueError):
    """Block size, folio size, device size or inode count that the filesystem cannot have."""

    kind = "geometry"


class CorruptImageError(BlkfuzzError, ValueError):
    """An image that does not parse as the supported ext4 subset; ``where`` names the structure."""

    kind = "image"


class CorpusError(BlkfuzzError, ValueError):
    """A corpus or campaign file that cannot be read or has the wrong shape."""

    kind = "corpus"


class VariantError(BlkfuzzError, LookupError):
    """An unknown variant name, an import path that does not load, or variants that conflict."""

    kind = "variant"


class CampaignError(BlkfuzzError, RuntimeError):
    """A campaign directory that is locked by another run or cannot be used."""

    kind = "campaign"
