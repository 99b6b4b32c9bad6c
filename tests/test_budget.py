"""The operation budget (issue 18): `daily_update_operations` per ad account, counted from what
TikTok's `audience_history` shows for the last 24 h. One account short of operations defers what
does not fit (saying when it fits); the other account is fully delivered; the next run, once
operations are available, makes every audience exact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from target_tiktok_audiences.sandbox.server import SandboxServer

from helpers import ADV1, ADV2, base_config, record_msg, run_target, schema_msg, sha256, state_msg

EMAIL = "EMAIL_SHA256"
UPDATE = "/dmp/custom_audience/update/"
ALPHA = {"stream": "alpha", "audience_name": "Alpha", "identifiers": {EMAIL: "email"}}
BETA = {"stream": "beta", "audience_name": "Beta", "identifiers": {EMAIL: "email"}}


def messages(alpha: range, beta: range, done: int) -> list[dict[str, Any]]:
    return [
        schema_msg("alpha", ["email"]),
        schema_msg("beta", ["email"]),
        *(record_msg("alpha", {"id": i, "email": f"a{i}@example.com"}) for i in alpha),
        *(record_msg("beta", {"id": i, "email": f"b{i}@example.com"}) for i in beta),
        state_msg({"done": done}),
    ]


def members(sandbox: SandboxServer, advertiser_id: str, name: str) -> list[str]:
    (audience,) = [a for a in sandbox.audiences(advertiser_id) if a["name"] == name]
    return sorted(sandbox.members(audience["audience_id"])[EMAIL])


def digests(prefix: str, users: range) -> list[str]:
    return sorted(sha256(f"{prefix}{i}@example.com") for i in users)


def status(run: Any, stream: str, advertiser_id: str) -> dict[str, Any]:
    (found,) = [
        a
        for s in run.report["streams"]
        if s["stream"] == stream
        for a in s["audiences"]
        if a["advertiser_id"] == advertiser_id
    ]
    return found


def test_one_account_short_of_operations_the_other_fully_delivered(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    config = base_config(sandbox, audiences=[ALPHA, BETA], daily_update_operations=4)
    first = run_target(tmp_path, config, messages(range(2_000), range(2_000), 1), name="first")
    assert first.returncode == 0, first.stderr[-3000:]
    # ADV1 spends two operations elsewhere (Alpha changes there alone).
    only_adv1 = {**config, "advertiser_ids": [ADV1]}
    spend = run_target(
        tmp_path, only_adv1, messages(range(5, 2_005), range(2_000), 2), name="spend"
    )
    assert spend.returncode == 0, spend.stderr[-3000:]

    # Both audiences change: two operations each, four per advertiser.
    wanted = messages(range(10, 2_010), range(10, 2_010), 3)
    before = len(sandbox.calls(UPDATE))
    short = run_target(tmp_path, config, wanted, name="short")
    assert short.returncode == 1
    assert short.stdout == ""
    for name in ("Alpha", "Beta"):
        assert members(sandbox, ADV2, name) == digests(name[0].lower(), range(10, 2_010))
    assert members(sandbox, ADV1, "Alpha") == digests("a", range(10, 2_010))  # within budget
    assert members(sandbox, ADV1, "Beta") == digests("b", range(2_000))  # nothing sent
    deferred = status(short, "beta", ADV1)
    assert deferred["status"] == "deferred"
    assert "2 of the 4 update operations" not in deferred["note"]
    assert (
        "4 of the 4 update operations of the last 24 h are used (daily_update_operations); "
        "the next fits after " in deferred["note"]
    )
    assert short.report is not None
    assert short.report["operations"] == {
        ADV1: {"limit": 4, "used": 4, "by_this_run": 2, "left": 0},
        ADV2: {"limit": 4, "used": 4, "by_this_run": 4, "left": 0},
    }
    assert (
        f"Advertiser {ADV1}: 4 of its 4 update operations of the last 24 h used (2 by this "
        "run), 0 left (daily_update_operations)." in short.stderr
    )
    # What did not fit was never sent: TikTok accepted two operations in ADV1 and four in ADV2
    # (a refusal in between is TikTok's processing window, waited out).
    accepted = [c["advertiser_id"] for c in sandbox.calls(UPDATE)[before:] if c["code"] == 0]
    assert (accepted.count(ADV1), accepted.count(ADV2)) == (2, 4)
    sandbox.advance_clock(24 * 3600 + 60)  # the operations of yesterday drop out
    again = run_target(tmp_path, config, wanted, name="again")
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.states == [{"done": 3}]
    for adv in (ADV1, ADV2):
        for name in ("Alpha", "Beta"):
            assert members(sandbox, adv, name) == digests(name[0].lower(), range(10, 2_010))
