"""Wait for processing (issue 18): an APPEND or REMOVE that TikTok refuses while the audience's
previous one is still processing waits for `audience_history` to show it done, then is sent;
past the deadline, that audience is deferred and the others are delivered.
"""

from __future__ import annotations

from pathlib import Path

from target_tiktok_audiences.sandbox.server import SandboxServer, run_sandbox

from helpers import ADV1, ADV2, base_config, record_msg, run_target, schema_msg, sha256, state_msg

UPDATE = "/dmp/custom_audience/update/"
VIP = {"stream": "vip", "audience_name": "VIP", "identifiers": {"EMAIL_SHA256": "email"}}


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


def test_a_remove_after_an_append_waits_for_it_and_is_sent(
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
        assert calls == [("APPEND", 0), ("REMOVE", 40002), ("REMOVE", 0)]
    assert "is still processing its last APPEND: waiting" in second.stderr


def test_past_the_deadline_the_audience_is_deferred(tmp_path: Path) -> None:
    # TikTok still processing the APPEND for a minute; the target waits max_retry_seconds (2).
    with run_sandbox(tmp_path / "slow.db", update_processing_seconds=60) as sandbox:
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


def _third_run_refused_once(tmp_path: Path, sandbox: SandboxServer, later: float) -> tuple:
    """Runs 1-2 make the audience and change it; `later` seconds after, run 3's first update is
    refused with TikTok's processing words although audience_history shows nothing busy."""
    config = base_config(sandbox, advertiser_ids=[ADV1], audiences=[VIP])
    for n, users in enumerate((range(2_000), range(100, 2_100)), 1):
        done = run_target(tmp_path, config, vips(users, n), name=f"run{n}")
        assert done.returncode == 0, done.stderr[-3000:]
    sandbox.advance_clock(later)
    before = len(sandbox.calls(UPDATE))
    sandbox.inject("code_40002", count=1, paths=[UPDATE], message="Task not ready")
    third = run_target(tmp_path, config, vips(range(200, 2_200), 3), name="run3")
    sent = [(c["action"], c["code"]) for c in sandbox.calls(UPDATE)[before:]]
    return third, sent


def test_a_refusal_raced_by_the_end_of_processing_is_sent_once_more(tmp_path: Path) -> None:
    # No processing window: the REMOVE of run 2 shows done at once, as if it finished between
    # TikTok's refusal and the target's look at audience_history. TikTok's clock runs at real
    # speed: run 3 must start within the race's 60 s of run 2's REMOVE, however slow this
    # machine starts a process.
    with run_sandbox(tmp_path / "raced.db", update_processing_seconds=0, time_scale=1) as sandbox:
        third, sent = _third_run_refused_once(tmp_path, sandbox, later=5)
        assert third.returncode == 0, third.stderr[-3000:]
        assert third.states == [{"done": 3}]
        assert sent == [(None, 40002), ("APPEND", 0), ("REMOVE", 0)]  # a fault: body unread
        assert members(sandbox, ADV1) == digests(range(200, 2_200))


def test_a_refusal_long_after_the_last_update_stands(tmp_path: Path) -> None:
    with run_sandbox(tmp_path / "old.db", update_processing_seconds=0) as sandbox:
        third, sent = _third_run_refused_once(tmp_path, sandbox, later=120)
        assert third.returncode == 1
        assert third.states == []
        assert sent == [(None, 40002)]  # nothing processing, nothing recent: not sent again
        assert members(sandbox, ADV1) == digests(range(100, 2_100))
