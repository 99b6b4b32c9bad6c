"""TikTok Business API v1.3 client: the only package that knows TikTok's URLs, fields and codes.

- `api.py`: TikTok's limits, the `AudienceAPI` seam and its types (what the deliveries see);
- `codes.py`: the official code table, the error classes and the classification of an answer;
- `transport.py`: HTTP, TikTok's envelope, the throttle and the retry policy;
- `documented.py`: every answer field TikTok documents and the client reads, with its source,
  and the reading of list and get rows;
- `endpoints.py`: `TikTokClient`, one method per endpoint, with its path and fields.
"""

from target_tiktok_audiences.client.api import (
    AudienceAPI,
    AudienceRow,
    AudienceStatus,
    CountedCalls,
    NewAudience,
    Operation,
    UserBatch,
    file_md5,
    partner_audience_name,
)
from target_tiktok_audiences.client.codes import (
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
    NoAccessError,
    PartialSuccess,
    PermanentError,
    RefusedError,
    TikTokError,
    TransientError,
    error_for,
)
from target_tiktok_audiences.client.documented import (
    operation_kind,
    parse_audience_row,
    parse_audience_status,
)
from target_tiktok_audiences.client.endpoints import TikTokClient
from target_tiktok_audiences.client.limits import (
    API_PATH_SUFFIX,
    AUDIENCE_NAME_MAX,
    LIST_PAGE_SIZE,
    MAX_FILE_BYTES,
    MAX_FILE_PATHS_PER_CALL,
    MAX_USERS_PER_MAPPING,
    MIN_AUDIENCE_SIZE,
    PARTNER_NAME_MAX,
    SEGMENT_ID_TYPES,
)

__all__ = [
    "API_PATH_SUFFIX",
    "AUDIENCE_NAME_MAX",
    "LIST_PAGE_SIZE",
    "MAX_FILE_BYTES",
    "MAX_FILE_PATHS_PER_CALL",
    "MAX_USERS_PER_MAPPING",
    "MIN_AUDIENCE_SIZE",
    "PARTNER_NAME_MAX",
    "REFUSED_BELOW_MINIMUM",
    "REFUSED_BUDGET",
    "REFUSED_DAILY_LIMIT",
    "REFUSED_EXPIRED",
    "REFUSED_FILE_EXPIRED",
    "REFUSED_NOT_OWNER",
    "REFUSED_OTHER",
    "REFUSED_REPLACE_PROCESSING",
    "REFUSED_UNKNOWN_TYPE",
    "REFUSED_UPDATE_PROCESSING",
    "SEGMENT_ID_TYPES",
    "AudienceAPI",
    "AudienceRow",
    "AudienceStatus",
    "CountedCalls",
    "NewAudience",
    "NoAccessError",
    "Operation",
    "PartialSuccess",
    "PermanentError",
    "RefusedError",
    "TikTokClient",
    "TikTokError",
    "TransientError",
    "UserBatch",
    "error_for",
    "file_md5",
    "operation_kind",
    "parse_audience_row",
    "parse_audience_status",
    "partner_audience_name",
]
