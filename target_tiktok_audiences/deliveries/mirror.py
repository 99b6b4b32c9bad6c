"""mirror: keep an audience equal to the stream.

By difference (mirror_strategy diff, the default): the stream's digests are sorted on disk and
compared in one pass with the snapshot of what TikTok holds and the change still in flight
(convergence.py decides what is sent and recorded); only the change goes out (APPEND/REMOVE
for a customer-file audience, add/delete for a partner audience). With no usable snapshot, or
every `resync_days`, a customer-file audience is created or REPLACEd in full. Guards leave an
audience unchanged when the stream is not a whole set or would remove too much of it.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

from target_tiktok_audiences.budget import Ask, Grant
from target_tiktok_audiences.client import (
    MIN_AUDIENCE_SIZE,
    REFUSED_REPLACE_PROCESSING,
    AudienceAPI,
    AudienceStatus,
    NewAudience,
    RefusedError,
)
from target_tiktok_audiences.convergence import Baseline, BlockSource, Tracker
from target_tiktok_audiences.deliveries.base import HeldBack, small_set_note
from target_tiktok_audiences.deliveries.sortedsets import Change, SortedSets, chunk_lines
from target_tiktok_audiences.deliveries.staging import Routine
from target_tiktok_audiences.extsort import (
    read_blocks,
)
from target_tiktok_audiences.report import AudienceReport
from target_tiktok_audiences.snapshot import SnapshotCorrupt
from target_tiktok_audiences.spool import Chunk


@dataclass(eq=False)
class MirrorDelivery(SortedSets):
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
    ) -> Generator[Ask, Grant, None]:
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
    ) -> Generator[Ask, Grant, None]:
        """No trusted snapshot (or mirror_strategy replace): the whole set, in one REPLACE."""
        advertiser_id, audience_id = entry.advertiser_id, entry.audience_id or ""
        entry.mirror, entry.mirror_reason = "full", why or "mirror_strategy is replace"
        status = self._replace_allowed(api, entry, required=True)
        if status is not None and status.size:
            self.guard_shrink(status.size - entry.identifiers_unique, status.size)
        # Without a snapshot it is not known whether users left: counted as a removal.
        grant = yield from self.ask(entry, [("REPLACE", True)])
        if not grant.complete:
            raise self.not_granted(grant, entry)
        paths = self._upload_all(api, advertiser_id, tracker.key.contract, stream, entry)
        self.update(api, grant, audience_id, paths, "REPLACE")
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
        change: Change,
        entry: AudienceReport,
    ) -> Generator[Ask, Grant, bool]:
        """resync_days: one full REPLACE corrects what was changed in TikTok; False: not now."""
        if self._replace_allowed(api, entry, required=False) is None:
            return False
        grant = yield from self.ask(entry, [("REPLACE", change.counts.removed > 0)])
        if not grant.complete:
            if change.added or change.removed:
                raise self.not_granted(grant, entry)
            entry.mirror_reason = (
                "resync postponed: the ad account's update operations are spent "
                "(daily_update_operations)"
            )
            return False
        tracker.record_in_flight(change.digests())  # the same digests as the diff would send
        paths = self._upload_all(api, entry.advertiser_id, tracker.key.contract, stream, entry)
        try:
            self.update(api, grant, entry.audience_id or "", paths, "REPLACE")
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
        change: Change,
        entry: AudienceReport,
    ) -> Generator[Ask, Grant, None]:
        advertiser_id, audience_id = entry.advertiser_id, entry.audience_id or ""
        if entry.mirror is None:
            entry.mirror = "diff"
            entry.mirror_reason = entry.mirror_reason or "snapshot of what TikTok holds"
        entry.identifiers_unchanged = change.counts.unchanged
        # APPEND first: the audience never dips below what it will hold.
        calls = [("APPEND", False)] if change.added else []
        calls += [("REMOVE", True)] if change.removed else []
        grant = yield from self.ask(entry, calls)
        if grant.any:
            tracker.record_in_flight(change.digests())
        actions: list[str] = []
        for chunks, action in ((change.added, "APPEND"), (change.removed, "REMOVE")):
            if chunks and grant.allowed(action):
                paths = self.upload(api, advertiser_id, tracker.key.contract, chunks, entry)
                self.update(api, grant, audience_id, paths, action)
                actions.append(action)
        entry.action = "+".join(actions) or "NONE"
        entry.identifiers_uploaded = change.counts.added if "APPEND" in actions else 0
        entry.identifiers_removed = change.counts.removed if "REMOVE" in actions else 0
        if not grant.complete:  # the rest stays in flight: the next run sends it again
            if actions == ["REMOVE"]:
                tracker.confirm_removal(
                    base, lambda: chunk_lines(change.removed), lambda: chunk_lines(change.added)
                )
            raise self.not_granted(grant, entry)
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
