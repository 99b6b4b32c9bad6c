"""Mirror by difference end to end (issue 14): the real CLI against the realistic sandbox.

The sandbox is as strict as TikTok (one REPLACE a day, the 1,000 floor, partner warm-up), so
several mirror runs an hour only work when no REPLACE follows the create. Members are checked
digest by digest against hashlib, uploaded files line by line against the expected difference.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from helpers import (
    ADV1,
    ADV2,
    Run,
    audiences_by_name,
    base_config,
    dry_run_dir,
    record_msg,
    run_target,
    schema_msg,
    sha256,
    state_msg,
    stream_report,
)
from target_tiktok_audiences.sandbox.server import SandboxServer

HOUR = 3600
DAY = 24 * HOUR
UPLOAD = "/dmp/custom_audience/file/upload/"
UPDATE = "/dmp/custom_audience/update/"
MAPPING = "/segment/mapping/"
CONTRACTS = ("EMAIL_SHA256", "PHONE_SHA256")
NAMES = {c: f"Mirror ({c})" for c in CONTRACTS}


# -- users and their expected digests ------------------------------------------------------


def email(i: int, variant: int = 0) -> str:
    return f"user.{i}+v{variant}@example.com" if variant else f"user.{i}@example.com"


def phone(i: int) -> str:
    return f"+1415{i:07d}"  # E.164 already: hashed as is


def row(i: int, **extra: Any) -> dict[str, Any]:
    return {"id": i, "email": email(i), "phone": phone(i), **extra}


def expected(users: Iterable[int]) -> dict[str, set[str]]:
    ids = list(users)
    return {
        "EMAIL_SHA256": {sha256(email(i)) for i in ids},
        "PHONE_SHA256": {sha256(phone(i)) for i in ids},
    }


def messages(rows: Iterable[dict[str, Any]], bookmark: int, stream: str = "users") -> list[dict]:
    return [
        schema_msg(stream, ["email", "phone"]),
        *(record_msg(stream, r) for r in rows),
        state_msg({"bookmark": bookmark}),
    ]


def mapping(**extra: Any) -> dict[str, Any]:
    return {
        "stream": "users",
        "audience_name": "Mirror",
        "identifiers": {"EMAIL_SHA256": "email", "PHONE_SHA256": "phone"},
        **extra,
    }


def ok(run: Run) -> Run:
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def snapshot_root(tmp_path: Path) -> Path:
    """Where run_target's runs keep snapshots (XDG_DATA_HOME is per test)."""
    return tmp_path / "xdg-data" / "target-tiktok-audiences" / "snapshots"


def entries(run: Run) -> dict[tuple[str, str], dict[str, Any]]:
    """(advertiser, audience name) -> the report entry of that audience."""
    return {
        (e["advertiser_id"], e["audience_name"]): e
        for e in stream_report(run, "users")["audiences"]
    }


def same(got: dict[str, list[str]], contract: str, want: set[str]) -> None:
    """Members equal the oracle; on failure, say how many are missing and extra."""
    have = set(got.get(contract, []))
    assert (len(want - have), len(have - want)) == (0, 0), "missing, extra"
    assert got == {contract: sorted(want)}


def file_digests(sandbox: SandboxServer, file_path: str) -> list[str]:
    """The lines of an uploaded file, as the sandbox stored them."""
    row = sandbox.store.file(file_path)
    assert row is not None
    return list(sandbox.store.iter_digests(row["stored_name"]))


class Calls:
    """The sandbox's call log from a point on: what one run sent."""

    def __init__(self, sandbox: SandboxServer) -> None:
        self.sandbox = sandbox
        self.start = len(sandbox.calls())

    def __call__(self, path: str) -> list[dict[str, Any]]:
        return [c for c in self.sandbox.calls()[self.start :] if path in c["path"]]


# -- 1. three runs in an hour, then a run with nothing changed -----------------------------

RUN_SETS: list[list[int]] = [
    list(range(0, 1200)),
    # 100 leave, 100 join; user 150 is soft-deleted, user 400 comes twice
    [i for i in range(100, 1300)],
    # 50 of those who left come back, 50 of the joiners leave, 100 new
    [*range(50, 1250), *range(2000, 2100)],
]


def run_rows(n: int) -> list[dict[str, Any]]:
    rows = [row(i) for i in RUN_SETS[n]]
    if n == 1:
        # User 150's row is soft-deleted (it leaves the set); user 400 comes twice.
        rows[50] = row(150, _sdc_deleted_at="2026-01-01T00:00:00Z")
        rows.append(row(400))
    return rows


def run_members(n: int) -> set[int]:
    users = set(RUN_SETS[n])
    if n == 1:
        users.discard(150)
    return users


def check_diff_run(
    sandbox: SandboxServer,
    run: Run,
    calls: Calls,
    before: set[int],
    after: set[int],
    ids: dict[tuple[str, str], str],
) -> None:
    """Exact members, and only the difference uploaded with APPEND then REMOVE."""
    old, new = expected(before), expected(after)
    report = entries(run)
    advertisers = (ADV1, ADV2)
    for advertiser in advertisers:
        audiences = audiences_by_name(sandbox, advertiser)
        assert sorted(audiences) == sorted(NAMES.values())
        for contract in CONTRACTS:
            audience = audiences[NAMES[contract]]
            assert audience["audience_id"] == ids[advertiser, contract]
            same(audience["members"], contract, new[contract])
            added, removed = new[contract] - old[contract], old[contract] - new[contract]
            entry = report[advertiser, NAMES[contract]]
            assert (entry["mirror"], entry["status"], entry["created"]) == (
                "diff",
                "delivered",
                False,
            )
            assert entry["action"] == "APPEND+REMOVE"
            assert entry["identifiers_unchanged"] == len(old[contract] & new[contract])
            assert entry["identifiers_uploaded"] == len(added)
            assert entry["identifiers_removed"] == len(removed)
            assert entry["identifiers_unique"] == len(new[contract])
            # The last two operations of the audience are this run's: their files hold
            # exactly the added, then exactly the removed digests.
            append, remove = audience["history"][-2:]
            assert (append["action"], remove["action"]) == ("APPEND", "REMOVE")
            assert sorted(
                d for f in append["file_paths"] for d in file_digests(sandbox, f)
            ) == sorted(added)
            assert sorted(
                d for f in remove["file_paths"] for d in file_digests(sandbox, f)
            ) == sorted(removed)
    updates = calls(UPDATE)
    assert [(c["action"], c["code"]) for c in updates] == [("APPEND", 0), ("REMOVE", 0)] * 4
    diff_lines = sorted(
        n
        for c in CONTRACTS
        for n in (len(new[c] - old[c]), len(old[c] - new[c]))
        for _ in advertisers
    )
    assert sorted(c["lines"] for c in calls(UPLOAD)) == diff_lines
    assert calls("/dmp/custom_audience/create/") == []


def test_three_runs_an_hour_send_only_the_difference(sandbox, tmp_path: Path) -> None:
    config = base_config(sandbox, audiences=[mapping()], file_max_ids=700)
    first = ok(run_target(tmp_path, config, messages(run_rows(0), 1), name="run1"))
    assert first.states == [{"bookmark": 1}]
    ids = {}
    for advertiser in (ADV1, ADV2):
        audiences = audiences_by_name(sandbox, advertiser)
        for contract in CONTRACTS:
            audience = audiences[NAMES[contract]]
            assert audience["members"] == {contract: sorted(expected(run_members(0))[contract])}
            assert [h["action"] for h in audience["history"]] == ["CREATE"]
            ids[advertiser, contract] = audience["audience_id"]
    for entry in entries(first).values():
        assert (entry["action"], entry["mirror"], entry["created"]) == ("CREATE", "full", True)
        assert entry["identifiers_uploaded"] == 1200
    # 1,200 digests in files of at most 700: two files per audience.
    assert sorted(c["lines"] for c in sandbox.calls(UPLOAD)) == [500] * 4 + [700] * 4

    for n in (1, 2):
        sandbox.advance_clock(20 * 60)  # well inside the day in which TikTok refuses a REPLACE
        calls = Calls(sandbox)
        run = ok(run_target(tmp_path, config, messages(run_rows(n), n + 1), name=f"run{n + 1}"))
        assert run.states == [{"bookmark": n + 1}]
        check_diff_run(sandbox, run, calls, run_members(n - 1), run_members(n), ids)

    # Nothing changed: no upload, no update, and STATE still goes out.
    sandbox.advance_clock(20 * 60)
    calls = Calls(sandbox)
    same = ok(run_target(tmp_path, config, messages(run_rows(2), 4), name="run4"))
    assert same.states == [{"bookmark": 4}]
    assert calls(UPLOAD) == [] and calls(UPDATE) == []
    final = expected(run_members(2))
    for (advertiser, name), entry in entries(same).items():
        contract = name[len("Mirror (") : -1]
        assert (entry["action"], entry["mirror"], entry["status"]) == ("NONE", "diff", "delivered")
        assert entry["identifiers_unchanged"] == len(final[contract])
        assert (entry["identifiers_uploaded"], entry["identifiers_removed"], entry["files"]) == (
            0,
            0,
            0,
        )
        assert sandbox.members(ids[advertiser, contract]) == {contract: sorted(final[contract])}
    # Across all four runs: one CREATE per audience and never a REPLACE.
    assert {c["action"] for c in sandbox.calls(UPDATE)} == {"APPEND", "REMOVE"}
    assert len(sandbox.calls("/dmp/custom_audience/create/")) == 4


# -- 2. when the snapshot cannot be used, or must not be written ---------------------------

EMAIL_ONLY = {
    "stream": "users",
    "audience_name": "Newsletter",
    "identifiers": {"EMAIL_SHA256": "email"},
}


def email_rows(users: Iterable[int]) -> list[dict]:
    return [
        schema_msg("users", ["email"]),
        *(record_msg("users", {"id": i, "email": email(i)}) for i in users),
        state_msg({"users": "done"}),
    ]


def emails(users: Iterable[int], rules: str = "basic") -> set[str]:
    # tiktok rules drop the dots of the local part: user.1@ -> user1@
    return {sha256(email(i) if rules == "basic" else f"user{i}@example.com") for i in users}


def the_audience(sandbox: SandboxServer) -> dict[str, Any]:
    (audience,) = sandbox.audiences(ADV1)
    return audience


def the_entry(run: Run) -> dict[str, Any]:
    (entry,) = stream_report(run, "users")["audiences"]
    return entry


def snapshot_file(tmp_path: Path, audience_id: str, contract: str = "EMAIL_SHA256") -> Path:
    return snapshot_root(tmp_path) / ADV1 / audience_id / f"{contract}.snap"


def email_config(sandbox: SandboxServer, **overrides: Any) -> dict[str, Any]:
    return base_config(sandbox, advertiser_ids=[ADV1], audiences=[EMAIL_ONLY], **overrides)


@pytest.mark.parametrize("change", ["rules", "snapshot deleted"])
def test_an_unusable_snapshot_means_a_full_replace_once_tiktok_allows_it(
    sandbox, tmp_path: Path, change: str
) -> None:
    config = email_config(sandbox)
    ok(run_target(tmp_path, config, email_rows(range(1200)), name="create"))
    audience_id = the_audience(sandbox)["audience_id"]
    assert snapshot_file(tmp_path, audience_id).exists()
    rules = "basic"
    if change == "rules":
        rules = config["email_normalization"] = "tiktok"
        why = "was made under other normalisation rules"
    else:
        shutil.rmtree(snapshot_root(tmp_path))
        why = "no snapshot at"

    sandbox.advance_clock(20 * 60)
    calls = Calls(sandbox)
    refused = run_target(tmp_path, config, email_rows(range(100, 1300)), name="refused")
    assert refused.returncode == 1
    assert refused.states == []
    entry = the_entry(refused)
    assert (entry["status"], entry["mirror"]) == ("deferred", "full")
    assert why in entry["mirror_reason"]
    assert "still processing" in entry["note"]
    assert "'Newsletter'" in refused.stderr
    # Nothing was sent: TikTok's own history said the create is still processing.
    assert calls(UPLOAD) == [] and calls(UPDATE) == []
    same(the_audience(sandbox)["members"], "EMAIL_SHA256", emails(range(1200)))

    sandbox.advance_clock(DAY + HOUR)
    calls = Calls(sandbox)
    replaced = ok(run_target(tmp_path, config, email_rows(range(100, 1300)), name="replace"))
    assert replaced.states == [{"users": "done"}]
    entry = the_entry(replaced)
    assert (entry["action"], entry["mirror"], entry["status"]) == ("REPLACE", "full", "delivered")
    assert entry["identifiers_uploaded"] == 1200
    assert [c["action"] for c in calls(UPDATE)] == ["REPLACE"]
    assert sum(c["lines"] for c in calls(UPLOAD)) == 1200
    same(the_audience(sandbox)["members"], "EMAIL_SHA256", emails(range(100, 1300), rules))

    # The REPLACE wrote a snapshot under the new rules: the next run is a diff again.
    sandbox.advance_clock(20 * 60)
    calls = Calls(sandbox)
    diffed = ok(run_target(tmp_path, config, email_rows(range(150, 1400)), name="diff"))
    entry = the_entry(diffed)
    assert (entry["action"], entry["mirror"]) == ("APPEND+REMOVE", "diff")
    assert (entry["identifiers_uploaded"], entry["identifiers_removed"]) == (100, 50)
    assert [c["action"] for c in calls(UPDATE)] == ["APPEND", "REMOVE"]
    same(the_audience(sandbox)["members"], "EMAIL_SHA256", emails(range(150, 1400), rules))


def test_a_failed_run_leaves_the_last_snapshot(sandbox, tmp_path: Path) -> None:
    config = email_config(sandbox)
    ok(run_target(tmp_path, config, email_rows(range(1200)), name="create"))
    audience_id = the_audience(sandbox)["audience_id"]
    snap = snapshot_file(tmp_path, audience_id)
    written = snap.read_bytes()

    sandbox.advance_clock(20 * 60)
    sandbox.inject("permission_error", count=1, paths=[UPDATE])
    failed = run_target(tmp_path, config, email_rows(range(100, 1300)), name="failed")
    assert failed.returncode == 1
    assert failed.states == []
    assert "No permission to operate this advertiser" in failed.stderr
    assert snap.read_bytes() == written
    same(the_audience(sandbox)["members"], "EMAIL_SHA256", emails(range(1200)))

    sandbox.advance_clock(20 * 60)
    calls = Calls(sandbox)
    run = ok(run_target(tmp_path, config, email_rows(range(50, 1250)), name="after"))
    entry = the_entry(run)
    # Diffed against the snapshot of the first run, not the failed second one.
    assert (entry["mirror"], entry["action"]) == ("diff", "APPEND+REMOVE")
    assert entry["identifiers_unchanged"] == 1150
    assert (entry["identifiers_uploaded"], entry["identifiers_removed"]) == (50, 50)
    assert sorted(c["lines"] for c in calls(UPLOAD)) == [50, 50]
    same(the_audience(sandbox)["members"], "EMAIL_SHA256", emails(range(50, 1250)))


@pytest.mark.xfail(
    strict=True,
    reason="MirrorDelivery._by_difference sends APPEND then REMOVE; when the REMOVE fails after "
    "the APPEND was accepted, no snapshot is written, so the next run diffs against the "
    "snapshot before the APPEND and never removes the users that APPEND added (900 extra)",
)
def test_a_refused_remove_after_an_accepted_append_keeps_the_audience_exact(
    sandbox, tmp_path: Path
) -> None:
    config = email_config(sandbox)
    ok(run_target(tmp_path, config, email_rows(range(1200)), name="create"))
    sandbox.advance_clock(20 * 60)
    # 900 users: the APPEND is accepted, the REMOVE would leave 900 < 1,000 and is refused.
    partial = run_target(tmp_path, config, email_rows(range(1500, 2400)), name="partial")
    assert partial.returncode == 1
    assert the_entry(partial)["status"] == "deferred"
    assert [c["code"] == 0 for c in sandbox.calls(UPDATE)] == [True, False]

    sandbox.advance_clock(20 * 60)
    ok(run_target(tmp_path, config, email_rows(range(1100)), name="after"))
    same(the_audience(sandbox)["members"], "EMAIL_SHA256", emails(range(1100)))


def test_snapshot_files_are_private_and_hold_digests_only(sandbox, tmp_path: Path) -> None:
    config = email_config(sandbox)
    ok(run_target(tmp_path, config, email_rows(range(1200)), name="create"))
    audience_id = the_audience(sandbox)["audience_id"]
    snap = snapshot_file(tmp_path, audience_id)
    root = snapshot_root(tmp_path)
    for directory in (root, root / ADV1, root / ADV1 / audience_id):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    files = sorted(p.name for p in snap.parent.iterdir())
    assert files == ["EMAIL_SHA256.lock", "EMAIL_SHA256.snap"]
    for name in files:
        assert stat.S_IMODE((snap.parent / name).stat().st_mode) == 0o600, name
    data = snap.read_bytes()
    header = json.loads(data[:1024])
    assert (header["count"], header["digest_bytes"], header["contract"]) == (
        1200,
        32,
        "EMAIL_SHA256",
    )
    # The body is the sorted digests as raw bytes: no email, no hex text.
    assert data[1024:] == b"".join(bytes.fromhex(d) for d in sorted(emails(range(1200))))
    assert b"example.com" not in data
    assert not [
        i for i in range(1200) if email(i).encode() in data or sha256(email(i)).encode() in data
    ]
