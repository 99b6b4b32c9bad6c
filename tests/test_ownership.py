"""Whose audience is it (issue 18): ownership read from `is_creator`, audience types recognised
defensively. An audience shared out stays ours; one shared in never is; a type the target does
not know is named in a refusal of that audience, never guessed from a word in it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_deliveries import (
    EMAIL,
    PARTNER,
    STREAM,
    email,
    emails,
    entry_of,
    make_delivery,
    make_runtime,
    only_audience,
)

from target_tiktok_audiences.client import TikTokClient
from target_tiktok_audiences.sandbox.server import SandboxServer

from helpers import (
    ADV1,
    ADV2,
    TOKEN,
    base_config,
    record_msg,
    run_target,
    schema_msg,
    sha256,
    state_msg,
)
from helpers.fake_api import FakeAudienceAPI

VIP = {"stream": "vip", "audience_name": "VIP", "identifiers": {EMAIL: "email"}}


def vips(users: range, done: int) -> list[dict]:
    return [
        schema_msg("vip", ["email"]),
        *(record_msg("vip", {"id": i, "email": f"v{i}@example.com"}) for i in users),
        state_msg({"done": done}),
    ]


def test_the_list_reads_ownership_from_is_creator_not_shared(sandbox: SandboxServer) -> None:
    mine = sandbox.share_audience(ADV1, name="Theirs")  # shared in from outside
    client = TikTokClient(sandbox.base_url, TOKEN, timeout=5)
    (row,) = [r for r in client.list_audiences(ADV1) if r.audience_id == mine]
    assert (row.owned, row.is_customer_file) == (False, True)


def test_an_audience_shared_out_stays_ours_and_one_shared_in_never_is(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    only_adv1 = base_config(sandbox, advertiser_ids=[ADV1], audiences=[VIP])
    first = run_target(tmp_path, only_adv1, vips(range(2_000), 1), name="first")
    assert first.returncode == 0, first.stderr[-3000:]
    (created,) = sandbox.audiences(ADV1)
    sandbox.share_audience(ADV2, created["audience_id"])  # ADV1 shares it out to ADV2
    client = TikTokClient(sandbox.base_url, TOKEN, timeout=5)
    owner_row = [r for r in client.list_audiences(ADV1) if r.audience_id == created["audience_id"]]
    assert owner_row[0].owned  # the owner's row says shared: true, and it is still ours

    both = base_config(sandbox, audiences=[VIP])
    second = run_target(tmp_path, both, vips(range(2_100), 2), name="second")
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.states == [{"done": 2}]
    # ADV1: the same audience, updated; no duplicate.
    assert [a["audience_id"] for a in sandbox.audiences(ADV1)] == [created["audience_id"]]
    want = sorted(sha256(f"v{i}@example.com") for i in range(2_100))
    assert sorted(sandbox.members(created["audience_id"])[EMAIL]) == want
    # ADV2 sees ADV1's audience shared in: never its own, so it gets one of its own.
    (own,) = [a for a in sandbox.audiences(ADV2) if a["advertiser_id"] == ADV2]
    assert own["audience_id"] != created["audience_id"]
    assert sorted(sandbox.members(own["audience_id"])[EMAIL]) == want


@pytest.mark.parametrize("listed_type", ["Smart Audience", "", "PARTNER_V2", "Lookalike"])
@pytest.mark.parametrize("kind", [EMAIL, PARTNER])
def test_an_unknown_audience_type_is_a_refusal_naming_it(
    tmp_path: Path, listed_type: str, kind: str
) -> None:
    fake = FakeAudienceAPI([ADV1, ADV2])
    odd = fake.add_audience(ADV1, STREAM, kind, {EMAIL: emails([90])}, listed_type=listed_type)
    sync_mode = "incremental" if kind == PARTNER else "append"
    runtime = make_runtime(tmp_path, fake, sync_mode=sync_mode)
    delivery = make_delivery(runtime, [EMAIL])
    delivery.add({EMAIL: email(1)}, removed=False, user="1")
    delivery.commit()

    refused = entry_of(runtime, ADV1)
    assert refused.status == "deferred"
    assert refused.note == (
        "not delivered: TikTok lists this audience with a type the target does not know; point "
        "the stream at another audience (audience_name or audience_ids). (Matching audience "
        f"'{STREAM}' for advertiser {ADV1} failed: audience {odd} '{STREAM}' has audience_type "
        f"'{listed_type}', which is neither a customer-file nor a partner audience)"
    )
    assert [a.audience_id for a in fake.audiences(ADV1)] == [odd]  # no second audience
    assert fake.members(ADV1, odd) == {EMAIL: emails([90])}  # untouched
    assert fake.members(ADV2, only_audience(fake, ADV2)) == {("EMAIL_SHA256"): emails([1])}
    assert entry_of(runtime, ADV2).status == "delivered"
    assert runtime.report.error is None
