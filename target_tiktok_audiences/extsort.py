"""External sort and one-pass diff of fixed-width lowercase-hex digests.

A mirror by difference needs the stream's digests sorted and unique, and then compared with the
sorted snapshot of what TikTok last accepted. Both steps keep memory flat: at most `buffer_size`
digests are held while sorting, the rest wait in sorted runs on disk, and the merge and the
diff walk blocks of a bounded size.

Speed: the per-digest work happens in C (list.sort, str.join/split, set, filterfalse,
compress); Python code runs once per block, not once per digest. The module does no I/O beyond
the run files in the caller's private work dir, and imports no SDK.
"""

from __future__ import annotations

import heapq
import os
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain, compress, filterfalse, islice
from operator import lt, ne
from pathlib import Path
from typing import BinaryIO, TypeVar

T = TypeVar("T")

DEFAULT_BUFFER = 25_000
"""Digests held in memory before a run is spilled (about 3 MB of 64-character strings).

One buffer per contract of every mirror stream: at 100,000 the four buffers of a narrow
audience query held ~48 MB (peak RSS 116 MiB); at 25,000 the peak is ~70 MiB and the sort is
no slower (smaller sorts stay in the CPU cache; bench/PROFILE.md, issue 21)."""

FAN_IN = 32
"""Most runs merged at once: beyond that, groups of runs are first merged into longer runs, so
the merge's read blocks (at least 64 KiB per run) stay a few MB however long the input."""

BLOCK = 65_536
"""Most digests per block compared at once by the diff."""

_READ = 1 << 20  # bytes read from a run file at a time, spread over all runs
# Bytes per block read back from a sorted file: ~1,000 digests. Blocks of 1 MB (16,000 strings,
# ~2 MB of objects) were slower in the target: each one took fresh arenas from the OS and gave
# them back (bench/PROFILE.md, issue 21).
_READ_BACK = 1 << 16
# Digests joined per write of a run (~64 KiB): the pieces are reused by the allocator, while a
# whole run joined at once (1.6 MB, and its bytes) took fresh pages from the OS at every spill,
# ~2.6 µs a page on the benchmark's machine (bench/PROFILE.md, issue 21, third round).
_WRITE = 1_000

Block = Sequence[str]
DigestSink = Callable[[str], object]
BlockSink = Callable[[Block], object]


def _dedupe_sorted(block: list[str]) -> list[str]:
    """Drop adjacent duplicates of a sorted list, in C (a pairwise != feeds compress)."""
    if len(block) < 2:
        return block
    out = list(compress(block, map(ne, block, islice(block, 1, None))))
    out.append(block[-1])
    return out


def _write_lines(fh: BinaryIO, lines: Sequence[str], *, check: bool = False) -> None:
    """Write the lines, each followed by a newline, _WRITE at a time; `check`: raise ValueError
    if a line holds a newline (it would come back as two)."""
    for start in range(0, len(lines), _WRITE):
        piece = lines[start : start + _WRITE]
        text = "\n".join(piece)
        if check and text.count("\n") != len(piece) - 1:
            raise ValueError("a digest holds a newline")
        fh.write(text.encode("ascii"))
        fh.write(b"\n")


def _read_lines(fh: BinaryIO, size: int) -> Iterator[list[str]]:
    """Lists of the lines of a run file, read `size` bytes at a time (never empty lists)."""
    rest = ""
    while data := fh.read(size):
        lines = (rest + data.decode("ascii")).split("\n")
        rest = lines.pop()  # the part after the last newline: start of the next line
        if lines:
            yield lines


class ExternalSorter:
    """Collects digests; hands them back sorted and unique, holding at most `buffer_size`.

    Digests are non-empty ASCII strings without newlines (lowercase hex from identifiers.py);
    they sort as strings, which for fixed-width lowercase hex is the order of their bytes.
    Runs are sorted text files created 0600 in `workdir`, a private dir that the caller owns
    (e.g. spool.private_workdir()); `close()` removes them. More than FAN_IN runs are merged
    in passes of FAN_IN into longer runs before the final merge.
    """

    def __init__(self, workdir: Path, *, buffer_size: int = DEFAULT_BUFFER) -> None:
        if buffer_size < 2:
            raise ValueError("buffer_size must be at least 2")
        self._dir = workdir
        self._limit = buffer_size
        self._buf: list[str] = []
        self.append: Callable[[str], None] = self._buf.append
        """Add a digest without the size check: one C call, for callers adding one digest per
        record (MirrorDelivery.add); they call spill_if_full() at least every few thousand."""
        self.extend: Callable[[Iterable[str]], None] = self._buf.extend
        """Add many digests without the size check (then call spill_if_full())."""
        self._runs: list[Path] = []
        self._made = 0  # run files created (spilled or merged), for their names
        self._spilled = 0
        self.added = 0  # digests given, duplicates included

    @property
    def runs(self) -> int:
        """Runs spilled to disk so far."""
        return self._spilled

    def add(self, digest: str) -> None:
        buf = self._buf
        buf.append(digest)
        if len(buf) >= self._limit:
            self._spill()

    def spill_if_full(self) -> None:
        """Spill the buffer if it holds `buffer_size` digests or more (after append())."""
        if len(self._buf) >= self._limit:
            self._spill()

    def add_many(self, digests: Iterable[str]) -> None:
        limit = self._limit
        for chunk in chunked(digests, limit):
            room = limit - len(self._buf)
            self._buf += chunk[:room]
            if len(self._buf) >= limit:
                self._spill()  # a fresh buffer
                self._buf += chunk[room:]

    def _take_sorted(self) -> list[str]:
        run = self._buf
        self._empty()
        self.added += len(run)
        run.sort()
        if run and not run[0]:
            raise ValueError("a digest is empty")
        return run

    def _spill(self) -> None:
        # Duplicates stay in the run: the merge drops them all in one place.
        run = self._take_sorted()
        self._spilled += 1
        with self._new_run() as fh:
            _write_lines(fh, run, check=True)

    def _new_run(self) -> BinaryIO:
        path = self._dir / f"run-{self._made:05d}.txt"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._made += 1
        self._runs.append(path)
        return open(fd, "wb")

    def sorted_blocks(self) -> Iterator[list[str]]:
        """Blocks (non-empty lists) of the globally sorted unique digests; call once, at the end.

        Each merge round takes, from every run's current block, the digests up to the smallest
        block end: all of them are lower than anything still unread, so one C sort of those
        already-sorted pieces and dropping adjacent duplicates yields the next output block.
        """
        if not self._runs:  # everything fitted in memory: no disk at all
            if self._buf:
                yield _dedupe_sorted(self._take_sorted())
            return
        if self._buf:
            self._spill()
        while len(self._runs) > FAN_IN:  # a pass: the oldest FAN_IN runs become one
            group = self._runs[:FAN_IN]
            with self._new_run() as fh:  # appended: until the group is gone, close() sees all
                for block in _merge(group):
                    _write_lines(fh, block)
            del self._runs[:FAN_IN]
            for path in group:
                path.unlink()
        yield from _merge(self._runs)

    def sorted_unique(self) -> Iterator[str]:
        """The globally sorted unique digests, one by one."""
        return chain.from_iterable(self.sorted_blocks())

    def close(self) -> None:
        for path in self._runs:
            path.unlink(missing_ok=True)
        self._runs = []
        self._empty()

    def _empty(self) -> None:
        self._buf = []
        self.append = self._buf.append
        self.extend = self._buf.extend


def _merge(runs: Sequence[Path]) -> Iterator[list[str]]:
    """Blocks of the sorted unique digests of sorted run files (see sorted_blocks)."""
    size = max(64 * 1024, _READ // len(runs))
    files = [open(path, "rb") for path in runs]  # noqa: SIM115 (closed below)
    try:
        heads: list[tuple[list[str], int, Iterator[list[str]]]] = []
        for fh in files:
            reader = _read_lines(fh, size)
            first = next(reader, None)
            if first is not None:
                heads.append((first, 0, reader))
        last = None
        while heads:
            bound = min(head[-1] for head, _, _ in heads)
            out: list[str] = []
            nxt: list[tuple[list[str], int, Iterator[list[str]]]] = []
            for head, pos, reader in heads:
                cut = bisect_right(head, bound, pos)
                out += head[pos:cut] if pos or cut < len(head) else head
                if cut < len(head):
                    nxt.append((head, cut, reader))
                elif (more := next(reader, None)) is not None:
                    nxt.append((more, 0, reader))
            heads = nxt
            out.sort()  # k sorted pieces: timsort merges them in O(n log k)
            out = _dedupe_sorted(out)
            # A run keeps its duplicates: the copy of the last block's last digest (the bound)
            # that starts a run's next read comes out again here.
            if out and out[0] == last:
                del out[0]
            if out:
                last = out[-1]
                yield out
    finally:
        for fh in files:
            fh.close()


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Lists of up to `size` consecutive items (blocks of digests, batches of users)."""
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def blocks(digests: Iterable[str], size: int = BLOCK) -> Iterator[list[str]]:
    """Cut an iterator of sorted digests into blocks for diff()."""
    return chunked(digests, size)


@dataclass(frozen=True)
class DiffCounts:
    """Unique digests: added + unchanged == total (the new set), removed left the old set."""

    added: int
    removed: int
    unchanged: int
    total: int


def diff(
    new: Iterable[Block],
    old: Iterable[Block],
    added: DigestSink,
    removed: DigestSink,
    keep: BlockSink | None = None,
) -> DiffCounts:
    """Compare two sorted unique digest streams (as blocks) in one pass.

    `added(d)` gets each digest of new not in old, `removed(d)` each of old not in new, both in
    ascending order; `keep(block)` (optional) gets every block of the new set in order, so the
    next snapshot is written in the same pass (e.g. SnapshotWriter.write_block).
    For each new block, the old digests up to its last one form a window; equal lists are
    counted and skipped, otherwise two set look-ups (in C) give what was added and removed.
    """
    n_added = n_removed = n_unchanged = 0
    old_iter = iter(old)
    obuf: Block = []
    opos = 0
    old_done = False
    for nblock in new:
        if not nblock:
            continue
        if keep is not None:
            keep(nblock)
        for start in range(0, len(nblock), BLOCK):
            nb = nblock[start : start + BLOCK] if len(nblock) > BLOCK else nblock
            hi = nb[-1]
            window: list[str] = []
            while not old_done:
                if opos >= len(obuf):
                    more = next(old_iter, None)
                    if more is None:
                        old_done = True
                        break
                    obuf, opos = more, 0
                    continue
                if obuf[-1] <= hi:
                    window += obuf[opos:]
                    opos = len(obuf)
                    continue
                cut = bisect_right(obuf, hi, opos)
                window += obuf[opos:cut]
                opos = cut
                break
            if window == nb:
                n_unchanged += len(nb)
                continue
            old_set = set(window)
            new_only = list(filterfalse(old_set.__contains__, nb))
            gone = list(filterfalse(set(nb).__contains__, window)) if window else []
            n_added += len(new_only)
            n_removed += len(gone)
            n_unchanged += len(nb) - len(new_only)
            for digest in new_only:
                added(digest)
            for digest in gone:
                removed(digest)
    # Whatever is left of old is beyond the last new digest: removed.
    rest = chain([obuf[opos:]], old_iter) if not old_done else iter(())
    for block in rest:
        n_removed += len(block)
        for digest in block:
            removed(digest)
    return DiffCounts(n_added, n_removed, n_unchanged, n_added + n_unchanged)


def write_sorted(sorted_blocks: Iterable[Block], path: Path) -> int:
    """Write sorted blocks to a private (0600) file, one digest a line; returns the count.

    Raises ValueError unless the digests strictly ascend: a snapshot is then packed from the
    file's text without a string per digest, trusting this check (SnapshotStore.write_lines).
    The check is one linear pass in C (pairwise `<`), no copy.
    """
    count = 0
    last = ""
    with open(path, "wb") as fh:  # a private file the caller made (tempfile.mkstemp: 0600)
        for block in sorted_blocks:
            if not block:
                continue
            if block[0] <= last or not all(map(lt, block, islice(block, 1, None))):
                raise ValueError("digests must be written in strictly ascending order")
            _write_lines(fh, block)
            count += len(block)
            last = block[-1]
    return count


def read_blocks(path: Path, size: int = _READ_BACK) -> Iterator[list[str]]:
    """Blocks of the lines of a file written by write_sorted (memory: about `size` bytes)."""
    with open(path, "rb") as fh:
        yield from _read_lines(fh, size)


def union_blocks(a: Iterable[Block], b: Iterable[Block], size: int = BLOCK) -> Iterator[list[str]]:
    """The sorted union of two sorted unique digest streams, in blocks (duplicates dropped)."""
    merged = heapq.merge(chain.from_iterable(a), chain.from_iterable(b))
    last = None
    out: list[str] = []
    for digest in merged:
        if digest != last:
            out.append(digest)
            last = digest
            if len(out) >= size:
                yield out
                out = []
    if out:
        yield out
