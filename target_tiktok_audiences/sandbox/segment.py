"""Segment API endpoints (segment/audience, segment/mapping): partner audiences."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from werkzeug.wrappers import Request

from .base import SandboxBase
from .checks import check_choice, check_digest, check_id, check_list, check_string
from .rules import (
    AUDIENCE_TYPE_PARTNER,
    CREATE_DELAY,
    MAX_MAPPING_USERS,
    PARAM_ERROR,
    PARTNER_NAME_MAX,
    RATE_LIMIT,
    SEGMENT_ID_TYPES,
    ApiError,
    not_creator,
    param_error,
)


class SegmentEndpoints(SandboxBase):
    def segment_audience(
        self, request: Request, token: str, call: dict[str, Any]
    ) -> dict[str, Any]:
        body = self.json_body(request)
        advertiser_id = call["advertiser_id"] = self.advertiser(token, body.get("advertiser_id"))
        if "id_type" in body:
            raise param_error("id_type: this field is retired; do not send it")
        call["action"] = check_choice(body.get("action"), "action", ["create"])
        name = check_string(body.get("custom_audience_name"), "custom_audience_name", 1, 1024)
        if len(name) > PARTNER_NAME_MAX:  # TikTok cuts long names instead of rejecting them
            name = name[: PARTNER_NAME_MAX - 3] + "..."
        self.check_room(advertiser_id)
        with self.store.transaction() as c:
            audience_id = self.store.create_audience(
                c,
                advertiser_id=advertiser_id,
                name=name,
                audience_type=AUDIENCE_TYPE_PARTNER,
                calculate_type=None,
                retention_in_days=None,
                visible_after=request.environ.get(CREATE_DELAY, 0.0),
            )
            self.store.add_history(c, audience_id, "CREATE", [], 0)
        return {"audience_id": audience_id}

    def segment_mapping(self, request: Request, token: str, call: dict[str, Any]) -> dict[str, Any]:
        self.check_mapping_rate(token)
        body = self.json_body(request)
        advertisers = [
            self.advertiser(token, v, "advertiser_ids")
            for v in check_list(body.get("advertiser_ids"), "advertiser_ids", 1, 100)
        ]
        call["advertiser_id"] = ",".join(advertisers)
        action = call["action"] = check_choice(body.get("action"), "action", ["add", "delete"])
        schema = [
            check_choice(v, f"id_schema[{i}]", SEGMENT_ID_TYPES)
            for i, v in enumerate(
                check_list(body.get("id_schema"), "id_schema", 1, len(SEGMENT_ID_TYPES))
            )
        ]
        if len(set(schema)) != len(schema):
            raise param_error("id_schema: duplicate id types")
        users = check_list(body.get("batch_data"), "batch_data", 1, MAX_MAPPING_USERS)
        call["users"] = len(users)
        # Validate the whole batch before touching anything: it succeeds or fails as a whole.
        groups: dict[tuple[str, str], list[str]] = defaultdict(list)
        for u, user in enumerate(users):
            for aid, id_type, digest in self.user_slots(user, schema, f"batch_data[{u}]"):
                groups[(aid, id_type)].append(digest)
        for aid in {aid for aid, _ in groups}:
            self.check_partner_audience(aid, advertisers)
        with self.store.transaction() as c:
            for (aid, id_type), digests in groups.items():
                changed = self.store.apply_digests(
                    c, aid, id_type, digests, remove=action == "delete"
                )
                self.store.set_count(c, aid, -changed if action == "delete" else changed)
        return {}

    @staticmethod
    def user_slots(user: Any, schema: list[str], where: str) -> list[tuple[str, str, str]]:
        """A user's (audience_id, id_type, digest) triples; a slot is {} or {id, audience_ids}."""
        if not isinstance(user, list) or len(user) != len(schema):
            raise param_error(
                f"{where}: must be a list of len(id_schema) = {len(schema)} "
                "elements, one per id_schema entry ({} for a missing identifier)"
            )
        out: list[tuple[str, str, str]] = []
        for i, slot in enumerate(user):
            if slot == {}:
                continue
            if not isinstance(slot, dict) or set(slot) != {"id", "audience_ids"}:
                raise param_error(
                    f'{where}[{i}]: must be {{}} or {{"id": <digest>, "audience_ids": [..]}}'
                )
            digest = check_digest(slot["id"], schema[i], f"{where}[{i}].id")
            ids = check_list(slot["audience_ids"], f"{where}[{i}].audience_ids", 1, 100)
            out.extend((check_id(a, f"{where}[{i}].audience_ids"), schema[i], digest) for a in ids)
        if not out:
            raise param_error(f"{where}: every user needs at least one identifier")
        return out

    def check_partner_audience(self, audience_id: str, advertisers: list[str]) -> None:
        audience = self.store.audience(audience_id)
        seen_by = [a for a in advertisers if audience and self.in_library(audience, a)]
        if audience is None or not seen_by:
            raise param_error(
                f"audience_ids: audience {audience_id} does not exist for advertiser_ids"
            )
        if audience["advertiser_id"] not in seen_by:
            raise not_creator(audience_id, seen_by[0])
        self.check_not_expired(audience)
        if audience["audience_type"] != AUDIENCE_TYPE_PARTNER:
            raise param_error(
                f"audience_ids: audience {audience_id} is a "
                f"{audience['audience_type']} audience; only partner audiences "
                "created with segment/audience accept mappings"
            )
        age = self.clock.now() - audience["created_at"]
        if age < self.config.partner_warmup_seconds:
            # TikTok answers HTTP 400 with a parameter error for a just-created audience.
            raise ApiError(
                PARAM_ERROR,
                f"audience_ids: audience {audience_id} was created {age:.0f} s ago and does not "
                "accept mappings yet; partner audiences accept mappings 1-2 minutes after "
                "creation, try again later",
                http=400,
            )

    def check_mapping_rate(self, token: str) -> None:
        limit = self.config.mapping_rate_limit
        if not limit:
            return
        # Real seconds, whatever the clock's scale: the client's throttle is in real seconds
        # too, and a faster clock would let more calls through each real second (kinder).
        now = time.monotonic()
        with self._rate_lock:
            window = self._mapping_calls[token]
            while window and now - window[0] >= 1.0:
                window.popleft()
            if len(window) >= limit:
                raise ApiError(RATE_LIMIT, "Too many requests")
            window.append(now)
