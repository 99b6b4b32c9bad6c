"""Shared fixtures: a sandbox per test (helpers live in tests/helpers/)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from target_tiktok_audiences.sandbox.server import SandboxServer, run_sandbox


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
