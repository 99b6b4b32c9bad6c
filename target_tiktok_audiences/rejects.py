"""rejects_url: one JSON Lines file per run naming the rejected rows, never their values.

Each line is `{"stream", "key", "contract", "reason"}`, `key` being the record's key properties,
so a warehouse can join the file back to the source table. Lines are written as records are
read and flushed at every drain: memory holds one buffer, not the rejections. Locally the
folders this module creates are 0700 and the file 0600; elsewhere any fsspec URL (s3://...).
"""

from __future__ import annotations

import errno
import json
import os
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from target_tiktok_audiences import testhooks
from target_tiktok_audiences.urls import display_url, url_errors


class RejectsError(Exception):
    """The rejects folder cannot be written; the message names it without credentials."""


def file_name(started: datetime) -> str:
    """The run's file: its start time (UTC) first, so files sort by run."""
    stamp = started.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"rejects-{stamp}-{uuid.uuid4().hex[:8]}.jsonl"


class RejectsWriter:
    """Appends one line per rejected identifier to this run's file under `url`."""

    def __init__(self, url: str, started: datetime) -> None:
        problems = url_errors(url, "rejects_url")  # the config check's, as a last guard
        if problems:
            raise RejectsError(problems[0])
        name = file_name(started)
        local = "://" not in url or urlsplit(url).scheme == "file"
        self._folder = display_url(url)
        try:
            if local:
                folder = Path(url.removeprefix("file://")).expanduser()
                _private_dirs(folder)
                path = folder / name
                self.where = str(path)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                self._fh: IO[str] = open(fd, "w", encoding="utf-8")  # noqa: SIM115
            else:
                import fsspec

                self.where = f"{display_url(url).rstrip('/')}/{name}"
                fs, prefix = fsspec.core.url_to_fs(url)
                self._fh = fs.open(f"{str(prefix).rstrip('/')}/{name}", "w", encoding="utf-8")
        except ImportError:
            raise RejectsError(
                f"rejects_url {display_url(url)}: install the fsspec implementation of "
                f"{urlsplit(url).scheme}:// (s3: target-tiktok-audiences[s3])"
            ) from None
        except Exception as exc:  # any library's refusal: one line, its text never shown
            raise RejectsError(
                f"rejects_url {self._folder}: cannot create the rejects file ({_cause(exc)}); "
                "check the folder and its permissions"
            ) from None
        self.written = 0

    def write(self, stream: str, key: Mapping[str, Any], contract: str, reason: str) -> None:
        line = {"stream": stream, "key": dict(key), "contract": contract, "reason": reason}
        try:
            testhooks.checkpoint("before", "rejects")
            self._fh.write(json.dumps(line, default=str, ensure_ascii=False) + "\n")
        except Exception as exc:  # an object store may upload a part here (botocore's errors)
            raise self._failed(exc) from None
        self.written += 1

    def flush(self) -> None:
        try:
            self._fh.flush()
        except Exception as exc:  # as in write
            raise self._failed(exc) from None

    def close(self) -> None:
        """Complete the file (an object store receives it here); RejectsError when it fails."""
        try:
            self._fh.close()
        except Exception as exc:  # botocore's errors are no OSError
            raise self._failed(exc) from None

    def _failed(self, exc: BaseException) -> RejectsError:
        """The rejected keys are lost: the run must fail, naming the rejects folder's disk
        (not the spool's)."""
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            cause = f"no space left on the disk of {self._folder}"
        else:
            cause = _cause(exc)
        return RejectsError(
            f"rejects_url {self._folder}: the rejects file {self.where} could not be written "
            f"({cause}); its rejected keys would be lost, so no STATE was emitted. Fix the "
            "folder (or free its disk) and re-run"
        )


def _cause(exc: BaseException) -> str:
    """The kind of a failure, without its text (a storage library may quote its request)."""
    if isinstance(exc, FileNotFoundError):
        return "FileNotFoundError: the bucket or folder does not exist"
    if isinstance(exc, PermissionError):
        return "PermissionError: access denied"
    strerror = getattr(exc, "strerror", None)
    return f"{type(exc).__name__}: {strerror}" if strerror else type(exc).__name__


def _private_dirs(folder: Path) -> None:
    """Create the missing levels of `folder`, each 0700 (umask aside)."""
    for level in reversed([p for p in (folder, *folder.parents) if not p.exists()]):
        level.mkdir(mode=0o700, exist_ok=True)
        level.chmod(0o700)
