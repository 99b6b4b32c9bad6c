"""`tiktok-audiences-status`: is every configured audience healthy in TikTok? Writes nothing.

    tiktok-audiences-status --config config.json [--format table|json]
    tiktok-audiences-status --config ENV        # settings from TARGET_TIKTOK_AUDIENCES_* (Meltano)

Reads every audience in every advertiser back from TikTok (list and get calls only) and the
header of its mirror snapshot: the audiences the `audiences` setting names, or without it every
audience this target delivered (the snapshot store knows them). Prints name, advertiser, id,
type, contract, size, validity, expiry, TikTok's last operation, snapshot size and age, and a
size far from the snapshot's (a likely edit in Ads Manager). Exit codes: 0 healthy; 1 an
audience is missing, invalid, expired or expiring within 30 days, its snapshot is damaged, or
TikTok could not be read; 2 the config is not usable. An orchestrator alerts on a non-zero exit,
e.g. 48 h after a sync.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from target_tiktok_audiences.client import (
    AudienceAPI,
    AudienceRow,
    TikTokError,
)
from target_tiktok_audiences.deliveries.fanout import fixed_names, known_audiences
from target_tiktok_audiences.ledger import Ledger
from target_tiktok_audiences.modes import AudienceType, MirrorStrategy, SyncMode
from target_tiktok_audiences.places import PlaceError, not_a_folder, shown
from target_tiktok_audiences.report import size_gap
from target_tiktok_audiences.run import make_client
from target_tiktok_audiences.settings import (
    CONFIG_SCHEMA,
    AudienceMapping,
    Settings,
    config_errors,
    unknown_key_errors,
)
from target_tiktok_audiences.snapshot import (
    Reason,
    Snapshot,
    SnapshotError,
    SnapshotKey,
    SnapshotStore,
    scope_for,
)
from target_tiktok_audiences.status_output import AudienceHealth, as_json, table

EXPIRY_ALERT = timedelta(days=30)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)  # every entry the ledger keeps (two days)
ENV_PREFIX = "TARGET_TIKTOK_AUDIENCES_"
EXIT_HEALTHY, EXIT_UNHEALTHY, EXIT_CONFIG = 0, 1, 2

# -- config --------------------------------------------------------------------------------


def load_config(source: str) -> dict[str, Any]:
    """A JSON file, or ENV: the settings from TARGET_TIKTOK_AUDIENCES_* (as Meltano sets them)."""
    if source != "ENV":
        loaded = json.loads(Path(source).read_text(encoding="utf-8"))
        if not isinstance(loaded, dict):
            raise ValueError("the config file must hold one JSON object")
        return loaded
    from singer_sdk.configuration._dict_config import parse_environment_config

    config = parse_environment_config(CONFIG_SCHEMA, ENV_PREFIX)
    for key, value in list(config.items()):  # the SDK leaves numbers as text
        if isinstance(value, str) and "number" in str(CONFIG_SCHEMA["properties"][key]["type"]):
            config[key] = float(value)
    return config


def settings_of(config: Mapping[str, Any]) -> tuple[Settings | None, list[str]]:
    """The settings, or why they cannot be used to read the audiences."""
    errors = unknown_key_errors(config, CONFIG_SCHEMA["properties"]) or config_errors(config)
    if not errors and not config.get("access_token"):
        errors = ["access_token: the status check reads TikTok and needs the token"]
    if not errors and config.get("snapshot_url"):
        try:
            why = not_a_folder(str(config["snapshot_url"]))
        except PlaceError as exc:
            why, errors = None, [str(exc)]
        if why:
            errors = [f"snapshot_url {shown(str(config['snapshot_url']))}: {why}"]
    if errors:
        return None, errors
    return Settings.from_config(config), []


# -- reading ---------------------------------------------------------------------------------


@dataclass
class SnapshotsSeen:
    """What the snapshots of one audience say: digests, age, the last full upload, trouble."""

    count: int | None = None
    age_hours: float | None = None
    full_at: datetime | None = None
    notes: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)


def snapshots_of(
    store: SnapshotStore, advertiser_id: str, audience_id: str, contracts: Sequence[str]
) -> SnapshotsSeen:
    """The audience's snapshots, read by header and size (the digests are not read).

    The one place that knows how snapshots are keyed, so a change of keys is one edit here.
    """
    seen = SnapshotsSeen()
    oldest: datetime | None = None
    for contract in contracts:
        snap = store.read(SnapshotKey(advertiser_id, audience_id, contract))
        if not isinstance(snap, Snapshot):
            if snap.reason is Reason.MISSING:
                seen.notes.append(snap.detail)
            else:  # damaged, or made for another audience: the next run uploads in full
                seen.damaged.append(snap.detail)
            continue
        seen.count = (seen.count or 0) + snap.count
        created = _utc(datetime.fromisoformat(snap.header.created_at))
        oldest = created if oldest is None else min(oldest, created)
        try:
            full = _utc(datetime.fromisoformat(snap.header.full_at))
        except ValueError:
            continue
        seen.full_at = full if seen.full_at is None else min(seen.full_at, full)
    if oldest is not None:
        seen.age_hours = (datetime.now(timezone.utc) - oldest).total_seconds() / 3600
    return seen


class StatusCheck:
    """Reads the audiences of every advertiser; never writes to TikTok or storage.

    With `audiences`, the audiences its mappings name; without, every audience this target
    has delivered, as the snapshot store knows them: its snapshots and its operations ledger
    (`source` says which).
    """

    def __init__(self, settings: Settings, api: AudienceAPI, store: SnapshotStore) -> None:
        self.settings = settings
        self.api = api
        self.store = store
        self._rows: dict[str, list[AudienceRow]] = {}
        self._snapshots: dict[str, dict[str, list[str]]] = {}
        self.source = (
            "the audiences setting"
            if settings.mappings is not None
            else f"the snapshot store {store.display} (audiences this target delivered)"
        )

    def rows(self, advertiser_id: str) -> list[AudienceRow]:
        if advertiser_id not in self._rows:
            self._rows[advertiser_id] = list(self.api.list_audiences(advertiser_id))
        return self._rows[advertiser_id]

    def snapshot_contracts(self, advertiser_id: str) -> dict[str, list[str]]:
        if advertiser_id not in self._snapshots:
            self._snapshots[advertiser_id] = self.store.snapshot_contracts(advertiser_id)
        return self._snapshots[advertiser_id]

    def audiences(self) -> Iterator[AudienceHealth]:
        if self.settings.mappings is None:
            for advertiser_id in self.settings.advertiser_ids:
                yield from self._delivered(advertiser_id)
            return
        mappings = list(self.settings.mappings.values())
        fixed = {n for m in mappings if not m.audience_name_column for n in fixed_names(m)}
        for mapping in mappings:
            for advertiser_id in self.settings.advertiser_ids:
                yield from self._mapping(mapping, advertiser_id, fixed)

    def _delivered(self, advertiser_id: str) -> Iterator[AudienceHealth]:
        """Without `audiences`: every audience of this advertiser with a snapshot, or with an
        update operation in the ledger (append mode keeps no snapshots)."""
        snapped = self.snapshot_contracts(advertiser_id)
        ledger = Ledger(self.store).entries(advertiser_id, EPOCH)
        known = set(snapped) | {entry.audience_id for entry in ledger}
        if not known:
            return
        by_id = {r.audience_id: r for r in self.rows(advertiser_id)}
        for audience_id in sorted(known):
            row = by_id.get(audience_id)
            if row is None:
                where = (
                    "has a snapshot" if audience_id in snapped else "has operations in the ledger"
                )
                yield AudienceHealth(
                    None,
                    "-",
                    advertiser_id,
                    audience_id=audience_id,
                    problems=[f"missing: audience id {audience_id} {where} but is not in TikTok"],
                )
                continue
            yield self._read(None, row, advertiser_id)

    def _mapping(
        self, mapping: AudienceMapping, advertiser_id: str, fixed: set[str]
    ) -> Iterator[AudienceHealth]:
        rows = self.rows(advertiser_id)
        stream = mapping.stream
        if mapping.audience_name_column:
            if mapping.sync_mode is not SyncMode.MIRROR:
                yield AudienceHealth(
                    stream,
                    mapping.audience_name,
                    advertiser_id,
                    snapshot_note=f"{mapping.sync_mode.value} keeps no snapshots: the audiences "
                    f"of column '{mapping.audience_name_column}' are not known here",
                )
                return
            known = known_audiences(self.store, rows, mapping, advertiser_id, fixed)
            if not known:
                yield self._missing(stream, mapping.audience_name, advertiser_id)
            for row in sorted(known, key=lambda r: r.name):
                yield self._read(stream, row, advertiser_id)
            return
        by_id = {r.audience_id: r for r in rows}
        configured = mapping.audience_ids.get(advertiser_id)
        if configured:
            match = by_id.get(configured)
            yield (
                self._read(stream, match, advertiser_id)
                if match
                else self._missing(stream, mapping.audience_name, advertiser_id, configured)
            )
            return
        owned = [r for r in rows if r.owned]
        names = fixed_names(mapping)
        found = [r for r in owned if r.name in names and _compatible(mapping, r)]
        expected = names if mapping.identifiers is not None else []
        for name in expected:
            if not any(r.name == name for r in found):
                yield self._missing(stream, name, advertiser_id)
        if not found and not expected:  # contracts detected from the columns: any of the names
            yield self._missing(stream, mapping.audience_name, advertiser_id)
        for row in found:
            yield self._read(stream, row, advertiser_id)

    @staticmethod
    def _missing(
        stream: str, name: str, advertiser_id: str, audience_id: str | None = None
    ) -> AudienceHealth:
        what = f"audience id {audience_id} " if audience_id else ""
        return AudienceHealth(
            stream,
            name,
            advertiser_id,
            audience_id=audience_id,
            problems=[f"missing: no {what}audience of this name in TikTok"],
        )

    def _read(self, stream: str | None, row: AudienceRow, advertiser_id: str) -> AudienceHealth:
        health = AudienceHealth(
            stream,
            row.name,
            advertiser_id,
            audience_id=row.audience_id,
            type="partner" if row.is_partner else "customer_file",
            contract=None if row.is_partner else row.calculate_type,
        )
        status = self.api.get_audience(advertiser_id, row.audience_id)
        health.size, health.valid = status.size, status.is_valid
        if status.last is not None:
            health.last_operation = status.last.word or None
            health.last_operation_at = _iso(status.last.at)
        if status.tiktok_error:
            health.tiktok_error = status.tiktok_error
            health.problems.append(f'TikTok reports an error: "{status.tiktok_error}"')
        now = datetime.now(timezone.utc)
        if status.expires is not None:
            health.expires_at = _iso(status.expires)
            left = status.expires - now
            if left <= timedelta(0):
                health.problems.append("expired: TikTok keeps it at size 0; recreate it")
            elif left <= EXPIRY_ALERT:
                health.problems.append(f"expiring in {left.days} days")
        if status.is_valid is False and not health.problems:
            health.problems.append(
                "invalid: not usable for targeting (fewer than 1,000 matched users, or TikTok "
                "is still matching)"
            )
        contracts = self.snapshot_contracts(advertiser_id).get(row.audience_id, [])
        if contracts:
            self._compare(
                health, snapshots_of(self.store, advertiser_id, row.audience_id, contracts)
            )
        return health

    def _compare(self, health: AudienceHealth, seen: SnapshotsSeen) -> None:
        """The snapshot beside TikTok's view: its size and age, damage, a gap, the resync."""
        health.snapshot_size, health.snapshot_age_hours = seen.count, seen.age_hours
        health.snapshot_note = "; ".join(seen.notes) or None
        for detail in seen.damaged:
            health.problems.append(
                f"snapshot damaged: {detail}; the next run uploads the whole set "
                "(a customer file: one REPLACE)"
            )
        days = self.settings.resync_days
        by_difference = self.settings.mirror_strategy is MirrorStrategy.DIFF
        if days and by_difference and health.type == "customer_file" and seen.full_at:
            health.next_resync = (seen.full_at + timedelta(days=days)).date().isoformat()
        gap = size_gap(health.size, seen.count, health.type == "partner")
        if gap is not None:
            fix = (
                f"the next full resync, due {health.next_resync} (resync_days), corrects it"
                if health.next_resync
                else "the next run sends only its difference against the snapshot; delete "
                "the snapshot to send the whole set"
            )
            health.size_gap = f"{gap}; {fix}"


def _compatible(mapping: AudienceMapping, row: AudienceRow) -> bool:
    return row.is_partner == (mapping.audience_type is AudienceType.PARTNER)


def _utc(when: datetime) -> datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)


def _iso(when: datetime | None) -> str | None:
    return None if when is None else _utc(when).isoformat(timespec="seconds")


# -- command line ----------------------------------------------------------------------------

EPILOG = """\
output (--format):
  table  one line per audience: stream, audience, advertiser, id, type, contract, size,
         valid, expiry date, TikTok's last operation and its time, snapshot size and age,
         and the problem if any; then where the list came from, and any size gap
  json   {"healthy", "source", "audiences": [...], "note"}: per audience stream, name,
         advertiser_id, audience_id, type (customer_file | partner), contract, size, valid,
         expires_at and last_operation_at (ISO 8601, UTC), last_operation, snapshot_size,
         snapshot_age_hours, snapshot_note, next_resync (date), size_gap, problems

which audiences: with the audiences setting, those it names; without it, every audience this
target has delivered (its snapshots) in each of advertiser_ids.

exit codes: 0 healthy; 1 an audience is missing, invalid, expired or expiring within 30 days,
its snapshot is damaged, or TikTok could not be read; 2 the config is not usable.
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tiktok-audiences-status",
        description="Read the target's TikTok audiences back, writing nothing, and exit 1 when\n"
        "one is missing, invalid, expired or expiring within 30 days, or its snapshot is\n"
        "damaged.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", required=True, help="the target's config file, or ENV")
    p.add_argument(
        "--format",
        choices=("table", "json"),
        default="table",
        help="table (the default, for a person) or json (for a program): see below",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
    try:
        config = load_config(args.config)
    except (OSError, ValueError) as exc:
        print(
            f"tiktok-audiences-status: cannot read --config {args.config}: {exc}", file=sys.stderr
        )
        return EXIT_CONFIG
    settings, errors = settings_of(config)
    if settings is None:
        for error in errors:
            print(f"tiktok-audiences-status: config: {error}", file=sys.stderr)
        return EXIT_CONFIG
    api = make_client(dataclasses.replace(settings, dry_run=False))
    try:
        store = SnapshotStore(
            settings.snapshot_url, scope=scope_for(settings.api_base_url), read_only=True
        )
        check = StatusCheck(settings, api, store)
        healths = list(check.audiences())
    except (TikTokError, SnapshotError) as exc:
        print(f"tiktok-audiences-status: {exc}", file=sys.stderr)
        return EXIT_UNHEALTHY
    print(
        table(healths, check.source) if args.format == "table" else as_json(healths, check.source)
    )
    if not healths:
        print(
            f"tiktok-audiences-status: no audience found in {check.source}: the target has not "
            "delivered one there yet (append and incremental keep no snapshots, and the "
            "operations ledger holds two days of updates: name their streams in audiences to "
            "check them)",
            file=sys.stderr,
        )
    unhealthy = [h for h in healths if h.problems]
    for h in unhealthy:
        stream = f" (stream '{h.stream}')" if h.stream else ""
        print(
            f"Audience '{h.name}' in advertiser {h.advertiser_id}{stream}: {'; '.join(h.problems)}",
            file=sys.stderr,
        )
    return EXIT_UNHEALTHY if unhealthy else EXIT_HEALTHY


if __name__ == "__main__":
    sys.exit(main())
