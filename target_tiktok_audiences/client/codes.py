"""TikTok's error codes (the official SDK's table) and what each one means for a run.

Everything raised here is a TikTokError whose text is safe to log: it carries TikTok's message,
the request id and the advertiser, never the token or an identifier.
"""

from __future__ import annotations

import re
from typing import Any

from target_tiktok_audiences.client.limits import API_PATH_SUFFIX

# The official SDK's code table (tiktok/tiktok-business-api-sdk, tiktok_code.py), by action.
# Rate limits, failures inside TikTok, maintenance, write conflicts and tasks still running:
# a retry within the overall deadline may help.
TRANSIENT_CODES = frozenset(
    {
        *(40100, 40016, 40132, 40133, 61000),  # rate limits
        *(50000, 50002),  # server side
        *range(51000, 51100),  # RPC, DMP (51003), internal timeout (51010), segment gateway
        *range(52000, 52300),  # database and storage (DB, RDS, TOS)
        *(53102, 53103),  # (de)serialization
        60001,  # maintenance
        *(40200, 40201, 40202),  # task error, task not ready, write conflict
    }
)
# 40700 (RPC validation error) is a refusal of that call, not transient: retrying it for
# minutes changes nothing.
# The app may not call this endpoint (the Segment API is allow-listed for partners): method
# forbidden, not in allow-list, scope not authorised. Every call of that path fails alike.
NO_ACCESS_CODES = frozenset({40117, 40118, 40130})
PARTIAL_SUCCESS_CODE = 20001  # part of the request was applied
PERMISSION_CODE = 40001  # no permission for this advertiser or endpoint
APP_CREDENTIALS_CODE = 40101  # invalid partner: the app's credentials, not the token
TOKEN_EXPIRED_CODE = 40102
TOKEN_CODES = frozenset({*range(40102, 40110), 40110})  # expired, empty, invalid, ... tokens
# Only these stop the whole run: every other call of the run would fail the same way.
AUTH_CODES = frozenset({PERMISSION_CODE, APP_CREDENTIALS_CODE, *TOKEN_CODES})
FILE_EXPIRED_CODE = 40910  # an uploaded file_path expired before it was used: upload again
PARAMETER_CODE = 40002


HINT_AUTH = (
    "Re-authorise the TikTok app and put the new token in access_token "
    "(TARGET_TIKTOK_AUDIENCES_ACCESS_TOKEN)."
)
HINT_PERMISSION = (
    "Make sure the token's app has the Audience Management permission and access to this "
    "advertiser, or remove the advertiser from advertiser_ids."
)
HINT_TOKEN_EXPIRED = (
    "The access token expired: re-authorise the TikTok app and put the new token in "
    "access_token (TARGET_TIKTOK_AUDIENCES_ACCESS_TOKEN)."
)
HINT_APP_CREDENTIALS = (
    "TikTok does not accept the app's credentials for this call: check that the token belongs "
    "to an app TikTok approved for the Marketing API (and, for partner audiences, the Segment "
    "API), then re-authorise and put the new token in access_token."
)
HINT_NO_ACCESS = (
    "The TikTok app behind access_token has no access to this endpoint: give the app the "
    "Audience Management scope in the TikTok developer portal, re-authorise, and put the new "
    "token in access_token."
)
HINT_NO_SEGMENT_ACCESS = (
    "The TikTok app behind access_token may not use the Segment API (partner audiences): "
    "TikTok opens it to partners on request. Ask TikTok for access, or keep these audiences "
    "as customer-file audiences (sync_mode append or mirror with audience_type "
    "customer_file), which use the customer-file API."
)
HINT_PARAMETER = "Check the audience ids and names in your config; the field is named above."
HINT_NOT_FOUND = (
    "HTTP 404: there is no such address; check api_base_url (TikTok's is "
    f"https://business-api.tiktok.com{API_PATH_SUFFIX})."
)
HINT_UNKNOWN = "This error is not retried; read TikTok's message above, then re-run."
HINT_TRANSIENT = "TikTok kept failing; the run is safe to re-run later."
HINT_NETWORK = (
    "Check api_base_url and the network (proxy, firewall, DNS); the run is safe to re-run."
)


class TikTokError(Exception):
    """A TikTok call failed; str() is one line a user can act on."""

    unreached = ""  # set by not_reached(): the API could not be reached (where, and why)

    def __init__(
        self,
        what: str,
        *,
        advertiser_id: str | None = None,
        code: int | None = None,
        message: str = "",
        request_id: str | None = None,
        hint: str = "",
        said: bool = True,
    ) -> None:
        self.what = what
        self.advertiser_id = advertiser_id
        self.code = code
        self.tiktok_message = message
        self.request_id = request_id
        self.hint = hint
        self.said = said  # False: our own observation (network), not TikTok's words
        self.audience: str | None = None
        super().__init__(self._text())

    def _text(self) -> str:
        where = f" for advertiser {self.advertiser_id}" if self.advertiser_id else ""
        if not self.tiktok_message:
            said = ""
        elif self.said:
            said = f': TikTok said "{self.tiktok_message}"'
        else:
            said = f": {self.tiktok_message}"
        ids = ", ".join(
            part
            for part in (
                f"code {self.code}" if self.code is not None else "",
                f"request_id {self.request_id}" if self.request_id else "",
            )
            if part
        )
        ids = f" ({ids})" if ids else ""
        hint = f". {self.hint}" if self.hint else ""
        audience = f"Audience '{self.audience}': " if self.audience else ""
        if self.unreached:  # the API was not reached at all: that comes first (issue 29)
            doing = f"while {self.what[:1].lower()}{self.what[1:]}{where}"
            return f"{audience}The TikTok API cannot be reached {self.unreached} ({doing}){hint}"
        return f"{audience}{self.what}{where} failed{said}{ids}{hint}"

    def not_reached(self, how: str) -> None:
        """The call never reached the API: `how` says where and why (e.g. a refused port)."""
        self.unreached = how
        self.args = (self._text(),)

    def with_hint(self, hint: str) -> None:
        self.hint = hint
        self.args = (self._text(),)

    def for_audience(self, name: str) -> None:
        """Name the audience the call was for, when `what` does not already."""
        if f"'{name}'" not in self.what:
            self.audience = name
            self.args = (self._text(),)


class TransientError(TikTokError):
    """Rate limits, server errors, timeouts: worth retrying."""

    last_try = False  # True: retrying further would not help (a refused connection, thrice)


class PermanentError(TikTokError):
    """Anything retrying will not fix: stop the run."""


class RefusedError(PermanentError):
    """TikTok refused one audience's update for a reason of that audience (not of the run).

    `reason` is one of REFUSED_* below; the other audiences of the run are still delivered.
    """

    def __init__(self, what: str, *, reason: str, **kwargs: Any) -> None:
        self.reason = reason
        super().__init__(what, **kwargs)


REFUSED_BELOW_MINIMUM = "below_minimum"
REFUSED_REPLACE_PROCESSING = "replace_processing"
REFUSED_UPDATE_PROCESSING = "update_processing"
REFUSED_DAILY_LIMIT = "daily_limit"
REFUSED_NOT_OWNER = "not_owner"
REFUSED_EXPIRED = "expired"
REFUSED_FILE_EXPIRED = "file_expired"
REFUSED_UNKNOWN_TYPE = "unknown_type"
REFUSED_BUDGET = "budget"  # this run's planning: daily_update_operations has none left
REFUSED_OTHER = "other"  # words no hint matched: the outcome is the same, only the hint differs

# TikTok documents no codes for its refusals, and their words vary (help pages, SDK, time):
# a refusal is recognised by the call it answers (`error_for`), and these patterns only pick
# the hint. A miss gives REFUSED_OTHER, never a different outcome. Matched against the
# lower-cased message with thousands separators removed ("1,000" -> "1000").
_REFUSAL_HINTS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"unfinished replace|replace operation is rejected"), REFUSED_REPLACE_PROCESSING),
    (
        re.compile(r"(less|fewer) than 1000|below the minimum|at least 1000|minimum (size|of)"),
        REFUSED_BELOW_MINIMUM,
    ),
    (
        re.compile(r"update operations|operations? per day|daily limit|per 24 hours|quota"),
        REFUSED_DAILY_LIMIT,
    ),
    (
        re.compile(r"still (being )?process|is processing|in progress|not (yet )?finished"),
        REFUSED_UPDATE_PROCESSING,
    ),
    (re.compile(r"not the creator|shared audience|shared with you"), REFUSED_NOT_OWNER),
    (re.compile(r"audience (has |is )?expired|expired audience"), REFUSED_EXPIRED),
)


def refusal_reason(message: str) -> str:
    """The hint for a refusal's words (REFUSED_OTHER when none fits)."""
    text = re.sub(r"(?<=\d),(?=\d{3})", "", message.lower())
    return next(
        (reason for pattern, reason in _REFUSAL_HINTS if pattern.search(text)), REFUSED_OTHER
    )


# A new partner audience rejects mappings for a minute or two with a parameter error and no
# special code (Segment's connector once waited for it); any parameter error on a mapping into
# an audience this run created is therefore retried until partner_warmup_seconds have passed.
WARMUP_CODES = frozenset({PARAMETER_CODE})


class NoAccessError(PermanentError):
    """40117, 40118, 40130: the app may not call this endpoint; every audience of its path
    stops with this one line (deliveries skip the path for the rest of the run)."""

    def __init__(self, what: str, *, path: str, **kwargs: Any) -> None:
        self.path = path
        segment = path.startswith("/segment/")
        super().__init__(what, hint=HINT_NO_SEGMENT_ACCESS if segment else HINT_NO_ACCESS, **kwargs)

    @property
    def family(self) -> str:
        """The endpoint family the app cannot use: partner or customer_file."""
        return "partner" if self.path.startswith("/segment/") else "customer_file"


class PartialSuccess(TikTokError):
    """20001: TikTok applied part of the call. Not a failure of the run: what the call sent
    stays unconfirmed (in flight), so the next run sends it again (idempotent)."""


class FileExpiredError(RefusedError):
    """40910: a file_path expired before it was used; the client uploads the file again."""

    def __init__(self, what: str, **kwargs: Any) -> None:
        super().__init__(what, reason=REFUSED_FILE_EXPIRED, **kwargs)


def error_for(
    what: str,
    status: int,
    code: object,
    message: str,
    request_id: object,
    *,
    advertiser_id: str | None,
    audience_call: bool,
    path: str = "",
) -> TikTokError:
    """The error an answer with a non-zero code (or an error status) stands for.

    audience_call: the call changes one audience (create, update, mapping); then any code
    outside the transient and authorisation sets is that audience's refusal, whatever its
    words, and the run goes on with the others.
    """
    kwargs: dict[str, Any] = {
        "advertiser_id": advertiser_id,
        "code": code,
        "message": message,
        "request_id": request_id,
    }
    if status == 404:  # every path is fixed here: a missing one means a wrong api_base_url
        return PermanentError(what, hint=HINT_NOT_FOUND, **kwargs)
    if code == PARTIAL_SUCCESS_CODE and status < 400:
        return PartialSuccess(what, **kwargs)
    if code in NO_ACCESS_CODES:
        return NoAccessError(what, path=path, **kwargs)
    if code in TRANSIENT_CODES:
        return TransientError(what, **kwargs)
    if code == PERMISSION_CODE:
        return PermanentError(what, hint=HINT_PERMISSION, **kwargs)
    if code == APP_CREDENTIALS_CODE:
        return PermanentError(what, hint=HINT_APP_CREDENTIALS, **kwargs)
    if code == TOKEN_EXPIRED_CODE:
        return PermanentError(what, hint=HINT_TOKEN_EXPIRED, **kwargs)
    if code in TOKEN_CODES:
        return PermanentError(what, hint=HINT_AUTH, **kwargs)
    if audience_call and code == FILE_EXPIRED_CODE:
        return FileExpiredError(what, **kwargs)
    if audience_call:
        return RefusedError(what, reason=refusal_reason(message), **kwargs)
    if code == PARAMETER_CODE:
        return PermanentError(what, hint=HINT_PARAMETER, **kwargs)
    return PermanentError(what, hint=HINT_UNKNOWN, **kwargs)
