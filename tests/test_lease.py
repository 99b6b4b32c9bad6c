"""Fencing of object-storage locks (issue 27, item 2): a run paused past its lease sends nothing
more once it resumes, while the run that took the lock over delivers; one clean run is exact.

Snapshots live on S3 (moto in server mode). The lease is 2 s instead of 120 s
(testhooks.LEASE_VARIABLE) and the pause is the test hook's SIGSTOP at a chosen step, so the
test waits for the paused state, never for a clock.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from test_mirror_diff import s3_client, s3_endpoint, s3_env  # noqa: F401 - s3_endpoint: fixture

from target_tiktok_audiences.sandbox.server import SandboxServer, run_sandbox
from target_tiktok_audiences.testhooks import LEASE_VARIABLE
from target_tiktok_audiences.testhooks import VARIABLE as FAULT

from helpers import (
    ADV1,
    CLI,
    base_config,
    record_msg,
    run_target,
    schema_msg,
    sha256,
    singer_lines,
    state_msg,
)

LEASE = "2"
IDS = {"EMAIL_SHA256": "email"}
UPDATE = "/dmp/custom_audience/update/"


def email(i: int) -> str:
    return f"lease.{i}@example.com"


def messages(users: range | list[int], run: int) -> list[dict[str, Any]]:
    return [
        schema_msg("users", ["email"]),
        *(record_msg("users", {"id": i, "email": email(i)}) for i in users),
        state_msg({"run": run}),
    ]


def members(sandbox: SandboxServer) -> set[str]:
    (audience,) = [a for a in sandbox.audiences(ADV1) if a["name"] == "Leased"]
    return set(audience["members"].get("EMAIL_SHA256", []))


def stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[0] == "T"


def start_paused(tmp_path: Path, config: dict[str, Any], text: str, env: dict[str, str]) -> Any:
    """The CLI, its input given at once; returns once the test hook stopped it."""
    work = tmp_path / "paused"
    work.mkdir()
    (work / "config.json").write_text(
        json.dumps({**config, "report_path": str(work / "report.json")})
    )
    full = {**os.environ, "TMPDIR": str(work), "XDG_DATA_HOME": str(tmp_path / "xdg"), **env}
    proc = subprocess.Popen(
        [CLI, "--config", str(work / "config.json")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=work,
        env=full,
    )
    assert proc.stdin is not None
    proc.stdin.write(text)
    proc.stdin.close()
    proc.stdin = None  # communicate() must not touch it again
    deadline = time.monotonic() + 120
    while not stopped(proc.pid):
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "the run never reached its pause"
        time.sleep(0.05)
    return proc


@pytest.mark.parametrize("pause", ["pause:after:upload_file:1", "pause:before:in_flight:1"])
def test_a_run_paused_past_its_lease_sends_nothing_more(
    tmp_path: Path,
    s3_endpoint: str,  # noqa: F811 - the fixture imported above
    pause: str,
) -> None:
    bucket = f"lease-{pause.split(':')[2].replace('_', '-')}"
    s3_client(s3_endpoint).create_bucket(Bucket=bucket)
    env = {**s3_env(s3_endpoint), LEASE_VARIABLE: LEASE}
    with run_sandbox(
        tmp_path / "sandbox.db",
        min_audience_size=0,
        max_updates_per_day=0,
        update_processing_seconds=0,
    ) as sandbox:
        config = base_config(
            sandbox,
            advertiser_ids=[ADV1],
            audiences=[{"stream": "users", "audience_name": "Leased", "identifiers": IDS}],
            snapshot_url=f"s3://{bucket}/snapshots",
            max_removal_percent=100,
        )
        first = run_target(tmp_path, config, messages(range(10), 1), name="first", env=env)
        assert first.returncode == 0, first.stderr[-3000:]

        # A wants 0..14, and is paused (a frozen container) at `pause`, holding the lock.
        paused = start_paused(
            tmp_path, config, singer_lines(messages(range(15), 2)), {**env, FAULT: pause}
        )
        try:
            # B takes the lock once A's lease ran out, and delivers its own set.
            wanted = [*range(5), *range(20, 25)]
            second = run_target(tmp_path, config, messages(wanted, 3), name="second", env=env)
            assert second.returncode == 0, second.stderr[-3000:]
            assert second.states == [{"run": 3}]
            assert members(sandbox) == {sha256(email(i)) for i in wanted}
            updates = len(sandbox.calls(UPDATE))
        finally:
            paused.send_signal(signal.SIGCONT)
        out, err = paused.communicate(timeout=120)

        assert paused.returncode == 1, err[-3000:]
        assert out == ""  # no STATE
        assert "Traceback" not in err
        last = err.strip().splitlines()[-1].split(" | ", 3)[3]
        assert last == (
            f"1 audience not delivered: 'Leased' in advertiser {ADV1} (this run lost its lock "
            "on the audience and sent nothing more to it); no other audience was delivered in "
            "this run and no STATE was emitted; the summary above says what to do"
        )
        assert "its lease of 2 s ran out before it was renewed" in err
        assert len(sandbox.calls(UPDATE)) == updates  # A sent nothing after it resumed
        assert members(sandbox) == {sha256(email(i)) for i in wanted}

        clean = run_target(tmp_path, config, messages(wanted, 4), name="clean", env=env)
        assert clean.returncode == 0, clean.stderr[-3000:]
        assert clean.states == [{"run": 4}]
        assert members(sandbox) == {sha256(email(i)) for i in wanted}
