"""Sync modes and audience types: what differs between them, in one place.

What a mode does is the delivery class `deliveries.DELIVERIES` maps (mode, audience type) to;
the few things others ask of a mode are properties here, not string comparisons.
"""

from __future__ import annotations

from enum import Enum


class SyncMode(str, Enum):
    """How the stream relates to the audience."""

    MIRROR = "mirror"  # the audience equals the stream's users
    APPEND = "append"  # users are added and removed with files; never REPLACE
    INCREMENTAL = "incremental"  # users are added and removed in Segment API batches

    @property
    def last_record_wins(self) -> bool:
        """Within a run, a user's last record decides whether it is added or removed."""
        return self is not SyncMode.MIRROR

    @property
    def whole_set(self) -> bool:
        """The stream must carry every user each run (an incrementally replicated one cannot)."""
        return self is SyncMode.MIRROR

    @property
    def forced_audience_type(self) -> AudienceType | None:
        """The audience type this mode always uses, whatever audience_type says."""
        return AudienceType.PARTNER if self is SyncMode.INCREMENTAL else None


class AudienceType(str, Enum):
    """Which kind of TikTok audience a mapping keeps."""

    CUSTOMER_FILE = "customer_file"  # dmp/custom_audience: one contract per audience, files
    PARTNER = "partner"  # Segment API: every contract in one audience, user batches


class MirrorStrategy(str, Enum):
    """How a mirror reaches the stream's set."""

    DIFF = "diff"  # send only the difference against the snapshot of what TikTok accepted
    REPLACE = "replace"  # always REPLACE (customer-file audiences only)
