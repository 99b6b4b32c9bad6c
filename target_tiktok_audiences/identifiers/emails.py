"""Email addresses: what a valid one is, and the basic and tiktok normalisations."""

from __future__ import annotations

import re
from collections.abc import Callable

from target_tiktok_audiences.identifiers.contracts import EMAIL_MODES

# Explicit ASCII classes: in Python `\d` also matches other scripts' digits, and `$` would accept a
# trailing newline, so every pattern is used with fullmatch().
# One '@', non-empty local part, a dot in the domain, no whitespace (`\s` == str.isspace())
# and no control characters (a NUL or escape code is a broken value, not an address).
_EMAIL_RE = re.compile(r"[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]*\.[^@\s\x00-\x1f\x7f]*")


# The private normalisers take an already stripped, non-empty string; the public ones strip.


def _email_basic(stripped: str) -> str | None:
    email = stripped.lower()
    if _EMAIL_RE.fullmatch(email) is None:
        return None
    # Lone surrogates (possible from JSON "\ud800") cannot be UTF-8 encoded, so cannot be hashed.
    if not email.isascii():
        try:
            email.encode("utf-8")
        except UnicodeEncodeError:
            return None
    return email


def _email_tiktok(stripped: str) -> str | None:
    email = _email_basic(stripped)
    if email is None:
        return None
    local, domain = email.split("@")
    # TikTok's rule touches the local part only; the domain keeps its dots (a peer's bug).
    local = local.split("+", 1)[0].replace(".", "")
    if not local:
        return None
    return f"{local}@{domain}"


_EMAIL_NORMALIZERS: dict[str, Callable[[str], str | None]] = {
    "basic": _email_basic,
    "tiktok": _email_tiktok,
}


def normalize_email(value: str, mode: str = "basic") -> str | None:
    """Trim and lowercase an email (``tiktok`` mode: also drop ``+suffix`` and dots of the local
    part); None when it is not a valid email."""
    normalizer = _EMAIL_NORMALIZERS.get(mode)
    if normalizer is None:
        raise ValueError(f"unknown email_normalization {mode!r}; expected one of {EMAIL_MODES}")
    if not isinstance(value, str):
        return None
    stripped = value.strip()
    return normalizer(stripped) if stripped else None
