"""mirror: keep an audience equal to the stream.

By difference (mirror_strategy diff, the default): the stream's digests are sorted on disk and
compared in one pass with the snapshot of what TikTok holds and the change still in flight
(convergence.py decides what is sent and recorded); only the change goes out (APPEND/REMOVE
for a customer-file audience, add/delete for a partner audience). With no usable snapshot, or
every `resync_days`, a customer-file audience is created or REPLACEd in full. Guards leave an
audience unchanged when the stream is not a whole set or would remove too much of it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from target_tiktok_audiences import timescale
from target_tiktok_audiences.client import (
    MIN_AUDIENCE_SIZE,
    REFUSED_REPLACE_PROCESSING,
    AudienceAPI,
    AudienceStatus,
    NewAudience,
    RefusedError,
    UserBatch,
    partner_audience_name,
)
from target_tiktok_audiences.convergence import Baseline, BlockSource, Tracker, plan, union
from target_tiktok_audiences.deliveries.base import Delivery, HeldBack, small_set_note
from target_tiktok_audiences.deliveries.staging import Ask, Routine, Skipped
from target_tiktok_audiences.extsort import (
    DiffCounts,
    ExternalSorter,
    chunked,
    read_blocks,
    write_sorted,
)
from target_tiktok_audiences.modes import MirrorStrategy
from target_tiktok_audiences.report import AudienceReport, in_days
from target_tiktok_audiences.snapshot import Reason, SnapshotCorrupt, SnapshotKey
from target_tiktok_audiences.spool import Chunk, Spool

DAY = 86_400.0
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


@dataclass
class _Change:
    """What one run sends to one audience: ascending digests (or entries) to add and remove,
    in private files already cut for upload."""

    added: list[Chunk]
    removed: list[Chunk]
    counts: DiffCounts

    def digests(self) -> Iterator[list[str]]:
        """Every digest of the change, ascending: what becomes in flight."""
        return union(_lines(self.added), _lines(self.removed))

    def discard(self) -> None:
        for chunk in (*self.added, *self.removed):
            chunk.path.unlink(missing_ok=True)


def _lines(chunks: Sequence[Chunk]) -> Iterator[list[str]]:
    for chunk in chunks:
        yield from read_blocks(chunk.path)


@dataclass(eq=False)
class _SortedSets(Delivery):
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

    def change(self, name: str, stream: BlockSource, base: Baseline) -> _Change:
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
        return _Change(added.take(), removed.take(), counts)

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


@dataclass(eq=False)
class MirrorDelivery(_SortedSets):
    """mirror into customer-file audiences: one audience per contract."""

    def add(self, ids: dict[str, str], removed: bool, user: str | None = None) -> None:
        if removed:  # a mirror set simply leaves removed rows out
            return
        self._seen += 1
        sorters = self._sorters
        for contract, digest in ids.items():
            # append: one C call per digest; the sorters' size check runs every 1,024 users.
            (sorters.get(contract) or self._sorter(contract)).append(digest)
        if not self._seen & 0x3FF:
            for sorter in sorters.values():
                sorter.spill_if_full()

    takes_columns = True

    def add_column(self, contract: str, digests: list[str], users: int) -> None:
        self._seen += users
        if digests:
            sorter = self._sorters.get(contract) or self._sorter(contract)
            sorter.extend(digests)
            sorter.spill_if_full()

    def stage(self) -> Iterator[Routine]:
        contracts = list(self.contracts)
        self._seen = 0
        for contract in contracts:
            path, count = self._take_sorted(contract)
            self._sets[contract] = Chunk(path, count)
            for advertiser_id in self.runtime.settings.advertiser_ids:
                yield self._commit_one(advertiser_id, contract, path, count, contracts)

    def _commit_one(
        self, advertiser_id: str, contract: str, path: Path, count: int, contracts: list[str]
    ) -> Routine:
        name = self.mapping.audience_name_for(contract, contracts)
        entry = self.new_entry(advertiser_id, name, [contract])
        entry.identifiers_unique = count
        if count == 0 and not self.partial_stream:
            entry.status = "skipped"
            entry.note = (
                "no identifiers for this audience in this run; it was left unchanged "
                "(TikTok cannot replace an audience with an empty set)."
            )
            return
        if count < MIN_AUDIENCE_SIZE:
            entry.note = small_set_note(count, "unique ")
        with self.delivering(entry) as api:
            self.guard_partial()
            yield from self._deliver(api, advertiser_id, name, contract, path, entry)
            entry.status = "delivered"
            self.read_back(api, advertiser_id, entry)

    def _deliver(
        self,
        api: AudienceAPI,
        advertiser_id: str,
        name: str,
        contract: str,
        path: Path,
        entry: AudienceReport,
    ) -> Generator[Ask, None, None]:
        def stream() -> Iterator[list[str]]:
            return read_blocks(path)

        audience_id = self.existing_audience(api, advertiser_id, name, contract)
        if audience_id is None:
            self._create(api, advertiser_id, name, contract, stream, entry)
            return
        entry.audience_id = audience_id
        tracker = self.tracker(advertiser_id, audience_id, name, contract)
        base = self.baseline(tracker, entry)
        if not base.known:
            yield from self._replace(api, tracker, stream, base, entry, why=entry.mirror_reason)
            return
        try:
            change = self.change(contract, stream, base)
        except SnapshotCorrupt as exc:  # found only once the body was read through
            self.runtime.logger.warning(
                "Audience '%s' in advertiser %s: %s; it is not trusted, the audience is "
                "uploaded in full.",
                name,
                advertiser_id,
                exc,
            )
            yield from self._replace(
                api, tracker, stream, Baseline(None, None, None), entry, why=str(exc)
            )
            return
        try:
            self.guard_removals(change.counts, base.held_count)
            if self.resync_due(api, base):
                resynced = yield from self._resync(api, tracker, stream, base, change, entry)
                if resynced:
                    return
            yield from self._send_change(api, tracker, stream, base, change, entry)
        finally:
            change.discard()

    def _create(
        self,
        api: AudienceAPI,
        advertiser_id: str,
        name: str,
        contract: str,
        stream: BlockSource,
        entry: AudienceReport,
    ) -> None:
        runtime = self.runtime
        tracker = self.create_tracker(advertiser_id, name, contract)
        if self.by_difference:
            tracker.record_create(stream)  # a create whose answer is lost is still converged
        paths = self._upload_all(api, advertiser_id, contract, stream, entry)
        entry.identifiers_uploaded = entry.identifiers_unique
        audience_id, entry.created = runtime.directory.find_or_create(
            api,
            advertiser_id,
            name,
            contract,
            lambda: api.create_customer_audience(
                NewAudience(
                    advertiser_id, name, contract, paths, runtime.settings.retention_in_days
                )
            ),
        )
        entry.audience_id = audience_id
        entry.mirror, entry.mirror_reason = "full", "new audience"
        entry.action = "CREATE"
        if self.by_difference:
            self.tracker(advertiser_id, audience_id, name, contract).confirm(
                stream, full=True, base=None, now=api.now()
            )
        self.note_next_resync(api, None, entry, full=True)

    def _replace(
        self,
        api: AudienceAPI,
        tracker: Tracker,
        stream: BlockSource,
        base: Baseline,
        entry: AudienceReport,
        *,
        why: str | None,
    ) -> Generator[Ask, None, None]:
        """No trusted snapshot (or mirror_strategy replace): the whole set, in one REPLACE."""
        advertiser_id, audience_id = entry.advertiser_id, entry.audience_id or ""
        entry.mirror, entry.mirror_reason = "full", why or "mirror_strategy is replace"
        status = self._replace_allowed(api, entry, required=True)
        if status is not None and status.size:
            self.guard_shrink(status.size - entry.identifiers_unique, status.size)
        # Without a snapshot it is not known whether users left: counted as a removal.
        ask = yield from self.ask(entry, [("REPLACE", True)])
        if not ask.complete:
            raise self.not_granted(api, ask, entry)
        paths = self._upload_all(api, advertiser_id, tracker.key.contract, stream, entry)
        api.update_customer_audience(advertiser_id, audience_id, paths, "REPLACE")
        entry.action = "REPLACE"
        entry.identifiers_uploaded = entry.identifiers_unique
        if self.by_difference:
            tracker.confirm(stream, full=True, base=base, now=api.now())
        self.note_next_resync(api, base, entry, full=True)

    def _replace_allowed(
        self, api: AudienceAPI, entry: AudienceReport, *, required: bool
    ) -> AudienceStatus | None:
        """TikTok's state of the audience, or None when a REPLACE would be refused now.

        Raises RefusedError instead of returning None when the REPLACE is `required`.
        """
        status = api.get_audience(entry.advertiser_id, entry.audience_id or "")
        # TikTok shows no processing state: a REPLACE is skipped by time alone, when the history
        # shows a CREATE or REPLACE under 24 h old in words we recognise; otherwise it is sent
        # and a refusal handled (the difference instead, or the audience deferred).
        recent = status.recent_full_upload(api.now())
        if recent is not None:
            when = f" of {recent.at:%Y-%m-%d %H:%M} UTC" if recent.at else ""
            what = f"the {recent.kind}{when} is under 24 hours old"
            if not required:
                entry.mirror_reason = f"resync postponed: {what}"
                return None
            if not self.by_difference:
                raise RefusedError(
                    f"REPLACE on audience {entry.audience_id}",
                    reason=REFUSED_REPLACE_PROCESSING,
                    advertiser_id=entry.advertiser_id,
                    message=f"{what} (TikTok allows about one REPLACE a day); nothing was sent",
                    said=False,
                )
            raise HeldBack(
                "it needs a full upload (REPLACE), and TikTok allows about one REPLACE a day",
                f"{entry.mirror_reason}; the first run a day after the last full upload "
                "uploads it in full",
                f"{what}; nothing was sent",
            )
        return status

    def _resync(
        self,
        api: AudienceAPI,
        tracker: Tracker,
        stream: BlockSource,
        base: Baseline,
        change: _Change,
        entry: AudienceReport,
    ) -> Generator[Ask, None, bool]:
        """resync_days: one full REPLACE corrects what was changed in TikTok; False: not now."""
        if self._replace_allowed(api, entry, required=False) is None:
            return False
        ask = yield from self.ask(entry, [("REPLACE", change.counts.removed > 0)])
        if not ask.complete:
            if change.added or change.removed:
                raise self.not_granted(api, ask, entry)
            entry.mirror_reason = (
                "resync postponed: the ad account's update operations are spent "
                "(daily_update_operations)"
            )
            return False
        tracker.record_in_flight(change.digests())  # the same digests as the diff would send
        paths = self._upload_all(api, entry.advertiser_id, tracker.key.contract, stream, entry)
        try:
            api.update_customer_audience(
                entry.advertiser_id, entry.audience_id or "", paths, "REPLACE"
            )
        except RefusedError as exc:  # TikTok allows about one REPLACE a day: the diff instead
            entry.mirror_reason = f"resync postponed: {exc.tiktok_message}"
            return False
        entry.mirror, entry.mirror_reason = "full", "resync (resync_days)"
        entry.action = "REPLACE"
        entry.identifiers_uploaded = entry.identifiers_unique
        entry.identifiers_removed = change.counts.removed
        entry.identifiers_unchanged = change.counts.unchanged
        tracker.confirm(stream, full=True, base=base, now=api.now())
        self.note_next_resync(api, base, entry, full=True)
        return True

    def _send_change(
        self,
        api: AudienceAPI,
        tracker: Tracker,
        stream: BlockSource,
        base: Baseline,
        change: _Change,
        entry: AudienceReport,
    ) -> Generator[Ask, None, None]:
        advertiser_id, audience_id = entry.advertiser_id, entry.audience_id or ""
        if entry.mirror is None:
            entry.mirror = "diff"
            entry.mirror_reason = entry.mirror_reason or "snapshot of what TikTok holds"
        entry.identifiers_unchanged = change.counts.unchanged
        # APPEND first: the audience never dips below what it will hold.
        calls = [("APPEND", False)] if change.added else []
        calls += [("REMOVE", True)] if change.removed else []
        ask = yield from self.ask(entry, calls)
        if any(ask.granted):
            tracker.record_in_flight(change.digests())
        actions: list[str] = []
        for chunks, action in ((change.added, "APPEND"), (change.removed, "REMOVE")):
            if chunks and ask.allowed(action):
                paths = self.upload(api, advertiser_id, tracker.key.contract, chunks, entry)
                api.update_customer_audience(advertiser_id, audience_id, paths, action)
                actions.append(action)
        entry.action = "+".join(actions) or "NONE"
        entry.identifiers_uploaded = change.counts.added if "APPEND" in actions else 0
        entry.identifiers_removed = change.counts.removed if "REMOVE" in actions else 0
        if not ask.complete:  # the rest stays in flight: the next run sends it again
            if actions == ["REMOVE"]:
                tracker.confirm_removal(
                    base, lambda: _lines(change.removed), lambda: _lines(change.added)
                )
            raise self.not_granted(api, ask, entry)
        if actions or base.in_flight is not None or base.empty:
            tracker.confirm(stream, full=False, base=base, now=api.now())
        self.note_next_resync(api, base, entry, full=False)

    def _upload_all(
        self,
        api: AudienceAPI,
        advertiser_id: str,
        contract: str,
        stream: BlockSource,
        entry: AudienceReport,
    ) -> list[str]:
        """Every digest of the set, in files of file_max_ids; their paths (one call's worth).

        The files are cut once per contract and kept until the stage ends: every advertiser
        uploads the same ones.
        """
        chunks = self._full.get(contract)
        whole = self._sets.get(contract)
        if (
            chunks is None
            and whole is not None
            and whole.lines <= self.runtime.settings.file_max_ids
        ):
            # The sorted set is already one digest a line, as an upload file is: sent as it is.
            chunks = self._full[contract] = [whole]
        if chunks is None:
            spool = self.spool("full", contract)
            try:
                for block in stream():
                    spool.write_block(block)
                chunks = self._full[contract] = spool.take()
            except BaseException:
                spool.discard()
                raise
        return self.upload(api, advertiser_id, contract, chunks, entry)


@dataclass(eq=False)
class PartnerMirrorDelivery(_SortedSets):
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

    def _everything(self, stream: BlockSource) -> _Change:
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
        return _Change(added.take(), [], DiffCounts(total, 0, 0, total))

    def ready_by(self, entry: AudienceReport) -> float | None:
        if not self.is_new(entry):
            return None
        return timescale.monotonic() + self.runtime.settings.partner_warmup_seconds

    def _batches(self, users: Iterable[dict[str, str]]) -> Iterator[list[dict[str, str]]]:
        return chunked(users, self.runtime.settings.segment_batch_size)

    def _send_deletes(self, api: AudienceAPI, entry: AudienceReport, removed: list[Chunk]) -> None:
        """Each pair that left is deleted on its own (a user's other pairs may stay)."""
        contracts = list(self.contracts)
        pairs = (split_entry(e) for e in _flat(_lines(removed)))
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
        for entry in _flat(_lines(added)):
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
