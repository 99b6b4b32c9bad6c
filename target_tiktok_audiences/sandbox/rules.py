"""The sandbox's realism rules: TikTok's limits as switchable settings, its codes and its words."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from werkzeug.wrappers import Request

BASE_PATH = "/open_api/v1.3"
ADMIN_PATH = "/_sandbox"
AUDIENCE_TYPE_CUSTOMER_FILE = "Customer File"
AUDIENCE_TYPE_PARTNER = "Partner Audience"
CALCULATE_TYPES = (
    "EMAIL_SHA256",
    "PHONE_SHA256",
    "IDFA_SHA256",
    "IDFA_MD5",
    "GAID_SHA256",
    "GAID_MD5",
)
SEGMENT_ID_TYPES = (
    "EMAIL_SHA256",
    "PHONE_SHA256",
    "IDFA_SHA256",
    "AAID_SHA256",
    "IDFA_MD5",
    "AAID_MD5",
)
UPDATE_ACTIONS = ("APPEND", "REMOVE", "REPLACE")
DEFAULT_TOKENS: dict[str, list[str]] = {
    "sandbox-token": ["7000000000000000001", "7000000000000000002"],
}
MAX_FILE_PATHS = 500
MAX_MAPPING_USERS = 10_000
PARTNER_NAME_MAX = 70  # longer names are cut to 67 characters + "..."
DAY = 86_400.0
# Owner of audiences shared in "from outside": an advertiser no sandbox token manages.
EXTERNAL_ADVERTISER = "7000000000000009999"
# TikTok's own words; TikTok documents no code for it, so the parameter-error code is used.
REPLACE_UNFINISHED = (
    "This replace operation is rejected as there is an existing unfinished replace operation. "
    "Please try again later. Recommend no more than one replace operation per day."
)
# WSGI environ key: seconds a create made under `late_create` or `late_listed` stays unlisted.
CREATE_DELAY = "sandbox.create_delay"

OK, NO_PERMISSION, PARAM_ERROR, RATE_LIMIT, BAD_TOKEN, SERVER_ERROR = (
    0,
    40001,
    40002,
    40100,
    40105,
    50002,
)

Handler = Callable[[Request, str, dict[str, Any]], dict[str, Any]]


class ApiError(Exception):
    """An error answered in TikTok's envelope (HTTP 200 unless ``http`` says otherwise)."""

    def __init__(self, code: int, message: str, http: int = 200) -> None:
        super().__init__(message)
        self.code, self.message, self.http = code, message, http


def param_error(message: str) -> ApiError:
    return ApiError(PARAM_ERROR, message)


@dataclass
class SandboxConfig:
    """Every realism rule is on by default, at TikTok's value; 0 switches a rule off."""

    tokens: dict[str, list[str]] = field(default_factory=lambda: dict(DEFAULT_TOKENS))
    # APPEND, REMOVE and REPLACE may not leave fewer members (a create may).
    min_audience_size: int = 1000
    # How long a CREATE or an update stays processing; a REPLACE waits for the last CREATE/REPLACE.
    replace_cooldown_seconds: float = DAY
    # A new partner audience refuses mappings this long (TikTok: about 1-2 minutes).
    partner_warmup_seconds: float = 90.0
    # APPEND + REMOVE + REPLACE per advertiser in any 24 h (Narrative's documented limit).
    max_updates_per_day: int = 24
    slow_seconds: float = 5.0
    max_upload_bytes: int = 50 * 1024 * 1024
    mapping_rate_limit: int | None = 50  # segment/mapping calls per second per token (TikTok's)
    max_audiences: int = 400  # TikTok's cap per ad account
    # TikTok counts its 1,000 floor on *matched* users (help pages); which users match is
    # decided per digest (deterministic), this share of them; it also sets cover_num. 1: all.
    match_rate: float = 0.7
    # Words of a refusal: "help" (TikTok's help pages), "sdk" (the official SDK's), "novel"
    # (words never seen before), "sandbox" (the sandbox's own, detailed), or "rotate" (each
    # refusal the next of these four, in that order: deterministic).
    refusal_wording: str = "rotate"
    # An uploaded file_path expires (40910) this long after its upload (TikTok: undocumented).
    file_ttl_seconds: float = 3_600.0
    # An APPEND or REMOVE is refused while the audience's previous APPEND or REMOVE is still
    # processing, this long (TikTok leaves it undocumented; the stricter reading).
    update_processing_seconds: float = 2.0
    # audience_history's action words, which TikTok does not document: "lower" (a real answer
    # shows `create`), "enum" (the update enums), "novel" (words never seen), "none" (no
    # history at all), or "rotate" (each answer the next of these four: deterministic).
    history_wording: str = "rotate"


WORDINGS = ("help", "sdk", "novel", "sandbox")
HISTORY_WORDINGS = ("lower", "enum", "novel", "none")
_OPERATIONS = ("CREATE", "APPEND", "REMOVE", "REPLACE")
HISTORY_WORDS: dict[str, dict[str, str]] = {
    "lower": {op: op.lower() for op in _OPERATIONS},
    "enum": {op: op for op in _OPERATIONS},
    "novel": {
        "CREATE": "Customer file uploaded",
        "APPEND": "Users added by file",
        "REMOVE": "Users deleted by file",
        "REPLACE": "File refreshed",
    },
    "none": {},
}
# What each refusal says, per wording; the target must never depend on any of them.
FLOOR_WORDS = {
    "help": "An audience must have at least 1,000 matched users. This update would leave "
    "{matched} matched users.",
    "sdk": "The audience size cannot be less than 1,000 after this operation",
    "novel": "This operation is not supported for the audience at the moment",
    "sandbox": "The audience would have {matched} matched users ({count} uploaded) after "
    "{action}, below the minimum of {minimum} users; nothing was changed",
}
DAILY_WORDS = {
    "help": "You have reached the limit of {limit} custom audience updates for this ad account "
    "in 24 hours. Try again later.",
    "sdk": "Exceeded the maximum number of audience operations. Please try again tomorrow.",
    "novel": "Request rejected for advertiser {advertiser_id} ({limit}/24h)",
    "sandbox": "Advertiser {advertiser_id} has used its {limit} custom audience update "
    "operations (APPEND, REMOVE, REPLACE) of the last 24 hours; nothing was changed; try again "
    "after {after} UTC",
}
PROCESSING_WORDS = {
    "help": "The audience is being processed. Please try again later.",
    "sdk": "Task not ready",
    "novel": "This operation is not supported for the audience at the moment",
    "sandbox": "The previous {previous} of audience {audience_id} is still processing; "
    "{action} is refused until it is done",
}
EXPIRED_WORDS = {
    "help": "This audience has expired. Expired audiences can only be deleted.",
    "sdk": "Audience status is invalid",
    "novel": "This operation is not supported for the audience at the moment",
    "sandbox": "Audience {audience_id} expired on {expired} UTC; it can only be deleted",
}
FILE_EXPIRED = (40910, "File expired")
EXPIRY_DAYS = 365  # without retention_in_days: this long after the audience was last used
EXPIRING_DAYS = 60  # TikTok shows "about to expire" within this many days


# --- small validators: one per concept, each names the field in its message -----------------


def not_creator(audience_id: str, advertiser_id: str) -> ApiError:
    # TikTok documents no code for this; "no permission" is the closest documented one.
    return ApiError(
        NO_PERMISSION,
        f"No permission to operate audience {audience_id}: it was shared with advertiser "
        f"{advertiser_id} by another advertiser; only its creator (is_creator: true) can change it",
    )
