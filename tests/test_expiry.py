"""Expired and expiring audiences end to end (issue 18): a name never resolves to an expired
audience (a fresh one takes its place, and the summary says to move ad groups), and an audience
expiring within 60 days is named in the summary.
"""

from __future__ import annotations

from pathlib import Path

from target_tiktok_audiences.sandbox.server import SandboxServer

from helpers import ADV1, ADV2, base_config, record_msg, run_target, schema_msg, sha256, state_msg

VIP = {"stream": "vip", "audience_name": "VIP", "identifiers": {"EMAIL_SHA256": "email"}}
OLD = [sha256(f"old{i}@example.com") for i in range(1_500)]


def vips(n: int) -> list[dict]:
    return [
        schema_msg("vip", ["email"]),
        *(record_msg("vip", {"id": i, "email": f"v{i}@example.com"}) for i in range(n)),
        state_msg({"done": 1}),
    ]


def test_expired_audience_is_replaced_and_an_expiring_one_named(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    expired = sandbox.seed_audience(ADV1, "VIP", expires_in_days=-1, digests=OLD)
    # Fixed from creation by retention_in_days: this run's update does not renew it.
    expiring = sandbox.seed_audience(
        ADV2, "VIP", expires_in_days=30, digests=OLD, retention_in_days=365
    )
    run = run_target(tmp_path, base_config(sandbox, audiences=[VIP]), vips(1_600))
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.states == [{"done": 1}]
    want = sorted(sha256(f"v{i}@example.com") for i in range(1_600))

    # ADV1: the expired audience is left as it was; a fresh one of that name holds the set.
    (fresh,) = [a for a in sandbox.audiences(ADV1) if a["audience_id"] != expired]
    assert fresh["name"] == "VIP"
    assert sorted(sandbox.members(fresh["audience_id"])["EMAIL_SHA256"]) == want
    assert sorted(sandbox.members(expired)["EMAIL_SHA256"]) == sorted(OLD)
    # ADV2: the expiring audience itself was updated, and named in the summary.
    assert [a["audience_id"] for a in sandbox.audiences(ADV2)] == [expiring]
    assert sorted(sandbox.members(expiring)["EMAIL_SHA256"]) == want

    assert run.report is not None
    entries = {a["advertiser_id"]: a for s in run.report["streams"] for a in s["audiences"]}
    assert entries[ADV1]["created"] is True
    moved = (
        f"the audience of this name, id {expired}, expired (TikTok keeps it only to be "
        f"deleted); this run created a fresh one, id {fresh['audience_id']}: point your ad "
        "groups at the new id."
    )
    assert moved in entries[ADV1]["note"]
    expires = sandbox.audience(expiring)["expired_time"][:10]
    soon = (
        f"expires on {expires} (within 60 days); after that TikTok keeps it only to be deleted "
        "and the next run creates a fresh one. Using it in an ad group renews it, unless "
        "retention_in_days fixed its expiry."
    )
    assert soon in entries[ADV2]["note"]
    summary = run.stderr
    assert f"Audience 'VIP' in advertiser {ADV1}: {moved}" in summary
    assert f"Audience 'VIP' in advertiser {ADV2}: {soon}" in summary
