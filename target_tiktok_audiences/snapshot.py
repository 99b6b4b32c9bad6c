"""Snapshots of what TikTok last accepted for a mirrored audience: digests only, sorted.

A mirror by difference compares the stream's sorted unique digests with the snapshot of the
same (advertiser, audience, contract) and sends only the difference. This module stores those
snapshots, locally or under any fsspec URL, and knows nothing of TikTok or of the SDK.

Format of one snapshot, `<advertiser_id>/<audience_id>/<CONTRACT>.snap` under the store's root:
a header of HEADER_SIZE bytes (one JSON object in ASCII, padded with spaces, ending in a newline)
then `count` digests as raw bytes (32 a SHA-256 digest, 16 an MD5), strictly ascending, end to
end. The header holds the format name and version, the key, the rules fingerprint, count,
digest_bytes, created_at (UTC) and the sha256 of the body, checked when the body has been read.

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
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

import platformdirs

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

APP_NAME = "target-tiktok-audiences"
FORMAT = "target-tiktok-audiences/snapshot"
VERSION = 1
HEADER_SIZE = 1024
BLOCK = 65_536  # digests per block read or written
DEFAULT_LOCK_STALE_SECONDS = 6 * 3600

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


class SnapshotError(Exception):
    """A problem the user can act on; the message is one line and never holds credentials."""


def fingerprint(
    *, hash_identifiers: bool, email_normalization: str, default_phone_region: str | None
) -> str:
    """sha256 of the normalisation rules, so digests made under other rules are never diffed."""
    rules = {
        "default_phone_region": default_phone_region,
        "email_normalization": email_normalization,
        "hash_identifiers": hash_identifiers,
    }
    canonical = json.dumps(rules, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def display_url(url: str) -> str:
    """The URL without user info, query or fragment, which may hold credentials (SAS tokens,
    keys, signatures); every link of a chained URL (`filecache::s3://…`) is cleaned, and a
    "port" that is not a number (`s3://bucket:SECRET/x`) is dropped.
    """
    return "::".join(_display_part(part) for part in url.split("::"))


def _display_part(part: str) -> str:
    if "://" not in part:
        return part  # a protocol name of a chain, or a local path
    scheme, _, rest = part.partition("://")
    netloc, slash, path = rest.partition("/")
    host, _, port = _before_query(netloc.rpartition("@")[2]).partition(":")
    shown = f"{host}:{port}" if port.isascii() and port.isdigit() else host
    return f"{scheme}://{shown}{slash}{_before_query(path)}" if slash else f"{scheme}://{shown}"


def _before_query(text: str) -> str:
    return text.split("?")[0].split("#")[0]


def snapshot_url_errors(url: str | None) -> list[str]:
    """What is wrong with a snapshot_url, never quoting what may be a secret (None: default)."""
    if url is None:
        return []
    if not url.strip():
        return [
            "snapshot_url: is empty; leave it unset for the user data folder, or give a folder "
            "or an fsspec URL such as s3://bucket/prefix"
        ]
    shown = display_url(url)
    where = "give credentials through the environment (AWS_ACCESS_KEY_ID, a profile, a role)"
    errors = []
    for part in url.split("::"):
        if "://" not in part:
            continue
        netloc = part.partition("://")[2].partition("/")[0]
        port = netloc.rpartition("@")[2].partition(":")[2]
        if "@" in netloc:
            errors.append(
                f"snapshot_url {shown}: has a user or password before '@'; {where}, never in "
                "the URL, which is logged"
            )
        elif port and not (port.isascii() and port.isdigit()):
            errors.append(
                f"snapshot_url {shown}: has ':' followed by something other than a port "
                f"number after the bucket or host; {where}, never in the URL, which is logged"
            )
        if "?" in part or "#" in part:
            errors.append(
                f"snapshot_url {shown}: has a query or fragment ('?…' or '#…'), which may hold a "
                "signature or token and would end up in object names; remove it and "
                f"{where}"
            )
    return errors


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


def unpack(data: bytes, digest_bytes: int) -> list[str]:
    """Bytes of whole digests -> lowercase-hex strings (the inverse of pack)."""
    if not data:
        return []
    return data.hex("\n", digest_bytes).split("\n")


@dataclass(frozen=True)
class SnapshotKey:
    """One snapshot per (advertiser, audience, contract)."""

    advertiser_id: str
    audience_id: str
    contract: str

    def __post_init__(self) -> None:
        # The parts become path segments: nothing that could climb out of the store.
        for part in (self.advertiser_id, self.audience_id, self.contract):
            if not _NAME_PART.fullmatch(part):
                raise ValueError("snapshot key parts must be letters, digits, '_' or '-'")

    @property
    def name(self) -> str:
        return f"{self.advertiser_id}/{self.audience_id}/{self.contract}.snap"

    @property
    def lock_name(self) -> str:
        return f"{self.advertiser_id}/{self.audience_id}/{self.contract}.lock"

    def describe(self) -> str:
        return f"audience {self.audience_id} ({self.contract}) of advertiser {self.advertiser_id}"


class Reason(enum.Enum):
    """Why no snapshot can be diffed against: the mirror then uploads in full."""

    MISSING = "no snapshot yet"
    OTHER_RULES = "made under other normalisation rules"
    UNREADABLE = "unreadable"
    OTHER_AUDIENCE = "made for another audience"


@dataclass(frozen=True)
class Unusable:
    reason: Reason
    detail: str  # one line for the log, without digests or credentials


@dataclass(frozen=True)
class Header:
    key: SnapshotKey
    fingerprint: str
    count: int
    digest_bytes: int
    created_at: str
    sha256: str

    def encode(self) -> bytes:
        fields = {
            "format": FORMAT,
            "version": VERSION,
            "advertiser_id": self.key.advertiser_id,
            "audience_id": self.key.audience_id,
            "contract": self.key.contract,
            "fingerprint": self.fingerprint,
            "count": self.count,
            "digest_bytes": self.digest_bytes,
            "created_at": self.created_at,
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
        if fields.get("version") != VERSION:
            raise ValueError(f"format version {fields.get('version')!r}, expected {VERSION}")
        key = SnapshotKey(
            str(fields["advertiser_id"]), str(fields["audience_id"]), str(fields["contract"])
        )
        count, digest_bytes = fields["count"], fields["digest_bytes"]
        if not isinstance(count, int) or not isinstance(digest_bytes, int) or digest_bytes < 1:
            raise ValueError("bad count or digest size")
        return cls(
            key,
            str(fields["fingerprint"]),
            count,
            digest_bytes,
            str(fields["created_at"]),
            str(fields["sha256"]),
        )


class Snapshot:
    """A usable snapshot: its header, and its digests streamed in ascending order."""

    def __init__(self, header: Header, opener: Callable[[], IO[bytes]], where: str) -> None:
        self.header = header
        self._open = opener
        self._where = where

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
                raise SnapshotError(f"snapshot {self._where} changed while it was read")
            while data := fh.read(size * width):
                digest.update(data)
                yield unpack(data, width)
        if digest.hexdigest() != self.header.sha256:
            raise SnapshotError(
                f"snapshot {self._where} is corrupt (checksum mismatch); "
                "delete it and the next run uploads the audience in full"
            )

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

    def finish(self, key: SnapshotKey, fingerprint: str) -> None:
        self._flush()
        header = Header(
            key,
            fingerprint,
            self.count,
            self._width // 2 or 32,  # an empty set: any size reads back as empty
            dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            self._hash.hexdigest(),
        )
        self._fh.seek(0)
        self._fh.write(header.encode())
        self._fh.flush()
        os.fsync(self._fh.fileno())


class SnapshotStore:
    """Snapshots under `url`: None (the user data dir), a local path, file://, or fsspec URL.

    `storage_options` go to fsspec (e.g. {"client_kwargs": {"endpoint_url": ...}} for an S3 API
    elsewhere; the standard AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL variables work too).
    `read_only` (dry run): read() works, writer() refuses with SnapshotError, lock() is a no-op
    (readers never see a half-written snapshot, so a dry run needs no lock).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        storage_options: Mapping[str, object] | None = None,
        read_only: bool = False,
        lock_stale_seconds: float = DEFAULT_LOCK_STALE_SECONDS,
    ) -> None:
        self.read_only = read_only
        self._stale = lock_stale_seconds
        self._fs: AbstractFileSystem | None = None
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

    def where(self, key: SnapshotKey) -> str:
        """Where the snapshot of `key` lives, for messages."""
        return f"{self.display.rstrip('/')}/{key.name}"

    # -- reading ------------------------------------------------------------------------------

    def read(self, key: SnapshotKey, fingerprint: str) -> Snapshot | Unusable:
        where = self.where(key)
        try:
            with self._open_read(key.name) as fh:
                raw = fh.read(HEADER_SIZE)
                size = self._size(fh, key.name)
        except FileNotFoundError:
            return Unusable(Reason.MISSING, f"no snapshot at {where}")
        except OSError as exc:
            raise SnapshotError(
                f"snapshot_url {self.display}: cannot read {key.name} ({_oserror(exc)})"
            ) from None
        try:
            header = Header.decode(raw)
        except (ValueError, KeyError, UnicodeDecodeError) as exc:
            return Unusable(Reason.UNREADABLE, f"snapshot {where} is unreadable: {exc}")
        if header.key != key:
            return Unusable(
                Reason.OTHER_AUDIENCE,
                f"snapshot {where} was made for {header.key.describe()}",
            )
        if header.fingerprint != fingerprint:
            return Unusable(
                Reason.OTHER_RULES,
                f"snapshot {where} was made under other normalisation rules",
            )
        if size != HEADER_SIZE + header.count * header.digest_bytes:
            return Unusable(Reason.UNREADABLE, f"snapshot {where} is unreadable: truncated")
        return Snapshot(header, lambda: self._open_read(key.name), where)

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
    def writer(self, key: SnapshotKey, fingerprint: str) -> Iterator[SnapshotWriter]:
        """Yields a writer; the snapshot is replaced only if the block exits without exception.

        Locally: a 0600 temp file in the snapshot's own 0700 dir, fsync, os.replace, fsync of
        the dir. Object storage: a 0600 local temp file, then one put of the whole object (a
        multipart upload for large ones, which is not visible before it completes).
        """
        if self.read_only:
            raise SnapshotError(
                f"snapshot store {self.display} is read-only (dry run): no snapshot is written"
            )
        if self._fs is None:
            directory = self._local_dir(key)
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{key.contract}.", suffix=".tmp")
        else:
            fd, tmp = tempfile.mkstemp(prefix="target-tiktok-audiences-snap-", suffix=".tmp")
        try:
            with open(fd, "w+b") as fh:
                out = SnapshotWriter(fh)
                yield out
                out.finish(key, fingerprint)
            self._commit(Path(tmp), key)
        finally:
            Path(tmp).unlink(missing_ok=True)

    def _commit(self, tmp: Path, key: SnapshotKey) -> None:
        if self._fs is None:
            final = self._root / key.name
            os.replace(tmp, final)
            _fsync_dir(final.parent)
            return
        try:
            self._fs.put_file(str(tmp), self._path(key.name))
        except OSError as exc:
            raise SnapshotError(
                f"snapshot_url {self.display}: cannot write {key.name} ({_oserror(exc)}); "
                "the previous snapshot, if any, is unchanged"
            ) from None

    def _local_dir(self, key: SnapshotKey) -> Path:
        """The snapshot's dir, each level this store creates made 0700 (umask aside)."""
        path = self._root
        parts = [key.advertiser_id, key.audience_id]
        missing = [p for p in [path, *path.parents] if not p.exists()]
        for level in reversed(missing):
            level.mkdir(mode=0o700, exist_ok=True)
            level.chmod(0o700)
        for part in parts:
            path = path / part
            if not path.exists():
                path.mkdir(mode=0o700, exist_ok=True)
                path.chmod(0o700)
        return path

    # -- locking ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, key: SnapshotKey) -> Iterator[None]:
        """Held for the whole run on `key`: read, deliver, write the new snapshot.

        Locally: an exclusive, non-blocking fcntl.flock on `<CONTRACT>.lock` beside the
        snapshot. The kernel releases it when the process ends, however it ends, so a local
        lock is never stale (except on network file systems without flock support).

        Object storage: a lock object `<CONTRACT>.lock` beside the snapshot, created with a
        conditional put (If-None-Match: *) where the file system supports it (s3fs: AWS S3 and
        S3 APIs that honour the header, such as MinIO); elsewhere fsspec checks for the object
        first, which leaves a short race. The object holds its owner and creation time and is
        read back after the put. A lock object older than `lock_stale_seconds` is taken to be
        left by a run that died and is replaced; that takeover is not atomic, and a run still
        working after that period can lose its lock. Released by deleting the object when it
        is still ours.
        Read-only stores (dry run) take no lock.
        """
        if self.read_only:
            yield
            return
        if self._fs is None:
            with self._local_lock(key):
                yield
        else:
            with self._object_lock(key):
                yield

    @contextlib.contextmanager
    def _local_lock(self, key: SnapshotKey) -> Iterator[None]:
        import fcntl  # POSIX only; imported here so the module still imports elsewhere

        path = self._local_dir(key) / f"{key.contract}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise SnapshotError(
                    f"another run holds the snapshot lock for {key.describe()} "
                    f"(lock file {path}); wait for it or remove a stale lock"
                ) from None
            os.ftruncate(fd, 0)
            os.write(fd, _owner_record(_owner()).encode())
            yield
        finally:
            os.close(fd)  # closing releases the flock

    @contextlib.contextmanager
    def _object_lock(self, key: SnapshotKey) -> Iterator[None]:
        assert self._fs is not None
        fs, path = self._fs, self._path(key.lock_name)
        where = f"{self.display.rstrip('/')}/{key.lock_name}"
        owner = _owner()
        body = _owner_record(owner).encode()
        for attempt in range(2):
            try:
                fs.pipe_file(path, body, mode="create")
                break
            except FileExistsError:
                age = self._lock_age(path)
                if attempt or age is None or age < self._stale:
                    held = "" if age is None else f", taken {int(age)} s ago"
                    raise SnapshotError(
                        f"another run holds the snapshot lock for {key.describe()} "
                        f"(lock object {where}{held}); wait for it or remove a stale lock"
                    ) from None
                fs.rm_file(path)  # stale: its run died without releasing it
            except OSError as exc:
                raise SnapshotError(
                    f"snapshot_url {self.display}: cannot create the lock object "
                    f"{key.lock_name} ({_oserror(exc)})"
                ) from None
        if _lock_owner(fs.cat_file(path)) != owner:
            raise SnapshotError(
                f"another run took the snapshot lock for {key.describe()} at the same time "
                f"(lock object {where}); run again later"
            )
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                if _lock_owner(fs.cat_file(path)) == owner:
                    fs.rm_file(path)

    def _lock_age(self, path: str) -> float | None:
        assert self._fs is not None
        try:
            record = json.loads(self._fs.cat_file(path))
            return time.time() - float(record["created"])
        except FileNotFoundError:
            return 0.0  # released meanwhile; the caller reports it as held: retry is cheap
        except (OSError, ValueError, KeyError, TypeError):
            return None


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
    return fs, str(prefix)


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def _owner_record(owner: str) -> str:
    return json.dumps({"owner": owner, "created": time.time()}) + "\n"


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
