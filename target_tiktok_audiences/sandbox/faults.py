"""Fault injection rules: "the next N calls" or "this fraction of calls", optionally per path."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

# Kinds that stop the request before it is processed, and kinds that act after processing.
# Permanent errors answer with TikTok's code for them; "unknown_error" uses a code that is
# in no list, which a client must treat as permanent too.
PERMANENT = {
    "permission_error": (40001, "No permission to operate this advertiser"),
    "param_error": (40002, "Invalid parameter: custom_audience_id"),
    "auth_error": (40105, "Access token is invalid or has been revoked"),
    "unknown_error": (41999, "Something TikTok has not documented"),
}
# Transient codes production clients have met (tiktok-api.md); answered before processing.
TRANSIENT = {
    "code_40016": (40016, "Requests made too frequently. Please try again later."),
    "code_40133": (40133, "Request too frequent. Please try again later."),
    "code_51001": (51001, "Request timed out inside TikTok. Please try again later."),
    "code_60001": (60001, "The system is under maintenance. Please try again later."),
    "code_40200": (40200, "Task error: write conflict. Retry may resolve this issue."),
    "code_40201": (40201, "Update conflict. Retry may resolve this issue."),
    "code_40202": (40202, "Write conflict. Retry may resolve this issue."),
    "code_40700": (40700, "Internal dependency service failure. Please try again later."),
}
BEFORE = frozenset(
    {"rate_limit", "server_error", "http_503", "drop", "redirect", *PERMANENT, *TRANSIENT}
)
# late_create: the create is applied but listed only `slow_seconds` later, and the client gets
# no answer; trickle: the answer takes `slow_seconds` in all, one byte at a time.
AFTER = frozenset({"slow", "drop_after", "late_create", "drop_mid_body", "trickle", "no_data"})
KINDS = BEFORE | AFTER
# Where `redirect` points by default: nothing listens on the discard port.
DEFAULT_REDIRECT = "http://127.0.0.1:9"
FIELDS = ("kind", "count", "rate", "seed", "paths", "slow_seconds", "location")


class FaultError(ValueError):
    """A fault rule that cannot be built; the message says which part is wrong."""


@dataclass
class FaultRule:
    kind: str
    count: int | None = None
    rate: float | None = None
    seed: int = 0
    paths: list[str] | None = None
    slow_seconds: float | None = None
    location: str | None = None  # `redirect` only: base URL on this machine to send clients to
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise FaultError(f"kind: must be one of {sorted(KINDS)}")
        if (self.count is None) == (self.rate is None):
            raise FaultError("give exactly one of count or rate")
        if self.count is not None and (isinstance(self.count, bool) or self.count < 1):
            raise FaultError("count: must be a positive integer")
        if self.rate is not None and not 0 < self.rate <= 1:
            raise FaultError("rate: must be in (0, 1]")
        if self.location is not None:
            if self.kind != "redirect":
                raise FaultError("location: only for kind redirect")
            # Tests must never reach anything but this machine.
            parts = urlsplit(self.location)
            if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "localhost"):
                raise FaultError("location: must be an http URL on 127.0.0.1")
        self._rng = random.Random(self.seed)  # deterministic: same seed, same faulted calls

    def fires(self, path: str) -> bool:
        if self.paths and not any(p in path for p in self.paths):
            return False
        if self.count is not None:
            self.count -= 1
            return True
        return self._rng.random() < (self.rate or 0.0)

    @property
    def spent(self) -> bool:
        return self.count is not None and self.count <= 0

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in FIELDS}

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> FaultRule:
        unknown = set(body) - set(FIELDS)
        if unknown:
            raise FaultError(f"unknown fields: {sorted(unknown)}")
        try:
            return cls(**body)
        except TypeError as exc:
            raise FaultError(str(exc)) from exc

    @classmethod
    def parse(cls, spec: str, seed: int = 0) -> FaultRule:
        """CLI form ``KIND:COUNT`` or ``KIND:RATE``, optional ``@path,path`` filter.

        ``rate_limit:3`` = next 3 calls; ``http_503:0.33`` = a third of all calls.
        """
        spec, _, paths = spec.partition("@")
        kind, _, amount = spec.partition(":")
        try:
            if "." in amount:
                return cls(kind, rate=float(amount), seed=seed, paths=_split(paths))
            return cls(kind, count=int(amount), seed=seed, paths=_split(paths))
        except ValueError as exc:
            raise FaultError(f"bad fault {spec!r}: {exc}; use KIND:COUNT or KIND:RATE") from exc


def _split(paths: str) -> list[str] | None:
    return [p for p in paths.split(",") if p] or None


class Faults:
    """Active rules; the first rule that fires for a call decides its fault."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()

    def add(self, rule: FaultRule) -> None:
        with self._lock:
            self._rules.append(rule)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.as_dict() for r in self._rules]

    def pick(self, path: str) -> FaultRule | None:
        with self._lock:
            for rule in self._rules:
                if rule.fires(path):
                    if rule.spent:
                        self._rules.remove(rule)
                    return rule
        return None
