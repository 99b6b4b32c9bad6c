"""Phone numbers to E.164: strict E.164 as it is, fast paths for written North American and
international numbers, phonenumbers for the rest."""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Callable
from typing import NamedTuple

import phonenumbers

# Explicit ASCII classes: in Python `\d` also matches other scripts' digits, and `$` would accept a
# trailing newline, so every pattern is used with fullmatch().
_E164_RE = re.compile(r"\+[1-9][0-9]{7,14}")
# North American numbers written nationally ("(415) 555-0134", "1-415-555-0134") are the bulk
# of US/CA warehouses; this shortcut gives what phonenumbers gives for them, ~20x faster.
# Their shape, checked without a regex in _formatted_phone: `1?[2-9][0-9]{9}` once the
# separators are dropped.
_NANP_REGIONS = frozenset({"US", "CA"})
# Written international numbers ("+44 20 7946 0958", "+1 415-555-0134"): see _international.

_E164 = phonenumbers.PhoneNumberFormat.E164
_NumberParseException = phonenumbers.NumberParseException


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


def _region(region: str | None) -> str | None:
    # phonenumbers only knows upper-case region codes ("us" fails to parse).
    if region is None:
        return None
    region = region.strip().upper()
    return region or None


def normalize_phone(value: str, region: str | None) -> str | None:
    """Return the phone number in E.164 with '+', or None when it is not a possible number."""
    if not isinstance(value, str):
        return None
    stripped = value.strip()
    return _phone(stripped, _region(region)) if stripped else None
