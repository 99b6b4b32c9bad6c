"""Shared fixtures: a sandbox per test (helpers live in tests/helpers/)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from target_tiktok_audiences.sandbox.server import SandboxServer, run_sandbox
from target_tiktok_audiences.timescale import VARIABLE as TIME_SCALE

from helpers import SCALE, sandbox_windows

# For every sandbox made here and every run of the CLI (which inherits it): retry waits
# shrink by SCALE and the sandbox's clock runs 1/SCALE times as fast (timescale.py).
os.environ[TIME_SCALE] = str(SCALE)


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: two workers per core, at most four more than the cores. A test spends most of
    its time waiting on what it started (the CLI's process, the sandbox's answers, PostgreSQL,
    the sandbox's windows), so one worker per core would leave the cores idle half the time;
    each worker also makes its own PostgreSQL cluster and Meltano project, hence the cap."""
    cores = len(os.sched_getaffinity(0))
    return min(2 * cores, cores + 4)


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxServer]:
    # As demanding as TikTok; only the partner warm-up is shorter, to keep tests fast.
    with run_sandbox(tmp_path / "sandbox.db", **sandbox_windows(slow_seconds=3.0)) as server:
        yield server


@pytest.fixture(autouse=True)
def private_user_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mirror snapshots default to the user data dir: never the real one, never shared."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
