"""Identifier contracts (what TikTok receives), their hashes, the reasons a value is rejected, and
the rules (settings) that change how identifiers are encoded."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

# TikTok customer-file `calculate_type` values we support (the Segment API says AAID for GAID).
CONTRACTS: tuple[str, ...] = (
    "EMAIL_SHA256",
    "PHONE_SHA256",
    "IDFA_SHA256",
    "IDFA_MD5",
    "GAID_SHA256",
    "GAID_MD5",
)
CONTRACT_ALIASES: dict[str, str] = {"AAID_SHA256": "GAID_SHA256", "AAID_MD5": "GAID_MD5"}

KINDS: tuple[str, ...] = ("email", "phone", "idfa", "gaid")
ALGORITHMS: tuple[str, ...] = ("sha256", "md5")

_KIND: dict[str, str] = {c: c.split("_", 1)[0].lower() for c in CONTRACTS}
_ALGORITHM: dict[str, str] = {c: c.rsplit("_", 1)[1].lower() for c in CONTRACTS}
# Upper-cased lookup table so canonical_contract is a single dict hit.
_CANONICAL: dict[str, str] = {**{c: c for c in CONTRACTS}, **CONTRACT_ALIASES}


class _Hash(Protocol):
    def hexdigest(self) -> str: ...


_HASHERS: dict[str, Callable[[bytes], _Hash]] = {
    "sha256": hashlib.sha256,
    "md5": hashlib.md5,
}
_DIGEST_LENGTH: dict[str, int] = {"sha256": 64, "md5": 32}


def canonical_contract(name: str) -> str | None:
    """Return the canonical contract for ``name`` (case-insensitive, aliases mapped), else None."""
    if not isinstance(name, str):
        return None
    return _CANONICAL.get(name.strip().upper())


def _require_contract(contract: str) -> str:
    canonical = canonical_contract(contract)
    if canonical is None:
        raise ValueError(
            f"unknown identifier contract {contract!r}; expected one of {', '.join(CONTRACTS)}"
        )
    return canonical


def kind_of(contract: str) -> str:
    """Identifier kind of a contract: "email", "phone", "idfa" or "gaid" (ValueError if unknown)."""
    return _KIND[_require_contract(contract)]


def algorithm_of(contract: str) -> str:
    """Hash algorithm of a contract: "sha256" or "md5" (ValueError if unknown)."""
    return _ALGORITHM[_require_contract(contract)]


# --- Rejection reasons -----------------------------------------------------------------------

REASON_WRONG_TYPE = "wrong_type"
REASON_INVALID_EMAIL = "invalid_email"
REASON_INVALID_PHONE = "invalid_phone"
REASON_INVALID_AD_ID = "invalid_ad_id"
REASON_TRACKING_LIMITED = "tracking_limited"
REASON_ALREADY_HASHED = "already_hashed"
REASON_NOT_HASHED = "not_hashed"
REASON_TOO_LONG = "too_long"
REASON_INVALID_REMOVE_FLAG = "invalid_remove_flag"

REASONS: tuple[str, ...] = (
    REASON_WRONG_TYPE,
    REASON_INVALID_EMAIL,
    REASON_INVALID_PHONE,
    REASON_INVALID_AD_ID,
    REASON_TRACKING_LIMITED,
    REASON_ALREADY_HASHED,
    REASON_NOT_HASHED,
    REASON_TOO_LONG,
    REASON_INVALID_REMOVE_FLAG,
)

# Strings longer than this are rejected before any work: no real identifier comes close, and it
# keeps a runaway column (a JSON blob, a document) from costing regex or phonenumbers time.
MAX_VALUE_LENGTH = 4096

# User-facing texts; format with ``contract=``. They never include the value (it is PII).
REASON_MESSAGES: dict[str, str] = {
    REASON_WRONG_TYPE: "the value for {contract} is not a string",
    REASON_INVALID_EMAIL: "the value for {contract} is not a valid email address",
    REASON_INVALID_PHONE: "the value for {contract} is not a valid phone number",
    REASON_INVALID_AD_ID: "the value for {contract} is not a valid advertising id (UUID)",
    REASON_TRACKING_LIMITED: (
        "the value for {contract} is the all-zero advertising id (tracking limited)"
    ),
    REASON_ALREADY_HASHED: "the value for {contract} appears to already be hashed",
    REASON_NOT_HASHED: "hashing is disabled but the value for {contract} appears to be unhashed",
    REASON_TOO_LONG: f"the value for {{contract}} is longer than {MAX_VALUE_LENGTH} characters",
    REASON_INVALID_REMOVE_FLAG: (
        "the remove flag of a record with {contract} is not true/t/yes/y/1, false/f/no/n/0, "
        "a number, empty or null"
    ),
}

# --- Rules -----------------------------------------------------------------------------------

EMAIL_MODES: tuple[str, ...] = ("basic", "tiktok")


@dataclass(frozen=True)
class Rules:
    """The settings that change how identifiers are encoded."""

    hash_identifiers: bool = True
    email_normalization: str = "basic"
    default_phone_region: str | None = None


def digest(normalized: str, algorithm: str) -> str:
    """Lowercase hex SHA-256 or MD5 of the UTF-8 bytes of an already normalised value."""
    hasher = _HASHERS.get(algorithm)
    if hasher is None:
        raise ValueError(f"unknown hash algorithm {algorithm!r}; expected one of {ALGORITHMS}")
    return hasher(normalized.encode("utf-8")).hexdigest()
