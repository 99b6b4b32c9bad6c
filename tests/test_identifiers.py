"""Tests for target_tiktok_audiences.identifiers (pure: no network, no SDK)."""

from __future__ import annotations

import hashlib
import math
import re
import string
from decimal import Decimal
from functools import cache
from typing import Any

import phonenumbers
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from target_tiktok_audiences import identifiers as ids
from target_tiktok_audiences.identifiers import (
    CONTRACT_ALIASES,
    CONTRACTS,
    EMAIL_MODES,
    MAX_VALUE_LENGTH,
    REASON_ALREADY_HASHED,
    REASON_INVALID_AD_ID,
    REASON_INVALID_EMAIL,
    REASON_INVALID_PHONE,
    REASON_INVALID_REMOVE_FLAG,
    REASON_MESSAGES,
    REASON_NOT_HASHED,
    REASON_TOO_LONG,
    REASON_TRACKING_LIMITED,
    REASON_WRONG_TYPE,
    REASONS,
    Rules,
    algorithm_of,
    canonical_contract,
    columns,
    detect_identifier_columns,
    digest,
    identifier_like_columns,
    kind_of,
    make_column_encoder,
    make_encoder,
    normalize_ad_id,
    normalize_email,
    normalize_phone,
    phones,
    remove_flag,
)

# Deterministic and quick; applied per test (not a global profile) so that other test modules keep
# their own Hypothesis settings, and no example database is written into the checkout.
HYPOTHESIS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow],
)

HASH_ON = Rules()
HASH_ON_TIKTOK = Rules(email_normalization="tiktok")
HASH_ON_US = Rules(default_phone_region="US")
HASH_OFF = Rules(hash_identifiers=False)

SHA256_CONTRACTS = tuple(c for c in CONTRACTS if c.endswith("_SHA256"))
MD5_CONTRACTS = tuple(c for c in CONTRACTS if c.endswith("_MD5"))
AD_ID_CONTRACTS = ("IDFA_SHA256", "IDFA_MD5", "GAID_SHA256", "GAID_MD5")

HEX64 = "a" * 64
HEX32 = "b" * 32
ZERO_UUID = "00000000-0000-0000-0000-000000000000"
IDFA = "6d92078a-8246-4ba4-ae5b-76104861e7dc"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- Public test vectors (tiktok-api.md), every one, exact digests ---------------------------

VECTORS = [
    # (contract, rules, input, normalised, digest)
    pytest.param(
        "EMAIL_SHA256", HASH_ON, "janedoe@gmail.com", "janedoe@gmail.com",
        "d6117306485ed0e50afab3ac871e98f81699151f30281527d63ff5f233656c69", id="email-janedoe",
    ),
    pytest.param(
        "EMAIL_SHA256", HASH_ON, "testing@testing.com", "testing@testing.com",
        "584c4423c421df49955759498a71495aba49b8780eb9387dff333b6f0982c777", id="email-testing",
    ),
    pytest.param(
        "EMAIL_SHA256", HASH_ON, "alex@email.com", "alex@email.com",
        "ac0f1baec38a9ef3cfcb56db981df7d9bab2568c7f53ef3776d1c059ec58e72b", id="email-alex",
    ),
    pytest.param(
        "EMAIL_SHA256", HASH_ON_TIKTOK, "Test.User+tag@Testing.com", "testuser@testing.com",
        "2458778dc6906a947a016ee3bef93b57099bb130945b8f717f7d8794beb69bca", id="email-tiktok",
    ),
    pytest.param(
        "PHONE_SHA256", HASH_ON, "+129988776655", "+129988776655",
        "31e78a3bf9ce2b43316f64fe883a531d6266938091e94e2f2480272481163dee", id="phone-e164",
    ),
    pytest.param(
        "PHONE_SHA256", HASH_ON_US, "(415) 555-0134", "+14155550134",
        "e80ac8e3eca883c7344a609f3532e3f70365f5c1facd204f88f5d2c7caebac38", id="phone-us",
    ),
    pytest.param(
        "IDFA_SHA256", HASH_ON, " 6D92078A-8246-4BA4-AE5B-76104861E7DC ", IDFA,
        "31b806b4deec8c4cb1ffb18b9ab4ee1fa82a2b30e1f47902f04d03f5db023376", id="idfa-sha256",
    ),
    pytest.param(
        "IDFA_MD5", HASH_ON, " 6D92078A-8246-4BA4-AE5B-76104861E7DC ", IDFA,
        "0c2074fb86930fc4a2a7bb791240a7d3", id="idfa-md5",
    ),
]  # fmt: skip


def _normalize(contract: str, rules: Rules, value: str) -> str | None:
    kind = kind_of(contract)
    if kind == "email":
        return normalize_email(value, rules.email_normalization)
    if kind == "phone":
        return normalize_phone(value, rules.default_phone_region)
    return normalize_ad_id(value)


@pytest.mark.parametrize(("contract", "rules", "raw", "normalized", "expected"), VECTORS)
def test_public_vectors(
    contract: str, rules: Rules, raw: str, normalized: str, expected: str
) -> None:
    assert _normalize(contract, rules, raw) == normalized
    assert digest(normalized, algorithm_of(contract)) == expected
    assert make_encoder(contract, rules)(raw) == (expected, None)
    # The same digest, sent pre-hashed (upper case too), passes through unchanged.
    off = make_encoder(contract, HASH_OFF)
    assert off(expected) == (expected, None)
    assert off(expected.upper()) == (expected, None)


@pytest.mark.parametrize(
    ("contract", "rules", "raw", "normalized", "expected"),
    [v for v in VECTORS if v.values[0].startswith("IDFA_")],
)
def test_public_vector_gaid_twins(
    contract: str, rules: Rules, raw: str, normalized: str, expected: str
) -> None:
    # GAID/AAID contracts share the IDFA rules: same input, same digest.
    for twin in (contract.replace("IDFA", "GAID"), contract.replace("IDFA", "AAID")):
        assert make_encoder(twin, rules)(raw) == (expected, None)


# --- Contracts -------------------------------------------------------------------------------


def test_contract_constants() -> None:
    assert CONTRACTS == (
        "EMAIL_SHA256", "PHONE_SHA256", "IDFA_SHA256", "IDFA_MD5", "GAID_SHA256", "GAID_MD5",
    )  # fmt: skip
    assert CONTRACT_ALIASES == {"AAID_SHA256": "GAID_SHA256", "AAID_MD5": "GAID_MD5"}
    assert EMAIL_MODES == ("basic", "tiktok")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("EMAIL_SHA256", "EMAIL_SHA256"),
        ("email_sha256", "EMAIL_SHA256"),
        ("Phone_Sha256", "PHONE_SHA256"),
        ("IDFA_MD5", "IDFA_MD5"),
        ("gaid_md5", "GAID_MD5"),
        ("AAID_SHA256", "GAID_SHA256"),
        ("aaid_md5", "GAID_MD5"),
        ("EMAIL_MD5", None),
        ("FIRST_SHA256", None),
        ("MULTIPLE_TYPES", None),
        ("", None),
        ("email", None),
    ],
)
def test_canonical_contract(name: str, expected: str | None) -> None:
    assert canonical_contract(name) == expected


@pytest.mark.parametrize(
    ("contract", "kind", "algorithm"),
    [
        ("EMAIL_SHA256", "email", "sha256"),
        ("PHONE_SHA256", "phone", "sha256"),
        ("IDFA_SHA256", "idfa", "sha256"),
        ("IDFA_MD5", "idfa", "md5"),
        ("GAID_SHA256", "gaid", "sha256"),
        ("GAID_MD5", "gaid", "md5"),
        ("AAID_SHA256", "gaid", "sha256"),
        ("aaid_md5", "gaid", "md5"),
    ],
)
def test_kind_and_algorithm(contract: str, kind: str, algorithm: str) -> None:
    assert kind_of(contract) == kind
    assert algorithm_of(contract) == algorithm


@pytest.mark.parametrize("func", [kind_of, algorithm_of])
def test_unknown_contract_raises(func: Any) -> None:
    with pytest.raises(ValueError, match="unknown identifier contract"):
        func("EMAIL_MD5")


def test_make_encoder_rejects_bad_config() -> None:
    with pytest.raises(ValueError, match="unknown identifier contract"):
        make_encoder("NOPE", HASH_ON)
    with pytest.raises(ValueError, match="email_normalization"):
        make_encoder("EMAIL_SHA256", Rules(email_normalization="gmail"))
    with pytest.raises(ValueError, match="email_normalization"):
        normalize_email("a@b.co", "gmail")
    with pytest.raises(ValueError, match="hash algorithm"):
        digest("x", "sha1")


def test_make_encoder_accepts_alias_and_any_case() -> None:
    assert make_encoder("aaid_sha256", HASH_ON)(IDFA) == (sha256(IDFA), None)


# --- Email -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "basic", "tiktok"),
    [
        ("janedoe@gmail.com", "janedoe@gmail.com", "janedoe@gmail.com"),
        ("  Jane.Doe@Gmail.COM \n", "jane.doe@gmail.com", "janedoe@gmail.com"),
        ("\tJANE@EXAMPLE.ORG\t", "jane@example.org", "jane@example.org"),
        # Dots in the domain are always kept (a peer once removed every dot).
        ("j.d@mail.example.co.uk", "j.d@mail.example.co.uk", "jd@mail.example.co.uk"),
        ("first.last+news@sub.domain.com", "first.last+news@sub.domain.com",
         "firstlast@sub.domain.com"),
        # Only the first '+' matters: everything after it in the local part goes.
        ("a+b+c@x.io", "a+b+c@x.io", "a@x.io"),
        # A '+' in the domain is left untouched, in both modes.
        ("user@do+main.com", "user@do+main.com", "user@do+main.com"),
        ("u.ser@do.main+x.com", "u.ser@do.main+x.com", "user@do.main+x.com"),
        # Non-ASCII is lowercased, not rejected.
        ("ÉLODIE@Exemple.fr", "élodie@exemple.fr", "élodie@exemple.fr"),
        # tiktok mode empties the local part: invalid there, valid in basic mode.
        ("+tag@x.com", "+tag@x.com", None),
        ("...@x.com", "...@x.com", None),
        (".+x@x.com", ".+x@x.com", None),
    ],
)  # fmt: skip
def test_email_modes(raw: str, basic: str | None, tiktok: str | None) -> None:
    assert normalize_email(raw) == basic
    assert normalize_email(raw, "basic") == basic
    assert normalize_email(raw, "tiktok") == tiktok
    for rules, expected in ((HASH_ON, basic), (HASH_ON_TIKTOK, tiktok)):
        want = (sha256(expected), None) if expected else (None, REASON_INVALID_EMAIL)
        assert make_encoder("EMAIL_SHA256", rules)(raw) == want


@pytest.mark.parametrize(
    "raw",
    [
        "plainaddress",  # no @
        "a@b@c.com",  # two @
        "a@@c.com",
        "user@localhost",  # no dot in the domain
        "user@",  # empty domain
        "@example.com",  # empty local part
        "jane doe@example.com",  # inner whitespace
        "jane@exa mple.com",
        "jane@example.com\nx",
        "jane\u00a0doe@example.com",  # non-breaking space is whitespace too
        "jane.doe@example\tcom",
        "\ud800@example.com",  # lone surrogate from JSON: cannot be UTF-8 encoded
    ],
)
def test_invalid_emails(raw: str) -> None:
    for mode in EMAIL_MODES:
        assert normalize_email(raw, mode) is None
        encoder = make_encoder("EMAIL_SHA256", Rules(email_normalization=mode))
        assert encoder(raw) == (None, REASON_INVALID_EMAIL)


# --- Phone -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        # E.164 fast path: taken as is, region irrelevant.
        ("+14155550134", None, "+14155550134"),
        ("  +14155550134  ", "GB", "+14155550134"),
        ("+129988776655", None, "+129988776655"),
        ("+12345678", None, "+12345678"),  # 8 digits: shortest accepted as is
        ("+123456789012345", None, "+123456789012345"),  # 15 digits: longest
        # Formatted international numbers go through phonenumbers.
        ("+1 (415) 555-0134", None, "+14155550134"),
        ("+44 20 7946 0958", None, "+442079460958"),
        ("+44 (0)20 7946 0958", None, "+442079460958"),
        # National numbers with a default region.
        ("(415) 555-0134", "US", "+14155550134"),
        ("415.555.0134", "US", "+14155550134"),
        ("(415) 555-0134", "us", "+14155550134"),  # region case does not matter
        ("020 7946 0958", "GB", "+442079460958"),
        ("030 123456", "DE", "+4930123456"),
        ("٤١٥٥٥٥٠١٣٤", "US", "+14155550134"),  # Arabic-Indic digits
        # Short but real plans (Niue, Saint Helena) survive the parse path.
        ("+683 4002", None, "+6834002"),
        ("+290 22 123", None, "+29022123"),
        # phonenumbers calls these "possible", but the first is beyond E.164's 15-digit cap and
        # the second ("+4900000") would normalise to "+490000": both are invalid.
        ("000000000000000", "DE", None),
        ("000000", "DE", None),
        # National numbers without a region cannot be placed: invalid.
        ("(415) 555-0134", None, None),
        ("4155550134", None, None),
        ("4155550134", "", None),
        # Letters, too short, junk.
        ("abcdefgh", "US", None),
        ("not a phone", "US", None),
        ("12", "US", None),
        ("+1", None, None),
        ("+1234567", None, None),  # 7 digits: not E.164 syntax, not a possible number
        ("+0123456789", None, None),  # country code cannot start with 0
        ("+", None, None),
        ("+14155550134\n", None, "+14155550134"),  # trailing newline is trimmed, not '$'-matched
    ],
)
def test_phones(raw: str, region: str | None, expected: str | None) -> None:
    assert normalize_phone(raw, region) == expected
    encoder = make_encoder("PHONE_SHA256", Rules(default_phone_region=region))
    want = (sha256(expected), None) if expected else (None, REASON_INVALID_PHONE)
    assert encoder(raw) == want


def test_phone_fast_path_skips_phonenumbers(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: object, **__: object) -> None:
        raise AssertionError("phonenumbers.parse must not be called for E.164 input")

    monkeypatch.setattr(phones.phonenumbers, "parse", boom)
    encoder = make_encoder("PHONE_SHA256", HASH_ON)
    assert encoder("+14155550134") == (sha256("+14155550134"), None)
    assert normalize_phone(" +14155550134 ", None) == "+14155550134"


def test_phone_unicode_digits_not_on_fast_path() -> None:
    # `\d` would match these; the fast path must not pass non-ASCII digits through unchanged.
    arabic = "+١٤١٥٥٥٥٠١٣٤"
    assert normalize_phone(arabic, None) == "+14155550134"


# --- Advertising ids -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected", "reason"),
    [
        (IDFA, IDFA, None),
        (IDFA.upper(), IDFA, None),
        (f"  {IDFA.upper()}\t\n", IDFA, None),
        ("38400000-8CF0-11BD-B23E-10B96E40000D", "38400000-8cf0-11bd-b23e-10b96e40000d", None),
        (f"{{{IDFA}}}", None, REASON_INVALID_AD_ID),  # braces
        (IDFA[:-1], None, REASON_INVALID_AD_ID),  # too short
        (IDFA + "0", None, REASON_INVALID_AD_ID),  # too long
        (IDFA.replace("6d", "6g"), None, REASON_INVALID_AD_ID),  # not hex
        ("6d92078a 8246 4ba4 ae5b 76104861e7dc", None, REASON_INVALID_AD_ID),  # spaces for dashes
        ("6d92078a-8246-4ba4-ae5b-76104861e7dc-", None, REASON_INVALID_AD_ID),
        ("6d92078a-8246-4ba4-ae5b-76104861e7dc-0000", None, REASON_INVALID_AD_ID),
        ("not-a-uuid", None, REASON_INVALID_AD_ID),
        ("12345", None, REASON_INVALID_AD_ID),
        # Dashes are required; without them a UUID is 32 hex chars, i.e. looks like an MD5.
        (IDFA.replace("-", ""), None, REASON_ALREADY_HASHED),
        (ZERO_UUID, None, REASON_TRACKING_LIMITED),
    ],
)
def test_ad_ids(raw: str, expected: str | None, reason: str | None) -> None:
    assert normalize_ad_id(raw) == expected
    for contract in AD_ID_CONTRACTS:
        result = make_encoder(contract, HASH_ON)(raw)
        if expected is None:
            assert result == (None, reason)
        else:
            assert result == (digest(expected, algorithm_of(contract)), None)


@pytest.mark.parametrize("contract", AD_ID_CONTRACTS)
@pytest.mark.parametrize("raw", [ZERO_UUID, f" {ZERO_UUID} ", ZERO_UUID.upper()])
def test_all_zero_ad_id_is_tracking_limited(contract: str, raw: str) -> None:
    assert make_encoder(contract, HASH_ON)(raw) == (None, REASON_TRACKING_LIMITED)


# --- Absent values, wrong types, size cap ----------------------------------------------------

ALL_RULES = [
    pytest.param(HASH_ON, id="hash-on"),
    pytest.param(HASH_ON_TIKTOK, id="hash-on-tiktok"),
    pytest.param(HASH_ON_US, id="hash-on-US"),
    pytest.param(HASH_OFF, id="hash-off"),
]


@pytest.mark.parametrize("rules", ALL_RULES)
@pytest.mark.parametrize("contract", CONTRACTS)
@pytest.mark.parametrize("value", [None, "", " ", "\t\n", "\u00a0\u2003"])
def test_absent_values(contract: str, rules: Rules, value: object) -> None:
    assert make_encoder(contract, rules)(value) == (None, None)


@pytest.mark.parametrize("rules", ALL_RULES)
@pytest.mark.parametrize("contract", CONTRACTS)
@pytest.mark.parametrize(
    "value",
    [0, 14155550134, -1, 1.5, float("nan"), float("inf"), True, False, {}, {"email": "a@b.co"},
     [], ["a@b.co"], b"a@b.co"],
    ids=repr,
)  # fmt: skip
def test_wrong_type(contract: str, rules: Rules, value: object) -> None:
    assert make_encoder(contract, rules)(value) == (None, REASON_WRONG_TYPE)


@pytest.mark.parametrize("rules", ALL_RULES)
@pytest.mark.parametrize("contract", CONTRACTS)
def test_too_long(contract: str, rules: Rules) -> None:
    encoder = make_encoder(contract, rules)
    assert encoder("x" * (MAX_VALUE_LENGTH + 1)) == (None, REASON_TOO_LONG)
    assert encoder(" " * (MAX_VALUE_LENGTH + 1)) == (None, REASON_TOO_LONG)  # checked before trim
    assert encoder("a" * 1_000_000 + "@x.com") == (None, REASON_TOO_LONG)
    # At the cap the value is processed normally (and here rejected for its content instead).
    assert encoder("x" * MAX_VALUE_LENGTH)[1] not in (None, REASON_TOO_LONG)


def test_max_value_length_is_generous() -> None:
    assert MAX_VALUE_LENGTH == 4096
    padded = " " * 2000 + "jane@example.com" + " " * 2000
    assert make_encoder("EMAIL_SHA256", HASH_ON)(padded) == (sha256("jane@example.com"), None)


def test_str_subclass_is_a_string() -> None:
    class Text(str):
        pass

    assert make_encoder("EMAIL_SHA256", HASH_ON)(Text("A@B.co")) == (sha256("a@b.co"), None)


# --- Hashing on / off ------------------------------------------------------------------------


@pytest.mark.parametrize("contract", CONTRACTS)
@pytest.mark.parametrize(
    "value",
    [HEX64, HEX32, HEX64.upper(), f"  {HEX32.upper()}  ", sha256("jane@example.com"),
     "12345678901234567890123456789012", IDFA.replace("-", "")],
)  # fmt: skip
def test_hash_on_never_hashes_a_hash(contract: str, value: str) -> None:
    for rules in (HASH_ON, HASH_ON_TIKTOK, HASH_ON_US):
        assert make_encoder(contract, rules)(value) == (None, REASON_ALREADY_HASHED)


@pytest.mark.parametrize("contract", CONTRACTS)
def test_hash_on_near_digest_lengths_are_not_already_hashed(contract: str) -> None:
    encoder = make_encoder(contract, HASH_ON)
    for value in ("a" * 31, "a" * 33, "a" * 63, "a" * 65, "g" * 64, "z" * 32):
        assert encoder(value)[1] not in (REASON_ALREADY_HASHED, None)


@pytest.mark.parametrize("contract", SHA256_CONTRACTS)
def test_hash_off_sha256(contract: str) -> None:
    encoder = make_encoder(contract, HASH_OFF)
    good = sha256("jane@example.com")
    assert encoder(good) == (good, None)
    assert encoder(good.upper()) == (good, None)
    assert encoder(f"  {good}\n") == (good, None)
    assert encoder(HEX32) == (None, REASON_NOT_HASHED)  # an MD5 for a SHA-256 contract
    assert encoder("jane@example.com") == (None, REASON_NOT_HASHED)
    assert encoder("+14155550134") == (None, REASON_NOT_HASHED)
    assert encoder(IDFA) == (None, REASON_NOT_HASHED)
    assert encoder("g" * 64) == (None, REASON_NOT_HASHED)
    assert encoder(good[:-1]) == (None, REASON_NOT_HASHED)
    assert encoder(good + "0") == (None, REASON_NOT_HASHED)


@pytest.mark.parametrize("contract", MD5_CONTRACTS)
def test_hash_off_md5(contract: str) -> None:
    encoder = make_encoder(contract, HASH_OFF)
    good = hashlib.md5(IDFA.encode()).hexdigest()
    assert encoder(good) == (good, None)
    assert encoder(good.upper()) == (good, None)
    assert encoder(HEX64) == (None, REASON_NOT_HASHED)  # a SHA-256 for an MD5 contract
    assert encoder(IDFA) == (None, REASON_NOT_HASHED)
    assert encoder(IDFA.replace("-", "").replace("6d", "zz")) == (None, REASON_NOT_HASHED)


def test_hash_off_ignores_normalisation_rules() -> None:
    # Pre-hashed input is passed on, whatever the email mode or phone region.
    for rules in (
        Rules(hash_identifiers=False, email_normalization="tiktok"),
        Rules(hash_identifiers=False, default_phone_region="US"),
    ):
        assert make_encoder("EMAIL_SHA256", rules)(HEX64) == (HEX64, None)
        assert make_encoder("PHONE_SHA256", rules)(HEX64) == (HEX64, None)


# --- Messages --------------------------------------------------------------------------------


def test_reason_constants() -> None:
    assert (
        REASON_WRONG_TYPE, REASON_INVALID_EMAIL, REASON_INVALID_PHONE, REASON_INVALID_AD_ID,
        REASON_TRACKING_LIMITED, REASON_ALREADY_HASHED, REASON_NOT_HASHED, REASON_TOO_LONG,
        REASON_INVALID_REMOVE_FLAG,
    ) == (
        "wrong_type", "invalid_email", "invalid_phone", "invalid_ad_id", "tracking_limited",
        "already_hashed", "not_hashed", "too_long", "invalid_remove_flag",
    )  # fmt: skip
    assert set(REASONS) == set(REASON_MESSAGES)
    assert len(REASONS) == 9


@pytest.mark.parametrize(
    ("reason", "text"),
    [
        (REASON_WRONG_TYPE, "the value for EMAIL_SHA256 is not a string"),
        (REASON_INVALID_EMAIL, "the value for EMAIL_SHA256 is not a valid email address"),
        (REASON_INVALID_PHONE, "the value for EMAIL_SHA256 is not a valid phone number"),
        (REASON_INVALID_AD_ID, "the value for EMAIL_SHA256 is not a valid advertising id (UUID)"),
        (
            REASON_TRACKING_LIMITED,
            "the value for EMAIL_SHA256 is the all-zero advertising id (tracking limited)",
        ),
        (REASON_ALREADY_HASHED, "the value for EMAIL_SHA256 appears to already be hashed"),
        (
            REASON_NOT_HASHED,
            "hashing is disabled but the value for EMAIL_SHA256 appears to be unhashed",
        ),
        (REASON_TOO_LONG, "the value for EMAIL_SHA256 is longer than 4096 characters"),
        (
            REASON_INVALID_REMOVE_FLAG,
            "the remove flag of a record with EMAIL_SHA256 is not true/t/yes/y/1, "
            "false/f/no/n/0, a number, empty or null",
        ),
    ],
)
def test_reason_messages(reason: str, text: str) -> None:
    assert REASON_MESSAGES[reason].format(contract="EMAIL_SHA256") == text


def test_reason_messages_never_hold_a_value_placeholder() -> None:
    for message in REASON_MESSAGES.values():
        fields = set(re.findall(r"\{(\w*)\}", message))
        assert fields == {"contract"}


# --- Column detection ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        ([], {}),
        (["id", "name", "created_at"], {}),
        (["email"], {"EMAIL_SHA256": "email"}),
        (["Email_Address"], {"EMAIL_SHA256": "Email_Address"}),
        # Priority order wins over the order of the columns.
        (["email_address", "EMAIL"], {"EMAIL_SHA256": "EMAIL"}),
        (["mobile", "phone_number", "Phone"], {"PHONE_SHA256": "Phone"}),
        (["mobile", "phone_number"], {"PHONE_SHA256": "phone_number"}),
        (["Mobile"], {"PHONE_SHA256": "Mobile"}),
        (["IDFA"], {"IDFA_SHA256": "IDFA"}),
        (["android_advertising_id", "adid", "aaid", "GAID"], {"GAID_SHA256": "GAID"}),
        (["android_advertising_id", "adid", "aaid"], {"GAID_SHA256": "aaid"}),
        (["android_advertising_id", "AdId"], {"GAID_SHA256": "AdId"}),
        # Same name in two spellings: the first one given.
        (["Email", "EMAIL", "email"], {"EMAIL_SHA256": "Email"}),
        (["E_mail", "e-mail", "email "], {"EMAIL_SHA256": "E_mail"}),
        # Case and separators do not matter (issue 12): each of these is found.
        (["Email Address"], {"EMAIL_SHA256": "Email Address"}),
        (["email-address"], {"EMAIL_SHA256": "email-address"}),
        (["E_mail"], {"EMAIL_SHA256": "E_mail"}),
        (["EMAIL"], {"EMAIL_SHA256": "EMAIL"}),
        (["emailAddress"], {"EMAIL_SHA256": "emailAddress"}),
        (["phone_e164"], {"PHONE_SHA256": "phone_e164"}),
        (["Phone E.164"], {"PHONE_SHA256": "Phone E.164"}),
        (["mobile_phone"], {"PHONE_SHA256": "mobile_phone"}),
        (["Mobile Number"], {"PHONE_SHA256": "Mobile Number"}),
        (["Phone Number"], {"PHONE_SHA256": "Phone Number"}),
        (["cell-phone"], {"PHONE_SHA256": "cell-phone"}),
        (["IDFA"], {"IDFA_SHA256": "IDFA"}),
        (["android-advertising-id"], {"GAID_SHA256": "android-advertising-id"}),
        (["Google Advertising ID"], {"GAID_SHA256": "Google Advertising ID"}),
        # Priority holds across spellings: "phone" before "phone_number" before "mobile".
        (["Mobile", "PHONE-NUMBER", "Phone_E164"], {"PHONE_SHA256": "PHONE-NUMBER"}),
        (["mobile_phone", "Mobile"], {"PHONE_SHA256": "Mobile"}),
        # No fuzzy matching: a name that merely contains an identifier word is not one.
        (["user_email", "email_opt_in", "phone_verified", "phone1", "idfv", "mobile_os",
          "has_idfa", "gaid_hash", "mail", "cell", "advertising_id", "telephone"], {}),
        (
            ["user_id", "MOBILE", "idfa", "Email", "gaid", "_sdc_deleted_at"],
            {"EMAIL_SHA256": "Email", "PHONE_SHA256": "MOBILE", "IDFA_SHA256": "idfa",
             "GAID_SHA256": "gaid"},
        ),
    ],
)  # fmt: skip
def test_detect_identifier_columns(columns: list[str], expected: dict[str, str]) -> None:
    result = detect_identifier_columns(columns)
    assert result == expected
    assert list(result) == [c for c in CONTRACTS if c in result]  # deterministic order
    assert detect_identifier_columns(iter(columns)) == expected  # any iterable, one pass


def test_detected_names_are_distinct_after_normalising() -> None:
    # Two listed names that normalise alike would make the priority order ambiguous.
    keys = [columns._column_key(n) for names in ids.DETECTED_COLUMN_NAMES.values() for n in names]
    assert len(keys) == len(set(keys))
    assert columns._column_key("E-Mail Address") == "emailaddress"
    assert columns._column_key("Phone (E.164)") == "phonee164"


def test_detect_identifier_columns_skips_non_strings() -> None:
    assert detect_identifier_columns([None, 3, "email"]) == {"EMAIL_SHA256": "email"}  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        ([], []),
        (["id", "email", "phone", "idfa", "gaid"], []),
        # Detected columns are not hints; look-alikes are, in the order given.
        (["email", "user_email", "Phone_Verified", "id", "EMAIL_OPT_IN"],
         ["user_email", "Phone_Verified", "EMAIL_OPT_IN"]),
        # No detected column at all: every look-alike is named.
        (["contact-email", "mobile_os", "has_IDFA", "gaid_md5", "AAID hash", "name"],
         ["contact-email", "mobile_os", "has_IDFA", "gaid_md5", "AAID hash"]),
        # Two columns for one contract: the one not chosen is a hint.
        (["Email Address", "email"], ["Email Address"]),
        (["mobile", "phone"], ["mobile"]),
        # Repeated names are named once; "adid"/"cell" alone are not identifier fragments.
        (["user_email", "user_email", "adid_x", "cell", "telephone"], ["user_email", "telephone"]),
    ],
)  # fmt: skip
def test_identifier_like_columns(columns: list[str], expected: list[str]) -> None:
    assert identifier_like_columns(columns) == expected
    assert identifier_like_columns(iter(columns)) == expected  # any iterable, one pass


def test_detect_identifier_columns_is_order_independent() -> None:
    columns = ["mobile", "Email_Address", "phone", "email", "adid", "GAID"]
    assert detect_identifier_columns(columns) == detect_identifier_columns(reversed(columns))


# --- Remove flag -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [True, 1, -1, 2, 10**20, 0.5, -3.0, 1e-300, Decimal("1"), Decimal("-0.01"),
     "true", "TRUE", " True ", "t", "T", "yes", "YES", "y", "Y", "1", " 1\n", "\tyes\t"],
)  # fmt: skip
def test_remove_flag_remove(value: object) -> None:
    assert remove_flag(value) is True


@pytest.mark.parametrize(
    "value",
    [None, False, 0, 0.0, -0.0, Decimal("0"), Decimal("0.000"),
     "false", "FALSE", " False ", "f", "F", "no", "No", "n", "N", "0", " 0 ", "", " ", "\t\n"],
)  # fmt: skip
def test_remove_flag_keep(value: object) -> None:
    assert remove_flag(value) is False


@pytest.mark.parametrize(
    "value",
    ["2", "-1", "1.0", "0.0", "maybe", "truthy", "yes please", "on", "off", "none", "null",
     "ja", "t r u e", "tr ue", "\u0661",  # Arabic-Indic one: not the string "1"
     math.nan, math.inf, -math.inf, Decimal("NaN"), Decimal("sNaN"), Decimal("Infinity"),
     [], [True], {}, {"remove": True}, (), b"1", object()],
)  # fmt: skip
def test_remove_flag_invalid(value: object) -> None:
    assert remove_flag(value) is None


@HYPOTHESIS
@given(value=st.text(max_size=8))
def test_remove_flag_strings(value: str) -> None:
    word = value.strip().lower()
    if word in ("true", "t", "yes", "y", "1"):
        assert remove_flag(value) is True
    elif word in ("false", "f", "no", "n", "0", ""):
        assert remove_flag(value) is False
    else:
        assert remove_flag(value) is None


@HYPOTHESIS
@given(value=st.integers() | st.floats())
def test_remove_flag_numbers(value: float) -> None:
    if math.isnan(value) or math.isinf(value):
        assert remove_flag(value) is None
    else:
        assert remove_flag(value) is (value != 0)


# --- Property tests --------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=8,
)

ENCODERS = [
    (contract, rules, make_encoder(contract, rules))
    for contract in (*CONTRACTS, *CONTRACT_ALIASES)
    for rules in (HASH_ON, HASH_ON_TIKTOK, HASH_ON_US, HASH_OFF)
]
_LOWER_HEX = re.compile(r"[0-9a-f]+")
_ALL_REASONS = frozenset(REASONS)


def _check_result(contract: str, rules: Rules, result: object) -> None:
    assert isinstance(result, tuple)
    assert len(result) == 2
    value, reason = result
    if value is None:
        assert reason is None or reason in _ALL_REASONS
        return
    assert reason is None
    assert isinstance(value, str)
    assert _LOWER_HEX.fullmatch(value), "a success is always lowercase hex"
    assert len(value) == (64 if algorithm_of(contract) == "sha256" else 32)


@HYPOTHESIS
@given(value=json_values)
def test_encoders_never_raise_on_any_json(value: object) -> None:
    for contract, rules, encoder in ENCODERS:
        _check_result(contract, rules, encoder(value))


@HYPOTHESIS
@given(value=st.text(st.characters(codec=None), max_size=80))
def test_encoders_never_raise_on_any_text(value: str) -> None:
    # Includes lone surrogates, which json.loads can produce from "\ud800".
    for contract, rules, encoder in ENCODERS:
        _check_result(contract, rules, encoder(value))


# Plausible values: realistic shapes with noise in case, whitespace and formatting.
_local_chars = string.ascii_letters + string.digits + "._+-"
plausible_emails = (
    st.builds(
        lambda pad1, local, domain, tld, pad2: f"{pad1}{local}@{domain}.{tld}{pad2}",
        st.sampled_from(["", " ", "\t", "  "]),
        st.text(_local_chars, min_size=1, max_size=20),
        st.text(string.ascii_letters + string.digits + "-.+", min_size=1, max_size=15),
        st.text(string.ascii_letters, min_size=2, max_size=6),
        st.sampled_from(["", " ", "\n"]),
    )
    | st.emails()
)

_REGIONS = [None, "US", "GB", "DE", "FR", "IN", "BR", "JP", "AU", "IT"]
plausible_phones = st.builds(
    lambda prefix, digits, seps: prefix + "".join(map("".join, zip(digits, seps, strict=False))),
    st.sampled_from(["", "+", "+1 ", "+44 ", "0", "00", "(", " +"]),
    st.text(string.digits, min_size=3, max_size=17),
    st.lists(st.sampled_from(["", "", "", " ", "-", ".", ")"]), min_size=17, max_size=17),
)

plausible_ad_ids = st.builds(
    lambda uuid, upper, pad: f"{pad}{str(uuid).upper() if upper else uuid}{pad}",
    st.uuids(),
    st.booleans(),
    st.sampled_from(["", " ", "\t"]),
) | st.just(ZERO_UUID)


@HYPOTHESIS
@given(value=st.text(max_size=60) | plausible_emails, mode=st.sampled_from(EMAIL_MODES))
def test_email_normalisation_is_idempotent(value: str, mode: str) -> None:
    once = normalize_email(value, mode)
    if once is not None:
        assert normalize_email(once, mode) == once
        assert once == once.strip()
        assert once.count("@") == 1
        if mode == "tiktok":
            local, domain = once.split("@")
            assert "." not in local and "+" not in local
            assert domain == value.strip().lower().split("@")[1]  # domain never changed


@HYPOTHESIS
@given(value=plausible_emails)
def test_plausible_emails_encode_to_sha256(value: str) -> None:
    for rules in (HASH_ON, HASH_ON_TIKTOK):
        result = make_encoder("EMAIL_SHA256", rules)(value)
        normalized = normalize_email(value, rules.email_normalization)
        if normalized is None:
            assert result == (None, REASON_INVALID_EMAIL)
        else:
            assert result == (sha256(normalized), None)


@HYPOTHESIS
@given(
    value=st.text(max_size=30) | plausible_phones,
    region=st.sampled_from(_REGIONS),
)
def test_phone_normalisation_is_idempotent(value: str, region: str | None) -> None:
    once = normalize_phone(value, region)
    if once is not None:
        assert once.startswith("+")
        assert once[1:].isdigit() and once.isascii()
        assert normalize_phone(once, region) == once
        assert normalize_phone(once, None) == once  # E.164 needs no region


@HYPOTHESIS
@given(value=plausible_phones, region=st.sampled_from(_REGIONS))
def test_plausible_phones_encode(value: str, region: str | None) -> None:
    result = make_encoder("PHONE_SHA256", Rules(default_phone_region=region))(value)
    normalized = normalize_phone(value, region)
    if normalized is None:
        assert result[0] is None and result[1] in (REASON_INVALID_PHONE, REASON_ALREADY_HASHED)
    else:
        assert result == (sha256(normalized), None)


@HYPOTHESIS
@given(value=st.text(max_size=45) | plausible_ad_ids)
def test_ad_id_normalisation_is_idempotent(value: str) -> None:
    once = normalize_ad_id(value)
    if once is not None:
        assert normalize_ad_id(once) == once
        assert once == once.lower() and len(once) == 36 and once != ZERO_UUID


@HYPOTHESIS
@given(value=plausible_ad_ids)
def test_plausible_ad_ids_encode(value: str) -> None:
    for contract in AD_ID_CONTRACTS:
        result = make_encoder(contract, HASH_ON)(value)
        if value.strip() == ZERO_UUID:
            assert result == (None, REASON_TRACKING_LIMITED)
        else:
            expected = digest(value.strip().lower(), algorithm_of(contract))
            assert result == (expected, None)
            _check_result(contract, HASH_ON, result)


@HYPOTHESIS
@given(
    value=st.text(max_size=40) | plausible_emails | plausible_phones | plausible_ad_ids,
    contract=st.sampled_from(CONTRACTS),
)
def test_successful_digest_matches_normalised_value(value: str, contract: str) -> None:
    rules = Rules(email_normalization="tiktok", default_phone_region="US")
    result = make_encoder(contract, rules)(value)
    _check_result(contract, rules, result)
    if result[0] is not None:
        normalized = _normalize(contract, rules, value)
        assert normalized is not None
        assert result[0] == digest(normalized, algorithm_of(contract))


@HYPOTHESIS
@given(
    raw=st.binary(min_size=16, max_size=16) | st.binary(min_size=32, max_size=32),
    upper=st.booleans(),
    contract=st.sampled_from(CONTRACTS),
)
def test_hash_off_accepts_exactly_matching_digests(raw: bytes, upper: bool, contract: str) -> None:
    hexed = raw.hex().upper() if upper else raw.hex()
    result = make_encoder(contract, HASH_OFF)(hexed)
    if len(hexed) == (64 if algorithm_of(contract) == "sha256" else 32):
        assert result == (hexed.lower(), None)
    else:
        assert result == (None, REASON_NOT_HASHED)
    # With hashing on, the same value is never hashed again.
    assert make_encoder(contract, HASH_ON)(hexed) == (None, REASON_ALREADY_HASHED)


# --- The North American shortcut agrees with phonenumbers ------------------------------------

_nanp_values = st.builds(
    lambda one, area, rest, style: style.format(one=one, a=area, r=rest[:3], s=rest[3:]),
    st.sampled_from(["", "1", "1 ", "1-"]),
    st.from_regex(r"[0-9]{3}", fullmatch=True),
    st.from_regex(r"[0-9]{7}", fullmatch=True),
    st.sampled_from(
        [
            "{one}({a}) {r}-{s}",
            "{one}{a}{r}{s}",
            "{one}{a}.{r}.{s}",
            "{one}{a}-{r}-{s}",
            "{one}{a} {r} {s}",
            "({a}){r}-{s}",
        ]
    ),
)


def _phonenumbers_only(value: str, region: str | None) -> str | None:
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@settings(max_examples=400, derandomize=True, database=None, deadline=None)
@given(_nanp_values, st.sampled_from(["US", "CA"]))
def test_nanp_shortcut_gives_what_phonenumbers_gives(value: str, region: str) -> None:
    assert normalize_phone(value, region) == _phonenumbers_only(value, region)


# --- The international fast path agrees with phonenumbers ------------------------------------
#
# phones._international answers for "+<digits>" written with " ().-" separators and otherwise says
# _UNSURE (phonenumbers decides). Wherever it answers it must give what phonenumbers gives
# (parse, is_possible_number, format E.164), whatever the default region.

_FAST_PATH_REGIONS = [None, "US", "GB", "DE", "IN", "BR", "AR"]


@cache
def _example_numbers() -> tuple[str, ...]:
    """Every example number phonenumbers has, in E.164: each region and number type, every
    non-geographic entity, and each region's invalid example."""
    numbers: list[phonenumbers.PhoneNumber] = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for number_type in phonenumbers.PhoneNumberType.values():
            numbers.append(phonenumbers.example_number_for_type(region, number_type))
        numbers.append(phonenumbers.invalid_example_number(region))
    for code in sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS):
        numbers.append(phonenumbers.example_number_for_non_geo_entity(code))
    e164 = phonenumbers.PhoneNumberFormat.E164
    return tuple(sorted({phonenumbers.format_number(n, e164) for n in numbers if n is not None}))


def _assert_fast_path_agrees(value: str) -> bool:
    """True when the fast path answered (and agreed with phonenumbers for every region)."""
    fast = phones._international(value)
    if fast is phones._UNSURE:
        return False
    for region in _FAST_PATH_REGIONS:
        assert fast == _phonenumbers_only(value, region), (value, region)
        if phones._E164_RE.fullmatch(value) is None:  # strict E.164 is taken as is, by design
            assert normalize_phone(value, region) == fast
    return True


def test_fast_path_on_every_example_number_written_internationally() -> None:
    examples = _example_numbers()
    assert len(examples) > 1000  # every region, every type
    international = phonenumbers.PhoneNumberFormat.INTERNATIONAL
    answered = 0
    for e164 in examples:
        written = phonenumbers.format_number(phonenumbers.parse(e164), international)
        answered += _assert_fast_path_agrees(written)
        # The same digits, grouped "+CC rest" and with dashes instead of spaces.
        answered += _assert_fast_path_agrees(written.replace(" ", "-"))
    # Nearly all take the fast path; only numbers with a national-prefix look-alike do not.
    assert answered >= 0.9 * 2 * len(examples)


def test_fast_path_on_every_example_number_written_with_its_national_prefix() -> None:
    # "+44 (0)20 7946 0958": people keep the national prefix; phonenumbers' parse strips it
    # when its rules allow, and the fast path must do exactly that, or leave it to parse.
    answered = tried = 0
    for e164 in _example_numbers():
        number = phonenumbers.parse(e164)
        region = phonenumbers.region_code_for_country_code(number.country_code)
        metadata = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(
            number.country_code, region
        )
        prefix = metadata.national_prefix if metadata is not None else None
        if not prefix:
            continue
        national = phonenumbers.national_significant_number(number)
        for written in (
            f"+{number.country_code} ({prefix}){national}",
            f"+{number.country_code} {prefix}{national}",
        ):
            tried += 1
            answered += _assert_fast_path_agrees(written)
    assert tried > 1000
    assert answered >= 0.9 * tried  # only transform rules and short plans go to parse


_SEPARATORS = ["", "", "", " ", "-", ".", "(", ")", " (", ") ", "  "]


def _spread(digits: str, seps: list[str]) -> str:
    return "".join(d + s for d, s in zip(digits, seps + [""] * len(digits), strict=False))


@settings(max_examples=600, derandomize=True, database=None, deadline=None)
@given(
    index=st.integers(min_value=0),
    cut=st.integers(min_value=-4, max_value=4),
    extra=st.text(string.digits, max_size=4),
    lead=st.sampled_from(["", " ", "(", " ("]),
    seps=st.lists(st.sampled_from(_SEPARATORS), max_size=20),
)
def test_fast_path_on_example_numbers_with_random_separators(
    index: int, cut: int, extra: str, lead: str, seps: list[str]
) -> None:
    # Example digits, some shortened or lengthened (impossible lengths too), random separators.
    examples = _example_numbers()
    digits = examples[index % len(examples)][1:]
    digits = digits[:cut] + extra if cut < 0 else digits + extra
    _assert_fast_path_agrees("+" + lead + _spread(digits, seps))


@settings(max_examples=600, derandomize=True, database=None, deadline=None)
@given(
    code=st.sampled_from(sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)),
    national=st.text(string.digits, min_size=1, max_size=15),
    seps=st.lists(st.sampled_from(_SEPARATORS), max_size=20),
)
def test_fast_path_on_random_national_numbers(code: int, national: str, seps: list[str]) -> None:
    # Any calling code, any digits: national-prefix look-alikes ("+44 0...", "+55 0..."),
    # leading zeros (Italy), every length from too short to too long.
    _assert_fast_path_agrees("+" + _spread(f"{code}{national}", seps))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("+44 20 7946 0958", "+442079460958"),
        ("+1 415-555-0134", "+14155550134"),
        ("+1 (415) 555-0134", "+14155550134"),
        ("+49 30 12345678", "+493012345678"),
        ("+61 2 9374 4000", "+61293744000"),
        ("+39 06 1234 5678", "+390612345678"),  # Italy keeps its leading zero
        ("+33 1.23.45.67.89", "+33123456789"),
        ("+ 81 3-1234-5678", "+81312345678"),
        # the national prefix kept in the number: stripped as phonenumbers' parse strips it
        ("+44 (0)20 7946 0958", "+442079460958"),
        ("+44 020 7946 0958", "+442079460958"),
        ("+49 (0)30 12345678", "+493012345678"),
        ("+33 (0)1 23 45 67 89", "+33123456789"),
        ("+55 0 11 91234 5678", "+5511912345678"),  # Brazil: a transform rule, not applied here
        ("+44 20 7946 0958 1", None),  # impossible length for GB: rejected without phonenumbers
        ("+1 415 555 01", None),
    ],
)
def test_fast_path_answers_without_phonenumbers(
    value: str, expected: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:

    def boom(*_: object, **__: object) -> None:
        raise AssertionError("phonenumbers.parse must not be called on the fast path")

    monkeypatch.setattr(phones.phonenumbers, "parse", boom)
    assert normalize_phone(value, "US") == expected
    want = (sha256(expected), None) if expected else (None, REASON_INVALID_PHONE)
    assert make_encoder("PHONE_SHA256", HASH_ON_US)(value) == want


@pytest.mark.parametrize(
    "value",
    [
        "+55 0 15 11 91234 5678",  # a carrier code: Brazil's transform rule rewrites it
        "+378 81 23 45",  # San Marino's transform rule makes it 0549 81 23 45
        "+241 0 11 44 55 66",  # Gabon's keeps what its prefix pattern captured
        "+1 415 555 0134 ext. 12",  # extension
        "+1-800-FLOWERS",  # letters (vanity number)
        "++44 20 7946 0958",
        "+44/20 7946 0958",
        "+\uff1044 20 7946 0958",  # full-width digit
        "+44 20 7946 0958 #",
        "+0 415 555 0134",  # no country code starts with 0
        "+999 123 456 789",  # no such country code
        "+1 2",  # too short for the E.164 range
        "+683 4002",  # Niue: a real short plan, left to the slow path
    ],
)
def test_fast_path_leaves_unsure_values_to_phonenumbers(value: str) -> None:
    assert phones._international(value) is phones._UNSURE


# The shapes the phone fast paths accept, as patterns: _international and the NANP shortcut
# check them without a regex (issue 21) and must accept exactly these.
_INTERNATIONAL_SHAPE = re.compile(r"\+[0-9 ().\-]{8,60}")
_NANP_SHAPE = re.compile(r"1?([2-9][0-9]{9})")
_SHAPE_CHARS = "+0123456789 ().-\t/x\u0663\uff11"


@HYPOTHESIS
@given(
    value=st.text(_SHAPE_CHARS, max_size=70)
    | st.builds(lambda v: "+" + v, st.text(_SHAPE_CHARS, min_size=7, max_size=62))
    | st.builds(lambda v: "1" * (v % 2) + "2" + "0" * 9, st.integers(0, 1))
)
def test_the_phone_fast_paths_take_exactly_their_shapes(value: str) -> None:
    looked_up: list[str] = []
    parsed: list[str] = []

    class CallingCodes(dict[str, tuple[int, int]]):
        def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
            looked_up.append(key)
            return super().get(key, default)

    with pytest.MonkeyPatch.context() as monkey:
        # Past the shape (and E.164's length) _international looks the calling code up.
        monkey.setattr(phones, "_CALLING_CODES", CallingCodes(phones._CALLING_CODES))
        monkey.setattr(phones, "_parsed_phone", lambda v, r: parsed.append(v))
        international = phones._international(value)
        nanp = phones._formatted_phone(value, "US") if value and value[0] != "+" else None
    shape = _INTERNATIONAL_SHAPE.fullmatch(value) is not None
    e164 = "+" + re.sub(r"[ ().\-]", "", value[1:])
    assert bool(looked_up) == (shape and 9 <= len(e164) <= 16)
    if not shape:
        assert international is phones._UNSURE
    if value and value[0] != "+":
        want = _NANP_SHAPE.fullmatch(re.sub(r"[ ().\-]", "", value))
        if want is not None:
            assert nanp == "+1" + want.group(1) and not parsed
        else:
            assert parsed == [value]


# --- The encoder against the public normalisers (issue 21) -----------------------------------


def _reference_encoder(contract: str, rules: Rules) -> Any:
    """make_encoder as design.md states it, from the public normalisers and digest(): the
    encoder inlines the common normalisers, and must give exactly this."""
    kind, algorithm = kind_of(contract), algorithm_of(contract)

    def encode(value: object) -> tuple[str | None, str | None]:
        if not isinstance(value, str):
            return (None, None) if value is None else (None, REASON_WRONG_TYPE)
        if len(value) > MAX_VALUE_LENGTH:
            return (None, REASON_TOO_LONG)
        stripped = value.strip()
        if not stripped:
            return (None, None)
        if len(stripped) in (32, 64) and re.fullmatch("[0-9a-fA-F]+", stripped):
            return (None, REASON_ALREADY_HASHED)
        if kind == "email":
            normalized = normalize_email(stripped, rules.email_normalization)
            reason = REASON_INVALID_EMAIL
        elif kind == "phone":
            normalized = normalize_phone(stripped, rules.default_phone_region)
            reason = REASON_INVALID_PHONE
        else:
            normalized = normalize_ad_id(stripped)
            zero = stripped.lower() == ZERO_UUID
            reason = REASON_TRACKING_LIMITED if zero else REASON_INVALID_AD_ID
        return (None, reason) if normalized is None else (digest(normalized, algorithm), None)

    return encode


# UUIDs with one character replaced, dropped or added: the encoder checks ad ids on bytes.
near_ad_ids = st.builds(
    lambda uuid, at, char, how: (
        uuid[:at] + char + uuid[at + 1 :]
        if how == 0
        else uuid[:at] + uuid[at + 1 :]
        if how == 1
        else uuid[:at] + char + uuid[at:]
    ),
    st.uuids().map(str) | st.just(ZERO_UUID),
    st.integers(0, 35),
    st.sampled_from(["-", "0", "a", "f", "g", "A", " ", "é", "\u212a", "\ud800", "\x00"]),
    st.integers(0, 2),
)

_HASHED_ENCODERS = [
    (make_encoder(contract, rules), _reference_encoder(contract, rules))
    for contract in CONTRACTS
    for rules in (HASH_ON, HASH_ON_TIKTOK, HASH_ON_US, Rules(default_phone_region="GB"))
]
# Values on every branch: absent, wrong type, too long, already hashed, each kind's valid and
# invalid shapes, non-ASCII and lone surrogates.
_EDGE_VALUES: list[object] = [
    None, "", "   ", 5, 1.5, True, [], {}, "x" * (MAX_VALUE_LENGTH + 1),
    " " * MAX_VALUE_LENGTH + "a@b.co", HEX64, HEX64.upper(), "a" * 32, ZERO_UUID,
    f" {ZERO_UUID.upper()} ", IDFA, IDFA.upper(), "a@b.co", "Ana@Example.COM", "é@exämple.com",
    "\ud800@example.com", "a.b+c@example.com", "+14155550134", "(415) 555-0134",
    "+44 20 7946 0958", "+44 (0)20 7946 0958", "n/a", "+١٤١٥٥٥٥٠١٣٤",
    # ad ids near the pattern: a dash moved, one too many or few, a non-hex letter, non-ASCII
    "6d92078a8-246-4ba4-ae5b-76104861e7dc", "6d92078a-8246-4ba4-ae5b-76104861e7d-",
    "6d92078a-8246-4ba4-ae5b-76104861e7dcc", "6d92078a-8246-4ba4-ae5b76104861e7dc",
    "6d92078g-8246-4ba4-ae5b-76104861e7dc", "6d92078\u212a-8246-4ba4-ae5b-76104861e7dc",
    "6d92078é-8246-4ba4-ae5b-76104861e7d", "6d92078\ud800-8246-4ba4-ae5b-76104861e7dc",
    "-------------------------------------", "{6d92078a-8246-4ba4-ae5b-76104861e7dc}",
    # hex digits only, 32 or 64 long: digits (a phone's characters) and a-f, any case
    "1" * 32, "4" * 64, " +" + "1" * 32, "AbCdEf0123456789" * 2, "ab@cd" + "0" * 27,
]  # fmt: skip


@pytest.mark.parametrize("value", _EDGE_VALUES, ids=range(len(_EDGE_VALUES)))
def test_the_encoder_equals_the_public_normalisers_on_every_branch(value: object) -> None:
    for fast, reference in _HASHED_ENCODERS:
        assert fast(value) == reference(value)


@HYPOTHESIS
@given(
    value=json_values
    | st.text(st.characters(codec=None), max_size=80)
    | plausible_emails
    | plausible_phones
    | plausible_ad_ids
    | near_ad_ids
)
def test_the_encoder_equals_the_public_normalisers(value: object) -> None:
    for fast, reference in _HASHED_ENCODERS:
        assert fast(value) == reference(value)


_COLUMN_ENCODERS = [
    (make_column_encoder(contract, rules), _reference_encoder(contract, rules))
    for contract in CONTRACTS
    for rules in (HASH_ON, HASH_ON_TIKTOK, HASH_ON_US, Rules(default_phone_region="GB"))
]


def _by_value(column: Any, values: list[object]) -> list[tuple[str | None, str | None]]:
    """A column encoder's answers as (digest, reason) per value."""
    digests, rejected = column(values)
    assert len(digests) == len(values)
    assert all(digests[i] is None for i in rejected)  # a rejected value has no digest
    return [(d, None) if d is not None else (None, rejected.get(i)) for i, d in enumerate(digests)]


def test_a_column_encoder_answers_each_value_as_the_public_normalisers_do() -> None:
    for column, reference in _COLUMN_ENCODERS:
        assert _by_value(column, _EDGE_VALUES) == [reference(v) for v in _EDGE_VALUES]
        assert _by_value(column, []) == []
    for contract in CONTRACTS:  # hash_identifiers off: the value checked as a digest
        column, one = make_column_encoder(contract, HASH_OFF), make_encoder(contract, HASH_OFF)
        values = [*_EDGE_VALUES, HEX32, HEX32.upper(), f" {HEX64} "]
        assert _by_value(column, values) == [one(v) for v in values]
        assert one(f" {HEX64.upper()} ") == (
            (HEX64, None) if algorithm_of(contract) == "sha256" else (None, REASON_NOT_HASHED)
        )


@HYPOTHESIS
@given(
    values=st.lists(
        json_values | plausible_emails | plausible_phones | plausible_ad_ids | near_ad_ids,
        max_size=12,
    )
)
def test_a_column_encoder_equals_the_public_normalisers(values: list[object]) -> None:
    for column, reference in _COLUMN_ENCODERS:
        assert _by_value(column, values) == [reference(v) for v in values]
