"""How a mirrored audience converges to its stream, whatever happened to the last run.

The one place that decides what a mirror by difference sends and what it records. Per
(audience, contract) the snapshot store may hold two sets (see snapshot.py):

- held (`.snap`): what TikTok holds, as far as the target knows;
- in flight (`.inflight`): digests of a change that was sent but not confirmed, whose state at
  TikTok is unknown (the answer was lost, the run was killed, the snapshot write failed).

    no snapshot ──create / REPLACE accepted──▶ held ──record U──▶ held + in flight U
        ▲                                         ▲                       │ send the change
        │ unreadable (full upload)                └──write held, drop U───┘ (accepted)
                                                     any fault: held + U stays for the next run

A run with stream S, held P and in flight U sends

    add    = (S - P) | (S & U)    every digest in flight that the stream wants is APPENDed
    remove = (P | U) - S          every digest in flight the stream does not want is REMOVEd

APPEND and REMOVE are idempotent at TikTok, so whether or not TikTok applied the lost change,
after this run it holds S. Before sending, the new U' = add | remove is recorded (it contains U, so
nothing in flight is forgotten); after TikTok accepted everything, S becomes the held set and
U' is dropped. A create that was not confirmed is recorded under the audience's name (held
nothing, in flight the created set), so the run that finds the audience by name converges too.
When the budget let only the REMOVE go (budget.py: removals first) and TikTok accepted it, its
digests are known gone: held becomes P - remove and in flight the unsent add, so the next run
spends no operation on that REMOVE again.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import chain
from pathlib import Path

from target_tiktok_audiences.extsort import DiffCounts, DigestSink, blocks, diff
from target_tiktok_audiences.snapshot import (
    Kind,
    Reason,
    Snapshot,
    SnapshotKey,
    SnapshotStore,
    Unusable,
)

Blocks = Iterable[Sequence[str]]
BlockSource = Callable[[], Blocks]  # each call streams the set again, ascending


def _merged(a: Blocks, b: Blocks) -> Iterator[tuple[str, bool, bool]]:
    """(digest, in a, in b) over two ascending unique streams."""
    ia, ib = chain.from_iterable(a), chain.from_iterable(b)
    for digest, tags in _grouped(heapq.merge(((d, 1) for d in ia), ((d, 2) for d in ib))):
        yield digest, 1 in tags, 2 in tags


def _grouped(items: Iterator[tuple[str, int]]) -> Iterator[tuple[str, set[int]]]:
    current: str | None = None
    tags: set[int] = set()
    for digest, tag in items:
        if digest != current:
            if current is not None:
                yield current, tags
            current, tags = digest, set()
        tags.add(tag)
    if current is not None:
        yield current, tags


def without(a: Blocks, b: Blocks) -> Iterator[list[str]]:
    """a minus b, ascending blocks."""
    return blocks(d for d, in_a, in_b in _merged(a, b) if in_a and not in_b)


def union(a: Blocks, b: Blocks) -> Iterator[list[str]]:
    """a or b (the union), ascending blocks."""
    return blocks(d for d, _, _ in _merged(a, b))


def plan(
    stream: BlockSource,
    held: BlockSource,
    in_flight: BlockSource | None,
    add: DigestSink,
    remove: DigestSink,
) -> DiffCounts:
    """Send `add` what must be APPENDed and `remove` what must be REMOVEd (both ascending).

    Counts: added/removed as sent, unchanged = stream digests certainly held already.
    """
    if in_flight is None:
        return diff(stream(), held(), add, remove)
    counts = diff(stream(), without(held(), in_flight()), add, lambda _: None)
    gone = diff(stream(), union(held(), in_flight()), lambda _: None, remove)
    return DiffCounts(counts.added, gone.removed, counts.unchanged, counts.total)


@dataclass
class Baseline:
    """What a run starts from for one audience and contract."""

    held: Snapshot | None  # None: nothing known (first run, lost or unreadable snapshot)
    in_flight: Snapshot | None
    why_full: Unusable | None  # why there is no held set, when there is none
    empty: bool = False  # held is known to be empty (a create that was not confirmed)

    @property
    def known(self) -> bool:
        return self.held is not None or self.empty

    @property
    def held_count(self) -> int:
        return self.held.count if self.held is not None else 0

    def held_blocks(self) -> Blocks:
        return self.held.blocks() if self.held is not None else ()

    def in_flight_source(self) -> BlockSource | None:
        flight = self.in_flight
        return flight.blocks if flight is not None and flight.count else None


class Tracker:
    """Reads and records one audience's sets in the store, in the order the protocol needs."""

    def __init__(
        self,
        store: SnapshotStore,
        key: SnapshotKey,
        name_key: SnapshotKey,
        lines: Path | None = None,
    ) -> None:
        self.store = store
        self.key = key
        self.name_key = name_key  # where a create that was not confirmed is recorded
        # The sorted file (extsort.write_sorted) the stream given to record_create and confirm
        # reads: their records are packed from its text (SnapshotStore.write_lines, issue 21).
        self.lines = lines

    def _write_stream(
        self,
        key: SnapshotKey,
        stream: BlockSource,
        kind: Kind,
        *,
        full_at: str = "",
        source: object = None,
    ) -> None:
        if self.lines is None:
            self.store.write(key, stream(), kind=kind, full_at=full_at, source=source)
        else:
            self.store.write_lines(key, self.lines, kind=kind, full_at=full_at, source=source)

    def baseline(self) -> Baseline:
        held = self.store.read(self.key)
        flight = self.store.read(self.key, Kind.IN_FLIGHT)
        if isinstance(flight, Unusable) and flight.reason is not Reason.MISSING:
            # Which digests are in flight is unknown: nothing held can be trusted.
            return Baseline(None, None, flight)
        in_flight = flight if isinstance(flight, Snapshot) else None
        if isinstance(held, Snapshot):
            return Baseline(held, in_flight, None)
        created = self.store.read(self.name_key, Kind.IN_FLIGHT)
        if held.reason is Reason.MISSING and isinstance(created, Snapshot):
            # Created by a run that never confirmed it: it held nothing before that create.
            return Baseline(None, created if in_flight is None else in_flight, None, empty=True)
        return Baseline(None, None, held)

    def record_create(self, stream: BlockSource) -> None:
        """Before a create: the set it carries, under the audience's name."""
        if self.store.read_only:  # a dry run sends nothing, so nothing is in flight
            return
        self._write_stream(self.name_key, stream, Kind.IN_FLIGHT, source=stream)

    def record_in_flight(self, change: Blocks) -> None:
        """Before a change is sent: its digests (their state at TikTok becomes unknown)."""
        if self.store.read_only:
            return
        self.store.write(self.key, change, kind=Kind.IN_FLIGHT)

    def confirm_removal(self, base: Baseline, removed: BlockSource, unsent: BlockSource) -> None:
        """Only the REMOVE was sent, and accepted: held P - removed; the unsent add in flight.

        The snapshot is written first: a fault in between leaves the larger in-flight set of
        the run, which is still safe.
        """
        if self.store.read_only or base.held is None:
            return  # without a held set the whole change stays in flight
        self.store.write(
            self.key,
            without(base.held_blocks(), removed()),
            kind=Kind.SNAPSHOT,
            full_at=base.held.header.full_at,
        )
        self.store.write(self.key, unsent(), kind=Kind.IN_FLIGHT)

    def confirm(
        self, stream: BlockSource, *, full: bool, base: Baseline | None, now: datetime
    ) -> None:
        """TikTok accepted everything: S is held; nothing is in flight any more."""
        if self.store.read_only:
            return
        # `now` is TikTok's clock: the resync is measured on it, like TikTok's own day.
        full_at = "" if full or base is None or base.held is None else base.held.header.full_at
        full_at = full_at or now.isoformat(timespec="seconds")
        # After a create, the set recorded in flight is the snapshot's: copied, not re-read.
        if not self.store.copy_written(stream, self.key, kind=Kind.SNAPSHOT, full_at=full_at):
            self._write_stream(self.key, stream, Kind.SNAPSHOT, full_at=full_at)
        self.store.remove(self.key, Kind.IN_FLIGHT)
        self.store.remove(self.name_key, Kind.IN_FLIGHT)
