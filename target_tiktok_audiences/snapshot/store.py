"""Where stored sets live: the user data folder, a local path or any fsspec URL; reading,
atomic writing, copying, removing, listing, and the empty marker objects of the ledger."""

from __future__ import annotations

import contextlib
import enum
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING
from urllib.parse import urlsplit

import platformdirs

from target_tiktok_audiences import testhooks
from target_tiktok_audiences.snapshot.errors import SnapshotError, oserror_text, write_error
from target_tiktok_audiences.snapshot.filesystems import open_filesystem
from target_tiktok_audiences.snapshot.format import HEADER_SIZE, Header, Snapshot, SnapshotWriter
from target_tiktok_audiences.snapshot.keys import NAME_PART, Kind, SnapshotKey, snapshot_url_errors
from target_tiktok_audiences.snapshot.locks import LEASE_SECONDS, LOCK_WAIT_SECONDS, Lease, Locks
from target_tiktok_audiences.urls import display_url

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

APP_NAME = "target-tiktok-audiences"


class Reason(enum.Enum):
    """Why no snapshot can be diffed against: the mirror then uploads in full."""

    MISSING = "no snapshot yet"
    UNREADABLE = "unreadable"
    OTHER_AUDIENCE = "made for another audience"


@dataclass(frozen=True)
class Unusable:
    reason: Reason
    detail: str  # one line for the log, without digests or credentials


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
        self._fs: AbstractFileSystem | None = None
        self._scope = scope
        # (source, file, header) of the last set written with a `source` (see copy_written)
        self._written: tuple[object, str, bytes] | None = None
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
            self._fs, self._prefix = open_filesystem(root, self.display, storage_options or {})
        self._locks = Locks(
            fs=self._fs,
            display=self.display,
            rel=self._rel,
            path=self._path,
            local_dir=self._local_dir,
            wait=lock_wait_seconds,
            lease=lease_seconds,
        )

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
            return Unusable(
                Reason.UNREADABLE, f"snapshot {where} is unreadable ({oserror_text(exc)})"
            )
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
            raise write_error(where, exc) from None
        try:
            with open(fd, "w+b") as fh:
                out = SnapshotWriter(fh)
                yield out
                try:
                    out.finish(key, kind, full_at)
                except OSError as exc:
                    raise write_error(where, exc) from None
            self.check_leases()  # the write may have outlasted the lease: checked as it lands
            self._commit(Path(tmp), self._rel(key.path(kind)))
            testhooks.checkpoint("after", step)
        except OSError as exc:  # a write into the temp file while the caller streamed
            raise write_error(where, exc) from None
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
            raise write_error(self.where(key, kind), exc) from None

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

    # -- locking (locks.py) -------------------------------------------------------------------

    def lock(self, key: SnapshotKey) -> contextlib.AbstractContextManager[Lease]:
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
            return contextlib.nullcontext(Lease())
        return self._locks.lock(key)

    def check_leases(self) -> None:
        """Fencing: before a snapshot write, every lock this run holds must still be its own
        (LeaseLost otherwise)."""
        self._locks.check_leases()

    def snapshot_contracts(self, advertiser_id: str) -> dict[str, list[str]]:
        """Audience id -> contracts with a snapshot under `advertiser_id` (fan-out, status)."""
        if not NAME_PART.fullmatch(advertiser_id):
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
                f"snapshot_url {self.display}: cannot list {advertiser_id}/ ({oserror_text(exc)})"
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
            raise write_error(where, exc) from None

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
                f"snapshot_url {self.display}: cannot list {folder}/ ({oserror_text(exc)})"
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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
