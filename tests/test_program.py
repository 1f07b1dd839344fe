"""The program format: round trips, canonical text, and precise errors for malformed programs."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz.program import (
    ACTORS,
    MAX_LEN,
    MAX_OFF,
    DataSpec,
    Expect,
    Program,
    Syscall,
    dump_program,
    load_program,
    load_program_file,
)
from fuzz.strategies import configs, programs, syscalls
from simkernel.config import Config
from simkernel.errors import BlkfuzzError, ProgramError

EXAMPLE: dict[str, Any] = {
    "format": "blkfuzz-program/1",
    "config": {"block_size": 1024, "folio_blocks": 4},
    "variants": ["iomap-nocookie", "mypkg.mod:MyVariant"],
    "actors": ["writeback", "complete"],
    "files": ["a", "b"],
    "threads": [
        [
            {"op": "creat", "file": "a"},
            {"op": "pwrite", "file": "a", "off": 0, "len": 4, "data": {"hex": "a5a5a5a5"}},
            {"op": "pwrite", "file": "b", "off": 1023, "len": 2, "data": {"map": {"file": "a", "off": 0}}},
            {"op": "fallocate", "file": "a", "mode": "punch_hole", "off": 0, "len": 1024},
            {"op": "fsync", "file": "a"},
        ],
        [
            {"op": "mmap", "file": "a"},
            {"op": "mwrite", "file": "a", "off": 5, "len": 7, "data": {"seed": 3}},
            {"op": "truncate", "file": "b", "size": 4097},
            {"op": "pread", "file": "b", "off": 0, "len": 4096},
            {"op": "munmap", "file": "a"},
            {"op": "fdatasync", "file": "b"},
            {"op": "sync"},
        ],
    ],
    "schedule": [0, 3, 0, 1],
    "expect": {"verdict": "finding", "signature": "lost-write:ext4_writepages"},
    "meta": {"note": "hand-written", "n": [1, 2.5, None]},
}


def test_example_loads_into_dataclasses() -> None:
    p = load_program(EXAMPLE)
    assert p.files == ("a", "b")
    assert p.config == Config(block_size=1024, folio_blocks=4)
    assert p.variants == ("iomap-nocookie", "mypkg.mod:MyVariant")
    assert p.actors == ("writeback", "complete")
    assert p.threads[0][1] == Syscall(op="pwrite", file="a", off=0, len=4, data=DataSpec(hex="a5a5a5a5"))
    assert p.threads[0][2].data == DataSpec.mapped("a", 0)
    assert p.threads[1][1].data == DataSpec.from_seed(3)
    assert p.schedule == (0, 3, 0, 1)
    assert p.expect == Expect("finding", "lost-write:ext4_writepages")
    assert p.n_syscalls == 12
    assert p.n_threads == 2
    assert [(t, i) for t, i, _ in p.iter_syscalls()][4:6] == [(0, 4), (1, 0)]


def test_defaults() -> None:
    p = load_program({"format": "blkfuzz-program/1", "files": ["a"], "threads": [[]]})
    assert p.config == Config()
    assert p.variants == ()
    assert p.actors == ACTORS
    assert p.schedule == ()
    assert p.expect is None
    assert p.meta == {}
    assert p == Program(files=("a",), threads=((),))


def test_dump_is_canonical_and_round_trips(tmp_path: Path) -> None:
    p = load_program(EXAMPLE)
    text = dump_program(p)
    assert text.endswith("}\n") and not text.endswith("\n\n")
    assert load_program(text) == p
    # dump of the reloaded program is byte-identical: the text is canonical
    assert dump_program(load_program(text)) == text
    lines = text.splitlines()
    assert lines[1] == '  "format": "blkfuzz-program/1",'
    # keys in documented order
    order = [ln.split('"')[1] for ln in lines if ln.startswith('  "')]
    assert order == [
        "format",
        "config",
        "variants",
        "actors",
        "files",
        "threads",
        "schedule",
        "expect",
        "meta",
    ]
    # one syscall per line
    assert '      {"op": "pwrite", "file": "a", "off": 0, "len": 4, "data": {"hex": "a5a5a5a5"}},' in lines
    assert '      {"op": "sync"}' in lines
    path = tmp_path / "p.json"
    path.write_text(text)
    assert load_program_file(path) == p


def test_long_schedule_wraps() -> None:
    p = load_program(EXAMPLE).with_schedule(range(1000))
    text = dump_program(p)
    number_lines = [ln for ln in text.splitlines() if ln[4:5].isdigit()]
    assert len(number_lines) > 10
    assert max(len(ln) for ln in number_lines) <= 100
    assert load_program(text).schedule == tuple(range(1000))


def test_digest_is_stable_and_ignores_meta() -> None:
    p = load_program(EXAMPLE)
    q = dataclasses.replace(p, meta={"other": True})
    assert p.digest() == q.digest()
    assert len(p.digest()) == 64
    assert p.digest() != p.with_schedule([0]).digest()
    # the digest is sha256 of the compact canonical JSON (documented order, every config field)
    minimal = load_program({"format": "blkfuzz-program/1", "files": ["a"], "threads": [[{"op": "sync"}]]})
    canonical = (
        '{"format":"blkfuzz-program/1","config":'
        + json.dumps(Config().to_json(), separators=(",", ":"))
        + ',"variants":[],"actors":'
        + json.dumps(list(ACTORS), separators=(",", ":"))
        + ',"files":["a"],"threads":[[{"op":"sync"}]],"schedule":[]}'
    )
    assert minimal.digest() == hashlib.sha256(canonical.encode()).hexdigest()
    assert hash(p) == hash(q)


def test_with_helpers_validate() -> None:
    p = load_program(EXAMPLE)
    assert p.with_config(block_size=4096, folio_blocks=1).config.block_size == 4096
    assert p.with_config(Config(write_path="iomap")).config.write_path == "iomap"
    with pytest.raises(ProgramError) as e:
        p.with_config(folio_blocks=3)
    assert e.value.where == "$.config.folio_blocks"
    with pytest.raises(ProgramError) as e:
        p.with_config(blocksize=4096)
    assert e.value.where == "$.config.blocksize"
    with pytest.raises(ProgramError) as e:
        p.with_schedule([0, 1 << 16])
    assert e.value.where == "$.schedule[1]"
    threads = [list(t) for t in p.threads]
    threads[1][0] = Syscall(op="remount")
    with pytest.raises(ProgramError) as e:
        p.with_threads(threads)
    assert e.value.where == "$.threads[1][0].op"
    shrunk = p.with_threads([p.threads[0][:1]])
    assert shrunk.n_syscalls == 1


def test_validate_catches_malformed_dataclasses() -> None:
    p = load_program(EXAMPLE)
    bad_field = dataclasses.replace(p.threads[0][0], off=3)  # creat takes no off
    with pytest.raises(ProgramError) as e:
        p.with_threads([[bad_field]])
    assert e.value.where == "$.threads[0][0].off"
    two_kinds = dataclasses.replace(p.threads[1][1], data=DataSpec(seed=1, hex="00"))
    with pytest.raises(ProgramError) as e:
        p.with_threads([[two_kinds]])
    assert e.value.where == "$.threads[0][0].data"


def _with(path: str, value: Any) -> dict[str, Any]:
    """EXAMPLE with the value at ``path`` (dotted, [i] for indexes) replaced; a value of DELETE removes it."""
    doc = copy.deepcopy(EXAMPLE)
    parts = path.replace("[", ".").replace("]", "").split(".")
    node: Any = doc
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    elif value is DELETE:
        del node[last]
    else:
        node[last] = value
    return doc


DELETE = object()

MALFORMED: list[tuple[str, Any, str, str]] = [
    # (edit path, new value, expected where, expected fragment of the message)
    ("format", "blkfuzz-program/2", "$.format", "blkfuzz-program/1"),
    ("format", DELETE, "$.format", "missing"),
    ("thread", [], "$.thread", 'did you mean "threads"'),
    ("files", DELETE, "$.files", "missing"),
    ("files", [], "$.files", "1..8"),
    ("files[1]", "B", "$.files[1]", "[a-z0-9_]{1,16}"),
    ("files[1]", "a", "$.files[1]", "duplicate"),
    ("config.block_size", 512, "$.config.block_size", "not one of"),
    ("config.block_size", "4096", "$.config.block_size", "non-negative integer"),
    ("config.journal", 1, "$.config.journal", "true or false"),
    ("config.blocksize", 1024, "$.config.blocksize", "unknown key"),
    ("variants[0]", "Not A Name", "$.variants[0]", "import path"),
    ("actors[1]", "writeback", "$.actors[1]", "duplicate"),
    ("actors[0]", "flusher", "$.actors[0]", "must be one of"),
    ("threads", [], "$.threads", "1..8"),
    ("threads[0][2].off", -3, "$.threads[0][2].off", "must be a non-negative integer, got -3"),
    ("threads[0][2].off", 1.5, "$.threads[0][2].off", "non-negative integer"),
    ("threads[0][2].off", True, "$.threads[0][2].off", "non-negative integer, got true"),
    ("threads[0][2].off", MAX_OFF + 1, "$.threads[0][2].off", "MAX_OFF"),
    ("threads[0][2].len", MAX_LEN + 1, "$.threads[0][2].len", "MAX_LEN"),
    ("threads[1][2].size", MAX_OFF + 1, "$.threads[1][2].size", "MAX_OFF"),
    ("threads[0][2].len", DELETE, "$.threads[0][2].len", "missing"),
    ("threads[0][2].lenn", 2, "$.threads[0][2].lenn", "unknown key"),
    ("threads[0][0].file", "z", "$.threads[0][0].file", "unknown file"),
    ("threads[0][0].op", "write", "$.threads[0][0].op", "must be one of"),
    ("threads[0][3].mode", "punch", "$.threads[0][3].mode", "must be one of"),
    ("threads[0][3].len", 0, "$.threads[0][3].len", ">= 1"),
    ("threads[0][1].data", {"hex": "A5A5A5A5"}, "$.threads[0][1].data.hex", "lowercase"),
    ("threads[0][1].data", {"hex": "a5a5"}, "$.threads[0][1].data.hex", "2*len = 8"),
    ("threads[0][1].data", {"seed": 1, "hex": "a5a5a5a5"}, "$.threads[0][1].data", "exactly one"),
    ("threads[0][1].data", {}, "$.threads[0][1].data", "exactly one"),
    (
        "threads[1][1].data",
        {"map": {"file": "a", "off": 0}},
        "$.threads[1][1].data.map",
        "only allowed for pwrite",
    ),
    ("threads[0][2].data.map.file", "c", "$.threads[0][2].data.map.file", "unknown file"),
    ("threads[0][2].data.map.offset", 0, "$.threads[0][2].data.map.offset", "unknown key"),
    ("threads[1][0]", {"op": "remount"}, "$.threads[1][0].op", "exactly one thread"),
    ("threads[1][0]", "sync", "$.threads[1][0]", "JSON object"),
    ("threads[1]", [{"op": "sync"}] * 257, "$.threads[1]", "0..256"),
    ("schedule[1]", 1 << 16, "$.schedule[1]", "0..65535"),
    ("schedule[1]", -1, "$.schedule[1]", "0..65535"),
    ("schedule", "0,1", "$.schedule", "must be a list"),
    ("expect.verdict", "dirty", "$.expect.verdict", "must be one of"),
    ("expect.signature", DELETE, "$.expect.signature", "missing"),
    ("meta.x", float("nan"), "$.meta.x", "finite"),
    ("meta", [], "$.meta", "JSON object"),
]


@pytest.mark.parametrize(("path", "value", "where", "fragment"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_program_names_the_place(path: str, value: Any, where: str, fragment: str) -> None:
    doc = _with(path, value)
    with pytest.raises(ProgramError) as e:
        load_program(doc)
    err = e.value
    assert isinstance(err, ValueError) and isinstance(err, BlkfuzzError)
    assert err.where == where
    assert fragment in err.message
    assert "\n" not in str(err)
    assert str(err) == f"{where}: {err.message}"


def test_top_level_not_an_object() -> None:
    with pytest.raises(ProgramError) as e:
        load_program("[1, 2]")
    assert e.value.where == "$"


def test_bad_json_text_reports_line_and_column() -> None:
    text = '{\n  "format": "blkfuzz-program/1",\n  "files": ["a"]\n  "threads": [[]]\n}\n'
    with pytest.raises(ProgramError) as e:
        load_program(text, source="x.json")
    assert isinstance(e.value, ValueError)
    assert e.value.where == "$"
    assert "line 4 column 3" in e.value.message
    assert "in x.json" in e.value.__notes__


def test_bad_utf8_and_huge_integer() -> None:
    with pytest.raises(ProgramError):
        load_program(b'{"format": "\xff"}')
    with pytest.raises(ProgramError) as e:
        load_program('{"format": ' + "9" * 5000 + "}")
    assert e.value.where == "$"


def test_duplicate_keys_are_rejected() -> None:
    text = json.dumps(EXAMPLE).replace('"off": 1023', '"off": 1023, "off": 7')
    with pytest.raises(ProgramError) as e:
        load_program(text)
    assert e.value.where == "$.threads[0][2].off"
    assert "duplicate" in e.value.message


def test_geometry_error_becomes_program_error() -> None:
    with pytest.raises(ProgramError) as e:
        load_program(_with("config", {"write_path": "iomap", "inline_data": True}))
    assert e.value.where == "$.config.inline_data"
    with pytest.raises(ProgramError) as e:
        load_program(_with("config", {"journal": True}))  # 1024 journal blocks do not fit in 256
    assert e.value.where == "$.config.device_blocks"


def test_limits_accept_boundaries() -> None:
    doc = _with("threads[0][2]", {"op": "pread", "file": "a", "off": MAX_OFF, "len": MAX_LEN})
    assert load_program(doc).threads[0][2].off == MAX_OFF
    doc = _with("threads[0][1]", {"op": "pwrite", "file": "a", "off": 3, "len": 0, "data": {"hex": ""}})
    assert load_program(doc).threads[0][1].len == 0
    single = {"format": "blkfuzz-program/1", "files": ["a"], "threads": [[{"op": "remount"}]]}
    assert load_program(single).threads[0][0].op == "remount"


_FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FAST
@given(programs())
def test_generated_programs_round_trip(p: Program) -> None:
    assert p.validate() == p
    text = dump_program(p)
    q = load_program(text)
    assert q == p
    assert dump_program(q) == text
    assert q.digest() == p.digest()
    assert load_program(json.loads(text)) == p


@_FAST
@given(programs(threads=1, ops=["remount", "pwrite", "mwrite"], max_off=1 << 16, max_len=256, schedule=False))
def test_generated_single_thread_programs_with_remount(p: Program) -> None:
    assert p.n_threads == 1 and p.schedule == ()
    assert load_program(dump_program(p)) == p
    for _, _, call in p.iter_syscalls():
        if call.op == "mwrite":
            assert call.data is not None and call.data.kind != "map"


@_FAST
@given(programs(threads=st.integers(2, 8), ops=["remount"], files=8, actors=st.just(["reclaim"])))
def test_remount_is_dropped_for_multi_thread_programs(p: Program) -> None:
    assert p.n_syscalls == 0
    assert p.actors == ("reclaim",)
    assert p.validate() == p


@_FAST
@given(configs())
def test_configs_validate(c: Config) -> None:
    assert c.validate() == c


@_FAST
@given(st.data())
def test_syscalls_respect_limits(data: st.DataObject) -> None:
    cfg = data.draw(configs())
    call = data.draw(
        syscalls(["a", "b"], ops=["pwrite", "fallocate", "truncate"], config=cfg, max_off=5000, max_len=300)
    )
    if call.off is not None:
        assert 0 <= call.off <= 5000
    if call.size is not None:
        assert 0 <= call.size <= 5000
    if call.len is not None:
        assert (1 if call.op == "fallocate" else 0) <= call.len <= 300
