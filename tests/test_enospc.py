"""ENOSPC paths of the ext4 allocator on a nearly full, journalled filesystem.

Blocks freed in a transaction that has not committed are counted free at once but cannot be
allocated until the commit (ext4_mb_clear_bb() / ext4_free_data_in_buddy()); the allocation paths
that hit that window commit the transaction and retry, as Linux's do. A data-integrity writeback
never loses data that its delalloc reservation promised space for.
"""

from __future__ import annotations

from typing import Any

from fuzz.program import load_program
from fuzz.runner import Execution, execute

B = 4096
#: 1065 blocks of which the journal takes 1024: about 33 blocks for data (2 of them s_resv_clusters)
DEVICE_BLOCKS = 1065


def run(calls: list[dict[str, Any]]) -> Execution:
    prog = load_program(
        {
            "format": "blkfuzz-program/1",
            "config": {
                "block_size": B,
                "folio_blocks": 1,
                "journal": True,
                "device_blocks": DEVICE_BLOCKS,
                "inline_data": False,
            },
            "files": ["a", "b"],
            "threads": [calls],
        }
    )
    return execute(prog)


def results(ex: Execution) -> list[tuple[str, int | None]]:
    return [(op.op, op.result) for op in ex.history.ops]


#: fill most of the data area, make it durable, then free it again in the running transaction
FILL_AND_FREE = [
    {"op": "pwrite", "file": "a", "off": 0, "len": 28 * B, "data": {"seed": 1}},
    {"op": "fsync", "file": "a"},
    {"op": "truncate", "file": "a", "size": 0},
]


def test_an_allocation_in_blocks_freed_by_the_running_transaction_commits_and_retries() -> None:
    """ext4_should_retry_alloc(): the fallocate's first try finds only blocks the truncate freed
    (not allocatable before its commit); it forces the commit and the retry succeeds."""
    ex = run([*FILL_AND_FREE, {"op": "fallocate", "file": "b", "mode": "alloc", "off": 0, "len": 28 * B}])
    assert results(ex)[-1] == ("fallocate", 0)
    assert len(ex.files["b"]) == 28 * B


def test_delalloc_writeback_in_blocks_freed_by_the_running_transaction_commits_and_retries() -> None:
    """ext4_do_writepages(): the reservation counted the freed blocks, the allocation at
    writeback cannot use them yet (transient ENOSPC); it commits and retries, so fsync succeeds
    and nothing is reported lost."""
    write = {"op": "pwrite", "file": "b", "off": 0, "len": 28 * B, "data": {"seed": 2}}
    ex = run([*FILL_AND_FREE, write, {"op": "fsync", "file": "b"}])
    assert results(ex)[-2:] == [("pwrite", 28 * B), ("fsync", 0)]
    assert not ex.messages
    assert len(ex.files["b"]) == 28 * B


def test_an_extent_tree_block_for_delalloc_writeback_comes_from_the_reservation() -> None:
    """ext4_ext_insert_extent() passes EXT4_MB_DELALLOC_RESERVED to the tree block it allocates:
    the fifth extent of ``b`` needs one while free - dirty clusters is 0 (a fallocate took all
    the unreserved space, and the extent's own reservation is released only after the insert),
    and the writeback still succeeds."""
    calls: list[dict[str, Any]] = [
        {"op": "pwrite", "file": "b", "off": i * B, "len": B, "data": {"seed": i + 1}} for i in (0, 2, 4, 6)
    ]
    calls += [
        {"op": "pwrite", "file": "b", "off": 8 * B, "len": 6 * B, "data": {"seed": 9}},
        {"op": "fallocate", "file": "a", "mode": "alloc", "off": 0, "len": 32 * B},
        {"op": "fsync", "file": "b"},
    ]
    ex = run(calls)
    assert not ex.reports
    assert results(ex)[-2:] == [("fallocate", -28), ("fsync", 0)]
    assert not ex.messages
    assert len(ex.files["b"]) == 14 * B


def test_a_large_folio_mapped_in_part_at_enospc_is_written_up_to_where_mapping_stopped() -> None:
    """mpage_submit_partial_folio() (6.16): writeback of one 32 KiB folio gets 7 of its 8 blocks
    before a transient ENOSPC (the rest of the space was freed by the running transaction). The
    mapped part is written at once and i_disksize covers it; the writepages retry, after the
    commit, maps and writes the last block, and fsync returns with all of it durable in every
    crash state. Variant ``partial-folio-not-submitted`` reverts the fix: the io_end converts
    blocks nobody wrote and the mapping commits with i_size 0 -- e2fsck's "extent past EOF"."""
    from fuzz.verdict import judge

    def program(variants: list[str]) -> Any:
        return load_program(
            {
                "format": "blkfuzz-program/1",
                "config": {
                    "block_size": B,
                    "folio_blocks": 8,
                    "journal": True,
                    "device_blocks": DEVICE_BLOCKS,
                    "inline_data": False,
                },
                "variants": variants,
                "files": ["a", "b"],
                "threads": [
                    [
                        {"op": "pwrite", "file": "a", "off": 0, "len": 26 * B, "data": {"seed": 1}},
                        {"op": "fsync", "file": "a"},
                        {"op": "truncate", "file": "a", "size": 0},
                        {"op": "pwrite", "file": "b", "off": 0, "len": 8 * B, "data": {"seed": 2}},
                        {"op": "fsync", "file": "b"},
                    ]
                ],
            }
        )

    fixed = judge(program([]))
    assert fixed.clean, [f.title for f in fixed.findings]
    buggy = judge(program(["partial-folio-not-submitted"]))
    assert [f.title for f in buggy.findings] == ["crash state fails fsck: extent-past-eof"]
