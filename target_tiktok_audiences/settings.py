"""The target's configuration: declared once (CONFIG_SCHEMA), a typed view of it, and the
cross-field checks the JSON schema cannot express. Every message names the setting to fix.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from singer_sdk import typing as th
from singer_sdk.typing import DEFAULT_JSONSCHEMA_VALIDATOR

from target_tiktok_audiences.client import (
    API_PATH_SUFFIX,
    AUDIENCE_NAME_MAX,
    MAX_USERS_PER_MAPPING,
    partner_audience_name,
)
from target_tiktok_audiences.identifiers import CONTRACTS, EMAIL_MODES, Rules, canonical_contract
from target_tiktok_audiences.modes import AudienceType, MirrorStrategy, SyncMode
from target_tiktok_audiences.snapshot import snapshot_url_errors
from target_tiktok_audiences.urls import display_url, url_errors

DEFAULT_API_BASE_URL = "https://business-api.tiktok.com/open_api/v1.3"
# 50 MB per file at 65 bytes per SHA-256 line is ~770,000 lines; keep a margin.
MAX_FILE_IDS = 750_000
MAX_AUDIENCES = 400  # per advertiser, TikTok's limit
SYNC_MODES = [m.value for m in SyncMode]
AUDIENCE_TYPES = [t.value for t in AudienceType]
REMOVE_FLAG_HELP = (
    "true, non-zero numbers and the strings true/t/yes/y/1 (any case) remove the user; "
    "false, 0, the strings false/f/no/n/0, empty and null keep it; any other value is "
    "rejected (invalid_remove_flag) and that user is neither added nor kept."
)

AUDIENCE_MAPPING = th.ObjectType(
    th.Property(
        "stream", th.StringType, required=True, description="Stream name (after stream maps)."
    ),
    th.Property(
        "audience_name",
        th.StringType,
        description="Audience name in TikTok; default: the stream name (with "
        "audience_name_column: {value}).",
    ),
    th.Property(
        "audience_name_column",
        th.StringType,
        description="Column whose value names each record's audience: audience_name with "
        "{value} replaced by it (one audience per value). A null or empty value is a "
        "rejection (no_audience_name).",
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
        description="Column that flags a user for removal: " + REMOVE_FLAG_HELP,
    ),
    th.Property(
        "sync_mode",
        th.StringType(allowed_values=SYNC_MODES),
        description="Overrides the global sync_mode for this stream.",
    ),
    th.Property(
        "audience_type",
        th.StringType(allowed_values=AUDIENCE_TYPES),
        description="Overrides the global audience_type for this stream.",
    ),
    additional_properties=False,
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
        th.StringType(allowed_values=SYNC_MODES),
        default=SyncMode.MIRROR.value,
        title="Sync Mode",
        description="mirror: keep the audience equal to the stream's users; append: add and "
        "remove users with files; incremental: add and remove users in batches through the "
        "Segment API (partner audience).",
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
        description='One entry per stream, for example [{"stream": "public-users", '
        '"audience_name": "CRM users", "identifiers": {"EMAIL_SHA256": "email", '
        '"PHONE_SHA256": "phone"}, "remove_column": "unsubscribed"}]. Keys: stream '
        "(required), audience_name, audience_name_column, audience_ids, identifiers, "
        "remove_column, sync_mode, audience_type. Without it, every stream with identifier "
        "columns (found by name) gets an audience named after the stream.",
    ),
    th.Property(
        "retention_in_days",
        th.IntegerType(minimum=1, maximum=365),
        title="Retention In Days",
        description="Days after creation at which a new customer-file audience expires (1-365), "
        "passed when it is created. It fixes the expiry from creation: later updates and use in "
        "ad groups do not extend it. Without it, TikTok expires an audience 365 days after it "
        "was last used or changed.",
    ),
    th.Property(
        "dry_run",
        th.BooleanType,
        default=False,
        title="Dry Run",
        description="Send nothing and write nothing to TikTok or the snapshot store: write the "
        "hashed files and a plan of what would be sent into a new folder under output_dir. "
        "With access_token, TikTok and the snapshots are read (never written) and the plan is "
        "what a real run would send now; without it, there is no network and every audience is "
        "planned as new. Emits no STATE, so a Meltano bookmark never advances on a dry run.",
    ),
    th.Property(
        "output_dir",
        th.StringType,
        default="./tiktok-audiences-output",
        title="Output Directory",
        description="Where dry_run writes each run's folder (files, batches, plan.json).",
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
        th.IntegerType(minimum=1, maximum=MAX_USERS_PER_MAPPING),
        default=MAX_USERS_PER_MAPPING,
        title="Segment Batch Size",
        description="Users per segment/mapping call (at most 10,000).",
    ),
    th.Property(
        "max_requests_per_second",
        th.NumberType(minimum=0.1, maximum=1000),  # type: ignore[arg-type]  # SDK hint too narrow
        default=20,
        title="Max Requests Per Second",
        description="Client-side throttle for write calls (0.1-1000).",
    ),
    th.Property(
        "request_timeout",
        th.NumberType(minimum=1, maximum=3600),
        default=120,
        title="Request Timeout",
        description="Seconds one TikTok answer may take in all before the call is retried "
        "(1-3600).",
    ),
    th.Property(
        "max_retries",
        th.IntegerType(minimum=0, maximum=20),
        default=8,
        title="Max Retries",
        description="Retries of one call after a transient fault (rate limit, 5xx, timeout; 0-20).",
    ),
    th.Property(
        "max_retry_seconds",
        th.NumberType(minimum=1, maximum=86_400),
        default=600,
        title="Max Retry Seconds",
        description="Total seconds one call may spend retrying before the run stops (1-86400).",
    ),
    th.Property(
        "audience_type",
        th.StringType(allowed_values=AUDIENCE_TYPES),
        default=AudienceType.CUSTOMER_FILE.value,
        title="Audience Type",
        description="customer_file or partner: which kind of TikTok audience a mirror or "
        "append mapping keeps (incremental always uses partner).",
    ),
    th.Property(
        "mirror_strategy",
        th.StringType(allowed_values=[s.value for s in MirrorStrategy]),
        default=MirrorStrategy.DIFF.value,
        title="Mirror Strategy",
        description="diff: send only the difference against the snapshot of what TikTok "
        "accepted (APPEND/REMOVE, or add/delete); replace: always REPLACE.",
    ),
    th.Property(
        "snapshot_url",
        th.StringType,
        title="Snapshot URL",
        description="Where mirror snapshots live: a local folder or an fsspec URL "
        "(s3://bucket/prefix). Default: the user data folder. Keep it on persistent storage.",
    ),
    th.Property(
        "resync_days",
        th.NumberType(minimum=0, maximum=3650),
        default=7,
        title="Resync Days",
        description="Mirror by difference sends one full REPLACE when the audience's last full "
        "upload is at least this many days old and TikTok allows a REPLACE: it corrects edits "
        "made in TikTok and any drift. 0: never.",
    ),
    th.Property(
        "max_removal_percent",
        th.NumberType(minimum=0, maximum=100),
        default=50,
        title="Max Removal Percent",
        description="A mirror run that would remove more than this share of an audience's "
        "users leaves that audience unchanged and fails it (a broken query, a partial "
        "extract). 100: no guard.",
    ),
    th.Property(
        "partner_warmup_seconds",
        th.IntegerType(minimum=0, maximum=3600),
        default=180,
        title="Partner Warm-up Seconds",
        description="How long mappings into a just-created partner audience are retried "
        "(TikTok rejects them for a minute or two).",
    ),
    th.Property(
        "create_confirm_seconds",
        th.IntegerType(minimum=0, maximum=3600),
        default=120,
        title="Create Confirm Seconds",
        description="How long an unanswered create is looked up by name before the "
        "audience is created again.",
    ),
    th.Property(
        "max_new_audiences",
        th.IntegerType(minimum=0, maximum=MAX_AUDIENCES),
        default=25,
        title="Max New Audiences",
        description="Audiences one run may create; more stops the run (TikTok allows 400 "
        "per advertiser).",
    ),
    th.Property(
        "rejects_url",
        th.StringType,
        title="Rejects URL",
        description="A folder (local path or fsspec URL such as s3://bucket/prefix) that "
        "receives one JSON Lines file per run of rejected identifiers: stream, key (the "
        "record's key properties), contract, reason; never the value.",
    ),
    th.Property(
        "daily_update_operations",
        th.IntegerType(minimum=0, maximum=1000),
        default=24,
        title="Daily Update Operations",
        description="How many update operations (APPEND, REMOVE, REPLACE) the target may spend "
        "per ad account in any 24 hours. TikTok allows 24. Before an advertiser's first update, "
        "the target counts the operations TikTok shows for the last 24 hours. It plans the "
        "run's updates within what is left, removals of users who left first. An update that "
        "does not fit waits for a later run, and the summary says when it fits. 0 turns the "
        "budget off.",
    ),
).to_dict()

SCHEMA_DEFAULTS: dict[str, Any] = {
    name: prop["default"] for name, prop in CONFIG_SCHEMA["properties"].items() if "default" in prop
}
MAPPING_KEYS = tuple(AUDIENCE_MAPPING.to_dict()["properties"])
LONGEST_CONTRACT = max(CONTRACTS, key=len)
_REGION = re.compile(r"^[A-Za-z]{2}$")
# Printable ASCII, no spaces or control characters; used with fullmatch (`$` accepts a final
# newline, which then reached the HTTP header and its error message).
_TOKEN_OK = re.compile(r"[\x21-\x7e]+")
_DIGITS = re.compile(r"[0-9]{1,32}")  # ASCII only: str.isdigit() accepts full-width digits
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


def _closest(name: str, known: Iterable[str]) -> str:
    match = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"; did you mean '{match[0]}'?" if match else ""


def unknown_key_errors(config: Mapping[str, Any], known_settings: Iterable[str]) -> list[str]:
    """Unknown settings, at the top or in a mapping, with the closest known name."""
    known = sorted(known_settings)
    errors = [
        f"{key}: unknown setting{_closest(key, known)}" for key in sorted(set(config) - set(known))
    ]
    for i, raw in enumerate(config.get("audiences") or []):
        if isinstance(raw, Mapping):
            for key in sorted(set(raw) - set(MAPPING_KEYS)):
                errors.append(
                    f"audiences[{i}]: unknown key '{key}'{_closest(key, MAPPING_KEYS)} "
                    f"(keys: {', '.join(MAPPING_KEYS)})"
                )
    return errors


_REQUIRED = re.compile(r"'([^']{1,80})' is a required property")
_TYPE_WORDS = {
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "an object",
}


def schema_errors(config: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    """The JSON schema's complaints, each naming the setting; a value is shown only when it is
    a number out of bounds (a mistyped value may be the token). Unknown keys are left to
    unknown_key_errors."""
    errors = []
    found = DEFAULT_JSONSCHEMA_VALIDATOR(schema).iter_errors(dict(config))
    for error in sorted(found, key=lambda e: [str(p) for p in e.absolute_path]):
        where = "".join(
            f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path
        ).lstrip(".")
        rule, bounds = error.validator, error.schema
        if rule == "additionalProperties":
            continue
        if rule == "enum" and where == "load_method":  # config_errors says what to do instead
            continue
        if rule in ("minimum", "maximum") and isinstance(bounds, Mapping):
            low, high = bounds.get("minimum"), bounds.get("maximum")
            allowed = (
                f"from {low} to {high}"
                if None not in (low, high)
                else (f"at least {low}" if high is None else f"at most {high}")
            )
            errors.append(
                f"{where}: {float(error.instance):g} is out of bounds; give a number {allowed}"
            )
        elif rule == "type":
            kinds = error.validator_value
            kinds = [kinds] if isinstance(kinds, str) else [k for k in kinds if k != "null"]
            errors.append(f"{where}: must be {' or '.join(_TYPE_WORDS.get(k, k) for k in kinds)}")
        elif rule == "enum":
            allowed = ", ".join(str(v) for v in error.validator_value if v is not None)
            errors.append(f"{where}: must be one of {allowed}")
        elif rule == "required" and (missing := _REQUIRED.match(error.message)):
            errors.append(f"{where + '.' if where else ''}{missing[1]}: required")
        else:
            errors.append(f"{where or 'config'}: {error.message}")
    return errors


def config_errors(config: Mapping[str, Any]) -> list[str]:
    """Checks between settings; each message names the setting to fix."""
    errors: list[str] = []
    advertisers = [str(a) for a in config.get("advertiser_ids") or []]
    if not advertisers:
        errors.append("advertiser_ids: list at least one TikTok advertiser id")
    if len(set(advertisers)) != len(advertisers):
        errors.append("advertiser_ids: an advertiser id is listed twice")
    bad = [(i, a) for i, a in enumerate(advertisers) if not _DIGITS.fullmatch(a)]
    if bad:
        i, value = bad[0]
        # Named as JSON (spaces and look-alike digits show); a long value, perhaps something
        # pasted in the wrong place, by its position only.
        named = json.dumps(value) if len(value) <= 40 else f"entry {i + 1}"
        errors.append(
            f"advertiser_ids: {named} is not an advertiser id: advertiser ids are numbers "
            '(ASCII digits, no spaces), e.g. "7012345678901234567"'
        )
    token = config.get("access_token")
    if not config.get("dry_run") and not token:
        errors.append("access_token: required unless dry_run is true")
    if isinstance(token, str) and token and not _TOKEN_OK.fullmatch(token):
        # Never echo the token: only say what is wrong with it.
        errors.append(
            "access_token: contains whitespace or control characters (often a newline or "
            "space copied with it); paste the token again"
        )
    errors.extend(_url_errors(config.get("api_base_url")))
    errors.extend(snapshot_url_errors(config.get("snapshot_url")))
    errors.extend(url_errors(config.get("rejects_url"), "rejects_url"))
    errors.extend(_number_errors(config))
    if config.get("load_method") not in (None, "append-only"):
        errors.append(
            f"load_method: '{config.get('load_method')}' has no meaning for TikTok audiences; "
            "remove it and choose sync_mode (mirror, append or incremental) instead"
        )
    region = config.get("default_phone_region")
    if region and not _REGION.match(region):
        errors.append(
            f"default_phone_region: '{region}' is not an ISO 3166 alpha-2 region such as US or GB"
        )
    errors.extend(_mapping_errors(config, advertisers))
    return errors


def config_warnings(config: Mapping[str, Any]) -> list[str]:
    """Doubtful but possibly intended settings."""
    url = str(config.get("api_base_url") or DEFAULT_API_BASE_URL).rstrip("/")
    if urlsplit(url).scheme in ("http", "https") and not url.endswith(API_PATH_SUFFIX):
        return [
            f"api_base_url: {display_url(url)} does not end in {API_PATH_SUFFIX}; TikTok's API "
            "and the sandbox both live under that path"
        ]
    return []


def _url_errors(value: object) -> list[str]:
    if value is None:
        return []
    parts = urlsplit(str(value))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [
            "api_base_url: must be an http(s) URL such as "
            f"{DEFAULT_API_BASE_URL} (or the sandbox's http://127.0.0.1:PORT/open_api/v1.3)"
        ]
    try:
        port = parts.port
    except ValueError:  # not a number, or out of range
        port = 0
    if port == 0 or parts.username is not None:
        return [
            "api_base_url: give host and, if needed, a port from 1 to 65535, such as "
            "http://127.0.0.1:8765/open_api/v1.3 (no user or password)"
        ]
    if "?" in str(value) or "#" in str(value):
        return [
            "api_base_url: has a query or fragment ('?…' or '#…'); TikTok's API takes none, and "
            "it may hold a secret, which would be logged; remove it"
        ]
    return []


def _number_errors(config: Mapping[str, Any]) -> list[str]:
    """NaN passes the schema's bounds (every comparison with it is false)."""
    return [
        f"{name}: must be a finite number"
        for name, value in config.items()
        if isinstance(value, float) and not math.isfinite(value)
    ]


def _mapping_errors(config: Mapping[str, Any], advertisers: list[str]) -> list[str]:
    errors: list[str] = []
    seen: dict[str, int] = {}
    audiences: dict[str, str] = {}  # audience name -> stream (its lock, its snapshots)
    global_mode = SyncMode(config.get("sync_mode") or SyncMode.MIRROR.value)
    global_type = AudienceType(config.get("audience_type") or AudienceType.CUSTOMER_FILE.value)
    for i, raw in enumerate(config.get("audiences") or []):
        where = f"audiences[{i}]"
        stream = raw.get("stream")
        if stream in seen:
            errors.append(f"{where}.stream: stream '{stream}' is mapped twice")
        seen[stream] = i
        identifiers = raw.get("identifiers")
        for contract, column in (identifiers or {}).items():
            if canonical_contract(contract) is None:
                errors.append(
                    f"{where}.identifiers: unknown contract '{contract}'; use one of "
                    + ", ".join(CONTRACTS)
                )
            if not isinstance(column, str) or not column:
                errors.append(f"{where}.identifiers.{contract}: give the column name as a string")
        if identifiers is not None and not identifiers:
            errors.append(f"{where}.identifiers: map at least one contract to a column")
        contracts = [c for c in (canonical_contract(k) for k in identifiers or {}) if c]
        if len(set(contracts)) != len(contracts):
            errors.append(f"{where}.identifiers: a contract is mapped twice (AAID_* = GAID_*)")
        for advertiser, audience_id in (raw.get("audience_ids") or {}).items():
            if str(advertiser) not in advertisers:
                errors.append(
                    f"{where}.audience_ids: advertiser '{advertiser}' is not in advertiser_ids"
                )
            if not _DIGITS.fullmatch(str(audience_id)):
                errors.append(
                    f"{where}.audience_ids: the audience id for advertiser {advertiser} must be "
                    'a number (ASCII digits), e.g. "7234567890123456789"'
                )
        mode = SyncMode(raw.get("sync_mode") or global_mode)
        kind = _audience_type(mode, AudienceType(raw.get("audience_type") or global_type))
        if raw.get("audience_ids") and kind is AudienceType.CUSTOMER_FILE and len(contracts) != 1:
            errors.append(
                f"{where}.audience_ids: a customer-file audience holds one contract; "
                "map exactly one identifier when you name existing audiences"
            )
        name = str(raw.get("audience_name") or stream or "").strip()
        if raw.get("audience_name") is not None and not name:
            errors.append(f"{where}.audience_name: must not be empty")
        if raw.get("audience_name_column") is not None:
            errors.extend(_column_errors(where, raw))
            continue  # names come from the data: checked as each value appears
        names = _audience_names(name, contracts, kind)
        longest = max((n for n, _ in names), key=len, default="")
        if kind is AudienceType.CUSTOMER_FILE and len(longest) > AUDIENCE_NAME_MAX:
            errors.append(
                f"{where}.audience_name: the audience name '{longest[:40]}…' would be "
                f"{len(longest)} characters; TikTok allows {AUDIENCE_NAME_MAX}"
            )
        # One audience, one mapping: whatever the contracts or types, one name in one
        # advertiser is one audience (one lock): two mappings would undo each other's users.
        for audience in _names_synced(name, contracts, kind):
            if audiences.get(audience, stream) != stream:
                errors.append(
                    f"{where}: streams '{audiences[audience]}' and '{stream}' would both sync "
                    f"audience '{audience}' in the same advertisers; give one of them another "
                    "audience_name"
                )
                break
            audiences.setdefault(audience, str(stream))
    return errors


def _names_synced(name: str, contracts: list[str], kind: AudienceType) -> list[str]:
    """Every audience name a mapping without audience_name_column may sync (as TikTok stores
    it: a partner name cut to 67 characters and '...')."""
    if kind is AudienceType.PARTNER:
        return [partner_audience_name(name)]
    if not contracts:  # detected from the columns: one contract (name) or several (suffixed)
        return [name, *(f"{name} ({c})" for c in CONTRACTS)]
    return [n for n, _ in _audience_names(name, contracts, kind)]


def _audience_names(name: str, contracts: list[str], kind: AudienceType) -> list[tuple[str, str]]:
    """(audience name, contract) a mapping may sync; '*' when the contract is detected later."""
    if kind is AudienceType.PARTNER:
        return [(name, "*")]
    if not contracts:  # detected from the columns: one contract (name) or several (suffixed)
        return [(name, "*"), (f"{name} ({LONGEST_CONTRACT})", "*")]
    if len(contracts) == 1:
        return [(name, contracts[0])]
    return [(f"{name} ({c})", c) for c in contracts]


def _column_errors(where: str, raw: Mapping[str, Any]) -> list[str]:
    """audience_name_column: one audience per value, so the name must hold the value."""
    column = raw.get("audience_name_column")
    if not isinstance(column, str) or not column:
        return [f"{where}.audience_name_column: give the column name as a string"]
    errors = []
    name = raw.get("audience_name")
    if name is not None and NAME_VALUE not in str(name):
        errors.append(
            f"{where}.audience_name: must contain {NAME_VALUE} when audience_name_column is "
            f'set (e.g. "Segment {NAME_VALUE}"), or every record would go to one audience'
        )
    if raw.get("audience_ids"):
        errors.append(
            f"{where}.audience_ids: cannot be used with audience_name_column (one audience per "
            "value); the audiences are found by name or created"
        )
    return errors
