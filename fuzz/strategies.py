"""Hypothesis strategies over the program format ``blkfuzz-program/1``.

For users' own property tests and for blkfuzz's tests::

    from hypothesis import given
    from fuzz.strategies import programs

    @given(programs(threads=2, ops=["pwrite", "fsync", "truncate"]))
    def test_my_variant_loses_nothing(program): ...

Every value these strategies produce is valid: ``programs()`` yields programs that
:func:`fuzz.program.load_program` accepts unchanged, ``configs()`` yields configs whose
``validate()`` passes. Offsets and lengths are biased toward block and folio edges (multiples of
``block_size`` and the folio size, and one byte either side) and small values, where buffered-I/O
bugs live; Hypothesis shrinks them toward 0 and toward the smallest multiple.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from fuzz.program import (
    ACTORS,
    FALLOCATE_MODES,
    MAX_FILES,
    MAX_LEN,
    MAX_OFF,
    MAX_SCHEDULE_LEN,
    MAX_SCHEDULE_VALUE,
    MAX_SYSCALLS_PER_THREAD,
    MAX_THREADS,
    OP_FIELDS,
    OPS,
    DataSpec,
    Program,
    Syscall,
)
from simkernel.config import BLOCK_SIZES, JBD2_MIN_JOURNAL_BLOCKS, MAX_FOLIO_SIZE, WRITE_PATHS, Config

__all__ = ["FILE_NAMES", "configs", "programs", "syscalls"]

T = TypeVar("T")

#: the file names ``programs()`` uses: the first ``files`` of these
FILE_NAMES: tuple[str, ...] = ("a", "b", "c", "d", "e", "f", "g", "h")
#: literal ``hex`` data is drawn only for buffers up to this many bytes, so programs stay readable
HEX_MAX_LEN = 64

_DEFAULT_THREADS = st.integers(1, 3)
_DEFAULT_FILES = st.integers(1, 3)


def _strategy(value: T | st.SearchStrategy[T]) -> st.SearchStrategy[T]:
    return value if isinstance(value, st.SearchStrategy) else st.just(value)


# --------------------------------------------------------------------------------------------------
# configs


def configs(
    *,
    block_size: int | st.SearchStrategy[int] | None = None,
    folio_blocks: int | st.SearchStrategy[int] | None = None,
    write_path: str | st.SearchStrategy[str] | None = None,
    inline_data: bool | st.SearchStrategy[bool] | None = None,
    delalloc: bool | st.SearchStrategy[bool] | None = None,
    journal: bool | st.SearchStrategy[bool] | None = None,
) -> st.SearchStrategy[Config]:
    """A strategy for valid :class:`~simkernel.config.Config` values.

    Each parameter is a fixed value, a strategy for values, or ``None`` for "draw any valid value":

    * ``block_size``: one of ``BLOCK_SIZES`` (default: drawn, shrinking toward 4096);
    * ``folio_blocks``: a power of two with ``block_size * folio_blocks <= MAX_FOLIO_SIZE``
      (default: drawn among those, shrinking toward 1);
    * ``write_path``: ``"ext4"`` or ``"iomap"`` (default: drawn, shrinking toward ``"ext4"``);
    * ``inline_data``: (default: drawn when ``write_path`` is ``"ext4"``, else ``False``);
    * ``delalloc``: (default: drawn, shrinking toward ``True``);
    * ``journal``: (default: drawn, shrinking toward ``False``); a journal gets the jbd2 minimum
      of ``JBD2_MIN_JOURNAL_BLOCKS`` blocks.

    ``device_blocks`` is drawn from the smallest size that fits the metadata plus 16 data blocks
    up to 1024 blocks more (capped at one block group); ``inodes`` from 16..64.
    A fixed combination the filesystem cannot have (``inline_data=True`` with ``"iomap"``, a folio
    over ``MAX_FOLIO_SIZE``) makes drawing raise :class:`~simkernel.errors.GeometryError`.
    """
    # the default first: sampled_from shrinks toward its first element
    bs_st = st.sampled_from((4096, 1024, 2048)) if block_size is None else _strategy(block_size)
    wp_st = st.sampled_from(WRITE_PATHS) if write_path is None else _strategy(write_path)
    da_st = st.sampled_from((True, False)) if delalloc is None else _strategy(delalloc)
    j_st = st.sampled_from((False, True)) if journal is None else _strategy(journal)
    assert set(BLOCK_SIZES) == {1024, 2048, 4096}, "update configs() for the new BLOCK_SIZES"

    @st.composite
    def build(draw: st.DrawFn) -> Config:
        bs = draw(bs_st)
        if folio_blocks is None:
            choices = [1 << k for k in range(8) if bs << k <= MAX_FOLIO_SIZE]
            fb = draw(st.sampled_from(choices))
        else:
            fb = draw(_strategy(folio_blocks))
        wp = draw(wp_st)
        if inline_data is None:
            inline = draw(st.sampled_from((False, True))) if wp == "ext4" else False
        else:
            inline = draw(_strategy(inline_data))
        has_journal = draw(j_st)
        inodes = draw(st.integers(16, 64))
        # mirrors Config.validate(): superblock area, 4 fixed blocks, inode table, root dir, journal;
        # drawing inside the valid range beats filtering (validate() below is the backstop)
        first_data_block = 1 if bs == 1024 else 0
        itable = -(-inodes * 256 // bs)
        journal_blocks = JBD2_MIN_JOURNAL_BLOCKS
        lo = first_data_block + 4 + itable + 1 + (journal_blocks if has_journal else 0) + 16
        hi = 8 * bs + first_data_block
        device_blocks = draw(st.integers(lo, min(hi, lo + 1024)))
        return Config(
            block_size=bs,
            folio_blocks=fb,
            device_blocks=device_blocks,
            inodes=inodes,
            inline_data=inline,
            write_path=wp,
            delalloc=draw(da_st),
            journal=has_journal,
            journal_blocks=journal_blocks,
        ).validate()

    return build()


# --------------------------------------------------------------------------------------------------
# syscalls


def _edge_ints(lo: int, hi: int, units: Sequence[int]) -> st.SearchStrategy[int]:
    """Integers in ``lo..hi``: small values, ``k * unit + {-1, 0, 1}`` for a unit in ``units``
    (k mostly small), or anywhere in the range."""

    @st.composite
    def near_edge(draw: st.DrawFn) -> int:
        unit = draw(st.sampled_from(units))
        top = hi // unit
        k = draw(st.one_of(st.integers(0, min(top, 16)), st.integers(0, top)))
        delta = draw(st.sampled_from((0, -1, 1)))
        return min(max(k * unit + delta, lo), hi)

    return st.one_of(st.integers(lo, min(hi, lo + 16)), near_edge(), st.integers(lo, hi))


def syscalls(
    files: Sequence[str],
    *,
    ops: Sequence[str] | None = None,
    config: Config | None = None,
    max_off: int = MAX_OFF,
    max_len: int = MAX_LEN,
    map_data: bool = True,
) -> st.SearchStrategy[Syscall]:
    """A strategy for single :class:`~fuzz.program.Syscall` values over ``files``.

    * ``files``: the program's file names (non-empty); every ``file`` (and ``map`` data file) is one
      of them.
    * ``ops``: the ops to draw from, a non-empty subset of ``OPS``; ``None`` means all of ``OPS``,
      *including* ``"remount"``, which is only valid in a single-thread program (``programs()``
      drops it by itself).
    * ``config``: the geometry whose ``block_size`` and folio size the offsets, lengths and sizes
      are biased toward; ``None`` means ``Config()``.
    * ``max_off``: the largest ``off``, ``size`` and map offset drawn, ``0..MAX_OFF``.
    * ``max_len``: the largest ``len`` drawn, ``1..MAX_LEN`` (fallocate lengths are ``>= 1``,
      other lengths ``>= 0``).
    * ``map_data``: whether ``pwrite`` may take ``{"map": ...}`` data (never drawn for ``mwrite``).

    ``data`` is mostly ``{"seed": n}``; ``{"hex": ...}`` for buffers of at most 64 bytes.
    Raises ``hypothesis.errors.InvalidArgument`` for arguments outside these ranges.
    """
    files = tuple(files)
    if not files:
        raise InvalidArgument("syscalls() needs at least one file name")
    op_list = tuple(OPS if ops is None else ops)
    if not op_list or any(op not in OP_FIELDS for op in op_list):
        raise InvalidArgument(f"ops={ops!r} must be a non-empty subset of {OPS}")
    if not 0 <= max_off <= MAX_OFF:
        raise InvalidArgument(f"max_off={max_off} must be in 0..{MAX_OFF}")
    if not 1 <= max_len <= MAX_LEN:
        raise InvalidArgument(f"max_len={max_len} must be in 1..{MAX_LEN}")
    geometry = Config() if config is None else config
    units = sorted({geometry.block_size, geometry.folio_size})
    offs = _edge_ints(0, max_off, units)
    lens = _edge_ints(0, max_len, units)
    lens_nonzero = _edge_ints(1, max_len, units)
    file_st = st.sampled_from(files)

    def data_for(op: str, length: int) -> st.SearchStrategy[DataSpec]:
        kinds: list[st.SearchStrategy[DataSpec]] = [st.integers(0, 2**32 - 1).map(DataSpec.from_seed)]
        if length <= HEX_MAX_LEN:
            kinds.append(st.binary(min_size=length, max_size=length).map(DataSpec.from_bytes))
        if op == "pwrite" and map_data:
            kinds.append(st.builds(DataSpec.mapped, file_st, offs))
        return st.one_of(kinds)

    @st.composite
    def build(draw: st.DrawFn) -> Syscall:
        op = draw(st.sampled_from(op_list))
        names = OP_FIELDS[op]
        kwargs: dict[str, Any] = {}
        if "file" in names:
            kwargs["file"] = draw(file_st)
        if op == "fallocate":
            kwargs["mode"] = draw(st.sampled_from(FALLOCATE_MODES))
        if "off" in names:
            kwargs["off"] = draw(offs)
        if "len" in names:
            kwargs["len"] = draw(lens_nonzero if op == "fallocate" else lens)
        if "size" in names:
            kwargs["size"] = draw(offs)
        if "data" in names:
            kwargs["data"] = draw(data_for(op, kwargs["len"]))
        return Syscall(op=op, **kwargs)

    return build()


# --------------------------------------------------------------------------------------------------
# programs


def programs(
    *,
    threads: int | st.SearchStrategy[int] = _DEFAULT_THREADS,
    files: int | st.SearchStrategy[int] = _DEFAULT_FILES,
    max_syscalls: int = 8,
    ops: Sequence[str] | None = None,
    config: Config | st.SearchStrategy[Config] | None = None,
    max_off: int = MAX_OFF,
    max_len: int = MAX_LEN,
    map_data: bool = True,
    schedule: bool = True,
    max_schedule: int = 64,
    variants: Sequence[str] | st.SearchStrategy[Sequence[str]] = (),
    actors: Sequence[str] | st.SearchStrategy[Sequence[str]] | None = None,
) -> st.SearchStrategy[Program]:
    """A strategy for valid :class:`~fuzz.program.Program` values (``expect`` None, ``meta`` empty).

    * ``threads``: number of user threads, an int or a strategy for ints, each in
      ``1..MAX_THREADS`` (default ``st.integers(1, 3)``).
    * ``files``: number of files, an int or a strategy for ints in ``1..MAX_FILES`` (default
      ``st.integers(1, 3)``); the files are named ``FILE_NAMES[:files]`` (``"a"``, ``"b"``, ...).
    * ``max_syscalls``: each thread has ``0..max_syscalls`` syscalls; ``0..MAX_SYSCALLS_PER_THREAD``.
    * ``ops``: the ops drawn, a non-empty subset of ``OPS``; ``None`` means all. ``"remount"`` is
      used only when the drawn program has one thread; if it is the only op, threads of
      multi-thread programs are empty.
    * ``config``: ``None`` draws one from :func:`configs`; a :class:`Config` is used as is (it must
      validate); a strategy is drawn from.
    * ``max_off``, ``max_len``, ``map_data``: as for :func:`syscalls`.
    * ``schedule``: ``True`` draws a schedule of ``0..max_schedule`` entries, mostly small
      (``0..threads + len(actors)``) and sometimes anywhere in ``0..MAX_SCHEDULE_VALUE``;
      ``False`` gives the empty schedule.
    * ``max_schedule``: ``0..MAX_SCHEDULE_LEN``.
    * ``variants``: the ``variants`` list, fixed (default: none) or a strategy for lists; the
      names must be syntactically valid and distinct.
    * ``actors``: the ``actors`` list, fixed, a strategy for lists, or ``None`` for all of
      ``ACTORS``; entries must be distinct members of ``ACTORS``.

    Raises ``hypothesis.errors.InvalidArgument`` for fixed arguments outside these ranges.
    """
    if isinstance(threads, int) and not 1 <= threads <= MAX_THREADS:
        raise InvalidArgument(f"threads={threads} must be in 1..{MAX_THREADS}")
    if isinstance(files, int) and not 1 <= files <= MAX_FILES:
        raise InvalidArgument(f"files={files} must be in 1..{MAX_FILES}")
    if not 0 <= max_syscalls <= MAX_SYSCALLS_PER_THREAD:
        raise InvalidArgument(f"max_syscalls={max_syscalls} must be in 0..{MAX_SYSCALLS_PER_THREAD}")
    if not 0 <= max_schedule <= MAX_SCHEDULE_LEN:
        raise InvalidArgument(f"max_schedule={max_schedule} must be in 0..{MAX_SCHEDULE_LEN}")
    op_list = tuple(OPS if ops is None else ops)
    if not op_list or any(op not in OP_FIELDS for op in op_list):
        raise InvalidArgument(f"ops={ops!r} must be a non-empty subset of {OPS}")
    if isinstance(config, Config):
        config.validate()
    if isinstance(actors, Sequence) and any(a not in ACTORS for a in actors):
        raise InvalidArgument(f"actors={actors!r} must be members of {ACTORS}")
    threads_st = _strategy(threads)
    files_st = _strategy(files)
    config_st = configs() if config is None else _strategy(config)
    variants_st: st.SearchStrategy[Sequence[str]] = (
        st.just(tuple(variants)) if isinstance(variants, Sequence) else variants
    )
    actors_st: st.SearchStrategy[Sequence[str]] = (
        st.just(ACTORS if actors is None else tuple(actors))
        if not isinstance(actors, st.SearchStrategy)
        else actors
    )

    @st.composite
    def build(draw: st.DrawFn) -> Program:
        n_threads = draw(threads_st)
        if not 1 <= n_threads <= MAX_THREADS:
            raise InvalidArgument(f"threads drew {n_threads}, not in 1..{MAX_THREADS}")
        n_files = draw(files_st)
        if not 1 <= n_files <= MAX_FILES:
            raise InvalidArgument(f"files drew {n_files}, not in 1..{MAX_FILES}")
        cfg = draw(config_st)
        names = FILE_NAMES[:n_files]
        usable = op_list if n_threads == 1 else tuple(op for op in op_list if op != "remount")
        body: list[tuple[Syscall, ...]] = []
        if usable:
            call_st = syscalls(
                names, ops=usable, config=cfg, max_off=max_off, max_len=max_len, map_data=map_data
            )
            for _ in range(n_threads):
                body.append(tuple(draw(st.lists(call_st, max_size=max_syscalls))))
        else:
            body = [()] * n_threads
        chosen_actors = tuple(draw(actors_st))
        sched: tuple[int, ...] = ()
        if schedule:
            small = st.integers(0, n_threads + len(chosen_actors))
            entry = st.one_of(small, st.integers(0, MAX_SCHEDULE_VALUE))
            sched = tuple(draw(st.lists(entry, max_size=max_schedule)))
        return Program(
            files=names,
            threads=tuple(body),
            schedule=sched,
            config=cfg,
            variants=tuple(draw(variants_st)),
            actors=chosen_actors,
        )

    return build()
