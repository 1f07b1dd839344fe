"""The sequential reference model (every op by hand), the effect table, the history data model and
its JSON, the reference runner, and the brute-force specification on tiny cases."""

from __future__ import annotations

import dataclasses
import json
from array import array
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oracle.history import EFAULT, History, HistoryOp, Store
from oracle.reference import (
    TAG_FILL,
    TAG_INITIAL,
    Call,
    Prim,
    apply_effect,
    apply_prim,
    brute_force_finals,
    brute_force_read_ok,
    effects,
    nominal_effect,
    read_expected,
    read_matches,
    run_sequential,
    simulate,
)
from simkernel.errors import CorpusError

# --------------------------------------------------------------------------------------------------
# helpers


def op(
    index: int, name: str, file: str | None = "a", *, tid: int = 0, seq: int | None = None, **kw: Any
) -> HistoryOp:
    """A completed op at steps [2*index, 2*index+1] unless ``invoke``/``ret`` are given."""
    args = {k: v for k, v in kw.items() if k in ("off", "len", "size", "mode")}
    fields: dict[str, Any] = {"invoke": 2 * index, "ret": 2 * index + 1, "result": 0}
    fields.update({k: v for k, v in kw.items() if k not in args})
    seq = index if seq is None else seq
    return HistoryOp(index=index, tid=tid, seq=seq, op=name, file=file, args=args, **fields)


def run(*prims: Prim, initial: bytes = b"") -> bytes:
    buf = bytearray(initial)
    apply_effect(buf, prims)
    return bytes(buf)


# --------------------------------------------------------------------------------------------------
# primitives: the sequential semantics


def test_write_fills_gap_with_zeros_and_grows():
    assert run(Prim.write(3, b"ab")) == b"\0\0\0ab"
    assert run(Prim.write(1, b"XY"), initial=b"abcd") == b"aXYd"
    assert run(Prim.write(3, b"XYZ"), initial=b"abcd") == b"abcXYZ"


def test_zero_stays_inside_the_size():
    assert run(Prim.zero(1, 2), initial=b"abcd") == b"a\0\0d"
    assert run(Prim.zero(2, 10), initial=b"abcd") == b"ab\0\0"  # no growth past EOF
    assert run(Prim.zero(8, 2), initial=b"abcd") == b"abcd"


def test_grow_never_shrinks_and_truncate_sets_the_size():
    assert run(Prim.grow(6), initial=b"ab") == b"ab\0\0\0\0"
    assert run(Prim.grow(1), initial=b"ab") == b"ab"
    assert run(Prim.truncate(1), initial=b"abc") == b"a"
    assert run(Prim.truncate(4), initial=b"abc") == b"abc\0"


def test_store_past_eof_is_not_file_data_and_reads_as_zero_after_growth():
    buf = bytearray(b"abc")
    apply_prim(buf, Prim.store(1, b"XYZW"))  # lands on [1, 3) only
    assert buf == b"aXY"
    apply_prim(buf, Prim.truncate(6))
    assert buf == b"aXY\0\0\0"  # the bytes stored past EOF never became file data
    apply_prim(buf, Prim.store(4, b"Q"))
    assert buf == b"aXY\0Q\0"


def test_provenance_tags_follow_every_primitive():
    buf = bytearray(b"ab")
    tags = array("q", [TAG_INITIAL]) * 2
    apply_prim(buf, Prim.write(4, b"cd"), tags, 7)
    assert list(tags) == [TAG_INITIAL, TAG_INITIAL, TAG_FILL, TAG_FILL, 7, 7]
    apply_prim(buf, Prim.zero(1, 2), tags, 8)
    apply_prim(buf, Prim.store(5, b"xyz"), tags, 9)
    assert list(tags) == [TAG_INITIAL, 8, 8, TAG_FILL, 7, 9]
    apply_prim(buf, Prim.truncate(3), tags, 10)
    apply_prim(buf, Prim.grow(4), tags, 11)
    assert list(tags) == [TAG_INITIAL, 8, 8, TAG_FILL]
    assert len(tags) == len(buf)


# --------------------------------------------------------------------------------------------------
# effects of recorded ops


def test_pwrite_effects():
    data = b"abcdef"
    assert effects(op(0, "pwrite", off=2, len=6, data=data, result=6)) == ((Prim.write(2, data),),)
    assert effects(op(0, "pwrite", off=2, len=6, data=data, result=3)) == ((Prim.write(2, b"abc"),),)
    assert effects(op(0, "pwrite", off=2, len=6, data=data, result=0)) == ((),)
    assert effects(op(0, "pwrite", off=2, len=6, data=data, result=-28)) == ((),)
    unfinished = op(0, "pwrite", off=2, len=3, data=b"abc", ret=None, result=None)
    assert effects(unfinished) == (
        (),
        (Prim.write(2, b"a"),),
        (Prim.write(2, b"ab"),),
        (Prim.write(2, b"abc"),),
    )
    with pytest.raises(ValueError, match="unknown data"):
        effects(dataclasses.replace(unfinished, data=None))


def test_truncate_creat_effects():
    assert effects(op(0, "truncate", size=5)) == ((Prim.truncate(5),),)
    assert effects(op(0, "truncate", size=5, result=-1)) == ((),)  # a failed truncate changes nothing
    assert effects(op(0, "truncate", size=5, ret=None, result=None)) == ((), (Prim.truncate(5),))
    assert effects(op(0, "creat")) == ((Prim.truncate(0),),)
    assert effects(op(0, "creat", result=-28)) == ((),)


@pytest.mark.parametrize(
    ("mode", "initial", "expected"),
    [
        ("alloc", b"abcd", b"abcd\0\0"),  # off=2 len=4: size max(4, 6)
        ("keep_size", b"abcd", b"abcd"),
        ("punch_hole", b"abcd", b"ab\0\0"),  # zeroes [2, min(6, 4)), size unchanged
        ("zero_range", b"abcd", b"ab\0\0\0\0"),
        ("zero_range_keep_size", b"abcd", b"ab\0\0"),
        ("alloc", b"abcdefgh", b"abcdefgh"),  # never shrinks
        ("punch_hole", b"abcdefgh", b"ab\0\0\0\0gh"),
    ],
)
def test_fallocate_modes(mode: str, initial: bytes, expected: bytes):
    (eff,) = effects(op(0, "fallocate", mode=mode, off=2, len=4))
    assert run(*eff, initial=initial) == expected


def test_failed_fallocate_partial_effects():
    def outcomes(mode: str, initial: bytes, **kw: Any) -> set[bytes]:
        kw.setdefault("result", -28)
        o = op(0, "fallocate", mode=mode, off=1, len=2, **kw)
        return {run(*eff, initial=initial) for eff in effects(o)}

    # alloc may have grown the size to anything up to off+len; content unchanged
    assert outcomes("alloc", b"a") == {b"a", b"a\0", b"a\0\0"}
    # punch/zero may have zeroed any prefix of the range, never a suffix alone
    assert outcomes("punch_hole", b"abcd") == {b"abcd", b"a\0cd", b"a\0\0d"}
    assert outcomes("zero_range_keep_size", b"abcd") == {b"abcd", b"a\0cd", b"a\0\0d"}
    assert outcomes("zero_range", b"ab") == {b"ab", b"a\0", b"ab\0", b"a\0\0"}
    assert outcomes("keep_size", b"ab") == {b"ab"}
    # an unfinished fallocate may have done the same (or everything)
    assert outcomes("zero_range", b"ab", ret=None, result=None) == {b"ab", b"a\0", b"ab\0", b"a\0\0"}
    # "no change" comes first: it is the nominal effect
    o = op(0, "fallocate", mode="zero_range", off=1, len=2, result=-28)
    assert effects(o)[0] == () and nominal_effect(o) == ()


def test_mwrite_effect_is_its_stores_in_order():
    o = op(0, "mwrite", off=2, len=4, data=b"wxyz", result=-EFAULT, stores=(Store(0, 2, b"wx"),))
    assert effects(o) == ((Prim.store(2, b"wx"),),)
    assert run(*nominal_effect(o), initial=b"abc") == b"abw"  # clipped at EOF


def test_other_ops_change_nothing():
    for name in ("fsync", "fdatasync", "mmap", "munmap", "pread"):
        assert effects(op(0, name)) == ((),)
    assert effects(op(0, "sync", None)) == ((),)
    assert effects(op(0, "remount", None)) == ((),)


def test_reads():
    assert read_expected(b"abcdef", 4, 10) == b"ef"
    assert read_expected(b"abc", 5, 2) == b""
    assert read_matches(b"abcdef", 1, 3, b"bcd")
    assert not read_matches(b"abcdef", 1, 3, b"bc")  # strictly, a short read must stop at EOF
    assert read_matches(b"abcdef", 1, 3, b"bc", short_reads=True)
    assert not read_matches(b"abcdef", 1, 3, b"bx", short_reads=True)
    assert read_matches(b"abc", 1, 5, b"bc")


def test_run_sequential_applies_nominal_effects_and_checks_reads():
    ops = (
        op(0, "pwrite", off=0, len=4, data=b"abcd", result=4),
        op(1, "truncate", size=2),
        op(2, "pread", off=0, len=8, result=2, out=b"ab"),
        op(3, "fallocate", mode="zero_range", off=1, len=4, result=-28),
        op(4, "pread", off=0, len=8, result=2, out=b"aX"),
        op(5, "pwrite", off=3, len=1, data=b"z", ret=None, result=None),
    )
    final, bad = run_sequential(History(("a",), ops))
    assert final == {"a": b"ab"}
    assert bad == [4]


# --------------------------------------------------------------------------------------------------
# history data model


def _sample_history() -> History:
    return History(
        files=("a", "b"),
        ops=(
            op(0, "pwrite", off=1, len=3, data=b"xyz", result=3),
            op(
                1,
                "mwrite",
                tid=1,
                seq=0,
                off=0,
                len=5,
                data=b"12345",
                result=-EFAULT,
                stores=(Store(2, 0, b"12"),),
            ),
            op(2, "pread", seq=1, off=0, len=4, result=4, out=b"12yz"),
            op(3, "fallocate", "b", tid=1, seq=1, mode="punch_hole", off=0, len=1, ret=None, result=None),
            op(4, "sync", None, tid=2, seq=0),
        ),
        initial={"a": b"\x01", "b": b""},
    )


def test_history_json_round_trip():
    h = _sample_history()
    h.validate()
    doc = h.to_json()
    assert json.loads(json.dumps(doc)) == doc
    assert History.from_json(doc) == h
    assert History.from_json(h.dumps()) == h
    assert h.op(2).describe() == "T0 pread off=0 len=4"
    assert h.op(3).describe() == "T1 fallocate punch_hole off=0 len=1"
    assert [o.index for o in h.ops_on("a")] == [0, 1, 2]


@pytest.mark.parametrize(
    ("edit", "where"),
    [
        (lambda d: d.update(format="x"), "$.format"),
        (lambda d: d["ops"][0].update(op="write"), "$.ops[0].op"),
        (lambda d: d["ops"][0].update(file="zz"), "$.ops[0].file"),
        (lambda d: d["ops"][0]["args"].pop("len"), "$.ops[0].args"),
        (lambda d: d["ops"][0].update(ret=None), "$.ops[0].result"),
        (lambda d: d["ops"][0].update(result=9), "$.ops[0].result"),
        (lambda d: d["ops"][1].update(index=0), "$.ops[1].index"),
        (lambda d: d["ops"][2].update(seq=7), "$.ops[2].seq"),
        (lambda d: d["ops"][2].update(out="00"), "$.ops[2].out"),
        (lambda d: d["ops"][1]["stores"][0].update(step=99), "$.ops[1].stores[0].step"),
        (lambda d: d["ops"][1].update(result=-5), "$.ops[1].result"),
        (lambda d: d["ops"][0].update(data="zz"), "$.ops[0].data"),
        (lambda d: d["ops"][3]["args"].update(mode="bogus"), "$.ops[3].args.mode"),
    ],
)
def test_history_validation_names_the_place(edit, where):
    doc = _sample_history().to_json()
    edit(doc)
    with pytest.raises(CorpusError) as info:
        History.from_json(doc)
    assert info.value.where == where


def test_history_rejects_an_op_after_an_unfinished_one():
    h = History(("a",), (op(0, "fsync", ret=None, result=None), op(1, "fsync")))
    with pytest.raises(CorpusError, match="never returned"):
        h.validate()


# --------------------------------------------------------------------------------------------------
# the reference runner


def test_simulate_is_deterministic_and_records_steps():
    threads = [
        [Call("pwrite", "a", {"off": 0, "len": 3}, b"abc"), Call("pread", "a", {"off": 0, "len": 8})],
        [Call("truncate", "a", {"size": 1})],
    ]
    h1, f1 = simulate(["a"], threads, [0, 1, 0, 1, 1, 0, 0])
    h2, f2 = simulate(["a"], threads, [0, 1, 0, 1, 1, 0, 0])
    assert h1 == h2 and f1 == f2
    h1.validate()
    for o in h1.ops:
        assert o.ret is not None and o.invoke < o.ret


def test_simulate_sigbus_on_a_page_past_eof():
    h, final = simulate(
        ["a"],
        [[Call("truncate", "a", {"size": 5}), Call("mwrite", "a", {"off": 2, "len": 8}, b"ABCDEFGH")]],
        page_size=4,
    )
    mw = h.ops[1]
    assert mw.result == -EFAULT
    # page [0,4) stores "AB", page [4,8) stores "CDEF" (only "C" is file data), page [8,12) faults
    assert [(s.off, s.data) for s in mw.stores] == [(2, b"AB"), (4, b"CDEF")]
    assert final == {"a": b"\0\0ABC"}


def test_simulate_stop_leaves_ops_unfinished():
    h, final = simulate(["a"], [[Call("pwrite", "a", {"off": 0, "len": 2}, b"ab")]], stop_after=2)
    (o,) = h.ops
    assert o.ret is None and o.result is None
    assert final == {"a": b"ab"}  # its linearization point passed
    h.validate()


def test_simulate_refuses_impossible_partial_effects():
    bad = Call("fallocate", "a", {"mode": "keep_size", "off": 0, "len": 4}, errno=28, prefix=2)
    with pytest.raises(ValueError, match="prefix"):
        simulate(["a"], [[bad]])
    bad = Call("fallocate", "a", {"mode": "punch_hole", "off": 0, "len": 4}, errno=28, grow_to=3)
    with pytest.raises(ValueError, match="grow"):
        simulate(["a"], [[bad]])


# --------------------------------------------------------------------------------------------------
# brute force on tiny cases


def test_brute_force_concurrent_writes_give_both_orders():
    ops = (
        op(0, "pwrite", off=0, len=2, data=b"ab", result=2, invoke=0, ret=5),
        op(1, "pwrite", tid=1, seq=0, off=1, len=2, data=b"XY", result=2, invoke=1, ret=6),
    )
    h = History(("a",), ops)
    assert brute_force_finals(h, "a") == {b"aXY", b"abY"}
    sequential = History(("a",), (ops[0], dataclasses.replace(ops[1], invoke=7, ret=8)))
    assert brute_force_finals(sequential, "a") == {b"aXY"}


def test_brute_force_store_order_is_fixed():
    ops = (
        op(0, "truncate", size=4, invoke=0, ret=10),
        op(
            1,
            "mwrite",
            tid=1,
            seq=0,
            off=0,
            len=4,
            data=b"wxyz",
            invoke=1,
            ret=3,
            stores=(Store(2, 0, b"wxyz"),),
        ),
    )
    h = History(("a",), ops)
    # the truncate may come before the store (store lands) or after it (store past EOF of b"")
    assert brute_force_finals(h, "a") == {b"wxyz", b"\0\0\0\0"}


def test_brute_force_read():
    ops = (
        op(0, "pwrite", off=0, len=2, data=b"ab", result=2, invoke=0, ret=5),
        op(1, "pread", tid=1, seq=0, off=0, len=4, invoke=1, ret=6, result=2, out=b"ab"),
    )
    h = History(("a",), ops)
    assert brute_force_read_ok(h, 1)
    empty = dataclasses.replace(ops[1], result=0, out=b"")
    assert brute_force_read_ok(History(("a",), (ops[0], empty)), 1)
    torn = dataclasses.replace(ops[1], result=1, out=b"a")
    assert not brute_force_read_ok(History(("a",), (ops[0], torn)), 1)
    assert brute_force_read_ok(History(("a",), (ops[0], torn)), 1, short_reads=True)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.binary(min_size=1, max_size=4)), min_size=1, max_size=5))
def test_one_thread_has_exactly_one_outcome(writes):
    calls = [Call("pwrite", "a", {"off": off, "len": len(d)}, d) for off, d in writes]
    h, final = simulate(["a"], [calls])
    assert brute_force_finals(h, "a") == {final["a"]}
    assert run_sequential(h) == (final, [])
