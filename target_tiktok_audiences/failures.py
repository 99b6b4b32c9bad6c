"""How a known failure ends: one line a person can act on, exit code 1, no traceback.

Tracebacks are for developers: they appear only at LOGLEVEL=DEBUG. docs/FAILURES.md lists every
known failure, its line and its test.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from singer_sdk.exceptions import (
    ConfigValidationError,
    MapExpressionError,
    MissingKeyPropertiesError,
    RecordsWithoutSchemaException,
    StreamMapConfigError,
)
from singer_sdk.mapper import CustomStreamMap, StreamMap
from singer_sdk.singerlib.exceptions import InvalidInputLine

from target_tiktok_audiences.client import TikTokError
from target_tiktok_audiences.places import PlaceError
from target_tiktok_audiences.rejects import RejectsError
from target_tiktok_audiences.snapshot import SnapshotError

# After a failure the rest of the input is read and dropped for at most this long, so that the
# tap finishes cleanly instead of dying on a closed pipe (BrokenPipeError under `meltano run`).
DRAIN_SECONDS = 60.0


class DeliveryIncomplete(Exception):
    """Some audiences were refused by TikTok; the others were delivered."""


class StreamMapFailed(Exception):
    """A stream-map expression failed on a record; the message never holds the record."""


class InputError(Exception):
    """The Singer input breaks the spec (a RECORD before its SCHEMA, a key property missing);
    the message names the stream and the property, never a value."""


class RecordBeforeSchema(InputError, RecordsWithoutSchemaException):
    """The SDK's error (its test suite expects that type), with our one line."""


class MissingKeyProperty(InputError, MissingKeyPropertiesError):
    """The SDK's error (its test suite expects that type), with our one line."""


def missing_key(stream: str, key: str) -> MissingKeyProperty:
    return MissingKeyProperty(
        f"Input: a RECORD of stream '{stream}' lacks key property '{key}' (key_properties of "
        "its SCHEMA); the record is not shown because it may hold personal data. Fix the tap "
        "or its stream maps and re-run"
    )


KNOWN = (
    TikTokError,
    InvalidInputLine,
    DeliveryIncomplete,
    StreamMapFailed,
    InputError,
    SnapshotError,
    RejectsError,
    PlaceError,
    StreamMapConfigError,
    MapExpressionError,
    MissingKeyPropertiesError,
    OSError,
)


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
    if isinstance(exc, ConfigValidationError):  # raised mid-run too, e.g. by a stream's schema
        errors = list(exc.errors or [str(exc)])
        more = f" (and {len(errors) - 1} more above)" if len(errors) > 1 else ""
        return f"Config validation failed: {errors[0]}{more}"
    if isinstance(exc, OSError) and not isinstance(exc, TikTokError):
        if exc.errno == errno.ENOSPC:
            return (
                f"No space left on the disk of the spool folder {tempfile.gettempdir()}: set "
                "TMPDIR to a folder on a larger disk (the spool holds every digest of the "
                "largest audience), then re-run"
            )
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror or exc.__class__.__name__}{where}; check the path and re-run"
    if isinstance(exc, MissingKeyPropertiesError) and not isinstance(exc, InputError):
        # the SDK's own, on its path (several maps of a stream): its text lists the columns
        return (
            "Input: a RECORD lacks a key property of its stream (key_properties of its SCHEMA); "
            "the record is not shown because it may hold personal data. Fix the tap or its "
            "stream maps and re-run"
        )
    if isinstance(exc, (StreamMapConfigError, MapExpressionError)):
        # Raised while a stream's maps are built from the config, before any record is read.
        return f"stream_maps: {exc} Fix stream_maps and re-run"
    return str(exc)


def config_file_error(exc: Exception, paths: list[str]) -> str | None:
    """A --config file that is missing or not JSON, or None for another error; the file's
    content is never quoted (it holds the token)."""
    shown = f"'{paths[0]}'" if len(paths) == 1 else "a config file"
    if isinstance(exc, FileNotFoundError):
        return f"--config: {shown} was not found; give the path of a JSON file, or ENV"
    lineno, colno = getattr(exc, "lineno", None), getattr(exc, "colno", None)
    if lineno is None or colno is None:  # not json's or simplejson's JSONDecodeError
        return None
    return (
        f"--config: {shown} is not valid JSON at line {lineno}, column {colno} (NaN and "
        "Infinity are not JSON either); fix the file and re-run"
    )


def drain_input(seconds: float = DRAIN_SECONDS) -> None:
    """Read and drop what is left on stdin (a pipe), until its end or for `seconds` at most.

    A target that exits while its tap is still writing makes the tap die on a closed pipe, and
    `meltano run` shows that tap's tracebacks after our one line. Terminals and plain files
    are left alone: nobody writes into them.
    """
    try:
        fd = sys.stdin.fileno()
        mode = os.fstat(fd).st_mode
    except (AttributeError, ValueError, OSError):  # no real stdin (pytest, closed)
        return
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
        return
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], left)
        if not ready or not os.read(fd, 1 << 16):
            return


@contextmanager
def exit_on_known_failure(logger: logging.Logger) -> Iterator[None]:
    """Turn known failures into one clear last line and exit 1."""
    debug = logger.isEnabledFor(logging.DEBUG)
    try:
        yield
    except ConfigValidationError as exc:
        for error in list(exc.errors or [])[1:]:
            logger.error("Config: %s", error)
        logger.error("%s", describe(exc), exc_info=debug)
        drain_input()
        sys.exit(1)
    except KNOWN as exc:
        logger.error("%s", describe(exc), exc_info=debug)
        drain_input()
        sys.exit(1)
    except Exception:
        drain_input()  # an unknown failure keeps its traceback, but the tap still finishes
        raise
