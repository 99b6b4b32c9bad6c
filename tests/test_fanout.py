"""audience_name_column (issue 19): one stream, one audience per value, in every mode.

The real CLI against the sandbox; members are checked digest by digest against hashlib.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from test_mirror_diff import s3_client, s3_endpoint, s3_env  # noqa: F401 - s3_endpoint: fixture

from target_tiktok_audiences.deliveries.fanout import audience_value, matches
from target_tiktok_audiences.modes import AudienceType, SyncMode
from target_tiktok_audiences.sandbox.server import SandboxServer
from target_tiktok_audiences.settings import AudienceMapping

from helpers import (
    ADV1,
    ADV2,
    Run,
    audiences_by_name,
    base_config,
    record_msg,
    run_target,
    schema_msg,
    sha256,
    state_msg,
    stream_report,
)

HOUR = 3600
STREAM = "segments"


def email(i: int) -> str:
    return f"member.{i}@example.com"


def phone(i: int) -> str:
    return f"+1415{i:07d}"


# Run n: user -> segment. Users move between gold and silver; bronze exists in run 1 only.
def assignment(n: int) -> dict[int, str]:
    users = {i: "gold" if i < 1200 else "silver" for i in range(2400)}
    if n >= 1:
        users.update({i: "silver" for i in range(1100, 1200)})  # 100 gold -> silver
        users.update({i: "gold" for i in range(1200, 1300)})  # 100 silver -> gold
        users.update({i: "bronze" for i in range(3000, 3010)})
    if n >= 2:
        users.update({i: "gold" for i in range(1100, 1150)})  # 50 come back
        users.update({i: "silver" for i in range(0, 60)})  # 60 more gold -> silver
        for i in range(2350, 2400):  # 50 silver leave the table
            del users[i]
        for i in range(3000, 3010):  # bronze's value stops appearing
            del users[i]
    return users


def members(users: dict[int, str], segment: str, contract: str = "EMAIL_SHA256") -> set[str]:
    value = email if contract == "EMAIL_SHA256" else phone
    return {sha256(value(i)) for i, s in users.items() if s == segment}


def rows(users: dict[int, str], **extra: Any) -> list[dict[str, Any]]:
    return [
        {"id": i, "email": email(i), "phone": phone(i), "segment": s, **extra}
        for i, s in users.items()
    ]


def messages(records: Iterable[dict[str, Any]], bookmark: int) -> list[dict]:
    return [
        schema_msg(STREAM, ["email", "phone", "segment"]),
        *(record_msg(STREAM, r) for r in records),
        state_msg({"bookmark": bookmark}),
    ]


def ok(run: Run) -> Run:
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def mapping(**extra: Any) -> dict[str, Any]:
    return {
        "stream": STREAM,
        "audience_name": "Tier {value}",
        "audience_name_column": "segment",
        "identifiers": {"EMAIL_SHA256": "email"},
        **extra,
    }


def entries(run: Run) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (e["advertiser_id"], e["audience_name"]): e for e in stream_report(run, STREAM)["audiences"]
    }


@pytest.mark.parametrize(
    ("audience_type", "where"),
    [("customer_file", "local"), ("partner", "local"), ("customer_file", "s3")],
)
def test_two_segments_stay_exact_as_users_move_over_three_mirror_runs(
    sandbox: SandboxServer, tmp_path: Path, audience_type: str, where: str, request: Any
) -> None:
    sandbox.app.config.match_rate = 1.0  # counts uploaded users; the matched floor: test_sandbox
    config = base_config(sandbox, audiences=[mapping(audience_type=audience_type)])
    env = None
    if where == "s3":  # snapshots on S3: listing them finds the audience whose value is gone
        endpoint = request.getfixturevalue("s3_endpoint")
        bucket = f"fanout-{os.getpid()}"
        s3_client(endpoint).create_bucket(Bucket=bucket)
        config["snapshot_url"] = f"s3://{bucket}/snapshots"
        env = s3_env(endpoint)
    ids: dict[tuple[str, str], str] = {}
    for n in range(3):
        if n:
            sandbox.advance_clock(20 * 60)  # inside TikTok's REPLACE day: only diffs work
        users = assignment(n)
        run = ok(
            run_target(tmp_path, config, messages(rows(users), n + 1), name=f"run{n}", env=env)
        )
        assert run.states == [{"bookmark": n + 1}]
        segments = sorted(set(users.values()))
        report = entries(run)
        for advertiser in (ADV1, ADV2):
            audiences = audiences_by_name(sandbox, advertiser)
            expected_names = {"Tier gold", "Tier silver"} | ({"Tier bronze"} if n >= 1 else set())
            assert set(audiences) == expected_names
            for segment in segments:
                audience = audiences[f"Tier {segment}"]
                want = sorted(members(users, segment))
                assert audience["members"] == {"EMAIL_SHA256": want}
                ids.setdefault((advertiser, segment), audience["audience_id"])
                assert audience["audience_id"] == ids[advertiser, segment]
                entry = report[advertiser, f"Tier {segment}"]
                assert entry["status"] == "delivered"
                assert entry["mirror"] == ("full" if entry["created"] else "diff")
            assert sorted(name for adv, name in report if adv == advertiser) == [
                f"Tier {s}" for s in segments
            ]
        # The summary: one heading for the column, then one line per audience.
        heading = (
            f"Stream 'segments': {len(segments)} audiences from column 'segment' in 2 "
            f"advertisers (delivered={2 * len(segments)}); {2 if n == 2 else 0} unchanged "
            "(no records this run)."
        )
        assert heading in run.stderr
        lines = [line for line in run.stderr.splitlines() if "|   'Tier " in line]
        assert len(lines) == 2 * len(segments)
        partner_note = "(TikTok counts identifiers, not users, in a partner audience's size)"
        assert all((partner_note in line) == (audience_type == "partner") for line in lines)
        if n == 2:
            # bronze got no records: untouched, with its 10 users, and named in the summary.
            bronze = audiences_by_name(sandbox, ADV1)["Tier bronze"]
            assert bronze["members"] == {"EMAIL_SHA256": sorted(members(assignment(1), "bronze"))}
            unchanged = stream_report(run, STREAM)["unchanged_audiences"]
            assert unchanged == [
                f"'Tier bronze' (id {ids[adv, 'bronze']}) in advertiser {adv}"
                for adv in (ADV1, ADV2)
            ]
            assert "'Tier bronze' (id" in run.stderr and "got no records this run" in run.stderr
    # One audience per (segment, advertiser) was ever created, never a REPLACE.
    if audience_type == "customer_file":
        assert len(sandbox.calls("/dmp/custom_audience/create/")) == 6
        actions = {c["action"] for c in sandbox.calls("/dmp/custom_audience/update/")}
        assert actions == {"APPEND", "REMOVE"}
    else:
        assert len(sandbox.calls("/segment/audience/")) == 6


def test_append_and_incremental_with_the_column(sandbox: SandboxServer, tmp_path: Path) -> None:
    sandbox.app.config.match_rate = 1.0  # counts uploaded users; the matched floor: test_sandbox
    config = base_config(
        sandbox,
        advertiser_ids=[ADV1],
        audiences=[
            mapping(sync_mode="append", identifiers={"EMAIL_SHA256": "email"}),
            {
                "stream": "events",
                "audience_name": "Live {value}",
                "audience_name_column": "segment",
                "sync_mode": "incremental",
                "identifiers": {"EMAIL_SHA256": "email", "PHONE_SHA256": "phone"},
                "remove_column": "gone",
            },
        ],
        segment_batch_size=300,
    )
    first = assignment(0)
    # The append stream: a second record of user 5 moves nobody (append adds only), a removal
    # of user 7 from gold takes effect; the incremental stream: the same users, batches of 300.
    append_rows = [*rows(first), {"id": 7, "email": email(7), "segment": "gold", "remove": None}]
    event_rows = [{**r, "gone": False} for r in rows(first)]
    event_rows.append(
        {"id": 8, "email": email(8), "phone": phone(8), "segment": "gold", "gone": True}
    )
    msgs = [
        schema_msg(STREAM, ["email", "phone", "segment"]),
        *(record_msg(STREAM, r) for r in append_rows[:-1]),
        schema_msg("events", ["email", "phone", "segment", "gone"]),
        *(record_msg("events", r) for r in event_rows),
        state_msg({"bookmark": 1}),
    ]
    run = ok(run_target(tmp_path, config, msgs, name="first"))
    assert run.states == [{"bookmark": 1}]
    audiences = audiences_by_name(sandbox, ADV1)
    assert sorted(audiences) == ["Live gold", "Live silver", "Tier gold", "Tier silver"]
    for segment in ("gold", "silver"):
        assert audiences[f"Tier {segment}"]["members"] == {
            "EMAIL_SHA256": sorted(members(first, segment))
        }
        live = {c: members(first, segment, c) for c in ("EMAIL_SHA256", "PHONE_SHA256")}
        if segment == "gold":  # user 8's last record removes it from the partner audience
            live = {c: v - members({8: "gold"}, "gold", c) for c, v in live.items()}
        assert audiences[f"Live {segment}"]["members"] == {c: sorted(v) for c, v in live.items()}
    # Batches of 300 per audience (a call refused in the warm-up is retried): silver's 1,200
    # users in 4, gold's 1,199 in 4 and user 8's delete in 1.
    accepted = [c for c in sandbox.calls("/segment/mapping/") if c["code"] == 0]
    assert len(accepted) == 9

    # A second append run: user 9 moves from gold to silver (removed there, added here).
    sandbox.advance_clock(20 * 60)
    second = [
        {"id": 9, "email": email(9), "phone": phone(9), "segment": "gold", "remove": True},
        {"id": 9, "email": email(9), "phone": phone(9), "segment": "silver", "remove": False},
    ]
    config["audiences"][0]["remove_column"] = "remove"
    msgs = [
        schema_msg(STREAM, ["email", "phone", "segment", "remove"]),
        *(record_msg(STREAM, r) for r in second),
        state_msg({"bookmark": 2}),
    ]
    run = ok(run_target(tmp_path, config, msgs, name="second"))
    assert run.states == [{"bookmark": 2}]
    audiences = audiences_by_name(sandbox, ADV1)
    gold, silver = members(first, "gold"), members(first, "silver")
    assert audiences["Tier gold"]["members"] == {"EMAIL_SHA256": sorted(gold - {sha256(email(9))})}
    assert audiences["Tier silver"]["members"] == {
        "EMAIL_SHA256": sorted(silver | {sha256(email(9))})
    }
    report = entries(run)
    assert report[ADV1, "Tier gold"]["action"] == "REMOVE"
    assert report[ADV1, "Tier silver"]["action"] == "APPEND"


def test_names_are_checked_before_anything_is_uploaded(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    long_a, long_b = "x" * 70 + "a", "x" * 70 + "b"
    config = base_config(
        sandbox,
        audiences=[mapping(audience_type="partner", audience_name="{value}")],
    )
    users = {1: long_a, 2: long_b}
    run = run_target(tmp_path, config, messages(rows(users), 1), name="cut")
    assert run.returncode == 1
    assert run.states == []
    last = run.stderr.strip().splitlines()[-1]
    assert (
        "audiences[stream=segments].audience_name_column: the values "
        f"'{'x' * 20}…a' and '{'x' * 20}…b' (alike in their first 70 characters) both give the "
        "partner audience "
        f"'{'x' * 67}...' once TikTok cuts names to 67 characters and '...'" in last
    )
    assert "Traceback" not in run.stderr
    assert sandbox.calls("/segment/") == []

    # Too long for a customer-file audience; and more new audiences than allowed.
    config = base_config(sandbox, audiences=[mapping(audience_name="{value}")])
    run = run_target(tmp_path, config, messages(rows({1: "y" * 129}), 1), name="long")
    assert run.returncode == 1
    assert "would be 129 characters; TikTok allows 128" in run.stderr.strip().splitlines()[-1]
    config = base_config(sandbox, audiences=[mapping()], max_new_audiences=3)
    run = run_target(tmp_path, config, messages(rows({1: "a", 2: "b", 3: "a"}), 1), name="many")
    assert run.returncode == 1
    assert (
        "this run would create 4 audiences (max_new_audiences is 3)"
        in run.stderr.strip().splitlines()[-1]
    )
    assert [c for c in sandbox.calls() if c["path"].endswith(("/upload/", "/create/"))] == []


def test_records_without_a_value_are_rejected(sandbox: SandboxServer, tmp_path: Path) -> None:
    config = base_config(sandbox, advertiser_ids=[ADV1], audiences=[mapping()])
    users = assignment(0)
    records = [*rows(users), {"id": 5000, "email": email(5000), "segment": None}]
    records.append({"id": 5001, "email": email(5001), "segment": "  "})
    run = ok(run_target(tmp_path, config, messages(records, 1)))
    stream = stream_report(run, STREAM)
    assert stream["rejected"] == {"audience_name_column": {"no_audience_name": 2}}
    assert stream["accepted"] == {"EMAIL_SHA256": 2400}
    assert sorted(audiences_by_name(sandbox, ADV1)) == ["Tier gold", "Tier silver"]
    assert json.dumps(run.report).count(email(5000)) == 0


def test_values_and_the_names_a_template_can_give() -> None:
    assert [audience_value(v) for v in (None, "", "  ", {}, [], 5, " a ", True)] == [
        None,
        None,
        None,
        None,
        None,
        "5",
        "a",
        "True",
    ]
    tier = AudienceMapping(
        "s", "Tier {value}!", SyncMode.MIRROR, AudienceType.CUSTOMER_FILE, None, {}, None, "seg"
    )
    assert [
        matches(tier, n)
        for n in ("Tier gold!", "Tier gold! (EMAIL_SHA256)", "Tier !", "Tiers", "Other gold!")
    ] == [True, True, False, False, False]
    partner = AudienceMapping(
        "s", "Segment {value}", SyncMode.MIRROR, AudienceType.PARTNER, None, {}, None, "seg"
    )
    cut = "Segment " + "x" * 59 + "..."
    assert len(cut) == 70
    assert matches(partner, cut) and not matches(partner, "Other " + "x" * 61 + "...")
