"""The hot path: encoders resolve every setting once and return a closure called once per
identifier value (millions of times per run), the normalisers inlined."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from target_tiktok_audiences.identifiers.ad_ids import _ZERO_UUID
from target_tiktok_audiences.identifiers.contracts import (
    _ALGORITHM,
    _DIGEST_LENGTH,
    _HASHERS,
    _KIND,
    EMAIL_MODES,
    MAX_VALUE_LENGTH,
    REASON_ALREADY_HASHED,
    REASON_INVALID_AD_ID,
    REASON_INVALID_EMAIL,
    REASON_INVALID_PHONE,
    REASON_NOT_HASHED,
    REASON_TOO_LONG,
    REASON_TRACKING_LIMITED,
    REASON_WRONG_TYPE,
    Rules,
    _require_contract,
)
from target_tiktok_audiences.identifiers.emails import _EMAIL_NORMALIZERS, _EMAIL_RE
from target_tiktok_audiences.identifiers.phones import _E164_RE, _formatted_phone, _region

_HEX_RE = re.compile(r"[0-9a-fA-F]+")
_LOWER_HEX_RE = re.compile(r"[0-9a-f]+")
_DIGEST_LENGTHS: frozenset[int] = frozenset(_DIGEST_LENGTH.values())


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
