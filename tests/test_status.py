"""tiktok-audiences-status (issue 19): every configured audience read back, exit 1 on trouble.

The real console script against the sandbox after real runs of the target; the sandbox's admin
API deletes and expires audiences the way a person or TikTok would.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from target_tiktok_audiences.sandbox.server import SandboxServer
from target_tiktok_audiences.snapshot import Snapshot, SnapshotKey, SnapshotStore, scope_for

from helpers import (
    ADV1,
    ADV2,
    TOKEN,
    audiences_by_name,
    base_config,
    cli,
    record_msg,
    run_target,
    schema_msg,
    sha256,
    state_msg,
)

STATUS = str(Path(sys.executable).parent / "tiktok-audiences-status")
SEGMENTS = {
    "stream": "segments",
    "audience_name": "Tier {value}",
    "audience_name_column": "segment",
    "identifiers": {"EMAIL_SHA256": "email"},
}
NEWSLETTER = {
    "stream": "users",
    "audience_name": "Newsletter",
    "identifiers": {"EMAIL_SHA256": "email"},
}


def messages(with_bronze: bool) -> list[dict[str, Any]]:
    segment = {i: "gold" if i < 1200 else "silver" for i in range(2400)}
    if with_bronze:
        segment.update({i: "bronze" for i in range(3000, 3010)})
    return [
        schema_msg("segments", ["email", "segment"]),
        *(
            record_msg("segments", {"id": i, "email": f"m{i}@example.com", "segment": s})
            for i, s in segment.items()
        ),
        schema_msg("users", ["email"]),
        *(record_msg("users", {"id": i, "email": f"u{i}@example.com"}) for i in range(1100)),
        state_msg({"done": True}),
    ]


def status(
    tmp_path: Path, config: dict[str, Any], *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "status-config.json"
    path.write_text(json.dumps(config))
    return cli.run(
        "tiktok-audiences-status",
        ["--config", str(path), *args],
        timeout=120,
        env={**os.environ, "XDG_DATA_HOME": str(tmp_path / "xdg-data"), **(env or {})},
    )


def iso_utc(sandbox_time: str) -> str:
    """The sandbox's "YYYY-MM-DD HH:MM:SS" (UTC) as the status prints it."""
    return datetime.fromisoformat(sandbox_time).replace(tzinfo=timezone.utc).isoformat()


def by_key(result: subprocess.CompletedProcess[str]) -> dict[tuple[str, str], dict[str, Any]]:
    data = json.loads(result.stdout)
    return {(a["advertiser_id"], a["name"]): a for a in data["audiences"]}


def test_status_after_a_good_run_and_after_trouble(sandbox: SandboxServer, tmp_path: Path) -> None:
    sandbox.app.config.match_rate = 1.0  # counts uploaded users; the matched floor: test_sandbox
    sandbox.app.config.history_wording = "lower"  # one spelling of the undocumented words
    config = base_config(sandbox, audiences=[SEGMENTS, NEWSLETTER])
    run = run_target(tmp_path, config, messages(with_bronze=False), name="good")
    assert run.returncode == 0, run.stderr[-2000:]
    calls_before = len(sandbox.calls())

    good = status(tmp_path, config, "--format", "json")
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["healthy"] is True
    got = by_key(good)
    assert sorted(got) == sorted(
        (adv, name) for adv in (ADV1, ADV2) for name in ("Newsletter", "Tier gold", "Tier silver")
    )
    for (adv, name), health in got.items():
        audience = audiences_by_name(sandbox, adv)[name]
        size = 1100 if name == "Newsletter" else 1200
        assert (health["audience_id"], health["size"], health["valid"]) == (
            audience["audience_id"],
            size,
            True,
        )
        assert (health["type"], health["contract"]) == ("customer_file", "EMAIL_SHA256")
        # TikTok's own word, as the sandbox's history spells it (lowercase here); no state:
        # TikTok documents none.
        assert health["last_operation"] == "create"
        assert "last_operation_state" not in health
        assert health["tiktok_error"] is None
        assert health["snapshot_size"] == size and health["snapshot_age_hours"] < 1
        # ISO 8601 with the zone (TikTok's times are read as UTC).
        assert health["expires_at"] == iso_utc(audience["expired_time"])
        assert health["last_operation_at"].endswith("+00:00")
        assert health["problems"] == [] and health["size_gap"] is None
    assert json.loads(good.stdout)["source"] == "the audiences setting"
    # The table shows the same, one line per audience.
    table = status(tmp_path, config)
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[0].split()[:4] == ["stream", "audience", "advertiser", "id"]
    gold = [line for line in lines if "Tier gold" in line and ADV1 in line]
    assert len(gold) == 1 and "1,200" in gold[0] and "1,200 (0.0 h old)" in gold[0]
    assert gold[0].rstrip().endswith("ok")
    assert lines[-1] == "Audiences from the audiences setting."
    # Status only reads: list and get calls.
    assert {c["path"] for c in sandbox.calls()[calls_before:]} == {
        "/dmp/custom_audience/list/",
        "/dmp/custom_audience/get/",
    }

    # Trouble: bronze appears with 10 users (invalid), Newsletter is deleted in ADV2, gold
    # expired in ADV1, silver expires in 20 days in ADV2.
    sandbox.advance_clock(20 * 60)
    run = run_target(tmp_path, config, messages(with_bronze=True), name="bronze")
    assert run.returncode == 0, run.stderr[-2000:]
    ids = {
        adv: {n: a["audience_id"] for n, a in audiences_by_name(sandbox, adv).items()}
        for adv in (ADV1, ADV2)
    }
    sandbox.delete_audience(ids[ADV2]["Newsletter"])
    sandbox.expire_audience(ids[ADV1]["Tier gold"], in_days=-1)  # expired yesterday
    sandbox.expire_audience(ids[ADV2]["Tier silver"], in_days=20.5)
    bad = status(tmp_path, config, "--format", "json")
    assert bad.returncode == 1
    got = by_key(bad)
    problems = {key: h["problems"] for key, h in got.items() if h["problems"]}
    invalid = (
        "invalid: not usable for targeting (fewer than 1,000 matched users, or TikTok is still "
        "matching)"
    )
    assert problems == {
        (ADV1, "Tier bronze"): [invalid],
        (ADV2, "Tier bronze"): [invalid],
        (ADV2, "Newsletter"): ["missing: no audience of this name in TikTok"],
        (ADV1, "Tier gold"): ["expired: TikTok keeps it at size 0; recreate it"],
        (ADV2, "Tier silver"): ["expiring in 20 days"],
    }
    assert got[ADV1, "Tier gold"]["size"] == 0
    assert got[ADV1, "Tier bronze"]["size"] == 10
    assert got[ADV2, "Newsletter"]["audience_id"] is None
    assert json.loads(bad.stdout)["healthy"] is False
    assert (
        f"Audience 'Tier gold' in advertiser {ADV1} (stream 'segments'): expired: TikTok keeps "
        "it at size 0; recreate it" in bad.stderr
    )
    assert "Traceback" not in bad.stderr


def test_status_config_errors_and_tiktok_failures(sandbox: SandboxServer, tmp_path: Path) -> None:
    config = base_config(sandbox, audiences=[NEWSLETTER])
    result = status(tmp_path, {**config, "audience": []})
    assert result.returncode == 2
    assert "audience: unknown setting; did you mean 'audiences'?" in result.stderr
    # A revoked token: one line, exit 1 (an orchestrator alerts), no traceback.
    sandbox.revoke_token(TOKEN)
    result = status(tmp_path, config)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Listing custom audiences for advertiser" in result.stderr
    assert TOKEN not in result.stderr


def test_status_reads_settings_from_the_environment(sandbox: SandboxServer, tmp_path: Path) -> None:
    """--config ENV: how Meltano hands settings to a plugin command."""
    sandbox.app.config.match_rate = 1.0  # counts uploaded users; the matched floor: test_sandbox
    config = base_config(sandbox, advertiser_ids=[ADV1], audiences=[NEWSLETTER])
    users = [m for m in messages(with_bronze=False) if m.get("stream") != "segments"]
    run = run_target(tmp_path, config, users, name="users")
    assert run.returncode == 0, run.stderr[-2000:]
    env = {
        f"TARGET_TIKTOK_AUDIENCES_{k.upper()}": v if isinstance(v, str) else json.dumps(v)
        for k, v in config.items()
    }
    result = subprocess.run(
        [STATUS, "--config", "ENV", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "XDG_DATA_HOME": str(tmp_path / "xdg-data"), **env},
    )
    assert result.returncode == 0, result.stderr
    (health,) = json.loads(result.stdout)["audiences"]
    assert (health["name"], health["size"], health["snapshot_size"]) == ("Newsletter", 1100, 1100)


def test_tiktoks_word_of_a_failure_is_shown_and_alerts(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    """TikTok accepted the files, then reports an error (audience_details.error_msg, issue 26):
    the run's summary says so instead of "usable", and the status exits 1 with TikTok's words."""
    sandbox.app.config.match_rate = 1.0  # counts uploaded users; the matched floor: test_sandbox
    config = base_config(sandbox, advertiser_ids=[ADV1], audiences=[NEWSLETTER])
    users = [m for m in messages(with_bronze=False) if m.get("stream") != "segments"]
    run = run_target(tmp_path, config, users, name="users")
    assert run.returncode == 0, run.stderr[-2000:]
    (audience,) = sandbox.audiences(ADV1)
    words = "The file could not be matched"
    sandbox.fail_audience(audience["audience_id"], words)
    result = status(tmp_path, config, "--format", "json")
    assert result.returncode == 1
    (health,) = json.loads(result.stdout)["audiences"]
    assert health["tiktok_error"] == words
    assert health["problems"] == [f'TikTok reports an error: "{words}"']
    # The next run reads the same word back and never calls the audience usable beside it.
    again = run_target(tmp_path, config, users, name="again")
    assert again.returncode == 0, again.stderr[-2000:]
    (line,) = [
        x
        for x in again.stderr.splitlines()
        if "Audience 'Newsletter' in advertiser" in x and "delivered" in x
    ]
    assert f'TikTok reports an error: "{words}"' in line and "usable" not in line
    assert (
        f"Audience 'Newsletter' in advertiser {ADV1}: TikTok accepted the upload but reports an "
        f'error: "{words}". Check the audience in TikTok Ads Manager' in again.stderr
    )


def test_status_without_audiences_reads_what_the_target_delivered(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    """The README's quick start: no `audiences`, columns found by name (issue 29)."""
    sandbox.app.config.match_rate = 1.0
    config = base_config(sandbox)
    assert "audiences" not in config
    none_yet = status(tmp_path, config, "--format", "json")
    assert none_yet.returncode == 0, none_yet.stderr
    store = f"{tmp_path / 'xdg-data' / 'target-tiktok-audiences' / 'snapshots'}"
    source = f"the snapshot store {store} (audiences this target delivered)"
    assert json.loads(none_yet.stdout) == {
        "healthy": True,
        "source": source,
        "audiences": [],
        "note": "TikTok counts identifiers, not users, in a partner audience's size",
    }
    assert none_yet.stderr == (
        f"tiktok-audiences-status: no audience found in {source}: the target has not delivered "
        "one there yet (append and incremental keep no snapshots, and the operations ledger "
        "holds two days of updates: name their streams in audiences to check them)\n"
    )
    users = [m for m in messages(with_bronze=False) if m.get("stream") != "segments"]
    run = run_target(tmp_path, config, users, name="quick-start")
    assert run.returncode == 0, run.stderr[-2000:]
    result = status(tmp_path, config, "--format", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["healthy"], data["source"]) == (True, source)
    assert [(a["stream"], a["name"], a["advertiser_id"], a["size"]) for a in data["audiences"]] == [
        (None, "users", ADV1, 1100),
        (None, "users", ADV2, 1100),
    ]
    table = status(tmp_path, config)
    assert table.returncode == 0 and table.stderr == ""
    assert table.stdout.splitlines()[-1] == f"Audiences from {source}."
    # Deleted in Ads Manager: still known from its snapshot, so missing (exit 1).
    audience_id = audiences_by_name(sandbox, ADV2)["users"]["audience_id"]
    sandbox.delete_audience(audience_id)
    gone = status(tmp_path, config, "--format", "json")
    assert gone.returncode == 1
    assert by_key(gone)[ADV2, "-"]["problems"] == [
        f"missing: audience id {audience_id} has a snapshot but is not in TikTok"
    ]
    assert f"Audience '-' in advertiser {ADV2}: missing: audience id {audience_id}" in gone.stderr


def snapshot_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "xdg-data" / "target-tiktok-audiences").rglob("*.snap"))


def test_a_damaged_snapshot_is_unhealthy(sandbox: SandboxServer, tmp_path: Path) -> None:
    """Issue 27: every snapshot damaged used to print "healthy": true and exit 0."""
    sandbox.app.config.match_rate = 1.0
    config = base_config(sandbox, advertiser_ids=[ADV1], audiences=[NEWSLETTER])
    users = [m for m in messages(with_bronze=False) if m.get("stream") != "segments"]
    assert run_target(tmp_path, config, users, name="users").returncode == 0
    (snap,) = snapshot_files(tmp_path)
    snap.write_bytes(snap.read_bytes()[:-10])  # truncated
    result = status(tmp_path, config, "--format", "json")
    assert result.returncode == 1
    (health,) = json.loads(result.stdout)["audiences"]
    assert health["problems"] == [
        f"snapshot damaged: snapshot {snap} is unreadable: truncated; the next run uploads the "
        "whole set (a customer file: one REPLACE)"
    ]
    assert json.loads(result.stdout)["healthy"] is False
    # Without audiences too: the audience is still listed, and unhealthy.
    quick = {k: v for k, v in config.items() if k != "audiences"}
    assert status(tmp_path, quick).returncode == 1


def test_a_snapshot_url_that_is_a_file_is_a_config_error(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    afile = tmp_path / "snapshots.txt"
    afile.write_text("not a folder\n")
    config = base_config(sandbox, snapshot_url=str(afile), audiences=[NEWSLETTER])
    result = status(tmp_path, config)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"tiktok-audiences-status: config: snapshot_url {afile}: is a file, not a folder\n"
    )


def test_a_size_far_from_the_snapshot_is_flagged(sandbox: SandboxServer, tmp_path: Path) -> None:
    """Issue 27: an edit in Ads Manager is named by status (and the run summary) before the
    resync corrects it. A customer file: more users than sent; a partner: fewer."""
    sandbox.app.config.match_rate = 1.0
    partner = {**NEWSLETTER, "stream": "members", "audience_name": "Members"}
    partner["audience_type"] = "partner"
    config = base_config(sandbox, advertiser_ids=[ADV1], audiences=[NEWSLETTER, partner])
    users = [
        schema_msg("users", ["email"]),
        *(record_msg("users", {"id": i, "email": f"u{i}@example.com"}) for i in range(1100)),
        schema_msg("members", ["email"]),
        *(record_msg("members", {"id": i, "email": f"p{i}@example.com"}) for i in range(1500)),
        state_msg({"done": True}),
    ]
    assert run_target(tmp_path, config, users, name="first").returncode == 0
    ids = {n: a["audience_id"] for n, a in audiences_by_name(sandbox, ADV1).items()}
    strangers = [sha256(f"stranger{i}@example.com") for i in range(200)]
    sandbox.edit_members(ids["Newsletter"], "EMAIL_SHA256", add=strangers)
    gone = [sha256(f"p{i}@example.com") for i in range(300)]
    sandbox.edit_members(ids["Members"], "EMAIL_SHA256", remove=gone)
    result = status(tmp_path, config, "--format", "json")
    assert result.returncode == 0, result.stderr  # a note, not a failure
    got = by_key(result)
    newsletter = got[ADV1, "Newsletter"]
    root = tmp_path / "xdg-data" / "target-tiktok-audiences" / "snapshots"
    store = SnapshotStore(str(root), scope=scope_for(sandbox.base_url))
    (snap,) = [store.read(SnapshotKey(ADV1, ids["Newsletter"], "EMAIL_SHA256"))]
    assert isinstance(snap, Snapshot)
    due = (datetime.fromisoformat(snap.header.full_at) + timedelta(days=7)).date().isoformat()
    assert newsletter["next_resync"] == due
    assert newsletter["size_gap"] == (
        "TikTok reports 1,300 where the target sent 1,100 (18% more): likely edited in Ads "
        f"Manager; the next full resync, due {due} (resync_days), corrects it"
    )
    assert got[ADV1, "Members"]["size_gap"] == (
        "TikTok reports 1,200 where the target sent 1,500 (20% fewer): likely edited in Ads "
        "Manager; the next run sends only its difference against the snapshot; delete the "
        "snapshot to send the whole set"
    )
    table = status(tmp_path, config).stdout.splitlines()
    assert f"Audience 'Newsletter' in advertiser {ADV1}: {newsletter['size_gap']}." in table
    # The next run's summary flags the same gaps, beside what TikTok reports.
    again = run_target(tmp_path, config, users, name="again")
    assert again.returncode == 0, again.stderr[-3000:]
    lines = [ln.split(" | ")[-1] for ln in again.stderr.splitlines()]
    (line,) = [ln for ln in lines if ln.startswith(f"Audience 'Newsletter' in advertiser {ADV1}:")]
    assert line.startswith(
        f"Audience 'Newsletter' in advertiser {ADV1}: +0 \u22120 \u2192 1,100; delivered, "
        "nothing to change, id "
    ), line
    # TikTok's word for the last operation, then the gap (the no-history spelling shows "-").
    assert re.search(
        r"TikTok reports size 1,300, usable, last operation (-|[^;]+ at \S+ \S+ UTC); TikTok "
        r"reports 1,300 where the target sent 1,100 \(18% more\): likely edited in Ads Manager: "
        r"the next full resync \(in 7 days\) corrects it; next full resync in 7 days\.$",
        line,
    ), line
    (line,) = [ln for ln in lines if ln.startswith(f"Audience 'Members' in advertiser {ADV1}:")]
    assert (
        "TikTok reports 1,200 where the target sent 1,500 (20% fewer): likely edited in Ads "
        "Manager: " in line
    ), line


def test_help_documents_the_format(tmp_path: Path) -> None:
    result = subprocess.run([STATUS, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "--format {table,json}" in result.stdout
    assert (
        " ".join(result.stdout.split()).count(
            "--format {table,json} table (the default, for a person) or json (for a program): "
            "see below"
        )
        == 1
    )
    assert "type (customer_file | partner), contract, size" in result.stdout
    assert "expires_at and last_operation_at (ISO 8601, UTC)" in result.stdout


def test_status_without_audiences_finds_append_audiences_in_the_ledger(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    """Append keeps no snapshots: an audience it updated is known from the operations ledger
    (issue 29: the snapshot store and the ledger say what this target delivered)."""
    sandbox.app.config.match_rate = 1.0
    config = base_config(sandbox, advertiser_ids=[ADV1], sync_mode="append")
    users = [m for m in messages(with_bronze=False) if m.get("stream") != "segments"]
    created = run_target(tmp_path, config, users, name="create")
    assert created.returncode == 0, created.stderr[-2000:]
    # Created only: no update operation yet, no snapshot either.
    assert status(tmp_path, config, "--format", "json").returncode == 0
    more = [
        schema_msg("users", ["email"]),
        *(record_msg("users", {"id": i, "email": f"u{i}@example.com"}) for i in range(1100, 1150)),
        state_msg({"done": 2}),
    ]
    appended = run_target(tmp_path, config, more, name="append")
    assert appended.returncode == 0, appended.stderr[-2000:]
    result = status(tmp_path, config, "--format", "json")
    assert result.returncode == 0, result.stderr
    audience_id = audiences_by_name(sandbox, ADV1)["users"]["audience_id"]
    assert [
        (a["name"], a["audience_id"], a["size"]) for a in json.loads(result.stdout)["audiences"]
    ] == [("users", audience_id, 1150)]
