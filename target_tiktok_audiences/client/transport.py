"""The transport: HTTP, TikTok's envelope, the throttle and the retry policy of one client."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import backoff
import requests
import urllib3
from requests_toolbelt import MultipartEncoder

from target_tiktok_audiences.client.codes import (
    HINT_NETWORK,
    HINT_NOT_FOUND,
    HINT_TRANSIENT,
    PermanentError,
    TransientError,
    error_for,
)
from target_tiktok_audiences.redact import scrub
from target_tiktok_audiences.report import CallStats
from target_tiktok_audiences.timescale import time_scale

log = logging.getLogger("target_tiktok_audiences.client")

# A refused connection or an unknown host name is an answer, not a hiccup: a few quick tries
# (a server restarting, a DNS blip), never the long backoff meant for TikTok's own failures.
MAX_TRIES_REFUSED = 3
MAX_TRIES_UNRESOLVED = 2
_LOCAL_HOSTS = frozenset({"localhost", "::1", "0.0.0.0"})
# Bytes read at a time from a request body as it is sent: at urllib3's default (16 KiB) the
# multipart encoder of a 12 MB upload is asked ~800 times, and its Python work per read cost
# more than the bytes (bench/PROFILE.md, issue 21, third round).
SEND_BLOCK = 1 << 18


class _Adapter(requests.adapters.HTTPAdapter):
    """requests' own adapter, sending request bodies SEND_BLOCK bytes at a time."""

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        pool_kwargs.setdefault("blocksize", SEND_BLOCK)
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)


def _session() -> requests.Session:
    session = requests.Session()
    for prefix in ("https://", "http://"):
        session.mount(prefix, _Adapter())
    return session


class Transport:
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
        hostname = parts.hostname or ""
        self.local = hostname in _LOCAL_HOSTS or hostname.startswith("127.")
        self._unanswered = 0  # refused or unresolved connections in a row
        self._clock_offset = timedelta(0)  # TikTok's clock (its Date header) minus ours
        self.timeout = timeout
        self.session = session or _session()
        self.session.headers.update({"Access-Token": access_token})
        self.secrets = (access_token,)  # stripped from TikTok's words before they are shown
        self.total = CallStats()
        self._write_interval = 1.0 / max_requests_per_second
        self._next_write = 0.0
        self._lock = threading.Lock()
        # Waits and the give-up time follow the time scale (1 but in tests); the log lines
        # and messages speak in TikTok's seconds, as they would in production.
        self.time_scale = scale = time_scale()
        # Built once: backoff's decorator adds its handlers each time it is applied.
        self.retry_policy = backoff.on_exception(
            backoff.expo,
            TransientError,
            max_tries=max_retries + 1,
            max_time=max_retry_seconds * scale,
            jitter=backoff.full_jitter,
            factor=scale,
            max_value=60 * scale,
            on_backoff=self._on_backoff,
            on_giveup=self._on_giveup,
            giveup=lambda exc: isinstance(exc, TransientError) and exc.last_try,
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
        text = str(details["exception"])
        stop = "" if text.endswith((".", "?", "!")) else "."
        wait = details["wait"] / self.time_scale
        log.warning("%s%s Retry %d in %.1f s.", text, stop, details["tries"], wait)

    def _on_giveup(self, details: Mapping[str, Any]) -> None:
        exc = details["exception"]
        if not isinstance(exc, TransientError):
            return
        hint = exc.hint or HINT_TRANSIENT
        elapsed = details["elapsed"] / self.time_scale
        exc.with_hint(f"Gave up after {details['tries']} tries in {elapsed:.0f} s. {hint}")

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
        audience_call: bool = False,
    ) -> dict[str, Any] | None:
        """One HTTP call; TikTok's `data`, or None when a success answer carried none.

        audience_call: the call changes one audience, so TikTok's refusal of it is that
        audience's alone (codes.error_for).

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
        except requests.exceptions.ChunkedEncodingError:
            reason = "the connection was dropped in the middle of the answer"
            raise self._network(what, advertiser_id, reason) from None
        except requests.ConnectionError as exc:
            raise self._unanswered_error(exc, what, advertiser_id) from None
        self._unanswered = 0
        self._note_clock(response.headers.get("Date"))
        data = unwrap(
            response.status_code,
            response.headers,
            content,
            what,
            advertiser_id,
            self,
            audience_call=audience_call,
            path=path,
        )
        if need is not None:
            require(data, need, what, advertiser_id)
        return data

    def _note_clock(self, date: str | None) -> None:
        try:
            theirs = parsedate_to_datetime(date) if date else None
        except (TypeError, ValueError):
            theirs = None
        if theirs is not None and theirs.tzinfo is not None:
            self._clock_offset = theirs - datetime.now(timezone.utc)

    def now(self) -> datetime:
        """TikTok's time, as its last answer's Date header said (ours before any answer)."""
        return datetime.now(timezone.utc) + self._clock_offset

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

    def _unanswered_error(
        self, exc: requests.ConnectionError, what: str, advertiser_id: str | None
    ) -> TransientError:
        """A failed connection; a refused one or an unknown host gets only a few tries."""
        text = str(exc).lower()
        if "refused" in text:
            reason, max_tries = "the connection was refused", MAX_TRIES_REFUSED
        elif any(w in text for w in ("resolve", "name or service", "nodename", "getaddrinfo")):
            reason, max_tries = "the host name could not be resolved", MAX_TRIES_UNRESOLVED
        else:
            failed = self._network(what, advertiser_id, "the connection failed")
            failed.not_reached(f"at {self.host} (api_base_url): the connection failed")
            return failed
        error = self._network(what, advertiser_id, reason)
        error.not_reached(f"at {self.host} (api_base_url): {reason}")
        if self.local and max_tries == MAX_TRIES_REFUSED:
            error.with_hint(f"{HINT_NETWORK} Is `tiktok-audiences-sandbox serve` running?")
        self._unanswered += 1
        error.last_try = self._unanswered >= max_tries
        return error


def require(
    data: dict[str, Any] | None, field: str, what: str, advertiser_id: str | None
) -> dict[str, Any]:
    """TikTok's success answer must carry the field we need (`""`: any `data` at all); a bare
    `code: 0` is retried."""
    if data is None or (field and field not in data):
        missing = f"data.{field}" if field else "data"
        raise TransientError(
            what, advertiser_id=advertiser_id, message=f"the answer had no {missing}", said=False
        )
    return data


def unwrap(
    status: int,
    headers: Mapping[str, str],
    content: bytes,
    what: str,
    advertiser_id: str | None,
    transport: Transport,
    *,
    audience_call: bool = False,
    path: str = "",
) -> dict[str, Any] | None:
    """TikTok's envelope: HTTP 200 with a non-zero code is still an error."""
    if 300 <= status < 400:
        where = _redirect_target(headers.get("Location") or "")
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
    # TikTok may quote what it was sent (the token): its words never carry it further.
    message = scrub(str(body.get("message") or ""), transport.secrets)
    request_id = body.get("request_id")
    if request_id is not None:
        request_id = scrub(str(request_id), transport.secrets)
    if code == 0 and status < 400:
        data = body.get("data")
        return data if isinstance(data, dict) else None
    raise error_for(
        what,
        status,
        code,
        message,
        request_id,
        advertiser_id=advertiser_id,
        audience_call=audience_call,
        path=path,
    )


def _redirect_target(location: str) -> str:
    """Host and port of a redirect's Location, or that the port is absent (never its path or
    query, which may hold anything)."""
    target = urlsplit(location)
    if not target.hostname:
        return "another address"
    try:
        port = target.port
    except ValueError:
        return f"{target.hostname} (with a port that is not a number)"
    return f"{target.hostname}:{port}" if port else f"{target.hostname} (no port given)"
