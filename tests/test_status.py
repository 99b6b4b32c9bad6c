"""tiktok-audiences-status (issue 19): every configured audience read back, exit 1 on trouble.

The real console script against the sandbox after real runs of the target; the sandbox's admin
API deletes and expires audiences the way a person or TikTok would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from target_tiktok_audiences.sandbox.server import SandboxServer

from helpers import (
    ADV1,
    ADV2,
    TOKEN,
    audiences_by_name,
    base_config,
    record_msg,
    run_target,
    schema_msg,
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
    return subprocess.run(
        [STATUS, "--config", str(path), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "XDG_DATA_HOME": str(tmp_path / "xdg-data"), **(env or {})},
    )


def by_key(result: subprocess.CompletedProcess[str]) -> dict[tuple[str, str], dict[str, Any]]:
    data = json.loads(result.stdout)
    return {(a["advertiser_id"], a["name"]): a for a in data["audiences"]}


def test_status_after_a_good_run_and_after_trouble(sandbox: SandboxServer, tmp_path: Path) -> None:
    sandbox.app.config.match_rate = 1.0  # counts uploaded users; the matched floor: test_sandbox
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
        assert health["type"] == "customer_file EMAIL_SHA256"
        # TikTok's own word, as the sandbox's history spells it this time (no state: TikTok
        # shows none); the rotation may give no history at all.
        assert health["last_operation"] in ("create", "CREATE", "Customer file uploaded", None)
        assert health["tiktok_error"] is None
        assert health["snapshot_size"] == size and health["snapshot_age_hours"] < 1
        assert health["expires_at"] == audience["expired_time"][:16]
        assert health["problems"] == []
    # The table shows the same, one line per audience.
    table = status(tmp_path, config)
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[0].split()[:4] == ["stream", "audience", "advertiser", "id"]
    gold = [line for line in lines if "Tier gold" in line and ADV1 in line]
    assert len(gold) == 1 and "1,200" in gold[0] and "1,200 (0.0 h old)" in gold[0]
    assert gold[0].rstrip().endswith("ok")
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
    no_mappings = {k: v for k, v in config.items() if k != "audiences"}
    result = status(tmp_path, no_mappings)
    assert result.returncode == 2
    assert result.stderr.startswith("tiktok-audiences-status: config: audiences: the status check")
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
