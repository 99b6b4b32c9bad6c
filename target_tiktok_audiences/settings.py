"""Typed view of the target's configuration and the cross-field checks the JSON schema cannot do."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from singer_sdk import typing as th

from target_tiktok_audiences.identifiers import CONTRACTS, EMAIL_MODES, Rules, canonical_contract

DEFAULT_API_BASE_URL = "https://business-api.tiktok.com/open_api/v1.3"
SYNC_MODES = ("mirror", "incremental", "append")
# 50 MB per file at 65 bytes per SHA-256 line is ~770,000 lines; keep a margin.
MAX_FILE_IDS = 750_000
MAX_SEGMENT_BATCH = 10_000

AUDIENCE_MAPPING = th.ObjectType(
    th.Property(
        "stream", th.StringType, required=True, description="Stream name (after stream maps)."
    ),
    th.Property(
        "audience_name",
        th.StringType,
        description="Audience name in TikTok; default: the stream name.",
    ),
    th.Property(
        "audience_ids",
        th.ObjectType(additional_properties=th.StringType),
        description='Existing audience id per advertiser id, e.g. {"7000...": "12345"}.',
    ),
    th.Property(
        "identifiers",
        th.ObjectType(additional_properties=th.StringType),
        description='Contract to column, e.g. {"EMAIL_SHA256": "email", "PHONE_SHA256": "phone"}.',
    ),
    th.Property(
        "remove_column",
        th.StringType,
        description="Boolean column; true means remove this user from the audience.",
    ),
    th.Property(
        "sync_mode",
        th.StringType(allowed_values=list(SYNC_MODES)),
        description="Overrides the global sync_mode for this stream.",
    ),
)

CONFIG_SCHEMA = th.PropertiesList(
    th.Property(
        "access_token",
        th.StringType,
        secret=True,
        title="Access Token",
        description="TikTok Marketing API access token (sent as the Access-Token header). "
        "Required unless dry_run is true.",
    ),
    th.Property(
        "advertiser_ids",
        th.ArrayType(th.StringType),
        required=True,
        title="Advertiser IDs",
        description="Ad accounts to keep every audience in; one audience per advertiser.",
    ),
    th.Property(
        "api_base_url",
        th.StringType,
        default=DEFAULT_API_BASE_URL,
        title="API Base URL",
        description="TikTok Business API base URL; point it at TikTok's sandbox or at the "
        "bundled emulator (tiktok-audiences-sandbox) for tests and demos.",
    ),
    th.Property(
        "sync_mode",
        th.StringType(allowed_values=list(SYNC_MODES)),
        default="mirror",
        title="Sync Mode",
        description="mirror: replace a customer-file audience with the stream's users; "
        "append: add and remove users with files; incremental: add and remove users in "
        "batches through the Segment API (partner audience).",
    ),
    th.Property(
        "hash_identifiers",
        th.BooleanType,
        default=True,
        title="Hash Identifiers",
        description="true: input is plain PII that the target normalises and hashes; "
        "false: input is already hashed (lowercase hex SHA-256 or MD5).",
    ),
    th.Property(
        "email_normalization",
        th.StringType(allowed_values=list(EMAIL_MODES)),
        default="basic",
        title="Email Normalization",
        description="basic: trim and lowercase; tiktok: also drop +suffix and dots of the "
        "local part.",
    ),
    th.Property(
        "default_phone_region",
        th.StringType,
        title="Default Phone Region",
        description="ISO 3166 alpha-2 region (e.g. US) for phone numbers written without a "
        "country code.",
    ),
    th.Property(
        "audiences",
        th.ArrayType(AUDIENCE_MAPPING),
        title="Audiences",
        description="Per-stream mapping: stream, audience_name, audience_ids, identifiers, "
        "remove_column, sync_mode. Without it every stream with identifier columns "
        "(found by name) gets an audience named after the stream.",
    ),
    th.Property(
        "retention_in_days",
        th.IntegerType(minimum=1, maximum=365),
        title="Retention In Days",
        description="Retention passed when a customer-file audience is created (1-365).",
    ),
    th.Property(
        "dry_run",
        th.BooleanType,
        default=False,
        title="Dry Run",
        description="No network at all: write the hashed files and a plan of what would be "
        "sent under output_dir.",
    ),
    th.Property(
        "output_dir",
        th.StringType,
        default="./tiktok-audiences-output",
        title="Output Directory",
        description="Where dry_run writes its files and plan.json.",
    ),
    th.Property(
        "report_path",
        th.StringType,
        title="Report Path",
        description="Write the JSON run report to this file.",
    ),
    th.Property(
        "file_max_ids",
        th.IntegerType(minimum=1, maximum=MAX_FILE_IDS),
        default=500_000,
        title="File Max IDs",
        description="Identifiers per uploaded file (TikTok accepts files up to 50 MB).",
    ),
    th.Property(
        "segment_batch_size",
        th.IntegerType(minimum=1, maximum=MAX_SEGMENT_BATCH),
        default=MAX_SEGMENT_BATCH,
        title="Segment Batch Size",
        description="Users per segment/mapping call (at most 10,000).",
    ),
    th.Property(
        "max_requests_per_second",
        th.NumberType(minimum=0.1),
        default=20,
        title="Max Requests Per Second",
        description="Client-side throttle for write calls.",
    ),
    th.Property(
        "request_timeout",
        th.NumberType(minimum=1),
        default=120,
        title="Request Timeout",
        description="Seconds to wait for one TikTok answer before retrying it.",
    ),
    th.Property(
        "max_retries",
        th.IntegerType(minimum=0, maximum=20),
        default=8,
        title="Max Retries",
        description="Retries of one call after a transient fault (rate limit, 5xx, timeout).",
    ),
    th.Property(
        "max_retry_seconds",
        th.NumberType(minimum=1),
        default=600,
        title="Max Retry Seconds",
        description="Total seconds one call may spend retrying before the run stops.",
    ),
).to_dict()

MAPPING_KEYS = frozenset(
    ("stream", "audience_name", "audience_ids", "identifiers", "remove_column", "sync_mode")
)
_REGION = re.compile(r"^[A-Za-z]{2}$")


@dataclass(frozen=True)
class AudienceMapping:
    """What one stream becomes in TikTok."""

    stream: str
    audience_name: str
    sync_mode: str
    identifiers: dict[str, str] | None  # contract -> column; None: detect by column name
    audience_ids: dict[str, str] = field(default_factory=dict)
    remove_column: str | None = None


@dataclass(frozen=True)
class Settings:
    """Validated configuration."""

    access_token: str | None
    advertiser_ids: tuple[str, ...]
    api_base_url: str
    sync_mode: str
    rules: Rules
    mappings: dict[str, AudienceMapping] | None
    retention_in_days: int | None
    dry_run: bool
    output_dir: str
    report_path: str | None
    file_max_ids: int
    segment_batch_size: int
    max_requests_per_second: float
    request_timeout: float
    max_retries: int
    max_retry_seconds: float

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Settings:
        """Build settings from a config that already passed JSON-schema validation."""
        errors = cross_field_errors(config)
        if errors:
            raise ValueError("; ".join(errors))
        get = config.get
        mappings = None
        if get("audiences") is not None:
            mappings = {m.stream: m for m in (_mapping(r, config) for r in get("audiences"))}
        return cls(
            access_token=get("access_token"),
            advertiser_ids=tuple(str(a) for a in get("advertiser_ids") or ()),
            api_base_url=str(get("api_base_url") or DEFAULT_API_BASE_URL).rstrip("/"),
            sync_mode=get("sync_mode") or "mirror",
            rules=Rules(
                hash_identifiers=bool(get("hash_identifiers", True)),
                email_normalization=get("email_normalization") or "basic",
                default_phone_region=(get("default_phone_region") or "").upper() or None,
            ),
            mappings=mappings,
            retention_in_days=get("retention_in_days"),
            dry_run=bool(get("dry_run", False)),
            output_dir=get("output_dir") or "./tiktok-audiences-output",
            report_path=get("report_path"),
            file_max_ids=int(get("file_max_ids") or 500_000),
            segment_batch_size=int(get("segment_batch_size") or MAX_SEGMENT_BATCH),
            max_requests_per_second=float(get("max_requests_per_second") or 20),
            request_timeout=float(get("request_timeout") or 120),
            max_retries=int(get("max_retries", 8)),
            max_retry_seconds=float(get("max_retry_seconds") or 600),
        )

    def mapping_for(self, stream: str) -> AudienceMapping | None:
        """The mapping of a stream; None when `audiences` is set and does not list it."""
        if self.mappings is not None:
            return self.mappings.get(stream)
        return AudienceMapping(
            stream=stream, audience_name=stream, sync_mode=self.sync_mode, identifiers=None
        )


def _mapping(raw: Mapping[str, Any], config: Mapping[str, Any]) -> AudienceMapping:
    identifiers = raw.get("identifiers")
    return AudienceMapping(
        stream=raw["stream"],
        audience_name=(raw.get("audience_name") or raw["stream"]).strip(),
        sync_mode=raw.get("sync_mode") or config.get("sync_mode") or "mirror",
        identifiers=(
            {canonical_contract(k) or k: v for k, v in identifiers.items()} if identifiers else None
        ),
        audience_ids={str(k): str(v) for k, v in (raw.get("audience_ids") or {}).items()},
        remove_column=raw.get("remove_column"),
    )


def cross_field_errors(config: Mapping[str, Any]) -> list[str]:
    """Checks between settings; each message names the setting to fix."""
    errors: list[str] = []
    advertisers = [str(a) for a in config.get("advertiser_ids") or []]
    if not advertisers:
        errors.append("advertiser_ids: list at least one TikTok advertiser id")
    if len(set(advertisers)) != len(advertisers):
        errors.append("advertiser_ids: an advertiser id is listed twice")
    if any(not a.strip().isdigit() for a in advertisers):
        errors.append('advertiser_ids: advertiser ids are numbers, e.g. "7012345678901234567"')
    if not config.get("dry_run") and not config.get("access_token"):
        errors.append("access_token: required unless dry_run is true")
    region = config.get("default_phone_region")
    if region and not _REGION.match(region):
        errors.append(
            f"default_phone_region: '{region}' is not an ISO 3166 alpha-2 region such as US or GB"
        )
    seen: set[str] = set()
    for i, raw in enumerate(config.get("audiences") or []):
        where = f"audiences[{i}]"
        for key in sorted(set(raw) - MAPPING_KEYS):
            errors.append(f"{where}: unknown key '{key}'; use " + ", ".join(sorted(MAPPING_KEYS)))
        stream = raw.get("stream")
        if stream in seen:
            errors.append(f"{where}.stream: stream '{stream}' is mapped twice")
        seen.add(stream)
        name = raw.get("audience_name")
        if name is not None and not 1 <= len(name.strip()) <= 128:
            errors.append(f"{where}.audience_name: must be 1 to 128 characters")
        for contract, column in (raw.get("identifiers") or {}).items():
            if canonical_contract(contract) is None:
                errors.append(
                    f"{where}.identifiers: unknown contract '{contract}'; use one of "
                    + ", ".join(CONTRACTS)
                )
            if not isinstance(column, str) or not column:
                errors.append(f"{where}.identifiers.{contract}: give the column name as a string")
        if raw.get("identifiers") is not None and not raw.get("identifiers"):
            errors.append(f"{where}.identifiers: map at least one contract to a column")
        canon = [canonical_contract(c) for c in raw.get("identifiers") or {}]
        if len(set(canon)) != len(canon):
            errors.append(f"{where}.identifiers: a contract is mapped twice (AAID_* = GAID_*)")
        for advertiser in raw.get("audience_ids") or {}:
            if str(advertiser) not in advertisers:
                errors.append(
                    f"{where}.audience_ids: advertiser '{advertiser}' is not in advertiser_ids"
                )
        mode = raw.get("sync_mode") or config.get("sync_mode") or "mirror"
        if raw.get("audience_ids") and mode != "incremental":
            contracts = {canonical_contract(c) for c in raw.get("identifiers") or {}}
            if len(contracts) != 1:
                errors.append(
                    f"{where}.audience_ids: a customer-file audience holds one contract; "
                    "map exactly one identifier when you name existing audiences"
                )
    return errors
