"""Identifier contracts: normalise, validate and hash user identifiers.

Pure functions only (no I/O, no HTTP, no Singer SDK) so that the sinks, the dry-run writer and the
tests all share one definition of what TikTok receives. The rules follow design.md "Identifiers"
and tiktok-api.md "Identifier normalisation".

The hot path is :func:`make_encoder`: it resolves every setting once and returns a closure that is
called once per identifier value (millions of times per run).
"""

from __future__ import annotations

import enum
import functools
import hashlib
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple, Protocol

import phonenumbers

__all__ = [
    "ALGORITHMS",
    "CONTRACTS",
    "CONTRACT_ALIASES",
    "DETECTED_COLUMN_NAMES",
    "EMAIL_MODES",
    "KINDS",
    "MAX_VALUE_LENGTH",
    "REASONS",
    "REASON_ALREADY_HASHED",
    "REASON_INVALID_AD_ID",
    "REASON_INVALID_EMAIL",
    "REASON_INVALID_PHONE",
    "REASON_INVALID_REMOVE_FLAG",
    "REASON_MESSAGES",
    "REASON_NOT_HASHED",
    "REASON_TOO_LONG",
    "REASON_TRACKING_LIMITED",
    "REASON_WRONG_TYPE",
    "ColumnEncoder",
    "Encoder",
    "Rules",
    "algorithm_of",
    "canonical_contract",
    "detect_identifier_columns",
    "digest",
    "identifier_like_columns",
    "kind_of",
    "make_column_encoder",
    "make_encoder",
    "normalize_ad_id",
    "normalize_email",
    "normalize_phone",
    "one_value",
    "remove_flag",
]

# --- Contracts -------------------------------------------------------------------------------

# TikTok customer-file `calculate_type` values we support (the Segment API says AAID for GAID).
CONTRACTS: tuple[str, ...] = (
    "EMAIL_SHA256",
    "PHONE_SHA256",
    "IDFA_SHA256",
    "IDFA_MD5",
    "GAID_SHA256",
    "GAID_MD5",
)
CONTRACT_ALIASES: dict[str, str] = {"AAID_SHA256": "GAID_SHA256", "AAID_MD5": "GAID_MD5"}

KINDS: tuple[str, ...] = ("email", "phone", "idfa", "gaid")
ALGORITHMS: tuple[str, ...] = ("sha256", "md5")

_KIND: dict[str, str] = {c: c.split("_", 1)[0].lower() for c in CONTRACTS}
_ALGORITHM: dict[str, str] = {c: c.rsplit("_", 1)[1].lower() for c in CONTRACTS}
# Upper-cased lookup table so canonical_contract is a single dict hit.
_CANONICAL: dict[str, str] = {**{c: c for c in CONTRACTS}, **CONTRACT_ALIASES}


class _Hash(Protocol):
    def hexdigest(self) -> str: ...


_HASHERS: dict[str, Callable[[bytes], _Hash]] = {
    "sha256": hashlib.sha256,
    "md5": hashlib.md5,
}
_DIGEST_LENGTH: dict[str, int] = {"sha256": 64, "md5": 32}


def canonical_contract(name: str) -> str | None:
    """Return the canonical contract for ``name`` (case-insensitive, aliases mapped), else None."""
    if not isinstance(name, str):
        return None
    return _CANONICAL.get(name.strip().upper())


def _require_contract(contract: str) -> str:
    canonical = canonical_contract(contract)
    if canonical is None:
        raise ValueError(
            f"unknown identifier contract {contract!r}; expected one of {', '.join(CONTRACTS)}"
        )
    return canonical


def kind_of(contract: str) -> str:
    """Identifier kind of a contract: "email", "phone", "idfa" or "gaid" (ValueError if unknown)."""
    return _KIND[_require_contract(contract)]


def algorithm_of(contract: str) -> str:
    """Hash algorithm of a contract: "sha256" or "md5" (ValueError if unknown)."""
    return _ALGORITHM[_require_contract(contract)]


# --- Rejection reasons -----------------------------------------------------------------------

REASON_WRONG_TYPE = "wrong_type"
REASON_INVALID_EMAIL = "invalid_email"
REASON_INVALID_PHONE = "invalid_phone"
REASON_INVALID_AD_ID = "invalid_ad_id"
REASON_TRACKING_LIMITED = "tracking_limited"
REASON_ALREADY_HASHED = "already_hashed"
REASON_NOT_HASHED = "not_hashed"
REASON_TOO_LONG = "too_long"
REASON_INVALID_REMOVE_FLAG = "invalid_remove_flag"

REASONS: tuple[str, ...] = (
    REASON_WRONG_TYPE,
    REASON_INVALID_EMAIL,
    REASON_INVALID_PHONE,
    REASON_INVALID_AD_ID,
    REASON_TRACKING_LIMITED,
    REASON_ALREADY_HASHED,
    REASON_NOT_HASHED,
    REASON_TOO_LONG,
    REASON_INVALID_REMOVE_FLAG,
)

# Strings longer than this are rejected before any work: no real identifier comes close, and it
# keeps a runaway column (a JSON blob, a document) from costing regex or phonenumbers time.
MAX_VALUE_LENGTH = 4096

# User-facing texts; format with ``contract=``. They never include the value (it is PII).
REASON_MESSAGES: dict[str, str] = {
    REASON_WRONG_TYPE: "the value for {contract} is not a string",
    REASON_INVALID_EMAIL: "the value for {contract} is not a valid email address",
    REASON_INVALID_PHONE: "the value for {contract} is not a valid phone number",
    REASON_INVALID_AD_ID: "the value for {contract} is not a valid advertising id (UUID)",
    REASON_TRACKING_LIMITED: (
        "the value for {contract} is the all-zero advertising id (tracking limited)"
    ),
    REASON_ALREADY_HASHED: "the value for {contract} appears to already be hashed",
    REASON_NOT_HASHED: "hashing is disabled but the value for {contract} appears to be unhashed",
    REASON_TOO_LONG: f"the value for {{contract}} is longer than {MAX_VALUE_LENGTH} characters",
    REASON_INVALID_REMOVE_FLAG: (
        "the remove flag of a record with {contract} is not true/t/yes/y/1, false/f/no/n/0, "
        "a number, empty or null"
    ),
}

# --- Rules -----------------------------------------------------------------------------------

EMAIL_MODES: tuple[str, ...] = ("basic", "tiktok")


@dataclass(frozen=True)
class Rules:
    """The settings that change how identifiers are encoded."""

    hash_identifiers: bool = True
    email_normalization: str = "basic"
    default_phone_region: str | None = None


# --- Normalisation ---------------------------------------------------------------------------

# Explicit ASCII classes: in Python `\d` also matches other scripts' digits, and `$` would accept a
# trailing newline, so every pattern is used with fullmatch().
# One '@', non-empty local part, a dot in the domain, no whitespace (`\s` == str.isspace())
# and no control characters (a NUL or escape code is a broken value, not an address).
_EMAIL_RE = re.compile(r"[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]*\.[^@\s\x00-\x1f\x7f]*")
_E164_RE = re.compile(r"\+[1-9][0-9]{7,14}")
# North American numbers written nationally ("(415) 555-0134", "1-415-555-0134") are the bulk
# of US/CA warehouses; this shortcut gives what phonenumbers gives for them, ~20x faster.
# Their shape, checked without a regex in _formatted_phone: `1?[2-9][0-9]{9}` once the
# separators are dropped.
_NANP_REGIONS = frozenset({"US", "CA"})
# Written international numbers ("+44 20 7946 0958", "+1 415-555-0134"): see _international.
_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_ZERO_UUID = "00000000-0000-0000-0000-000000000000"
_HEX_RE = re.compile(r"[0-9a-fA-F]+")
_LOWER_HEX_RE = re.compile(r"[0-9a-f]+")
_DIGEST_LENGTHS: frozenset[int] = frozenset(_DIGEST_LENGTH.values())

_E164 = phonenumbers.PhoneNumberFormat.E164
_NumberParseException = phonenumbers.NumberParseException


# The private normalisers take an already stripped, non-empty string; the public ones strip.


def _email_basic(stripped: str) -> str | None:
    email = stripped.lower()
    if _EMAIL_RE.fullmatch(email) is None:
        return None
    # Lone surrogates (possible from JSON "\ud800") cannot be UTF-8 encoded, so cannot be hashed.
    if not email.isascii():
        try:
            email.encode("utf-8")
        except UnicodeEncodeError:
            return None
    return email


def _email_tiktok(stripped: str) -> str | None:
    email = _email_basic(stripped)
    if email is None:
        return None
    local, domain = email.split("@")
    # TikTok's rule touches the local part only; the domain keeps its dots (a peer's bug).
    local = local.split("+", 1)[0].replace(".", "")
    if not local:
        return None
    return f"{local}@{domain}"


_EMAIL_NORMALIZERS: dict[str, Callable[[str], str | None]] = {
    "basic": _email_basic,
    "tiktok": _email_tiktok,
}


class _Unsure(enum.Enum):
    """A fast path's answer when only phonenumbers can tell."""

    UNSURE = enum.auto()


_UNSURE = _Unsure.UNSURE


class _Plan(NamedTuple):
    """What phonenumbers' parse and is_possible_number do with a calling code's national
    numbers, read once from its own metadata and answers."""

    possible: frozenset[int]  # lengths is_possible_number accepts
    prefix: re.Pattern[str] | None  # national_prefix_for_parsing
    viable: Callable[[str], object] | None  # the plan's general national-number pattern
    transforms: bool  # a national_prefix_transform_rule: left to phonenumbers
    strippable: frozenset[int]  # lengths parse keeps after stripping a national prefix


@functools.cache  # one entry per country calling code (~250 at most)
def _country_plan(country_code: int) -> _Plan:
    region = phonenumbers.region_code_for_country_code(country_code)
    metadata = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
    assert metadata is not None  # the code is in COUNTRY_CODE_TO_REGION_CODE
    # Lengths are asked of phonenumbers itself (its answer depends on the national number's
    # length only), for every length that parse() lets through (1..17).
    reasons = {
        length: phonenumbers.is_possible_number_with_reason(
            phonenumbers.PhoneNumber(country_code=country_code, national_number=int("5" * length))
        )
        for length in range(1, 18)
    }
    result = phonenumbers.ValidationResult
    prefix = metadata.national_prefix_for_parsing
    general = metadata.general_desc.national_number_pattern if metadata.general_desc else None
    return _Plan(
        possible=frozenset(
            n
            for n, why in reasons.items()
            if n >= 2 and why in (result.IS_POSSIBLE, result.IS_POSSIBLE_LOCAL_ONLY)
        ),
        prefix=re.compile(prefix) if prefix else None,
        viable=re.compile(general).fullmatch if general else None,
        transforms=bool(metadata.national_prefix_transform_rule),
        # parse() strips a national prefix unless what is left is too short, possible only
        # locally or of an impossible length (TOO_LONG still strips).
        strippable=frozenset(
            n for n, why in reasons.items() if why in (result.IS_POSSIBLE, result.TOO_LONG)
        ),
    )


def _calling_codes() -> dict[str, tuple[int, int]]:
    """Every 3-digit start of an international number -> (calling code, its length), found as
    phonenumbers finds it: the first of its 1, 2 or 3 leading digits that is a calling code."""
    known = phonenumbers.COUNTRY_CODE_TO_REGION_CODE
    table: dict[str, tuple[int, int]] = {}
    for start in range(100, 1000):  # a calling code never starts with 0
        digits = str(start)
        for size in (1, 2, 3):
            if int(digits[:size]) in known:
                table[digits] = (int(digits[:size]), size)
                break
    return table


_CALLING_CODES = _calling_codes()


def _drop_separators(value: str) -> str:
    # Chained str.replace: several times faster than str.translate with a deletion table.
    value = value.replace(" ", "").replace("-", "").replace(".", "")
    return value.replace("(", "").replace(")", "")


def _international(stripped: str) -> str | _Unsure | None:
    """E.164 for '+', country code and national number with ASCII separators " ().-".

    For such a value phonenumbers keeps the digits only, takes the first 1-3 digits that are a
    calling code, may strip a national prefix ("+44 (0)20 ...") and then checks the national
    number's length. This does the same from phonenumbers' own metadata and answers _UNSURE
    (leave it to phonenumbers) where a national-prefix transform rule applies or the result
    would fall outside 8-15 digits. tests/test_identifiers.py proves it equal to phonenumbers
    on every region's example numbers with random separators and with their national prefix.
    """
    # The shape `\+[0-9 ().\-]{8,60}`, checked by its length and by what is left without the
    # separators (no regex: a few hundred ns less per value).
    if not 9 <= len(stripped) <= 61 or stripped[0] != "+":
        return _UNSURE
    e164 = _drop_separators(stripped)
    digits = e164[1:]
    if not (digits.isascii() and digits.isdigit()):
        return _UNSURE
    if not 9 <= len(e164) <= 16:  # 8-15 digits: E.164's range
        return _UNSURE
    calling_code = _CALLING_CODES.get(e164[1:4])
    if calling_code is None:
        return _UNSURE
    country_code, size = calling_code
    national = e164[1 + size :]
    plan = _country_plan(country_code)
    if plan.prefix is not None:
        match = plan.prefix.match(national)
        # An empty match that captured nothing leaves the number as it is (Argentina's
        # optional prefix matches every number that way).
        if match is not None and (match.end() or any(g is not None for g in match.groups())):
            parsed = _national_prefix_stripped(national, match, plan)
            if parsed is None:
                return _UNSURE
            national, e164 = parsed, e164[: 1 + size] + parsed
            if not 9 <= len(e164) <= 16:  # a short plan's number: phonenumbers re-checks it
                return _UNSURE
    return e164 if len(national) in plan.possible else None


def _national_prefix_stripped(national: str, match: re.Match[str], plan: _Plan) -> str | None:
    """The national number as phonenumbers' parse leaves it once its national-prefix pattern
    matched ("+44 (0)20 ...": "020..." -> "20..."); None where only phonenumbers can tell.

    parse strips the prefix (_maybe_strip_national_prefix_carrier_code) unless the number
    fitted the plan's general pattern and would no longer fit it, and then keeps the result
    only if its length is possible or too long (_test_number_length). A transform rule
    rewrites the number instead: left to phonenumbers.
    """
    groups = match.groups()
    if plan.transforms and (not groups or groups[-1] is not None):
        return None
    rest = national[match.end() :]
    viable = plan.viable
    if viable is not None and viable(national) is not None and viable(rest) is None:
        return national
    return rest if len(rest) in plan.strippable else national


def _phone(stripped: str, region: str | None) -> str | None:
    # Fast path: already E.164, taken as is (no phonenumbers call for the common warehouse case).
    if _E164_RE.fullmatch(stripped) is not None:
        return stripped
    return _formatted_phone(stripped, region)


def _formatted_phone(stripped: str, region: str | None) -> str | None:
    """_phone for a value that is not in E.164 syntax."""
    if stripped[0] == "+":
        international = _international(stripped)
        if international is not _UNSURE:
            return international
    elif region in _NANP_REGIONS:
        # An optional 1, then [2-9] and nine digits (see _NANP_REGIONS).
        digits = _drop_separators(stripped)
        if len(digits) == 11 and digits[0] == "1":
            digits = digits[1:]
        if len(digits) == 10 and "2" <= digits[0] <= "9" and digits.isascii() and digits.isdigit():
            return "+1" + digits
    return _parsed_phone(stripped, region)


# Bounded: junk repeats across a warehouse ("n/a", "0", "unknown") and costs a full parse each
# time; unique values just cycle through.
@functools.lru_cache(maxsize=4096)
def _parsed_phone(stripped: str, region: str | None) -> str | None:
    """What phonenumbers makes of a value no fast path could decide (design.md "Phone")."""
    try:
        number = phonenumbers.parse(stripped, region)
    except _NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    e164 = phonenumbers.format_number(number, _E164)
    if _E164_RE.fullmatch(e164) is not None:
        return e164
    # Outside 8-15 digits. E.164 never exceeds 15; a few small plans (Niue, Saint Helena) have
    # fewer than 8. Keep a short one only if it parses back to itself: phonenumbers turns junk
    # such as "000000" (region DE) into "+4900000", which then normalises to "+490000".
    if len(e164) > 16:
        return None
    try:
        again = phonenumbers.parse(e164, None)
    except _NumberParseException:
        return None
    if not phonenumbers.is_possible_number(again):
        return None
    return e164 if phonenumbers.format_number(again, _E164) == e164 else None


def _ad_id(stripped: str) -> str | None:
    ad_id = stripped.lower()
    if _UUID_RE.fullmatch(ad_id) is None or ad_id == _ZERO_UUID:
        return None
    return ad_id


def _region(region: str | None) -> str | None:
    # phonenumbers only knows upper-case region codes ("us" fails to parse).
    if region is None:
        return None
    region = region.strip().upper()
    return region or None


def normalize_email(value: str, mode: str = "basic") -> str | None:
    """Trim and lowercase an email (``tiktok`` mode: also drop ``+suffix`` and dots of the local
    part); None when it is not a valid email."""
    normalizer = _EMAIL_NORMALIZERS.get(mode)
    if normalizer is None:
        raise ValueError(f"unknown email_normalization {mode!r}; expected one of {EMAIL_MODES}")
    if not isinstance(value, str):
        return None
    stripped = value.strip()
    return normalizer(stripped) if stripped else None


def normalize_phone(value: str, region: str | None) -> str | None:
    """Return the phone number in E.164 with '+', or None when it is not a possible number."""
    if not isinstance(value, str):
        return None
    stripped = value.strip()
    return _phone(stripped, _region(region)) if stripped else None


def normalize_ad_id(value: str) -> str | None:
    """Return the IDFA/GAID as a lowercase UUID, or None (also for the all-zero id)."""
    if not isinstance(value, str):
        return None
    stripped = value.strip()
    return _ad_id(stripped) if stripped else None


def digest(normalized: str, algorithm: str) -> str:
    """Lowercase hex SHA-256 or MD5 of the UTF-8 bytes of an already normalised value."""
    hasher = _HASHERS.get(algorithm)
    if hasher is None:
        raise ValueError(f"unknown hash algorithm {algorithm!r}; expected one of {ALGORITHMS}")
    return hasher(normalized.encode("utf-8")).hexdigest()


# --- Encoder (hot path) ----------------------------------------------------------------------

Encoder = Callable[[object], tuple[str | None, str | None]]
# values -> (their digests, None where absent or rejected; {position: rejection reason})
ColumnEncoder = Callable[[Iterable[object]], tuple[list[str | None], dict[int, str]]]


def make_encoder(contract: str, rules: Rules) -> Encoder:
    """Build the per-value encoder for ``contract`` under ``rules``.

    The encoder maps any JSON value to ``(digest, None)`` on success, ``(None, None)`` when the
    value is absent (None, empty or blank string) and ``(None, reason)`` on rejection. It never
    raises. With ``hash_identifiers=False`` the "digest" is the validated, lowercased input.
    It is make_column_encoder's code, for one value.
    """
    return one_value(make_column_encoder(contract, rules))


def one_value(column: ColumnEncoder) -> Encoder:
    """A column encoder used for one value at a time (make_encoder's answers)."""

    def encode(value: object) -> tuple[str | None, str | None]:
        digests, rejected = column((value,))
        found = digests[0]
        return (found, None) if found is not None else (None, rejected.get(0))

    return encode


def make_column_encoder(contract: str, rules: Rules) -> ColumnEncoder:
    """Build the encoder of a column of values (many records' values of one contract).

    It returns the digests in the values' order, None for an absent or rejected value, and
    the rejection reasons by position; the same answers as make_encoder's, value by value, in
    one loop (a call and a result tuple less per value: issue 21). It never raises.
    """
    canonical = _require_contract(contract)
    kind = _KIND[canonical]
    algorithm = _ALGORITHM[canonical]
    max_length = MAX_VALUE_LENGTH
    digest_lengths = _DIGEST_LENGTHS

    # hash_identifiers off: the value must already be the contract's digest (lowercased).
    prehashed = not rules.hash_identifiers
    expected_length = _DIGEST_LENGTH[algorithm]
    lower_hex = _LOWER_HEX_RE.fullmatch

    # The normalisers are inlined below; only the tiktok email mode calls its own.
    # tests/test_identifiers.py holds the encoder to the public normalisers + digest().
    ad_id = kind in ("idfa", "gaid")
    phone = kind == "phone"
    email_mode: Callable[[str], str | None] | None = None  # None: basic
    if kind == "email":
        mode = rules.email_normalization
        if mode not in _EMAIL_NORMALIZERS:
            raise ValueError(f"unknown email_normalization {mode!r}; expected one of {EMAIL_MODES}")
        email_mode = None if mode == "basic" else _EMAIL_NORMALIZERS[mode]
    region = _region(rules.default_phone_region)
    formatted = _formatted_phone

    hasher = _HASHERS[algorithm]
    any_hex = _HEX_RE.fullmatch
    email_match = _EMAIL_RE.fullmatch
    e164 = _E164_RE.fullmatch
    hex_digits, dashes = b"0123456789abcdef", b"----"
    zero = _ZERO_UUID

    def encode(values: Iterable[object]) -> tuple[list[str | None], dict[int, str]]:
        normalized: str | None
        digests: list[str | None] = []
        add = digests.append
        rejected: dict[int, str] = {}
        for i, value in enumerate(values):
            if value.__class__ is not str and not isinstance(value, str):
                add(None)
                if value is not None:
                    rejected[i] = REASON_WRONG_TYPE
                continue
            if len(value) > max_length:
                add(None)
                rejected[i] = REASON_TOO_LONG
                continue
            stripped = value.strip()
            if not stripped:
                add(None)
                continue
            if prehashed:
                normalized = stripped.lower()
                if len(normalized) == expected_length and lower_hex(normalized) is not None:
                    add(normalized)
                else:
                    add(None)
                    rejected[i] = REASON_NOT_HASHED
                continue
            # Never hash a hash: a 32/64 hex value is almost surely a digest sent with hashing
            # on. Asked once a value fails its own rules where no valid one can be hex digits
            # only (an ad id has dashes, a basic email an @, an E.164 phone a +).
            if ad_id:  # _ad_id, its pattern checked on the bytes: ~3x faster than the regex
                normalized = stripped.lower()
                data = normalized.encode() if normalized.isascii() else b""
                # 36 characters: 32 hex digits and four dashes, at 8, 13, 18 and 23.
                if (
                    len(data) != 36
                    or data.translate(None, hex_digits) != dashes
                    or data[8:24:5] != dashes
                ):
                    add(None)
                    hashed = len(stripped) in digest_lengths and any_hex(stripped) is not None
                    rejected[i] = REASON_ALREADY_HASHED if hashed else REASON_INVALID_AD_ID
                    continue
                if normalized == zero:
                    add(None)
                    rejected[i] = REASON_TRACKING_LIMITED
                    continue
                add(hasher(data).hexdigest())
                continue
            if email_mode is None and not phone:  # _email_basic
                normalized = stripped.lower()
                if email_match(normalized) is None:
                    add(None)
                    hashed = len(stripped) in digest_lengths and any_hex(stripped) is not None
                    rejected[i] = REASON_ALREADY_HASHED if hashed else REASON_INVALID_EMAIL
                    continue
                if not normalized.isascii():
                    try:
                        normalized.encode()
                    except UnicodeEncodeError:  # a lone surrogate cannot be hashed
                        add(None)
                        rejected[i] = REASON_INVALID_EMAIL
                        continue
                add(hasher(normalized.encode()).hexdigest())
                continue
            if phone and e164(stripped) is not None:  # _phone: E.164 is taken as it is
                add(hasher(stripped.encode()).hexdigest())
                continue
            if len(stripped) in digest_lengths and any_hex(stripped) is not None:
                add(None)
                rejected[i] = REASON_ALREADY_HASHED
                continue
            if phone:
                normalized = formatted(stripped, region)
                reason = REASON_INVALID_PHONE
            else:
                assert email_mode is not None
                normalized = email_mode(stripped)
                reason = REASON_INVALID_EMAIL
            if normalized is None:
                add(None)
                rejected[i] = reason
                continue
            add(hasher(normalized.encode()).hexdigest())
        return digests, rejected

    return encode


# --- Remove flag ---------------------------------------------------------------------------

_REMOVE_STRINGS: dict[str, bool] = {
    **dict.fromkeys(("true", "t", "yes", "y", "1"), True),
    **dict.fromkeys(("false", "f", "no", "n", "0", ""), False),
}


def remove_flag(value: object) -> bool | None:
    """Read a `remove_column` value: True (remove the user), False (keep) or None (invalid).

    Remove: True, a non-zero number, the strings true/t/yes/y/1. Keep: False, zero, None, the
    strings false/f/no/n/0 and empty or blank strings. Strings are trimmed and compared in any
    case. Anything else (other strings such as "2" or "maybe", NaN, infinities, lists, objects)
    is None: the caller rejects the record rather than guess which way the user meant it.
    """
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _REMOVE_STRINGS.get(value.strip().lower())
    if isinstance(value, int):
        return value != 0
    if isinstance(value, float):
        return value != 0 if math.isfinite(value) else None
    if isinstance(value, Decimal):  # JSON numbers may arrive as Decimal
        return value != 0 if value.is_finite() else None
    return None


# --- Column detection ------------------------------------------------------------------------

# Per contract, accepted column names in priority order. Names are compared by _column_key, so
# "Email Address", "email-address" and "EMAIL_ADDRESS" all match "email_address". The list stays
# conservative: exact names only, never "contains" (no "email_opt_in", "phone_verified").
DETECTED_COLUMN_NAMES: dict[str, tuple[str, ...]] = {
    "EMAIL_SHA256": ("email", "email_address"),
    "PHONE_SHA256": (
        "phone",
        "phone_number",
        "phone_e164",
        "mobile",
        "mobile_phone",
        "mobile_number",
        "mobile_phone_number",
        "cell_phone",
    ),
    "IDFA_SHA256": ("idfa",),
    "GAID_SHA256": ("gaid", "aaid", "adid", "android_advertising_id", "google_advertising_id"),
}
# Fragments that make a column look like an identifier; named in a hint when not detected.
_IDENTIFIER_FRAGMENTS: tuple[str, ...] = ("email", "phone", "mobile", "idfa", "gaid", "aaid")
_NOT_ALPHANUMERIC = re.compile(r"[\W_]+")


def _column_key(name: str) -> str:
    """Lowercased, without anything that is not a letter or digit ("E_mail" -> "email")."""
    return _NOT_ALPHANUMERIC.sub("", name.lower())


_COLUMN_LOOKUP: dict[str, tuple[str, int]] = {
    _column_key(name): (contract, rank)
    for contract, names in DETECTED_COLUMN_NAMES.items()
    for rank, name in enumerate(names)
}


def detect_identifier_columns(property_names: Iterable[str]) -> dict[str, str]:
    """Map contract -> column for the identifier columns found by name.

    Names are compared case- and separator-insensitively (see DETECTED_COLUMN_NAMES). When
    several columns map to one contract, the one earliest in the priority list wins (and, for
    names equal after normalising, the first one given), so the choice is deterministic. The
    column keeps its original spelling. Contracts come back in CONTRACTS order.
    """
    best: dict[str, tuple[int, str]] = {}
    for name in property_names:
        if not isinstance(name, str):
            continue
        hit = _COLUMN_LOOKUP.get(_column_key(name))
        if hit is None:
            continue
        contract, rank = hit
        current = best.get(contract)
        if current is None or rank < current[0]:
            best[contract] = (rank, name)
    return {contract: best[contract][1] for contract in CONTRACTS if contract in best}


def identifier_like_columns(property_names: Iterable[str]) -> list[str]:
    """Columns whose name contains email/phone/mobile/idfa/gaid/aaid but that
    detect_identifier_columns does not use, in the order given, each once (for a hint such as
    "user_email looks like an identifier; map it in `audiences`")."""
    names = [name for name in property_names if isinstance(name, str)]
    used = set(detect_identifier_columns(names).values())
    hints: list[str] = []
    for name in names:
        if name in used or name in hints:
            continue
        key = _column_key(name)
        if any(fragment in key for fragment in _IDENTIFIER_FRAGMENTS):
            hints.append(name)
    return hints
