"""Shared fixtures: a sandbox per test (helpers live in tests/helpers/)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from target_tiktok_audiences.sandbox.server import SandboxServer, run_sandbox


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxServer]:
    # As demanding as TikTok; only the partner warm-up is shorter, to keep tests fast.
    with run_sandbox(tmp_path / "sandbox.db", partner_warmup_seconds=2, slow_seconds=3.0) as server:
        yield server


@pytest.fixture(autouse=True)
def private_user_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mirror snapshots default to the user data dir: never the real one, never shared."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
