"""Digests hashed in the warehouse (docs/warehouse-hashing.md), as the target takes them in:
the summary counts them, and a stream that offers a raw and a pre-hashed column for one
contract must say which one it means."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from helpers import ADV1, Run, record_msg, run_target, schema_msg


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def run_dry(tmp_path: Path, records: list[dict[str, Any]], **config: object) -> Run:
    columns = sorted({k for r in records for k in r})
    messages = [schema_msg("users", columns), *(record_msg("users", r) for r in records)]
    base = {"advertiser_ids": [ADV1], "dry_run": True, "output_dir": str(tmp_path / "out")}
    return run_target(tmp_path, {**base, **config}, messages)


def log_messages(run: Run) -> list[str]:
    return [ln.split(" | ", 3)[3] for ln in run.stderr.splitlines() if ln.count(" | ") >= 3]


def test_the_summary_says_how_many_digests_arrived_prehashed(tmp_path: Path) -> None:
    records = [
        {"id": 1, "email": sha256("a@b.co")},
        {"id": 2, "email": sha256("c@d.co").upper()},  # taken, lowercased
        {"id": 3, "email": "e@f.co"},  # unhashed: rejected
        {"id": 4, "email": sha256("g@h.co"), "_sdc_deleted_at": "2025-03-01T00:00:00Z"},
    ]
    run = run_dry(tmp_path, records, hash_identifiers=False)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (
        "Stream 'users': 3 digests arrived pre-hashed (hash_identifiers: false): their format "
        "was checked, not what they were made from."
    ) in log_messages(run)
    assert run.report is not None
    (stream,) = run.report["streams"]
    assert (stream["accepted"], stream["removed"]) == ({"EMAIL_SHA256": 2}, {"EMAIL_SHA256": 1})
    assert stream["rejected"] == {"EMAIL_SHA256": {"not_hashed": 1}}
    assert (stream["prehashed"], stream["prehashed_digests"]) == (True, 3)


def test_with_hashing_on_no_digest_arrived_prehashed(tmp_path: Path) -> None:
    run = run_dry(tmp_path, [{"id": 1, "email": "a@b.co"}, {"id": 2, "email": sha256("c@d.co")}])
    assert run.returncode == 0, run.stderr[-3000:]
    assert not [line for line in log_messages(run) if "pre-hashed" in line]
    assert run.report is not None
    (stream,) = run.report["streams"]
    assert stream["rejected"] == {"EMAIL_SHA256": {"already_hashed": 1}}
    assert (stream["prehashed"], stream["prehashed_digests"]) == (False, 0)


def run_raw_and_hashed(tmp_path: Path, columns: list[str], **config: object) -> Run:
    return run_dry(tmp_path, [{"id": 1, **dict.fromkeys(columns, sha256("a@b.co"))}], **config)


def test_a_stream_with_a_raw_and_a_prehashed_column_for_one_contract_is_refused(
    tmp_path: Path,
) -> None:
    for columns, hashing, raw, hashed, contract, which in [
        (["email", "email_sha256"], False, "email", "email_sha256", "EMAIL_SHA256", "pre-hashed"),
        (["Phone", "Hashed_Phone"], True, "Phone", "Hashed_Phone", "PHONE_SHA256", "raw"),
        (["gaid", "GAID-MD5"], False, "gaid", "GAID-MD5", "GAID_SHA256", "pre-hashed"),
    ]:
        run = run_raw_and_hashed(tmp_path / raw, columns, hash_identifiers=hashing)
        assert run.returncode == 1, run.stderr[-3000:]
        assert "Traceback" not in run.stderr
        line = run.stderr.rstrip("\n").splitlines()[-1].split(" | ", 3)[3]
        assert line == (
            f"Config validation failed: stream 'users' offers both a raw column '{raw}' and a "
            f"pre-hashed column '{hashed}' for {contract}: name the one to use in "
            f"audiences[].identifiers (hash_identifiers is {str(hashing).lower()}: the {which} "
            "one)"
        )
        assert run.stdout == ""


def test_a_mapping_that_names_the_column_takes_it(tmp_path: Path) -> None:
    mapping = {"stream": "users", "identifiers": {"EMAIL_SHA256": "email_sha256"}}
    run = run_raw_and_hashed(
        tmp_path, ["email", "email_sha256"], hash_identifiers=False, audiences=[mapping]
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.report is not None
    (stream,) = run.report["streams"]
    assert (stream["accepted"], stream["prehashed_digests"]) == ({"EMAIL_SHA256": 1}, 1)
