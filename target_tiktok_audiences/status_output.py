"""What `tiktok-audiences-status` says of each audience (AudienceHealth), as a table or JSON."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from target_tiktok_audiences.report import PARTNER_SIZE_NOTE

COLUMNS = (
    ("stream", "stream"),
    ("name", "audience"),
    ("advertiser_id", "advertiser"),
    ("audience_id", "id"),
    ("type", "type"),
    ("contract", "contract"),
    ("size", "size"),
    ("valid", "valid"),
    ("expires", "expires"),
    ("last_operation", "last operation"),
    ("snapshot", "snapshot"),
    ("problem", "problem"),
)


@dataclass
class AudienceHealth:
    """One audience in one advertiser, as TikTok and the snapshot store see it."""

    stream: str | None  # None: found in the snapshot store, not named by `audiences`
    name: str
    advertiser_id: str
    audience_id: str | None = None
    type: str | None = None  # customer_file | partner
    contract: str | None = None  # a customer file's calculate_type
    size: int | None = None
    valid: bool | None = None
    expires_at: str | None = None  # ISO 8601, UTC
    last_operation: str | None = None  # TikTok's word for it, as its history shows
    last_operation_at: str | None = None  # ISO 8601, UTC
    tiktok_error: str | None = None  # TikTok's words on a failure after it accepted a call
    snapshot_size: int | None = None
    snapshot_age_hours: float | None = None
    snapshot_note: str | None = None
    next_resync: str | None = None  # ISO 8601 date: the next full REPLACE (resync_days)
    size_gap: str | None = None  # TikTok's size far from what was sent: a likely edit
    problems: list[str] = field(default_factory=list)


def _cells(h: AudienceHealth) -> dict[str, str]:
    snapshot = "-"
    if h.snapshot_size is not None and h.snapshot_age_hours is not None:
        snapshot = f"{h.snapshot_size:,} ({h.snapshot_age_hours:.1f} h old)"
    elif h.snapshot_note:
        snapshot = h.snapshot_note
    last = h.last_operation or "-"
    if h.last_operation and h.last_operation_at:
        last += f" {h.last_operation_at[:16].replace('T', ' ')} UTC"
    valid = {True: "yes", False: "no", None: "-"}[h.valid]
    return {
        "stream": h.stream or "-",
        "name": h.name,
        "advertiser_id": h.advertiser_id,
        "audience_id": h.audience_id or "-",
        "type": h.type or "-",
        "contract": h.contract or "-",
        "size": f"{h.size:,}" if h.size is not None else "-",
        "valid": valid,
        "expires": h.expires_at[:10] if h.expires_at else "-",
        "last_operation": last,
        "snapshot": snapshot,
        "problem": "; ".join(h.problems) or "ok",
    }


def table(healths: Sequence[AudienceHealth], source: str) -> str:
    rows = [{k: title for k, title in COLUMNS}, *(_cells(h) for h in healths)]
    widths = {k: max(len(r[k]) for r in rows) for k, _ in COLUMNS}
    lines = ["  ".join(r[k].ljust(widths[k]) for k, _ in COLUMNS).rstrip() for r in rows]
    lines.append(f"Audiences from {source}.")
    for h in healths:
        if h.size_gap:
            lines.append(f"Audience '{h.name}' in advertiser {h.advertiser_id}: {h.size_gap}.")
    if any(h.type == "partner" and h.size is not None for h in healths):
        lines.append(f"Sizes: {PARTNER_SIZE_NOTE}.")
    return "\n".join(lines)


def as_json(healths: Sequence[AudienceHealth], source: str) -> str:
    return json.dumps(
        {
            "healthy": not any(h.problems for h in healths),
            "source": source,
            "audiences": [dataclasses.asdict(h) for h in healths],
            "note": PARTNER_SIZE_NOTE,
        },
        indent=2,
    )
