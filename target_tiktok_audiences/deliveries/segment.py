"""Partner audiences fed through the Segment API in batches of users (incremental, append)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import ClassVar

from target_tiktok_audiences import timescale
from target_tiktok_audiences.client import UserBatch, partner_audience_name
from target_tiktok_audiences.deliveries.base import Delivery
from target_tiktok_audiences.deliveries.staging import Routine, Skipped
from target_tiktok_audiences.report import AudienceReport

PROGRESS_EVERY = 10  # batches between progress lines: one line per 100,000 users by default
ADD, DELETE = "add", "delete"


@dataclass
class _Partner:
    audience_id: str
    entry: AudienceReport
    ready_by: float | None  # created by this run: mappings may be refused until then


@dataclass(eq=False)
class SegmentDelivery(Delivery):
    """Each user's last record decides: add or delete. Full batches go out as they fill.

    Pending users are keyed (by the stream's key properties, else by their identifiers), so
    a later record of the same user replaces the earlier one, and adds and deletes each go
    out in full batches however they interleave: calls = ceil(adds/batch) + ceil(deletes/
    batch). One partner audience per (stream, advertiser) holds every contract.
    """

    sends_as_it_reads: ClassVar[bool] = True
    _pending: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict, init=False)
    _audiences: dict[str, _Partner] = field(default_factory=dict, init=False)

    def add(self, ids: dict[str, str], removed: bool, user: str | None = None) -> None:
        key = user if user is not None else "\x1f".join(f"{c}={d}" for c, d in sorted(ids.items()))
        self._pending.pop(key, None)  # re-insert: the latest record goes last
        self._pending[key] = (DELETE if removed else ADD, ids)

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def discard(self) -> None:
        self._pending.clear()

    def flush(self) -> None:
        self._send(full_only=True)

    def send_held(self) -> None:
        self._send(full_only=False)

    def stage(self) -> Iterator[Routine]:
        """The last batches; the Segment API spends no update operations, so nothing waits."""
        self._send(full_only=False)
        for advertiser_id, partner in self._audiences.items():
            if partner.entry.status == "pending":
                partner.entry.status = "delivered"
                self.runtime.directory.settle(advertiser_id, partner.entry.audience_name)
                api = self.runtime.client.with_stats(partner.entry.stats)
                self.read_back(api, advertiser_id, partner.entry)
        return iter(())

    def _send(self, *, full_only: bool) -> None:
        size = self.runtime.settings.segment_batch_size
        by_action: dict[str, list[str]] = {ADD: [], DELETE: []}
        for key, (action, _) in self._pending.items():
            by_action[action].append(key)
        batches: list[tuple[str, list[str]]] = []
        for action in (DELETE, ADD):
            keys = by_action[action]
            end = len(keys) - len(keys) % size if full_only else len(keys)
            batches.extend((action, keys[i : i + size]) for i in range(0, end, size))
        if not batches:
            return
        contracts = list(self.contracts)
        for advertiser_id in self.runtime.settings.advertiser_ids:
            partner = self._audience(advertiser_id)
            if partner is None:
                continue
            try:
                self._send_batches(advertiser_id, partner, batches, contracts)
            except Skipped:  # deferred: its lock could not be taken
                continue
        for _, keys in batches:
            for key in keys:
                del self._pending[key]

    def _send_batches(
        self,
        advertiser_id: str,
        partner: _Partner,
        batches: list[tuple[str, list[str]]],
        contracts: list[str],
    ) -> None:
        entry = partner.entry
        with self.delivering(entry) as api:
            for action, keys in batches:
                users = [self._pending[k][1] for k in keys]
                api.map_users(
                    advertiser_id,
                    partner.audience_id,
                    UserBatch(action, contracts, users),
                    ready=partner.ready_by,
                )
                entry.batches += 1
                if action == ADD:
                    entry.users_added += len(users)
                else:
                    entry.users_removed += len(users)
                if entry.batches % PROGRESS_EVERY == 0:
                    self.runtime.logger.info(
                        "Audience '%s' in advertiser %s: %s batches sent so far "
                        "(%s users added, %s removed).",
                        entry.audience_name,
                        advertiser_id,
                        f"{entry.batches:,}",
                        f"{entry.users_added:,}",
                        f"{entry.users_removed:,}",
                    )

    def _audience(self, advertiser_id: str) -> _Partner | None:
        known = self._audiences.get(advertiser_id)
        if known:
            return known if known.entry.status != "deferred" else None
        name = partner_audience_name(self.mapping.audience_name)
        entry = self.new_entry(advertiser_id, name, list(self.contracts))
        runtime = self.runtime
        audience_id: str | None = None
        try:
            with self.delivering(entry) as api:
                audience_id, entry.created = self.partner_audience(api, advertiser_id, name)
        except Skipped:  # deferred: its lock could not be taken; not tried again this run
            self._audiences[advertiser_id] = _Partner("", entry, None)
            return None
        if audience_id is None:
            return None
        entry.audience_id = audience_id
        warmup = runtime.settings.partner_warmup_seconds
        new = self.is_new(entry)
        partner = _Partner(audience_id, entry, timescale.monotonic() + warmup if new else None)
        self._audiences[advertiser_id] = partner
        return partner
