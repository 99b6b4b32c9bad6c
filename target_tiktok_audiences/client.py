"""TikTok Business API v1.3 client: the only module that knows TikTok's URLs, fields and codes.

Everything it raises is a TikTokError whose text is safe to log: it carries TikTok's message,
the request id and the advertiser, never the token or an identifier.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import backoff
import requests
from requests_toolbelt import MultipartEncoder

PATH_USER_INFO = "/user/info/"
PATH_ADVERTISER_INFO = "/advertiser/info/"
PATH_FILE_UPLOAD = "/dmp/custom_audience/file/upload/"
PATH_CREATE = "/dmp/custom_audience/create/"
PATH_UPDATE = "/dmp/custom_audience/update/"
PATH_LIST = "/dmp/custom_audience/list/"
PATH_SEGMENT_AUDIENCE = "/segment/audience/"
PATH_SEGMENT_MAPPING = "/segment/mapping/"

LIST_PAGE_SIZE = 100
MAX_FILE_PATHS_PER_CALL = 50  # TikTok accepts 500 but recommends fewer than 50 per call
MAX_USERS_PER_MAPPING = 10_000
PARTNER_NAME_MAX = 70  # TikTok cuts longer partner names to 67 chars + "..."

RETRYABLE_CODES = frozenset({40100, 50000, 50002})
AUTH_CODES = frozenset({40101, 40104, 40105, 40110})
PERMISSION_CODE = 40001
PARAMETER_CODE = 40002

# The Segment API calls Android's advertising id AAID where the file API says GAID.
SEGMENT_ID_TYPES = {
    "EMAIL_SHA256": "EMAIL_SHA256",
    "PHONE_SHA256": "PHONE_SHA256",
    "IDFA_SHA256": "IDFA_SHA256",
    "IDFA_MD5": "IDFA_MD5",
    "GAID_SHA256": "AAID_SHA256",
    "GAID_MD5": "AAID_MD5",
}

HINT_AUTH = (
    "Re-authorise the TikTok app and put the new token in access_token "
    "(TARGET_TIKTOK_AUDIENCES_ACCESS_TOKEN)."
)
HINT_PERMISSION = (
    "Make sure the token's app has the Audience Management permission and access to this "
    "advertiser, or remove the advertiser from advertiser_ids."
)
HINT_PARAMETER = "Check the audience ids and names in your config; the field is named above."
HINT_UNKNOWN = "This error is not retried; read TikTok's message above, then re-run."
HINT_TRANSIENT = "TikTok kept failing; the run is safe to re-run later."

log = logging.getLogger("target_tiktok_audiences.client")


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
    ) -> None:
        self.what = what
        self.advertiser_id = advertiser_id
        self.code = code
        self.tiktok_message = message
        self.request_id = request_id
        self.hint = hint
        super().__init__(self._text())

    def _text(self) -> str:
        where = f" for advertiser {self.advertiser_id}" if self.advertiser_id else ""
        said = f': TikTok said "{self.tiktok_message}"' if self.tiktok_message else ""
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
        return f"{self.what}{where} failed{said}{ids}{hint}"


class TransientError(TikTokError):
    """Rate limits, server errors, timeouts: worth retrying."""


class PermanentError(TikTokError):
    """Anything retrying will not fix: stop the run."""


@dataclass
class CallStats:
    """Calls made on behalf of one audience (or in total)."""

    calls: int = 0
    retries: int = 0
    bytes_uploaded: int = 0


@dataclass(frozen=True)
class AudienceRow:
    """One row of the custom-audience list, in our own words."""

    audience_id: str
    name: str
    audience_type: str
    calculate_type: str | None
    size: int | None

    @property
    def is_partner(self) -> bool:
        # TikTok's list does not document the exact audience_type strings; partner (Segment
        # API) audiences are recognised by "partner" in the type, as the sandbox emits.
        return "partner" in self.audience_type.lower()


def partner_audience_name(name: str) -> str:
    """The name TikTok stores for a partner audience (it cuts long names)."""
    return name if len(name) <= PARTNER_NAME_MAX else name[:67] + "..."


def file_md5(path: Path) -> str:
    """MD5 hex of a file, which TikTok wants as file_signature."""
    md5 = hashlib.md5()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            md5.update(chunk)
    return md5.hexdigest()


class TikTokClient:
    """Authenticated, throttled, retrying calls to the Business API."""

    def __init__(
        self,
        base_url: str,
        access_token: str,
        *,
        timeout: float = 120,
        max_retries: int = 8,
        max_retry_seconds: float = 600,
        max_requests_per_second: float = 20,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()
        self.session.headers.update({"Access-Token": access_token})
        self.total = CallStats()
        self.tracker: CallStats | None = None  # the audience the next calls are for
        self._write_interval = 1.0 / max_requests_per_second
        self._next_write = 0.0
        self._lock = threading.Lock()
        self._retrying = backoff.on_exception(
            backoff.expo,
            TransientError,
            max_tries=max_retries + 1,
            max_time=max_retry_seconds,
            jitter=backoff.full_jitter,
            max_value=60,
            on_backoff=self._on_backoff,
            on_giveup=self._on_giveup,
        )

    # -- transport -------------------------------------------------------------------------

    def _count(self, field: str, amount: int = 1) -> None:
        for stats in (self.total, self.tracker):
            if stats is not None:
                setattr(stats, field, getattr(stats, field) + amount)

    def _throttle(self) -> None:
        with self._lock:
            now = time.monotonic()
            wait = self._next_write - now
            self._next_write = max(now, self._next_write) + self._write_interval
        if wait > 0:
            time.sleep(wait)

    def count_retry(self) -> None:
        """A call is being tried again outside the backoff decorator (create-or-find)."""
        self._count("retries")

    def _on_backoff(self, details: Mapping[str, Any]) -> None:
        self._count("retries")
        log.warning(
            "%s; retry %d in %.1f s.", details["exception"], details["tries"], details["wait"]
        )

    @staticmethod
    def _on_giveup(details: Mapping[str, Any]) -> None:
        exc = details["exception"]
        exc.hint = (
            f"Gave up after {details['tries']} tries in {details['elapsed']:.0f} s. "
            + HINT_TRANSIENT
        )
        exc.args = (exc._text(),)

    def _send(
        self,
        method: str,
        path: str,
        what: str,
        advertiser_id: str | None,
        *,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
        upload: tuple[Mapping[str, str], Path, str] | None = None,
        write: bool = False,
    ) -> dict[str, Any]:
        if write:
            self._throttle()
        self._count("calls")
        try:
            if upload is not None:
                form, file_path, file_name = upload
                with file_path.open("rb") as fh:
                    # Streamed from disk: a 50 MB file never sits in memory (requests' files=
                    # would build the whole body there). Opened per attempt, so retries work.
                    body = MultipartEncoder({**form, "file": (file_name, fh, "text/csv")})
                    response = self.session.request(
                        method,
                        self.base_url + path,
                        data=body,
                        headers={"Content-Type": body.content_type},
                        timeout=self.timeout,
                    )
                self._count("bytes_uploaded", file_path.stat().st_size)
            else:
                response = self.session.request(
                    method, self.base_url + path, params=params, json=body, timeout=self.timeout
                )
        except requests.Timeout:
            raise TransientError(
                what,
                advertiser_id=advertiser_id,
                message=f"no answer within {self.timeout:g} s",
            ) from None
        except requests.ConnectionError:
            raise TransientError(
                what, advertiser_id=advertiser_id, message="connection failed or was dropped"
            ) from None
        return _unwrap(response, what, advertiser_id)

    def _call(self, *args: Any, retry: bool = True, **kwargs: Any) -> dict[str, Any]:
        if retry:
            return self._retrying(self._send)(*args, **kwargs)
        return self._send(*args, **kwargs)

    def retrying(self, func: Callable[[], Any]) -> Any:
        """Run func with this client's retry policy (for create-or-find sequences)."""
        return self._retrying(func)()

    # -- checks ----------------------------------------------------------------------------

    def check_token(self) -> None:
        """Fail fast on a missing, invalid or revoked token."""
        self._call("GET", PATH_USER_INFO, "Checking the access token", None)

    def check_advertisers(self, advertiser_ids: Sequence[str]) -> None:
        """Fail fast when the token cannot manage one of the advertisers."""
        for advertiser_id in advertiser_ids:
            data = self._call(
                "GET",
                PATH_ADVERTISER_INFO,
                "Checking access to the advertiser",
                advertiser_id,
                params={"advertiser_ids": json.dumps([advertiser_id])},
            )
            rows = data.get("list")
            if isinstance(rows, list) and not any(
                str(row.get("advertiser_id")) == advertiser_id for row in rows
            ):
                raise PermanentError(
                    "Checking access to the advertiser",
                    advertiser_id=advertiser_id,
                    message="advertiser not returned for this token",
                    hint=HINT_PERMISSION,
                )

    # -- customer-file audiences -----------------------------------------------------------

    def list_audiences(self, advertiser_id: str) -> Iterator[AudienceRow]:
        """Every custom audience of the advertiser, page by page."""
        page = 1
        while True:
            data = self._call(
                "GET",
                PATH_LIST,
                "Listing custom audiences",
                advertiser_id,
                params={"advertiser_id": advertiser_id, "page": page, "page_size": LIST_PAGE_SIZE},
            )
            for row in data.get("list") or []:
                yield AudienceRow(
                    audience_id=str(row.get("audience_id")),
                    name=str(row.get("name") or ""),
                    audience_type=str(row.get("audience_type") or ""),
                    calculate_type=row.get("calculate_type") or None,
                    size=row.get("cover_num"),
                )
            total_pages = int((data.get("page_info") or {}).get("total_page") or 1)
            if page >= total_pages:
                return
            page += 1

    def upload_file(self, advertiser_id: str, calculate_type: str, path: Path) -> str:
        """Upload one file of digests; returns TikTok's opaque file_path."""
        form = {
            "advertiser_id": advertiser_id,
            "calculate_type": calculate_type,
            "file_signature": file_md5(path),
        }
        data = self._call(
            "POST",
            PATH_FILE_UPLOAD,
            f"Uploading a {calculate_type} file",
            advertiser_id,
            upload=(form, path, path.name),
            write=True,
        )
        return str(data["file_path"])

    def create_customer_audience(
        self,
        advertiser_id: str,
        name: str,
        calculate_type: str,
        file_paths: Sequence[str],
        retention_in_days: int | None,
    ) -> str:
        """Create a customer-file audience; not retried here (a retry could duplicate it)."""
        body: dict[str, Any] = {
            "advertiser_id": advertiser_id,
            "custom_audience_name": name,
            "file_paths": list(file_paths),
            "calculate_type": calculate_type,
        }
        if retention_in_days:
            body["retention_in_days"] = retention_in_days
        data = self._call(
            "POST",
            PATH_CREATE,
            f"Creating audience '{name}'",
            advertiser_id,
            body=body,
            write=True,
            retry=False,
        )
        return str(data["custom_audience_id"])

    def update_customer_audience(
        self, advertiser_id: str, audience_id: str, file_paths: Sequence[str], action: str
    ) -> None:
        """APPEND, REMOVE or REPLACE the files' users; action is always sent (default: REPLACE).

        Retrying is safe for APPEND and REMOVE. A REPLACE that TikTok applied but whose answer
        was lost is rejected on retry as a second replace of the day: the run then stops and
        says so, and the audience already holds the new set (uncertain TikTok behaviour).
        """
        self._call(
            "POST",
            PATH_UPDATE,
            f"{action} on audience {audience_id}",
            advertiser_id,
            body={
                "advertiser_id": advertiser_id,
                "custom_audience_id": audience_id,
                "file_paths": list(file_paths),
                "action": action,
            },
            write=True,
        )

    # -- partner audiences (Segment API) ---------------------------------------------------

    def create_partner_audience(self, advertiser_id: str, name: str) -> str:
        """Create a partner audience; not retried here (a retry could duplicate it)."""
        data = self._call(
            "POST",
            PATH_SEGMENT_AUDIENCE,
            f"Creating partner audience '{name}'",
            advertiser_id,
            body={"advertiser_id": advertiser_id, "action": "create", "custom_audience_name": name},
            write=True,
            retry=False,
        )
        return str(data["audience_id"])

    def map_users(
        self,
        advertiser_id: str,
        audience_id: str,
        action: str,
        contracts: Sequence[str],
        users: Sequence[Mapping[str, str]],
    ) -> None:
        """Add or delete users (each {contract: digest}) in one all-or-nothing call."""
        audience_ids = [audience_id]
        batch_data = [
            [{"id": user[c], "audience_ids": audience_ids} if c in user else {} for c in contracts]
            for user in users
        ]
        self._call(
            "POST",
            PATH_SEGMENT_MAPPING,
            f"Sending {len(users)} users ({action}) to audience {audience_id}",
            advertiser_id,
            body={
                "advertiser_ids": [advertiser_id],
                "action": action,
                "id_schema": [SEGMENT_ID_TYPES[c] for c in contracts],
                "batch_data": batch_data,
            },
            write=True,
        )


def _unwrap(response: requests.Response, what: str, advertiser_id: str | None) -> dict[str, Any]:
    """TikTok's envelope: HTTP 200 with a non-zero code is still an error."""
    status = response.status_code
    if status == 429 or status >= 500:
        raise TransientError(what, advertiser_id=advertiser_id, message=f"HTTP {status}")
    try:
        body = response.json()
    except ValueError:
        error = TransientError if status < 400 else PermanentError
        raise error(
            what,
            advertiser_id=advertiser_id,
            message=f"HTTP {status} with an answer that is not JSON",
        ) from None
    if not isinstance(body, dict):
        raise TransientError(what, advertiser_id=advertiser_id, message="unexpected answer")
    code = body.get("code")
    message = str(body.get("message") or "")
    request_id = body.get("request_id")
    if code == 0 and status < 400:
        data = body.get("data")
        return data if isinstance(data, dict) else {}
    kwargs: dict[str, Any] = {
        "advertiser_id": advertiser_id,
        "code": code,
        "message": message,
        "request_id": request_id,
    }
    if code in RETRYABLE_CODES:
        raise TransientError(what, **kwargs)
    if code in AUTH_CODES:
        raise PermanentError(what, hint=HINT_AUTH, **kwargs)
    if code == PERMISSION_CODE:
        raise PermanentError(what, hint=HINT_PERMISSION, **kwargs)
    if code == PARAMETER_CODE:
        raise PermanentError(what, hint=HINT_PARAMETER, **kwargs)
    raise PermanentError(what, hint=HINT_UNKNOWN, **kwargs)
