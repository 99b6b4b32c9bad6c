"""Smoke run of the benchmark (bench/run.py): target-tiktok-audiences only, a few thousand
records, against the sandbox started as its own process; audiences must hold exactly the
distinct valid identifiers the generator says it produced."""

from __future__ import annotations

import hashlib
import json
import random
import re
import sys
from pathlib import Path

import phonenumbers
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.generate import (  # noqa: E402
    EMAIL_MIX,
    GAID_MIX,
    IDFA_MIX,
    PHONE_MIX,
    SCENARIOS,
    generate,
)
from bench.run import audience_name, run_tiktok, verify  # noqa: E402

RECORDS = 3_000
E164 = re.compile(r"\+[1-9][0-9]{7,14}")


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_bench_smoke(tmp_path: Path, scenario: str) -> None:
    data = tmp_path / "users.singer"
    columns = SCENARIOS[scenario].columns
    expected = generate(data, RECORDS, seed=1234, collect=True, scenario=SCENARIOS[scenario])
    assert expected.values is not None
    # The generator makes messy and duplicate values: some must be rejected or collapse.
    for contract in columns:
        assert 0 < expected.distinct(contract) < expected.accepted[contract] < RECORDS

    result, sandbox = run_tiktok(data, RECORDS, tmp_path, name="smoke", columns=columns)

    assert result.run.returncode == 0
    assert result.report["status"] == "succeeded"
    assert result.run.cpu > 0 and result.run.maxrss_kb > 0
    verify(result, expected)  # accepted counts and audience sizes
    for contract in columns:
        audience = result.audiences[audience_name(contract)]
        assert audience["calculate_type"] == contract
        want = {hashlib.sha256(v.encode("utf-8")).hexdigest() for v in expected.values[contract]}
        assert audience["member_count"] == len(want)
        assert sandbox.members(audience["audience_id"]) == want
    # One upload per contract at this size (file_max_ids defaults to 500,000).
    assert {c: files for c, (files, _) in result.uploads.items()} == dict.fromkeys(columns, 1)


def _phonenumbers_e164(value: str) -> str | None:
    """design.md's slow path, straight from phonenumbers (region US, as the bench runs)."""
    try:
        number = phonenumbers.parse(value.strip(), "US")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def test_generator_phone_expectations_match_phonenumbers() -> None:
    # The generator's expected values come from its own templates; phonenumbers must agree on
    # every written (not E.164) value, or the bench would check the target against a wrong key.
    rng = random.Random(7)
    written = 0
    for _, _, make in PHONE_MIX:
        for k in range(200):
            raw, expected = make(rng, k)
            if raw is None or not raw.strip() or E164.fullmatch(raw.strip()):
                continue
            assert _phonenumbers_e164(raw) == expected, raw
            written += 1
    assert written == 1000  # five of the makers write formatted values, 200 each


def test_generator_mix_is_warehouse_like(tmp_path: Path) -> None:
    for mix in (EMAIL_MIX, PHONE_MIX, GAID_MIX, IDFA_MIX):
        assert sum(share for share, _, _ in mix) == pytest.approx(1.0)
    data = tmp_path / "users.singer"
    generate(data, RECORDS, seed=5)
    records = [
        message["record"]
        for message in map(json.loads, data.read_text().splitlines())
        if message["type"] == "RECORD"
    ]
    phones = [r["phone"].strip() for r in records if r["phone"]]
    spaced = [p for p in phones if p.startswith("+") and not E164.fullmatch(p)]
    codes = {phonenumbers.parse(p).country_code for p in spaced if not p.startswith("+0")}
    assert len(codes - {1}) >= 8  # international numbers of at least eight countries
    assert any(p.startswith("+1 ") for p in phones)
    assert any(p.startswith("(") for p in phones)  # US national
    assert "" in [r["phone"] for r in records] and None in [r["phone"] for r in records]
    emails = [r["email"] for r in records if r["email"]]
    assert any(e != e.strip() for e in emails) and any(e != e.lower() for e in emails)
    gaids = [r["gaid"] for r in records if r["gaid"]]
    assert sum(g.strip() == g.strip().upper() for g in gaids) > len(gaids) / 3


def test_narrow_records_hold_the_id_and_four_identifier_columns(tmp_path: Path) -> None:
    data = tmp_path / "narrow.singer"
    generate(data, RECORDS, seed=5, scenario=SCENARIOS["narrow"])
    messages = [json.loads(line) for line in data.read_text().splitlines()]
    records = [m["record"] for m in messages if m["type"] == "RECORD"]
    assert {tuple(r) for r in records} == {("id", "email", "phone", "gaid", "idfa")}
    assert set(messages[0]["schema"]["properties"]) == {"id", "email", "phone", "gaid", "idfa"}
    gaids = {r["gaid"].strip().lower() for r in records if r["gaid"]}
    idfas = {r["idfa"].strip().lower() for r in records if r["idfa"]}
    assert gaids & idfas == {"00000000-0000-0000-0000-000000000000"}  # their own UUIDs
    phones = [r["phone"].strip() for r in records if r["phone"]]
    international = [p for p in phones if p.startswith("+") and not p.startswith("+1")]
    spaced = [p for p in international if not E164.fullmatch(p)]
    assert 0.2 < len(spaced) / len(records) < 0.35  # about a quarter, written with separators
