"""The checks of a configuration: unknown keys, the JSON schema's errors in words, and the
cross-field checks the schema cannot express. Every message names the setting to fix."""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from singer_sdk.typing import DEFAULT_JSONSCHEMA_VALIDATOR

from target_tiktok_audiences.client import (
    API_PATH_SUFFIX,
    AUDIENCE_NAME_MAX,
    partner_audience_name,
)
from target_tiktok_audiences.identifiers import CONTRACTS, canonical_contract
from target_tiktok_audiences.modes import AudienceType, SyncMode
from target_tiktok_audiences.settings.model import NAME_VALUE, _audience_type
from target_tiktok_audiences.settings.schema import (
    DEFAULT_API_BASE_URL,
    LONGEST_CONTRACT,
    MAPPING_KEYS,
)
from target_tiktok_audiences.snapshot import snapshot_url_errors
from target_tiktok_audiences.urls import display_url, url_errors

_REGION = re.compile(r"^[A-Za-z]{2}$")
# Printable ASCII, no spaces or control characters; used with fullmatch (`$` accepts a final
# newline, which then reached the HTTP header and its error message).
_TOKEN_OK = re.compile(r"[\x21-\x7e]+")
_DIGITS = re.compile(r"[0-9]{1,32}")  # ASCII only: str.isdigit() accepts full-width digits


def _closest(name: str, known: Iterable[str]) -> str:
    match = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"; did you mean '{match[0]}'?" if match else ""


def unknown_key_errors(config: Mapping[str, Any], known_settings: Iterable[str]) -> list[str]:
    """Unknown settings, at the top or in a mapping, with the closest known name."""
    known = sorted(known_settings)
    errors = [
        f"{key}: unknown setting{_closest(key, known)}" for key in sorted(set(config) - set(known))
    ]
    for i, raw in enumerate(config.get("audiences") or []):
        if isinstance(raw, Mapping):
            for key in sorted(set(raw) - set(MAPPING_KEYS)):
                errors.append(
                    f"audiences[{i}]: unknown key '{key}'{_closest(key, MAPPING_KEYS)} "
                    f"(keys: {', '.join(MAPPING_KEYS)})"
                )
    return errors


_REQUIRED = re.compile(r"'([^']{1,80})' is a required property")
_TYPE_WORDS = {
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "an object",
}


def schema_errors(config: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    """The JSON schema's complaints, each naming the setting; a value is shown only when it is
    a number out of bounds (a mistyped value may be the token). Unknown keys are left to
    unknown_key_errors."""
    errors = []
    found = DEFAULT_JSONSCHEMA_VALIDATOR(schema).iter_errors(dict(config))
    for error in sorted(found, key=lambda e: [str(p) for p in e.absolute_path]):
        where = "".join(
            f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path
        ).lstrip(".")
        rule, bounds = error.validator, error.schema
        if rule == "additionalProperties":
            continue
        if rule == "enum" and where == "load_method":  # config_errors says what to do instead
            continue
        if rule in ("minimum", "maximum") and isinstance(bounds, Mapping):
            low, high = bounds.get("minimum"), bounds.get("maximum")
            allowed = (
                f"from {low} to {high}"
                if None not in (low, high)
                else (f"at least {low}" if high is None else f"at most {high}")
            )
            errors.append(
                f"{where}: {float(error.instance):g} is out of bounds; give a number {allowed}"
            )
        elif rule == "type":
            kinds = error.validator_value
            kinds = [kinds] if isinstance(kinds, str) else [k for k in kinds if k != "null"]
            errors.append(f"{where}: must be {' or '.join(_TYPE_WORDS.get(k, k) for k in kinds)}")
        elif rule == "enum":
            allowed = ", ".join(str(v) for v in error.validator_value if v is not None)
            errors.append(f"{where}: must be one of {allowed}")
        elif rule == "required" and (missing := _REQUIRED.match(error.message)):
            errors.append(f"{where + '.' if where else ''}{missing[1]}: required")
        else:
            errors.append(f"{where or 'config'}: {error.message}")
    return errors


def config_errors(config: Mapping[str, Any]) -> list[str]:
    """Checks between settings; each message names the setting to fix."""
    errors: list[str] = []
    advertisers = [str(a) for a in config.get("advertiser_ids") or []]
    if not advertisers:
        errors.append("advertiser_ids: list at least one TikTok advertiser id")
    if len(set(advertisers)) != len(advertisers):
        errors.append("advertiser_ids: an advertiser id is listed twice")
    bad = [(i, a) for i, a in enumerate(advertisers) if not _DIGITS.fullmatch(a)]
    if bad:
        i, value = bad[0]
        # Named as JSON (spaces and look-alike digits show); a long value, perhaps something
        # pasted in the wrong place, by its position only.
        named = json.dumps(value) if len(value) <= 40 else f"entry {i + 1}"
        errors.append(
            f"advertiser_ids: {named} is not an advertiser id: advertiser ids are numbers "
            '(ASCII digits, no spaces), e.g. "7012345678901234567"'
        )
    token = config.get("access_token")
    if not config.get("dry_run") and not token:
        errors.append("access_token: required unless dry_run is true")
    if isinstance(token, str) and token and not _TOKEN_OK.fullmatch(token):
        # Never echo the token: only say what is wrong with it.
        errors.append(
            "access_token: contains whitespace or control characters (often a newline or "
            "space copied with it); paste the token again"
        )
    errors.extend(_url_errors(config.get("api_base_url")))
    errors.extend(snapshot_url_errors(config.get("snapshot_url")))
    errors.extend(url_errors(config.get("rejects_url"), "rejects_url"))
    errors.extend(_number_errors(config))
    if config.get("load_method") not in (None, "append-only"):
        errors.append(
            f"load_method: '{config.get('load_method')}' has no meaning for TikTok audiences; "
            "remove it and choose sync_mode (mirror, append or incremental) instead"
        )
    region = config.get("default_phone_region")
    if region and not _REGION.match(region):
        errors.append(
            f"default_phone_region: '{region}' is not an ISO 3166 alpha-2 region such as US or GB"
        )
    errors.extend(_mapping_errors(config, advertisers))
    return errors


def config_warnings(config: Mapping[str, Any]) -> list[str]:
    """Doubtful but possibly intended settings."""
    url = str(config.get("api_base_url") or DEFAULT_API_BASE_URL).rstrip("/")
    if urlsplit(url).scheme in ("http", "https") and not url.endswith(API_PATH_SUFFIX):
        return [
            f"api_base_url: {display_url(url)} does not end in {API_PATH_SUFFIX}; TikTok's API "
            "and the sandbox both live under that path"
        ]
    return []


def _url_errors(value: object) -> list[str]:
    if value is None:
        return []
    parts = urlsplit(str(value))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [
            "api_base_url: must be an http(s) URL such as "
            f"{DEFAULT_API_BASE_URL} (or the sandbox's http://127.0.0.1:PORT/open_api/v1.3)"
        ]
    try:
        port = parts.port
    except ValueError:  # not a number, or out of range
        port = 0
    if port == 0 or parts.username is not None:
        return [
            "api_base_url: give host and, if needed, a port from 1 to 65535, such as "
            "http://127.0.0.1:8765/open_api/v1.3 (no user or password)"
        ]
    if "?" in str(value) or "#" in str(value):
        return [
            "api_base_url: has a query or fragment ('?…' or '#…'); TikTok's API takes none, and "
            "it may hold a secret, which would be logged; remove it"
        ]
    return []


def _number_errors(config: Mapping[str, Any]) -> list[str]:
    """NaN passes the schema's bounds (every comparison with it is false)."""
    return [
        f"{name}: must be a finite number"
        for name, value in config.items()
        if isinstance(value, float) and not math.isfinite(value)
    ]


def _mapping_errors(config: Mapping[str, Any], advertisers: list[str]) -> list[str]:
    errors: list[str] = []
    seen: dict[str, int] = {}
    audiences: dict[str, str] = {}  # audience name -> stream (its lock, its snapshots)
    global_mode = SyncMode(config.get("sync_mode") or SyncMode.MIRROR.value)
    global_type = AudienceType(config.get("audience_type") or AudienceType.CUSTOMER_FILE.value)
    for i, raw in enumerate(config.get("audiences") or []):
        where = f"audiences[{i}]"
        stream = raw.get("stream")
        if stream in seen:
            errors.append(f"{where}.stream: stream '{stream}' is mapped twice")
        seen[stream] = i
        identifiers = raw.get("identifiers")
        for contract, column in (identifiers or {}).items():
            if canonical_contract(contract) is None:
                errors.append(
                    f"{where}.identifiers: unknown contract '{contract}'; use one of "
                    + ", ".join(CONTRACTS)
                )
            if not isinstance(column, str) or not column:
                errors.append(f"{where}.identifiers.{contract}: give the column name as a string")
        if identifiers is not None and not identifiers:
            errors.append(f"{where}.identifiers: map at least one contract to a column")
        contracts = [c for c in (canonical_contract(k) for k in identifiers or {}) if c]
        if len(set(contracts)) != len(contracts):
            errors.append(f"{where}.identifiers: a contract is mapped twice (AAID_* = GAID_*)")
        for advertiser, audience_id in (raw.get("audience_ids") or {}).items():
            if str(advertiser) not in advertisers:
                errors.append(
                    f"{where}.audience_ids: advertiser '{advertiser}' is not in advertiser_ids"
                )
            if not _DIGITS.fullmatch(str(audience_id)):
                errors.append(
                    f"{where}.audience_ids: the audience id for advertiser {advertiser} must be "
                    'a number (ASCII digits), e.g. "7234567890123456789"'
                )
        mode = SyncMode(raw.get("sync_mode") or global_mode)
        kind = _audience_type(mode, AudienceType(raw.get("audience_type") or global_type))
        if raw.get("audience_ids") and kind is AudienceType.CUSTOMER_FILE and len(contracts) != 1:
            errors.append(
                f"{where}.audience_ids: a customer-file audience holds one contract; "
                "map exactly one identifier when you name existing audiences"
            )
        name = str(raw.get("audience_name") or stream or "").strip()
        if raw.get("audience_name") is not None and not name:
            errors.append(f"{where}.audience_name: must not be empty")
        if raw.get("audience_name_column") is not None:
            errors.extend(_column_errors(where, raw))
            continue  # names come from the data: checked as each value appears
        names = _audience_names(name, contracts, kind)
        longest = max((n for n, _ in names), key=len, default="")
        if kind is AudienceType.CUSTOMER_FILE and len(longest) > AUDIENCE_NAME_MAX:
            errors.append(
                f"{where}.audience_name: the audience name '{longest[:40]}…' would be "
                f"{len(longest)} characters; TikTok allows {AUDIENCE_NAME_MAX}"
            )
        # One audience, one mapping: whatever the contracts or types, one name in one
        # advertiser is one audience (one lock): two mappings would undo each other's users.
        for audience in _names_synced(name, contracts, kind):
            if audiences.get(audience, stream) != stream:
                errors.append(
                    f"{where}: streams '{audiences[audience]}' and '{stream}' would both sync "
                    f"audience '{audience}' in the same advertisers; give one of them another "
                    "audience_name"
                )
                break
            audiences.setdefault(audience, str(stream))
    return errors


def _names_synced(name: str, contracts: list[str], kind: AudienceType) -> list[str]:
    """Every audience name a mapping without audience_name_column may sync (as TikTok stores
    it: a partner name cut to 67 characters and '...')."""
    if kind is AudienceType.PARTNER:
        return [partner_audience_name(name)]
    if not contracts:  # detected from the columns: one contract (name) or several (suffixed)
        return [name, *(f"{name} ({c})" for c in CONTRACTS)]
    return [n for n, _ in _audience_names(name, contracts, kind)]


def _audience_names(name: str, contracts: list[str], kind: AudienceType) -> list[tuple[str, str]]:
    """(audience name, contract) a mapping may sync; '*' when the contract is detected later."""
    if kind is AudienceType.PARTNER:
        return [(name, "*")]
    if not contracts:  # detected from the columns: one contract (name) or several (suffixed)
        return [(name, "*"), (f"{name} ({LONGEST_CONTRACT})", "*")]
    if len(contracts) == 1:
        return [(name, contracts[0])]
    return [(f"{name} ({c})", c) for c in contracts]


def _column_errors(where: str, raw: Mapping[str, Any]) -> list[str]:
    """audience_name_column: one audience per value, so the name must hold the value."""
    column = raw.get("audience_name_column")
    if not isinstance(column, str) or not column:
        return [f"{where}.audience_name_column: give the column name as a string"]
    errors = []
    name = raw.get("audience_name")
    if name is not None and NAME_VALUE not in str(name):
        errors.append(
            f"{where}.audience_name: must contain {NAME_VALUE} when audience_name_column is "
            f'set (e.g. "Segment {NAME_VALUE}"), or every record would go to one audience'
        )
    if raw.get("audience_ids"):
        errors.append(
            f"{where}.audience_ids: cannot be used with audience_name_column (one audience per "
            "value); the audiences are found by name or created"
        )
    return errors
