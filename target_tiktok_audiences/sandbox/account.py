"""Account endpoints: the token check and advertiser info."""

from __future__ import annotations

from typing import Any

from werkzeug.wrappers import Request

from .base import SandboxBase
from .checks import json_list_param


class AccountEndpoints(SandboxBase):
    def user_info(self, request: Request, token: str, call: dict[str, Any]) -> dict[str, Any]:
        return {
            "core_user_id": "7000000000000000000",
            "display_name": "Sandbox User",
            "email": "sandbox-user@example.com",
            "create_time": 1700000000,
        }

    def advertiser_info(self, request: Request, token: str, call: dict[str, Any]) -> dict[str, Any]:
        ids = json_list_param(request.args, "advertiser_ids")
        out = []
        for advertiser_id in ids:
            self.advertiser(token, advertiser_id, "advertiser_ids")
            row = self.store.advertiser(advertiser_id) or {"name": advertiser_id}
            out.append(
                {
                    "advertiser_id": advertiser_id,
                    "name": row["name"],
                    "status": "STATUS_ENABLE",
                    "currency": "USD",
                    "timezone": "Etc/GMT",
                    "role": "ROLE_ADVERTISER",
                }
            )
        call["advertiser_id"] = ",".join(ids)
        return {"list": out}
