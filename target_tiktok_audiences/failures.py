"""How a known failure ends: one line a person can act on, exit code 1, no traceback.

Tracebacks are for developers: they appear only at LOGLEVEL=DEBUG.
"""

from __future__ import annotations

import errno
import logging
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.singerlib.exceptions import InvalidInputLine

from target_tiktok_audiences.client import TikTokError


class DeliveryIncomplete(Exception):
    """Some audiences were refused by TikTok; the others were delivered."""


KNOWN = (TikTokError, InvalidInputLine, DeliveryIncomplete, OSError)


def describe(exc: BaseException) -> str:
    """The one line for a known failure."""
    if isinstance(exc, OSError) and not isinstance(exc, TikTokError):
        if exc.errno == errno.ENOSPC:
            return (
                f"No space left on the disk of the spool folder {tempfile.gettempdir()}: set "
                "TMPDIR to a folder on a larger disk (the spool holds every digest of the "
                "largest audience), then re-run"
            )
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror or exc.__class__.__name__}{where}; check the path and re-run"
    return str(exc)


@contextmanager
def exit_on_known_failure(logger: logging.Logger) -> Iterator[None]:
    """Turn known failures into one clear last line and exit 1."""
    debug = logger.isEnabledFor(logging.DEBUG)
    try:
        yield
    except ConfigValidationError as exc:
        errors = list(exc.errors or [str(exc)])
        for error in errors[1:]:
            logger.error("Config: %s", error)
        more = f" (and {len(errors) - 1} more above)" if len(errors) > 1 else ""
        logger.error("Config validation failed: %s%s", errors[0], more, exc_info=debug)
        sys.exit(1)
    except KNOWN as exc:
        logger.error("%s", describe(exc), exc_info=debug)
        sys.exit(1)
