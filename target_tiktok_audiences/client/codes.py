"""TikTok's error codes (the official SDK's table) and what each one means for a run.

Everything raised here is a TikTokError whose text is safe to log: it carries TikTok's message,
the request id and the advertiser, never the token or an identifier.
"""

from __future__ import annotations

from typing import Any

from target_tiktok_audiences.client.api import API_PATH_SUFFIX

# Rate limits, server faults, maintenance and write conflicts: TikTok says a retry may help.
# 40101 is an auth failure in some sources and "too frequent" in others: retried (bounded),
# and reported as a possible auth problem when the retries run out.
RETRYABLE_CODES = frozenset(
    {40100, 40101, 40016, 40133, 50000, 50002, 51001, 60001, 40200, 40201, 40202, 40700}
)
AUTH_CODES = frozenset({40104, 40105, 40110})
PERMISSION_CODE = 40001
PARAMETER_CODE = 40002


HINT_AUTH = (
    "Re-authorise the TikTok app and put the new token in access_token "
    "(TARGET_TIKTOK_AUDIENCES_ACCESS_TOKEN)."
)
HINT_PERMISSION = (
    "Make sure the token's app has the Audience Management permission and access to this "
    "advertiser, or remove the advertiser from advertiser_ids."
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
        return f"{audience}{self.what}{where} failed{said}{ids}{hint}"

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
REFUSED_DAILY_LIMIT = "daily_limit"
REFUSED_NOT_OWNER = "not_owner"

# TikTok documents no codes for these refusals, only their texts (lower-cased fragments).
_REFUSAL_TEXTS = (
    ("unfinished replace", REFUSED_REPLACE_PROCESSING),
    ("below the minimum", REFUSED_BELOW_MINIMUM),
    ("less than 1000", REFUSED_BELOW_MINIMUM),
    ("fewer than 1000", REFUSED_BELOW_MINIMUM),
    ("update operations per day", REFUSED_DAILY_LIMIT),
    ("daily limit", REFUSED_DAILY_LIMIT),
    ("not the creator", REFUSED_NOT_OWNER),
    ("shared audience", REFUSED_NOT_OWNER),
)
# A new partner audience rejects mappings for a minute or two with a parameter error and no
# special code (Segment's connector once waited for it); any parameter error on a mapping into
# an audience this run created is therefore retried until partner_warmup_seconds have passed.
WARMUP_CODES = frozenset({PARAMETER_CODE})


def error_for(
    what: str, status: int, code: object, message: str, request_id: object, **kwargs: Any
) -> TikTokError:
    """The error a non-zero code (or a 4xx status with TikTok's envelope) stands for."""
    kwargs.update(code=code, message=message, request_id=request_id)
    if status == 404:  # every path is fixed here: a missing one means a wrong api_base_url
        return PermanentError(what, hint=HINT_NOT_FOUND, **kwargs)
    if code in RETRYABLE_CODES:
        return TransientError(what, **kwargs)
    if code in AUTH_CODES:
        return PermanentError(what, hint=HINT_AUTH, **kwargs)
    lowered = message.lower()
    for fragment, reason in _REFUSAL_TEXTS:
        if fragment in lowered:
            return RefusedError(what, reason=reason, **kwargs)
    if code == PERMISSION_CODE:
        return PermanentError(what, hint=HINT_PERMISSION, **kwargs)
    if code == PARAMETER_CODE:
        return PermanentError(what, hint=HINT_PARAMETER, **kwargs)
    return PermanentError(what, hint=HINT_UNKNOWN, **kwargs)
