"""incremental (Segment API) and append (files) modes, removal signals and mixed runs."""

from __future__ import annotations

import uuid
from pathlib import Path

from helpers import (
    ADV1,
    ADV2,
    audiences_by_name,
    base_config,
    md5,
    record_msg,
    run_target,
    schema_msg,
    sha256,
    state_msg,
    stream_report,
)

SEGMENT = "/segment/mapping/"


def people(start: int, stop: int) -> list[dict]:
    """Users with some identifiers missing: every 3rd lacks a phone, every 5th an email."""
    rows = []
    for i in range(start, stop):
        rows.append(
            {
                "id": i,
                "email": None if i % 5 == 0 else f"Person{i}@Example.org ",
                "phone": None if i % 3 == 0 else f"+4420{i:08d}",
                "idfa": str(uuid.UUID(int=i + 1)).upper() if i % 4 == 0 else None,
            }
        )
    return rows


def expected_members(rows: list[dict]) -> dict[str, list[str]]:
    members: dict[str, set[str]] = {"EMAIL_SHA256": set(), "PHONE_SHA256": set(), "IDFA_MD5": set()}
    for r in rows:
        if r["email"]:
            members["EMAIL_SHA256"].add(sha256(r["email"].strip().lower()))
        if r["phone"]:
            members["PHONE_SHA256"].add(sha256(r["phone"]))
        if r["idfa"]:
            members["IDFA_MD5"].add(md5(r["idfa"].lower()))
    return {k: sorted(v) for k, v in members.items() if v}


INCREMENTAL = {
    "stream": "people",
    "audience_name": "Active people",
    "sync_mode": "incremental",
    "identifiers": {"EMAIL_SHA256": "email", "PHONE_SHA256": "phone", "IDFA_MD5": "idfa"},
    "remove_column": "unsubscribed",
}


def test_incremental_batches_then_deletes(sandbox, tmp_path: Path) -> None:
    # 10,000-user calls on a loaded machine can outlast a 2 s timeout and be (rightly) sent
    # again; this test counts users per call, so it gives them time.
    config = base_config(sandbox, audiences=[INCREMENTAL], request_timeout=30)
    rows = people(0, 25_000)
    messages = [
        schema_msg("people", ["email", "phone", "idfa", "unsubscribed"]),
        *(record_msg("people", r) for r in rows),
        state_msg({"people": 25_000}),
    ]
    first = run_target(tmp_path, config, messages, name="first")
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.states == [{"people": 25_000}]
    # Mappings refused during the new audience's warm-up are retried; count accepted calls.
    calls = [c for c in sandbox.calls(SEGMENT) if c["code"] == 0]
    for advertiser in (ADV1, ADV2):
        mine = [c for c in calls if c["advertiser_id"] == advertiser]
        assert len(mine) >= 3
        assert max(c["users"] for c in mine) <= 10_000
        # Users with no identifier at all (every 15th, unless it has an IDFA) are not sent.
        assert sum(c["users"] for c in mine) == sum(
            1 for r in rows if r["email"] or r["phone"] or r["idfa"]
        )
        (audience,) = sandbox.audiences(advertiser)
        assert audience["name"] == "Active people"
        assert audience["audience_type"] == "Partner Audience"
        assert audience["members"] == {
            ("AAID_MD5" if k == "GAID_MD5" else k): v for k, v in expected_members(rows).items()
        }

    # Second run: 6,000 users deleted (3,000 by _sdc_deleted_at, 3,000 by remove_column).
    deleted = rows[:3000]
    unsubscribed = rows[10_000:13_000]
    messages = [
        schema_msg("people", ["email", "phone", "idfa", "unsubscribed"]),
        *(record_msg("people", {**r, "_sdc_deleted_at": "2026-11-20T00:00:00Z"}) for r in deleted),
        *(record_msg("people", {**r, "unsubscribed": True}) for r in unsubscribed),
        state_msg({"people": 30_000}),
    ]
    second = run_target(tmp_path, config, messages, name="second")
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.states == [{"people": 30_000}]
    remaining = rows[3000:10_000] + rows[13_000:]
    for advertiser in (ADV1, ADV2):
        (audience,) = sandbox.audiences(advertiser)
        assert audience["members"] == expected_members(remaining)
    report = stream_report(second, "people")
    assert report["records_read"] == 6000
    assert {a["users_removed"] for a in report["audiences"]} == {
        sum(1 for r in deleted + unsubscribed if r["email"] or r["phone"] or r["idfa"])
    }
    assert {a["created"] for a in report["audiences"]} == {False}


def test_incremental_user_without_valid_identifiers_is_not_sent(sandbox, tmp_path):
    config = base_config(sandbox, advertiser_ids=[ADV1], audiences=[INCREMENTAL])
    messages = [
        schema_msg("people", ["email", "phone", "idfa", "unsubscribed"]),
        record_msg("people", {"id": 1, "email": "nope", "phone": "x", "idfa": "1"}),
        record_msg("people", {"id": 2, "email": "ok@example.com"}),
    ]
    run = run_target(tmp_path, config, messages)
    assert run.returncode == 0, run.stderr[-3000:]
    (call,) = [c for c in sandbox.calls(SEGMENT) if c["code"] == 0]
    assert call["users"] == 1
    (audience,) = sandbox.audiences(ADV1)
    assert audience["members"] == {"EMAIL_SHA256": [sha256("ok@example.com")]}


def test_long_partner_names_are_cut_like_tiktok_and_found_again(sandbox, tmp_path):
    name = "A" * 80
    config = base_config(
        sandbox, advertiser_ids=[ADV1], audiences=[{**INCREMENTAL, "audience_name": name}]
    )
    for n in range(2):
        run = run_target(
            tmp_path,
            config,
            [
                schema_msg("people", ["email", "phone", "idfa", "unsubscribed"]),
                record_msg("people", {"id": n, "email": f"{n}@x.io"}),
            ],
            name=f"run{n}",
        )
        assert run.returncode == 0, run.stderr[-3000:]
    (audience,) = sandbox.audiences(ADV1)
    assert audience["name"] == "A" * 67 + "..."
    assert audience["members"] == {"EMAIL_SHA256": sorted([sha256("0@x.io"), sha256("1@x.io")])}


APPEND = {
    "stream": "buyers",
    "audience_name": "Buyers",
    "sync_mode": "append",
    "identifiers": {"EMAIL_SHA256": "email"},
    "remove_column": "churned",
}


def buyers(start: int, stop: int, **extra: object) -> list[dict]:
    return [
        record_msg("buyers", {"id": i, "email": f"buyer{i}@shop.example", **extra})
        for i in range(start, stop)
    ]


def test_append_then_append_and_remove(sandbox, tmp_path):
    sandbox.app.config.match_rate = 1.0  # counts uploaded users; the matched floor: test_sandbox
    config = base_config(sandbox, audiences=[APPEND], file_max_ids=400)
    first = run_target(
        tmp_path,
        config,
        [schema_msg("buyers", ["email", "churned"]), *buyers(0, 1000), state_msg(1)],
        name="first",
    )
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.states == [1]
    second = run_target(
        tmp_path,
        config,
        [
            schema_msg("buyers", ["email", "churned"]),
            *buyers(1000, 1500),
            *buyers(0, 200, churned=True),
            state_msg(2),
        ],
        name="second",
    )
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.states == [2]
    expected = sorted(sha256(f"buyer{i}@shop.example") for i in range(200, 1500))
    for advertiser in (ADV1, ADV2):
        (audience,) = sandbox.audiences(advertiser)
        assert audience["name"] == "Buyers"
        assert audience["members"] == {"EMAIL_SHA256": expected}
    updates = sandbox.calls("/dmp/custom_audience/update/")
    assert {c["action"] for c in updates} == {"APPEND", "REMOVE"}
    entries = stream_report(second, "buyers")["audiences"]
    assert {
        (e["action"], e["identifiers_uploaded"], e["identifiers_removed"]) for e in entries
    } == {("APPEND+REMOVE", 500, 200)}


def test_mixed_run_mirror_one_stream_and_stream_another(sandbox, tmp_path):
    config = base_config(
        sandbox,
        advertiser_ids=[ADV1],
        sync_mode="mirror",
        audiences=[
            {"stream": "vip", "audience_name": "VIP", "identifiers": {"EMAIL_SHA256": "email"}},
            {**INCREMENTAL, "identifiers": {"EMAIL_SHA256": "email"}},
        ],
    )
    messages = [
        schema_msg("vip", ["email"]),
        schema_msg("people", ["email", "unsubscribed"]),
        record_msg("vip", {"id": 1, "email": "vip@x.io"}),
        record_msg("people", {"id": 1, "email": "p1@x.io"}),
        record_msg("people", {"id": 2, "email": "p2@x.io", "unsubscribed": False}),
        record_msg("people", {"id": 3, "email": "p3@x.io", "unsubscribed": True}),
        state_msg("done"),
    ]
    run = run_target(tmp_path, config, messages)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.states == ["done"]
    audiences = audiences_by_name(sandbox, ADV1)
    assert audiences["VIP"]["audience_type"] == "Customer File"
    assert audiences["VIP"]["members"] == {"EMAIL_SHA256": [sha256("vip@x.io")]}
    assert audiences["Active people"]["audience_type"] == "Partner Audience"
    assert audiences["Active people"]["members"] == {
        "EMAIL_SHA256": sorted([sha256("p1@x.io"), sha256("p2@x.io")])
    }
