"""Small validators, one per concept; each names the field in its message."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import IO, Any

from .rules import param_error


def digest_length(id_type: str) -> int:
    return 32 if id_type.endswith("_MD5") else 64


_HEX = {n: re.compile(f"[0-9a-f]{{{n}}}") for n in (32, 64)}


def check_digest(value: Any, id_type: str, where: str) -> str:
    n = digest_length(id_type)
    if not isinstance(value, str) or not _HEX[n].fullmatch(value):
        raise param_error(f"{where}: must be {n} lowercase hex characters for {id_type}")
    return value


def check_choice(value: Any, name: str, allowed: Iterable[str]) -> str:
    allowed = tuple(allowed)
    if value is None or value == "":
        raise param_error(f"{name}: required, one of {', '.join(allowed)}")
    if value not in allowed:
        raise param_error(f"{name}: {value!r} is not supported; use one of {', '.join(allowed)}")
    return str(value)


def check_string(value: Any, name: str, lo: int = 1, hi: int | None = None) -> str:
    if not isinstance(value, str):
        raise param_error(f"{name}: required string")
    if len(value) < lo or (hi is not None and len(value) > hi):
        raise param_error(f"{name}: length must be {lo}..{hi if hi is not None else ''} characters")
    return value


def check_id(value: Any, name: str) -> str:
    """Numeric ids arrive as JSON strings (or numbers); both are read as digit strings."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.isdigit():
        raise param_error(f"{name}: required, a numeric id string")
    return value


def check_int(value: Any, name: str, lo: int, hi: int, default: int | None = None) -> int | None:
    if value is None:
        return default
    if isinstance(value, str) and value.isdigit():  # query parameters are strings
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise param_error(f"{name}: must be an integer in {lo}..{hi}")
    return value


def check_list(value: Any, name: str, lo: int, hi: int) -> list[Any]:
    if not isinstance(value, list):
        raise param_error(f"{name}: required, a list")
    if not lo <= len(value) <= hi:
        raise param_error(f"{name}: must hold {lo}..{hi} items, got {len(value)}")
    return value


def json_list_param(args: Any, name: str, hi: int = 100) -> list[str]:
    """Array query parameters are JSON strings: ``custom_audience_ids=["123"]``."""
    try:
        value = json.loads(args.get(name) or "")
    except ValueError:
        raise param_error(f'{name}: must be a JSON array string, e.g. ["123"]') from None
    return [check_id(v, name) for v in check_list(value, name, 1, hi)]


# A first line that names the ID (TikTok's help asks Ads Manager users for one, e.g.
# "Email_SHA256") is taken as a header: skipped, counted as unmatched, never an error.
_HEADER = re.compile(rb"[A-Za-z][A-Za-z0-9_ ]{0,63}\r?")
_ANY_HEX = re.compile(rb"[0-9a-fA-F]*")  # a cut or upper-case digest is an error, not a header


def scan_upload(
    src: IO[bytes], dst: IO[bytes], width: int, limit: int
) -> tuple[str, int, int, str]:
    """Copy an upload while hashing and checking it; returns (md5, size, lines, first_error).

    Streams in 1 MiB chunks: validation is a regex over whole lines, so 50 MB take well under
    a second and memory stays flat. A header line is not copied to `dst` nor counted in lines.
    """
    line_re = re.compile(rb"(?:[0-9a-f]{%d}\n)*" % width)
    md5, size, lines, carry, error = hashlib.md5(), 0, 0, b"", ""
    first = True
    while chunk := src.read(1 << 20):
        md5.update(chunk)
        size += len(chunk)
        if size > limit:
            dst.write(chunk)
            return md5.hexdigest(), size, lines, ""
        if first:
            first = False
            head, _, rest = chunk.partition(b"\n")
            if _ and _HEADER.fullmatch(head) and not _ANY_HEX.fullmatch(head.rstrip(b"\r")):
                chunk = rest
        dst.write(chunk)
        if error:
            continue  # keep hashing so a signature mismatch is reported first
        buf = carry + chunk
        cut = buf.rfind(b"\n") + 1
        whole, carry = buf[:cut], buf[cut:]
        if not line_re.fullmatch(whole):
            bad = next(i for i, ln in enumerate(whole.split(b"\n")) if not _line_ok(ln, width))
            error = f"line {lines + bad + 1} is not {width} lowercase hex characters ending in \\n"
        lines += whole.count(b"\n")
        if len(carry) > 4096 and not error:
            error = f"line {lines + 1} is not {width} lowercase hex characters ending in \\n"
    if carry and not error:  # last line without a final newline is accepted
        if _line_ok(carry, width):
            lines += 1
        else:
            error = f"line {lines + 1} is not {width} lowercase hex characters ending in \\n"
    return md5.hexdigest(), size, lines, error


def _line_ok(line: bytes, width: int) -> bool:
    return re.fullmatch(rb"[0-9a-f]{%d}" % width, line) is not None


def _time(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def new_request_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S") + secrets.token_hex(10).upper()
