"""TikTokClient: one method per TikTok endpoint, the only place that knows paths and fields."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import backoff
import requests

from target_tiktok_audiences import timescale
from target_tiktok_audiences.client.api import (
    AudienceRow,
    AudienceStatus,
    CountedCalls,
    NewAudience,
    UserBatch,
    file_md5,
)
from target_tiktok_audiences.client.codes import (
    REFUSED_OTHER,
    REFUSED_UPDATE_PROCESSING,
    WARMUP_CODES,
    FileExpiredError,
    NoAccessError,
    PermanentError,
    RefusedError,
)
from target_tiktok_audiences.client.documented import (
    parse_audience_row,
    parse_audience_status,
)
from target_tiktok_audiences.client.files import KeptFiles
from target_tiktok_audiences.client.limits import LIST_PAGE_SIZE, SEGMENT_ID_TYPES
from target_tiktok_audiences.client.transport import Transport, require

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
# A refused APPEND or REMOVE is sent again for about this long (TikTok documents neither whether
# an update is refused while the last one processes, nor any processing state to wait on).
REFUSAL_RETRY_SECONDS = 120.0
# Refusals whose words may mean "busy": retried. Words naming a lasting cause (the floor, the
# daily limit, an expired or shared-in audience) only pick the hint, and retrying would not help.
_RETRIED_REFUSALS = frozenset({REFUSED_UPDATE_PROCESSING, REFUSED_OTHER})
UPDATE_ACTIONS = ("APPEND", "REMOVE", "REPLACE")  # the update operations TikTok counts a day

log = logging.getLogger("target_tiktok_audiences.client")


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
        refusal_retry_seconds: float = REFUSAL_RETRY_SECONDS,
    ) -> None:
        """refusal_retry_seconds: how long a refused APPEND or REMOVE is sent again (with
        backoff) before that audience is deferred."""
        self._transport = Transport(
            base_url,
            access_token,
            timeout=timeout,
            max_retries=max_retries,
            max_retry_seconds=max_retry_seconds,
            max_requests_per_second=max_requests_per_second,
            session=session,
        )
        self._kept = KeptFiles()  # shared by every view, like the transport
        self._no_access: dict[str, NoAccessError] = {}  # shared by every view (a shallow copy)
        # 2, 4, 8, 16, 30, 30, ... s within the default two minutes; scaled with the total,
        # and in real seconds with the time scale (1 but in tests).
        self._time_scale = real = self._transport.time_scale
        scale = refusal_retry_seconds / REFUSAL_RETRY_SECONDS * real
        self._refusal_retry = backoff.on_exception(
            backoff.expo,
            RefusedError,
            max_time=refusal_retry_seconds * real,
            factor=2 * scale,
            max_value=30 * scale,
            jitter=None,
            giveup=lambda exc: (
                isinstance(exc, FileExpiredError)
                or getattr(exc, "reason", None) not in _RETRIED_REFUSALS
            ),
            on_backoff=self._on_refused,
            logger=None,
        )
        super().__init__(self._transport.total)

    def _throttle(self) -> None:
        self._transport.throttle()

    def _call(
        self, method: str, path: str, what: str, advertiser_id: str | None, **kwargs: Any
    ) -> dict[str, Any] | None:
        retry = kwargs.pop("retry", True)
        send = self._transport.send_retrying if retry else self._transport.send
        family = _family(path)
        blocked = self._no_access.get(family)
        if blocked is not None:  # the app may not use this API: not asked again this run
            raise NoAccessError(
                what,
                path=path,
                advertiser_id=advertiser_id,
                code=blocked.code,
                message=blocked.tiktok_message,
                request_id=blocked.request_id,
            )
        try:
            return send(self._stats, method, path, what, advertiser_id, **kwargs)
        except NoAccessError as exc:
            self._no_access.setdefault(family, exc)
            raise

    def now(self) -> datetime:
        return self._transport.now()

    def retrying(self, func: Callable[[], T]) -> T:
        result: T = self._transport.retry_policy(func)()
        return result

    def finish(self, report: RunReport) -> None:
        """The files kept for a re-upload go."""
        self._kept.clear()

    def _with_files(self, file_paths: Sequence[str], send: Callable[[list[str]], T]) -> T:
        """send(file_paths); on a 40910 (a file expired) the files are uploaded again, once."""
        paths = list(file_paths)
        try:
            result = send(paths)
        except FileExpiredError as exc:
            kept = [self._kept.get(p) for p in paths]
            if not all(kept):
                raise
            log.warning("%s; uploading its files again.", str(exc).rstrip("."))
            self.count_retry()
            paths = [
                self._upload(k.advertiser_id, k.calculate_type, k.path, k.name)
                for k in kept
                if k is not None
            ]
            result = send(paths)
        self._kept.used(list(file_paths))
        return result

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
                need="",  # a bare `code: 0` is retried
            )
            # An ad account with no audiences may answer without `list`: an empty list.
            data = data or {}
            for row in data.get("list") or []:
                if isinstance(row, dict):
                    yield parse_audience_row(row)
            page_info = data.get("page_info")
            total_pages = page_info.get("total_page") if isinstance(page_info, dict) else None
            if not isinstance(total_pages, int) or page >= total_pages:
                return
            page += 1

    def get_audience(self, advertiser_id: str, audience_id: str) -> AudienceStatus:
        rows = self._get_rows(advertiser_id, [audience_id], f"Reading audience {audience_id}")
        row = rows[0] if rows and isinstance(rows[0], dict) else {}
        return parse_audience_status(row, self._transport.secrets)

    def _get_rows(self, advertiser_id: str, audience_ids: list[str], what: str) -> list[Any]:
        """The `dmp/custom_audience/get` rows of up to LIST_PAGE_SIZE audiences."""
        data = self._call(
            "GET",
            PATH_GET,
            what,
            advertiser_id,
            params={
                "advertiser_id": advertiser_id,
                "custom_audience_ids": json.dumps(audience_ids),
            },
            need="list",
        )
        rows: list[Any] = require(data, "list", what, advertiser_id).get("list") or []
        return rows

    def operation_history(self, advertiser_id: str, since: datetime) -> dict[str, list[datetime]]:
        """Per customer-file audience the ad account owns, when its history shows an update
        operation after `since`, in words the client recognises (get, up to LIST_PAGE_SIZE
        audiences a call); TikTok's words are undocumented, and one not recognised shows none."""
        ids = [
            r.audience_id
            for r in self.list_audiences(advertiser_id)
            if r.owned and not r.is_partner
        ]
        shown: dict[str, list[datetime]] = {}
        what = "Counting the update operations of the last 24 h"
        for i in range(0, len(ids), LIST_PAGE_SIZE):
            for row in self._get_rows(advertiser_id, ids[i : i + LIST_PAGE_SIZE], what):
                if not isinstance(row, dict):
                    continue
                details = row.get("audience_details")
                # Matched by id, not by position: TikTok documents no order of the rows.
                audience_id = str((details or {}).get("audience_id") or "")
                status = parse_audience_status(row)
                shown[audience_id] = [
                    op.at
                    for op in status.history
                    if op.kind in UPDATE_ACTIONS and op.at is not None and op.at > since
                ]
        return shown

    def upload_file(self, advertiser_id: str, calculate_type: str, path: Path) -> str:
        file_path = self._upload(advertiser_id, calculate_type, path, path.name)
        self._kept.keep(file_path, advertiser_id, calculate_type, path)
        return file_path

    def _upload(self, advertiser_id: str, calculate_type: str, path: Path, name: str) -> str:
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
            upload=(form, path, name),
            write=True,
            need="file_path",
        )
        return str(require(data, "file_path", what, advertiser_id)["file_path"])

    def create_customer_audience(self, audience: NewAudience) -> str:
        advertiser_id, name, calculate_type = audience.key
        what = f"Creating audience '{name}'"

        def create(file_paths: list[str]) -> str:
            body: dict[str, Any] = {
                "advertiser_id": advertiser_id,
                "custom_audience_name": name,
                "file_paths": file_paths,
                "calculate_type": calculate_type,
            }
            if audience.retention_in_days:
                body["retention_in_days"] = audience.retention_in_days
            data = self._call(
                "POST",
                PATH_CREATE,
                what,
                advertiser_id,
                body=body,
                write=True,
                retry=False,
                audience_call=True,
            )
            created = require(data, "custom_audience_id", what, advertiser_id)
            return str(created["custom_audience_id"])

        return self._with_files(audience.file_paths, create)

    def update_customer_audience(
        self, advertiser_id: str, audience_id: str, file_paths: Sequence[str], action: str
    ) -> None:
        """APPEND, REMOVE or REPLACE the files' users; action is always sent (default: REPLACE).

        Retrying is safe for APPEND and REMOVE. A REPLACE that TikTok applied but whose answer
        was lost is refused on retry as an unfinished replace: the audience is then reported
        as deferred although it holds the new set (uncertain TikTok behaviour).
        """

        def update(paths: list[str]) -> None:
            self._call(
                "POST",
                PATH_UPDATE,
                f"{action} on audience {audience_id}",
                advertiser_id,
                body={
                    "advertiser_id": advertiser_id,
                    "custom_audience_id": audience_id,
                    "file_paths": paths,
                    "action": action,
                },
                write=True,
                audience_call=True,
            )

        if action == "REPLACE":
            # Never sent again here: TikTok refuses a REPLACE while one is unfinished, and the
            # caller falls back to the difference or defers the audience.
            self._with_files(file_paths, update)
            return
        self._refusal_retry(self._with_files)(file_paths, update)

    def _on_refused(self, details: Any) -> None:
        """A refused APPEND or REMOVE, sent again within plan: INFO, not a warning."""
        exc = details["exception"]
        self.count_retry()
        log.info(
            "TikTok refused %s for advertiser %s (%s); it may still be processing the last "
            "update: trying again in %.0f s.",
            exc.what,
            exc.advertiser_id,
            exc.tiktok_message or "no words",
            details["wait"] / self._time_scale,
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
            audience_call=True,
        )
        return str(require(data, "audience_id", what, advertiser_id)["audience_id"])

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
                self._call(
                    "POST",
                    PATH_SEGMENT_MAPPING,
                    what,
                    advertiser_id,
                    body=body,
                    write=True,
                    audience_call=True,
                )
                return
            except PermanentError as exc:
                now = timescale.monotonic()
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
                timescale.sleep(wait)
                delay = min(delay * 2, 30.0)


def _family(path: str) -> str:
    """The API a path belongs to, as far as an app's access goes: the Segment API is one,
    every other path its own."""
    return "/segment/" if path.startswith("/segment/") else path
