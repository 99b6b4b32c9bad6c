"""helpers.cli runs the console script from a fork server (the imports paid once): a run there
ends exactly as the installed executable's run ends, line for line (issue 28: a suite that does
not wait)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from target_tiktok_audiences.sandbox.server import run_sandbox
from target_tiktok_audiences.testhooks import VARIABLE as FAULT

from helpers import (
    ADV1,
    base_config,
    cli,
    record_msg,
    sandbox_windows,
    schema_msg,
    sha256,
    state_msg,
)
from helpers import singer_lines as lines

VIP = {"stream": "vip", "audience_name": "VIP", "identifiers": {"EMAIL_SHA256": "email"}}
MESSAGES = lines(
    [
        schema_msg("vip", ["email"]),
        *(record_msg("vip", {"id": i, "email": f"v{i}@example.com"}) for i in range(1_200)),
        state_msg({"done": 1}),
    ]
)
_STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \| ")


def _said(stderr: str) -> list[str]:
    """The log lines without their time, and without the SDK's metrics (timings, pids)."""
    return [_STAMP.sub("", line) for line in stderr.splitlines() if "METRIC:" not in line]


def _run(tmp_path: Path, how: str, case: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv(cli.MODE_VARIABLE, how)
    work = tmp_path / how
    work.mkdir()
    with run_sandbox(work / "sandbox.db", **sandbox_windows()) as sandbox:
        config: dict[str, Any] = base_config(sandbox, advertiser_ids=[ADV1], audiences=[VIP])
        env = {"XDG_DATA_HOME": str(work / "xdg"), "TMPDIR": str(work)}
        if case == "bad-config":
            config["advertiser_ids"] = ["not-a-number"]
        if case == "killed":
            env[FAULT] = "kill:after:upload_file:1"
        (work / "config.json").write_text(json.dumps(config))
        done = cli.run(
            "target-tiktok-audiences",
            ["--config", "config.json"],
            input=MESSAGES,
            env={**os.environ, **env},
            cwd=work,
        )
        said = [line.replace(str(work), "<work>") for line in _said(done.stderr)]
        return {
            "returncode": done.returncode,
            "stdout": done.stdout,
            "said": said,
            "audiences": {
                a["name"]: {c: sorted(d) for c, d in sandbox.members(a["audience_id"]).items()}
                for a in sandbox.audiences(ADV1)
            },
        }


@pytest.mark.parametrize("case", ["delivered", "bad-config", "killed"])
def test_a_run_from_the_fork_server_ends_as_the_executables_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    executable = _run(tmp_path, "exec", case, monkeypatch)
    forked = _run(tmp_path, "fork", case, monkeypatch)
    assert forked == executable
    expected = {"delivered": 0, "bad-config": 1, "killed": -9}[case]
    assert forked["returncode"] == expected
    if case == "delivered":
        assert forked["stdout"] == '{"done": 1}\n'
        assert forked["audiences"] == {
            "VIP": {"EMAIL_SHA256": sorted(sha256(f"v{i}@example.com") for i in range(1_200))}
        }
