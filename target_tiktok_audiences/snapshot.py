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
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import errno
import hashlib
import json
import os
import re
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol, cast
from urllib.parse import urlsplit

import platformdirs

from target_tiktok_audiences import testhooks
from target_tiktok_audiences.urls import display_url as display_url  # re-exported
from target_tiktok_audiences.urls import url_errors

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

APP_NAME = "target-tiktok-audiences"
FORMAT = "target-tiktok-audiences/snapshot"
VERSION = 2
READABLE_VERSIONS = (1, 2)  # version 1: before in-flight records and full_at
HEADER_SIZE = 1024
BLOCK = 65_536  # digests per block read or written
LOCK_WAIT_SECONDS = 600.0  # how long a run waits for another run's lock before giving up
LEASE_SECONDS = 120.0  # an object-storage lock not renewed for this long was left by a dead run
_POLL_SECONDS = (0.2, 0.5, 1.0, 2.0)

# Package to install per fsspec protocol; s3 has the project's own extra.
_INSTALL = {
    "s3": "target-tiktok-audiences[s3] (s3fs)",
    "s3a": "target-tiktok-audiences[s3] (s3fs)",
    "gs": "gcsfs",
    "gcs": "gcsfs",
    "az": "adlfs",
    "abfs": "adlfs",
    "abfss": "adlfs",
}
_NAME_PART = re.compile(r"[A-Za-z0-9_-]{1,128}")
_SCOPE = re.compile(r"[A-Za-z0-9._-]{1,255}")


class SnapshotError(Exception):
    """A problem the user can act on; the message is one line and never holds credentials."""


class SnapshotCorrupt(SnapshotError):
    """A stored set's body does not match its header: it cannot be trusted."""


class LeaseLost(SnapshotError):
    """This run can no longer prove that it holds an audience's lock: it sends nothing more."""


class Lease:
    """Proof that this run still holds an audience's lock, checked before every write call and
    every snapshot write (fencing). A local lock is the kernel's (flock): it cannot be lost while
    the process lives, so this one always holds."""

    def check(self) -> None:
        """Raise LeaseLost when the lock may be another run's now."""


class _ObjectLease(Lease):
    """An object-storage lock's lease: lost the moment its renewal fails, its time runs out
    (a paused process, a frozen container), or the lock object names another owner (another
    run took the expired lock over: the lease's generation changed)."""

    def __init__(self, fs: AbstractFileSystem, path: str, owner: str, seconds: float, what: str):
        self._fs, self._path, self._owner, self._seconds = fs, path, owner, seconds
        self._what = what
        self.expires = time.time() + seconds
        self.lost: str | None = None

    def renew(self) -> None:
        """Extend the lease if it is still ours (the renewal thread, every third of it)."""
        if self.lost is not None:
            return
        try:
            self.check()
            self._fs.pipe_file(self._path, _owner_record(self._owner, self._seconds).encode())
            self.expires = time.time() + self._seconds
        except LeaseLost:
            pass
        except OSError as exc:
            self.lost = f"its renewal failed ({_oserror(exc)})"

    def check(self) -> None:
        if self.lost is None and time.time() >= self.expires:
            self.lost = (
                f"its lease of {self._seconds:.0f} s ran out before it was renewed (the process "
                "was paused or starved)"
            )
        if self.lost is None:
            try:
                owner = _lock_owner(self._fs.cat_file(self._path))
            except FileNotFoundError:
                owner = None
            except OSError as exc:
                self.lost = f"it could not be read back ({_oserror(exc)})"
                owner = self._owner
            if owner != self._owner:
                self.lost = "another run took it over (the lease's generation changed)"
        if self.lost is not None:
            raise LeaseLost(
                f"this run lost the snapshot lock for {self._what}: {self.lost}; it sent "
                "nothing more, as another run may have changed the audience since"
            )


def scope_for(api_base_url: str) -> str:
    """The API host (and port) as a path segment: audiences of two APIs never share snapshots."""
    parts = urlsplit(api_base_url)
    host = (parts.hostname or "unknown-host").lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    scope = f"{host}_{port}" if port else host
    return scope if _SCOPE.fullmatch(scope) and scope not in (".", "..") else "unknown-host"


def snapshot_url_errors(url: str | None) -> list[str]:
    """What is wrong with a snapshot_url, never quoting what may be a secret (None: default)."""
    if url is not None and not url.strip():
        return [
            "snapshot_url: is empty; leave it unset for the user data folder, or give a folder "
            "or an fsspec URL such as s3://bucket/prefix"
        ]
    return url_errors(url, "snapshot_url")


def pack(block: Sequence[str], width: int) -> bytes:
    """Ascending lowercase-hex digests of `width` characters -> their bytes, end to end.

    Raises ValueError (never showing a digest) unless every digest is `width` lowercase hex
    characters and the block is ascending: the diff relies on the order.
    """
    joined = "".join(block)
    message = f"digests must be {width} lowercase hex characters"
    if len(joined) != width * len(block) or joined != joined.lower():
        raise ValueError(message)
    try:
        data = bytes.fromhex(joined)
    except ValueError:
        raise ValueError(message) from None
    if len(data) * 2 != len(joined):  # fromhex skips whitespace
        raise ValueError(message)
    if sorted(block) != block:  # sorted() of a sorted list is one linear C pass
        raise ValueError("digests must be written in ascending order")
    return data


def pack_lines(text: str, width: int) -> bytes:
    """Digests of `width` lowercase hex characters, each followed by a newline -> their bytes,
    end to end, without a string per digest (pack's checks but the order, which the caller
    vouches for). Raises ValueError (never showing a digest) unless every line is exactly
    that."""
    message = f"digests must be {width} lowercase hex characters"
    try:
        data = bytes.fromhex(text)  # skips the newlines (and any other whitespace)
    except ValueError:
        raise ValueError(message) from None
    # Written back, the bytes give the text only if every line was `width` lowercase hex.
    if data.hex("\n", width // 2) + "\n" != text:
        raise ValueError(message)
    return data


def unpack(data: bytes, digest_bytes: int) -> list[str]:
    """Bytes of whole digests -> lowercase-hex strings (the inverse of pack)."""
    if not data:
        return []
    return data.hex("\n", digest_bytes).split("\n")


class Kind(enum.Enum):
    """What a stored digest set means."""

    SNAPSHOT = "snap"  # what TikTok holds, as far as the target knows
    IN_FLIGHT = "inflight"  # digests of a change sent but not confirmed: state at TikTok unknown
    CREATING = "creating"  # a create sent but not confirmed (creates.py): an empty set


@dataclass(frozen=True)
class SnapshotKey:
    """One snapshot per (advertiser, audience, contract), within the store's API host."""

    advertiser_id: str
    audience_id: str
    contract: str

    def __post_init__(self) -> None:
        # The parts become path segments: nothing that could climb out of the store.
        for part in (self.advertiser_id, self.audience_id, self.contract):
            if not _NAME_PART.fullmatch(part):
                raise ValueError("snapshot key parts must be letters, digits, '_' or '-'")

    @classmethod
    def for_name(cls, advertiser_id: str, name: str, contract: str) -> SnapshotKey:
        """A key for an audience known only by its name (its lock; a create not confirmed)."""
        digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:40]
        return cls(advertiser_id, f"name-{digest}", contract)

    def path(self, kind: Kind) -> str:
        return f"{self.advertiser_id}/{self.audience_id}/{self.contract}.{kind.value}"

    @property
    def name(self) -> str:
        return self.path(Kind.SNAPSHOT)

    @property
    def lock_name(self) -> str:
        return f"{self.advertiser_id}/{self.audience_id}/{self.contract}.lock"

    def describe(self) -> str:
        if self.audience_id.startswith("name-"):
            return f"an audience name of advertiser {self.advertiser_id}"
        return f"audience {self.audience_id} ({self.contract}) of advertiser {self.advertiser_id}"


class Reason(enum.Enum):
    """Why no snapshot can be diffed against: the mirror then uploads in full."""

    MISSING = "no snapshot yet"
    UNREADABLE = "unreadable"
    OTHER_AUDIENCE = "made for another audience"


@dataclass(frozen=True)
class Unusable:
    reason: Reason
    detail: str  # one line for the log, without digests or credentials


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Header:
    key: SnapshotKey
    count: int
    digest_bytes: int
    created_at: str
    sha256: str
    kind: Kind = Kind.SNAPSHOT
    full_at: str = ""  # when the set was last uploaded in full (create or REPLACE), UTC

    def encode(self) -> bytes:
        fields = {
            "format": FORMAT,
            "version": VERSION,
            "kind": self.kind.value,
            "advertiser_id": self.key.advertiser_id,
            "audience_id": self.key.audience_id,
            "contract": self.key.contract,
            "count": self.count,
            "digest_bytes": self.digest_bytes,
            "created_at": self.created_at,
            "full_at": self.full_at,
            "sha256": self.sha256,
        }
        text = json.dumps(fields, sort_keys=True).encode("ascii")
        if len(text) >= HEADER_SIZE:
            raise ValueError("snapshot header too long")
        return text.ljust(HEADER_SIZE - 1) + b"\n"

    @classmethod
    def decode(cls, raw: bytes) -> Header:
        """Raises ValueError when the bytes are not a header of this format and version."""
        if len(raw) != HEADER_SIZE or not raw.endswith(b"\n"):
            raise ValueError("short header")
        fields = json.loads(raw.decode("ascii"))
        if not isinstance(fields, dict) or fields.get("format") != FORMAT:
            raise ValueError("not a snapshot")
        if fields.get("version") not in READABLE_VERSIONS:
            raise ValueError(f"format version {fields.get('version')!r}, expected {VERSION}")
        key = SnapshotKey(
            str(fields["advertiser_id"]), str(fields["audience_id"]), str(fields["contract"])
        )
        count, digest_bytes = fields["count"], fields["digest_bytes"]
        if not isinstance(count, int) or not isinstance(digest_bytes, int) or digest_bytes < 1:
            raise ValueError("bad count or digest size")
        created = str(fields["created_at"])
        return cls(
            key,
            count,
            digest_bytes,
            created,
            str(fields["sha256"]),
            Kind(fields.get("kind", Kind.SNAPSHOT.value)),
            str(fields.get("full_at") or created),
        )

    def full_age_seconds(self, now: dt.datetime) -> float | None:
        """Seconds from the last full upload to `now`, None when the header cannot say."""
        try:
            when = dt.datetime.fromisoformat(self.full_at)
        except ValueError:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        return (now - when).total_seconds()


class Snapshot:
    """A usable stored set: its header, and its digests streamed in ascending order."""

    def __init__(self, header: Header, opener: Callable[[], IO[bytes]], where: str) -> None:
        self.header = header
        self._open = opener
        self.where = where

    @property
    def count(self) -> int:
        return self.header.count

    def blocks(self, size: int = BLOCK) -> Iterator[list[str]]:
        """Blocks of the digests, ascending; memory holds one block.

        Raises SnapshotError at the end if the body does not match the header's checksum (or
        if the snapshot was replaced meanwhile, which the lock is there to prevent).
        """
        width = self.header.digest_bytes
        digest = hashlib.sha256()
        with self._open() as fh:
            if fh.read(HEADER_SIZE) != self.header.encode():
                raise SnapshotError(f"snapshot {self.where} changed while it was read")
            while data := fh.read(size * width):
                if len(data) % width:
                    raise SnapshotCorrupt(f"snapshot {self.where} is corrupt (truncated)")
                digest.update(data)
                yield unpack(data, width)
        if digest.hexdigest() != self.header.sha256:
            raise SnapshotCorrupt(f"snapshot {self.where} is corrupt (checksum mismatch)")

    def __iter__(self) -> Iterator[str]:
        for block in self.blocks():
            yield from block


class DigestWriter(Protocol):
    def write(self, digest: str) -> None: ...
    def write_block(self, block: Sequence[str]) -> None: ...


class SnapshotWriter:
    """Takes the new set's digests, ascending, into a private temp file (see SnapshotStore)."""

    def __init__(self, fh: IO[bytes]) -> None:
        self._fh = fh
        self._hash = hashlib.sha256()
        self._width = 0
        self._last = ""
        self._pending: list[str] = []
        self.count = 0
        fh.write(b" " * HEADER_SIZE)  # the real header goes here at the end

    def write(self, digest: str) -> None:
        self._pending.append(digest)
        if len(self._pending) >= BLOCK:
            self._flush()

    def write_block(self, block: Sequence[str]) -> None:
        """A block of ascending digests (e.g. the `keep` sink of extsort.diff)."""
        self._flush()
        self._write(block)

    def write_lines(self, text: str) -> None:
        """Whole lines of digests, one a line, ascending within `text` (a sorted file of
        extsort.write_sorted, which checked their order as it wrote them): packed from the
        text; the order is checked here only against the lines before."""
        self._flush()
        if not text:
            return
        if not self._width:
            self._width = text.find("\n")
            if self._width <= 0 or self._width % 2:
                raise ValueError("digests must be an even number of hex characters")
        width = self._width
        if text[:width] <= self._last:
            raise ValueError("digests must be written in strictly ascending order")
        data = pack_lines(text, width)
        self._hash.update(data)
        self._fh.write(data)
        self._last = text[-width - 1 : -1]
        self.count += len(data) * 2 // width

    def write_packed(self, data: bytes, digest_bytes: int) -> None:
        """Digests already packed (the body of a snapshot this store wrote, see
        SnapshotStore.copy_written): taken as they are, their order checked when first written."""
        self._flush()
        if not data:
            return
        if len(data) % digest_bytes or (self._width and self._width != 2 * digest_bytes):
            raise ValueError("packed digests of another size")
        self._width = 2 * digest_bytes
        self._hash.update(data)
        self._fh.write(data)
        self._last = data[-digest_bytes:].hex()
        self.count += len(data) // digest_bytes

    @property
    def checksum(self) -> str:
        """SHA-256 of the body written so far (what the header will say)."""
        self._flush()
        return self._hash.hexdigest()

    def _flush(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, []
            self._write(pending)

    def _write(self, block: Sequence[str]) -> None:
        if not block:
            return
        if not self._width:
            self._width = len(block[0])
            if self._width % 2:
                raise ValueError("digests must be an even number of hex characters")
        if block[0] <= self._last:
            raise ValueError("digests must be written in strictly ascending order")
        data = pack(block, self._width)
        self._hash.update(data)
        self._fh.write(data)
        self._last = block[-1]
        self.count += len(block)

    def finish(self, key: SnapshotKey, kind: Kind, full_at: str) -> None:
        self._flush()
        now = utc_now()
        header = Header(
            key,
            self.count,
            self._width // 2 or 32,  # an empty set: any size reads back as empty
            now,
            self._hash.hexdigest(),
            kind,
            full_at or now,
        )
        self._fh.seek(0)
        self._fh.write(header.encode())
        self._fh.flush()
        os.fsync(self._fh.fileno())


_COPY_BLOCK = 1 << 20  # bytes per read when copy_written copies a packed body (_copy_size)
_LINES_BLOCK = 1 << 16  # bytes per read of a sorted file (pieces the allocator reuses)


def _copy_size(digest_bytes: int) -> int:
    """Bytes per read of a packed body: whole digests only (write_packed refuses a part of
    one, and 1 MiB is no multiple of a partner entry's 33 bytes)."""
    return max(_COPY_BLOCK // digest_bytes, 1) * digest_bytes


class _NotTheSame(Exception):
    """copy_written: the file changed since this store wrote it (nothing is committed)."""


class SnapshotStore:
    """Snapshots under `url`: None (the user data dir), a local path, file://, or fsspec URL.

    `scope` (the API host, see scope_for) is a folder level of its own, so that snapshots of
    two APIs (TikTok, its sandbox, a local emulator) never share a path.
    `storage_options` go to fsspec (e.g. {"client_kwargs": {"endpoint_url": ...}} for an S3 API
    elsewhere; the standard AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL variables work too).
    `read_only` (dry run): reading works, writer() refuses with SnapshotError, lock() is a no-op
    (readers never see a half-written snapshot, so a dry run needs no lock).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        scope: str = "",
        storage_options: Mapping[str, object] | None = None,
        read_only: bool = False,
        lock_wait_seconds: float = LOCK_WAIT_SECONDS,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        self.read_only = read_only
        self._wait = lock_wait_seconds
        self._lease = lease_seconds
        self._fs: AbstractFileSystem | None = None
        self._scope = scope
        # (source, file, header) of the last set written with a `source` (see copy_written)
        self._written: tuple[object, str, bytes] | None = None
        self._held: dict[SnapshotKey, Lease] = {}  # the locks this run holds (never waited on)
        if url is None:
            root = str(Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)) / "snapshots")
            self.url = root
        else:
            # Refused before any use: a credential in the URL would reach messages, object
            # names and the libraries' DEBUG lines (settings.config_errors says so earlier).
            problems = snapshot_url_errors(url)
            if problems:
                raise SnapshotError(problems[0])
            self.url = url
            root = url
        scheme = urlsplit(root).scheme if "://" in root else ""
        if scheme in ("", "file"):
            self._root = Path(root.removeprefix("file://")).expanduser()
            self.display = str(self._root)
        else:
            self.display = display_url(root)
            self._fs, self._prefix = _filesystem(root, self.display, storage_options or {})

    @property
    def local(self) -> bool:
        return self._fs is None

    def _rel(self, name: str) -> str:
        """A key's name below the root: inside the scope folder when there is one."""
        return f"{self._scope}/{name}" if self._scope else name

    def where(self, key: SnapshotKey, kind: Kind = Kind.SNAPSHOT) -> str:
        """Where the file of `key` lives, for messages."""
        return f"{self.display.rstrip('/')}/{self._rel(key.path(kind))}"

    # -- reading ------------------------------------------------------------------------------

    def read(self, key: SnapshotKey, kind: Kind = Kind.SNAPSHOT) -> Snapshot | Unusable:
        """The stored set of `key`, or why there is none that can be used (never raises).

        Before scopes existed snapshots lived at the root: one is still read from there.
        """
        found = self._read(key, kind, self._rel(key.path(kind)))
        if (
            self._scope
            and kind is Kind.SNAPSHOT
            and isinstance(found, Unusable)
            and found.reason is Reason.MISSING
        ):
            legacy = self._read(key, kind, key.path(kind))
            if isinstance(legacy, Snapshot):
                return legacy
        return found

    def _read(self, key: SnapshotKey, kind: Kind, rel: str) -> Snapshot | Unusable:
        where = f"{self.display.rstrip('/')}/{rel}"
        try:
            with self._open_read(rel) as fh:
                raw = fh.read(HEADER_SIZE)
                size = self._size(fh, rel)
        except FileNotFoundError:
            return Unusable(Reason.MISSING, f"no snapshot at {where}")
        except OSError as exc:
            return Unusable(Reason.UNREADABLE, f"snapshot {where} is unreadable ({_oserror(exc)})")
        try:
            header = Header.decode(raw)
        except (ValueError, KeyError, UnicodeDecodeError) as exc:
            return Unusable(Reason.UNREADABLE, f"snapshot {where} is unreadable: {exc}")
        if header.key != key or header.kind is not kind:
            return Unusable(
                Reason.OTHER_AUDIENCE,
                f"snapshot {where} was made for {header.key.describe()}",
            )
        if size != HEADER_SIZE + header.count * header.digest_bytes:
            return Unusable(Reason.UNREADABLE, f"snapshot {where} is unreadable: truncated")
        return Snapshot(header, lambda: self._open_read(rel), where)

    def _open_read(self, name: str) -> IO[bytes]:
        if self._fs is None:
            return open(self._root / name, "rb")
        handle: IO[bytes] = self._fs.open(self._path(name), "rb", block_size=8 << 20)
        return handle

    def _size(self, fh: IO[bytes], name: str) -> int:
        if self._fs is None:
            return os.fstat(fh.fileno()).st_size
        return int(self._fs.size(self._path(name)))

    def _path(self, name: str) -> str:
        return f"{self._prefix.rstrip('/')}/{name}" if self._prefix else name

    # -- writing ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def writer(
        self,
        key: SnapshotKey,
        *,
        kind: Kind = Kind.SNAPSHOT,
        full_at: str = "",
    ) -> Iterator[SnapshotWriter]:
        """Yields a writer; the file is replaced only if the block exits without exception.

        Locally: a 0600 temp file in the key's own 0700 dir, fsync, os.replace, fsync of the
        dir. Object storage: a 0600 local temp file, then one put of the whole object (a
        multipart upload for large ones, which is not visible before it completes).
        Failures to write raise SnapshotError naming the file, never the spool folder.
        """
        if self.read_only:
            raise SnapshotError(
                f"snapshot store {self.display} is read-only (dry run): no snapshot is written"
            )
        where = self.where(key, kind)
        step = {Kind.SNAPSHOT: "snapshot", Kind.IN_FLIGHT: "in_flight"}.get(kind, kind.value)
        try:
            testhooks.checkpoint("before", step)
            self.check_leases()
            if self._fs is None:
                directory = self._local_dir(key)
                fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{key.contract}.", suffix=".tmp")
            else:
                fd, tmp = tempfile.mkstemp(prefix="target-tiktok-audiences-snap-", suffix=".tmp")
        except OSError as exc:
            raise _write_error(where, exc) from None
        try:
            with open(fd, "w+b") as fh:
                out = SnapshotWriter(fh)
                yield out
                try:
                    out.finish(key, kind, full_at)
                except OSError as exc:
                    raise _write_error(where, exc) from None
            self.check_leases()  # the write may have outlasted the lease: checked as it lands
            self._commit(Path(tmp), self._rel(key.path(kind)))
            testhooks.checkpoint("after", step)
        except OSError as exc:  # a write into the temp file while the caller streamed
            raise _write_error(where, exc) from None
        finally:
            Path(tmp).unlink(missing_ok=True)

    def write(
        self,
        key: SnapshotKey,
        blocks: Iterable[Sequence[str]],
        *,
        kind: Kind = Kind.SNAPSHOT,
        full_at: str = "",
        source: object = None,
    ) -> int:
        """Write a whole set from ascending blocks; returns its count.

        `source`, when given, names where the blocks came from (e.g. the BlockSource that
        streamed them): copy_written can then write the same set elsewhere without it.
        """
        rel = self._forget(key, kind)
        with self.writer(key, kind=kind, full_at=full_at) as out:
            for block in blocks:
                out.write_block(block)
        self._remember(source, rel)
        return out.count

    def write_lines(
        self,
        key: SnapshotKey,
        path: Path,
        *,
        kind: Kind = Kind.SNAPSHOT,
        full_at: str = "",
        source: object = None,
    ) -> int:
        """Write a whole set from a file of ascending unique digests, one a line, as
        extsort.write_sorted writes it (and checks its order); returns its count. The same
        file as `write` makes from the file's blocks, without a string per digest (issue 21).
        `source`: as for write. Raises ValueError if a line is not a digest, or the file does
        not end with a newline."""
        rel = self._forget(key, kind)
        with open(path, "rb") as fh, self.writer(key, kind=kind, full_at=full_at) as out:
            rest = b""
            while data := fh.read(_LINES_BLOCK):
                data = rest + data
                cut = data.rfind(b"\n") + 1  # whole lines only; the rest starts the next read
                out.write_lines(data[:cut].decode("ascii"))
                rest = data[cut:]
            if rest:
                raise ValueError("the last line of a sorted file has no newline")
        self._remember(source, rel)
        return out.count

    def _forget(self, key: SnapshotKey, kind: Kind) -> str:
        """`key`'s file is about to be written: what was remembered of it no longer holds."""
        rel = self._rel(key.path(kind))
        if self._written is not None and self._written[1] == rel:
            self._written = None
        return rel

    def _remember(self, source: object, rel: str) -> None:
        if source is not None and self._fs is None:
            with contextlib.suppress(OSError), open(self._root / rel, "rb") as fh:
                self._written = (source, rel, fh.read(HEADER_SIZE))

    def copy_written(
        self, source: object, key: SnapshotKey, *, kind: Kind = Kind.SNAPSHOT, full_at: str = ""
    ) -> bool:
        """Write the set last written from `source` (see write) as `key`'s, from that file's
        packed body: no block is read from the source, packed or checked again (a create
        records its set in flight, then as the snapshot: issue 21). Local stores only; False,
        with nothing written, unless that file is still the one this store wrote (same header,
        same body checksum); the caller then writes from the source.
        """
        written = self._written
        if written is None or written[0] is not source or self._fs is not None:
            return False
        _, rel, header = written
        try:
            old = Header.decode(header)
            fh = open(self._root / rel, "rb")  # noqa: SIM115 (closed below)
        except (OSError, ValueError, KeyError):
            return False
        try:
            with fh:
                if fh.read(HEADER_SIZE) != header:
                    return False
                size = _copy_size(old.digest_bytes)
                with self.writer(key, kind=kind, full_at=full_at) as out:
                    while data := fh.read(size):
                        if len(data) % old.digest_bytes:
                            raise _NotTheSame  # truncated since it was written
                        out.write_packed(data, old.digest_bytes)
                    if out.count != old.count or out.checksum != old.sha256:
                        raise _NotTheSame
        except _NotTheSame:
            return False
        return True

    def remove(self, key: SnapshotKey, kind: Kind) -> None:
        """Delete the file of `key` (in-flight records once their change is confirmed)."""
        if self.read_only:
            return
        rel = self._rel(key.path(kind))
        if self._written is not None and self._written[1] == rel:
            self._written = None
        self.check_leases()
        try:
            if self._fs is None:
                (self._root / rel).unlink(missing_ok=True)
            elif self._fs.exists(self._path(rel)):
                self._fs.rm_file(self._path(rel))
        except OSError as exc:
            raise _write_error(self.where(key, kind), exc) from None

    def _commit(self, tmp: Path, rel: str) -> None:
        if self._fs is None:
            final = self._root / rel
            os.replace(tmp, final)
            _fsync_dir(final.parent)
            return
        self._fs.put_file(str(tmp), self._path(rel))

    def _local_dir(self, key: SnapshotKey) -> Path:
        """The key's dir, each level this store creates made 0700 (umask aside)."""
        path = self._root
        missing = [p for p in [path, *path.parents] if not p.exists()]
        for level in reversed(missing):
            level.mkdir(mode=0o700, exist_ok=True)
            level.chmod(0o700)
        parts = [key.advertiser_id, key.audience_id]
        if self._scope:
            parts.insert(0, self._scope)
        for part in parts:
            path = path / part
            if not path.exists():
                path.mkdir(mode=0o700, exist_ok=True)
                path.chmod(0o700)
        return path

    # -- locking ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, key: SnapshotKey) -> Iterator[Lease]:
        """Held while a run reads, changes and records one audience (see README, Snapshots).

        Another holder is waited for up to `lock_wait_seconds`, then SnapshotError.
        Locally: an exclusive fcntl.flock on `<CONTRACT>.lock` beside the snapshot. The kernel
        releases it when the process ends, however it ends, so a local lock is never stale
        (except on network file systems without flock support).

        Object storage: a lock object `<CONTRACT>.lock` beside the snapshot, created with a
        conditional put (If-None-Match: *) where the file system supports it (s3fs: AWS S3 and
        S3 APIs that honour the header, such as MinIO); elsewhere fsspec checks for the object
        first, which leaves a short race. The object holds its owner and a lease: a live run
        renews it every third of `lease_seconds`, so the lock of a killed run expires within
        `lease_seconds` and is then taken over. The object is read back after the put, and
        released by deleting it when it is still ours.
        Read-only stores (dry run) take no lock.
        """
        if self.read_only:
            yield Lease()
            return
        if key in self._held:
            # Waiting would wait on itself (a flock of another descriptor of this process, or
            # our own lock object) until lock_wait_seconds ends.
            raise SnapshotError(
                f"this run already holds the snapshot lock for {key.describe()}: two of its "
                "mappings sync one audience; give one of them another audience_name"
            )
        self._held[key] = Lease()
        try:
            if self._fs is None:
                with self._local_lock(key):
                    yield self._held[key]
            else:
                with self._object_lock(key) as lease:
                    self._held[key] = lease
                    yield lease
        finally:
            self._held.pop(key, None)

    def check_leases(self) -> None:
        """Fencing: before a snapshot write, every lock this run holds must still be its own
        (LeaseLost otherwise)."""
        for lease in list(self._held.values()):
            lease.check()

    def _waited(self, key: SnapshotKey, where: str, extra: str = "") -> SnapshotError:
        return SnapshotError(
            f"another run holds the snapshot lock for {key.describe()} ({where}{extra}); "
            f"waited {self._wait:.0f} s. Re-run when it has finished; if no other run is "
            "active, remove the lock"
        )

    @contextlib.contextmanager
    def _local_lock(self, key: SnapshotKey) -> Iterator[None]:
        import fcntl  # POSIX only; imported here so the module still imports elsewhere

        where = f"lock file {self.display.rstrip('/')}/{self._rel(key.lock_name)}"
        try:
            path = self._local_dir(key) / f"{key.contract}.lock"
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:  # the store's failure: that audience is deferred, in one line
            raise SnapshotError(
                f"snapshot_url {self.display}: cannot make the {where} ({_oserror(exc)})"
            ) from None
        try:
            for pause in _pauses(self._wait):
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if pause is None:
                        raise self._waited(key, f"lock file {path}") from None
                    time.sleep(pause)
            os.ftruncate(fd, 0)
            os.write(fd, _owner_record(_owner(), 0).encode())
            yield
        finally:
            os.close(fd)  # closing releases the flock

    @contextlib.contextmanager
    def _object_lock(self, key: SnapshotKey) -> Iterator[_ObjectLease]:
        assert self._fs is not None
        fs, path = self._fs, self._path(self._rel(key.lock_name))
        where = f"lock object {self.display.rstrip('/')}/{self._rel(key.lock_name)}"
        owner = _owner()
        for pause in _pauses(self._wait):
            try:
                fs.pipe_file(path, _owner_record(owner, self._lease).encode(), mode="create")
                if _lock_owner(fs.cat_file(path)) == owner:
                    break
            except FileExistsError:
                if self._lease_expired(path):
                    with contextlib.suppress(FileNotFoundError):
                        fs.rm_file(path)  # its run died without releasing it
                    continue
            except OSError as exc:
                raise SnapshotError(
                    f"snapshot_url {self.display}: cannot create the lock object "
                    f"{self._rel(key.lock_name)} ({_oserror(exc)})"
                ) from None
            if pause is None:
                raise self._waited(
                    key, where, f", renewed by its run every {self._lease / 3:.0f} s"
                )
            time.sleep(pause)
        lease = _ObjectLease(fs, path, owner, self._lease, key.describe())
        stop = threading.Event()
        renewer = threading.Thread(
            target=self._renew, args=(lease, stop), name="snapshot-lock-lease", daemon=True
        )
        renewer.start()
        try:
            yield lease
        finally:
            stop.set()
            renewer.join()
            with contextlib.suppress(OSError):
                if _lock_owner(fs.cat_file(path)) == owner:
                    fs.rm_file(path)

    def _renew(self, lease: _ObjectLease, stop: threading.Event) -> None:
        """Extend the lease while the run works; once lost, it stays lost (fencing)."""
        while not stop.wait(self._lease / 3) and lease.lost is None:
            lease.renew()

    def _lease_expired(self, path: str) -> bool:
        assert self._fs is not None
        try:
            record = json.loads(self._fs.cat_file(path))
            expires = record.get("expires")
            if expires is None:  # a lock object of an older version: created + its 6 h limit
                expires = float(record["created"]) + 6 * 3600
            return time.time() > float(expires)
        except FileNotFoundError:
            return True  # released meanwhile: try again at once
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return False

    def snapshot_contracts(self, advertiser_id: str) -> dict[str, list[str]]:
        """Audience id -> contracts with a snapshot under `advertiser_id` (fan-out, status)."""
        if not _NAME_PART.fullmatch(advertiser_id):
            raise ValueError("snapshot key parts must be letters, digits, '_' or '-'")
        found: dict[str, list[str]] = {}
        try:
            pattern = self._rel(f"{advertiser_id}/*/*.snap")
            if self._fs is None:
                names = [p.as_posix() for p in self._root.glob(pattern)]
            else:
                names = [str(p) for p in self._fs.glob(self._path(pattern))]
        except OSError as exc:
            raise SnapshotError(
                f"snapshot_url {self.display}: cannot list {advertiser_id}/ ({_oserror(exc)})"
            ) from None
        for name in sorted(names):
            _, audience_id, file_name = name.split("/")[-3:]
            if audience_id.startswith("name-"):  # a create not confirmed, not an audience
                continue
            found.setdefault(audience_id, []).append(file_name.removesuffix(".snap"))
        return found

    # -- markers: empty objects whose names carry everything (the operations ledger) ----------

    def mark(self, name: str) -> None:
        """Create the empty object `name` (below the scope); one write, never a read-modify-
        write, so that concurrent runs never lose each other's marks."""
        if self.read_only:
            return
        rel = self._rel(name)
        where = f"{self.display.rstrip('/')}/{rel}"
        try:
            if self._fs is None:
                path = self._root / rel
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                os.close(fd)
                _fsync_dir(path.parent)
            else:
                self._fs.pipe_file(self._path(rel), b"")
        except OSError as exc:
            raise _write_error(where, exc) from None

    def marks(self, folder: str) -> list[str]:
        """The names of the objects in `folder` (below the scope), without the folder."""
        rel = self._rel(folder)
        try:
            if self._fs is None:
                path = self._root / rel
                return sorted(p.name for p in path.iterdir()) if path.is_dir() else []
            if not self._fs.exists(self._path(rel)):
                return []
            listed = self._fs.ls(self._path(rel), detail=False)
            return sorted(str(p).rsplit("/", 1)[-1] for p in listed)
        except OSError as exc:
            raise SnapshotError(
                f"snapshot_url {self.display}: cannot list {folder}/ ({_oserror(exc)})"
            ) from None

    def unmark(self, name: str) -> None:
        """Remove the object `name`, if it is there (best effort: a leftover is harmless)."""
        if self.read_only:
            return
        rel = self._rel(name)
        with contextlib.suppress(OSError):
            if self._fs is None:
                (self._root / rel).unlink(missing_ok=True)
            else:
                self._fs.rm_file(self._path(rel))


def _pauses(wait: float) -> Iterator[float | None]:
    """Pauses between lock attempts, growing to a few seconds; None when time is up."""
    deadline = time.monotonic() + wait
    i = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            yield None
            return
        yield min(_POLL_SECONDS[min(i, len(_POLL_SECONDS) - 1)], left)
        i += 1


def _write_error(where: str, exc: OSError) -> SnapshotError:
    return SnapshotError(f"cannot write {where} ({_oserror(exc)})")

    # -- listing ------------------------------------------------------------------------------


def _filesystem(
    url: str, shown: str, options: Mapping[str, object]
) -> tuple[AbstractFileSystem, str]:
    import fsspec

    protocol = urlsplit(url).scheme
    try:
        fs, prefix = fsspec.core.url_to_fs(url, **options)
    except ImportError:
        package = _INSTALL.get(protocol, f"the fsspec implementation of {protocol}://")
        raise SnapshotError(f"snapshot_url {shown}: install {package} to use it") from None
    except Exception as exc:  # any library's refusal is one line, scrubbed of credentials
        # The URL passed snapshot_url_errors: no credential of it can be in the text.
        detail = str(exc) or type(exc).__name__
        raise SnapshotError(f"snapshot_url {shown}: {detail}") from None
    return cast("AbstractFileSystem", _Guarded(fs)), str(prefix)


class _Guarded:
    """A file system whose calls fail with OSError only: a storage library's own errors
    (botocore's ParamValidationError, NoCredentialsError, …) are no OSError, would pass every
    handler as a traceback, and their text may quote the request. Only their kind is kept."""

    def __init__(self, fs: AbstractFileSystem) -> None:
        self._fs = fs

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._fs, name)
        if not callable(value):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return value(*args, **kwargs)
            except OSError:
                raise
            except Exception as exc:
                raise OSError(errno.EIO, f"storage error {type(exc).__name__}") from None

        return call


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def _owner_record(owner: str, lease: float) -> str:
    now = time.time()
    record: dict[str, object] = {"owner": owner, "created": now}
    if lease:
        record["expires"] = now + lease
    return json.dumps(record) + "\n"


def _lock_owner(raw: bytes) -> str | None:
    try:
        owner = json.loads(raw)["owner"]
    except (ValueError, KeyError, TypeError):
        return None
    return owner if isinstance(owner, str) else None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _oserror(exc: OSError) -> str:
    """The error's kind and text, without the file name (the caller names the object)."""
    kind = errno.errorcode.get(exc.errno, type(exc).__name__) if exc.errno else type(exc).__name__
    return f"{kind}: {exc.strerror}" if exc.strerror else kind
