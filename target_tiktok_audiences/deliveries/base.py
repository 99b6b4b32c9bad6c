"""What every delivery shares: the run's runtime, and one report entry per audience."""

from __future__ import annotations

import abc
import logging
import time
from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from target_tiktok_audiences.audiences import PARTNER, AudienceDirectory
from target_tiktok_audiences.budget import Ask, Budget, Call, Grant
from target_tiktok_audiences.client import (
    MIN_AUDIENCE_SIZE,
    REFUSED_BELOW_MINIMUM,
    REFUSED_BUDGET,
    REFUSED_DAILY_LIMIT,
    REFUSED_EXPIRED,
    REFUSED_FILE_EXPIRED,
    REFUSED_NOT_OWNER,
    REFUSED_OTHER,
    REFUSED_REPLACE_PROCESSING,
    REFUSED_UNKNOWN_TYPE,
    REFUSED_UPDATE_PROCESSING,
    AudienceAPI,
    NoAccessError,
    PartialSuccess,
    RefusedError,
    TikTokError,
)
from target_tiktok_audiences.deliveries import staging
from target_tiktok_audiences.deliveries.staging import Routine
from target_tiktok_audiences.fencing import fenced
from target_tiktok_audiences.report import AudienceReport, RunReport, StreamReport
from target_tiktok_audiences.settings import AudienceMapping, Settings
from target_tiktok_audiences.snapshot import LeaseLost, SnapshotError, SnapshotKey, SnapshotStore
from target_tiktok_audiences.spool import Chunk

EXPIRING_DAYS = 60  # TikTok shows an audience as about to expire this many days ahead

# Why TikTok refused one audience, and what a person does about it (the run goes on either
# way: the client decides that a refusal is one audience's by the call it answered, and TikTok's
# words only choose the line here).
REFUSALS = {
    REFUSED_BELOW_MINIMUM: (
        "TikTok refuses updates that leave fewer than 1,000 users (it counts the users it "
        "matched, not the identifiers sent)",
        "add users to the stream (or remove fewer) and re-run",
    ),
    REFUSED_REPLACE_PROCESSING: (
        "TikTok allows about one REPLACE a day, and refuses one while the last REPLACE or the "
        "creation is unfinished",
        "a run a day after the last full upload delivers it (mirror_strategy diff avoids REPLACE)",
    ),
    REFUSED_DAILY_LIMIT: (
        "TikTok's limit of update operations per ad account per day is spent",
        "the next run tomorrow delivers it (partner audiences have no such limit)",
    ),
    REFUSED_NOT_OWNER: (
        "this audience was shared in by another advertiser and cannot be updated here",
        "give the stream another audience_name or audience_ids",
    ),
    REFUSED_BUDGET: (
        "the ad account's update operations of the last 24 h are spent (daily_update_operations)",
        "what did not fit was not sent (removals go first); a later run sends it once they "
        "fit (the time is below)",
    ),
    REFUSED_UPDATE_PROCESSING: (
        "TikTok kept refusing this audience's update for about two minutes (it may still be "
        "processing the previous one)",
        "the next run delivers it",
    ),
    REFUSED_EXPIRED: (
        "TikTok says this audience expired (an expired audience can only be deleted)",
        "delete it in TikTok Ads Manager; the next run creates a fresh one of that name",
    ),
    REFUSED_FILE_EXPIRED: (
        "the uploaded files expired before TikTok used them, also after uploading them again",
        "re-run; if it happens again, TikTok is slow to take files: try a smaller file_max_ids",
    ),
    REFUSED_UNKNOWN_TYPE: (
        "TikTok lists this audience with a type the target does not know",
        "point the stream at another audience (audience_name or audience_ids)",
    ),
    REFUSED_OTHER: (
        "TikTok refused this audience's update",
        "read TikTok's words below; nothing else was held back, and the next run tries again",
    ),
}


def small_set_note(count: int, kind: str = "") -> str:
    """The warning for a set under TikTok's 1,000 floor."""
    return (
        f"only {count:,} {kind}identifier{'s' if count != 1 else ''}; TikTok needs "
        f"{MIN_AUDIENCE_SIZE:,} matched users before an audience can be used, and refuses "
        f"updates that leave fewer than {MIN_AUDIENCE_SIZE:,}."
    )


class HeldBack(Exception):
    """This audience alone is left as it is (a guard, the snapshot store); the others go on."""

    def __init__(self, why: str, advice: str, detail: str) -> None:
        super().__init__(detail)
        self.why, self.advice, self.detail = why, advice, detail


@dataclass
class Runtime:
    """What every delivery of a run shares."""

    settings: Settings
    client: AudienceAPI
    budget: Budget  # the daily update operations: counted, planned, granted, taken
    directory: AudienceDirectory
    workdir: Path
    report: RunReport
    logger: logging.Logger
    snapshots: SnapshotStore
    # (advertiser, name, kind) of audiences that audience_name_column values will create
    new_audiences: set[tuple[str, str, str]] = field(default_factory=set)
    # An API the app may not use (40117, 40118, 40130): the run's one line about it
    no_access: NoAccessError | None = None
    # audience name -> the mapping (and value) that syncs it: one audience, one mapping
    claims: dict[str, str] = field(default_factory=dict)


@dataclass(eq=False)
class Delivery(abc.ABC):
    """Everything one stream sends to TikTok, across schema changes of the stream."""

    runtime: Runtime
    mapping: AudienceMapping
    report: StreamReport
    contracts: list[str]
    # Why the stream is not the whole set (its SCHEMA has bookmark_properties); mirror guards.
    partial_stream: str | None = field(default=None, init=False)
    _locked_at: float = field(default=0.0, init=False)  # when this audience's lock was taken
    # True: users go out while the stream is read (batches); False: at commit only.
    sends_as_it_reads: ClassVar[bool] = False

    def extend(self, contracts: Sequence[str]) -> None:
        """A new schema of the stream may bring more identifier columns."""
        self.contracts.extend(c for c in contracts if c not in self.contracts)

    @abc.abstractmethod
    def add(self, ids: dict[str, str], removed: bool, user: str | None = None) -> None:
        """One user: its digests by contract, whether it is removed, and its key if any."""

    # True: add_column() takes a contract's digests of many users at once (AudienceSink
    # encodes a block of records column by column, issue 21); only for deliveries that need
    # neither a user's key nor which digests belong to one user.
    takes_columns: ClassVar[bool] = False

    def add_column(self, contract: str, digests: list[str], users: int) -> None:
        """The digests of `contract` of a block of kept (not removed) users, `users` of whom
        have at least one digest in the block (takes_columns deliveries only)."""
        raise NotImplementedError

    @abc.abstractmethod
    def flush(self) -> None:
        """The SDK drained a batch of the stream."""

    def send_held(self) -> None:  # noqa: B027 - optional hook
        """The SDK's max record age passed: a delivery that sends as it reads sends what waits
        for a full batch (run.send_held)."""

    def commit(self) -> None:
        """Deliver everything spooled now, its update operations planned on their own (the run
        plans the deliveries of the end of input together: staging.deliver)."""
        staging.deliver([self], self.runtime.budget)

    @abc.abstractmethod
    def stage(self) -> Iterator[Routine]:
        """End of input: one routine per audience, each yielding an Ask before its budgeted
        updates (see staging.py)."""

    def close_stage(self) -> None:  # noqa: B027 - optional hook
        """Every routine of the stage has ended: drop what they shared."""

    def ask(self, entry: AudienceReport, calls: list[Call]) -> Generator[Ask, Grant, Grant]:
        """The update calls this audience needs (action, removes users); what was granted."""
        ask = Ask(entry.advertiser_id, tuple(calls))
        if calls:
            return (yield ask)
        return self.runtime.budget.grant_all(ask)

    @staticmethod
    def update(
        api: AudienceAPI, grant: Grant, audience_id: str, paths: Sequence[str], action: str
    ) -> None:
        """One granted update call: its operation taken from the budget (the ledger first),
        then sent."""
        grant.take(audience_id, action)
        api.update_customer_audience(grant.ask.advertiser_id, audience_id, paths, action)

    @staticmethod
    def not_granted(grant: Grant, entry: AudienceReport) -> RefusedError:
        """The updates the budget had no room for: this audience's deferral."""
        return grant.refusal(entry.audience_id or entry.audience_name)

    @property
    @abc.abstractmethod
    def pending(self) -> bool:
        """True while some added or removed user has not been accepted by TikTok."""

    def discard(self) -> None:  # noqa: B027 - optional hook
        """Drop undelivered data (a failed or interrupted run)."""

    @contextmanager
    def delivering(self, entry: AudienceReport) -> Iterator[AudienceAPI]:
        """A client view that counts into the audience's stats; failures mark the entry.

        A refusal of this audience alone (any code outside the transient and authorisation
        sets on its create, update or mapping, whatever TikTok's words), a guard or a failure of
        the snapshot store defers it and lets the others go on; anything else stops the run.
        The audience's name is locked in the snapshot store meanwhile, so that concurrent runs
        never create it twice (nor interleave their changes).
        """
        lock = SnapshotKey.for_name(entry.advertiser_id, entry.audience_name, "AUDIENCE")
        began = False
        try:
            with self.runtime.snapshots.lock(lock) as lease:
                self._locked_at = time.monotonic()
                began = True
                yield fenced(self.runtime.client.with_stats(entry.stats), lease)
        except HeldBack as exc:
            entry.defer(exc.why, exc.advice, exc.detail)
        except LeaseLost as exc:
            entry.defer(
                "this run lost its lock on the audience and sent nothing more to it",
                "re-run: the next run converges it, whatever the other run sent meanwhile",
                str(exc),
            )
        except SnapshotError as exc:
            entry.defer(
                "the snapshot store failed",
                "fix snapshot_url's storage and re-run; the next run re-sends what is unconfirmed",
                str(exc),
            )
        except RefusedError as exc:
            exc.for_audience(entry.audience_name)
            why, advice = REFUSALS.get(exc.reason, REFUSALS[REFUSED_OTHER])
            if exc.reason == REFUSED_BELOW_MINIMUM:
                advice = self._floor_advice(entry) or advice
            entry.defer(why, advice, str(exc))
        except NoAccessError as exc:
            # One run-level line (Run.no_access) instead of one refusal per audience; the
            # audiences of the other API go on.
            entry.status = "failed"
            entry.note = "not delivered: the TikTok app has no access to this API (see below)"
            if self.runtime.no_access is None:
                self.runtime.no_access = exc
        except PartialSuccess as exc:
            # 20001: what the call sent stays unconfirmed (in flight, and no STATE), so the
            # next run sends it again; not a failure of the run.
            entry.status = "partial"
            entry.tiktok_error = exc.tiktok_message or "part of the request was not applied"
            self._add_notes(
                entry,
                [
                    f'TikTok applied only part of an update ("{entry.tiktok_error}"); the next '
                    "run sends it again (no STATE was emitted for it)."
                ],
            )
        except TikTokError as exc:
            exc.for_audience(entry.audience_name)
            entry.status = "failed"
            self.runtime.report.error = str(exc)
            raise
        else:
            self._expiry_notes(entry)
            if entry.status == "delivered":
                self.runtime.directory.settle(entry.advertiser_id, entry.audience_name)
        if not began:  # the lock was not taken: the caller's block must not run (deferred)
            raise staging.Skipped(entry.audience_name)

    def _floor_advice(self, entry: AudienceReport) -> str | None:
        """The way out of TikTok's 1,000 floor, in numbers: what TikTok holds now, and how many
        more matched users one update must bring (None when TikTok's size cannot be read)."""
        if not entry.audience_id:
            return None
        try:
            api = self.runtime.client.with_stats(entry.stats)  # counted as the audience's
            status = api.get_audience(entry.advertiser_id, entry.audience_id)
        except TikTokError:
            return None
        if status.size is None:
            return None
        entry.size = status.size
        missing = max(MIN_AUDIENCE_SIZE - status.size, 0)
        keep = (
            "mirror keeps the refused change in flight and sends it again with the next one, so "
            "additions add up; "
            if self.mapping.sync_mode.whole_set
            else ""
        )
        way = (
            f"send at least {missing:,} more matched users in one run ({keep}TikTok matches "
            "only part of the identifiers sent)"
            if missing
            else "remove fewer users at once, or add users in the same run"
        )
        return (
            f"TikTok holds {status.size:,} matched users and refuses every update (an APPEND "
            f"too) that leaves fewer than {MIN_AUDIENCE_SIZE:,}: {way}, or recreate the "
            "audience from a larger stream under a new audience_name"
        )

    def _expiry_notes(self, entry: AudienceReport) -> None:
        """Say it plainly when an expired audience was replaced, or this one expires soon."""
        adv = entry.advertiser_id
        notes = []
        old = self.runtime.directory.expired.get((adv, entry.audience_name))
        if old is not None and entry.created and entry.audience_id:
            notes.append(
                f"the audience of this name, id {old.audience_id}, expired (TikTok keeps it "
                f"only to be deleted); this run created a fresh one, id {entry.audience_id}: "
                "point your ad groups at the new id."
            )
        self._add_notes(entry, notes)

    def _add_notes(self, entry: AudienceReport, notes: list[str]) -> None:
        for note in notes:
            if note in (entry.note or ""):
                continue
            self.runtime.logger.warning(
                "Audience '%s' in advertiser %s: %s", entry.audience_name, entry.advertiser_id, note
            )
            entry.note = f"{entry.note} {note}" if entry.note else note

    def existing_audience(
        self, api: AudienceAPI, advertiser_id: str, name: str, kind: str
    ) -> str | None:
        """The configured audience id (checked), else ours of that name, else None."""
        directory = self.runtime.directory
        explicit = self.mapping.audience_ids.get(advertiser_id)
        if explicit:
            return directory.by_id(api, advertiser_id, explicit, kind, name)
        found = directory.by_name(api, advertiser_id, name, kind)
        if found is None and not directory.listed_since(advertiser_id, self._locked_at):
            # Listed before this audience's lock was taken: another run may have created it since.
            found = directory.by_name(api, advertiser_id, name, kind, refresh=True)
        if found is None:
            # An earlier run's create that TikTok may still be making: awaited, never repeated.
            found = directory.await_pending(api, advertiser_id, name, kind)
        return found

    def is_new(self, entry: AudienceReport) -> bool:
        """Created by this run, or by an earlier run's create this run adopted: a partner
        audience this new may still refuse mappings (partner_warmup_seconds)."""
        adopted = (entry.advertiser_id, entry.audience_id or "") in self.runtime.directory.adopted
        return entry.created or adopted

    def partner_audience(self, api: AudienceAPI, advertiser_id: str, name: str) -> tuple[str, bool]:
        """(audience id, created): the configured or existing partner audience, or a new one."""
        found = self.existing_audience(api, advertiser_id, name, PARTNER)
        if found:
            return found, False

        def create() -> str:
            return api.create_partner_audience(advertiser_id, name)

        return self.runtime.directory.find_or_create(api, advertiser_id, name, PARTNER, create)

    def upload(
        self,
        api: AudienceAPI,
        advertiser_id: str,
        contract: str,
        chunks: Sequence[Chunk],
        entry: AudienceReport,
    ) -> list[str]:
        """Upload the spool's chunks (a progress line each when several); TikTok's paths."""
        paths = []
        for i, chunk in enumerate(chunks, 1):
            if len(chunks) > 1:
                self.runtime.logger.info(
                    "Audience '%s' in advertiser %s: uploading file %d of %d (%s identifiers).",
                    entry.audience_name,
                    advertiser_id,
                    i,
                    len(chunks),
                    f"{chunk.lines:,}",
                )
            paths.append(api.upload_file(advertiser_id, contract, chunk.path))
            entry.files += 1
        return paths

    def read_back(self, api: AudienceAPI, advertiser_id: str, entry: AudienceReport) -> None:
        """After delivery: validity, size and the last operation go into the summary."""
        if not entry.audience_id:
            return
        try:
            status = api.get_audience(advertiser_id, entry.audience_id)
        except TikTokError as exc:  # informative only: the delivery itself succeeded
            self.runtime.logger.warning(
                "Audience '%s' in advertiser %s was delivered but could not be read back: %s",
                entry.audience_name,
                advertiser_id,
                exc,
            )
            return
        entry.is_valid, entry.size = status.is_valid, status.size
        if (
            entry.audience_type != PARTNER
            and status.size is not None
            and 0 < status.size < MIN_AUDIENCE_SIZE
        ):
            # TikTok's own count, not ours: it matches only part of the identifiers sent.
            self._add_notes(
                entry,
                [
                    f"TikTok matched {status.size:,} user{'s' if status.size != 1 else ''} "
                    "of this audience, fewer than "
                    f"{MIN_AUDIENCE_SIZE:,}: it cannot be used for targeting, and TikTok refuses "
                    f"every update that leaves it under {MIN_AUDIENCE_SIZE:,} matched users, an "
                    "APPEND included, until one update brings enough."
                ],
            )
        if status.expiring and status.expires is not None:
            note = (
                f"expires on {status.expires:%Y-%m-%d} (within {EXPIRING_DAYS} days); after that "
                "TikTok keeps it only to be deleted and the next run creates a fresh one. Using "
                "it in an ad group renews it, unless retention_in_days fixed its expiry."
            )
            self._add_notes(entry, [note])
        last = status.last
        if last is not None:
            when = f" at {last.at:%Y-%m-%d %H:%M} UTC" if last.at else ""
            entry.last_operation = f"{last.word or '(no word)'}{when}"
        entry.tiktok_error = status.tiktok_error
        if entry.tiktok_error:
            self.runtime.logger.warning(
                "Audience '%s' in advertiser %s: TikTok accepted the upload but reports an "
                'error: "%s". Check the audience in TikTok Ads Manager; the next run sends '
                "its users again if they are missing.",
                entry.audience_name,
                advertiser_id,
                entry.tiktok_error,
            )

    def new_entry(self, advertiser_id: str, name: str, contracts: list[str]) -> AudienceReport:
        entry = AudienceReport(
            advertiser_id=advertiser_id,
            audience_name=name,
            sync_mode=self.mapping.sync_mode.value,
            contracts=contracts,
            audience_type=self.mapping.audience_type.value,
        )
        self.report.audiences.append(entry)
        return entry
