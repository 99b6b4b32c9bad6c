"""Test helpers: Singer messages, the real CLI run as a subprocess, and small oracles."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from target_tiktok_audiences.sandbox.server import SandboxServer

from helpers import cli

ADV1 = "7000000000000000001"
ADV2 = "7000000000000000002"
TOKEN = "sandbox-token"
CLI = str(Path(sys.executable).parent / "target-tiktok-audiences")
# Real seconds per second of TikTok's time in tests (conftest sets timescale's variable):
# durations in configs and sandbox rules are in TikTok's seconds.
SCALE = 0.05


def real(seconds: float) -> float:
    """The TikTok seconds that last `seconds` real seconds."""
    return seconds / SCALE


def sandbox_windows(**options: Any) -> dict[str, Any]:
    """SandboxServer options with the windows a run meets in passing (a new partner
    audience's warm-up, an update's processing) at 10 s of TikTok's time: longer than the
    sandbox's 2 s processing default, and half a real second, five times the client's usual
    gap between an APPEND and its next call, so runs still meet them (a window of fewer real
    seconds would be met less often: kinder)."""
    return {"partner_warmup_seconds": real(0.5), "update_processing_seconds": real(0.5), **options}


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def md5(value: str) -> str:
    return hashlib.md5(value.encode()).hexdigest()


def base_config(sandbox: SandboxServer, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "access_token": TOKEN,
        "advertiser_ids": [ADV1, ADV2],
        "api_base_url": sandbox.base_url,
        "default_phone_region": "US",
        # Short, bounded retries keep fault tests fast; the defaults are for production.
        "request_timeout": 2,
        "max_retries": 6,
        "max_retry_seconds": 60,
        # A lost create is looked up for this long before it is sent again (default 120 s).
        "create_confirm_seconds": 4,
        "partner_warmup_seconds": int(real(30)),
    }
    config.update(overrides)
    return config


# -- Singer messages ------------------------------------------------------------------------


def schema_msg(stream: str, properties: Iterable[str], key: str | None = "id") -> dict:
    props: dict[str, Any] = {p: {"type": ["string", "null"]} for p in properties}
    if key:
        props[key] = {"type": ["integer", "string"]}
    return {
        "type": "SCHEMA",
        "stream": stream,
        "schema": {"type": "object", "properties": props},
        "key_properties": [key] if key else [],
    }


def record_msg(stream: str, record: dict) -> dict:
    return {"type": "RECORD", "stream": stream, "record": record}


def state_msg(value: Any) -> dict:
    return {"type": "STATE", "value": value}


def singer_lines(messages: Iterable[dict]) -> str:
    return "".join(json.dumps(m) + "\n" for m in messages)


# -- running the CLI ------------------------------------------------------------------------


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    report: dict | None

    @property
    def states(self) -> list[Any]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_target(
    tmp_path: Path,
    config: dict[str, Any],
    messages: Iterable[dict] | str,
    *,
    timeout: float = 300,
    name: str = "run",
    env: dict[str, str] | None = None,
) -> Run:
    """Run the console script (helpers.cli) with a config file and the messages on stdin."""
    work = tmp_path / name
    work.mkdir(parents=True, exist_ok=True)
    config = {"report_path": str(work / "report.json"), **config}
    config_path = work / "config.json"
    config_path.write_text(json.dumps(config))
    data = messages if isinstance(messages, str) else singer_lines(messages)
    report_path = Path(config["report_path"])
    report_path.unlink(missing_ok=True)
    # Snapshots go to the user data dir by default: one per test, shared by its runs.
    user_data = tmp_path / "xdg-data"
    env = {**os.environ, "TMPDIR": str(work), "XDG_DATA_HOME": str(user_data), **(env or {})}
    proc = cli.run(
        "target-tiktok-audiences",
        ["--config", str(config_path)],
        input=data,
        timeout=timeout,
        cwd=work,
        env=env,
    )
    report = json.loads(report_path.read_text()) if report_path.exists() else None
    return Run(proc.returncode, proc.stdout, proc.stderr, report)


def audiences_by_name(sandbox: SandboxServer, advertiser_id: str) -> dict[str, dict]:
    return {a["name"]: a for a in sandbox.audiences(advertiser_id)}


def stream_report(run: Run, stream: str) -> dict:
    assert run.report is not None, run.stderr[-2000:]
    return next(s for s in run.report["streams"] if s["stream"] == stream)


def start_target(tmp_path: Path, config: dict[str, Any]) -> tuple[subprocess.Popen[str], Path]:
    """Start the CLI with stdin open (signal and timing tests)."""
    work = tmp_path / "sig"
    work.mkdir()
    config_path = work / "config.json"
    config_path.write_text(json.dumps({**config, "report_path": str(work / "report.json")}))
    proc = subprocess.Popen(
        [CLI, "--config", str(config_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(work), "XDG_DATA_HOME": str(tmp_path / "xdg-data")},
        cwd=work,
    )
    return proc, work


def dry_run_dir(output_dir: Path) -> Path:
    """The one folder a dry run wrote under output_dir."""
    (run_dir,) = [p for p in output_dir.iterdir() if p.is_dir()]
    return run_dir
