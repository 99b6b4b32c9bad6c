"""The Singer message reader: msgspec's fast JSON, and errors that never echo a line.

The SDK's readers put the offending line into the exception and the log; here a line is a
user's email or phone, so errors name only the problem and where it is.
"""

from __future__ import annotations

import decimal
import functools
import importlib.util
import json
import re
import typing as t
from collections import Counter
from collections.abc import Callable

import msgspec
from singer_sdk.contrib.msgspec import MsgSpecReader, decoder
from singer_sdk.singerlib.exceptions import InvalidInputLine

# A message type is shown in an error only when it looks like one (never a stray value).
_MESSAGE_TYPE = re.compile(r"[A-Za-z_]{1,40}")
NOT_SHOWN = "it is not shown because it may hold personal data"
# The keys of each message type that the SDK reads, and what they must be.
_SHAPES: dict[str, dict[str, tuple[type, ...]]] = {
    "RECORD": {"stream": (str,), "record": (dict,)},
    "SCHEMA": {"stream": (str,), "schema": (dict,), "key_properties": (list, type(None))},
    "BATCH": {"stream": (str,), "encoding": (dict,), "manifest": (list,)},
    "ACTIVATE_VERSION": {"stream": (str,), "version": (int,)},
}
_KINDS = {
    dict: "an object",
    list: "a list",
    str: "a string",
    int: "a whole number",
    bool: "true or false",
    type(None): "null",
}


class Lane(t.Protocol):
    """Where a stream's RECORD lines go without a callback each (the target's plain streams):
    the record is put in `block`; `flush()` processes the block, as the RECORD callback would
    have, record by record in order. It is due when the block holds `limit` records, before
    any other line is handled (another stream's record too) and at the end of input."""

    block: list[dict[str, t.Any]]
    limit: int

    def flush(self) -> None: ...


class PrivateSingerReader(MsgSpecReader):
    """MsgSpecReader that keeps input lines out of exceptions and logs."""

    on_failure: Callable[[Exception], None] | None = None
    line_number = 0  # of the line being read: errors say where, never what

    def __init__(self) -> None:
        super().__init__()
        self.lanes: dict[str, Lane] = {}  # stream -> its lane, set by the target

    def flush_lanes(self) -> None:
        for lane in list(self.lanes.values()):
            lane.flush()

    def process_lines(
        self, file_input: t.IO[str] | None, callbacks: dict[str, Callable[[dict[str, t.Any]], None]]
    ) -> t.Counter[str]:
        self.line_number = 0
        # One guard around the whole input loop, not one per message: whatever stops the run
        # while reading or delivering reaches the run report first.
        try:
            try:
                return self._read(file_input or self.default_input, callbacks)
            except UnicodeDecodeError as exc:  # a strict stdin refuses the next line
                raise InvalidInputLine(_not_utf8(self.line_number + 1, exc.start)) from None
        except Exception as exc:
            if self.on_failure is not None:
                self.on_failure(exc)
            raise

    def _read(
        self, lines: t.Iterable[str], callbacks: dict[str, Callable[[dict[str, t.Any]], None]]
    ) -> t.Counter[str]:
        """The SDK's loop (GenericSingerReader.process_lines), with a short way for the common
        line: a RECORD whose stream and record have their JSON types goes straight to its
        callback, checked as deserialize_json and _check_shape would; any other line (or one
        msgspec refuses) takes the full way, which says what is wrong."""
        stats: t.Counter[str] = Counter()
        on_record = callbacks.get("RECORD")
        decode = decoder.decode
        lanes = self.lanes
        records = 0
        number = 0
        try:
            for line in lines:
                number += 1
                try:
                    message = decode(line)
                except Exception:  # the full way below names the problem
                    message = None
                if (
                    message.__class__ is dict
                    and message.get("type") == "RECORD"
                    and message.get("record").__class__ is dict
                    and message.get("stream").__class__ is str
                    and on_record is not None
                ):
                    self.line_number = number
                    records += 1
                    lane = lanes.get(message["stream"]) if lanes else None
                    if lane is None:
                        if lanes:  # records of other streams first, as they came
                            self.flush_lanes()
                        on_record(message)
                        continue
                    block = lane.block
                    block.append(message["record"])
                    if len(block) >= lane.limit:
                        lane.flush()
                    continue
                if lanes:  # what came before is processed first
                    self.flush_lanes()
                self.line_number = number - 1  # deserialize_json counts the line
                message = self.deserialize_json(line)
                self.assert_line_requires(message, requires={"type"})
                kind = message["type"]
                if callback := callbacks.get(kind):
                    callback(message)
                else:
                    self._process_unknown_message(message)
                stats[kind] += 1
            if lanes:
                self.flush_lanes()
        finally:
            self.line_number = number
        if records:
            stats["RECORD"] += records
        return stats

    def deserialize_json(self, line: str) -> dict[str, t.Any]:
        # The SDK's loop calls this once for every line, blank ones included.
        self.line_number += 1
        try:
            message = decoder.decode(line)
        except UnicodeEncodeError as exc:
            # stdin keeps a byte that is not UTF-8 as a lone surrogate, which msgspec refuses.
            raise InvalidInputLine(_not_utf8(self.line_number, exc.start)) from None
        except (msgspec.DecodeError, RecursionError) as exc:  # nested too deep: RecursionError
            # msgspec refuses a lone surrogate escape ("\ud800"), which JSON's grammar allows
            # and Python taps emit; the standard parser reads it and the encoders reject it.
            message = _standard_json(line)
            if message is None:
                # msgspec's message gives the byte offset, never the content.
                msg = (
                    f"Input line {self.line_number:,} is not valid JSON ({exc}); {NOT_SHOWN}. "
                    "Check the tap's output."
                )
                raise InvalidInputLine(msg) from None
        if not isinstance(message, dict):
            msg = (
                f"Input line {self.line_number:,} is JSON but not a Singer message (an object); "
                "check the tap's output."
            )
            raise InvalidInputLine(msg)
        _check_shape(message, self.line_number)
        return message

    @staticmethod
    def assert_line_requires(line_dict: dict[str, t.Any], requires: set[str]) -> None:
        if not requires.issubset(line_dict):
            missing = ", ".join(sorted(requires - set(line_dict)))
            kind = line_dict.get("type") if isinstance(line_dict.get("type"), str) else "a"
            msg = f"A {kind} message lacks the required key(s) {missing}; check the tap's output."
            raise InvalidInputLine(msg)

    def _process_unknown_message(self, message_dict: dict[str, t.Any]) -> None:
        # The SDK raises a ValueError (a traceback); an input problem ends with one line.
        kind = message_dict.get("type")
        shown = f"'{kind}'" if isinstance(kind, str) and _MESSAGE_TYPE.fullmatch(kind) else "?"
        msg = (
            f"A message of unknown type {shown} arrived; its content is not shown because it "
            "may hold personal data. Check the tap's output."
        )
        raise InvalidInputLine(msg)


def _not_utf8(line_number: int, position: int) -> str:
    return (
        f"Input line {line_number:,} is not valid UTF-8 (a byte that is not UTF-8 at character "
        f"{position + 1:,}); {NOT_SHOWN}. Check the tap's output encoding."
    )


def _kind(value: object) -> str:
    number = isinstance(value, (float, decimal.Decimal))
    return _KINDS.get(type(value), "a number" if number else "something else")


@functools.cache
def batch_formats() -> tuple[str, ...]:
    """BATCH file formats the SDK reads here: JSON Lines (plain or gzip); Parquet with pyarrow."""
    return ("jsonl", *(("parquet",) if importlib.util.find_spec("pyarrow") else ()))


def _check_shape(message: dict[str, t.Any], line_number: int) -> None:
    """Each key the SDK reads has the JSON type the Singer spec gives it; else one line naming
    the line, the key and both types (never the value)."""
    kind = message.get("type")
    record, stream = message.get("record"), message.get("stream")
    if kind == "RECORD" and type(record) is dict and type(stream) is str:
        return  # the common case, once per record: nothing more to check
    if "type" in message and not isinstance(kind, str):
        raise InvalidInputLine(
            f"Input line {line_number:,}: a Singer message's type must be a string such as "
            f"RECORD or SCHEMA, not {_kind(kind)}; check the tap's output."
        )
    problem = _shape_problem(message, str(kind))
    if problem is not None:
        key, want, got = problem
        raise InvalidInputLine(
            f"Input line {line_number:,}: the {key} of a {kind} message must be {want}, not "
            f"{got}; {NOT_SHOWN}. Check the tap's output."
        )
    if kind != "BATCH":
        return
    found = message.get("encoding", {}).get("format")
    if found not in batch_formats():
        shown = f"'{found}'" if isinstance(found, str) and _MESSAGE_TYPE.fullmatch(found) else "?"
        raise InvalidInputLine(
            f"Input line {line_number:,}: a BATCH message of format {shown}; this target reads "
            "BATCH files in jsonl (plain or gzip), and parquet only where pyarrow is installed. "
            "Set the tap's batch_config encoding format to jsonl, or let it send RECORD messages."
        )


def _shape_problem(message: dict[str, t.Any], kind: str) -> tuple[str, str, str] | None:
    """(key, what it must be, what it is) for the first key of the wrong JSON type."""
    for key, types in _SHAPES.get(kind, {}).items():
        # Exact types: True is an int to isinstance, not to JSON.
        if key in message and type(message[key]) not in types:
            return key, " or ".join(_KINDS[k] for k in types), _kind(message[key])
    if kind == "SCHEMA":
        properties = message.get("schema", {}).get("properties", {})
        if type(properties) is not dict:
            return "schema's properties", "an object", _kind(properties)
        if not all(type(k) is str for k in message.get("key_properties") or []):
            return "key_properties", "a list of strings", "a list holding other values"
    return None


def _no_constant(name: str) -> object:
    raise ValueError(name)  # NaN and Infinity are not JSON


def _standard_json(line: str) -> object | None:
    """The line read by the standard parser (numbers as msgspec gives them), or None."""
    try:
        message: object = json.loads(line, parse_float=decimal.Decimal, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return None
    return message
