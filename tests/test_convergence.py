"""A green run means the audience is right (issue 17): faults, then one clean run converges.

Every test drives the real CLI against the realistic sandbox, injects a fault the way
production meets it (an answer lost after TikTok applied the call, a kill between two calls, a
failed snapshot write, a change of rules, an edit in Ads Manager), and checks the audience
digest by digest. `tests/test_model.py` does the same with random sequences.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from target_tiktok_audiences.convergence import plan
from target_tiktok_audiences.sandbox.rules import HISTORY_WORDINGS
from target_tiktok_audiences.sandbox.server import SandboxServer
from target_tiktok_audiences.testhooks import VARIABLE as FAULT

from helpers import (
    ADV1,
    ADV2,
    CLI,
    Run,
    base_config,
    record_msg,
    run_target,
    schema_msg,
    sha256,
    singer_lines,
    start_target,
    state_msg,
    stream_report,
)

HOUR = 3600
DAY = 24 * HOUR
UPDATE = "/dmp/custom_audience/update/"
MAPPING = "/segment/mapping/"
EMAIL = "EMAIL_SHA256"
PHONE = "PHONE_SHA256"


def email(i: int) -> str:
    return f"user.{i}@example.com"


def phone(i: int) -> str:
    return f"+1415{i:07d}"


def emails(users: Iterable[int], rules: str = "basic") -> set[str]:
    # tiktok rules drop the dots of the local part: user.1@ -> user1@
    return {sha256(email(i) if rules == "basic" else f"user{i}@example.com") for i in users}


def phones(users: Iterable[int]) -> set[str]:
    return {sha256(phone(i)) for i in users}


def rows(users: Iterable[int], *, with_phone: bool = False, **schema: Any) -> list[dict]:
    props = ["email", "phone"] if with_phone else ["email"]
    head = schema_msg("users", props)
    head.update(schema)
    body = [
        record_msg(
            "users", {"id": i, "email": email(i), **({"phone": phone(i)} if with_phone else {})}
        )
        for i in users
    ]
    return [head, *body, state_msg({"users": "done"})]


def file_mapping(**extra: Any) -> dict[str, Any]:
    return {
        "stream": "users",
        "audience_name": "Newsletter",
        "identifiers": {EMAIL: "email"},
        **extra,
    }


def partner_mapping(**extra: Any) -> dict[str, Any]:
    return file_mapping(audience_type="partner", **extra)


def config_for(sandbox: SandboxServer, mapping: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return base_config(sandbox, advertiser_ids=[ADV1], audiences=[mapping], **extra)


def ok(run: Run) -> Run:
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.states == [{"users": "done"}]
    return run


def failed(run: Run) -> Run:
    assert run.returncode != 0, run.stderr[-3000:]
    assert run.states == []  # a run that cannot guarantee the audience emits no STATE
    assert "Traceback" not in run.stderr
    return run


def members(
    sandbox: SandboxServer, name: str = "Newsletter", adv: str = ADV1
) -> dict[str, set[str]]:
    (audience,) = [a for a in sandbox.audiences(adv) if a["name"] == name]
    return {k: set(v) for k, v in audience["members"].items() if v}


def entry_of(run: Run) -> dict[str, Any]:
    (entry,) = stream_report(run, "users")["audiences"]
    return entry


# -- the algebra --------------------------------------------------------------------------


def _sorted_blocks(values: set[str]) -> list[list[str]]:
    ordered = sorted(values)
    return [ordered[i : i + 3] for i in range(0, len(ordered), 3)]


digests = st.sets(st.sampled_from([f"{i:04x}" for i in range(40)]))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(stream=digests, held=digests, in_flight=digests, unknown_state=digests)
def test_plan_reaches_the_stream_whatever_happened_in_flight(
    stream: set[str], held: set[str], in_flight: set[str], unknown_state: set[str]
) -> None:
    """TikTok holds the snapshot's set except on the digests in flight, which may be anything:
    after APPEND(add) and REMOVE(remove) it holds exactly the stream."""
    tiktok = (held - in_flight) | (unknown_state & in_flight)
    add: list[str] = []
    remove: list[str] = []
    flight = None if not in_flight else (lambda: _sorted_blocks(in_flight))
    counts = plan(
        lambda: _sorted_blocks(stream),
        lambda: _sorted_blocks(held),
        flight,
        add.append,
        remove.append,
    )
    assert add == sorted(add) and remove == sorted(remove)  # ascending, as uploads need
    assert (tiktok | set(add)) - set(remove) == stream
    assert (counts.added, counts.removed, counts.total) == (len(add), len(remove), len(stream))
    if not in_flight:  # the plain difference: nothing more is sent
        assert set(add) == stream - held and set(remove) == held - stream


# -- answers lost after TikTok applied the call ---------------------------------------------


@pytest.mark.parametrize(
    ("second", "third"),
    [
        (range(100, 2000), range(2000)),  # REMOVE applied, answer lost; the users come back
        (range(2100), range(2000)),  # APPEND applied, answer lost; the users leave again
    ],
    ids=["remove-lost", "append-lost"],
)
def test_an_answer_lost_after_tiktok_applied_it_converges(
    sandbox: SandboxServer, tmp_path: Path, second: range, third: range
) -> None:
    config = config_for(sandbox, file_mapping())
    ok(run_target(tmp_path, config, rows(range(2000)), name="create"))
    sandbox.advance_clock(HOUR)
    # Every answer to an update is lost, though TikTok applies each one.
    sandbox.inject("drop_after", count=50, paths=[UPDATE])
    run = failed(run_target(tmp_path, {**config, "max_retries": 1}, rows(second), name="lost"))
    assert members(sandbox)[EMAIL] == emails(second)  # TikTok did apply it
    assert "'Newsletter'" in run.stderr
    sandbox.clear_faults()
    sandbox.advance_clock(HOUR)
    ok(run_target(tmp_path, config, rows(third), name="clean"))
    assert members(sandbox)[EMAIL] == emails(third)
    # And then the plain difference again: nothing in flight is left.
    sandbox.advance_clock(HOUR)
    quiet = ok(run_target(tmp_path, config, rows(third), name="quiet"))
    assert entry_of(quiet)["action"] == "NONE"


def test_a_partner_delete_applied_but_unanswered_converges(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    config = config_for(sandbox, partner_mapping())
    ok(run_target(tmp_path, config, rows(range(1500)), name="create"))
    sandbox.inject("drop_after", count=50, paths=[MAPPING])
    failed(run_target(tmp_path, {**config, "max_retries": 1}, rows(range(100, 1500)), name="lost"))
    assert members(sandbox)[EMAIL] == emails(range(100, 1500))
    sandbox.clear_faults()
    ok(run_target(tmp_path, config, rows(range(1500)), name="clean"))
    assert members(sandbox)[EMAIL] == emails(range(1500))


# -- killed between two calls, and snapshot writes that fail -------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        "kill:before:snapshot:1",  # TikTok accepted APPEND and REMOVE; the snapshot never came
        "kill:after:update_customer_audience:1",  # between the APPEND and the REMOVE
        "kill:before:update_customer_audience:2",  # the REMOVE never sent
    ],
)
def test_a_kill_between_two_steps_converges_in_one_clean_run(
    sandbox: SandboxServer, tmp_path: Path, fault: str
) -> None:
    config = config_for(sandbox, file_mapping())
    ok(run_target(tmp_path, config, rows(range(2000)), name="create"))
    sandbox.advance_clock(HOUR)
    killed = run_target(tmp_path, config, rows(range(100, 2100)), name="killed", env={FAULT: fault})
    assert killed.returncode == -9 and killed.states == []
    sandbox.advance_clock(HOUR)
    ok(run_target(tmp_path, config, rows(range(50, 2050)), name="clean"))
    assert members(sandbox)[EMAIL] == emails(range(50, 2050))


def test_a_kill_after_a_create_converges(sandbox: SandboxServer, tmp_path: Path) -> None:
    config = config_for(sandbox, file_mapping())
    killed = run_target(
        tmp_path,
        config,
        rows(range(2000)),
        name="killed",
        env={FAULT: "kill:after:create_customer_audience:1"},
    )
    assert killed.returncode == -9
    assert members(sandbox)[EMAIL] == emails(range(2000))
    sandbox.advance_clock(HOUR)  # within TikTok's day: no REPLACE is needed to converge
    run = ok(run_target(tmp_path, config, rows(range(100, 2100)), name="clean"))
    assert entry_of(run)["action"] == "APPEND+REMOVE"
    assert members(sandbox)[EMAIL] == emails(range(100, 2100))


@pytest.mark.parametrize("mapping", [file_mapping(), partner_mapping()], ids=["file", "partner"])
def test_a_failed_snapshot_write_names_the_snapshot_and_converges(
    sandbox: SandboxServer, tmp_path: Path, mapping: dict[str, Any]
) -> None:
    config = config_for(sandbox, mapping)
    ok(run_target(tmp_path, config, rows(range(2000)), name="create"))
    sandbox.advance_clock(HOUR)
    run = failed(
        run_target(
            tmp_path, config, rows(range(100, 2000)), name="nowrite", env={FAULT: "fail:snapshot:1"}
        )
    )
    assert members(sandbox)[EMAIL] == emails(range(100, 2000))  # TikTok accepted the change
    line = run.stderr.strip().splitlines()[-1]
    assert line.endswith(
        "1 audience not delivered: 'Newsletter' in advertiser 7000000000000000001 (the snapshot "
        "store failed); no other audience was delivered in this run and no STATE was emitted; "
        "the summary above "
        "says what to do"
    )
    snap = "PARTNER" if mapping.get("audience_type") == "partner" else EMAIL
    assert f"/{snap}.snap (ENOSPC: No space left on device)" in run.stderr  # names the snapshot
    sandbox.advance_clock(HOUR)
    ok(run_target(tmp_path, config, rows(range(2000)), name="clean"))
    assert members(sandbox)[EMAIL] == emails(range(2000))


# -- rules and columns change; Ads Manager edits -------------------------------------------


def test_partner_mirror_deletes_digests_of_old_rules_and_users_who_leave_later(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    config = config_for(sandbox, partner_mapping())
    ok(run_target(tmp_path, config, rows(range(1500)), name="basic"))
    tiktok_rules = {**config, "email_normalization": "tiktok"}
    ok(run_target(tmp_path, tiktok_rules, rows(range(1500)), name="tiktok"))
    assert members(sandbox)[EMAIL] == emails(range(1500), "tiktok")  # no stale digest left
    ok(run_target(tmp_path, tiktok_rules, rows(range(1200)), name="leave"))
    assert members(sandbox)[EMAIL] == emails(range(1200), "tiktok")


def test_partner_mirror_with_a_column_added_in_the_run_users_leave(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    config = config_for(sandbox, partner_mapping())
    ok(run_target(tmp_path, config, rows(range(1500)), name="email"))
    both = config_for(sandbox, partner_mapping(identifiers={EMAIL: "email", PHONE: "phone"}))
    ok(run_target(tmp_path, both, rows(range(1300), with_phone=True), name="phone"))
    assert members(sandbox) == {EMAIL: emails(range(1300)), PHONE: phones(range(1300))}


@pytest.mark.parametrize("wording", HISTORY_WORDINGS)
def test_an_edit_in_ads_manager_is_corrected_by_the_resync(
    sandbox: SandboxServer, tmp_path: Path, wording: str
) -> None:
    sandbox.app.config.history_wording = wording  # TikTok's words are undocumented
    config = config_for(sandbox, file_mapping(), resync_days=1)
    created = ok(run_target(tmp_path, config, rows(range(2000)), name="create"))
    assert entry_of(created)["next_resync"] == "in 1 day"
    audience_id = entry_of(created)["audience_id"]
    stranger, dropped = sha256("stranger@example.com"), sha256(email(7))
    sandbox.edit_members(audience_id, EMAIL, add=[stranger], remove=[dropped])
    sandbox.advance_clock(HOUR)
    diffed = ok(run_target(tmp_path, config, rows(range(2000)), name="diff"))
    assert entry_of(diffed)["action"] == "NONE"  # the API cannot show the edit
    assert stranger in members(sandbox)[EMAIL]
    # A day later on TikTok's clock the resync is due and TikTok allows a REPLACE.
    sandbox.advance_clock(DAY)
    resynced = ok(run_target(tmp_path, config, rows(range(2000)), name="resync"))
    entry = entry_of(resynced)
    assert (entry["action"], entry["mirror"], entry["mirror_reason"]) == (
        "REPLACE",
        "full",
        "resync (resync_days)",
    )
    assert members(sandbox)[EMAIL] == emails(range(2000))
    assert "next full resync in 1 day" in resynced.stderr


@pytest.mark.parametrize("wording", HISTORY_WORDINGS)
def test_a_damaged_snapshot_warns_and_uploads_in_full_without_stopping_others(
    sandbox: SandboxServer, tmp_path: Path, wording: str
) -> None:
    sandbox.app.config.history_wording = wording  # TikTok's words are undocumented
    config = base_config(
        sandbox,
        advertiser_ids=[ADV1, ADV2],
        audiences=[file_mapping()],
        max_removal_percent=100,
    )
    ok(run_target(tmp_path, config, rows(range(1500)), name="create"))
    (snap,) = [p for p in (tmp_path / "xdg-data").rglob("EMAIL_SHA256.snap") if ADV1 in str(p)]
    data = bytearray(snap.read_bytes())
    data[1030] ^= 0xFF  # one flipped bit in the body: the checksum no longer matches
    snap.write_bytes(bytes(data))
    sandbox.advance_clock(DAY + HOUR)  # TikTok allows the REPLACE that the full upload needs
    run = ok(run_target(tmp_path, config, rows(range(100, 1600)), name="damaged"))
    assert (
        "is corrupt (checksum mismatch); it is not trusted, the audience is uploaded in full"
        in run.stderr
    )
    entries = {e["advertiser_id"]: e for e in entry_of_all(run)}
    assert (entries[ADV1]["action"], entries[ADV2]["action"]) == ("REPLACE", "APPEND+REMOVE")
    for adv in (ADV1, ADV2):
        assert members(sandbox, adv=adv)[EMAIL] == emails(range(100, 1600))


def entry_of_all(run: Run) -> list[dict[str, Any]]:
    return list(stream_report(run, "users")["audiences"])


# -- guards ---------------------------------------------------------------------------------


def test_a_mirror_of_an_incrementally_replicated_stream_is_left_unchanged(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    other = {"stream": "vips", "audience_name": "VIPs", "identifiers": {EMAIL: "email"}}
    config = base_config(sandbox, advertiser_ids=[ADV1], audiences=[file_mapping(), other])
    ok(run_target(tmp_path, config, rows(range(3000)), name="full"))
    vips = [
        schema_msg("vips", ["email"]),
        *(record_msg("vips", {"id": i, "email": email(i)}) for i in range(1200)),
    ]
    incremental = rows(range(2), bookmark_properties=["updated_at"])
    run = failed(run_target(tmp_path, config, vips + incremental, name="incremental"))
    assert members(sandbox)[EMAIL] == emails(range(3000))  # unchanged
    assert members(sandbox, "VIPs")[EMAIL] == emails(range(1200))  # the other one delivered
    assert (
        run.stderr.strip()
        .splitlines()[-1]
        .endswith(
            "1 audience not delivered: 'Newsletter' in advertiser 7000000000000000001 (stream "
            "'users' is replicated incrementally (bookmark_properties updated_at), so it is not "
            "the whole set a mirror needs); the others were delivered and no STATE was emitted; "
            "the summary above says what to do"
        )
    )
    assert (
        "not delivered: stream 'users' is replicated incrementally (bookmark_properties "
        "updated_at), so it is not the whole set a mirror needs; select it with full-table "
        "replication, or give it sync_mode append or incremental."
    ) in run.stderr


@pytest.mark.parametrize("mapping", [file_mapping(), partner_mapping()], ids=["file", "partner"])
def test_max_removal_percent_leaves_the_audience_unchanged(
    sandbox: SandboxServer, tmp_path: Path, mapping: dict[str, Any]
) -> None:
    config = config_for(sandbox, mapping)
    ok(run_target(tmp_path, config, rows(range(4000)), name="create"))
    sandbox.advance_clock(HOUR)
    run = failed(run_target(tmp_path, config, rows(range(1900)), name="partial"))
    assert members(sandbox)[EMAIL] == emails(range(4000))
    assert (
        "this run would remove 2,100 of its 4,000 users (52%), more than max_removal_percent "
        "(50%); check the source query; if the removal is meant, raise max_removal_percent "
        "for one run"
    ) in run.stderr
    meant = {**config, "max_removal_percent": 60}
    ok(run_target(tmp_path, meant, rows(range(1900)), name="meant"))
    assert members(sandbox)[EMAIL] == emails(range(1900))


def test_a_dry_run_emits_no_state(sandbox: SandboxServer, tmp_path: Path) -> None:
    config = {
        **config_for(sandbox, file_mapping()),
        "dry_run": True,
        "output_dir": str(tmp_path / "out"),
    }
    run = run_target(tmp_path, config, rows(range(10)), name="dry")
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout == ""
    # With a token it reads TikTok (issue 30), and sends nothing.
    assert {c["method"] for c in sandbox.calls()} == {"GET"}


def test_append_into_a_new_audience_sends_no_remove(sandbox: SandboxServer, tmp_path: Path) -> None:
    mapping = file_mapping(sync_mode="append", remove_column="gone")
    config = config_for(sandbox, mapping)
    head = schema_msg("users", ["email", "gone"])
    body = [
        record_msg("users", {"id": i, "email": email(i), "gone": i >= 1500}) for i in range(1600)
    ]
    run = ok(run_target(tmp_path, config, [head, *body, state_msg({"users": "done"})], name="new"))
    assert sandbox.calls(UPDATE) == []  # CREATE only: no operation spent on strangers
    assert entry_of(run)["action"] == "CREATE"
    assert members(sandbox)[EMAIL] == emails(range(1500))


# -- concurrency ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mapping",
    [
        file_mapping(),
        partner_mapping(),
        file_mapping(sync_mode="append"),
        file_mapping(sync_mode="incremental"),
    ],
    ids=["mirror", "partner-mirror", "append", "incremental"],
)
def test_four_runs_at_once_make_one_audience(
    sandbox: SandboxServer, tmp_path: Path, mapping: dict[str, Any]
) -> None:
    config = config_for(sandbox, mapping)
    procs = []
    for n in range(4):
        work = tmp_path / f"run{n}"
        work.mkdir()
        (work / "config.json").write_text(json.dumps(config))
        (work / "input.jsonl").write_text(singer_lines(rows(range(1500))))
        env = {**os.environ, "TMPDIR": str(work), "XDG_DATA_HOME": str(tmp_path / "xdg-data")}
        with (work / "input.jsonl").open() as stdin:
            procs.append(
                subprocess.Popen(
                    [CLI, "--config", str(work / "config.json")],
                    stdin=stdin,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    cwd=work,
                    env=env,
                )
            )
    results = [p.communicate(timeout=300) for p in procs]  # all four were started first
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err[-3000:]
    named = [a for a in sandbox.audiences(ADV1) if a["name"] == "Newsletter"]
    assert len(named) == 1
    assert {k: set(v) for k, v in named[0]["members"].items() if v} == {EMAIL: emails(range(1500))}


@pytest.mark.parametrize("mapping", [file_mapping(), partner_mapping()], ids=["file", "partner"])
def test_sigterm_during_a_mirror_sends_nothing_and_exits_143(
    sandbox: SandboxServer, tmp_path: Path, mapping: dict[str, Any]
) -> None:
    proc, _ = start_target(tmp_path, config_for(sandbox, mapping))
    assert proc.stdin is not None and proc.stderr is not None
    proc.stdin.write(singer_lines(rows(range(1500))[:-1]))  # the set is not complete yet
    proc.stdin.flush()
    deadline = time.monotonic() + 60
    while not sandbox.calls("/dmp/custom_audience/list/") and time.monotonic() < deadline:
        time.sleep(0.05)  # the records are being read once the preflight is done
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr[-3000:]
    assert stdout == "" and "Traceback" not in stderr
    assert "Received signal 15: stopping without delivering what is pending" in stderr
    assert sandbox.audiences(ADV1) == []  # nothing half-read became an audience
