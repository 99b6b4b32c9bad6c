"""The typed view of a checked configuration: Settings and each stream's AudienceMapping."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from target_tiktok_audiences.identifiers import Rules, canonical_contract
from target_tiktok_audiences.modes import AudienceType, MirrorStrategy, SyncMode
from target_tiktok_audiences.settings.schema import SCHEMA_DEFAULTS

NAME_VALUE = "{value}"  # where audience_name takes the value of audience_name_column


@dataclass(frozen=True)
class AudienceMapping:
    """What one stream becomes in TikTok."""

    stream: str
    audience_name: str
    sync_mode: SyncMode
    audience_type: AudienceType
    identifiers: dict[str, str] | None  # contract -> column; None: detect by column name
    audience_ids: dict[str, str] = field(default_factory=dict)
    remove_column: str | None = None
    audience_name_column: str | None = None  # audience_name is then a template with {value}

    def audience_name_of(self, value: str) -> str:
        """The audience of a record whose audience_name_column holds `value`."""
        return self.audience_name.replace(NAME_VALUE, value)

    def audience_name_for(self, contract: str, contracts: Iterable[str]) -> str:
        """One customer-file audience per contract: `<name> (<CONTRACT>)` when several."""
        many = len(set(contracts)) > 1
        return f"{self.audience_name} ({contract})" if many else self.audience_name


@dataclass(frozen=True)
class Settings:
    """Validated configuration; defaults come from CONFIG_SCHEMA."""

    access_token: str | None
    advertiser_ids: tuple[str, ...]
    api_base_url: str
    sync_mode: SyncMode
    audience_type: AudienceType
    mirror_strategy: MirrorStrategy
    rules: Rules
    mappings: dict[str, AudienceMapping] | None
    retention_in_days: int | None
    dry_run: bool
    output_dir: str
    report_path: str | None
    snapshot_url: str | None
    file_max_ids: int
    segment_batch_size: int
    max_requests_per_second: float
    request_timeout: float
    max_retries: int
    max_retry_seconds: float
    partner_warmup_seconds: int
    create_confirm_seconds: int
    max_new_audiences: int
    resync_days: float
    max_removal_percent: float
    daily_update_operations: int
    rejects_url: str | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Settings:
        """Build settings from a config that passed validation (see config_errors)."""
        c = {**SCHEMA_DEFAULTS, **{k: v for k, v in config.items() if v is not None}}
        sync_mode = SyncMode(c["sync_mode"])
        audience_type = AudienceType(c["audience_type"])
        mappings = None
        if config.get("audiences") is not None:
            mappings = {
                m.stream: m
                for m in (_mapping(raw, sync_mode, audience_type) for raw in c["audiences"])
            }
        return cls(
            access_token=c.get("access_token"),
            advertiser_ids=tuple(str(a) for a in c["advertiser_ids"]),
            api_base_url=str(c["api_base_url"]).rstrip("/"),
            sync_mode=sync_mode,
            audience_type=audience_type,
            mirror_strategy=MirrorStrategy(c["mirror_strategy"]),
            rules=Rules(
                hash_identifiers=bool(c["hash_identifiers"]),
                email_normalization=c["email_normalization"],
                default_phone_region=str(c.get("default_phone_region") or "").upper() or None,
            ),
            mappings=mappings,
            retention_in_days=c.get("retention_in_days"),
            dry_run=bool(c["dry_run"]),
            output_dir=c["output_dir"],
            report_path=c.get("report_path"),
            snapshot_url=c.get("snapshot_url"),
            file_max_ids=int(c["file_max_ids"]),
            segment_batch_size=int(c["segment_batch_size"]),
            max_requests_per_second=float(c["max_requests_per_second"]),
            request_timeout=float(c["request_timeout"]),
            max_retries=int(c["max_retries"]),
            max_retry_seconds=float(c["max_retry_seconds"]),
            partner_warmup_seconds=int(c["partner_warmup_seconds"]),
            create_confirm_seconds=int(c["create_confirm_seconds"]),
            max_new_audiences=int(c["max_new_audiences"]),
            resync_days=float(c["resync_days"]),
            max_removal_percent=float(c["max_removal_percent"]),
            daily_update_operations=int(c["daily_update_operations"]),
            rejects_url=c.get("rejects_url") or None,
        )

    def mapping_for(self, stream: str) -> AudienceMapping | None:
        """The mapping of a stream; None when `audiences` is set and does not list it."""
        if self.mappings is not None:
            return self.mappings.get(stream)
        return AudienceMapping(
            stream=stream,
            audience_name=stream,
            sync_mode=self.sync_mode,
            audience_type=_audience_type(self.sync_mode, self.audience_type),
            identifiers=None,
        )


def _audience_type(mode: SyncMode, wanted: AudienceType) -> AudienceType:
    return mode.forced_audience_type or wanted


def _mapping(
    raw: Mapping[str, Any], sync_mode: SyncMode, audience_type: AudienceType
) -> AudienceMapping:
    identifiers = raw.get("identifiers")
    mode = SyncMode(raw.get("sync_mode") or sync_mode)
    column = raw.get("audience_name_column") or None
    return AudienceMapping(
        stream=raw["stream"],
        audience_name=(
            raw.get("audience_name") or (NAME_VALUE if column else raw["stream"])
        ).strip(),
        sync_mode=mode,
        audience_type=_audience_type(mode, AudienceType(raw.get("audience_type") or audience_type)),
        identifiers=(
            {canonical_contract(k) or k: v for k, v in identifiers.items()} if identifiers else None
        ),
        audience_ids={str(k): str(v) for k, v in (raw.get("audience_ids") or {}).items()},
        remove_column=raw.get("remove_column"),
        audience_name_column=column,
    )
