"""`tiktok-audiences-status`: is every configured audience healthy in TikTok? Writes nothing.

    tiktok-audiences-status --config config.json [--format table|json]
    tiktok-audiences-status --config ENV        # settings from TARGET_TIKTOK_AUDIENCES_* (Meltano)

Reads every configured audience in every advertiser back from TikTok (list and get calls only)
and the header of its mirror snapshot, and prints name, advertiser, id, type, size, validity,
expiry, last operation and its state, snapshot size and age. Exit codes: 0 healthy; 1 an
audience is missing, invalid, expired or expiring within 30 days, or TikTok could not be read;
2 the config is not usable. An orchestrator alerts on a non-zero exit, e.g. 48 h after a sync.
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
from target_tiktok_audiences.modes import AudienceType, SyncMode
from target_tiktok_audiences.report import PARTNER_SIZE_NOTE
from target_tiktok_audiences.run import make_client
from target_tiktok_audiences.settings import (
    CONFIG_SCHEMA,
    AudienceMapping,
    Settings,
    config_errors,
    unknown_key_errors,
)
from target_tiktok_audiences.snapshot import (
    Snapshot,
    SnapshotError,
    SnapshotKey,
    SnapshotStore,
    scope_for,
)

EXPIRY_ALERT = timedelta(days=30)
ENV_PREFIX = "TARGET_TIKTOK_AUDIENCES_"
EXIT_HEALTHY, EXIT_UNHEALTHY, EXIT_CONFIG = 0, 1, 2
COLUMNS = (
    ("stream", "stream"),
    ("name", "audience"),
    ("advertiser_id", "advertiser"),
    ("audience_id", "id"),
    ("type", "type"),
    ("size", "size"),
    ("valid", "valid"),
    ("expires", "expires"),
    ("last_operation", "last operation"),
    ("snapshot", "snapshot"),
    ("problem", "problem"),
)


@dataclass
class AudienceHealth:
    """One audience in one advertiser, as TikTok and the snapshot store see it."""

    stream: str
    name: str
    advertiser_id: str
    audience_id: str | None = None
    type: str | None = None
    size: int | None = None
    valid: bool | None = None
    expires_at: str | None = None
    last_operation: str | None = None
    tiktok_error: str | None = None  # TikTok's words on a failure after it accepted a call
    snapshot_size: int | None = None
    snapshot_age_hours: float | None = None
    snapshot_note: str | None = None
    problems: list[str] = field(default_factory=list)


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
    if not errors and config.get("audiences") is None:
        errors = [
            "audiences: the status check needs the audiences setting to know which audiences "
            "to read (without it, audiences are named after the streams that arrive)"
        ]
    if errors:
        return None, errors
    return Settings.from_config(config), []


# -- reading ---------------------------------------------------------------------------------


def snapshot_of(
    store: SnapshotStore, advertiser_id: str, audience_id: str, contracts: Sequence[str]
) -> tuple[int | None, float | None, str | None]:
    """(digests, age in hours of the oldest, note) of the audience's snapshots.

    The one place that knows how snapshots are keyed, so a change of keys is one edit here.
    """
    count, oldest, notes = 0, None, []
    for contract in contracts:
        snap = store.read(SnapshotKey(advertiser_id, audience_id, contract))
        if not isinstance(snap, Snapshot):
            notes.append(snap.detail)
            continue
        count += snap.count
        created = datetime.fromisoformat(snap.header.created_at)
        oldest = created if oldest is None else min(oldest, created)
    if oldest is None:
        return None, None, "; ".join(notes) or None
    age = (datetime.now(timezone.utc) - oldest).total_seconds() / 3600
    return count, age, "; ".join(notes) or None


class StatusCheck:
    """Reads the configured audiences of every advertiser; never writes to TikTok or storage."""

    def __init__(self, settings: Settings, api: AudienceAPI, store: SnapshotStore) -> None:
        self.settings = settings
        self.api = api
        self.store = store
        self._rows: dict[str, list[AudienceRow]] = {}
        self._snapshots: dict[str, dict[str, list[str]]] = {}

    def rows(self, advertiser_id: str) -> list[AudienceRow]:
        if advertiser_id not in self._rows:
            self._rows[advertiser_id] = list(self.api.list_audiences(advertiser_id))
        return self._rows[advertiser_id]

    def snapshot_contracts(self, advertiser_id: str) -> dict[str, list[str]]:
        if advertiser_id not in self._snapshots:
            self._snapshots[advertiser_id] = self.store.snapshot_contracts(advertiser_id)
        return self._snapshots[advertiser_id]

    def audiences(self) -> Iterator[AudienceHealth]:
        mappings = list((self.settings.mappings or {}).values())
        fixed = {n for m in mappings if not m.audience_name_column for n in fixed_names(m)}
        for mapping in mappings:
            for advertiser_id in self.settings.advertiser_ids:
                yield from self._mapping(mapping, advertiser_id, fixed)

    def _mapping(
        self, mapping: AudienceMapping, advertiser_id: str, fixed: set[str]
    ) -> Iterator[AudienceHealth]:
        rows = self.rows(advertiser_id)
        if mapping.audience_name_column:
            if mapping.sync_mode is not SyncMode.MIRROR:
                yield AudienceHealth(
                    mapping.stream,
                    mapping.audience_name,
                    advertiser_id,
                    snapshot_note=f"{mapping.sync_mode.value} keeps no snapshots: the audiences "
                    f"of column '{mapping.audience_name_column}' are not known here",
                )
                return
            known = known_audiences(self.store, rows, mapping, advertiser_id, fixed)
            if not known:
                yield self._missing(mapping, mapping.audience_name, advertiser_id)
            for row in sorted(known, key=lambda r: r.name):
                yield self._read(mapping, row, advertiser_id)
            return
        by_id = {r.audience_id: r for r in rows}
        configured = mapping.audience_ids.get(advertiser_id)
        if configured:
            match = by_id.get(configured)
            yield (
                self._read(mapping, match, advertiser_id)
                if match
                else self._missing(mapping, mapping.audience_name, advertiser_id, configured)
            )
            return
        owned = [r for r in rows if r.owned]
        names = fixed_names(mapping)
        found = [r for r in owned if r.name in names and _compatible(mapping, r)]
        expected = names if mapping.identifiers is not None else []
        for name in expected:
            if not any(r.name == name for r in found):
                yield self._missing(mapping, name, advertiser_id)
        if not found and not expected:  # contracts detected from the columns: any of the names
            yield self._missing(mapping, mapping.audience_name, advertiser_id)
        for row in found:
            yield self._read(mapping, row, advertiser_id)

    @staticmethod
    def _missing(
        mapping: AudienceMapping, name: str, advertiser_id: str, audience_id: str | None = None
    ) -> AudienceHealth:
        what = f"audience id {audience_id} " if audience_id else ""
        return AudienceHealth(
            mapping.stream,
            name,
            advertiser_id,
            audience_id=audience_id,
            problems=[f"missing: no {what}audience of this name in TikTok"],
        )

    def _read(
        self, mapping: AudienceMapping, row: AudienceRow, advertiser_id: str
    ) -> AudienceHealth:
        health = AudienceHealth(
            mapping.stream,
            row.name,
            advertiser_id,
            audience_id=row.audience_id,
            type="partner" if row.is_partner else f"customer_file {row.calculate_type}",
        )
        status = self.api.get_audience(advertiser_id, row.audience_id)
        health.size, health.valid = status.size, status.is_valid
        if status.last is not None:
            health.last_operation = status.last.word or None
        if status.tiktok_error:
            health.tiktok_error = status.tiktok_error
            health.problems.append(f'TikTok reports an error: "{status.tiktok_error}"')
        now = datetime.now(timezone.utc)
        if status.expires is not None:
            health.expires_at = status.expires.strftime("%Y-%m-%d %H:%M")
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
            health.snapshot_size, health.snapshot_age_hours, health.snapshot_note = snapshot_of(
                self.store, advertiser_id, row.audience_id, contracts
            )
        return health


def _compatible(mapping: AudienceMapping, row: AudienceRow) -> bool:
    return row.is_partner == (mapping.audience_type is AudienceType.PARTNER)


# -- output ----------------------------------------------------------------------------------


def _cells(h: AudienceHealth) -> dict[str, str]:
    snapshot = "-"
    if h.snapshot_size is not None and h.snapshot_age_hours is not None:
        snapshot = f"{h.snapshot_size:,} ({h.snapshot_age_hours:.1f} h old)"
    elif h.snapshot_note:
        snapshot = h.snapshot_note
    last = h.last_operation or "-"
    valid = {True: "yes", False: "no", None: "-"}[h.valid]
    return {
        "stream": h.stream,
        "name": h.name,
        "advertiser_id": h.advertiser_id,
        "audience_id": h.audience_id or "-",
        "type": h.type or "-",
        "size": f"{h.size:,}" if h.size is not None else "-",
        "valid": valid,
        "expires": h.expires_at or "-",
        "last_operation": last,
        "snapshot": snapshot,
        "problem": "; ".join(h.problems) or "ok",
    }


def table(healths: Sequence[AudienceHealth]) -> str:
    rows = [{k: title for k, title in COLUMNS}, *(_cells(h) for h in healths)]
    widths = {k: max(len(r[k]) for r in rows) for k, _ in COLUMNS}
    lines = ["  ".join(r[k].ljust(widths[k]) for k, _ in COLUMNS).rstrip() for r in rows]
    if any(h.type == "partner" and h.size is not None for h in healths):
        lines.append(f"Sizes: {PARTNER_SIZE_NOTE}.")
    return "\n".join(lines)


def as_json(healths: Sequence[AudienceHealth]) -> str:
    return json.dumps(
        {
            "healthy": not any(h.problems for h in healths),
            "audiences": [dataclasses.asdict(h) for h in healths],
            "note": PARTNER_SIZE_NOTE,
        },
        indent=2,
    )


# -- command line ----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tiktok-audiences-status",
        description="Read every configured TikTok audience back (writing nothing) and exit 1 "
        "when one is missing, invalid, expired or expiring within 30 days.",
    )
    p.add_argument("--config", required=True, help="the target's config file, or ENV")
    p.add_argument("--format", choices=("table", "json"), default="table")
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
        healths = list(StatusCheck(settings, api, store).audiences())
    except (TikTokError, SnapshotError) as exc:
        print(f"tiktok-audiences-status: {exc}", file=sys.stderr)
        return EXIT_UNHEALTHY
    print(table(healths) if args.format == "table" else as_json(healths))
    unhealthy = [h for h in healths if h.problems]
    for h in unhealthy:
        print(
            f"Audience '{h.name}' in advertiser {h.advertiser_id} (stream '{h.stream}'): "
            f"{'; '.join(h.problems)}",
            file=sys.stderr,
        )
    return EXIT_UNHEALTHY if unhealthy else EXIT_HEALTHY


if __name__ == "__main__":
    sys.exit(main())
