"""Findings: what a run is judged to have shown, explained so a developer can act on it.

A finding has a category ("data", "crash-consistency", "assertion", "deadlock", "lock-order",
"hang", "fsck"), a stable title (syzkaller style) and a signature for deduplication: the category
plus the title with run-specific numbers removed. Evidence is free-form JSON-able data; ``render()``
gives the text for people.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

CATEGORIES = ("data", "crash-consistency", "assertion", "deadlock", "lock-order", "hang", "fsck")

_NUMBERS = re.compile(r"\b(0x[0-9a-f]+|\d+)\b")


@dataclass
class Finding:
    category: str
    title: str
    #: one paragraph: what went wrong
    message: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def signature(self) -> str:
        """Stable across runs: category and title with numbers masked (offsets, inode numbers)."""
        norm = _NUMBERS.sub("N", self.title)
        return f"{self.category}: {norm}"

    @property
    def signature_id(self) -> str:
        return hashlib.sha256(self.signature.encode()).hexdigest()[:12]

    def to_json(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "title": self.title,
            "signature": self.signature,
            "message": self.message,
            "evidence": self.evidence,
        }

    def render(self) -> str:
        lines = [f"[{self.category}] {self.title}"]
        if self.message:
            lines.append(f"  {self.message}")
        for key, value in self.evidence.items():
            if isinstance(value, list):
                lines.append(f"  {key}:")
                lines.extend(f"    {v}" for v in value)
            elif isinstance(value, dict):
                lines.append(f"  {key}:")
                lines.extend(f"    {k}: {v}" for k, v in value.items())
            else:
                lines.append(f"  {key}: {value}")
        return "\n".join(lines)
