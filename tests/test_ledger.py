"""The operations ledger (issue 26): each update operation recorded before it is sent, one object
each, counted with the operations of others that TikTok's history shows in recognised words."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from target_tiktok_audiences.budget import Budget, operation_times
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


class _TikTok:
    """The client as the budget reads it: TikTok's clock and the operations its history shows."""

    def __init__(self, shown: dict[str, list[datetime]]) -> None:
        self.shown = shown

    def now(self) -> datetime:
        return T0

    def operation_history(self, advertiser_id: str, since: datetime) -> dict[str, list[datetime]]:
        return {a: [t for t in times if t > since] for a, times in self.shown.items()}


def test_an_operation_is_recorded_before_it_is_sent_and_only_if_it_fits(tmp_path: Path) -> None:
    ledger = ledger_in(tmp_path)
    ledger.record(ADV, "71", "APPEND", T0 - timedelta(hours=3))  # ours, and shown by TikTok
    shown = {
        "71": [T0 - timedelta(hours=3), T0 - timedelta(hours=25)],  # the 2nd: over a day ago
        "72": [T0 - timedelta(hours=2)],  # someone else's
    }
    budget = Budget(3, _TikTok(shown), ledger)
    assert budget.left(ADV) == 1
    budget.take(ADV, "71", "APPEND", "APPEND on audience 71")
    assert [e.at for e in ledger.entries(ADV, T0 - timedelta(days=1))] == [
        T0 - timedelta(hours=3),
        T0,
    ]
    with pytest.raises(RefusedError) as refused:
        budget.take(ADV, "71", "REMOVE", "REMOVE on audience 71")
    assert len(ledger.entries(ADV, T0 - timedelta(days=1))) == 2  # not sent, not recorded
    assert str(refused.value) == (
        "REMOVE on audience 71 for advertiser 7000000000000000001 failed: 3 of the 3 update "
        "operations of the last 24 h are used (daily_update_operations); the next fits after "
        "2026-12-08 09:00 UTC"
    )
    # No budget: still recorded (the ledger also tells the status what this target changed).
    free = Budget(0, _TikTok({}), ledger)
    free.take(ADV, "72", "APPEND", "APPEND on audience 72")
    assert len(ledger.entries(ADV, T0 - timedelta(days=1))) == 3
