"""TikTok Business API v1.3 client: the only module that knows TikTok's URLs, fields and codes.

Everything it raises is a TikTokError whose text is safe to log: it carries TikTok's message,
the request id and the advertiser, never the token or an identifier.

`AudienceAPI` is the seam every other module is typed with; `TikTokClient` talks to TikTok,
`dryrun.DryRunClient` writes down what would be sent, and tests use an in-memory fake.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import urlsplit

import backoff
import requests
import urllib3
from requests_toolbelt import MultipartEncoder

from target_tiktok_audiences.report import CallStats

if TYPE_CHECKING:
    from target_tiktok_audiences.report import RunReport

T = TypeVar("T")

PATH_USER_INFO = "/user/info/"
PATH_FILE_UPLOAD = "/dmp/custom_audience/file/upload/"
PATH_CREATE = "/dmp/custom_audience/create/"
PATH_UPDATE = "/dmp/custom_audience/update/"
PATH_LIST = "/dmp/custom_audience/list/"
PATH_GET = "/dmp/custom_audience/get/"
PATH_SEGMENT_AUDIENCE = "/segment/audience/"
PATH_SEGMENT_MAPPING = "/segment/mapping/"
API_PATH_SUFFIX = "/open_api/v1.3"

# TikTok's limits, imported by every module that needs them (never restated elsewhere).
LIST_PAGE_SIZE = 100
MAX_FILE_PATHS_PER_CALL = 500  # one create/update takes up to 500 files: a REPLACE is one call
MAX_USERS_PER_MAPPING = 10_000
AUDIENCE_NAME_MAX = 128
PARTNER_NAME_MAX = 70  # TikTok cuts longer partner names to 67 chars + "..."
MIN_AUDIENCE_SIZE = 1_000  # below this TikTok refuses updates and cannot target
MAX_FILE_BYTES = 50 * 1024 * 1024

# Rate limits, server faults, maintenance and write conflicts: TikTok says a retry may help.
# 40101 is an auth failure in some sources and "too frequent" in others: retried (bounded),
# and reported as a possible auth problem when the retries run out.
RETRYABLE_CODES = frozenset(
    {40100, 40101, 40016, 40133, 50000, 50002, 51001, 60001, 40200, 40201, 40202, 40700}
)
AUTH_CODES = frozenset({40104, 40105, 40110})
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
HINT_NOT_FOUND = (
    "HTTP 404: there is no such address; check api_base_url (TikTok's is "
    f"https://business-api.tiktok.com{API_PATH_SUFFIX})."
)
HINT_UNKNOWN = "This error is not retried; read TikTok's message above, then re-run."
HINT_TRANSIENT = "TikTok kept failing; the run is safe to re-run later."
HINT_NETWORK = (
    "Check api_base_url and the network (proxy, firewall, DNS); the run is safe to re-run."
)

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


@dataclass(frozen=True)
class AudienceRow:
    """One row of the custom-audience list, in our own words."""

    audience_id: str
    name: str
    audience_type: str
    calculate_type: str | None
    size: int | None
    owned: bool = True  # False: shared in by another advertiser; it cannot be updated

    @property
    def is_partner(self) -> bool:
        # TikTok's list does not document the exact audience_type strings; partner (Segment
        # API) audiences are recognised by "partner" in the type, as the sandbox emits.
        return "partner" in self.audience_type.lower()


@dataclass(frozen=True)
class AudienceStatus:
    """What `dmp/custom_audience/get` says of one audience after (or before) an update."""

    is_valid: bool | None
    size: int | None
    last_action: str | None
    last_action_time: datetime | None
    last_action_processing: bool
    expires_at: datetime | None = None  # TikTok's expired_time; size 0 and frozen after it
    is_expiring: bool | None = None  # TikTok's "about to expire" (within 60 days)


@dataclass(frozen=True)
class NewAudience:
    """A customer-file audience to create from uploaded files."""

    advertiser_id: str
    name: str
    calculate_type: str
    file_paths: Sequence[str]
    retention_in_days: int | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return self.advertiser_id, self.name, self.calculate_type


@dataclass(frozen=True)
class UserBatch:
    """Users for one all-or-nothing segment/mapping call: each {contract: digest}."""

    action: str  # add | delete
    contracts: Sequence[str]
    users: Sequence[Mapping[str, str]]


def partner_audience_name(name: str) -> str:
    """The name TikTok stores for a partner audience (it cuts long names)."""
    return name if len(name) <= PARTNER_NAME_MAX else name[: PARTNER_NAME_MAX - 3] + "..."


def file_md5(path: Path) -> str:
    """MD5 hex of a file, which TikTok wants as file_signature."""
    md5 = hashlib.md5()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            md5.update(chunk)
    return md5.hexdigest()


class AudienceAPI(Protocol):
    """Everything the deliveries ask of TikTok; TikTokClient, DryRunClient and test fakes."""

    @property
    def offline(self) -> bool:
        """True when nothing reaches TikTok (dry run): configured audience ids are trusted."""

    @property
    def total(self) -> CallStats:
        """Every call of the run, whichever view made it."""

    def with_stats(self, stats: CallStats) -> AudienceAPI:
        """A view of this client that also counts its calls into `stats` (one audience)."""

    def preflight(self, advertiser_ids: Sequence[str]) -> None:
        """Check the token and every advertiser before any input is read."""

    def list_audiences(self, advertiser_id: str) -> Iterator[AudienceRow]:
        """Every custom audience the advertiser sees, page by page."""

    def get_audience(self, advertiser_id: str, audience_id: str) -> AudienceStatus:
        """Validity, size and the state of the last operation of one audience."""

    def upload_file(self, advertiser_id: str, calculate_type: str, path: Path) -> str:
        """Upload one file of digests; returns TikTok's opaque file_path."""

    def create_customer_audience(self, audience: NewAudience) -> str:
        """Create a customer-file audience; never retried blindly (it could duplicate)."""

    def update_customer_audience(
        self, advertiser_id: str, audience_id: str, file_paths: Sequence[str], action: str
    ) -> None:
        """APPEND, REMOVE or REPLACE the users of the files."""

    def create_partner_audience(self, advertiser_id: str, name: str) -> str:
        """Create a partner (Segment API) audience; never retried blindly."""

    def map_users(
        self, advertiser_id: str, audience_id: str, batch: UserBatch, *, ready: float | None = None
    ) -> None:
        """Add or delete users in one all-or-nothing call (retried through a warm-up)."""

    def retrying(self, func: Callable[[], T]) -> T:
        """Run func under the retry policy (create-or-find sequences)."""

    def count_retry(self) -> None:
        """A call is tried again outside the retry policy."""

    def finish(self, report: RunReport) -> None:
        """The run ended: anything the client still has to say (a dry run writes its plan)."""


Self = TypeVar("Self", bound="CountedCalls")


class CountedCalls:
    """Per-audience views of one client: each view counts its calls into the run's total and
    into the stats it was made for, so deliveries never share a mutable tracker."""

    _stats: tuple[CallStats, ...]
    offline = False

    def __init__(self, total: CallStats) -> None:
        self._stats = (total,)

    @property
    def total(self) -> CallStats:
        """Every call of the run, whichever view made it."""
        return self._stats[0]

    def with_stats(self: Self, stats: CallStats) -> Self:
        view = copy.copy(self)
        view._stats = (*self._stats, stats)
        return view

    def _count(self, field_name: str = "calls", amount: int = 1) -> None:
        for stats in self._stats:
            stats.add(field_name, amount)

    def count_retry(self) -> None:
        self._count("retries")


class _Transport:
    """What every view of one client shares: session, throttle, retry policy, totals."""

    def __init__(
        self,
        base_url: str,
        access_token: str,
        *,
        timeout: float,
        max_retries: int,
        max_retry_seconds: float,
        max_requests_per_second: float,
        session: requests.Session | None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        parts = urlsplit(self.base_url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        self.host = f"{parts.hostname}:{port}"
        self.timeout = timeout
        self.session = session or requests.Session()
        self.session.headers.update({"Access-Token": access_token})
        self.total = CallStats()
        self._write_interval = 1.0 / max_requests_per_second
        self._next_write = 0.0
        self._lock = threading.Lock()
        # Built once: backoff's decorator adds its handlers each time it is applied.
        self.retry_policy = backoff.on_exception(
            backoff.expo,
            TransientError,
            max_tries=max_retries + 1,
            max_time=max_retry_seconds,
            jitter=backoff.full_jitter,
            max_value=60,
            on_backoff=self._on_backoff,
            on_giveup=self._on_giveup,
            logger=None,
        )
        self.send_retrying = self.retry_policy(self.send)

    def throttle(self) -> None:
        with self._lock:
            now = time.monotonic()
            wait = self._next_write - now
            self._next_write = max(now, self._next_write) + self._write_interval
        if wait > 0:
            time.sleep(wait)

    @staticmethod
    def _stats_of(details: Mapping[str, Any]) -> tuple[CallStats, ...]:
        args = details.get("args") or ()
        return args[0] if args and isinstance(args[0], tuple) else ()

    def _on_backoff(self, details: Mapping[str, Any]) -> None:
        for stats in self._stats_of(details):
            stats.add("retries")
        log.warning(
            "%s; retry %d in %.1f s.", details["exception"], details["tries"], details["wait"]
        )

    @staticmethod
    def _on_giveup(details: Mapping[str, Any]) -> None:
        exc = details["exception"]
        if not isinstance(exc, TransientError):
            return
        hint = HINT_AUTH if exc.code == 40101 else exc.hint or HINT_TRANSIENT
        exc.with_hint(
            f"Gave up after {details['tries']} tries in {details['elapsed']:.0f} s. {hint}"
        )

    def send(
        self,
        stats: tuple[CallStats, ...],
        method: str,
        path: str,
        what: str,
        advertiser_id: str | None,
        *,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
        upload: tuple[Mapping[str, str], Path, str] | None = None,
        write: bool = False,
        need: str | None = None,
    ) -> dict[str, Any] | None:
        """One HTTP call; TikTok's `data`, or None when a success answer carried none.

        With `need`, a success answer without `data.<need>` is a TransientError raised here,
        inside the retry policy, so it is retried like a rate limit.
        """
        if write:
            self.throttle()
        for s in stats:
            s.add("calls")
        started = time.monotonic()
        url = self.base_url + path
        try:
            if upload is not None:
                form, file_path, file_name = upload
                with file_path.open("rb") as fh:
                    # Streamed from disk: a 50 MB file never sits in memory (requests' files=
                    # would build the whole body there). Opened per attempt, so retries work.
                    encoder = MultipartEncoder({**form, "file": (file_name, fh, "text/csv")})
                    response = self.session.request(
                        method,
                        url,
                        data=encoder,
                        headers={"Content-Type": encoder.content_type},
                        timeout=self.timeout,
                        allow_redirects=False,
                        stream=True,
                    )
                started = time.monotonic()  # the deadline below covers the answer only
                for s in stats:
                    s.add("bytes_uploaded", file_path.stat().st_size)
            else:
                response = self.session.request(
                    method,
                    url,
                    params=params,
                    json=body,
                    timeout=self.timeout,
                    allow_redirects=False,
                    stream=True,
                )
            with response:
                content = self._read(response, started, what, advertiser_id)
        except requests.Timeout:
            raise self._network(
                what, advertiser_id, f"no answer within {self.timeout:g} s"
            ) from None
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            reason = "the connection was refused" if _refused(exc) else "the connection failed"
            if isinstance(exc, requests.exceptions.ChunkedEncodingError):
                reason = "the connection was dropped in the middle of the answer"
            raise self._network(what, advertiser_id, reason) from None
        data = _unwrap(response.status_code, response.headers, content, what, advertiser_id, self)
        if need is not None:
            _need(data, need, what, advertiser_id)
        return data

    def _read(
        self, response: requests.Response, started: float, what: str, advertiser_id: str | None
    ) -> bytes:
        """The whole answer, within one overall deadline (a trickling answer must not hang).

        read1 returns what has arrived; iter_content would wait for a whole 64 KiB chunk, so
        an answer sent a byte at a time would reach the deadline check only at its end.
        """
        deadline = started + self.timeout
        chunks: list[bytes] = []
        try:
            while chunk := response.raw.read1(64 * 1024, decode_content=True):
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise self._network(
                        what, advertiser_id, f"the answer took longer than {self.timeout:g} s"
                    )
        except urllib3.exceptions.ReadTimeoutError:
            raise self._network(
                what, advertiser_id, f"no answer within {self.timeout:g} s"
            ) from None
        except urllib3.exceptions.ProtocolError:
            raise self._network(
                what, advertiser_id, "the connection was dropped in the middle of the answer"
            ) from None
        return b"".join(chunks)

    def _network(self, what: str, advertiser_id: str | None, reason: str) -> TransientError:
        return TransientError(
            what,
            advertiser_id=advertiser_id,
            message=f"{reason} at {self.host} (api_base_url)",
            hint=HINT_NETWORK,
            said=False,
        )


def _refused(exc: Exception) -> bool:
    return "refused" in str(exc).lower()


class TikTokClient(CountedCalls):
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
        self._transport = _Transport(
            base_url,
            access_token,
            timeout=timeout,
            max_retries=max_retries,
            max_retry_seconds=max_retry_seconds,
            max_requests_per_second=max_requests_per_second,
            session=session,
        )
        super().__init__(self._transport.total)

    def _throttle(self) -> None:
        self._transport.throttle()

    def _call(
        self, method: str, path: str, what: str, advertiser_id: str | None, **kwargs: Any
    ) -> dict[str, Any] | None:
        retry = kwargs.pop("retry", True)
        send = self._transport.send_retrying if retry else self._transport.send
        return send(self._stats, method, path, what, advertiser_id, **kwargs)

    def retrying(self, func: Callable[[], T]) -> T:
        result: T = self._transport.retry_policy(func)()
        return result

    def finish(self, report: RunReport) -> None:
        """Nothing to add: TikTok has everything."""

    # -- checks ----------------------------------------------------------------------------

    def preflight(self, advertiser_ids: Sequence[str]) -> None:
        self._call("GET", PATH_USER_INFO, "Checking the access token", None)
        for advertiser_id in advertiser_ids:
            # A one-row audience list needs exactly the Audience Management scope we use;
            # advertiser/info would need Ad Account Management too.
            self._call(
                "GET",
                PATH_LIST,
                "Checking access to the advertiser's audiences",
                advertiser_id,
                params={"advertiser_id": advertiser_id, "page": 1, "page_size": 1},
            )
        log.info("Access token accepted for advertisers %s.", ", ".join(advertiser_ids))

    # -- customer-file audiences -----------------------------------------------------------

    def list_audiences(self, advertiser_id: str) -> Iterator[AudienceRow]:
        page = 1
        while True:
            data = self._call(
                "GET",
                PATH_LIST,
                "Listing custom audiences",
                advertiser_id,
                params={"advertiser_id": advertiser_id, "page": page, "page_size": LIST_PAGE_SIZE},
                need="list",
            )
            data = _need(data, "list", "Listing custom audiences", advertiser_id)
            for row in data.get("list") or []:
                yield AudienceRow(
                    audience_id=str(row.get("audience_id")),
                    name=str(row.get("name") or ""),
                    audience_type=str(row.get("audience_type") or ""),
                    calculate_type=row.get("calculate_type") or None,
                    size=row.get("cover_num"),
                    # Shared-in audiences are listed too; only the creator can update them.
                    owned=row.get("is_creator", True) is not False and not row.get("shared"),
                )
            total_pages = int((data.get("page_info") or {}).get("total_page") or 1)
            if page >= total_pages:
                return
            page += 1

    def get_audience(self, advertiser_id: str, audience_id: str) -> AudienceStatus:
        what = f"Reading audience {audience_id}"
        data = self._call(
            "GET",
            PATH_GET,
            what,
            advertiser_id,
            params={
                "advertiser_id": advertiser_id,
                "custom_audience_ids": json.dumps([audience_id]),
            },
            need="list",
        )
        rows = _need(data, "list", what, advertiser_id).get("list") or []
        row = rows[0] if rows and isinstance(rows[0], dict) else {}
        details = row.get("audience_details") or {}
        history = [h for h in row.get("audience_history") or [] if isinstance(h, dict)]
        last = max(history, key=lambda h: str(h.get("opt_time") or ""), default={})
        return AudienceStatus(
            is_valid=details.get("is_valid"),
            size=details.get("cover_num"),
            last_action=last.get("action"),
            last_action_time=_parse_time(last.get("opt_time")),
            # The history's processing flag is not documented in full; an unknown value is
            # read as "still processing" (the stricter reading: no REPLACE is sent then).
            last_action_processing=_processing(last),
            # Expiry fields are read defensively: absent or malformed means unknown.
            expires_at=_parse_time(details.get("expired_time")),
            is_expiring=details.get("is_expiring")
            if isinstance(details.get("is_expiring"), bool)
            else None,
        )

    def upload_file(self, advertiser_id: str, calculate_type: str, path: Path) -> str:
        what = f"Uploading a {calculate_type} file"
        form = {
            "advertiser_id": advertiser_id,
            "calculate_type": calculate_type,
            "file_signature": file_md5(path),
        }
        data = self._call(
            "POST",
            PATH_FILE_UPLOAD,
            what,
            advertiser_id,
            upload=(form, path, path.name),
            write=True,
            need="file_path",
        )
        return str(_need(data, "file_path", what, advertiser_id)["file_path"])

    def create_customer_audience(self, audience: NewAudience) -> str:
        advertiser_id, name, calculate_type = audience.key
        file_paths, retention_in_days = audience.file_paths, audience.retention_in_days
        what = f"Creating audience '{name}'"
        body: dict[str, Any] = {
            "advertiser_id": advertiser_id,
            "custom_audience_name": name,
            "file_paths": list(file_paths),
            "calculate_type": calculate_type,
        }
        if retention_in_days:
            body["retention_in_days"] = retention_in_days
        data = self._call(
            "POST", PATH_CREATE, what, advertiser_id, body=body, write=True, retry=False
        )
        return str(_need(data, "custom_audience_id", what, advertiser_id)["custom_audience_id"])

    def update_customer_audience(
        self, advertiser_id: str, audience_id: str, file_paths: Sequence[str], action: str
    ) -> None:
        """APPEND, REMOVE or REPLACE the files' users; action is always sent (default: REPLACE).

        Retrying is safe for APPEND and REMOVE. A REPLACE that TikTok applied but whose answer
        was lost is refused on retry as an unfinished replace: the audience is then reported
        as deferred although it holds the new set (uncertain TikTok behaviour).
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
        what = f"Creating partner audience '{name}'"
        data = self._call(
            "POST",
            PATH_SEGMENT_AUDIENCE,
            what,
            advertiser_id,
            body={"advertiser_id": advertiser_id, "action": "create", "custom_audience_name": name},
            write=True,
            retry=False,
        )
        return str(_need(data, "audience_id", what, advertiser_id)["audience_id"])

    def map_users(
        self, advertiser_id: str, audience_id: str, batch: UserBatch, *, ready: float | None = None
    ) -> None:
        action, contracts, users = batch.action, batch.contracts, batch.users
        audience_ids = [audience_id]
        batch_data = [
            [{"id": user[c], "audience_ids": audience_ids} if c in user else {} for c in contracts]
            for user in users
        ]
        body = {
            "advertiser_ids": [advertiser_id],
            "action": action,
            "id_schema": [SEGMENT_ID_TYPES[c] for c in contracts],
            "batch_data": batch_data,
        }
        what = f"Sending {len(users):,} users ({action}) to audience {audience_id}"
        delay = 2.0
        while True:
            try:
                self._call("POST", PATH_SEGMENT_MAPPING, what, advertiser_id, body=body, write=True)
                return
            except PermanentError as exc:
                now = time.monotonic()
                if ready is None or exc.code not in WARMUP_CODES or now >= ready:
                    raise
                wait = min(delay, ready - now)
                log.warning(
                    "Partner audience %s in advertiser %s is new and does not take users yet "
                    "(TikTok needs a minute or two); trying again in %.0f s.",
                    audience_id,
                    advertiser_id,
                    wait,
                )
                self.count_retry()
                time.sleep(wait)
                delay = min(delay * 2, 30.0)


def _need(
    data: dict[str, Any] | None, field: str, what: str, advertiser_id: str | None
) -> dict[str, Any]:
    """TikTok's success answer must carry the field we need; a bare `code: 0` is retried."""
    if data is None or field not in data:
        raise TransientError(
            what, advertiser_id=advertiser_id, message=f"the answer had no data.{field}", said=False
        )
    return data


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=timezone.utc)
        except ValueError:
            continue
    return None


def _processing(entry: Mapping[str, Any]) -> bool:
    if not entry:
        return False
    for key in ("is_processing", "processing"):
        if isinstance(entry.get(key), bool):
            return bool(entry[key])
    status = str(entry.get("status") or entry.get("opt_status") or "").upper()
    if status:
        return status not in {"DONE", "FINISHED", "SUCCESS", "SUCCEEDED", "COMPLETED", "FAILED"}
    return True


def _unwrap(
    status: int,
    headers: Mapping[str, str],
    content: bytes,
    what: str,
    advertiser_id: str | None,
    transport: _Transport,
) -> dict[str, Any] | None:
    """TikTok's envelope: HTTP 200 with a non-zero code is still an error."""
    if 300 <= status < 400:
        target = urlsplit(headers.get("Location") or "")
        where = f"{target.hostname}:{target.port}" if target.hostname else "another address"
        raise PermanentError(
            what,
            advertiser_id=advertiser_id,
            message=f"{transport.host} (api_base_url) answered with a redirect to {where}, "
            "which is not followed so that the token stays with TikTok",
            hint="Set api_base_url to the final address of the API.",
            said=False,
        )
    if status == 429 or status >= 500:
        # A status (often a proxy's HTML page) is not TikTok's words: said=False.
        raise TransientError(
            what,
            advertiser_id=advertiser_id,
            message=f"HTTP {status} from {transport.host} (api_base_url)",
            said=False,
        )
    try:
        body = json.loads(content)
    except ValueError:
        error = TransientError if status < 400 else PermanentError
        raise error(
            what,
            advertiser_id=advertiser_id,
            message=f"HTTP {status} from {transport.host} with an answer that is not complete JSON",
            hint=HINT_NOT_FOUND if status == 404 else "",
            said=False,
        ) from None
    if not isinstance(body, dict):
        raise TransientError(what, advertiser_id=advertiser_id, message="unexpected answer")
    code = body.get("code")
    message = str(body.get("message") or "")
    request_id = body.get("request_id")
    if code == 0 and status < 400:
        data = body.get("data")
        return data if isinstance(data, dict) else None
    kwargs: dict[str, Any] = {
        "advertiser_id": advertiser_id,
        "code": code,
        "message": message,
        "request_id": request_id,
    }
    if status == 404:  # every path is fixed here: a missing one means a wrong api_base_url
        raise PermanentError(what, hint=HINT_NOT_FOUND, **kwargs)
    if code in RETRYABLE_CODES:
        raise TransientError(what, **kwargs)
    if code in AUTH_CODES:
        raise PermanentError(what, hint=HINT_AUTH, **kwargs)
    lowered = message.lower()
    for fragment, reason in _REFUSAL_TEXTS:
        if fragment in lowered:
            raise RefusedError(what, reason=reason, **kwargs)
    if code == PERMISSION_CODE:
        raise PermanentError(what, hint=HINT_PERMISSION, **kwargs)
    if code == PARAMETER_CODE:
        raise PermanentError(what, hint=HINT_PARAMETER, **kwargs)
    raise PermanentError(what, hint=HINT_UNKNOWN, **kwargs)
