"""The Singer message reader: msgspec's fast JSON, and errors that never echo a line.

The SDK's readers put the offending line into the exception and the log; here a line is a
user's email or phone, so errors name only the problem and where it is.
"""

from __future__ import annotations

import decimal
import json
import re
import typing as t
from collections.abc import Callable

import msgspec
from singer_sdk.contrib.msgspec import MsgSpecReader, decoder
from singer_sdk.singerlib.exceptions import InvalidInputLine

# A message type is shown in an error only when it looks like one (never a stray value).
_MESSAGE_TYPE = re.compile(r"[A-Za-z_]{1,40}")


class PrivateSingerReader(MsgSpecReader):
    """MsgSpecReader that keeps input lines out of exceptions and logs."""

    on_failure: Callable[[Exception], None] | None = None
    line_number = 0  # of the line being read: errors say where, never what

    def process_lines(
        self, file_input: t.IO[str] | None, callbacks: dict[str, Callable[[dict[str, t.Any]], None]]
    ) -> t.Counter[str]:
        self.line_number = 0
        # One guard around the whole input loop, not one per message: whatever stops the run
        # while reading or delivering reaches the run report first.
        try:
            return super().process_lines(file_input, callbacks)
        except Exception as exc:
            if self.on_failure is not None:
                self.on_failure(exc)
            raise

    def deserialize_json(self, line: str) -> dict[str, t.Any]:
        # The SDK's loop calls this once for every line, blank ones included.
        self.line_number += 1
        try:
            message = decoder.decode(line)
        except (msgspec.DecodeError, RecursionError) as exc:  # nested too deep: RecursionError
            # msgspec refuses a lone surrogate escape ("\ud800"), which JSON's grammar allows
            # and Python taps emit; the standard parser reads it and the encoders reject it.
            message = _standard_json(line)
            if message is None:
                # msgspec's message gives the byte offset, never the content.
                msg = (
                    f"Input line {self.line_number:,} is not valid JSON ({exc}); it is not "
                    "shown because it may hold personal data. Check the tap's output."
                )
                raise InvalidInputLine(msg) from None
        if not isinstance(message, dict):
            msg = (
                f"Input line {self.line_number:,} is JSON but not a Singer message (an object); "
                "check the tap's output."
            )
            raise InvalidInputLine(msg)
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


def _no_constant(name: str) -> object:
    raise ValueError(name)  # NaN and Infinity are not JSON


def _standard_json(line: str) -> object | None:
    """The line read by the standard parser (numbers as msgspec gives them), or None."""
    try:
        message: object = json.loads(line, parse_float=decimal.Decimal, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return None
    return message
