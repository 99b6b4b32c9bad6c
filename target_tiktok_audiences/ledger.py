"""The operations ledger: each update operation this target sends, recorded before it is sent.

TikTok's history words are undocumented, so the daily operations budget cannot be counted from
them alone. Each APPEND, REMOVE or REPLACE is written to the snapshot store (beside the
snapshots, under the audience's lock) before it is sent, as one empty object whose name holds
the advertiser, TikTok's time (its Date header), the audience and the action. One object per
operation: concurrent runs never overwrite each other's entries, on a local disk or in object
storage. A sent call whose answer was lost, or that TikTok refused, still counts (the stricter
reading). Entries older than two days are removed as new ones are written.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from target_tiktok_audiences.snapshot import SnapshotStore

FOLDER = "_ledger"
KEEP = timedelta(hours=48)
_STAMP = "%Y%m%dT%H%M%S%fZ"
_NAME = re.compile(
    r"(?P<at>\d{8}T\d{12}Z)\.(?P<audience>[A-Za-z0-9_-]{1,128})\."
    r"(?P<action>APPEND|REMOVE|REPLACE)\.[0-9a-f]{8}\.op"
)
_PART = re.compile(r"[A-Za-z0-9_-]{1,128}")


@dataclass(frozen=True)
class LedgerEntry:
    audience_id: str
    action: str
    at: datetime


class Ledger:
    """The ledger of one snapshot store (and so of one API host)."""

    def __init__(self, store: SnapshotStore) -> None:
        self.store = store

    @staticmethod
    def _folder(advertiser_id: str) -> str:
        if not _PART.fullmatch(advertiser_id):
            raise ValueError("advertiser ids are letters, digits, '_' or '-'")
        return f"{advertiser_id}/{FOLDER}"

    def record(self, advertiser_id: str, audience_id: str, action: str, at: datetime) -> None:
        """Before the operation is sent; raises SnapshotError when it cannot be written (then
        the operation is not sent)."""
        if not _PART.fullmatch(audience_id) or action not in ("APPEND", "REMOVE", "REPLACE"):
            raise ValueError(f"not a ledger entry: {action} on {audience_id!r}")
        stamp = at.astimezone(timezone.utc).strftime(_STAMP)
        name = f"{stamp}.{audience_id}.{action}.{uuid.uuid4().hex[:8]}.op"
        folder = self._folder(advertiser_id)
        self.store.mark(f"{folder}/{name}")
        for old in self._entries(advertiser_id):
            if old[1].at < at - KEEP:
                self.store.unmark(f"{folder}/{old[0]}")

    def entries(self, advertiser_id: str, since: datetime) -> list[LedgerEntry]:
        """The operations recorded for the advertiser after `since`, oldest first."""
        return [entry for _, entry in self._entries(advertiser_id) if entry.at > since]

    def _entries(self, advertiser_id: str) -> list[tuple[str, LedgerEntry]]:
        found = []
        for name in self.store.marks(self._folder(advertiser_id)):
            match = _NAME.fullmatch(name)
            if match is None:  # not ours (a temp file, a note): never counted
                continue
            at = datetime.strptime(match["at"], _STAMP).replace(tzinfo=timezone.utc)
            found.append((name, LedgerEntry(match["audience"], match["action"], at)))
        return sorted(found, key=lambda item: item[1].at)
