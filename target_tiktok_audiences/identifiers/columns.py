"""Columns of a stream: the remove flag's values, and identifier columns found by name."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from decimal import Decimal

from target_tiktok_audiences.identifiers.contracts import CONTRACTS

# --- Remove flag ---------------------------------------------------------------------------

_REMOVE_STRINGS: dict[str, bool] = {
    **dict.fromkeys(("true", "t", "yes", "y", "1"), True),
    **dict.fromkeys(("false", "f", "no", "n", "0", ""), False),
}


def remove_flag(value: object) -> bool | None:
    """Read a `remove_column` value: True (remove the user), False (keep) or None (invalid).

    Remove: True, a non-zero number, the strings true/t/yes/y/1. Keep: False, zero, None, the
    strings false/f/no/n/0 and empty or blank strings. Strings are trimmed and compared in any
    case. Anything else (other strings such as "2" or "maybe", NaN, infinities, lists, objects)
    is None: the caller rejects the record rather than guess which way the user meant it.
    """
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _REMOVE_STRINGS.get(value.strip().lower())
    if isinstance(value, int):
        return value != 0
    if isinstance(value, float):
        return value != 0 if math.isfinite(value) else None
    if isinstance(value, Decimal):  # JSON numbers may arrive as Decimal
        return value != 0 if value.is_finite() else None
    return None


# --- Column detection ------------------------------------------------------------------------

# Per contract, accepted column names in priority order. Names are compared by _column_key, so
# "Email Address", "email-address" and "EMAIL_ADDRESS" all match "email_address". The list stays
# conservative: exact names only, never "contains" (no "email_opt_in", "phone_verified").
DETECTED_COLUMN_NAMES: dict[str, tuple[str, ...]] = {
    "EMAIL_SHA256": ("email", "email_address"),
    "PHONE_SHA256": (
        "phone",
        "phone_number",
        "phone_e164",
        "mobile",
        "mobile_phone",
        "mobile_number",
        "mobile_phone_number",
        "cell_phone",
    ),
    "IDFA_SHA256": ("idfa",),
    "GAID_SHA256": ("gaid", "aaid", "adid", "android_advertising_id", "google_advertising_id"),
}
# Fragments that make a column look like an identifier; named in a hint when not detected.
_IDENTIFIER_FRAGMENTS: tuple[str, ...] = ("email", "phone", "mobile", "idfa", "gaid", "aaid")
_NOT_ALPHANUMERIC = re.compile(r"[\W_]+")


def _column_key(name: str) -> str:
    """Lowercased, without anything that is not a letter or digit ("E_mail" -> "email")."""
    return _NOT_ALPHANUMERIC.sub("", name.lower())


_COLUMN_LOOKUP: dict[str, tuple[str, int]] = {
    _column_key(name): (contract, rank)
    for contract, names in DETECTED_COLUMN_NAMES.items()
    for rank, name in enumerate(names)
}


def detect_identifier_columns(property_names: Iterable[str]) -> dict[str, str]:
    """Map contract -> column for the identifier columns found by name.

    Names are compared case- and separator-insensitively (see DETECTED_COLUMN_NAMES). When
    several columns map to one contract, the one earliest in the priority list wins (and, for
    names equal after normalising, the first one given), so the choice is deterministic. The
    column keeps its original spelling. Contracts come back in CONTRACTS order.
    """
    best: dict[str, tuple[int, str]] = {}
    for name in property_names:
        if not isinstance(name, str):
            continue
        hit = _COLUMN_LOOKUP.get(_column_key(name))
        if hit is None:
            continue
        contract, rank = hit
        current = best.get(contract)
        if current is None or rank < current[0]:
            best[contract] = (rank, name)
    return {contract: best[contract][1] for contract in CONTRACTS if contract in best}


def identifier_like_columns(property_names: Iterable[str]) -> list[str]:
    """Columns whose name contains email/phone/mobile/idfa/gaid/aaid but that
    detect_identifier_columns does not use, in the order given, each once (for a hint such as
    "user_email looks like an identifier; map it in `audiences`")."""
    names = [name for name in property_names if isinstance(name, str)]
    used = set(detect_identifier_columns(names).values())
    hints: list[str] = []
    for name in names:
        if name in used or name in hints:
            continue
        key = _column_key(name)
        if any(fragment in key for fragment in _IDENTIFIER_FRAGMENTS):
            hints.append(name)
    return hints
