"""Snapshots of what TikTok holds for a mirrored audience, and the changes still in flight.

A mirror by difference compares the stream's sorted unique digests with the snapshot of the
same (API host, advertiser, audience, contract) and sends only the difference. A snapshot
records what TikTok holds, not how it was computed: normalisation rules never invalidate it.
Beside it, an in-flight record lists the digests of a change that was sent but not confirmed;
`convergence.py` says what a run does with both. This module stores them, locally or under any
fsspec URL, and knows nothing of TikTok or of the SDK.

Layout under the store's root: `<scope>/<advertiser_id>/<audience_id>/<CONTRACT>.<kind>`, the
scope being the API host (`scope_for`), the kind `snap` or `inflight`, plus `.lock` files.
Format of one file: a header of HEADER_SIZE bytes (one JSON object in ASCII, padded with
spaces, ending in a newline) then `count` digests as raw bytes (32 a SHA-256 digest, 16 an MD5),
strictly ascending, end to end. The header holds the format name and version, the key, the
kind, count, digest_bytes, created_at and full_at
(UTC: when the set was last uploaded in full) and the sha256 of the body, checked when the
body has been read.

Writing is atomic: the snapshot is built in a private temp file and becomes visible in one step
(os.replace locally, one object put otherwise), only when the writer's block exits cleanly.

Modules: keys.py (what a set is for), format.py (the bytes of one set), store.py (where sets
live; filesystems.py opens an fsspec one), locks.py (one run per audience), errors.py.
"""

from target_tiktok_audiences.snapshot.errors import LeaseLost, SnapshotCorrupt, SnapshotError
from target_tiktok_audiences.snapshot.format import (
    BLOCK,
    FORMAT,
    HEADER_SIZE,
    READABLE_VERSIONS,
    VERSION,
    DigestWriter,
    Header,
    Snapshot,
    SnapshotWriter,
    pack,
    pack_lines,
    unpack,
    utc_now,
)
from target_tiktok_audiences.snapshot.keys import Kind, SnapshotKey, scope_for, snapshot_url_errors
from target_tiktok_audiences.snapshot.locks import LEASE_SECONDS, LOCK_WAIT_SECONDS, Lease
from target_tiktok_audiences.snapshot.store import APP_NAME, Reason, SnapshotStore, Unusable
from target_tiktok_audiences.urls import display_url

__all__ = [
    "APP_NAME",
    "BLOCK",
    "FORMAT",
    "HEADER_SIZE",
    "LEASE_SECONDS",
    "LOCK_WAIT_SECONDS",
    "READABLE_VERSIONS",
    "VERSION",
    "DigestWriter",
    "Header",
    "Kind",
    "Lease",
    "LeaseLost",
    "Reason",
    "Snapshot",
    "SnapshotCorrupt",
    "SnapshotError",
    "SnapshotKey",
    "SnapshotStore",
    "SnapshotWriter",
    "Unusable",
    "display_url",
    "pack",
    "pack_lines",
    "scope_for",
    "snapshot_url_errors",
    "unpack",
    "utc_now",
]
