"""The snapshot store's errors: one line a user can act on, never a credential."""

from __future__ import annotations

import errno


class SnapshotError(Exception):
    """A problem the user can act on; the message is one line and never holds credentials."""


class SnapshotCorrupt(SnapshotError):
    """A stored set's body does not match its header: it cannot be trusted."""


class LeaseLost(SnapshotError):
    """This run can no longer prove that it holds an audience's lock: it sends nothing more."""


def oserror_text(exc: OSError) -> str:
    """The error's kind and text, without the file name (the caller names the object)."""
    kind = errno.errorcode.get(exc.errno, type(exc).__name__) if exc.errno else type(exc).__name__
    return f"{kind}: {exc.strerror}" if exc.strerror else kind


def write_error(where: str, exc: OSError) -> SnapshotError:
    return SnapshotError(f"cannot write {where} ({oserror_text(exc)})")
