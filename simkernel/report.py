"""Reports raised by the detectors inside the model: kernel assertions, deadlocks, lockdep cycles.

A report is what a kernel would print to the console (an oops, a WARNING, a lockdep splat), not an
error of the simulator. Titles follow syzkaller's conventions so that findings deduplicate the way
syzbot reports do: "kernel BUG in <function>", "WARNING in <function>", "possible deadlock in
<function>", "INFO: task hung in <function>".
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

# Functions the kernel marks static inline and the compiler inlines into their callers: syzkaller's
# title names the caller (the RIP symbol), e.g. the BUG_ON in ext4_write_inline_data() is reported
# as "kernel BUG in ext4_write_inline_data_end".
INLINED: set[str] = set()


def kernel_name(name: str) -> str:
    """Python mangles ``__name`` inside classes, so Linux's ``__foo`` is spelled ``_foo`` in the model."""
    return "_" + name if name.startswith("_") and not name.startswith("__") else name


def inline(fn: Any) -> Any:
    """Decorator: mark a kernel function as inlined for report titles (``static inline``)."""
    INLINED.add(kernel_name(fn.__name__))
    return fn


# Frames of the simulator itself that never appear in a kernel stack trace.
_HIDDEN = frozenset(
    {
        "BUG_ON",
        "WARN_ON",
        "WARN_ON_ONCE",
        "BUG",
        "_kernel_stack",
        "step",
        "_run_task",
        "run",
        "_bug",
        "_warn",
        "<genexpr>",
        "<lambda>",
    }
)


def kernel_stack(skip: int = 1, limit: int = 40) -> list[str]:
    """The kernel call chain of the running task, innermost first (function names).

    Generators driven with ``yield from`` keep their callers as ``f_back`` while they run, so the
    frame chain *is* the kernel stack up to the scheduler.
    """
    out: list[str] = []
    frame = sys._getframe(skip)
    while frame is not None and len(out) < limit:
        mod = frame.f_globals.get("__name__", "")
        name = frame.f_code.co_name
        if mod.startswith("simkernel.kernel.sched"):
            break
        if name not in _HIDDEN and (mod.startswith("simkernel") or "variant" in mod or mod == "__main__"):
            out.append(kernel_name(name))
        elif not mod.startswith("simkernel") and out:
            # user-space frames (the program runner) end the kernel stack
            break
        frame = frame.f_back  # type: ignore[assignment]
    return out


# Lock primitives: syzkaller's titles name their caller ("possible deadlock in ext4_file_mmap").
LOCK_PRIMITIVES = frozenset(
    {
        "down_read",
        "down_write",
        "down_read_trylock",
        "down_write_trylock",
        "might_lock_read",
        "lockdep_acquire",
        "inode_lock",
        "folio_lock",
        "up_read",
        "up_write",
        "folio_unlock",
        "ext4_write_lock_xattr",
        "filemap_invalidate_lock",
    }
)


def title_function(stack: list[str]) -> str:
    """The function syzkaller would name: the innermost frame that is neither inlined nor a lock
    primitive."""
    for name in stack:
        if name not in INLINED and name not in LOCK_PRIMITIVES:
            return name
    return stack[0] if stack else "?"


@dataclass
class Report:
    """One console report from inside the model."""

    #: "assertion" (BUG/WARN), "deadlock", "lock-order", "hang"
    category: str
    #: syzkaller-style title, stable across runs (no addresses, no step numbers)
    title: str
    #: the asserted condition or a one-line description
    message: str
    #: name of the task that hit it ("T0", "kworker/u:flush-12", ...)
    task: str = ""
    #: scheduler step at which it happened
    step: int = 0
    #: kernel call chain, innermost first
    stack: list[str] = field(default_factory=list)
    #: extra evidence (lock chains, wait-for cycle, values of the asserted expression)
    details: dict[str, Any] = field(default_factory=dict)
    #: True for BUG/deadlock (the machine stops), False for WARN/lockdep (it goes on)
    fatal: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "title": self.title,
            "message": self.message,
            "task": self.task,
            "step": self.step,
            "stack": list(self.stack),
            "details": self.details,
            "fatal": self.fatal,
        }

    def render(self) -> str:
        """Console text, like the kernel's."""
        lines = [self.title, f"  {self.message}", f"  task: {self.task}  step: {self.step}"]
        if self.stack:
            lines.append("  Call Trace:")
            lines.extend(f"    {fn}" for fn in self.stack)
        for key, value in self.details.items():
            if isinstance(value, list):
                lines.append(f"  {key}:")
                lines.extend(f"    {v}" for v in value)
            else:
                lines.append(f"  {key}: {value}")
        return "\n".join(lines)


class KernelBug(Exception):
    """Raised inside a task by BUG_ON: the task oopses and the machine stops."""

    def __init__(self, report: Report) -> None:
        super().__init__(report.title)
        self.report = report
