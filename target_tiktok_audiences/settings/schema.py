"""The target's configuration declared once (CONFIG_SCHEMA): every setting, its type, default
and description, which the SDK, --about, Meltano and the README read."""

from __future__ import annotations

from typing import Any

from singer_sdk import typing as th

from target_tiktok_audiences.client import (
    MAX_USERS_PER_MAPPING,
)
from target_tiktok_audiences.identifiers import CONTRACTS, EMAIL_MODES
from target_tiktok_audiences.modes import AudienceType, MirrorStrategy, SyncMode

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
