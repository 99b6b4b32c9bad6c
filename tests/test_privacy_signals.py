"""Nothing leaks (no raw identifier, no token, at any log level) and signals stop cleanly."""

from __future__ import annotations

import json
import signal
import time

import pytest

from helpers import (
    ADV1,
    TOKEN,
    base_config,
    dry_run_dir,
    record_msg,
    run_target,
    schema_msg,
    singer_lines,
    start_target,
    state_msg,
)

RAW = {
    "email": "Secret.Person+vip@Example.com",
    "phone": "(415) 555-0199",
    "idfa": "6D92078A-8246-4BA4-AE5B-76104861E7DC",
}
# Normalised forms are just as personal as the raw ones.
FORMS = [
    *RAW.values(),
    "secret.person+vip@example.com",
    "+14155550199",
    "4155550199",
    "6d92078a-8246-4ba4-ae5b-76104861e7dc",
    "not-an-email-but@private",
]
BAD = {"email": "not-an-email-but@private", "phone": "private-phone-12", "idfa": "nope"}


def leaks(text: str) -> list[str]:
    return [form for form in [*FORMS, TOKEN, *BAD.values()] if form.lower() in text.lower()]


def messages(stream: str) -> list[dict]:
    return [
        schema_msg(stream, list(RAW)),
        record_msg(stream, {"id": 1, **RAW}),
        record_msg(stream, {"id": 2, **BAD}),
        state_msg({"s": 1}),
    ]


@pytest.mark.parametrize("mode", ["mirror", "incremental", "append"])
def test_no_raw_identifier_or_token_in_any_output_at_debug(sandbox, tmp_path, mode):
    config = base_config(sandbox, advertiser_ids=[ADV1], sync_mode=mode)
    run = run_target(tmp_path, config, messages("users"), env={"LOGLEVEL": "DEBUG"})
    assert run.returncode == 0, run.stderr[-3000:]
    assert "DEBUG" in run.stderr
    assert leaks(run.output) == []
    assert leaks(json.dumps(run.report)) == []


def test_no_leak_when_tiktok_fails(sandbox, tmp_path):
    config = base_config(sandbox, advertiser_ids=[ADV1], max_retries=1)
    sandbox.inject("http_503", rate=1.0, paths=["/dmp/custom_audience/file/upload/"])
    run = run_target(tmp_path, config, messages("users"), env={"LOGLEVEL": "DEBUG"})
    assert run.returncode != 0
    assert run.states == []
    assert leaks(run.output) == []
    assert run.report["status"] == "failed"
    assert leaks(json.dumps(run.report)) == []
    assert list((tmp_path / "run").glob("target-tiktok-audiences-*")) == []  # spool removed


def test_dry_run_plan_and_files_hold_digests_only(tmp_path):
    out = tmp_path / "out"
    run = run_target(
        tmp_path,
        {
            "advertiser_ids": [ADV1],
            "dry_run": True,
            "output_dir": str(out),
            "sync_mode": "incremental",
            "default_phone_region": "US",
        },
        messages("users"),
        env={"LOGLEVEL": "DEBUG"},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    written = "".join(p.read_text() for p in out.rglob("*") if p.is_file())
    assert "6d92078a" not in written.replace("0c2074fb", "")  # the IDFA itself, not its MD5
    assert leaks(written) == []
    plan = json.loads((dry_run_dir(out) / "plan.json").read_text())
    assert [c["call"] for c in plan["calls"]] == ["create_partner", "mapping"]


def test_spool_files_are_private_and_removed(sandbox, tmp_path):
    work = tmp_path / "run"
    config = base_config(sandbox, advertiser_ids=[ADV1])
    run = run_target(tmp_path, config, messages("users"))
    assert run.returncode == 0
    assert list(work.glob("target-tiktok-audiences-*")) == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_mid_run_delivers_nothing_and_cleans_up(sandbox, tmp_path, signum):
    config = base_config(sandbox, advertiser_ids=[ADV1])
    proc, work = start_target(tmp_path, config)
    assert proc.stdin is not None
    rows = [record_msg("users", {"id": i, "email": f"u{i}@x.io"}) for i in range(5000)]
    proc.stdin.write(singer_lines([schema_msg("users", ["email"]), *rows, state_msg(1)]))
    proc.stdin.flush()
    deadline = time.monotonic() + 30
    # Spool files appear once records are being read; the private dir must be 0700.
    while not list(work.glob("target-tiktok-audiences-*/*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    (spool_dir,) = work.glob("target-tiktok-audiences-*")
    assert spool_dir.stat().st_mode & 0o777 == 0o700
    for spool in spool_dir.rglob("*"):
        assert spool.stat().st_mode & 0o777 == (0o700 if spool.is_dir() else 0o600), spool
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signum, stderr[-2000:]
    assert stdout == ""  # no STATE for undelivered records
    assert list(work.glob("target-tiktok-audiences-*")) == []
    assert sandbox.audiences(ADV1) == []
    report = json.loads((work / "report.json").read_text())
    assert report["status"] == "interrupted"
    assert "re-running is safe" in stderr
