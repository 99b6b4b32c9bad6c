"""What the file mirror (mirror.py) and the partner mirror (partner_mirror.py) share: the
stream's unique digests sorted on disk, the change against the snapshot, and the guards."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from target_tiktok_audiences.client import (
    AudienceAPI,
)
from target_tiktok_audiences.convergence import Baseline, BlockSource, Tracker, plan, union
from target_tiktok_audiences.deliveries.base import Delivery, HeldBack
from target_tiktok_audiences.extsort import (
    DiffCounts,
    ExternalSorter,
    read_blocks,
    write_sorted,
)
from target_tiktok_audiences.modes import MirrorStrategy
from target_tiktok_audiences.report import AudienceReport, in_days
from target_tiktok_audiences.snapshot import Reason, SnapshotKey
from target_tiktok_audiences.spool import Chunk, Spool

DAY = 86_400.0


@dataclass
class Change:
    """What one run sends to one audience: ascending digests (or entries) to add and remove,
    in private files already cut for upload."""

    added: list[Chunk]
    removed: list[Chunk]
    counts: DiffCounts

    def digests(self) -> Iterator[list[str]]:
        """Every digest of the change, ascending: what becomes in flight."""
        return union(chunk_lines(self.added), chunk_lines(self.removed))

    def discard(self) -> None:
        for chunk in (*self.added, *self.removed):
            chunk.path.unlink(missing_ok=True)


def chunk_lines(chunks: Sequence[Chunk]) -> Iterator[list[str]]:
    for chunk in chunks:
        yield from read_blocks(chunk.path)


@dataclass(eq=False)
class SortedSets(Delivery):
    """The stream's unique digests sorted on disk (memory stays flat), and the guards."""

    _sorters: dict[str, ExternalSorter] = field(default_factory=dict, init=False)
    _seen: int = field(default=0, init=False)
    _spools: int = field(default=0, init=False)
    _full: dict[str, list[Chunk]] = field(default_factory=dict, init=False)  # contract -> files
    # contract -> its sorted set, read by the routines until close_stage
    _sets: dict[str, Chunk] = field(default_factory=dict, init=False)

    def _sorter(self, name: str) -> ExternalSorter:
        sorter = self._sorters.get(name)
        if sorter is None:
            workdir = Path(
                tempfile.mkdtemp(prefix=f"sort-{name.lower()}-", dir=self.runtime.workdir)
            )
            sorter = self._sorters[name] = ExternalSorter(workdir)
        return sorter

    def flush(self) -> None:
        """Sorted runs spill by themselves; nothing is sent before the end of the set."""

    @property
    def pending(self) -> bool:
        return self._seen > 0

    def _take_sorted(self, name: str) -> tuple[Path, int]:
        """The unique sorted digests of a sorter in a private file, and their count."""
        fd, tmp = tempfile.mkstemp(
            prefix=f"sorted-{name.lower()}-", suffix=".txt", dir=self.runtime.workdir
        )  # .txt: uploaded as it is when it fits in one file
        os.close(fd)
        path = Path(tmp)
        sorter = self._sorters.pop(name, None)
        if sorter is None:
            return path, 0
        try:
            return path, write_sorted(sorter.sorted_blocks(), path)
        finally:
            sorter.close()

    def discard(self) -> None:
        for sorter in self._sorters.values():
            sorter.close()
        self._sorters.clear()
        self._seen = 0
        self.close_stage()

    def close_stage(self) -> None:
        for chunks in (list(self._sets.values()), *self._full.values()):
            for chunk in chunks:  # a sorted set uploaded as it is is in both: missing_ok
                chunk.path.unlink(missing_ok=True)
        self._sets.clear()
        self._full.clear()

    @property
    def by_difference(self) -> bool:
        return self.runtime.settings.mirror_strategy is MirrorStrategy.DIFF

    def tracker(self, advertiser_id: str, audience_id: str, name: str, contract: str) -> Tracker:
        return Tracker(
            self.runtime.snapshots,
            SnapshotKey(advertiser_id, audience_id, contract),
            SnapshotKey.for_name(advertiser_id, name, contract),
            self._lines(contract),
        )

    def create_tracker(self, advertiser_id: str, name: str, contract: str) -> Tracker:
        """Records a create before its audience has an id: under the audience's name."""
        key = SnapshotKey.for_name(advertiser_id, name, contract)
        return Tracker(self.runtime.snapshots, key, key, self._lines(contract))

    def _lines(self, contract: str) -> Path | None:
        """The contract's sorted file, which its stream reads (the set the trackers record)."""
        whole = self._sets.get(contract)
        return None if whole is None else whole.path

    def baseline(self, tracker: Tracker, entry: AudienceReport) -> Baseline:
        """What TikTok holds as far as the snapshot knows; a damaged one is said, not trusted."""
        if not self.by_difference:
            return Baseline(None, None, None)
        base = tracker.baseline()
        why = base.why_full
        if why is not None and why.reason is not Reason.MISSING:
            self.runtime.logger.warning(
                "Audience '%s' in advertiser %s: %s; it is not trusted, the audience is "
                "uploaded in full.",
                entry.audience_name,
                entry.advertiser_id,
                why.detail,
            )
        elif why is not None:
            entry.mirror_reason = why.detail
            if not self.runtime.snapshots.read_only:
                entry.mirror_reason += "; if you moved snapshot_url, move its folder too"
        return base

    def spool(self, kind: str, name: str) -> Spool:
        # Unique per spool: the changes of every audience of a commit live until it ends.
        self._spools += 1
        stem = f"{id(self):x}-{self._spools}-{kind}-{name.lower()}"
        return Spool(self.runtime.workdir, stem, self.runtime.settings.file_max_ids)

    def change(self, name: str, stream: BlockSource, base: Baseline) -> Change:
        """The change that makes TikTok hold the stream, spooled (convergence.plan)."""
        added, removed = self.spool("add", name), self.spool("remove", name)
        try:
            counts = plan(
                stream, base.held_blocks, base.in_flight_source(), added.write, removed.write
            )
        except BaseException:
            added.discard()
            removed.discard()
            raise
        return Change(added.take(), removed.take(), counts)

    def guard_partial(self) -> None:
        """A stream replicated incrementally is not the whole set: the audience stays as it is."""
        if self.partial_stream:
            raise HeldBack(
                f"stream '{self.report.stream}' is replicated incrementally "
                f"({self.partial_stream}), so it is not the whole set a mirror needs",
                "select it with full-table replication, or give it sync_mode append or incremental",
                "the audience was left unchanged",
            )

    def guard_removals(self, change: DiffCounts, size: int) -> None:
        """max_removal_percent: a broken query or a partial extract never empties an audience.

        Counted net of what is added: a change of rules swaps digests without losing users.
        """
        self.guard_shrink(change.removed - change.added, size)

    def guard_shrink(self, removing: int, size: int) -> None:
        limit = self.runtime.settings.max_removal_percent
        if limit >= 100 or size <= 0 or removing * 100 <= limit * size:
            return
        share = removing * 100 / size
        raise HeldBack(
            f"this run would remove {removing:,} of its {size:,} users ({share:.0f}%), more "
            f"than max_removal_percent ({limit:g}%)",
            "check the source query; if the removal is meant, raise max_removal_percent for "
            "one run",
            "the audience was left unchanged",
        )

    def resync_due(self, api: AudienceAPI, base: Baseline) -> bool:
        """resync_days, measured on TikTok's clock (as TikTok's own day is)."""
        days = self.runtime.settings.resync_days
        if not days:
            return False
        if base.held is None:
            # A create never confirmed (base.empty): when the audience was last uploaded in
            # full is unknown, and edits made in TikTok since would never be corrected.
            return base.empty
        age = base.held.header.full_age_seconds(api.now())
        return age is None or age >= days * DAY

    def note_next_resync(
        self, api: AudienceAPI, base: Baseline | None, entry: AudienceReport, full: bool
    ) -> None:
        days = self.runtime.settings.resync_days
        if not days or not self.by_difference:
            return
        if full or base is None or base.held is None:
            entry.next_resync = in_days(days)
            return
        age = base.held.header.full_age_seconds(api.now()) or 0.0
        left = max(days * DAY - age, 0.0) / DAY
        entry.next_resync = in_days(left) if left else "at the next run TikTok allows"
