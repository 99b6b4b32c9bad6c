"""TikTok's documented answers: every field the client reads, per endpoint, with its source.

The client reads nothing outside this table, and the sandbox and the tests' fakes answer with
nothing outside it (tests/test_documented.py). A decision rests only on these fields; where they
cannot tell (is an update still processing? is a REPLACE allowed today?), the call is sent and its
refusal handled. The parsing of list and get rows lives here too, so that a test double's
TikTok-shaped answer goes through the client's own reading.

Sources:
- SDK: TikTok's official business API SDK (tiktok/tiktok-business-api-sdk) models and docs.
- GO: the field descriptions TikTok publishes, as carried by the Go SDK bububa/tiktok-business
  (model/dmp/customaudience/list.go, get.go, file_upload.go; model/dmp/segment_*.go).
- FIXTURE: a real `dmp/custom_audience/get` answer kept in segmentio/action-destinations
  (destinations/tiktok-audiences/__tests__/index.test.ts): history action `create` (lowercase),
  `msg: null`, `action_detail: "0"`, and `type` (not `audience_type`) in audience_details.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from target_tiktok_audiences.client.api import AudienceRow, AudienceStatus, Operation
from target_tiktok_audiences.redact import scrub

ENVELOPE = frozenset({"code", "message", "request_id", "data"})

# An audience as the list and get answers describe it (GO list.go `Audience`; FIXTURE adds
# `type`, which the get answer carries where the list has `audience_type`).
AUDIENCE_FIELDS = frozenset(
    {
        "audience_id",
        "name",
        "audience_type",
        "type",
        "audience_sub_type",
        "calculate_type",
        "cover_num",
        "shared",
        "is_creator",
        "is_valid",
        "is_expiring",
        "is_auto_refresh",
        "owner_id",
        "rule",
        "lookalike_spec",
        "msg",
        "error_msg",
        "create_time",
        "expired_time",
    }
)
# GO get.go `AudienceHistory` and FIXTURE: exactly these; no processing or status flag.
HISTORY_FIELDS = frozenset({"action", "action_detail", "editor", "msg", "opt_time"})
PAGE_INFO_FIELDS = frozenset({"page", "page_size", "total_number", "total_page"})

# data.<field> per endpoint path; nested rows are checked with the sets above.
DATA_FIELDS: dict[str, frozenset[str]] = {
    # SDK user/info model; the client reads no field of it (only the code).
    "/user/info/": frozenset(
        {"core_user_id", "display_name", "email", "avatar_url", "create_time"}
    ),
    "/dmp/custom_audience/file/upload/": frozenset({"file_path"}),  # GO file_upload.go
    "/dmp/custom_audience/create/": frozenset({"custom_audience_id"}),  # GO create.go
    "/dmp/custom_audience/update/": frozenset(),  # nothing the client needs is documented
    "/dmp/custom_audience/list/": frozenset({"list", "page_info"}),  # GO list.go
    "/dmp/custom_audience/get/": frozenset({"list"}),  # GO get.go
    "/segment/audience/": frozenset({"audience_id"}),  # Segment's fixture of a real answer
    "/segment/mapping/": frozenset(),  # SDK: no data fields are documented
}
GET_ROW_FIELDS = frozenset({"audience_details", "audience_history"})


def undocumented(path: str, body: Mapping[str, Any]) -> list[str]:
    """The fields of an answer to `path` that the table above does not hold (dotted names)."""
    extra = [f"{k}" for k in body if k not in ENVELOPE]
    data = body.get("data")
    if not isinstance(data, Mapping):
        return extra
    allowed = DATA_FIELDS.get(path, frozenset())
    extra += [f"data.{k}" for k in data if k not in allowed]
    if isinstance(data.get("page_info"), Mapping):
        extra += [f"data.page_info.{k}" for k in data["page_info"] if k not in PAGE_INFO_FIELDS]
    for row in data.get("list") or []:
        if not isinstance(row, Mapping):
            continue
        if path.endswith("/get/"):
            extra += [f"data.list[].{k}" for k in row if k not in GET_ROW_FIELDS]
            details = row.get("audience_details") or {}
            extra += [
                f"data.list[].audience_details.{k}" for k in details if k not in AUDIENCE_FIELDS
            ]
            for entry in row.get("audience_history") or []:
                extra += [
                    f"data.list[].audience_history[].{k}" for k in entry if k not in HISTORY_FIELDS
                ]
        else:
            extra += [f"data.list[].{k}" for k in row if k not in AUDIENCE_FIELDS]
    return sorted(set(extra))


# -- reading -------------------------------------------------------------------------------

# The history's action words are TikTok's own and undocumented (FIXTURE: `create`): an entry is
# recognised by the operation's word anywhere in it, in any case; an unrecognised one counts
# for nothing, and no decision waits on recognising one.
_KINDS = (
    ("REPLACE", re.compile(r"replace", re.IGNORECASE)),
    ("APPEND", re.compile(r"append", re.IGNORECASE)),
    ("REMOVE", re.compile(r"remove", re.IGNORECASE)),
    ("CREATE", re.compile(r"create", re.IGNORECASE)),
)


def operation_kind(word: object) -> str | None:
    """CREATE, APPEND, REMOVE or REPLACE when the history's word names one, else None."""
    if not isinstance(word, str):
        return None
    return next((kind for kind, pattern in _KINDS if pattern.search(word)), None)


def parse_time(value: object) -> datetime | None:
    """`YYYY-MM-DD HH:MM:SS` (GO); read as UTC, since TikTok documents no zone for it."""
    if not isinstance(value, str) or not value:
        return None
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=timezone.utc)
        except ValueError:
            continue
    return None


def _text(value: object, secrets: Sequence[str] = ()) -> str | None:
    """TikTok's words, stripped of the token (TikTok may quote what it was sent)."""
    text = scrub(str(value).strip(), secrets) if value is not None else ""
    return text or None


def _count(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def parse_audience_row(row: Mapping[str, Any]) -> AudienceRow:
    """One row of `dmp/custom_audience/list` in our own words."""
    return AudienceRow(
        audience_id=str(row.get("audience_id")),
        name=str(row.get("name") or ""),
        audience_type=str(row.get("audience_type") or row.get("type") or ""),
        calculate_type=row.get("calculate_type") or None,
        size=_count(row.get("cover_num")),
        # Shared-in audiences are listed too (is_creator false); only the creator can update
        # them. `shared` is also true on the creator's own row when it shares the audience out.
        owned=row.get("is_creator", True) is not False,
        # Read defensively: a missing or unreadable expiry is "not known".
        expires=parse_time(row.get("expired_time")),
        expiring=row.get("is_expiring") is True,
    )


def parse_history(entries: object, secrets: Sequence[str] = ()) -> tuple[Operation, ...]:
    """audience_history, oldest first (TikTok documents no order; two of one second keep
    the order listed)."""
    ops = [
        Operation(
            word=_text(e.get("action"), secrets) or "",
            kind=operation_kind(e.get("action")),
            at=parse_time(e.get("opt_time")),
            editor=_text(e.get("editor"), secrets),
            msg=_text(e.get("msg"), secrets),
        )
        for e in (entries if isinstance(entries, list) else [])
        if isinstance(e, Mapping)
    ]
    floor = datetime.min.replace(tzinfo=timezone.utc)
    return tuple(sorted(ops, key=lambda op: op.at or floor))


def parse_audience_status(row: Mapping[str, Any], secrets: Sequence[str] = ()) -> AudienceStatus:
    """One row of `dmp/custom_audience/get`: details and history; `secrets` (the token) are
    stripped from TikTok's words."""
    details = row.get("audience_details")
    details = details if isinstance(details, Mapping) else {}
    valid = details.get("is_valid")
    return AudienceStatus(
        is_valid=valid if isinstance(valid, bool) else None,
        size=_count(details.get("cover_num")),
        history=parse_history(row.get("audience_history"), secrets),
        expires=parse_time(details.get("expired_time")),
        expiring=details.get("is_expiring") is True,
        message=_text(details.get("msg"), secrets),
        error_message=_text(details.get("error_msg"), secrets),
    )
