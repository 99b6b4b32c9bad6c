"""External sort and one-pass diff against set oracles."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from target_tiktok_audiences.extsort import (
    FAN_IN,
    DiffCounts,
    ExternalSorter,
    blocks,
    diff,
    read_blocks,
    write_sorted,
)

# Short hex strings keep collisions (duplicates, shared members) frequent.
digests = st.lists(st.text(alphabet="0123456789abcdef", min_size=4, max_size=4), max_size=300)


def sha(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


@settings(max_examples=150, deadline=None)
@given(items=digests, buffer_size=st.integers(min_value=2, max_value=40))
def test_sorted_unique_equals_sorted_set(
    tmp_path_factory: pytest.TempPathFactory, items: list[str], buffer_size: int
) -> None:
    workdir = tmp_path_factory.mktemp("runs")
    sorter = ExternalSorter(workdir, buffer_size=buffer_size)
    third = len(items) // 3
    for item in items[:third]:
        sorter.add(item)
    for i, item in enumerate(items[third : 2 * third]):  # MirrorDelivery.add's way
        sorter.append(item)
        if i % 7 == 6:
            sorter.spill_if_full()
    sorter.add_many(items[2 * third :])
    assert list(sorter.sorted_unique()) == sorted(set(items))
    assert sorter.added == len(items)
    sorter.close()
    assert list(workdir.iterdir()) == []


@settings(max_examples=150, deadline=None)
@given(new=digests, old=digests, size=st.integers(min_value=1, max_value=50))
def test_diff_matches_set_oracle(new: list[str], old: list[str], size: int) -> None:
    new_sorted, old_sorted = sorted(set(new)), sorted(set(old))
    added: list[str] = []
    removed: list[str] = []
    kept: list[str] = []
    counts = diff(
        blocks(new_sorted, size),
        blocks(old_sorted, size),
        added.append,
        removed.append,
        kept.extend,
    )
    assert added == sorted(set(new) - set(old))
    assert removed == sorted(set(old) - set(new))
    assert kept == new_sorted
    assert counts == DiffCounts(
        added=len(added),
        removed=len(removed),
        unchanged=len(set(new) & set(old)),
        total=len(new_sorted),
    )


def test_spilled_runs_are_private_and_merged_with_duplicates(tmp_path: Path) -> None:
    sorter = ExternalSorter(tmp_path, buffer_size=1000)
    values = [sha(i % 2500) for i in range(10_000)]  # each digest four times, across runs
    sorter.add_many(values)
    assert sorter.runs == 10
    modes = {stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes == {0o600}
    assert list(sorter.sorted_unique()) == sorted({sha(i) for i in range(2500)})


def test_appended_digests_spill_when_asked(tmp_path: Path) -> None:
    sorter = ExternalSorter(tmp_path, buffer_size=1000)
    for i in range(2_500):
        sorter.append(sha(i))
        if i % 100 == 99:
            sorter.spill_if_full()
    assert sorter.runs == 2  # at 1,000 and 2,000: never more than 100 past buffer_size
    assert list(sorter.sorted_unique()) == sorted(sha(i) for i in range(2_500))
    assert sorter.added == 2_500


def test_diff_of_sorter_output_against_snapshot_order(tmp_path: Path) -> None:
    sorter = ExternalSorter(tmp_path, buffer_size=500)
    sorter.add_many(sha(i) for i in range(100, 3100))  # new: 100..3099, some twice
    sorter.add_many(sha(i) for i in range(100, 200))
    old = sorted(sha(i) for i in range(3000))  # old: 0..2999
    added: list[str] = []
    removed: list[str] = []
    counts = diff(sorter.sorted_blocks(), blocks(old, 256), added.append, removed.append)
    assert added == sorted(sha(i) for i in range(3000, 3100))
    assert removed == sorted(sha(i) for i in range(100))
    assert counts == DiffCounts(added=100, removed=100, unchanged=2900, total=3000)


def test_empty_sides() -> None:
    added: list[str] = []
    removed: list[str] = []
    counts = diff([], [["aa", "bb"], ["cc"]], added.append, removed.append)
    assert (added, removed, counts) == ([], ["aa", "bb", "cc"], DiffCounts(0, 3, 0, 0))
    counts = diff([["aa"]], [], added.append, removed.append)
    assert (added, counts) == (["aa"], DiffCounts(1, 0, 0, 1))


def test_a_digest_with_a_newline_is_refused(tmp_path: Path) -> None:
    sorter = ExternalSorter(tmp_path, buffer_size=2)
    sorter.add("ab")
    with pytest.raises(ValueError, match=r"^a digest holds a newline$"):
        sorter.add("c\nd")


def test_a_newline_far_into_a_run_is_refused(tmp_path: Path) -> None:
    """Runs are written in pieces: a newline in any piece is found, not only the first."""
    sorter = ExternalSorter(tmp_path, buffer_size=5_000)
    sorter.add_many(sha(i) for i in range(4_999))
    with pytest.raises(ValueError, match=r"^a digest holds a newline$"):
        sorter.add("f" * 63 + "\n")  # sorts last: in the run's fifth piece of 1,000


def test_sorted_file_is_one_digest_a_line(tmp_path: Path) -> None:
    """Written in pieces, the sorted file is byte for byte the digests each followed by a
    newline, whatever the run and block boundaries, and reads back digest by digest."""
    runs = tmp_path / "runs"
    runs.mkdir()
    sorter = ExternalSorter(runs, buffer_size=2_500)
    values = [sha(i % 7_001) for i in range(9_000)]  # 3 runs and a buffer; duplicates
    sorter.add_many(values)
    path = tmp_path / "sorted.txt"
    assert write_sorted(sorter.sorted_blocks(), path) == 7_001
    expected = sorted(set(values))
    assert path.read_bytes() == "".join(d + "\n" for d in expected).encode("ascii")
    assert [d for block in read_blocks(path, size=4_096) for d in block] == expected
    sorter.close()


@pytest.mark.parametrize(
    "blocks",
    [
        [["b", "a"]],  # descending within a block
        [["a", "c"], ["b"]],  # descending across blocks
        [["a", "b"], ["b", "c"]],  # repeated across blocks
        [["a", "b", "b", "c"]],  # repeated within a block
    ],
)
def test_the_sorted_file_refuses_what_does_not_ascend(
    tmp_path: Path, blocks: list[list[str]]
) -> None:
    """A snapshot is packed from the sorted file trusting its order: write_sorted checks it."""
    with pytest.raises(ValueError, match=r"^digests must be written in strictly ascending order$"):
        write_sorted(blocks, tmp_path / "sorted.txt")


def test_more_runs_than_fan_in_are_merged_in_passes(tmp_path: Path) -> None:
    sorter = ExternalSorter(tmp_path, buffer_size=100)
    sorter.add_many(sha(i % 4000) for i in range(FAN_IN * 2 * 100 + 50))  # with duplicates
    assert sorter.runs == 2 * FAN_IN  # and 50 in the buffer: the 65th run
    merged = sorter.sorted_blocks()
    first = next(merged)
    # Two passes of FAN_IN runs left three runs for the final merge (memory: ~3 read blocks).
    assert len(list(tmp_path.iterdir())) == 3
    assert first + [d for block in merged for d in block] == sorted({sha(i) for i in range(4000)})
    sorter.close()
    assert list(tmp_path.iterdir()) == []


def test_a_duplicate_cut_by_a_read_of_its_run_is_merged_once(tmp_path: Path) -> None:
    """A run keeps its duplicates; one whose two copies fall on either side of the merge's
    read of that run (the first copy ends a read, the second starts the next) is still one
    digest of the sorted set, not one at the end of a block and again at the next one's
    start."""
    size = max(64 * 1024, (1 << 20) // 2)  # _merge's bytes per read with two runs
    whole = size // 65  # lines the first read holds whole
    first = sorted(sha(i) for i in range(20_000))
    second = [sha(i) for i in range(20_000, 40_000)]
    sorter = ExternalSorter(tmp_path / "runs", buffer_size=20_001)
    (tmp_path / "runs").mkdir()
    sorter.add_many([*first, first[whole - 1]])  # its copies: lines whole - 1 and whole
    sorter.add_many([*second, second[0]])
    assert sorter.runs == 2
    expected = sorted({*first, *second})
    path = tmp_path / "sorted.txt"
    assert write_sorted(sorter.sorted_blocks(), path) == len(expected)
    assert [d for block in read_blocks(path) for d in block] == expected
    sorter.close()
