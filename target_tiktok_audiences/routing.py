"""What a stream becomes: its mapping, its identifier columns, and the checks of its schema."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from singer_sdk.exceptions import ConfigValidationError

from target_tiktok_audiences.client import AUDIENCE_NAME_MAX
from target_tiktok_audiences.identifiers import (
    DETECTED_COLUMN_NAMES,
    detect_identifier_columns,
    identifier_like_columns,
)
from target_tiktok_audiences.identifiers.columns import _column_key
from target_tiktok_audiences.modes import AudienceType
from target_tiktok_audiences.settings import AudienceMapping, Settings

DETECTED_COLUMNS = ", ".join(n for names in DETECTED_COLUMN_NAMES.values() for n in names)
# Names that say a detected column's twin holds its digests ("email_sha256", "hashed_email").
_HASHED_FORMS = ("{}sha256", "{}md5", "{}hash", "{}hashed", "hashed{}")


@dataclass(frozen=True)
class Route:
    """A stream that feeds audiences."""

    mapping: AudienceMapping
    columns: dict[str, str]  # contract -> column
    lookalikes: tuple[str, ...] = ()  # identifier-like columns that are not used


@dataclass(frozen=True)
class Ignored:
    """A stream that feeds nothing, and why (said once, as a warning)."""

    why: str


def route_stream(settings: Settings, stream: str, schema: Mapping[str, Any]) -> Route | Ignored:
    """Decide what a stream becomes; a mapped column missing from the schema stops the run."""
    mapping = settings.mapping_for(stream)
    if mapping is None:
        return Ignored("it is not listed in the audiences setting")
    columns = list((schema.get("properties") or {}).keys())
    if mapping.identifiers is None:
        found = detect_identifier_columns(columns)
        if not found:
            looked_at = ", ".join(columns[:20]) + (", …" if len(columns) > 20 else "")
            return Ignored(
                f"it has no identifier column (looked for {DETECTED_COLUMNS}, in any case and "
                f"with any separators; its columns: {looked_at or 'none'}); map one with "
                "audiences[].identifiers"
            )
        _refuse_raw_and_hashed(settings, stream, found, columns)
    else:
        found = dict(mapping.identifiers)
    wanted = [(f"identifiers.{c}", col) for c, col in found.items()]
    if mapping.remove_column:
        wanted.append(("remove_column", mapping.remove_column))
    if mapping.audience_name_column:
        wanted.append(("audience_name_column", mapping.audience_name_column))
    missing = [
        f"audiences[stream={stream}].{key}: column '{col}' is not in the schema of "
        f"stream '{stream}' (columns: {', '.join(columns) or 'none'})"
        for key, col in wanted
        if col not in columns
    ]
    if missing:
        raise ConfigValidationError(missing[0], errors=missing)
    _check_name_length(stream, mapping, list(found))
    used = set(found.values())
    lookalikes = tuple(c for c in identifier_like_columns(columns) if c not in used)
    return Route(mapping, found, lookalikes if mapping.identifiers is None else ())


def _refuse_raw_and_hashed(
    settings: Settings, stream: str, found: Mapping[str, str], columns: list[str]
) -> None:
    """A stream that offers a raw column and a pre-hashed one for one contract ("email" and
    "email_sha256") must say which it means: detection would take the raw one, which with
    hash_identifiers false is rejected value by value and matches nobody."""
    keys = {_column_key(c): c for c in reversed(columns)}  # the first spelling wins
    for contract, raw in found.items():
        for name in DETECTED_COLUMN_NAMES[contract]:
            for form in _HASHED_FORMS:
                hashed = keys.get(form.format(_column_key(name)))
                if hashed is None:
                    continue
                which = "pre-hashed" if not settings.rules.hash_identifiers else "raw"
                message = (
                    f"stream '{stream}' offers both a raw column '{raw}' and a pre-hashed column "
                    f"'{hashed}' for {contract}: name the one to use in "
                    "audiences[].identifiers (hash_identifiers is "
                    f"{str(settings.rules.hash_identifiers).lower()}: the {which} one)"
                )
                raise ConfigValidationError(message, errors=[message])


def _check_name_length(stream: str, mapping: AudienceMapping, contracts: list[str]) -> None:
    """A stream name becomes an audience name: TikTok refuses a long one only at create, after
    the whole upload, so it is refused here, before anything of the stream is sent. (Partner
    audience names are cut by the client; configured names are checked with the config.)"""
    if mapping.audience_type is not AudienceType.CUSTOMER_FILE:
        return
    longest = max((mapping.audience_name_for(c, contracts) for c in contracts), key=len, default="")
    if len(longest) > AUDIENCE_NAME_MAX:
        message = (
            f"stream '{stream[:40]}…': the audience name '{longest[:40]}…' would be "
            f"{len(longest)} characters; TikTok allows {AUDIENCE_NAME_MAX}. Map the stream in "
            "audiences with a shorter audience_name (or rename it with a stream map __alias__)"
        )
        raise ConfigValidationError(message, errors=[message])
