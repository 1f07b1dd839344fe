"""Random program generation for the fuzzing engine: fast, seeded, no Hypothesis at run time.

Every generated value is a valid ``blkfuzz-program/1`` program (the same format the corpus, the
minimizer and hand-written reproducers use). Generation is driven by one :class:`random.Random`,
so the same seed gives the same programs on every machine.

Swarm testing
    Each generated program first draws a :class:`Swarm`: a random subset of the syscall kinds and
    of the background actors, plus a machine geometry. Only those ops are generated and only those
    actors are listed in the program's ``actors``, so the schedule can only choose them. Leaving
    features *out* is what swarm testing is about: a program without ``pread`` or ``drop_caches``
    reaches states a program that does everything at once rarely reaches (Groce, Zhang, Eide, Chen,
    Regehr, "Swarm Testing", ISSTA 2012).

Sizes
    Offsets, lengths and truncate sizes come from :func:`edge_int`: small values, multiples of the
    configuration's block size and folio size plus or minus one byte, log-uniform magnitudes (which
    favour small buffers without naming any size), and uniform values within a few folios -- or,
    relative to the program itself, on or a byte either side of an offset an earlier syscall on the
    same file starts or ends at or a size it set (fsx chooses offsets relative to the file size for
    the same reason). Nothing here knows any particular bug: the only numbers that matter are the
    geometry's and the program's own.

Schedules
    A generated program gets a *schedule plan* from :mod:`fuzz.mutate` (PCT-style priority change
    points plus a few background actions, see there); the engine turns the plan into the numeric
    ``schedule`` when it runs the program.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from fuzz.program import (
    ACTORS,
    FALLOCATE_MODES,
    OP_FIELDS,
    OPS,
    DataSpec,
    Program,
    Syscall,
)
from simkernel.config import BLOCK_SIZES, JBD2_MIN_JOURNAL_BLOCKS, MAX_FOLIO_SIZE, WRITE_PATHS, Config
from simkernel.errors import BlkfuzzError
from simkernel.fs.ext4.ext4 import EXT4_MIN_INLINE_DATA_SIZE
from simkernel.fs.ext4.ondisk import inline_capacity

__all__ = [
    "FILE_NAMES",
    "Generator",
    "Swarm",
    "add_to_pools",
    "config_for_variants",
    "edge_int",
    "near",
    "offset_pools",
    "uniform_schedule",
]

#: file names used by generated programs: the first ``n`` of these
FILE_NAMES: tuple[str, ...] = ("a", "b", "c")
#: ops that change file contents or the page cache (a swarm keeps at least one of them)
WRITING_OPS: tuple[str, ...] = ("pwrite", "mwrite", "truncate", "fallocate")
#: literal hex data only for buffers this short (readable programs)
HEX_MAX_LEN = 16
#: generated offsets stay within this many folios (plus an occasional far one)
SPAN_FOLIOS = 16
#: share of offsets and lengths taken relative to offsets the program already uses on the file
POOL_SHARE = 0.4
#: share of mwrites past the size their thread has given the file that first grow it with a
#: truncate, as fsx's mapped write does (domapwrite: "if (size > file_size) ftruncate(fd, size)"):
#: a store past EOF only gets SIGBUS; the rest are left to race with other threads' growth
MWRITE_GROW_SHARE = 0.5


@dataclass(frozen=True)
class Swarm:
    """One swarm configuration: which ops may be generated, which actors the schedule may use, the
    machine, and the program's shape."""

    ops: tuple[str, ...]
    actors: tuple[str, ...]
    config: Config
    threads: int
    files: int


# --------------------------------------------------------------------------------------------------
# numbers


def edge_int(rng: random.Random, lo: int, hi: int, units: Sequence[int]) -> int:
    """An integer in ``lo..hi`` biased toward where buffered-I/O decisions change.

    * small: ``lo .. lo+16``;
    * an edge: ``k * unit + delta`` for a unit in ``units`` (block size, folio size), ``k`` mostly
      small, ``delta`` in ``{-1, 0, +1}`` (sometimes a few bytes);
    * log-uniform over ``lo..hi`` (every magnitude equally likely, so small buffers are common);
    * uniform over ``lo..hi``.
    """
    if hi <= lo:
        return lo
    r = rng.random()
    if r < 0.2:
        value = lo + rng.randint(0, 16)
    elif r < 0.65:
        unit = rng.choice(units)
        top = max(hi // unit, 0)
        k = rng.randint(0, min(top, 8)) if rng.random() < 0.8 else rng.randint(0, top)
        delta = rng.choice((-1, 0, 0, 1)) if rng.random() < 0.85 else rng.randint(-8, 8)
        value = k * unit + delta
    elif r < 0.9:
        span = hi - lo + 1
        value = lo + int(math.exp(rng.uniform(0.0, math.log(span)))) - 1
    else:
        value = rng.randint(lo, hi)
    return min(max(value, lo), hi)


def uniform_schedule(rng: random.Random, threads: int, actors: int, length: int = 64) -> tuple[int, ...]:
    """The plain-random baseline's schedule: ``0..length`` decisions, each uniform over
    ``0..threads + actors`` (no notion of change points or preemption bounds)."""
    n = rng.randint(0, length)
    return tuple(rng.randint(0, threads + actors) for _ in range(n))


# --------------------------------------------------------------------------------------------------
# offsets the program already uses


def add_to_pools(pools: dict[str, list[int]], call: Syscall) -> None:
    """Record the offsets ``call`` makes interesting on its file: where it starts and ends, or the
    size it sets."""
    if call.file is None:
        return
    pool = pools.setdefault(call.file, [])
    for v in (call.off, None if call.off is None or call.len is None else call.off + call.len, call.size):
        if v is not None and v not in pool:
            pool.append(v)


def near(rng: random.Random, value: int) -> int:
    """``value`` itself or one byte either side (on it twice as often): a range that ends exactly
    where another starts, overlaps it by a byte, or leaves a one-byte gap."""
    return value + rng.choice((-1, 0, 0, 1))


def offset_pools(program: Program) -> dict[str, list[int]]:
    """Per file, the offsets its syscalls start and end at and the sizes they set (in program
    order): fsx picks offsets relative to the file's size for the same reason -- file system
    decisions depend on where an operation lies relative to EOF and to other operations' ranges."""
    pools: dict[str, list[int]] = {}
    for _, _, call in program.iter_syscalls():
        add_to_pools(pools, call)
    return pools


def _track_size(sizes: dict[str, int], call: Syscall) -> None:
    """The file size ``call`` leaves, as far as its own thread knows (growth only, except truncate)."""
    if call.file is None:
        return
    size = sizes.get(call.file, 0)
    if call.op == "truncate" and call.size is not None:
        size = call.size
    elif call.op == "pwrite" and call.off is not None and call.len:
        size = max(size, call.off + call.len)
    elif call.op == "fallocate" and call.mode in ("alloc", "zero_range") and call.off is not None:
        size = max(size, call.off + (call.len or 0))
    sizes[call.file] = size


# --------------------------------------------------------------------------------------------------
# configs


def _min_device_blocks(block_size: int, inodes: int, journal: bool) -> int:
    first_data_block = 1 if block_size == 1024 else 0
    itable = -(-inodes * 256 // block_size)
    return first_data_block + 4 + itable + 1 + (JBD2_MIN_JOURNAL_BLOCKS if journal else 0) + 16


def config_for_variants(config: Config, requires: dict[str, object]) -> Config:
    """``config`` with the variants' required fields forced, and what those fields rule out
    (inline data on the iomap path) switched off."""
    cfg = config.with_(**requires) if requires else config
    if cfg.write_path != "ext4" and cfg.inline_data:
        cfg = cfg.with_(inline_data=False)
    return cfg


def random_config(rng: random.Random, requires: dict[str, object] | None = None) -> Config:
    """A valid machine: block size, folio size, write path, inline data, delalloc, journal, and a
    device between the smallest that fits and a few hundred blocks more."""
    requires = requires or {}
    bs = rng.choice((4096, 4096, 1024, 2048))
    assert bs in BLOCK_SIZES
    max_shift = int(math.log2(MAX_FOLIO_SIZE // bs))
    fb = 1 << min(max_shift, rng.choice((0, 0, 0, 1, 2, 3)))
    wp = rng.choice(WRITE_PATHS)
    inline = wp == "ext4" and rng.random() < 0.5
    journal = rng.random() < 0.2
    if "journal" in requires:  # the device must be sized for the journal a variant requires
        journal = bool(requires["journal"])
    inodes = 32
    lo = _min_device_blocks(bs, inodes, journal)
    hi = 8 * bs + (1 if bs == 1024 else 0)
    device = min(hi, lo + rng.choice((0, 16, 64, 256, 512)) + rng.randint(0, 32))
    cfg = Config(
        block_size=bs,
        folio_blocks=fb,
        device_blocks=max(device, 256) if rng.random() < 0.5 else device,
        inodes=inodes,
        inline_data=inline,
        write_path=wp,
        delalloc=rng.random() < 0.75,
        journal=journal,
        journal_blocks=JBD2_MIN_JOURNAL_BLOCKS,
    )
    cfg = config_for_variants(cfg, dict(requires))
    try:
        return cfg.validate()
    except BlkfuzzError:
        fallback = config_for_variants(Config(), dict(requires))
        need = _min_device_blocks(fallback.block_size, fallback.inodes, fallback.journal)
        return fallback.with_(device_blocks=max(fallback.device_blocks, need + 64)).validate()


# --------------------------------------------------------------------------------------------------
# the generator


class Generator:
    """Random programs for one campaign.

    ``variants``: the variants every program names (their ``requires`` fix parts of the config);
    ``swarm``: draw a random subset of ops and actors per program (``False``: all of them, the
    plain-random baseline); ``max_calls``: syscalls per program (at least 1, default 3..10).
    """

    def __init__(
        self,
        variants: Sequence[str] = (),
        *,
        swarm: bool = True,
        min_calls: int = 3,
        max_calls: int = 10,
        max_threads: int = 3,
        max_files: int = 3,
    ) -> None:
        from simkernel.variants import resolve_variants

        self.variants = tuple(variants)
        self.requires: dict[str, object] = {}
        for v in resolve_variants(self.variants):
            self.requires.update(v.requires)
        self.swarm_on = swarm
        self.min_calls = min_calls
        self.max_calls = max_calls
        self.max_threads = max_threads
        self.max_files = min(max_files, len(FILE_NAMES))

    # -- swarm ----------------------------------------------------------------------------------------

    def swarm(self, rng: random.Random) -> Swarm:
        """Draw one swarm configuration (see the module docstring)."""
        threads = rng.randint(1, self.max_threads)
        files = rng.randint(1, self.max_files)
        config = random_config(rng, self.requires)
        if not self.swarm_on:
            ops = tuple(op for op in OPS if op != "remount" or threads == 1)
            return Swarm(ops, ACTORS, config, threads, files)
        candidates = [op for op in OPS if op != "remount" or threads == 1]
        chosen = [op for op in candidates if rng.random() < 0.5]
        if not any(op in WRITING_OPS for op in chosen):
            chosen.append(rng.choice(WRITING_OPS))
        actors = tuple(a for a in ACTORS if rng.random() < 0.5)
        return Swarm(tuple(op for op in OPS if op in chosen), actors, config, threads, files)

    # -- pieces ---------------------------------------------------------------------------------------

    @staticmethod
    def units(config: Config) -> tuple[int, ...]:
        """The sizes where the configuration's buffered-I/O decisions change: the block and the
        folio, and with inline data the inline limits -- i_block's 60 bytes and the inode's whole
        inline capacity, where ext4 leaves the inline path for blocks (ext4_prepare_inline_data)."""
        units = {config.block_size, config.folio_size}
        if config.inline_data:
            units |= {EXT4_MIN_INLINE_DATA_SIZE, inline_capacity()}
        return tuple(sorted(units))

    def offset(self, rng: random.Random, config: Config, pool: Sequence[int] = ()) -> int:
        """An offset: from ``pool`` (offsets the program already uses: ends of earlier writes,
        file sizes) one byte either side or on it, or an edge of the geometry (:func:`edge_int`)."""
        if pool and rng.random() < POOL_SHARE:
            return max(0, min(near(rng, rng.choice(pool)), 2**24))
        span = SPAN_FOLIOS * config.folio_size
        hi = span if rng.random() < 0.95 else min(config.device_size * 2, 2**24)
        return edge_int(rng, 0, hi, self.units(config))

    def length(
        self, rng: random.Random, config: Config, lo: int = 0, off: int = 0, pool: Sequence[int] = ()
    ) -> int:
        """A length: one that ends at (or a byte either side of) an offset in ``pool`` past
        ``off``, or an edge of the geometry."""
        hi = SPAN_FOLIOS * config.folio_size // 2
        ahead = [v - off for v in pool if v - off > lo]
        if ahead and rng.random() < POOL_SHARE:
            return max(lo, min(near(rng, rng.choice(ahead)), 2 * hi))
        return edge_int(rng, lo, hi, self.units(config))

    def data(
        self, rng: random.Random, op: str, length: int, files: Sequence[str], config: Config
    ) -> DataSpec:
        r = rng.random()
        if op == "pwrite" and r < 0.2:
            return DataSpec.mapped(rng.choice(files), self.offset(rng, config))
        if length <= HEX_MAX_LEN and r < 0.35:
            return DataSpec.from_bytes(bytes(rng.randint(1, 255) for _ in range(length)))
        return DataSpec.from_seed(rng.randint(0, 2**32 - 1))

    def syscall(
        self,
        rng: random.Random,
        op: str,
        files: Sequence[str],
        config: Config,
        pools: dict[str, list[int]] | None = None,
    ) -> Syscall:
        """One syscall of kind ``op`` over ``files``; ``pools[file]`` are offsets the program
        already uses on that file (see :func:`offset_pools`)."""
        fields = OP_FIELDS[op]
        file = rng.choice(files) if "file" in fields else None
        pool = (pools or {}).get(file or "", [])
        if op in ("pwrite", "mwrite"):
            off = self.offset(rng, config, pool)
            length = self.length(rng, config, off=off, pool=pool)
            return Syscall(op, file=file, off=off, len=length, data=self.data(rng, op, length, files, config))
        if op == "pread":
            off = self.offset(rng, config, pool)
            return Syscall(op, file=file, off=off, len=self.length(rng, config, off=off, pool=pool))
        if op == "truncate":
            return Syscall(op, file=file, size=self.offset(rng, config, pool))
        if op == "fallocate":
            off = self.offset(rng, config, pool)
            return Syscall(
                op,
                file=file,
                mode=rng.choice(FALLOCATE_MODES),
                off=off,
                len=self.length(rng, config, lo=1, off=off, pool=pool),
            )
        return Syscall(op, file=file)

    # -- programs -------------------------------------------------------------------------------------

    def program(self, rng: random.Random, swarm: Swarm | None = None) -> Program:
        """A fresh program (empty schedule; the engine plans one) for ``swarm`` (drawn if None)."""
        sw = swarm if swarm is not None else self.swarm(rng)
        files = FILE_NAMES[: sw.files]
        n_calls = rng.randint(max(self.min_calls, 1), max(self.max_calls, self.min_calls, 1))
        threads: list[list[Syscall]] = [[] for _ in range(sw.threads)]
        ops = [op for op in sw.ops if op != "remount" or sw.threads == 1] or ["pwrite"]
        pools: dict[str, list[int]] = {}
        # per thread: the size each file has after that thread's own syscalls so far
        sizes: list[dict[str, int]] = [{} for _ in range(sw.threads)]
        for i in range(n_calls):
            # every thread gets at least one syscall, the rest land anywhere
            t = i if i < sw.threads else rng.randrange(sw.threads)
            call = self.syscall(rng, rng.choice(ops), files, sw.config, pools)
            if call.op == "mwrite" and call.file is not None and call.off is not None and call.len:
                end = call.off + call.len
                if end > sizes[t].get(call.file, 0) and rng.random() < MWRITE_GROW_SHARE:
                    grow = Syscall("truncate", file=call.file, size=end)
                    threads[t].append(grow)
                    add_to_pools(pools, grow)
                    _track_size(sizes[t], grow)
            threads[t].append(call)
            add_to_pools(pools, call)
            _track_size(sizes[t], call)
        return Program(
            files=files,
            threads=tuple(tuple(t) for t in threads),
            schedule=(),
            config=sw.config,
            variants=self.variants,
            actors=sw.actors,
        )
