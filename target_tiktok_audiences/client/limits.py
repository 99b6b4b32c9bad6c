"""TikTok's limits and API path. They depend on nothing, so that codes.py and api.py both import
them without a circle."""

API_PATH_SUFFIX = "/open_api/v1.3"

# TikTok's limits, imported by every module that needs them (never restated elsewhere).
LIST_PAGE_SIZE = 100
MAX_FILE_PATHS_PER_CALL = 500  # one create/update takes up to 500 files: a REPLACE is one call
MAX_USERS_PER_MAPPING = 10_000
AUDIENCE_NAME_MAX = 128
PARTNER_NAME_MAX = 70  # TikTok cuts longer partner names to 67 chars + "..."
MIN_AUDIENCE_SIZE = 1_000  # below this TikTok refuses updates and cannot target
MAX_FILE_BYTES = 50 * 1024 * 1024

# The Segment API calls Android's advertising id AAID where the file API says GAID.
SEGMENT_ID_TYPES = {
    "EMAIL_SHA256": "EMAIL_SHA256",
    "PHONE_SHA256": "PHONE_SHA256",
    "IDFA_SHA256": "IDFA_SHA256",
    "IDFA_MD5": "IDFA_MD5",
    "GAID_SHA256": "AAID_SHA256",
    "GAID_MD5": "AAID_MD5",
}
