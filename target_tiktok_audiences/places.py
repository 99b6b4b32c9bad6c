"""Every place the target writes, checked before a single record is read.

A folder that cannot be written used to be found at the end of the stream, after every upload
(issue 29). Each place is probed the way the run will use it: the folder is created when
missing, and a small file is written there and removed, locally or in an object store. A failure
is one line naming the setting and the cause; never a credential (URLs are shown cleaned).
"""

from __future__ import annotations

import errno
import os
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from target_tiktok_audiences.snapshot import display_url

PROBE_PREFIX = ".target-tiktok-audiences-probe-"


class PlaceError(Exception):
    """A place the run writes cannot be written; str() is the one line to show."""


@dataclass(frozen=True)
class Place:
    """A folder the run writes into, and the setting that names it."""

    setting: str  # as the user knows it: snapshot_url, rejects_url, ...
    url: str  # a local path, file:// or an fsspec URL
    advice: str  # what to do when it cannot be written


def is_local(url: str) -> bool:
    return "://" not in url or urlsplit(url).scheme == "file"


def shown(url: str) -> str:
    return (
        str(Path(url.removeprefix("file://")).expanduser()) if is_local(url) else display_url(url)
    )


def _cause(exc: BaseException) -> str:
    """The kind of failure, never the library's text (it may quote a key or a bucket name)."""
    if isinstance(exc, OSError) and exc.errno:
        kind = errno.errorcode.get(exc.errno, type(exc).__name__)
        return f"{kind}: {exc.strerror}" if exc.strerror else kind
    if isinstance(exc, FileNotFoundError):
        return "the bucket or folder does not exist"
    if isinstance(exc, PermissionError):
        return "access denied"
    return type(exc).__name__


def _fail(place: Place, why: str) -> PlaceError:
    return PlaceError(f"{place.setting} {shown(place.url)}: {why}; {place.advice}")


def _local_probe(place: Place) -> None:
    folder = Path(place.url.removeprefix("file://")).expanduser()
    if folder.exists() and not folder.is_dir():
        raise _fail(place, "is a file, not a folder")
    try:
        for level in reversed([p for p in (folder, *folder.parents) if not p.exists()]):
            level.mkdir(mode=0o700, exist_ok=True)
        probe = folder / f"{PROBE_PREFIX}{uuid.uuid4().hex[:12]}"
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"probe\n")
        finally:
            os.close(fd)
        probe.unlink()
    except OSError as exc:
        raise _fail(place, f"cannot write there ({_cause(exc)})") from None


def _filesystem(place: Place) -> tuple[Any, str]:
    import fsspec

    try:
        fs, prefix = fsspec.core.url_to_fs(place.url)
    except ImportError:
        scheme = urlsplit(place.url).scheme
        extra = " (s3: target-tiktok-audiences[s3])" if scheme == "s3" else ""
        raise _fail(place, f"install the fsspec implementation of {scheme}://{extra}") from None
    except Exception as exc:  # any library's refusal: one line, without its text
        raise _fail(place, f"not a usable URL ({_cause(exc)})") from None
    return fs, str(prefix).rstrip("/")


def _object_store(fs: Any) -> bool:
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    return any(p in ("s3", "s3a", "gs", "gcs", "az", "abfs") for p in protocols)


def _remote_probe(place: Place) -> None:
    fs, prefix = _filesystem(place)
    probe = f"{prefix}/{PROBE_PREFIX}{uuid.uuid4().hex[:12]}"
    try:
        if fs.isfile(prefix):
            raise _fail(place, "is an object, not a folder (prefix)")
        if not _object_store(fs):  # object stores have no folders; makedirs would make buckets
            fs.makedirs(prefix, exist_ok=True)
        fs.pipe_file(probe, b"probe\n")
        fs.rm_file(probe)
    except PlaceError:
        raise
    except Exception as exc:
        raise _fail(place, f"cannot write there ({_cause(exc)})") from None


def probe(place: Place) -> None:
    """Create the folder when missing, write a small file there and remove it."""
    if is_local(place.url):
        _local_probe(place)
    else:
        _remote_probe(place)


def not_a_folder(url: str) -> str | None:
    """Why `url` cannot be a folder (it is a file), or None; reads only."""
    if is_local(url):
        path = Path(url.removeprefix("file://")).expanduser()
        return "is a file, not a folder" if path.exists() and not path.is_dir() else None
    fs, prefix = _filesystem(Place("snapshot_url", url, "fix it, then re-run"))
    try:
        return "is an object, not a folder (prefix)" if fs.isfile(prefix) else None
    except Exception:  # unreadable: the reads that follow say why
        return None


def report_place(report_path: str) -> Place:
    """report_path is a file: its folder is probed, and the path must not be a folder."""
    path = Path(report_path).expanduser()
    if path.is_dir():
        raise PlaceError(
            f"report_path {path}: is a folder; give the path of a file (e.g. {path}/report.json)"
        )
    return Place(
        "report_path",
        str(path.parent),
        "give a report_path in a folder this user can write, then re-run",
    )


def spool_place() -> Place:
    return Place(
        "the spool folder (TMPDIR)",
        tempfile.gettempdir(),
        "set TMPDIR to a folder this user can write, on a disk large enough for the largest "
        "audience's digests, then re-run",
    )
