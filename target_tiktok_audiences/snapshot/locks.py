"""The locks of a snapshot store, one per audience: the kernel's flock locally, a lock object
with a lease elsewhere, renewed while the run works and checked before every write (fencing)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from target_tiktok_audiences.snapshot.errors import LeaseLost, SnapshotError, oserror_text
from target_tiktok_audiences.snapshot.keys import SnapshotKey

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

LOCK_WAIT_SECONDS = 600.0  # how long a run waits for another run's lock before giving up
LEASE_SECONDS = 120.0  # an object-storage lock not renewed for this long was left by a dead run
_POLL_SECONDS = (0.2, 0.5, 1.0, 2.0)


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
            self.lost = f"its renewal failed ({oserror_text(exc)})"

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
                self.lost = f"it could not be read back ({oserror_text(exc)})"
                owner = self._owner
            if owner != self._owner:
                self.lost = "another run took it over (the lease's generation changed)"
        if self.lost is not None:
            raise LeaseLost(
                f"this run lost the snapshot lock for {self._what}: {self.lost}; it sent "
                "nothing more, as another run may have changed the audience since"
            )


class Locks:
    """The locks of one store (see SnapshotStore.lock), and the leases this run holds."""

    def __init__(
        self,
        *,
        fs: AbstractFileSystem | None,
        display: str,
        rel: Callable[[str], str],
        path: Callable[[str], str],
        local_dir: Callable[[SnapshotKey], Path],
        wait: float,
        lease: float,
    ) -> None:
        self._fs, self.display = fs, display
        self._rel, self._path, self._local_dir = rel, path, local_dir
        self._wait, self._lease = wait, lease
        self._held: dict[SnapshotKey, Lease] = {}  # the locks this run holds (never waited on)

    @contextlib.contextmanager
    def lock(self, key: SnapshotKey) -> Iterator[Lease]:
        """Locks `key` for this run (see SnapshotStore.lock), waiting for another holder."""
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
        """LeaseLost unless every lock this run holds is still its own."""
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
                f"snapshot_url {self.display}: cannot make the {where} ({oserror_text(exc)})"
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
                    f"{self._rel(key.lock_name)} ({oserror_text(exc)})"
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
