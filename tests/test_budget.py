"""The operation budget (issues 18, 26): `daily_update_operations` per ad account, counted from
the target's own ledger (written before each send) plus the operations of others that TikTok's
`audience_history` shows in words it recognises. One account short of operations defers what
does not fit (saying when it fits); the other account is fully delivered; the next run, once
operations are available, makes every audience exact.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import requests

from target_tiktok_audiences.sandbox.rules import HISTORY_WORDINGS
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


@pytest.mark.parametrize("wording", HISTORY_WORDINGS)
def test_one_account_short_of_operations_the_other_fully_delivered(
    sandbox: SandboxServer, tmp_path: Path, wording: str
) -> None:
    sandbox.app.config.history_wording = wording  # our own ledger counts, whatever the words
    config = base_config(sandbox, audiences=[ALPHA, BETA], daily_update_operations=4)
    first = run_target(tmp_path, config, messages(range(2_000), range(2_000), 1), name="first")
    assert first.returncode == 0, first.stderr[-3000:]
    # ADV1 spends two operations elsewhere (Alpha changes there alone).
    only_adv1 = {**config, "advertiser_ids": [ADV1]}
    spend = run_target(
        tmp_path, only_adv1, messages(range(5, 2_005), range(2_000), 2), name="spend"
    )
    assert spend.returncode == 0, spend.stderr[-3000:]

    # Both audiences change: an APPEND and a REMOVE each, four per advertiser. ADV1 has two
    # left: both REMOVEs go (users who left leave first), both APPENDs wait.
    wanted = messages(range(10, 2_010), range(10, 2_010), 3)
    before = len(sandbox.calls(UPDATE))
    short = run_target(tmp_path, config, wanted, name="short")
    assert short.returncode == 1
    assert short.stdout == ""
    for name in ("Alpha", "Beta"):
        assert members(sandbox, ADV2, name) == digests(name[0].lower(), range(10, 2_010))
    assert members(sandbox, ADV1, "Alpha") == digests("a", range(10, 2_005))
    assert members(sandbox, ADV1, "Beta") == digests("b", range(10, 2_000))
    alpha, beta = status(short, "alpha", ADV1), status(short, "beta", ADV1)
    assert (alpha["status"], alpha["action"]) == ("deferred", "REMOVE")
    assert (beta["status"], beta["action"]) == ("deferred", "REMOVE")
    assert (
        f"APPEND on audience {alpha['audience_id']} for advertiser {ADV1} failed: 3 of the 4 "
        "update operations of the last 24 h are used and 1 planned by this run "
        "(daily_update_operations); the next fits after " in alpha["note"]
    )
    assert (
        f"APPEND on audience {beta['audience_id']} for advertiser {ADV1} failed: 4 of the 4 "
        "update operations of the last 24 h are used (daily_update_operations); the next fits "
        "after " in beta["note"]
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
    # What did not fit was never sent: TikTok accepted the two REMOVEs in ADV1 and four
    # operations in ADV2 (a refusal in between is TikTok's processing window, waited out).
    accepted = [
        (c["advertiser_id"], c["action"]) for c in sandbox.calls(UPDATE)[before:] if c["code"] == 0
    ]
    assert [a for adv, a in accepted if adv == ADV1] == ["REMOVE", "REMOVE"]
    assert sorted(a for adv, a in accepted if adv == ADV2) == [
        "APPEND",
        "APPEND",
        "REMOVE",
        "REMOVE",
    ]
    sandbox.advance_clock(24 * 3600 + 60)  # the operations of yesterday drop out
    again = run_target(tmp_path, config, wanted, name="again")
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.states == [{"done": 3}]
    for adv in (ADV1, ADV2):
        for name in ("Alpha", "Beta"):
            assert members(sandbox, adv, name) == digests(name[0].lower(), range(10, 2_010))


def activate(stream: str) -> dict[str, Any]:
    return {"type": "ACTIVATE_VERSION", "stream": stream, "version": 1}


def test_classic_taps_versions_are_planned_together_removals_first(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    """A classic tap closes each stream with ACTIVATE_VERSION: the complete sets wait for the
    end of input, so the plan sees both audiences and both REMOVEs go before any APPEND."""
    config = base_config(
        sandbox, advertiser_ids=[ADV1], audiences=[ALPHA, BETA], daily_update_operations=2
    )

    def classic(alpha: range, beta: range, done: int) -> list[dict[str, Any]]:
        return [
            schema_msg("alpha", ["email"]),
            *(record_msg("alpha", {"id": i, "email": f"a{i}@example.com"}) for i in alpha),
            activate("alpha"),
            schema_msg("beta", ["email"]),
            *(record_msg("beta", {"id": i, "email": f"b{i}@example.com"}) for i in beta),
            activate("beta"),
            state_msg({"done": done}),
        ]

    first = run_target(tmp_path, config, classic(range(2_000), range(2_000), 1), name="first")
    assert first.returncode == 0, first.stderr[-3000:]  # two CREATEs: no update operation
    wanted = classic(range(10, 2_010), range(10, 2_010), 2)
    short = run_target(tmp_path, config, wanted, name="short")
    assert short.returncode == 1
    assert short.states == []
    assert members(sandbox, ADV1, "Alpha") == digests("a", range(10, 2_000))
    assert members(sandbox, ADV1, "Beta") == digests("b", range(10, 2_000))
    assert [status(short, s, ADV1)["action"] for s in ("alpha", "beta")] == ["REMOVE", "REMOVE"]
    assert (
        "ACTIVATE_VERSION 1 for stream 'alpha': what was read before it is a complete version; "
        "it is delivered at the end of input." in short.stderr
    )
    sandbox.advance_clock(24 * 3600 + 60)
    before = len(sandbox.calls(UPDATE))
    again = run_target(tmp_path, config, wanted, name="again")
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.states == [{"done": 2}]
    for name in ("Alpha", "Beta"):
        assert members(sandbox, ADV1, name) == digests(name[0].lower(), range(10, 2_010))
    # The REMOVEs TikTok accepted are not sent again: the two operations go to the APPENDs.
    sent = [c["action"] for c in sandbox.calls(UPDATE)[before:] if c["code"] == 0]
    assert sent == ["APPEND", "APPEND"]


def test_append_mode_sends_removals_first_across_streams(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    sandbox.app.config.match_rate = 1.0  # the REMOVEs go first: 1,995 uploaded users stay above
    # the floor only when every one of them matches (the floor itself: test_sandbox)
    mappings = [{**m, "remove_column": "gone"} for m in (ALPHA, BETA)]
    config = base_config(
        sandbox,
        advertiser_ids=[ADV1],
        audiences=mappings,
        sync_mode="append",
        daily_update_operations=2,
    )

    def rows(stream: str, added: range, gone: range, done: int) -> list[dict[str, Any]]:
        prefix = stream[0]
        return [
            schema_msg(stream, ["email", "gone"]),
            *(record_msg(stream, {"id": i, "email": f"{prefix}{i}@example.com"}) for i in added),
            *(
                record_msg(stream, {"id": i, "email": f"{prefix}{i}@example.com", "gone": "1"})
                for i in gone
            ),
        ]

    first = run_target(
        tmp_path,
        config,
        [*rows("alpha", range(2_000), range(0), 1), *rows("beta", range(2_000), range(0), 1)],
        name="first",
    )
    assert first.returncode == 0, first.stderr[-3000:]
    wanted = [
        *rows("alpha", range(2_000, 2_010), range(5), 2),
        *rows("beta", range(2_000, 2_010), range(5), 2),
        state_msg({"done": 2}),
    ]
    short = run_target(tmp_path, config, wanted, name="short")
    assert short.returncode == 1
    assert short.states == []
    for name in ("Alpha", "Beta"):
        assert members(sandbox, ADV1, name) == digests(name[0].lower(), range(5, 2_000))
    beta = status(short, "beta", ADV1)
    assert (beta["status"], beta["action"]) == ("deferred", "REMOVE")
    assert (
        f"APPEND on audience {beta['audience_id']} for advertiser {ADV1} failed: 2 of the 2 "
        "update operations of the last 24 h are used (daily_update_operations); the next fits "
        "after " in beta["note"]
    )
    sandbox.advance_clock(24 * 3600 + 60)
    # STATE was withheld, so the tap sends the rows again: the REMOVEs are sent again too (four
    # operations), which two a day never fit.
    config["daily_update_operations"] = 4
    again = run_target(tmp_path, config, wanted, name="again")
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.states == [{"done": 2}]
    for name in ("Alpha", "Beta"):
        assert members(sandbox, ADV1, name) == digests(name[0].lower(), range(5, 2_010))


def test_segments_of_one_table_share_the_plan_removals_first(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    """audience_name_column: every segment's update is planned together with the others."""
    mapping = {
        "stream": "users",
        "audience_name": "Tier {value}",
        "audience_name_column": "tier",
        "identifiers": {EMAIL: "email"},
    }
    config = base_config(
        sandbox, advertiser_ids=[ADV1], audiences=[mapping], daily_update_operations=2
    )

    def tiers(gold: range, silver: range, done: int) -> list[dict[str, Any]]:
        return [
            schema_msg("users", ["email", "tier"]),
            *(
                record_msg("users", {"id": i, "email": f"g{i}@example.com", "tier": "gold"})
                for i in gold
            ),
            *(
                record_msg("users", {"id": i, "email": f"s{i}@example.com", "tier": "silver"})
                for i in silver
            ),
            state_msg({"done": done}),
        ]

    first = run_target(tmp_path, config, tiers(range(2_000), range(2_000), 1), name="first")
    assert first.returncode == 0, first.stderr[-3000:]
    wanted = tiers(range(10, 2_010), range(10, 2_010), 2)
    short = run_target(tmp_path, config, wanted, name="short")
    assert short.returncode == 1
    assert short.states == []
    assert members(sandbox, ADV1, "Tier gold") == digests("g", range(10, 2_000))
    assert members(sandbox, ADV1, "Tier silver") == digests("s", range(10, 2_000))
    sandbox.advance_clock(24 * 3600 + 60)
    before = len(sandbox.calls(UPDATE))
    again = run_target(tmp_path, config, wanted, name="again")
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.states == [{"done": 2}]
    assert members(sandbox, ADV1, "Tier gold") == digests("g", range(10, 2_010))
    assert members(sandbox, ADV1, "Tier silver") == digests("s", range(10, 2_010))
    sent = [c["action"] for c in sandbox.calls(UPDATE)[before:] if c["code"] == 0]
    assert sent == ["APPEND", "APPEND"]


def _other_tools_append(sandbox: SandboxServer, audience_id: str, users: range) -> None:
    """Another tool (Ads Manager, a script) changes the audience with TOKEN's access."""
    session = requests.Session()
    session.headers["Access-Token"] = TOKEN
    body = "".join(sha256(f"o{i}@example.com") + "\n" for i in users).encode()
    uploaded = session.post(
        sandbox.base_url + "/dmp/custom_audience/file/upload/",
        data={
            "advertiser_id": ADV1,
            "calculate_type": EMAIL,
            "file_signature": hashlib.md5(body).hexdigest(),
        },
        files={"file": ("other.csv", body)},
        timeout=30,
    ).json()
    answer = session.post(
        sandbox.base_url + UPDATE,
        json={
            "advertiser_id": ADV1,
            "custom_audience_id": audience_id,
            "file_paths": [uploaded["data"]["file_path"]],
            "action": "APPEND",
        },
        timeout=30,
    ).json()
    assert answer["code"] == 0, answer


@pytest.mark.parametrize("wording", HISTORY_WORDINGS)
def test_others_operations_count_where_the_history_words_are_recognised(
    sandbox: SandboxServer, tmp_path: Path, wording: str
) -> None:
    sandbox.app.config.history_wording = wording
    sandbox.app.config.update_processing_seconds = 0  # exact call sequence
    config = base_config(
        sandbox, advertiser_ids=[ADV1], audiences=[ALPHA], daily_update_operations=3
    )
    first = run_target(tmp_path, config, messages(range(2_000), range(0), 1), name="first")
    assert first.returncode == 0, first.stderr[-3000:]
    (alpha,) = sandbox.audiences(ADV1)
    _other_tools_append(sandbox, alpha["audience_id"], range(10))
    _other_tools_append(sandbox, alpha["audience_id"], range(10, 20))
    # Our run needs an APPEND and a REMOVE (the other tool's users are not in the stream:
    # TikTok holds them, our snapshot does not, so they stay until the resync).
    before = len(sandbox.calls(UPDATE))
    run = run_target(tmp_path, config, messages(range(5, 2_005), range(0), 2), name="second")
    sent = [c["action"] for c in sandbox.calls(UPDATE)[before:] if c["code"] == 0]
    if wording in ("lower", "enum"):
        # Two of the three operations were the other tool's: only the REMOVE fits.
        assert run.returncode == 1
        assert sent == ["REMOVE"]
        assert run.report["operations"][ADV1] == {
            "limit": 3,
            "used": 3,
            "by_this_run": 1,
            "left": 0,
        }
    else:
        # Words never seen (or no history): only our ledger counts; both fit.
        assert run.returncode == 0, run.stderr[-3000:]
        assert sorted(sent) == ["APPEND", "REMOVE"]
