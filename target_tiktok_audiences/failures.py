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
from typing import Any

from singer_sdk.exceptions import ConfigValidationError, MapExpressionError
from singer_sdk.mapper import CustomStreamMap, StreamMap
from singer_sdk.singerlib.exceptions import InvalidInputLine

from target_tiktok_audiences.client import TikTokError
from target_tiktok_audiences.rejects import RejectsError


class DeliveryIncomplete(Exception):
    """Some audiences were refused by TikTok; the others were delivered."""


class StreamMapFailed(Exception):
    """A stream-map expression failed on a record; the message never holds the record."""


KNOWN = (TikTokError, InvalidInputLine, DeliveryIncomplete, StreamMapFailed, RejectsError, OSError)


def private_map_errors(stream_map: StreamMap) -> None:
    """A failing stream-map expression names its stream, property and error type only.

    The SDK's error (and the one it wraps, e.g. int()'s ValueError) may quote the record's
    value, which is personal data.
    """
    if not isinstance(stream_map, CustomStreamMap) or getattr(stream_map, "_private", False):
        return
    evaluate = stream_map._eval
    stream = stream_map.stream_name

    def guarded(
        expr: str, expr_parsed: Any, record: dict[str, Any], property_name: str | None
    ) -> Any:
        try:
            return evaluate(expr, expr_parsed, record, property_name)
        except Exception as exc:
            cause = exc.__cause__ if isinstance(exc, MapExpressionError) else None
            kind = type(cause or exc).__name__
            where = f"property '{property_name}'" if property_name else "__filter__"
            raise StreamMapFailed(
                f"stream_maps: the expression for {where} of stream '{stream}' failed on a "
                f"record ({kind}); the record is not shown because it may hold personal data. "
                "Fix the expression and re-run"
            ) from None

    setattr(stream_map, "_eval", guarded)  # noqa: B010 - replaces the SDK's method on this map
    setattr(stream_map, "_private", True)  # noqa: B010


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
