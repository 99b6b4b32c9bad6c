"""Customer-file endpoints (dmp/custom_audience/*): upload, create, update, list, get."""

from __future__ import annotations

import math
import secrets
from typing import Any

from werkzeug.wrappers import Request

from .base import SandboxBase
from .checks import (
    _time,
    check_choice,
    check_int,
    check_list,
    check_string,
    digest_length,
    json_list_param,
    scan_upload,
)
from .rules import (
    AUDIENCE_TYPE_CUSTOMER_FILE,
    CALCULATE_TYPES,
    CREATE_DELAY,
    DAILY_WORDS,
    DAY,
    FILE_EXPIRED,
    FLOOR_WORDS,
    MAX_FILE_PATHS,
    PROCESSING_WORDS,
    REPLACE_UNFINISHED,
    UPDATE_ACTIONS,
    ApiError,
    param_error,
)


class CustomerFileEndpoints(SandboxBase):
    """Files in, audiences out; the 1,000 floor (matched users), the daily operations, the
    REPLACE cooldown, the APPEND/REMOVE processing window and expired file paths live here."""

    def files(
        self, body: dict[str, Any], advertiser_id: str, calculate_type: str
    ) -> list[dict[str, Any]]:
        """file_paths: 1..500 uploads of this advertiser, all of the audience's calculate_type."""
        rows = []
        for i, fp in enumerate(check_list(body.get("file_paths"), "file_paths", 1, MAX_FILE_PATHS)):
            row = self.store.file(fp) if isinstance(fp, str) else None
            if row is None or row["advertiser_id"] != advertiser_id:
                raise param_error(
                    f"file_paths[{i}]: no uploaded file with this path for "
                    f"advertiser {advertiser_id}"
                )
            ttl = self.config.file_ttl_seconds
            if ttl > 0 and self.clock.now() - row["created_at"] > ttl:
                raise ApiError(*FILE_EXPIRED)
            if row["calculate_type"] != calculate_type:
                raise param_error(
                    f"file_paths[{i}]: file has calculate_type "
                    f"{row['calculate_type']}, expected {calculate_type}"
                )
            rows.append(row)
        return rows

    def apply_files(
        self, c: Any, audience: dict[str, Any], action: str, files: list[dict[str, Any]]
    ) -> int:
        """Apply files to members inside an open transaction; returns the new member count."""
        aid, id_type = audience["audience_id"], audience["calculate_type"]
        delta = -self.store.clear_members(c, aid) if action == "REPLACE" else 0
        for f in files:
            digests = self.store.iter_digests(f["stored_name"])
            changed = self.store.apply_digests(c, aid, id_type, digests, remove=action == "REMOVE")
            delta += -changed if action == "REMOVE" else changed
        return self.store.set_count(c, aid, delta)

    def file_upload(self, request: Request, token: str, call: dict[str, Any]) -> dict[str, Any]:
        # werkzeug spools big uploads to a temp file; scan_upload stops reading past the limit.
        limit, form, uploads = self.config.max_upload_bytes, request.form, request.files
        advertiser_id = call["advertiser_id"] = self.advertiser(token, form.get("advertiser_id"))
        calculate_type = check_choice(form.get("calculate_type"), "calculate_type", CALCULATE_TYPES)
        upload = uploads.get("file")
        if upload is None:
            raise param_error("file: required (multipart file field)")
        file_name = upload.filename or ""
        if not file_name.endswith((".csv", ".txt")):
            raise param_error("file: file name must end in .csv or .txt")
        signature = check_string(form.get("file_signature"), "file_signature", 1, 64)
        stored_name = secrets.token_hex(16) + ".txt"
        dest = self.store.files_dir / stored_name
        try:
            with dest.open("wb") as out:
                md5, size, lines, error = scan_upload(
                    upload.stream, out, digest_length(calculate_type), limit
                )
            call["lines"] = lines
            if size > limit:
                raise param_error(f"file: larger than the {limit} byte limit")
            if size == 0:
                raise param_error("file: the file is empty")
            if signature != md5:
                raise param_error("file_signature: does not match the MD5 hex digest of the file")
            if error:
                raise param_error(f"file: {error} ({calculate_type})")
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
        file_path = f"dmp/{advertiser_id}/{secrets.token_hex(12)}/{file_name}"
        self.store.add_file(
            {
                "file_path": file_path,
                "advertiser_id": advertiser_id,
                "calculate_type": calculate_type,
                "file_name": file_name,
                "line_count": lines,
                "size_bytes": size,
                "md5": md5,
                "stored_name": stored_name,
                "created_at": self.clock.now(),
            }
        )
        return {"file_path": file_path}

    def audience_create(self, request: Request, token: str, call: dict[str, Any]) -> dict[str, Any]:
        body = self.json_body(request)
        advertiser_id = call["advertiser_id"] = self.advertiser(token, body.get("advertiser_id"))
        name = check_string(body.get("custom_audience_name"), "custom_audience_name", 1, 128)
        calculate_type = check_choice(body.get("calculate_type"), "calculate_type", CALCULATE_TYPES)
        retention = check_int(body.get("retention_in_days"), "retention_in_days", 1, 365)
        files = self.files(body, advertiser_id, calculate_type)
        call.update(files=len(files), lines=sum(f["line_count"] for f in files))
        self.check_room(advertiser_id)
        with self.store.transaction() as c:
            audience_id = self.store.create_audience(
                c,
                advertiser_id=advertiser_id,
                name=name,
                calculate_type=calculate_type,
                audience_type=AUDIENCE_TYPE_CUSTOMER_FILE,
                retention_in_days=retention,
                visible_after=request.environ.get(CREATE_DELAY, 0.0),
            )
            audience = {"audience_id": audience_id, "calculate_type": calculate_type}
            count = self.apply_files(c, audience, "APPEND", files)
            self.store.add_history(c, audience_id, "CREATE", [f["file_path"] for f in files], count)
        return {"custom_audience_id": audience_id}

    def audience_update(self, request: Request, token: str, call: dict[str, Any]) -> dict[str, Any]:
        body = self.json_body(request)
        advertiser_id = call["advertiser_id"] = self.advertiser(token, body.get("advertiser_id"))
        audience = self.own_audience(
            body.get("custom_audience_id"), advertiser_id, "custom_audience_id"
        )
        if audience["audience_type"] != AUDIENCE_TYPE_CUSTOMER_FILE:
            raise param_error(
                f"custom_audience_id: audience {audience['audience_id']} is a "
                f"{audience['audience_type']}; only customer-file audiences can be "
                "updated with files"
            )
        # TikTok's default action is REPLACE when the field is absent.
        action = call["action"] = check_choice(
            body.get("action", "REPLACE"), "action", UPDATE_ACTIONS
        )
        self.check_not_expired(audience)
        files = self.files(body, advertiser_id, audience["calculate_type"])
        call.update(files=len(files), lines=sum(f["line_count"] for f in files))
        self.check_daily_updates(advertiser_id)
        if action == "REPLACE":
            self.check_replace_unfinished(audience["audience_id"])
        else:
            self.check_update_processing(audience["audience_id"], action)
        minimum = self.config.min_audience_size
        with self.store.transaction() as c:
            count = self.apply_files(c, audience, action, files)
            # TikTok's floor counts matched users: an update the client's count allows can
            # still be refused. Raising rolls the whole update back.
            matched = self.store.matched_count(c, audience["audience_id"], self.config.match_rate)
            if matched < minimum:
                raise self.refusal(
                    FLOOR_WORDS, matched=matched, count=count, action=action, minimum=minimum
                )
            self.store.add_history(
                c, audience["audience_id"], action, [f["file_path"] for f in files], count
            )
        return {}

    def check_update_processing(self, audience_id: str, action: str) -> None:
        # Stricter reading of what TikTok leaves undocumented: no APPEND or REMOVE while the
        # previous one is processing (a CREATE or REPLACE does not block them).
        window = self.config.update_processing_seconds
        history = [
            h for h in self.store.history(audience_id) if h["action"] in ("APPEND", "REMOVE")
        ]
        if window > 0 and history and self.clock.now() - history[-1]["created_at"] < window:
            raise self.refusal(
                PROCESSING_WORDS,
                previous=history[-1]["action"],
                audience_id=audience_id,
                action=action,
            )

    def check_replace_unfinished(self, audience_id: str) -> None:
        window = self.config.replace_cooldown_seconds
        # Stricter reading: the create counts as an unfinished replace while it is processing.
        last = self.store.last_action_time(audience_id, ("CREATE", "REPLACE"))
        if window > 0 and last is not None and self.clock.now() - last < window:
            raise param_error(REPLACE_UNFINISHED)

    def check_daily_updates(self, advertiser_id: str) -> None:
        limit = self.config.max_updates_per_day
        if limit <= 0:
            return
        # A rolling 24 h (a calendar day would allow twice the limit around midnight);
        # refused updates are not counted.
        used, oldest = self.store.actions_since(
            advertiser_id, UPDATE_ACTIONS, self.clock.now() - DAY
        )
        if used >= limit and oldest is not None:
            raise self.refusal(
                DAILY_WORDS, advertiser_id=advertiser_id, limit=limit, after=_time(oldest + DAY)
            )

    def audience_list(self, request: Request, token: str, call: dict[str, Any]) -> dict[str, Any]:
        args = request.args
        advertiser_id = call["advertiser_id"] = self.advertiser(token, args.get("advertiser_id"))
        page = check_int(args.get("page"), "page", 1, 1_000_000, 1) or 1
        page_size = check_int(args.get("page_size"), "page_size", 1, 100, 10) or 10
        total = self.store.count_library(advertiser_id)
        rows = self.store.library(advertiser_id, limit=page_size, offset=(page - 1) * page_size)
        # An empty ad account answers without `list` (TikTok's model marks it omitempty).
        listed = {"list": [self.audience_row(a, advertiser_id) for a in rows]} if rows else {}
        return {
            **listed,
            "page_info": {
                "page": page,
                "page_size": page_size,
                "total_number": total,
                "total_page": math.ceil(total / page_size),
            },
        }

    def audience_get(self, request: Request, token: str, call: dict[str, Any]) -> dict[str, Any]:
        advertiser_id = call["advertiser_id"] = self.advertiser(
            token, request.args.get("advertiser_id")
        )
        ids = json_list_param(request.args, "custom_audience_ids")
        audiences = [self.library_audience(i, advertiser_id, "custom_audience_ids") for i in ids]
        return {
            "list": [
                {
                    "audience_details": self.audience_row(a, advertiser_id),
                    "audience_history": self.history_rows(a["audience_id"]),
                }
                for a in audiences
            ]
        }
