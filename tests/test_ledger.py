"""The operations ledger (issue 26): each update operation recorded before it is sent, one object
each, counted with the operations of others that TikTok's history shows in recognised words."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from target_tiktok_audiences.client.budget import OperationBudget, operation_times
from target_tiktok_audiences.client.codes import RefusedError
from target_tiktok_audiences.ledger import Ledger, LedgerEntry
from target_tiktok_audiences.snapshot import SnapshotStore

ADV = "7000000000000000001"
T0 = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)


def ledger_in(tmp_path: Path) -> Ledger:
    return Ledger(SnapshotStore(str(tmp_path / "store"), scope="api_443"))


def test_entries_are_recorded_one_object_each_and_read_by_time(tmp_path: Path) -> None:
    ledger = ledger_in(tmp_path)
    ledger.record(ADV, "71", "APPEND", T0)
    ledger.record(ADV, "71", "APPEND", T0)  # the same second twice: two operations
    ledger.record(ADV, "72", "REMOVE", T0 + timedelta(hours=1))
    assert ledger.entries(ADV, T0 - timedelta(seconds=1)) == [
        LedgerEntry("71", "APPEND", T0),
        LedgerEntry("71", "APPEND", T0),
        LedgerEntry("72", "REMOVE", T0 + timedelta(hours=1)),
    ]
    assert ledger.entries(ADV, T0) == [LedgerEntry("72", "REMOVE", T0 + timedelta(hours=1))]
    assert ledger.entries("7000000000000000002", T0 - timedelta(days=1)) == []
    folder = tmp_path / "store" / "api_443" / ADV / "_ledger"
    assert len(list(folder.iterdir())) == 3
    assert {p.stat().st_size for p in folder.iterdir()} == {0}


def test_old_entries_are_removed_and_strangers_never_counted(tmp_path: Path) -> None:
    ledger = ledger_in(tmp_path)
    ledger.record(ADV, "71", "REPLACE", T0)
    folder = tmp_path / "store" / "api_443" / ADV / "_ledger"
    (folder / "notes.txt").write_text("not an entry")
    ledger.record(ADV, "71", "APPEND", T0 + timedelta(hours=49))
    names = sorted(p.name for p in folder.iterdir())
    assert len(names) == 2 and names[1] == "notes.txt" and ".APPEND." in names[0]
    assert ledger.entries(ADV, T0 - timedelta(days=9)) == [
        LedgerEntry("71", "APPEND", T0 + timedelta(hours=49))
    ]


def test_a_dry_runs_read_only_store_records_nothing(tmp_path: Path) -> None:
    ledger = Ledger(SnapshotStore(str(tmp_path / "store"), read_only=True))
    ledger.record(ADV, "71", "APPEND", T0)
    assert ledger.entries(ADV, T0 - timedelta(days=1)) == []


def test_others_operations_are_those_the_history_shows_beyond_ours() -> None:
    ours = [LedgerEntry("71", "APPEND", T0), LedgerEntry("71", "REMOVE", T0)]
    shown = {
        "71": [T0, T0, T0 + timedelta(minutes=5)],  # ours two, and one more by someone else
        "72": [T0 - timedelta(hours=1)],  # an audience we never changed
    }
    assert sorted(operation_times(ours, shown)) == [
        T0 - timedelta(hours=1),
        T0,
        T0,
        T0 + timedelta(minutes=5),
    ]
    # History in words never seen shows nothing: ours still count.
    assert operation_times(ours, {"71": []}) == [T0, T0]


def test_an_operation_is_recorded_before_it_is_sent_and_only_if_it_fits() -> None:
    recorded: list[datetime] = []
    budget = OperationBudget(2, lambda adv: [T0 - timedelta(hours=2)], lambda: T0)
    budget.take(ADV, "71", "APPEND", "APPEND on audience 71", recorded.append)
    assert recorded == [T0]
    with pytest.raises(RefusedError) as refused:
        budget.take(ADV, "71", "REMOVE", "REMOVE on audience 71", recorded.append)
    assert recorded == [T0]  # not sent, not recorded
    assert "2 of the 2 update operations of the last 24 h are used" in str(refused.value)
    # No budget: still recorded (the ledger also tells the status what this target changed).
    free = OperationBudget(0, lambda adv: [], lambda: T0)
    free.take(ADV, "71", "APPEND", "APPEND on audience 71", recorded.append)
    assert recorded == [T0, T0]
