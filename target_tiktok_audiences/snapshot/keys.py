"""What a stored set is for: its key (advertiser, audience, contract), its kind, and the scope
(the API host) that keeps the sets of two APIs apart; and what a snapshot_url may be."""

from __future__ import annotations

import enum
import hashlib
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from target_tiktok_audiences.urls import url_errors

NAME_PART = re.compile(r"[A-Za-z0-9_-]{1,128}")
_SCOPE = re.compile(r"[A-Za-z0-9._-]{1,255}")


def scope_for(api_base_url: str) -> str:
    """The API host (and port) as a path segment: audiences of two APIs never share snapshots."""
    parts = urlsplit(api_base_url)
    host = (parts.hostname or "unknown-host").lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    scope = f"{host}_{port}" if port else host
    return scope if _SCOPE.fullmatch(scope) and scope not in (".", "..") else "unknown-host"


def snapshot_url_errors(url: str | None) -> list[str]:
    """What is wrong with a snapshot_url, never quoting what may be a secret (None: default)."""
    if url is not None and not url.strip():
        return [
            "snapshot_url: is empty; leave it unset for the user data folder, or give a folder "
            "or an fsspec URL such as s3://bucket/prefix"
        ]
    return url_errors(url, "snapshot_url")


class Kind(enum.Enum):
    """What a stored digest set means."""

    SNAPSHOT = "snap"  # what TikTok holds, as far as the target knows
    IN_FLIGHT = "inflight"  # digests of a change sent but not confirmed: state at TikTok unknown
    CREATING = "creating"  # a create sent but not confirmed (creates.py): an empty set


@dataclass(frozen=True)
class SnapshotKey:
    """One snapshot per (advertiser, audience, contract), within the store's API host."""

    advertiser_id: str
    audience_id: str
    contract: str

    def __post_init__(self) -> None:
        # The parts become path segments: nothing that could climb out of the store.
        for part in (self.advertiser_id, self.audience_id, self.contract):
            if not NAME_PART.fullmatch(part):
                raise ValueError("snapshot key parts must be letters, digits, '_' or '-'")

    @classmethod
    def for_name(cls, advertiser_id: str, name: str, contract: str) -> SnapshotKey:
        """A key for an audience known only by its name (its lock; a create not confirmed)."""
        digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:40]
        return cls(advertiser_id, f"name-{digest}", contract)

    def path(self, kind: Kind) -> str:
        return f"{self.advertiser_id}/{self.audience_id}/{self.contract}.{kind.value}"

    @property
    def name(self) -> str:
        return self.path(Kind.SNAPSHOT)

    @property
    def lock_name(self) -> str:
        return f"{self.advertiser_id}/{self.audience_id}/{self.contract}.lock"

    def describe(self) -> str:
        if self.audience_id.startswith("name-"):
            return f"an audience name of advertiser {self.advertiser_id}"
        return f"audience {self.audience_id} ({self.contract}) of advertiser {self.advertiser_id}"
