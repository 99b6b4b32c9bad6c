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
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from target_tiktok_audiences.sandbox.rules import HISTORY_WORDINGS
from target_tiktok_audiences.sandbox.server import SandboxServer
from target_tiktok_audiences.snapshot import scope_for

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
    assert got[contract] == sorted(want)


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
            assert list(audience["members"]) == [contract]
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
    sandbox.app.config.update_processing_seconds = (
        0  # exact call sequence; the wait: test_processing
    )
    sandbox.app.config.match_rate = 1.0  # counts uploaded users; the matched floor: test_sandbox
    config = base_config(sandbox, audiences=[mapping()], file_max_ids=700)
    ids = three_runs_and_an_unchanged_one(sandbox, tmp_path, config)
    for (advertiser, contract), audience_id in ids.items():
        assert snapshot_file(tmp_path, audience_id, contract, advertiser).exists()


def three_runs_and_an_unchanged_one(
    sandbox: SandboxServer,
    tmp_path: Path,
    config: dict[str, Any],
    env: dict[str, str] | None = None,
) -> dict[tuple[str, str], str]:
    """Issue 14's scenario, checked after every run; the audience ids by (advertiser, contract)."""
    first = ok(run_target(tmp_path, config, messages(run_rows(0), 1), name="run1", env=env))
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
        run = ok(
            run_target(tmp_path, config, messages(run_rows(n), n + 1), name=f"run{n + 1}", env=env)
        )
        assert run.states == [{"bookmark": n + 1}]
        check_diff_run(sandbox, run, calls, run_members(n - 1), run_members(n), ids)

    # Nothing changed: no upload, no update, and STATE still goes out.
    sandbox.advance_clock(20 * 60)
    calls = Calls(sandbox)
    same = ok(run_target(tmp_path, config, messages(run_rows(2), 4), name="run4", env=env))
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
    return ids


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


def snapshot_file(
    tmp_path: Path, audience_id: str, contract: str = "EMAIL_SHA256", advertiser: str = ADV1
) -> Path:
    """The snapshot under the API host's folder (there is one sandbox host per test)."""
    pattern = f"*/{advertiser}/{audience_id}/{contract}.snap"
    found = sorted(snapshot_root(tmp_path).glob(pattern))
    assert len(found) <= 1, found
    return found[0] if found else snapshot_root(tmp_path) / "no-such-host" / pattern[2:]


def email_config(sandbox: SandboxServer, **overrides: Any) -> dict[str, Any]:
    return base_config(sandbox, advertiser_ids=[ADV1], audiences=[EMAIL_ONLY], **overrides)


def test_a_change_of_rules_sends_the_difference(sandbox, tmp_path: Path) -> None:
    """A snapshot records what TikTok holds: digests made under old rules are removed."""
    sandbox.app.config.match_rate = 1.0  # counts uploaded users; the matched floor: test_sandbox
    config = email_config(sandbox)
    ok(run_target(tmp_path, config, email_rows(range(1200)), name="create"))
    config["email_normalization"] = "tiktok"
    sandbox.advance_clock(20 * 60)
    calls = Calls(sandbox)
    run = ok(run_target(tmp_path, config, email_rows(range(100, 1300)), name="rules"))
    entry = the_entry(run)
    assert (entry["mirror"], entry["action"]) == ("diff", "APPEND+REMOVE")
    # Every digest changed: 1,200 new ones in, the 1,200 old ones out; no REPLACE.
    assert (entry["identifiers_uploaded"], entry["identifiers_removed"]) == (1200, 1200)
    # (a REMOVE refused while the APPEND processes is sent again once it is done)
    assert [c["action"] for c in calls(UPDATE) if c["code"] == 0] == ["APPEND", "REMOVE"]
    same(the_audience(sandbox)["members"], "EMAIL_SHA256", emails(range(100, 1300), "tiktok"))


@pytest.mark.parametrize("wording", HISTORY_WORDINGS)
def test_a_lost_snapshot_means_a_full_replace_once_tiktok_allows_it(
    sandbox, tmp_path: Path, wording: str
) -> None:
    sandbox.app.config.update_processing_seconds = (
        0  # exact call sequence; the wait: test_processing
    )
    sandbox.app.config.history_wording = wording
    sandbox.app.config.match_rate = 1.0  # counts uploaded users; the matched floor: test_sandbox
    config = email_config(sandbox)
    ok(run_target(tmp_path, config, email_rows(range(1200)), name="create"))
    audience_id = the_audience(sandbox)["audience_id"]
    assert snapshot_file(tmp_path, audience_id).exists()
    rules = "basic"
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
    assert "'Newsletter'" in refused.stderr
    if wording in ("lower", "enum"):
        # The history shows the create in words we recognise, 20 minutes old: nothing is sent.
        assert "the CREATE of " in entry["note"] and "is under 24 hours old" in entry["note"]
        assert calls(UPLOAD) == [] and calls(UPDATE) == []
    else:
        # No history, or words never seen: the REPLACE is sent and TikTok's refusal handled.
        assert 'TikTok said "This replace operation is rejected' in entry["note"]
        assert [(c["action"], c["code"]) for c in calls(UPDATE)] == [("REPLACE", 40002)]
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
    sandbox.app.config.match_rate = 1.0  # counts uploaded users; the matched floor: test_sandbox
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
    # Diffed against the snapshot of the first run, not the failed second one; what the
    # failed run had in flight (0-99 out, 1200-1299 in) is re-sent as this stream wants it.
    assert (entry["mirror"], entry["action"]) == ("diff", "APPEND+REMOVE")
    assert entry["identifiers_unchanged"] == 1100
    assert (entry["identifiers_uploaded"], entry["identifiers_removed"]) == (100, 100)
    assert sorted(c["lines"] for c in calls(UPLOAD)) == [100, 100]
    same(the_audience(sandbox)["members"], "EMAIL_SHA256", emails(range(50, 1250)))


def test_a_refused_remove_after_an_accepted_append_keeps_the_audience_exact(
    sandbox, tmp_path: Path
) -> None:
    sandbox.app.config.match_rate = 1.0  # counts uploaded users; the matched floor: test_sandbox
    config = email_config(sandbox)
    ok(run_target(tmp_path, config, email_rows(range(1200)), name="create"))
    sandbox.advance_clock(20 * 60)
    # 900 users: the APPEND is accepted, the REMOVE would leave 900 < 1,000 and is refused.
    partial = run_target(tmp_path, config, email_rows(range(1500, 2400)), name="partial")
    assert partial.returncode == 1
    assert the_entry(partial)["status"] == "deferred"
    # APPEND accepted; REMOVE refused while the APPEND processes, sent again (with backoff),
    # and refused for the floor (tried again while its words could mean "busy").
    accepted = [c["code"] == 0 for c in sandbox.calls(UPDATE)]
    assert accepted[0] is True and len(accepted) >= 3 and not any(accepted[1:])
    assert {c["action"] for c in sandbox.calls(UPDATE)[1:]} == {"REMOVE"}

    sandbox.advance_clock(20 * 60)
    ok(run_target(tmp_path, config, email_rows(range(1100)), name="after"))
    same(the_audience(sandbox)["members"], "EMAIL_SHA256", emails(range(1100)))


def test_snapshot_files_are_private_and_hold_digests_only(sandbox, tmp_path: Path) -> None:
    config = email_config(sandbox)
    ok(run_target(tmp_path, config, email_rows(range(1200)), name="create"))
    audience_id = the_audience(sandbox)["audience_id"]
    snap = snapshot_file(tmp_path, audience_id)
    root = snapshot_root(tmp_path)
    for directory in [root, *root.rglob("*")]:  # host, advertiser, audience, name locks
        if directory.is_dir():
            assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    assert snap.parent.parent.parent.parent == root
    files = sorted(p.name for p in snap.parent.iterdir())
    assert files == ["EMAIL_SHA256.snap"]  # nothing in flight after a confirmed run
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


# -- 3. a partner audience follows its stream ----------------------------------------------

PARTNER_SCHEMA = ["EMAIL_SHA256", "PHONE_SHA256"]


def partner_users(n: int) -> dict[int, dict[str, str | None]]:
    """Run n's users: every fourth has no phone; in run 1 user 500 changes its phone and
    user 600 loses it, in run 2 both are back as in run 0."""
    ranges = [range(0, 1200), range(100, 1300), [*range(50, 1250), *range(2000, 2050)]]
    users: dict[int, dict[str, str | None]] = {
        i: {"email": email(i), "phone": phone(i) if i % 4 else None} for i in ranges[n]
    }
    if n == 1:
        users[500]["phone"] = phone(9500)
        users[600]["phone"] = None
    return users


def partner_digests(users: dict[int, dict[str, str | None]]) -> dict[int, dict[str, str]]:
    return {
        i: {
            contract: sha256(value)
            for contract, value in (("EMAIL_SHA256", u["email"]), ("PHONE_SHA256", u["phone"]))
            if value is not None
        }
        for i, u in users.items()
    }


def by_contract(users: dict[int, dict[str, str]]) -> dict[str, set[str]]:
    return {c: {u[c] for u in users.values() if c in u} for c in PARTNER_SCHEMA}


def record_mappings(sandbox: SandboxServer) -> list[dict[str, Any]]:
    """The bodies of the segment/mapping calls the sandbox accepted, in order."""
    accepted: list[dict[str, Any]] = []
    method, handler = sandbox.app.routes[MAPPING]

    def recording(request: Any, token: str, call: dict[str, Any]) -> dict[str, Any]:
        answer = handler(request, token, call)  # raises when refused: not recorded
        accepted.append(request.get_json())
        return answer

    sandbox.app.routes[MAPPING] = (method, recording)
    return accepted


def slots(user: dict[str, str], audience_id: str) -> tuple[tuple[tuple[str, Any], ...], ...]:
    return tuple(
        tuple(sorted({"id": user[c], "audience_ids": [audience_id]}.items())) if c in user else ()
        for c in PARTNER_SCHEMA
    )


def body_users(body: dict[str, Any]) -> list[tuple[tuple[tuple[str, Any], ...], ...]]:
    return [tuple(tuple(sorted(slot.items())) for slot in user) for user in body["batch_data"]]


def test_partner_mirror_adds_and_deletes_by_difference(sandbox, tmp_path: Path) -> None:
    config = base_config(
        sandbox, audiences=[mapping(audience_type="partner")], segment_batch_size=500
    )
    accepted = record_mappings(sandbox)

    def send(n: int) -> Run:
        rows = [{"id": i, **u} for i, u in partner_users(n).items()]
        return ok(run_target(tmp_path, config, messages(rows, n + 1), name=f"partner{n + 1}"))

    first = send(0)
    assert first.states == [{"bookmark": 1}]
    users = partner_digests(partner_users(0))
    ids = {}
    for advertiser in (ADV1, ADV2):
        (audience,) = sandbox.audiences(advertiser)
        assert (audience["name"], audience["audience_type"]) == ("Mirror", "Partner Audience")
        assert audience["members"] == {c: sorted(d) for c, d in by_contract(users).items()}
        ids[advertiser] = audience["audience_id"]
        mine = [b for b in accepted if b["advertiser_ids"] == [advertiser]]
        # Created, warmed up, then every user added once with all its identifiers.
        assert [(b["action"], b["id_schema"], len(b["batch_data"])) for b in mine] == [
            ("add", PARTNER_SCHEMA, 500),
            ("add", PARTNER_SCHEMA, 500),
            ("add", PARTNER_SCHEMA, 200),
        ]
        got = sorted(u for b in mine for u in body_users(b))
        assert got == sorted(slots(u, ids[advertiser]) for u in users.values())
    for entry in stream_report(first, "users")["audiences"]:
        assert (entry["created"], entry["mirror"], entry["status"]) == (True, "full", "delivered")
        assert (entry["users_added"], entry["batches"]) == (1200, 3)
        assert entry["identifiers_uploaded"] == 1200 + 900

    for n in (1, 2):
        sandbox.advance_clock(20 * 60)
        old, users = users, partner_digests(partner_users(n))
        old_sets, new_sets = by_contract(old), by_contract(users)
        gone = sorted((c, d) for c in PARTNER_SCHEMA for d in old_sets[c] - new_sets[c])
        joined = [
            u for u in users.values() if any(u[c] not in old_sets[c] for c in u)
        ]  # users with a new identifier: added with all of theirs
        start = len(accepted)
        run = send(n)
        assert run.states == [{"bookmark": n + 1}]
        sent = accepted[start:]
        for advertiser in (ADV1, ADV2):
            aid = ids[advertiser]
            (audience,) = sandbox.audiences(advertiser)
            assert sorted(audience["members"]) == PARTNER_SCHEMA
            for contract in PARTNER_SCHEMA:
                same(audience["members"], contract, new_sets[contract])
            mine = [b for b in sent if b["advertiser_ids"] == [advertiser]]
            deletes = [b for b in mine if b["action"] == "delete"]
            adds = [b for b in mine if b["action"] == "add"]
            assert mine == deletes + adds  # deletes first
            assert len(deletes) == -(-len(gone) // 500) and len(adds) == -(-len(joined) // 500)
            assert sorted(u for b in deletes for u in body_users(b)) == sorted(
                slots({c: d}, aid) for c, d in gone
            )
            assert sorted(u for b in adds for u in body_users(b)) == sorted(
                slots(u, aid) for u in joined
            )
        for entry in stream_report(run, "users")["audiences"]:
            assert (entry["mirror"], entry["created"], entry["status"]) == (
                "diff",
                False,
                "delivered",
            )
            assert entry["identifiers_removed"] == entry["users_removed"] == len(gone)
            assert entry["users_added"] == len(joined)
            assert entry["identifiers_uploaded"] == sum(len(u) for u in joined)
            assert entry["identifiers_unchanged"] == sum(
                len(old_sets[c] & new_sets[c]) for c in PARTNER_SCHEMA
            )
    assert len(sandbox.calls("/segment/audience/")) == 2  # one partner audience per advertiser
    assert len([c for c in sandbox.calls(MAPPING) if c["code"] == 0]) == len(accepted)


# -- 4. snapshots on S3 (moto in server mode) ----------------------------------------------

S3_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on a free port of 127.0.0.1 only, for this module's tests."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def s3_client(endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **S3_CREDENTIALS)


def s3_env(endpoint: str) -> dict[str, str]:
    """What the target's process gets: the endpoint the standard way, dummy credentials."""
    return {
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }


def test_snapshots_on_s3_behave_like_local_ones(sandbox, tmp_path: Path, s3_endpoint: str) -> None:
    sandbox.app.config.update_processing_seconds = (
        0  # exact call sequence; the wait: test_processing
    )
    sandbox.app.config.match_rate = 1.0  # counts uploaded users; the matched floor: test_sandbox
    bucket = f"snap-{tmp_path.name.lower()[-20:].strip('_-')}-{os.getpid()}"
    s3 = s3_client(s3_endpoint)
    s3.create_bucket(Bucket=bucket)
    config = base_config(
        sandbox, audiences=[mapping()], file_max_ids=700, snapshot_url=f"s3://{bucket}/prefix"
    )
    ids = three_runs_and_an_unchanged_one(sandbox, tmp_path, config, env=s3_env(s3_endpoint))
    listed = s3.list_objects_v2(Bucket=bucket)
    objects = {o["Key"]: o["Size"] for o in listed.get("Contents", [])}
    final = expected(run_members(2))
    # The operations ledger: one empty object per update sent, beside the snapshots.
    ledger = {k: size for k, size in objects.items() if "/_ledger/" in k}
    assert sorted(k.rsplit(".", 3)[-3] for k in ledger) == sorted(
        c["action"] for c in sandbox.calls("/dmp/custom_audience/update/")
    )
    assert set(ledger.values()) == {0}
    objects = {k: size for k, size in objects.items() if k not in ledger}
    # One snapshot per audience, holding the last run's set; no lock object left behind.
    assert objects == {
        f"prefix/{scope_for(sandbox.base_url)}/{advertiser}/{audience_id}/{contract}.snap": 1024
        + 32 * len(final[contract])
        for (advertiser, contract), audience_id in ids.items()
    }
    assert not snapshot_root(tmp_path).exists()  # nothing went to the local default
    key = (
        f"prefix/{scope_for(sandbox.base_url)}/{ADV1}/{ids[ADV1, 'EMAIL_SHA256']}/EMAIL_SHA256.snap"
    )
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert body[1024:] == b"".join(bytes.fromhex(d) for d in sorted(final["EMAIL_SHA256"]))


# -- 5. mirror_strategy replace: today's behaviour ------------------------------------------


@pytest.mark.parametrize("wording", HISTORY_WORDINGS)
def test_replace_strategy_replaces_every_run_and_waits_a_day(
    sandbox, tmp_path: Path, wording: str
) -> None:
    sandbox.app.config.match_rate = 1.0  # counts uploaded users; the matched floor: test_sandbox
    sandbox.app.config.history_wording = wording
    config = email_config(sandbox, mirror_strategy="replace")
    created = ok(run_target(tmp_path, config, email_rows(range(1200)), name="create"))
    assert the_entry(created)["action"] == "CREATE"

    sandbox.advance_clock(20 * 60)
    calls = Calls(sandbox)
    refused = run_target(tmp_path, config, email_rows(range(100, 1300)), name="refused")
    assert refused.returncode == 1 and refused.states == []
    entry = the_entry(refused)
    assert (entry["status"], entry["mirror"], entry["mirror_reason"]) == (
        "deferred",
        "full",
        "mirror_strategy is replace",
    )
    if wording in ("lower", "enum"):  # the create, recognised and 20 minutes old
        assert calls(UPDATE) == [] and calls(UPLOAD) == []
    else:  # sent, and TikTok's refusal handled
        assert [(c["action"], c["code"]) for c in calls(UPDATE)] == [("REPLACE", 40002)]
    same(the_audience(sandbox)["members"], "EMAIL_SHA256", emails(range(1200)))

    for n, users in enumerate((range(100, 1300), range(200, 1250))):
        sandbox.advance_clock(DAY + HOUR)
        calls = Calls(sandbox)
        run = ok(run_target(tmp_path, config, email_rows(users), name=f"replace{n}"))
        assert run.states == [{"users": "done"}]
        entry = the_entry(run)
        assert (entry["action"], entry["mirror"]) == ("REPLACE", "full")
        assert entry["identifiers_uploaded"] == len(users)
        assert [c["action"] for c in calls(UPDATE)] == ["REPLACE"]
        assert sum(c["lines"] for c in calls(UPLOAD)) == len(users)
        same(the_audience(sandbox)["members"], "EMAIL_SHA256", emails(users))
    assert [h["action"] for h in the_audience(sandbox)["history"]] == [
        "CREATE",
        "REPLACE",
        "REPLACE",
    ]
    # No snapshot is kept for this strategy.
    assert not list(snapshot_root(tmp_path).rglob("*.snap"))


# -- 6. dry run: reads the snapshot, never writes it ----------------------------------------


def test_dry_run_plans_the_difference_from_the_snapshot(sandbox, tmp_path: Path) -> None:
    config = email_config(sandbox)
    ok(run_target(tmp_path, config, email_rows(range(1200)), name="create"))
    audience_id = the_audience(sandbox)["audience_id"]
    snap = snapshot_file(tmp_path, audience_id)
    before = (snap.read_bytes(), snap.stat().st_mtime_ns)
    out = tmp_path / "plan"
    dry = {
        "advertiser_ids": [ADV1],
        "api_base_url": sandbox.base_url,  # snapshots are kept per API host
        "default_phone_region": "US",  # the same rules as the real runs
        "dry_run": True,
        "output_dir": str(out),
        "audiences": [{**EMAIL_ONLY, "audience_ids": {ADV1: audience_id}}],
    }
    calls = Calls(sandbox)
    run = ok(run_target(tmp_path, dry, email_rows(range(100, 1350)), name="dry"))
    assert run.states == []  # a dry run confirms nothing, so it emits no STATE
    assert calls("/") == []  # no network
    plan = json.loads((dry_run_dir(out) / "plan.json").read_text())
    (entry,) = plan["audiences"]
    assert (entry["audience_id"], entry["status"], entry["mirror"], entry["action"]) == (
        audience_id,
        "planned",
        "diff",
        "APPEND+REMOVE",
    )
    assert (
        entry["identifiers_unchanged"],
        entry["identifiers_uploaded"],
        entry["identifiers_removed"],
    ) == (1100, 150, 100)
    updates = [c for c in plan["calls"] if c["call"] == "update"]
    assert [(c["action"], c["audience_id"]) for c in updates] == [
        ("APPEND", audience_id),
        ("REMOVE", audience_id),
    ]
    uploads = [c["lines"] for c in plan["calls"] if c["call"] == "upload"]
    assert uploads == [150, 100]
    files = sorted((dry_run_dir(out) / "files").iterdir())
    assert [set(f.read_text().split()) for f in files] == [
        emails(range(1200, 1350)),
        emails(range(100)),
    ]
    assert (snap.read_bytes(), snap.stat().st_mtime_ns) == before
    assert sorted(p.name for p in snap.parent.iterdir()) == ["EMAIL_SHA256.snap"]
