"""Uploaded files kept until TikTok has used their file_path, to answer a 40910 (file expired).

A file_path TikTok returned can expire before the create or update that uses it (40910): the
answer is to upload the same file again. The deliveries delete their spool files right after
an upload, so the client keeps a hard link (a copy where links are not possible) next to each
uploaded file, and drops it once a call has used its file_path.
"""

from __future__ import annotations

import itertools
import os
import shutil
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class KeptFile:
    advertiser_id: str
    calculate_type: str
    path: Path
    name: str  # the name it was uploaded under


class KeptFiles:
    """file_path -> the local file it was uploaded from, until a call used it."""

    def __init__(self) -> None:
        self._files: dict[str, KeptFile] = {}
        self._serial = itertools.count(1)

    def keep(self, file_path: str, advertiser_id: str, calculate_type: str, path: Path) -> None:
        kept = path.with_name(f".kept-{next(self._serial)}-{path.name}")
        try:
            os.link(path, kept)
        except OSError:
            shutil.copyfile(path, kept)
        self._files[file_path] = KeptFile(advertiser_id, calculate_type, kept, path.name)

    def get(self, file_path: str) -> KeptFile | None:
        kept = self._files.get(file_path)
        return kept if kept is not None and kept.path.exists() else None

    def used(self, file_paths: list[str]) -> None:
        for file_path in file_paths:
            kept = self._files.pop(file_path, None)
            if kept is not None:
                kept.path.unlink(missing_ok=True)

    def clear(self) -> None:
        self.used(list(self._files))
