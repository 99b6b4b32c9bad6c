"""Mobile advertising ids (IDFA, GAID): a lowercase UUID, never the all-zero id."""

from __future__ import annotations

import re

_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_ZERO_UUID = "00000000-0000-0000-0000-000000000000"


def _ad_id(stripped: str) -> str | None:
    ad_id = stripped.lower()
    if _UUID_RE.fullmatch(ad_id) is None or ad_id == _ZERO_UUID:
        return None
    return ad_id


def normalize_ad_id(value: str) -> str | None:
    """Return the IDFA/GAID as a lowercase UUID, or None (also for the all-zero id)."""
    if not isinstance(value, str):
        return None
    stripped = value.strip()
    return _ad_id(stripped) if stripped else None
