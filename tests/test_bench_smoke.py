"""Smoke run of the benchmark (bench/run.py): target-tiktok-audiences only, a few thousand
records, against the sandbox started as its own process; audiences must hold exactly the
distinct valid identifiers the generator says it produced."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.generate import COLUMNS, generate  # noqa: E402
from bench.run import audience_name, run_tiktok, verify  # noqa: E402

RECORDS = 3_000


def test_bench_smoke(tmp_path: Path) -> None:
    data = tmp_path / "users.singer"
    expected = generate(data, RECORDS, seed=1234, collect=True)
    assert expected.values is not None
    # The generator makes messy and duplicate values: some must be rejected or collapse.
    for contract in COLUMNS:
        assert 0 < expected.distinct(contract) < expected.accepted[contract] < RECORDS

    result, sandbox = run_tiktok(data, RECORDS, tmp_path, name="smoke")

    assert result.run.returncode == 0
    assert result.report["status"] == "succeeded"
    assert result.run.cpu > 0 and result.run.maxrss_kb > 0
    verify(result, expected)  # accepted counts and audience sizes
    for contract in COLUMNS:
        audience = result.audiences[audience_name(contract)]
        assert audience["calculate_type"] == contract
        want = {hashlib.sha256(v.encode("utf-8")).hexdigest() for v in expected.values[contract]}
        assert audience["member_count"] == len(want)
        assert sandbox.members(audience["audience_id"]) == want
    # One upload per contract at this size (file_max_ids defaults to 500,000).
    assert {c: files for c, (files, _) in result.uploads.items()} == dict.fromkeys(COLUMNS, 1)
