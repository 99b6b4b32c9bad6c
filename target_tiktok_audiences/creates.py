"""Creates in flight: a create that was sent but whose audience was never seen.

TikTok may take seconds to list an audience it is creating. A run killed (or whose answer was
lost) while TikTok was still creating leaves the next run to look, not to create: before it
sends a create, a run records it in the snapshot store (`<advertiser>/name-<hash>/AUDIENCE
.creating`, an empty set whose header holds when); the record is dropped once the audience is
delivered (TikTok may answer a create before it lists the audience), or when TikTok refused the
create. A run that finds the record of a name waits for that audience to appear (up to
`create_confirm_seconds` after the create was sent) before it may create one: two audiences of
one name are never made by this target.
"""

from __future__ import annotations

import datetime as dt

from target_tiktok_audiences.snapshot import Kind, Snapshot, SnapshotKey, SnapshotStore
from target_tiktok_audiences.timescale import time_scale

_CONTRACT = "AUDIENCE"  # the name-level key the audience's lock uses too


class StoredCreates:
    """The create records of one snapshot store (dry run: read only, nothing recorded)."""

    def __init__(self, store: SnapshotStore) -> None:
        self._store = store

    @property
    def recording(self) -> bool:
        return not self._store.read_only

    def _key(self, advertiser_id: str, name: str) -> SnapshotKey:
        return SnapshotKey.for_name(advertiser_id, name, _CONTRACT)

    def mark(self, advertiser_id: str, name: str) -> None:
        """Before a create is sent."""
        if self.recording:
            self._store.write(self._key(advertiser_id, name), (), kind=Kind.CREATING)

    def clear(self, advertiser_id: str, name: str) -> None:
        """The audience was delivered (or TikTok refused the create): nothing is in flight."""
        if self.recording:
            self._store.remove(self._key(advertiser_id, name), Kind.CREATING)

    def age(self, advertiser_id: str, name: str) -> float | None:
        """Seconds since an unconfirmed create of `name` was sent, None when there is none."""
        found = self._store.read(self._key(advertiser_id, name), Kind.CREATING)
        if not isinstance(found, Snapshot):
            return None
        try:
            sent = dt.datetime.fromisoformat(found.header.created_at)
        except ValueError:
            return 0.0  # when is unknown: wait the whole time
        if sent.tzinfo is None:
            sent = sent.replace(tzinfo=dt.timezone.utc)
        real = (dt.datetime.now(dt.timezone.utc) - sent).total_seconds()
        return max(real / time_scale(), 0.0)  # in TikTok's seconds, as the wait is
