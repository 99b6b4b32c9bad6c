"""A refused APPEND or REMOVE (issue 26): TikTok shows no processing state, so the target never
waits on one. A refusal whose words may mean "busy" (or that no hint knows) is sent again with
backoff, within a bounded time; past it, that audience is deferred and the others are delivered.
A refusal whose words name a lasting cause stands at once. Every test runs with the history's
undocumented action words in each spelling, and with no history at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from target_tiktok_audiences.sandbox.rules import HISTORY_WORDINGS
from target_tiktok_audiences.sandbox.server import SandboxServer, run_sandbox

from helpers import (
    ADV1,
    ADV2,
    base_config,
    record_msg,
    run_target,
    sandbox_windows,
    schema_msg,
    sha256,
    state_msg,
)

UPDATE = "/dmp/custom_audience/update/"
VIP = {"stream": "vip", "audience_name": "VIP", "identifiers": {"EMAIL_SHA256": "email"}}


SDK_FLOOR = "The audience size cannot be less than 1,000 after this operation"


@pytest.fixture(params=HISTORY_WORDINGS)
def wording(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def sandbox(tmp_path: Path, wording: str) -> Iterator[SandboxServer]:
    with run_sandbox(tmp_path / "sandbox.db", **sandbox_windows(history_wording=wording)) as server:
        yield server


def vips(users: range, done: int) -> list[dict]:
    return [
        schema_msg("vip", ["email"]),
        *(record_msg("vip", {"id": i, "email": f"v{i}@example.com"}) for i in users),
        state_msg({"done": done}),
    ]


def members(sandbox: SandboxServer, advertiser_id: str) -> list[str]:
    (audience,) = sandbox.audiences(advertiser_id)
    return sorted(sandbox.members(audience["audience_id"])["EMAIL_SHA256"])


def digests(users: range) -> list[str]:
    return sorted(sha256(f"v{i}@example.com") for i in users)


def test_a_remove_refused_after_an_append_is_sent_again_and_converges(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    config = base_config(sandbox, audiences=[VIP])
    first = run_target(tmp_path, config, vips(range(2_000), 1), name="first")
    assert first.returncode == 0, first.stderr[-3000:]
    second = run_target(tmp_path, config, vips(range(100, 2_100), 2), name="second")
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.states == [{"done": 2}]
    for adv in (ADV1, ADV2):
        assert members(sandbox, adv) == digests(range(100, 2_100))
        calls = [
            (c["action"], c["code"]) for c in sandbox.calls(UPDATE) if c["advertiser_id"] == adv
        ]
        # The sandbox refuses updates for a while after an APPEND; tried again with backoff.
        assert calls[0] == ("APPEND", 0) and calls[-1] == ("REMOVE", 0)
        assert set(calls[1:-1]) == {("REMOVE", 40002)}  # one or more, as the window allows
    assert "it may still be processing the last update: trying again in" in second.stderr
    assert "WARNING" not in [line.split(" ")[0] for line in second.stderr.splitlines()]


def test_past_the_deadline_the_audience_is_deferred(tmp_path: Path, wording: str) -> None:
    # TikTok refuses updates for a minute after the APPEND; the target tries for
    # max_retry_seconds (2) at most.
    with run_sandbox(
        tmp_path / "slow.db", update_processing_seconds=60, history_wording=wording
    ) as sandbox:
        config = base_config(sandbox, advertiser_ids=[ADV1], audiences=[VIP], max_retry_seconds=2)
        first = run_target(tmp_path, config, vips(range(2_000), 1), name="first")
        assert first.returncode == 0, first.stderr[-3000:]
        second = run_target(tmp_path, config, vips(range(100, 2_100), 2), name="second")
        assert second.returncode == 1
        assert second.stdout == ""
        assert [(c["action"], c["code"]) for c in sandbox.calls(UPDATE)][-1] == ("REMOVE", 40002)
        assert members(sandbox, ADV1) == digests(range(2_100))  # APPEND done, REMOVE not
        assert second.report is not None
        (entry,) = [a for s in second.report["streams"] for a in s["audiences"]]
        assert entry["status"] == "deferred"


def _third_run_refused_once(
    tmp_path: Path, sandbox: SandboxServer, later: float, message: str
) -> tuple:
    """Runs 1-2 make the audience and change it; `later` seconds after, run 3's first update is
    refused once with `message`."""
    config = base_config(sandbox, advertiser_ids=[ADV1], audiences=[VIP])
    for n, users in enumerate((range(2_000), range(100, 2_100)), 1):
        done = run_target(tmp_path, config, vips(users, n), name=f"run{n}")
        assert done.returncode == 0, done.stderr[-3000:]
    sandbox.advance_clock(later)
    before = len(sandbox.calls(UPDATE))
    sandbox.inject("code_40002", count=1, paths=[UPDATE], message=message)
    third = run_target(tmp_path, config, vips(range(200, 2_200), 3), name="run3")
    sent = [(c["action"], c["code"]) for c in sandbox.calls(UPDATE)[before:]]
    return third, sent


def test_a_busy_refusal_is_sent_again_whatever_the_history(tmp_path: Path, wording: str) -> None:
    # The refusal comes long after the last update: no history could explain it, and none is
    # asked for. The SDK's "Task not ready" is sent again and converges.
    with run_sandbox(
        tmp_path / "raced.db", update_processing_seconds=0, history_wording=wording
    ) as sandbox:
        third, sent = _third_run_refused_once(tmp_path, sandbox, 120, "Task not ready")
        assert third.returncode == 0, third.stderr[-3000:]
        assert third.states == [{"done": 3}]
        assert sent == [(None, 40002), ("APPEND", 0), ("REMOVE", 0)]  # a fault: body unread
        assert members(sandbox, ADV1) == digests(range(200, 2_200))
        # Between the refusal and the try that follows, nothing was read: no state to wait on.
        calls = sandbox.calls()
        refused = next(i for i, c in enumerate(calls) if c["code"] == 40002)
        assert calls[refused + 1]["path"].endswith(UPDATE)


def test_a_refusal_for_a_lasting_cause_stands_at_once(tmp_path: Path, wording: str) -> None:
    with run_sandbox(
        tmp_path / "old.db", update_processing_seconds=0, history_wording=wording
    ) as sandbox:
        third, sent = _third_run_refused_once(tmp_path, sandbox, 120, SDK_FLOOR)
        assert third.returncode == 1
        assert third.states == []
        assert sent == [(None, 40002)]  # the floor's words: not sent again
        assert members(sandbox, ADV1) == digests(range(100, 2_100))
