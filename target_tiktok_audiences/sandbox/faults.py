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
# Every code of the official SDK's table (tiktok_code.py names), for `code_<N>` faults: any
# code can be answered, one of these with its name as the message, any other with words TikTok
# never documented (a client must not depend on either). Answered before processing.
CODE_NAMES = {
    40001: "Permission error",
    40002: "Param error",
    40016: "Requests made too frequently. Please try again later.",
    40100: "Request too frequent",
    40101: "Invalid partner",
    40102: "Access token expired",
    40103: "Access token invalid",
    40104: "Empty access token",
    40105: "Invalid access token",
    40106: "Access token error",
    40107: "Access token error",
    40108: "Access token error",
    40109: "Access token error",
    40132: "Request frequency limited",
    40133: "Request too frequent. Please try again later.",
    40200: "General task error",
    40201: "Task not ready",
    40202: "Write conflict",
    40700: "RPC validation error",
    40910: "File expired",
    50000: "System error",
    50002: "Service error",
    51000: "RPC error",
    51003: "DMP error",
    51010: "Internal timeout",
    51063: "Segment gateway error",
    52000: "DB error",
    52100: "RDS error",
    52299: "TOS error",
    53102: "Serialization error",
    53103: "Deserialization error",
    60001: "The system is under maintenance. Please try again later.",
    61000: "Too many requests",
}
UNDOCUMENTED = "Something TikTok has not documented"
CODE_PREFIX = "code_"
# The transient codes production clients have met, kept as named kinds for the CLI's help.
TRANSIENT = {
    f"{CODE_PREFIX}{c}": (c, CODE_NAMES[c])
    for c in (40016, 40133, 60001, 40200, 40201, 40202, 40700)
}
BEFORE = frozenset(
    {"rate_limit", "server_error", "http_503", "drop", "redirect", *PERMANENT, *TRANSIENT}
)
# late_create: the create is applied but listed only `slow_seconds` later, and the client gets
# no answer; late_listed: the same, but the client gets its answer (TikTok's id before TikTok's
# list shows it); trickle: the answer takes `slow_seconds` in all, one byte at a time.
AFTER = frozenset(
    {"slow", "drop_after", "late_create", "late_listed", "drop_mid_body", "trickle", "no_data"}
)
KINDS = BEFORE | AFTER
# Where `redirect` points by default: nothing listens on the discard port.
DEFAULT_REDIRECT = "http://127.0.0.1:9"
FIELDS = ("kind", "count", "rate", "seed", "paths", "slow_seconds", "location", "message")


def code_of(kind: str) -> int | None:
    """The code a `code_<N>` kind answers with (None for other kinds)."""
    digits = kind[len(CODE_PREFIX) :] if kind.startswith(CODE_PREFIX) else ""
    return int(digits) if digits.isdigit() else None


def answer_of(kind: str, message: str | None) -> tuple[int, str] | None:
    """(code, message) of a fault answered in TikTok's envelope before processing, if any."""
    if kind in PERMANENT:
        code, text = PERMANENT[kind]
    else:
        found = code_of(kind)
        if found is None:
            return None
        code, text = found, CODE_NAMES.get(found, UNDOCUMENTED)
    return code, message or text


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
    message: str | None = None  # enveloped kinds: TikTok's words instead of the default ones
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS and code_of(self.kind) is None:
            raise FaultError(f"kind: must be one of {sorted(KINDS)} or code_<N>")
        if self.message is not None and answer_of(self.kind, None) is None:
            raise FaultError("message: only for kinds answered with a code")
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
