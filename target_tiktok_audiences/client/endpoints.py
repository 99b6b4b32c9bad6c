"""TikTokClient: one method per TikTok endpoint, the only place that knows paths and fields."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import requests

from target_tiktok_audiences import timescale
from target_tiktok_audiences.client.api import (
    LIST_PAGE_SIZE,
    SEGMENT_ID_TYPES,
    AudienceRow,
    AudienceStatus,
    CountedCalls,
    NewAudience,
    UserBatch,
    file_md5,
)
from target_tiktok_audiences.client.budget import OPERATIONS, OperationBudget
from target_tiktok_audiences.client.codes import (
    WARMUP_CODES,
    FileExpiredError,
    PermanentError,
    RefusedError,
)
from target_tiktok_audiences.client.files import KeptFiles
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
# An APPEND or REMOVE refused and found done at once was made this recently: the refusal most
# likely answered its processing (see _wait_for_processing).
RACE_SECONDS = 60.0

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
        processing_wait_seconds: float | None = None,
        daily_update_operations: int = 24,
    ) -> None:
        """processing_wait_seconds: how long an APPEND or REMOVE that TikTok refused while the
        audience's previous one is processing waits for it (default: max_retry_seconds)."""
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
        self._budget = OperationBudget(
            daily_update_operations, self._operation_times, self._transport.now
        )
        self._processing_wait = (
            max_retry_seconds if processing_wait_seconds is None else processing_wait_seconds
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

    def now(self) -> datetime:
        return self._transport.now()

    def retrying(self, func: Callable[[], T]) -> T:
        result: T = self._transport.retry_policy(func)()
        return result

    def operations_left(self, advertiser_id: str) -> int | None:
        return self._budget.left(advertiser_id)

    def plan_operations(self, advertiser_id: str, count: int) -> None:
        self._budget.plan(advertiser_id, count)

    def budget_refusal(self, advertiser_id: str, what: str) -> RefusedError:
        return self._budget.refusal(advertiser_id, what)

    def finish(self, report: RunReport) -> None:
        """The operations used and left per advertiser go into the report; kept files go."""
        report.operations = self._budget.summary()
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
                need="list",
            )
            data = require(data, "list", "Listing custom audiences", advertiser_id)
            for row in data.get("list") or []:
                yield AudienceRow(
                    audience_id=str(row.get("audience_id")),
                    name=str(row.get("name") or ""),
                    audience_type=str(row.get("audience_type") or ""),
                    calculate_type=row.get("calculate_type") or None,
                    size=row.get("cover_num"),
                    # Shared-in audiences are listed too (is_creator false); only the creator
                    # can update them. `shared` is also true on the creator's own row when it
                    # shares the audience out: it says nothing about ownership.
                    owned=row.get("is_creator", True) is not False,
                    # Read defensively: a missing or unreadable expiry is "not known".
                    expires=_parse_time(row.get("expired_time")),
                    expiring=row.get("is_expiring") is True,
                )
            total_pages = int((data.get("page_info") or {}).get("total_page") or 1)
            if page >= total_pages:
                return
            page += 1

    def get_audience(self, advertiser_id: str, audience_id: str) -> AudienceStatus:
        rows = self._get_rows(advertiser_id, [audience_id], f"Reading audience {audience_id}")
        row = rows[0] if rows and isinstance(rows[0], dict) else {}
        details = row.get("audience_details") or {}
        history = [h for h in row.get("audience_history") or [] if isinstance(h, dict)]
        # The latest operation; of two in the same second, the one listed later (sort is stable).
        ordered = sorted(history, key=lambda h: str(h.get("opt_time") or ""))
        last = ordered[-1] if ordered else {}
        return AudienceStatus(
            is_valid=details.get("is_valid"),
            size=details.get("cover_num"),
            last_action=last.get("action"),
            last_action_time=_parse_time(last.get("opt_time")),
            # The history's processing flag is not documented in full; an unknown value is
            # read as "still processing" (the stricter reading: no REPLACE is sent then).
            last_action_processing=_processing(last),
            expires=_parse_time(details.get("expired_time")),
            expiring=details.get("is_expiring") is True,
        )

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

    def _operation_times(self, advertiser_id: str) -> list[datetime]:
        """When the advertiser's own customer-file audiences had their update operations, as
        audience_history shows them (get, up to LIST_PAGE_SIZE audiences a call)."""
        ids = [
            r.audience_id
            for r in self.list_audiences(advertiser_id)
            if r.owned and not r.is_partner
        ]
        times: list[datetime] = []
        what = "Counting the update operations of the last 24 h"
        for i in range(0, len(ids), LIST_PAGE_SIZE):
            for row in self._get_rows(advertiser_id, ids[i : i + LIST_PAGE_SIZE], what):
                for entry in (row or {}).get("audience_history") or []:
                    at = _parse_time(entry.get("opt_time")) if isinstance(entry, dict) else None
                    if at is not None and entry.get("action") in OPERATIONS:
                        times.append(at)
        return times

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

        self._budget.take(advertiser_id, f"{action} on audience {audience_id}")
        if action == "REPLACE":
            self._with_files(file_paths, update)
            return
        deadline = timescale.monotonic() + self._processing_wait
        raced = False
        while True:
            try:
                self._with_files(file_paths, update)
                return
            except FileExpiredError:
                raise
            except RefusedError as exc:
                # Whatever the words: a refusal while the audience's previous APPEND or REMOVE
                # is still processing (audience_history says so) waits for it to be done, then
                # is sent again; past the deadline, or in any other state, the refusal stands.
                waited = self._wait_for_processing(
                    advertiser_id, audience_id, deadline, exc, raced=raced
                )
                if not waited:
                    raise
                raced = True

    def _wait_for_processing(
        self,
        advertiser_id: str,
        audience_id: str,
        deadline: float,
        exc: RefusedError,
        *,
        raced: bool,
    ) -> bool:
        """True once the last APPEND or REMOVE is done; False if none was processing or the
        deadline passed first.

        One that finished between the refusal and this look also counts once (`raced` False)
        when it was made less than RACE_SECONDS ago: the refusal most likely answered its
        processing (TikTok does not say; sending once more costs one call).
        """
        pause, waited = 1.0, False
        while True:
            status = self.get_audience(advertiser_id, audience_id)
            recent = status.last_action in ("APPEND", "REMOVE")
            busy = recent and status.last_action_processing
            now = timescale.monotonic()
            if not busy:
                made = status.last_action_time
                just_done = (
                    recent
                    and not raced
                    and made is not None
                    and (self.now() - made).total_seconds() < RACE_SECONDS
                )
                return waited or just_done
            if now >= deadline:
                return False
            wait = min(pause, deadline - now)
            if not waited:
                log.warning(
                    "%s; audience %s in advertiser %s is still processing its last %s: "
                    "waiting for it (at most %.0f s).",
                    str(exc).rstrip("."),
                    audience_id,
                    advertiser_id,
                    status.last_action,
                    deadline - now,
                )
                self.count_retry()
            waited = True
            timescale.sleep(wait)
            pause = min(pause * 2, 30.0)

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
