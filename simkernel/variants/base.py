"""Variants: named, composable overrides of one or two kernel functions.

A variant is a class deriving from :class:`Variant` that defines kernel methods with the kernel's
names. At machine creation the kernel class is composed as ``(variant, ..., Kernel)``, so the
variant's method replaces the kernel's and may call the original with ``super()``::

    class NoCookie(Variant):
        name = "iomap-nocookie"
        requires = {"write_path": "iomap"}

        def ext4_iomap_valid(self, inode, iomap):
            return True          # pre-6.2: no validity check

``requires`` lists the configuration fields the variant needs; a program whose config contradicts
them is rejected, and unspecified fields take these values.
"""

from __future__ import annotations

from typing import Any, ClassVar

from simkernel.kernel.base import KernelBase


class Variant(KernelBase):
    """Base class of every variant (a kernel mixin)."""

    #: the name users select it by (``--variant NAME``)
    name: ClassVar[str] = ""
    #: one line for ``blkfuzz variants``
    description: ClassVar[str] = ""
    #: configuration this variant needs (e.g. {"write_path": "iomap"})
    requires: ClassVar[dict[str, Any]] = {}
    #: what kind of variant it is: "bug" (a known bug), "fix" (a sound fix), "config", "planted"
    kind: ClassVar[str] = "config"
