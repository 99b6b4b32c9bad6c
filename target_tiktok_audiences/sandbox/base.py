"""What every endpoint family shares: state, authentication, the library, the rows it lists."""

from __future__ import annotations

import itertools
import json
import threading
from collections import defaultdict, deque
from typing import Any

from werkzeug.wrappers import Request

from .checks import _time, check_id
from .clock import Clock
from .faults import Faults
from .rules import (
    BAD_TOKEN,
    DAY,
    EXPIRED_WORDS,
    EXPIRING_DAYS,
    EXPIRY_DAYS,
    HISTORY_WORDINGS,
    HISTORY_WORDS,
    NO_PERMISSION,
    PARAM_ERROR,
    WORDINGS,
    ApiError,
    SandboxConfig,
    not_creator,
    param_error,
)
from .store import Store


class SandboxBase:
    """State and checks shared by the endpoint families (mixed into SandboxApp)."""

    def __init__(self, store: Store, config: SandboxConfig | None = None) -> None:
        self.store = store
        self.clock: Clock = store.clock  # one clock for stored times and every rule
        self.config = config or SandboxConfig()
        self.faults = Faults()
        self.stopping = threading.Event()  # cuts `slow` sleeps short when the server stops
        self._mapping_calls: dict[str, deque[float]] = defaultdict(deque)
        self._rate_lock = threading.Lock()
        self._refusals = itertools.count()  # which wording the next refusal uses (rotate)
        self._history_turns = itertools.count()  # which spelling the next history uses

    def refusal(self, words: dict[str, str], code: int = PARAM_ERROR, **fields: Any) -> ApiError:
        """A refusal in the configured wording (TikTok documents no code: a parameter error)."""
        wording = self.config.refusal_wording
        if wording not in WORDINGS:
            wording = WORDINGS[next(self._refusals) % len(WORDINGS)]
        return ApiError(code, words[wording].format(**fields))

    def expiry(self, a: dict[str, Any]) -> float:
        """When the audience expires: N days after creation with retention_in_days, else a year
        after it was last used (here: last changed); the admin API can set it outright."""
        if a.get("expires_at") is not None:
            return float(a["expires_at"])
        retention = a["retention_in_days"]
        if retention:
            return float(a["created_at"]) + float(retention) * DAY
        return float(a["updated_at"]) + EXPIRY_DAYS * DAY

    def expired(self, a: dict[str, Any]) -> bool:
        return self.clock.now() >= self.expiry(a)

    def check_not_expired(self, a: dict[str, Any]) -> None:
        if self.expired(a):
            raise self.refusal(
                EXPIRED_WORDS, audience_id=a["audience_id"], expired=_time(self.expiry(a))
            )

    def matched(self, a: dict[str, Any]) -> int:
        """cover_num: the members TikTok matched (0 once the audience expired)."""
        if self.expired(a):
            return 0
        return self.store.matched_count(None, a["audience_id"], self.config.match_rate)

    # --- shared checks ------------------------------------------------------------------------

    def authenticate(self, request: Request) -> str:
        token = request.headers.get("Access-Token")
        if not token:
            hint = (
                " (send Access-Token, not Authorization: Bearer)"
                if request.headers.get("Authorization")
                else ""
            )
            raise ApiError(BAD_TOKEN, f"Access token is missing{hint}")
        if not self.store.token_ok(token):
            raise ApiError(BAD_TOKEN, "Access token is invalid or has been revoked")
        return token

    def advertiser(self, token: str, value: Any, name: str = "advertiser_id") -> str:
        advertiser_id = check_id(value, name)
        if not self.store.can_access(token, advertiser_id):
            raise ApiError(
                NO_PERMISSION,
                f"No permission to operate advertiser {advertiser_id}: "
                "the access token is not authorised for it (or access was revoked)",
            )
        return advertiser_id

    @staticmethod
    def json_body(request: Request) -> dict[str, Any]:
        body = request.get_json(silent=True) if request.is_json else None
        if not isinstance(body, dict):
            raise param_error("request body must be a JSON object (Content-Type: application/json)")
        return body

    def library_audience(self, value: Any, advertiser_id: str, name: str) -> dict[str, Any]:
        """An audience the advertiser sees: its own or shared in, and already listed."""
        audience_id = check_id(value, name)
        audience = self.store.audience(audience_id)
        if audience is None or not self.in_library(audience, advertiser_id):
            raise param_error(
                f"{name}: audience {audience_id} does not exist for advertiser {advertiser_id}"
            )
        return audience

    def in_library(self, audience: dict[str, Any], advertiser_id: str) -> bool:
        if audience["visible_at"] > self.clock.now():  # a late create is not there yet
            return False
        owner = audience["advertiser_id"]
        return owner == advertiser_id or advertiser_id in self.store.shared_with(
            audience["audience_id"]
        )

    def own_audience(self, value: Any, advertiser_id: str, name: str) -> dict[str, Any]:
        """An audience the advertiser may change: only its creator may (40001 for a shared one)."""
        audience = self.library_audience(value, advertiser_id, name)
        if audience["advertiser_id"] != advertiser_id:
            raise not_creator(audience["audience_id"], advertiser_id)
        return audience

    def audience_row(self, a: dict[str, Any], viewer: str | None = None) -> dict[str, Any]:
        """An audience as ``viewer`` (default: its owner) sees it in list and get answers: only
        the fields TikTok documents (client/documented.py), never more."""
        is_creator = viewer is None or viewer == a["advertiser_id"]
        matched, expiry = self.matched(a), self.expiry(a)
        left = expiry - self.clock.now()
        return {
            "audience_id": a["audience_id"],
            "name": a["name"],
            "audience_type": a["audience_type"],
            "audience_sub_type": "NORMAL",
            "calculate_type": a["calculate_type"],
            "cover_num": matched,
            "is_valid": matched >= self.config.min_audience_size and left > 0,
            "is_expiring": 0 < left <= EXPIRING_DAYS * DAY,
            "is_creator": is_creator,
            "shared": not is_creator or bool(self.store.shared_with(a["audience_id"])),
            "owner_id": a["advertiser_id"],
            "msg": None,
            "error_msg": a.get("error_msg"),
            "create_time": _time(a["created_at"]),
            "expired_time": _time(expiry),
        }

    def history_rows(self, audience_id: str) -> list[dict[str, Any]]:
        """Operations, oldest first, in TikTok's documented fields only. TikTok's action words
        are undocumented: each answer writes them in the configured spelling (rotating by
        default between lowercase words, the update enums, words never seen and no history);
        there is no processing flag, since TikTok shows none."""
        spelling = self.config.history_wording
        if spelling not in HISTORY_WORDINGS:
            spelling = HISTORY_WORDINGS[next(self._history_turns) % len(HISTORY_WORDINGS)]
        if spelling == "none":
            return []
        return [
            {
                "action": HISTORY_WORDS[spelling][h["action"]],
                "action_detail": str(h["member_count"]),
                "editor": "open_api",
                "msg": None,
                "opt_time": _time(h["created_at"]),
            }
            for h in self.store.history(audience_id)
        ]

    def admin_row(self, a: dict[str, Any]) -> dict[str, Any]:
        """The test oracle's view: the TikTok row plus what only the sandbox knows."""
        return {
            **self.audience_row(a),
            "advertiser_id": a["advertiser_id"],
            "retention_in_days": a["retention_in_days"],
            "update_time": _time(a["updated_at"]),
        }

    def admin_history(self, audience_id: str) -> list[dict[str, Any]]:
        """The test oracle's history: update enums, whether the sandbox still counts each
        operation as processing (its own rule, never shown to the target), files, size."""
        now = self.clock.now()
        return [
            {
                "action": h["action"],
                "status": "PROCESSING"
                if now - h["created_at"] < self.processing_window(h["action"])
                else "COMPLETED",
                "opt_time": _time(h["created_at"]),
                "file_paths": json.loads(h["file_paths"]),
                "cover_num": h["member_count"],
            }
            for h in self.store.history(audience_id)
        ]

    def processing_window(self, action: str) -> float:
        if action in ("APPEND", "REMOVE"):
            return self.config.update_processing_seconds
        return self.config.replace_cooldown_seconds

    def check_room(self, advertiser_id: str) -> None:
        if self.store.count_audiences(advertiser_id) >= self.config.max_audiences:
            raise param_error(
                f"advertiser {advertiser_id} already has {self.config.max_audiences} "
                "custom audiences, the maximum per ad account"
            )
