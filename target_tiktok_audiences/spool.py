"""Digests spooled to private temp files, already split the way they will be uploaded.

Memory stays flat however large the audience: each digest goes straight to a buffered file,
and a file is closed when it holds `max_lines` digests (TikTok takes at most 50 MB a file).

No header row: one lowercase hex digest per line, `\n` line ends. TikTok's help asks for a header
only for files uploaded in Ads Manager; the API takes `calculate_type` instead, and public code
that uses it (AWS's Clean Rooms audience uploader writes `header=False`, AWS's TikTok sample,
Pipedream) writes none (docs/TIKTOK.md).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

_BUFFER = 1 << 20


_PREFIX = "target-tiktok-audiences-"
# <prefix><pid>-<process start time>-<random>: whose folder it is, even once the pid is reused
_NAMED = re.compile(re.escape(_PREFIX) + r"(\d+)-(\d+)-[A-Za-z0-9_]+")


def private_workdir() -> Path:
    """A fresh temp dir only this user can read (mkdtemp creates it 0700), named after this
    process (pid and start time) so that a later run can tell when it was left behind."""
    pid = os.getpid()
    return Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{pid}-{_started(pid) or 0}-"))


def remove_dead_workdirs() -> int:
    """Remove the spool folders of this target's runs that ended without removing them (a
    SIGKILL, a crash): their process is gone, or its pid now belongs to a process started at
    another time. Another live run's folder is never touched. Returns how many went."""
    removed = 0
    try:
        entries = list(os.scandir(tempfile.gettempdir()))
    except OSError:
        return 0
    for entry in entries:
        named = _NAMED.fullmatch(entry.name)
        if named is None or int(named[1]) == os.getpid():
            continue
        try:
            if not entry.is_dir(follow_symlinks=False) or entry.stat().st_uid != os.getuid():
                continue
        except OSError:
            continue
        if not _alive(int(named[1]), int(named[2])):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed += 1
    return removed


def _started(pid: int) -> int | None:
    """The process's start time (clock ticks after boot, /proc/<pid>/stat field 22)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
        return int(data.rsplit(b")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int, started: int) -> bool:
    """Whether the process that made a folder still runs."""
    if os.path.isdir("/proc/self"):
        return _started(pid) == started  # gone, or the pid reused by a newer process
    try:  # no /proc: by pid alone (a reused pid keeps the folder: never a live run's)
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def remove_workdir(path: Path | None) -> None:
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)


@dataclass(frozen=True)
class Chunk:
    """One closed spool file: one upload."""

    path: Path
    lines: int


class Spool:
    """Appends digests to numbered files of at most max_lines lines each."""

    def __init__(self, directory: Path, stem: str, max_lines: int) -> None:
        self._dir = directory
        self._stem = stem
        self._max = max_lines
        self._chunks: list[Chunk] = []
        self._fh: IO[str] | None = None
        self._path: Path | None = None
        self._lines = 0
        self._serial = 0
        self.total = 0

    def write(self, digest: str) -> None:
        if self._fh is None:
            self._open()
        self._fh.write(digest + "\n")  # type: ignore[union-attr]
        self._lines += 1
        if self._lines >= self._max:
            self._close()

    def write_block(self, digests: Sequence[str]) -> None:
        """Many digests at once (a sorted block): one write per file instead of one a digest."""
        start = 0
        while start < len(digests):
            if self._fh is None:
                self._open()
            room = self._max - self._lines
            part = digests[start : start + room]
            self._fh.write("\n".join(part) + "\n")  # type: ignore[union-attr]
            self._lines += len(part)
            start += len(part)
            if self._lines >= self._max:
                self._close()

    def _open(self) -> None:
        self._serial += 1
        self._path = self._dir / f"{self._stem}-{self._serial:04d}.txt"
        fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._fh = open(fd, "w", encoding="ascii", newline="\n", buffering=_BUFFER)  # noqa: SIM115

    def _close(self) -> None:
        if self._fh is not None and self._path is not None:
            self._fh.close()
            self._chunks.append(Chunk(self._path, self._lines))
            self.total += self._lines
        self._fh, self._path, self._lines = None, None, 0

    def flush(self) -> None:
        if self._fh is not None:
            self._fh.flush()

    @property
    def pending(self) -> int:
        """Digests written and not yet taken."""
        return self.total + self._lines

    def take(self) -> list[Chunk]:
        """Close the current file and hand over every chunk; the spool starts afresh."""
        self._close()
        chunks, self._chunks, self.total = self._chunks, [], 0
        return chunks

    def discard(self) -> None:
        for chunk in self.take():
            chunk.path.unlink(missing_ok=True)
