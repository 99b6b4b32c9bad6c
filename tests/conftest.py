"""Shared fixtures: a sandbox per test (helpers live in tests/helpers/)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from target_tiktok_audiences.sandbox.server import SandboxServer, run_sandbox


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxServer]:
    with run_sandbox(tmp_path / "sandbox.db", min_audience_size=1, slow_seconds=3.0) as server:
        yield server
