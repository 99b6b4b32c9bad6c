"""Shared fixtures: a sandbox per test, and the real CLI run as a subprocess against it."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from target_tiktok_audiences.sandbox.server import SandboxServer, run_sandbox

ADV1 = "7000000000000000001"
ADV2 = "7000000000000000002"
TOKEN = "sandbox-token"
CLI = str(Path(sys.executable).parent / "target-tiktok-audiences")


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def md5(value: str) -> str:
    return hashlib.md5(value.encode()).hexdigest()


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxServer]:
    # lenient until the target survives realism (issue 10)
    with run_sandbox(
        tmp_path / "sandbox.db",
        min_audience_size=1,
        replace_cooldown_seconds=0,
        partner_warmup_seconds=0,
        max_updates_per_day=0,
        slow_seconds=3.0,
    ) as server:
        yield server


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
        "max_requests_per_second": 1000,
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
    """Run the real console script with a config file and the messages on stdin."""
    work = tmp_path / name
    work.mkdir(parents=True, exist_ok=True)
    config = {"report_path": str(work / "report.json"), **config}
    config_path = work / "config.json"
    config_path.write_text(json.dumps(config))
    data = messages if isinstance(messages, str) else singer_lines(messages)
    report_path = Path(config["report_path"])
    report_path.unlink(missing_ok=True)
    env = {**os.environ, "TMPDIR": str(work), **(env or {})}
    proc = subprocess.run(
        [CLI, "--config", str(config_path)],
        input=data,
        capture_output=True,
        text=True,
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
