"""A snapshot store's fsspec file system: opened with one line for the user when it cannot be,
and guarded so that its calls fail with OSError only."""

from __future__ import annotations

import errno
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from target_tiktok_audiences.snapshot.errors import SnapshotError

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

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


def open_filesystem(
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
