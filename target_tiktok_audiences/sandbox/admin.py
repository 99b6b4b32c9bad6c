"""The /_sandbox/ admin endpoints: faults, tokens, clock, sharing, and the test oracle."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from werkzeug.wrappers import Request

from .base import SandboxBase
from .checks import _time, check_id, check_int, check_string
from .faults import FaultRule
from .rules import (
    AUDIENCE_TYPE_CUSTOMER_FILE,
    AUDIENCE_TYPE_PARTNER,
    DAY,
    EXPIRY_DAYS,
    EXTERNAL_ADVERTISER,
    param_error,
)


class AdminEndpoints(SandboxBase):
    # --- admin --------------------------------------------------------------------------------

    def _admin_add_fault(self, request: Request) -> dict[str, Any]:
        self.faults.add(FaultRule.from_dict(self.json_body(request)))
        return {"faults": self.faults.rules()}

    def _admin_call(
        self, request: Request, fn: Callable[..., dict[str, Any]], *names: str
    ) -> dict[str, Any]:
        body = self.json_body(request)
        missing = [n for n in names if n not in body]
        if missing:
            raise param_error(f"{', '.join(missing)}: required")
        return fn(*(body[n] for n in names))

    def _grant_configured_tokens(self) -> None:
        for token, advertisers in self.config.tokens.items():
            self.store.grant(token, advertisers)

    def add_token(self, token: str, advertiser_ids: list[str]) -> dict[str, Any]:
        self.store.grant(token, [check_id(a, "advertiser_ids") for a in advertiser_ids])
        return {"token_added": True}

    def revoke_token(self, token: str) -> dict[str, Any]:
        return {"revoked": self.store.revoke_token(token)}

    def revoke_advertiser(self, token: str, advertiser_id: str) -> dict[str, Any]:
        return {"revoked": self.store.revoke_advertiser(token, str(advertiser_id))}

    def clear_faults(self) -> dict[str, Any]:
        self.faults.clear()
        return {"faults": []}

    def reset(self) -> dict[str, Any]:
        self.faults.clear()
        self.clock.reset()
        self.store.reset()
        self._grant_configured_tokens()
        with self._rate_lock:
            self._mapping_calls.clear()
        return {"reset": True}

    def clock_state(self) -> dict[str, Any]:
        return {"now": _time(self.clock.now()), "offset_seconds": self.clock.offset}

    def advance_clock(self, seconds: object) -> dict[str, Any]:
        """Skip ahead ("next day") without sleeping; every time-based rule follows."""
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise param_error("advance_seconds: required, a number of seconds")
        try:
            self.clock.advance(float(seconds))
        except ValueError as exc:
            raise param_error(str(exc)) from None
        return self.clock_state()

    def _admin_clock(self, request: Request) -> dict[str, Any]:
        return self.advance_clock(self.json_body(request).get("advance_seconds"))

    def share_audience(
        self,
        advertiser_id: str,
        audience_id: str | None = None,
        *,
        name: str = "Shared audience",
        owner_advertiser_id: str = EXTERNAL_ADVERTISER,
        partner: bool = False,
    ) -> str:
        """Share an audience into ``advertiser_id``; without ``audience_id``, first create one
        (EMAIL_SHA256 customer file, or partner) owned by ``owner_advertiser_id``."""
        advertiser_id = check_id(advertiser_id, "advertiser_id")
        if audience_id is None:
            owner = check_id(owner_advertiser_id, "owner_advertiser_id")
            if owner == advertiser_id:
                raise param_error("owner_advertiser_id: must differ from advertiser_id")
            self.check_room(advertiser_id)
            with self.store.transaction() as c:
                audience_id = self.store.create_audience(
                    c,
                    advertiser_id=owner,
                    name=check_string(name, "name", 1, 128),
                    audience_type=AUDIENCE_TYPE_PARTNER if partner else AUDIENCE_TYPE_CUSTOMER_FILE,
                    calculate_type=None if partner else "EMAIL_SHA256",
                    retention_in_days=None,
                )
                self.store.add_history(c, audience_id, "CREATE", [], 0)
        else:
            audience_id = check_id(audience_id, "audience_id")
            row = self.store.audience(audience_id)
            if row is None or row["advertiser_id"] == advertiser_id:
                raise param_error(
                    f"audience_id: audience {audience_id} does not exist or already belongs "
                    f"to advertiser {advertiser_id}"
                )
            self.check_room(advertiser_id)
        self.store.share(audience_id, advertiser_id)
        return audience_id

    def _admin_share(self, request: Request) -> dict[str, Any]:
        body = self.json_body(request)
        allowed = {"advertiser_id", "audience_id", "name", "owner_advertiser_id", "partner"}
        if unknown := sorted(set(body) - allowed):
            raise param_error(f"unknown fields {unknown}; use {sorted(allowed)}")
        if "advertiser_id" not in body:
            raise param_error("advertiser_id: required")
        options = {k: body[k] for k in ("name", "owner_advertiser_id", "partner") if k in body}
        audience_id = self.share_audience(body["advertiser_id"], body.get("audience_id"), **options)
        return {"audience_id": audience_id}

    def seed_audience(
        self,
        advertiser_id: str,
        name: str,
        *,
        expires_in_days: float,
        digests: list[str] | None = None,
        calculate_type: str = "EMAIL_SHA256",
        partner: bool = False,
        retention_in_days: int | None = None,
    ) -> str:
        """An audience of ``advertiser_id`` made long ago, expiring in ``expires_in_days``
        (0 or less: already expired; TikTok keeps it listed, size 0, deletable only); with
        ``retention_in_days`` its expiry is fixed from creation, else from its last use."""
        advertiser_id = check_id(advertiser_id, "advertiser_id")
        self.check_room(advertiser_id)
        id_type = "EMAIL_SHA256" if partner else calculate_type
        with self.store.transaction() as c:
            audience_id = self.store.create_audience(
                c,
                advertiser_id=advertiser_id,
                name=check_string(name, "name", 1, 128),
                audience_type=AUDIENCE_TYPE_PARTNER if partner else AUDIENCE_TYPE_CUSTOMER_FILE,
                calculate_type=None if partner else calculate_type,
                retention_in_days=None
                if retention_in_days is None
                else check_int(retention_in_days, "retention_in_days", 1, 365),
            )
            added = self.store.apply_digests(c, audience_id, id_type, digests or [])
            self.store.set_count(c, audience_id, added)
            self.store.add_history(c, audience_id, "CREATE", [], added)
        # Made (or last used) long enough ago that it expires expires_in_days from now.
        lifetime = EXPIRY_DAYS if retention_in_days is None else retention_in_days
        self.store.backdate(audience_id, (lifetime - float(expires_in_days)) * DAY)
        return audience_id

    def _admin_seed(self, request: Request) -> dict[str, Any]:
        body = self.json_body(request)
        allowed = {"advertiser_id", "name", "expires_in_days", "digests", "calculate_type"}
        allowed |= {"retention_in_days"}
        if unknown := sorted(set(body) - allowed - {"partner"}):
            raise param_error(f"unknown fields {unknown}; use {sorted(allowed | {'partner'})}")
        missing = [k for k in ("advertiser_id", "name", "expires_in_days") if k not in body]
        if missing:
            raise param_error(f"{', '.join(missing)}: required")
        names = ("digests", "calculate_type", "partner", "retention_in_days")
        options = {k: body[k] for k in names if k in body}
        audience_id = self.seed_audience(
            body["advertiser_id"], body["name"], expires_in_days=body["expires_in_days"], **options
        )
        return {"audience_id": audience_id}

    def change_audience(
        self,
        audience_id: object,
        *,
        delete: bool = False,
        expires_in_days: object = None,
        error_msg: object = None,
    ) -> dict[str, Any]:
        """What happens to an audience outside the target: deleted in Ads Manager, expiring
        (``expires_in_days`` from now; 0 or less: expired), or failed in TikTok's matching
        (``error_msg``: TikTok's words in audience_details.error_msg; "" clears it)."""
        audience_id = check_id(audience_id, "audience_id")
        if self.store.audience(audience_id) is None:
            raise param_error(f"audience_id: audience {audience_id} does not exist")
        if delete:
            self.store.delete_audience(audience_id)
            return {"deleted": audience_id}
        if isinstance(error_msg, str):
            self.store.set_error(audience_id, error_msg or None)
            return {"audience_id": audience_id, "error_msg": error_msg}
        if isinstance(expires_in_days, bool) or not isinstance(expires_in_days, int | float):
            raise param_error("give delete: true or expires_in_days (a number of days)")
        self.store.set_expiry(audience_id, self.clock.now() + float(expires_in_days) * DAY)
        return {"audience_id": audience_id, "expires_in_days": expires_in_days}

    def _admin_audience(self, request: Request) -> dict[str, Any]:
        body = self.json_body(request)
        allowed = {"audience_id", "delete", "expires_in_days", "error_msg"}
        if unknown := sorted(set(body) - allowed):
            raise param_error(f"unknown fields {unknown}; use {sorted(allowed)}")
        return self.change_audience(
            body.get("audience_id"),
            delete=body.get("delete") is True,
            expires_in_days=body.get("expires_in_days"),
            error_msg=body.get("error_msg"),
        )

    def dump_audiences(self, advertiser_id: str | None = None) -> list[dict[str, Any]]:
        """Audiences with full member lists and history: the test oracle."""
        return [
            {
                **self.admin_row(a),
                "members": self.store.members(a["audience_id"]),
                "history": self.admin_history(a["audience_id"]),
            }
            for a in reversed(self.store.audiences(advertiser_id))
        ]
