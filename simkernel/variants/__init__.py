"""Variants: named kernel overrides, built-in or loaded by import path (``package.module:Name``).

Public API: :class:`Variant`, :func:`resolve_variants`, :func:`builtin_variants`,
:func:`apply_requirements`.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from simkernel.config import Config
from simkernel.errors import VariantError
from simkernel.variants.base import Variant

__all__ = ["Variant", "apply_requirements", "builtin_variants", "load_variant", "resolve_variants"]


def builtin_variants() -> dict[str, type[Variant]]:
    """Name -> class of the built-in variants, in a fixed order."""
    from simkernel.variants.builtin import BUILTIN_VARIANTS

    return {v.name: v for v in BUILTIN_VARIANTS}


def load_variant(spec: str) -> type[Variant]:
    """A built-in name, or ``package.module:ClassName`` of a user variant."""
    builtins = builtin_variants()
    if spec in builtins:
        return builtins[spec]
    if ":" not in spec:
        known = ", ".join(builtins)
        raise VariantError(
            f"unknown variant {spec!r} (built-in: {known}; or use package.module:Class)", where=spec
        )
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # any import failure is the user's module: report it in one line
        raise VariantError(
            f"cannot import {module_name!r}: {type(err).__name__}: {err}", where=spec
        ) from None
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise VariantError(f"module {module_name!r} has no attribute {attr!r}", where=spec)
    if not (isinstance(obj, type) and issubclass(obj, Variant)):
        raise VariantError(f"{spec!r} is not a subclass of simkernel.variants.Variant", where=spec)
    if not obj.name:
        raise VariantError(f"{spec!r} has no name", where=spec)
    return obj


def resolve_variants(specs: Iterable[str]) -> tuple[type[Variant], ...]:
    """Load every variant; duplicates are an error."""
    out: list[type[Variant]] = []
    for spec in specs:
        cls = load_variant(spec)
        if cls in out:
            raise VariantError(f"variant {cls.name!r} given twice", where=spec)
        out.append(cls)
    return tuple(out)


def apply_requirements(
    config: Config, variants: Iterable[type[Variant]], explicit: Iterable[str] = ()
) -> Config:
    """Fill the config fields the variants require; a field the program set explicitly to a
    different value (or two variants requiring different values) is a VariantError."""
    explicit = set(explicit)
    wanted: dict[str, tuple[Any, str]] = {}
    for v in variants:
        for key, value in v.requires.items():
            if key in wanted and wanted[key][0] != value:
                raise VariantError(
                    f"variants {wanted[key][1]!r} and {v.name!r} need different {key} "
                    f"({wanted[key][0]!r} vs {value!r})",
                    where=v.name,
                )
            wanted[key] = (value, v.name)
    changes: dict[str, Any] = {}
    for key, (value, who) in wanted.items():
        if key in explicit and getattr(config, key) != value:
            raise VariantError(
                f"variant {who!r} needs {key}={value!r} but the program sets {key}={getattr(config, key)!r}",
                where=who,
            )
        changes[key] = value
    return replace(config, **changes) if changes else config
