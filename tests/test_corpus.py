"""Replay the corpus: one test per file, each must still give its recorded verdict.

A corpus file is a program with ``expect``: ``{"verdict": "clean"}`` or ``{"verdict": "finding",
"signature": ...}``. A program expected to find something must still show that signature (other
findings may come and go as the model grows); a clean one must stay clean. Run it in parallel with
``pytest -n auto --dist worksteal tests/test_corpus.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fuzz.program import load_program_file
from fuzz.verdict import judge

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
FILES = sorted(CORPUS.rglob("*.json"))


def test_corpus_is_not_empty() -> None:
    assert FILES, "corpus/ holds no programs"


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(CORPUS)) for p in FILES])
def test_corpus_program_keeps_its_verdict(path: Path) -> None:
    program = load_program_file(path)
    assert program.expect is not None, f"{path.name}: no expected verdict"
    verdict = judge(program)
    found = verdict.signatures()
    if program.expect.verdict == "clean":
        assert found == [], f"{path.name}: expected clean, got {found}"
    else:
        assert program.expect.signature in found, (
            f"{path.name}: expected {program.expect.signature!r}, got {found}"
        )
