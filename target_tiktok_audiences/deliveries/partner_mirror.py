"""mirror into a partner audience (PartnerMirrorDelivery), with the sorted sets and guards it
shares with the file mirror (sortedsets.py).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from target_tiktok_audiences import timescale
from target_tiktok_audiences.client import (
    AudienceAPI,
    UserBatch,
    partner_audience_name,
)
from target_tiktok_audiences.convergence import Baseline, BlockSource, Tracker
from target_tiktok_audiences.deliveries.sortedsets import Change, SortedSets, chunk_lines
from target_tiktok_audiences.deliveries.staging import Routine, Skipped
from target_tiktok_audiences.extsort import (
    DiffCounts,
    ExternalSorter,
    chunked,
    read_blocks,
)
from target_tiktok_audiences.report import AudienceReport
from target_tiktok_audiences.snapshot import SnapshotCorrupt
from target_tiktok_audiences.spool import Chunk

PARTNER_SET = "PARTNER"  # the snapshot key's contract for a partner audience's (contract, digest)
# A partner snapshot holds (contract, digest) pairs as one fixed-width hex entry each: a tag
# for the contract, then the digest padded to 64 characters.
_TAGS = {
    "EMAIL_SHA256": "01",
    "PHONE_SHA256": "02",
    "IDFA_SHA256": "03",
    "IDFA_MD5": "04",
    "GAID_SHA256": "05",
    "GAID_MD5": "06",
}
_CONTRACTS = {tag: contract for contract, tag in _TAGS.items()}
_MATCH_CHUNK = 200_000  # new entries held in memory at once while finding their users


def pair_entry(contract: str, digest: str) -> str:
    return _TAGS[contract] + digest.ljust(64, "0")


def split_entry(entry: str) -> tuple[str, str]:
    contract = _CONTRACTS[entry[:2]]
    width = 32 if contract.endswith("MD5") else 64
    return contract, entry[2 : 2 + width]


@dataclass(eq=False)
class PartnerMirrorDelivery(SortedSets):
    """mirror into a partner audience: users added and deleted by difference (Segment API).

    The snapshot holds the audience's (contract, digest) pairs, so a pair that left (a user
    gone, other normalisation rules, a new column) is deleted whatever the reason. Each user's
    digests are spooled as one line; users with a new pair are added with all their
    identifiers. Everything is sorted and matched on disk: memory does not grow with the set.
    """

    _users: Path | None = field(default=None, init=False)
    _fh: TextIO | None = field(default=None, init=False)

    def add(self, ids: dict[str, str], removed: bool, user: str | None = None) -> None:
        if removed or not ids:
            return
        self._seen += 1
        sorter = self._sorters.get(PARTNER_SET) or self._sorter(PARTNER_SET)
        for contract, digest in ids.items():
            sorter.add(pair_entry(contract, digest))
        if self._fh is None:
            fd, name = tempfile.mkstemp(prefix="users-", dir=self.runtime.workdir)
            self._users = Path(name)
            self._fh = open(fd, "w", encoding="ascii", buffering=1 << 20)  # noqa: SIM115
        self._fh.write(",".join(f"{c}={d}" for c, d in ids.items()) + "\n")

    def discard(self) -> None:
        super().discard()
        self._drop_users()

    def _drop_users(self) -> None:
        fh, users = self._fh, self._users
        self._fh = self._users = None
        if fh is not None:
            fh.close()
        if users is not None:
            users.unlink(missing_ok=True)

    def stage(self) -> Iterator[Routine]:
        """Partner audiences spend no update operations: each is delivered as it comes."""
        if self._fh is None or self._users is None:
            return iter(())
        self._fh.close()
        path, count = self._take_sorted(PARTNER_SET)
        try:
            for advertiser_id in self.runtime.settings.advertiser_ids:
                with contextlib.suppress(Skipped):  # deferred: its lock could not be taken
                    self._commit_one(advertiser_id, path, count)
        finally:
            path.unlink(missing_ok=True)
            self._drop_users()
            self._seen = 0
        return iter(())

    def _commit_one(self, advertiser_id: str, path: Path, count: int) -> None:
        contracts = list(self.contracts)
        name = partner_audience_name(self.mapping.audience_name)
        entry = self.new_entry(advertiser_id, name, contracts)
        entry.identifiers_unique = count

        def stream() -> Iterator[list[str]]:
            return read_blocks(path)

        with self.delivering(entry) as api:
            self.guard_partial()
            audience_id = self.existing_audience(api, advertiser_id, name, "partner")
            if audience_id is None:
                base = self._create(api, advertiser_id, name, stream, entry)
                audience_id = entry.audience_id or ""
            else:
                entry.audience_id = audience_id
            tracker = self.tracker(advertiser_id, audience_id, name, PARTNER_SET)
            if not entry.created:
                base = self.baseline(tracker, entry)
            self._deliver(api, tracker, stream, base, entry)
            entry.status = "delivered"
            self.read_back(api, advertiser_id, entry)

    def _create(
        self,
        api: AudienceAPI,
        advertiser_id: str,
        name: str,
        stream: BlockSource,
        entry: AudienceReport,
    ) -> Baseline:
        tracker = self.create_tracker(advertiser_id, name, PARTNER_SET)
        if self.by_difference:
            tracker.record_create(stream)  # users mapped before a kill are found next run

        def create() -> str:
            return api.create_partner_audience(advertiser_id, name)

        entry.audience_id, entry.created = self.runtime.directory.find_or_create(
            api, advertiser_id, name, "partner", create
        )
        return Baseline(None, None, None, empty=True)

    def _deliver(
        self,
        api: AudienceAPI,
        tracker: Tracker,
        stream: BlockSource,
        base: Baseline,
        entry: AudienceReport,
    ) -> None:
        if base.known:
            try:
                change = self.change(PARTNER_SET, stream, base)
            except SnapshotCorrupt as exc:
                self.runtime.logger.warning(
                    "Audience '%s' in advertiser %s: %s; it is not trusted, every user is "
                    "added again.",
                    entry.audience_name,
                    entry.advertiser_id,
                    exc,
                )
                base = Baseline(None, None, None)
        if not base.known:
            change = self._everything(stream)
            entry.mirror, entry.mirror_reason = "full", entry.mirror_reason or "no snapshot"
            entry.note = (
                "no snapshot for this partner audience: every user was added, but users that "
                "left the stream before this run cannot be found to delete (partner audiences "
                "have no REPLACE); from now on the snapshot keeps it exact."
            )
        else:
            entry.mirror = "full" if entry.created else "diff"
            entry.mirror_reason = (
                "new audience" if entry.created else "snapshot of what TikTok holds"
            )
        try:
            self.guard_removals(change.counts, base.held_count)
            if self.by_difference and (change.added or change.removed):
                tracker.record_in_flight(change.digests())
            entry.identifiers_unchanged = change.counts.unchanged
            self._send_deletes(api, entry, change.removed)
            self._send_adds(api, entry, change.added)
        finally:
            change.discard()
        if self.by_difference:
            tracker.confirm(stream, full=not base.known, base=base, now=api.now())
        entry.action = (
            "+".join(
                a for a, n in (("add", entry.users_added), ("delete", entry.users_removed)) if n
            )
            or "NONE"
        )

    def _everything(self, stream: BlockSource) -> Change:
        """No snapshot: every pair counts as new (nothing can be found to delete)."""
        added = self.spool("add", PARTNER_SET)
        total = 0
        try:
            for block in stream():
                added.write_block(block)
                total += len(block)
        except BaseException:
            added.discard()
            raise
        return Change(added.take(), [], DiffCounts(total, 0, 0, total))

    def ready_by(self, entry: AudienceReport) -> float | None:
        if not self.is_new(entry):
            return None
        return timescale.monotonic() + self.runtime.settings.partner_warmup_seconds

    def _batches(self, users: Iterable[dict[str, str]]) -> Iterator[list[dict[str, str]]]:
        return chunked(users, self.runtime.settings.segment_batch_size)

    def _send_deletes(self, api: AudienceAPI, entry: AudienceReport, removed: list[Chunk]) -> None:
        """Each pair that left is deleted on its own (a user's other pairs may stay)."""
        contracts = list(self.contracts)
        pairs = (split_entry(e) for e in _flat(chunk_lines(removed)))
        for pair_batch in self._batches({c: d} for c, d in pairs):
            schema = sorted({c for user in pair_batch for c in user} | set(contracts))
            api.map_users(
                entry.advertiser_id,
                entry.audience_id or "",
                UserBatch("delete", schema, pair_batch),
            )
            entry.batches += 1
            entry.users_removed += len(pair_batch)
            entry.identifiers_removed += len(pair_batch)

    def _send_adds(self, api: AudienceAPI, entry: AudienceReport, added: list[Chunk]) -> None:
        """Users with a new pair, each once, with all of their identifiers."""
        if not added:
            return
        users = self._users_with(added)
        try:
            ready_by = self.ready_by(entry)
            contracts = list(self.contracts)
            for batch in self._batches(users.sorted_unique_users()):
                api.map_users(
                    entry.advertiser_id,
                    entry.audience_id or "",
                    UserBatch("add", contracts, batch),
                    ready=ready_by,
                )
                entry.batches += 1
                entry.users_added += len(batch)
                entry.identifiers_uploaded += sum(len(u) for u in batch)
        finally:
            users.close()

    def _users_with(self, added: list[Chunk]) -> _UserSet:
        """The users owning a new pair, sorted on disk: new pairs are held _MATCH_CHUNK at a
        time and the users file is read once per chunk, so memory stays flat."""
        assert self._users is not None
        workdir = Path(tempfile.mkdtemp(prefix="sort-users-", dir=self.runtime.workdir))
        out = _UserSet(ExternalSorter(workdir))
        chunk: set[str] = set()
        for entry in _flat(chunk_lines(added)):
            chunk.add(entry)
            if len(chunk) >= _MATCH_CHUNK:
                out.match(self._users, chunk)
                chunk = set()
        if chunk:
            out.match(self._users, chunk)
        return out


@dataclass
class _UserSet:
    sorter: ExternalSorter

    def match(self, users: Path, entries: set[str]) -> None:
        with users.open(encoding="ascii") as fh:
            for line in fh:
                line = line.rstrip("\n")
                pairs = [p.split("=", 1) for p in line.split(",")]
                if any(pair_entry(c, d) in entries for c, d in pairs):
                    self.sorter.add(line)

    def sorted_unique_users(self) -> Iterator[dict[str, str]]:
        for line in self.sorter.sorted_unique():
            yield dict(p.split("=", 1) for p in line.split(","))

    def close(self) -> None:
        self.sorter.close()


def _flat(blocks: Iterable[Sequence[str]]) -> Iterator[str]:
    for block in blocks:
        yield from block
