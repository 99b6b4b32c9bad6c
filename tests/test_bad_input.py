"""Bad input never stops a run: every odd value is counted by reason, in process and offline."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from target_tiktok_audiences.identifiers import MAX_VALUE_LENGTH, Rules, make_encoder
from target_tiktok_audiences.target import TargetTikTokAudiences

from helpers import (
    ADV1,
    base_config,
    record_msg,
    run_target,
    schema_msg,
    singer_lines,
)

COLUMNS = ["email", "phone", "gaid", "idfa"]
json_values = st.recursive(
    # Infinity is not JSON: taps never send it, and the reader rejects such a line.
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=5,
)
# Plausible-looking strings reach deeper into the normalisers than arbitrary text does.
identifier_strings = st.one_of(
    st.text(),
    st.from_regex(r"\s*[A-Za-z0-9.+_-]{0,12}@[A-Za-z0-9.-]{0,12}\s*", fullmatch=True),
    st.from_regex(r"\s*\+?[0-9 ().-]{0,20}\s*", fullmatch=True),
    st.uuids().map(str).map(str.upper),
    st.text(alphabet="0123456789abcdefABCDEF", min_size=30, max_size=66),
)


def dry_run(records: list[dict], **config: object) -> TargetTikTokAudiences:
    with tempfile.TemporaryDirectory() as out:
        target = TargetTikTokAudiences(
            config={
                "advertiser_ids": [ADV1],
                "dry_run": True,
                "output_dir": out,
                "default_phone_region": "US",
                **config,
            }
        )
        messages = [schema_msg("users", COLUMNS), *(record_msg("users", r) for r in records)]
        target.listen(io.StringIO(singer_lines(messages)))
    return target


# The contract each column is found as (by name: no `audiences` mapping in these runs).
CONTRACT_OF = {
    "email": "EMAIL_SHA256",
    "phone": "PHONE_SHA256",
    "idfa": "IDFA_SHA256",
    "gaid": "GAID_SHA256",
}


def absent(value: object) -> bool:
    """What the encoders call absent: null, no such key, or a blank string of sane length."""
    return value is None or (
        isinstance(value, str) and len(value) <= MAX_VALUE_LENGTH and not value.strip()
    )


def check_accounting(target: TargetTikTokAudiences, records: list[dict], *, hashed: bool) -> None:
    """Every value of every identifier column is counted exactly once, per contract: accepted,
    rejected (by reason) or absent; and a record is 'without identifiers' exactly when none of
    its values was accepted."""
    assert records, "the property must see at least one record"
    report = target.run.report
    assert report.status == "succeeded"
    stream = report.streams["users"]
    assert stream.records_read == len(records)
    assert (stream.records_removed, stream.removed) == (0, {})
    checked = []
    for column, contract in CONTRACT_OF.items():
        accepted = stream.accepted.get(contract, 0)
        rejected = sum(stream.rejected.get(contract, {}).values())
        blank = sum(1 for r in records if absent(r.get(column)))
        assert accepted + rejected + blank == stream.records_read, (contract, stream)
        checked.append(contract)
    assert checked == list(CONTRACT_OF.values())  # the loop ran, over every contract
    assert set(stream.accepted) | set(stream.rejected) <= set(CONTRACT_OF.values())
    # Which records had at least one accepted value: the encoders decide each value, the sink
    # must count the records they leave without any.
    rules = Rules(
        hash_identifiers=not hashed, email_normalization="basic", default_phone_region="US"
    )
    encoders = {c: make_encoder(contract, rules) for c, contract in CONTRACT_OF.items()}
    without = sum(
        1 for r in records if all(encode(r.get(c))[0] is None for c, encode in encoders.items())
    )
    assert stream.records_without_identifiers == without
    assert without >= sum(1 for r in records if all(absent(r.get(c)) for c in CONTRACT_OF))


@settings(
    max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    st.lists(
        st.dictionaries(st.sampled_from([*COLUMNS, "other"]), json_values, max_size=5),
        min_size=1,
        max_size=15,
    )
)
def test_arbitrary_records_are_counted_never_fatal(records: list[dict]) -> None:
    records = [{"id": i, **r} for i, r in enumerate(records)]
    check_accounting(dry_run(records), records, hashed=False)


@settings(
    max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    st.lists(
        st.fixed_dictionaries({c: identifier_strings for c in COLUMNS}), min_size=1, max_size=10
    ),
    st.booleans(),
)
def test_arbitrary_identifier_strings_are_counted_never_fatal(
    records: list[dict], hashed: bool
) -> None:
    records = [{"id": i, **r} for i, r in enumerate(records)]
    check_accounting(dry_run(records, hash_identifiers=not hashed), records, hashed=hashed)


def test_the_accounting_check_catches_a_value_counted_twice() -> None:
    """The property's check is not always true: a sink that counts one rejection too many fails
    it."""
    records = [{"id": 1, "email": "not-an-email", "phone": "+14155550134"}]
    target = dry_run(records)
    check_accounting(target, records, hashed=False)
    target.run.report.streams["users"].reject("EMAIL_SHA256", "invalid_email")
    with pytest.raises(AssertionError):
        check_accounting(target, records, hashed=False)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (12345, "wrong_type"),
        (1.5, "wrong_type"),
        (True, "wrong_type"),
        ({"email": "a@b.co"}, "wrong_type"),
        (["a@b.co"], "wrong_type"),
        ("x" * 1_000_000 + "@b.co", "too_long"),
        ("jane\x00doe@gmail.com", "invalid_email"),
        ("jane doe@gmail.com", "invalid_email"),
    ],
)
def test_each_bad_email_is_counted_by_reason(value: object, reason: str) -> None:
    target = dry_run([{"id": 1, "email": value}, {"id": 2, "email": "ok@example.com"}])
    stream = target.run.report.streams["users"]
    assert stream.rejected == {"EMAIL_SHA256": {reason: 1}}
    assert stream.accepted == {"EMAIL_SHA256": 1}
    assert stream.records_without_identifiers == 1


# "(212) 555-0134" in Arabic-Indic digits: phonenumbers reads them.
ARABIC_INDIC_PHONE = "(\u0662\u0661\u0662) \u0665\u0665\u0665-\u0660\u0661\u0663\u0664"


def test_non_ascii_and_missing_fields(tmp_path: Path) -> None:
    records = [
        {"id": 1, "email": "ÉLODIE@Exemple.FR"},
        {"id": 2},
        {"id": 3, "email": None},
        {"id": 4, "phone": ARABIC_INDIC_PHONE},
        {"id": 5, "not_in_schema": "x@y.zz"},
    ]
    target = dry_run(records)
    stream = target.run.report.streams["users"]
    assert stream.accepted == {"EMAIL_SHA256": 1, "PHONE_SHA256": 1}
    assert stream.records_without_identifiers == 3
    assert stream.rejected == {}


def test_columns_absent_from_the_schema_are_not_read() -> None:
    with tempfile.TemporaryDirectory() as out:
        target = TargetTikTokAudiences(
            config={"advertiser_ids": [ADV1], "dry_run": True, "output_dir": out}
        )
        messages = [
            schema_msg("users", ["name"]),
            record_msg("users", {"id": 1, "name": "x", "email": "a@b.co"}),
        ]
        target.listen(io.StringIO(singer_lines(messages)))
    assert target.run.report.ignored_streams == {
        "users": "it has no identifier column (looked for email, email_address, phone, "
        "phone_number, phone_e164, mobile, mobile_phone, mobile_number, mobile_phone_number, "
        "cell_phone, idfa, gaid, aaid, adid, android_advertising_id, google_advertising_id, in "
        "any case and with any separators; its columns: name, id); map one with "
        "audiences[].identifiers"
    }


def test_mapped_column_missing_from_schema_stops_before_records(sandbox, tmp_path):
    config = base_config(
        sandbox,
        advertiser_ids=[ADV1],
        audiences=[{"stream": "users", "identifiers": {"EMAIL_SHA256": "e_mail"}}],
    )
    run = run_target(
        tmp_path,
        config,
        [schema_msg("users", ["email"]), record_msg("users", {"id": 1, "email": "a@b.co"})],
    )
    assert run.returncode != 0
    assert (
        "audiences[stream=users].identifiers.EMAIL_SHA256: column 'e_mail' is not in the "
        "schema of stream 'users' (columns: email, id)"
    ) in run.stderr
    # Only the preflight check (a one-row list) ran: nothing was uploaded or changed.
    assert [c["path"] for c in sandbox.calls("/dmp/custom_audience/")] == [
        "/dmp/custom_audience/list/"
    ] * len(config["advertiser_ids"])
    assert run.report["status"] == "failed"


def test_invalid_json_line_stops_without_echoing_the_line(sandbox, tmp_path):
    config = base_config(sandbox, advertiser_ids=[ADV1])
    data = (
        singer_lines([schema_msg("users", ["email"])]) + '{"type": "RECORD", "stream": '
        '"users", "record": {"email": "secret.person@example.com"\n'
    )
    run = run_target(tmp_path, config, data)
    assert run.returncode != 0
    assert "secret.person@example.com" not in run.output
    assert run.report["status"] == "failed"
    assert "is not valid JSON" in run.report["error"]
