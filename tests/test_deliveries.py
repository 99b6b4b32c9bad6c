"""Deliveries driven directly with digests against FakeAudienceAPI: no HTTP, no subprocess."""

from __future__ import annotations

import hashlib
import inspect
import logging
import tempfile
import typing
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest

from target_tiktok_audiences import timescale
from target_tiktok_audiences.audiences import AudienceDirectory
from target_tiktok_audiences.budget import Budget
from target_tiktok_audiences.client import (
    AudienceAPI,
    NewAudience,
    PermanentError,
    RefusedError,
    TransientError,
)
from target_tiktok_audiences.deliveries import Delivery, Runtime, delivery_class
from target_tiktok_audiences.deliveries import mirror as mirror_module
from target_tiktok_audiences.deliveries import sortedsets as sortedsets_module
from target_tiktok_audiences.deliveries.mirror import MirrorDelivery
from target_tiktok_audiences.deliveries.segment import SegmentDelivery
from target_tiktok_audiences.ledger import Ledger
from target_tiktok_audiences.report import AudienceReport, CallStats, RunReport, StreamReport
from target_tiktok_audiences.settings import Settings
from target_tiktok_audiences.snapshot import HEADER_SIZE, Header, Kind, SnapshotKey, SnapshotStore
from target_tiktok_audiences.snapshot import format as snapshot

from helpers.fake_api import FLOOR_MESSAGE, PARTNER, REPLACE_UNFINISHED, FakeAudienceAPI, FakeCall

ADV1 = "7000000000000000001"
ADV2 = "7000000000000000002"
EMAIL, PHONE, GAID = "EMAIL_SHA256", "PHONE_SHA256", "GAID_SHA256"
STREAM = "users"
LOG = logging.getLogger("test_deliveries")


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def email(i: int) -> str:
    return sha(f"user{i}@example.com")


def phone(i: int) -> str:
    return sha(f"+1212555{i:04d}")


def gaid(i: int) -> str:
    return sha(f"00000000-0000-4000-8000-{i:012d}")


def emails(indices: Iterable[int]) -> frozenset[str]:
    return frozenset(email(i) for i in indices)


def make_runtime(
    tmp_path: Path, fake: FakeAudienceAPI, *, max_new: int = 25, **config: Any
) -> Runtime:
    """One run: fresh settings, directory, workdir and report over the same fake TikTok.

    Mirror goes by REPLACE here unless a test asks for mirror_strategy diff.
    """
    settings = Settings.from_config(
        {
            "access_token": "fake-token",
            "advertiser_ids": [ADV1, ADV2],
            "mirror_strategy": "replace",
            **config,
        }
    )
    snapshots = SnapshotStore(str(tmp_path / "snapshots"))
    return Runtime(
        settings=settings,
        client=fake,
        budget=Budget(settings.daily_update_operations, fake, Ledger(snapshots)),
        directory=AudienceDirectory(confirm_seconds=0.2, max_new=max_new),
        workdir=Path(tempfile.mkdtemp(dir=tmp_path)),
        report=RunReport(dry_run=False),
        logger=LOG,
        snapshots=snapshots,
    )


def make_delivery(runtime: Runtime, contracts: Sequence[str], stream: str = STREAM) -> Delivery:
    mapping = runtime.settings.mapping_for(stream)
    assert mapping is not None
    report = runtime.report.streams[stream] = StreamReport(stream, mapping.sync_mode.value)
    kind = delivery_class(mapping.sync_mode, mapping.audience_type)
    return kind(runtime, mapping, report, list(contracts))


def entries(runtime: Runtime) -> list[AudienceReport]:
    return [a for s in runtime.report.streams.values() for a in s.audiences]


def entry_of(runtime: Runtime, advertiser_id: str, name: str = STREAM) -> AudienceReport:
    (entry,) = [
        e for e in entries(runtime) if e.advertiser_id == advertiser_id and e.audience_name == name
    ]
    return entry


def only_audience(fake: FakeAudienceAPI, advertiser_id: str, name: str = STREAM) -> str:
    (audience,) = fake.named(advertiser_id, name)
    return audience.audience_id


def mappings(fake: FakeAudienceAPI, advertiser_id: str) -> list[tuple[str | None, int]]:
    return [
        (c.action, c.size)
        for c in fake.calls
        if c.method == "map_users" and c.advertiser_id == advertiser_id
    ]


def calls_since(fake: FakeAudienceAPI, start: int) -> list[tuple[str, str | None]]:
    return [(c.method, c.advertiser_id) for c in fake.calls[start:]]


# -- the fake itself --------------------------------------------------------------------------


def _resolved_hints(func: Any) -> dict[str, Any]:
    # client.py imports RunReport only for type checking: resolve it by hand.
    return typing.get_type_hints(
        func,
        localns={
            "RunReport": RunReport,
            "AudienceAPI": AudienceAPI,
            "RefusedError": RefusedError,
            "T": typing.Any,
        },
    )


def test_fake_has_every_protocol_member_with_the_same_signature() -> None:
    members = sorted(n for n in vars(AudienceAPI) if not n.startswith("_"))
    assert members == [
        "count_retry",
        "create_customer_audience",
        "create_partner_audience",
        "finish",
        "get_audience",
        "list_audiences",
        "map_users",
        "now",
        "offline",
        "operation_history",
        "preflight",
        "retrying",
        "sends",
        "total",
        "update_customer_audience",
        "upload_file",
        "with_stats",
    ]
    for name in members:
        wanted, got = getattr(AudienceAPI, name), getattr(FakeAudienceAPI, name)
        if name in ("offline", "sends"):  # a class attribute satisfies the read-only property
            assert got is (name == "sends")
            continue
        if isinstance(wanted, property):
            assert isinstance(got, property), name
            assert _resolved_hints(got.fget) == _resolved_hints(wanted.fget), name
            continue
        want_sig, got_sig = inspect.signature(wanted), inspect.signature(got)
        assert [(p.name, p.kind, p.default) for p in got_sig.parameters.values()] == [
            (p.name, p.kind, p.default) for p in want_sig.parameters.values()
        ], name
        want_hints, got_hints = _resolved_hints(wanted), _resolved_hints(got)
        if name == "with_stats":  # a view of the fake is a fake (typed Self in CountedCalls)
            assert want_hints.pop("return") is AudienceAPI
            assert got_hints.pop("return") is got_hints.pop("self")
        assert got_hints == want_hints, name


def test_fake_satisfies_the_protocol_for_mypy_strict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mypy_api = pytest.importorskip("mypy.api")
    fake_api = Path(__file__).parent / "helpers" / "fake_api.py"
    # The package's source, not its installed copy (which has no py.typed), whatever the cwd.
    monkeypatch.setenv("MYPYPATH", str(Path(__file__).parent.parent))
    out, err, status = mypy_api.run(
        [
            "--strict",
            "--follow-imports=silent",  # only the fake's own lines are judged here
            "--cache-dir",
            str(tmp_path / "mypy-cache"),
            str(fake_api),
        ]
    )
    assert (out, err, status) == ("Success: no issues found in 1 source file\n", "", 0)


def test_fake_views_count_into_their_stats_and_the_total(tmp_path: Path) -> None:
    fake = FakeAudienceAPI([ADV1])
    mine = CallStats()
    view = fake.with_stats(mine)
    path = tmp_path / "a.txt"
    path.write_text(email(1) + "\n" + email(2) + "\n")
    file_path = view.upload_file(ADV1, EMAIL, path)
    fake.create_customer_audience(NewAudience(ADV1, "x", EMAIL, [file_path]))
    view.count_retry()
    assert mine == CallStats(calls=1, retries=1, bytes_uploaded=130)
    assert fake.total == CallStats(calls=2, retries=1, bytes_uploaded=130)
    assert fake.upload_digests(file_path) == emails([1, 2])


def test_fake_refuses_what_tiktok_refuses(tmp_path: Path) -> None:
    fake = FakeAudienceAPI([ADV1])
    bad = tmp_path / "bad.txt"
    bad.write_text(email(1).upper() + "\n")
    with pytest.raises(PermanentError) as caught:
        fake.upload_file(ADV1, EMAIL, bad)
    assert str(caught.value) == (
        f"Uploading a EMAIL_SHA256 file for advertiser {ADV1} failed: TikTok said "
        '"a line is not a lowercase EMAIL_SHA256" (code 40002, request_id fake). Check the '
        "audience ids and names in your config; the field is named above."
    )
    assert type(caught.value) is PermanentError  # an upload is not one audience's change
    with pytest.raises(PermanentError) as caught:
        fake.list_audiences("7999").__next__()
    assert caught.value.code == 40001
    with pytest.raises(ValueError, match="unknown AudienceAPI method 'create'"):
        fake.fail_next("create", TransientError("x"))


# -- mirror (REPLACE) -------------------------------------------------------------------------


def test_mirror_creates_then_replaces_with_exact_members(tmp_path: Path) -> None:
    fake = FakeAudienceAPI([ADV1, ADV2])
    config: dict[str, Any] = {
        "sync_mode": "mirror",
        "mirror_strategy": "replace",
        "file_max_ids": 2,
    }

    first = make_runtime(tmp_path, fake, **config)
    delivery = make_delivery(first, [EMAIL])
    assert isinstance(delivery, MirrorDelivery)
    for i in range(5):
        delivery.add({EMAIL: email(i)}, removed=False)
    delivery.add({EMAIL: email(5)}, removed=True)  # a mirror set leaves removed rows out
    delivery.commit()

    assert calls_since(fake, 0) == [
        (method, adv)
        for adv in (ADV1, ADV2)
        for method in (
            "list_audiences",
            *["upload_file"] * 3,
            "create_customer_audience",
            "get_audience",  # read back after delivery
        )
    ]
    ids = {}
    for adv in (ADV1, ADV2):
        ids[adv] = only_audience(fake, adv)
        assert fake.members(adv, ids[adv]) == {EMAIL: emails(range(5))}
        entry = entry_of(first, adv)
        assert (entry.status, entry.action, entry.created, entry.audience_id) == (
            "delivered",
            "CREATE",
            True,
            ids[adv],
        )
        assert (entry.files, entry.identifiers_uploaded, entry.identifiers_removed) == (3, 5, 0)
        fake.finish_processing(adv, ids[adv])  # a day later: TikTok allows the next REPLACE

    second = make_runtime(tmp_path, fake, **config)
    delivery = make_delivery(second, [EMAIL])
    for i in range(3, 8):
        delivery.add({EMAIL: email(i)}, removed=False)
    start = len(fake.calls)
    delivery.commit()

    for adv in (ADV1, ADV2):
        assert only_audience(fake, adv) == ids[adv]
        assert fake.members(adv, ids[adv]) == {EMAIL: emails(range(3, 8))}
        (audience,) = fake.named(adv, STREAM)
        assert audience.actions == ["CREATE", "REPLACE"]
        entry = entry_of(second, adv)
        assert (entry.status, entry.action, entry.created, entry.files) == (
            "delivered",
            "REPLACE",
            False,
            3,
        )
    updates = [c for c in fake.calls[start:] if c.method == "update_customer_audience"]
    assert updates == [
        FakeCall("update_customer_audience", adv, ids[adv], action="REPLACE", size=3)
        for adv in (ADV1, ADV2)
    ]


def test_mirror_by_difference_records_its_sets_from_the_sorted_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each advertiser's in-flight record of a create, and every snapshot, are packed from
    the contract's sorted file (issue 21): byte for byte what writing the set's blocks gives;
    a create never reads the sorted file back as strings."""
    monkeypatch.setattr(snapshot, "utc_now", lambda: "2026-11-30T12:00:00+00:00")
    from_blocks: list[tuple[SnapshotKey, Kind]] = []
    from_lines: dict[tuple[SnapshotKey, Kind], bytes] = {}
    reads: list[Path] = []
    real_write, real_write_lines = SnapshotStore.write, SnapshotStore.write_lines
    real_read_blocks = mirror_module.read_blocks

    def write(store: SnapshotStore, key: SnapshotKey, blocks: Any, **kw: Any) -> int:
        from_blocks.append((key, kw.get("kind", Kind.SNAPSHOT)))
        return real_write(store, key, blocks, **kw)

    def write_lines(store: SnapshotStore, key: SnapshotKey, path: Path, **kw: Any) -> int:
        count = real_write_lines(store, key, path, **kw)
        kind = kw.get("kind", Kind.SNAPSHOT)
        from_lines[key, kind] = (Path(store.url) / key.path(kind)).read_bytes()
        return count

    def read_blocks(path: Path, *args: Any) -> Any:
        reads.append(path)
        return real_read_blocks(path, *args)

    monkeypatch.setattr(SnapshotStore, "write", write)
    monkeypatch.setattr(SnapshotStore, "write_lines", write_lines)
    monkeypatch.setattr(mirror_module, "read_blocks", read_blocks)
    monkeypatch.setattr(sortedsets_module, "read_blocks", read_blocks)
    fake = FakeAudienceAPI([ADV1, ADV2])
    reference = SnapshotStore(str(tmp_path / "reference"))

    def run(users: range) -> Runtime:
        runtime = make_runtime(tmp_path, fake, sync_mode="mirror", mirror_strategy="diff")
        delivery = make_delivery(runtime, [EMAIL, PHONE])
        for i in users:  # 60,000 users: three sorted runs of 25,000 to merge per contract
            delivery.add({EMAIL: email(i), PHONE: phone(i)}, removed=False)
        delivery.commit()
        return runtime

    def check_snapshot(adv: str, contract: str, values: list[str]) -> bytes:
        key = SnapshotKey(adv, only_audience(fake, adv, f"users ({contract})"), contract)
        got = (tmp_path / "snapshots" / key.name).read_bytes()
        full_at = Header.decode(got[:HEADER_SIZE]).full_at
        real_write(reference, key, [values], full_at=full_at)
        assert got == (tmp_path / "reference" / key.name).read_bytes()
        return got

    run(range(60_000))
    assert from_blocks == [] and reads == []
    for adv in (ADV1, ADV2):
        for contract, digest in ((EMAIL, email), (PHONE, phone)):
            values = sorted(digest(i) for i in range(60_000))
            audience = only_audience(fake, adv, f"users ({contract})")
            assert fake.members(adv, audience) == {contract: frozenset(values)}
            name_key = SnapshotKey.for_name(adv, f"users ({contract})", contract)
            real_write(reference, name_key, [values], kind=Kind.IN_FLIGHT)
            in_flight = (tmp_path / "reference" / name_key.path(Kind.IN_FLIGHT)).read_bytes()
            assert from_lines[name_key, Kind.IN_FLIGHT] == in_flight
            check_snapshot(adv, contract, values)  # a copy of the in-flight record

    # By difference: only the change's in-flight record is written from blocks.
    from_lines.clear()
    second = run(range(1_000, 61_000))
    assert {kind for _, kind in from_blocks} == {Kind.IN_FLIGHT}
    assert {e.action for e in entries(second)} == {"APPEND+REMOVE"}
    for adv in (ADV1, ADV2):
        for contract, digest in ((EMAIL, email), (PHONE, phone)):
            got = check_snapshot(adv, contract, sorted(digest(i) for i in range(1_000, 61_000)))
            key = SnapshotKey(adv, only_audience(fake, adv, f"users ({contract})"), contract)
            assert from_lines[key, Kind.SNAPSHOT] == got


def test_mirror_with_two_contracts_keeps_one_audience_per_contract(tmp_path: Path) -> None:
    fake = FakeAudienceAPI([ADV1, ADV2])
    runtime = make_runtime(tmp_path, fake, sync_mode="mirror")
    delivery = make_delivery(runtime, [EMAIL, PHONE])
    delivery.add({EMAIL: email(1), PHONE: phone(1)}, removed=False)
    delivery.add({EMAIL: email(2)}, removed=False)
    delivery.add({PHONE: phone(3)}, removed=False)
    delivery.commit()
    for adv in (ADV1, ADV2):
        assert sorted(a.name for a in fake.audiences(adv)) == [
            "users (EMAIL_SHA256)",
            "users (PHONE_SHA256)",
        ]
        by_email = only_audience(fake, adv, "users (EMAIL_SHA256)")
        by_phone = only_audience(fake, adv, "users (PHONE_SHA256)")
        assert fake.members(adv, by_email) == {EMAIL: emails([1, 2])}
        assert fake.members(adv, by_phone) == {PHONE: frozenset({phone(1), phone(3)})}


def test_mirror_replace_while_processing_is_deferred_and_the_other_advertiser_delivered(
    tmp_path: Path,
) -> None:
    fake = FakeAudienceAPI([ADV1, ADV2])
    config: dict[str, Any] = {"sync_mode": "mirror", "mirror_strategy": "replace"}
    for run, members in enumerate((range(0, 3), range(2, 5), range(4, 7))):
        runtime = make_runtime(tmp_path, fake, **config)
        delivery = make_delivery(runtime, [EMAIL])
        for i in members:
            delivery.add({EMAIL: email(i)}, removed=False)
        if run == 1:  # TikTok finished both CREATEs of run 0
            for adv in (ADV1, ADV2):
                fake.finish_processing(adv, only_audience(fake, adv))
        if run == 2:  # TikTok finished ADV2's REPLACE of run 1, not ADV1's
            fake.finish_processing(ADV2, only_audience(fake, ADV2))
        delivery.commit()

    adv1 = only_audience(fake, ADV1)
    assert fake.members(ADV1, adv1) == {EMAIL: emails(range(2, 5))}
    assert fake.members(ADV2, only_audience(fake, ADV2)) == {EMAIL: emails(range(4, 7))}
    deferred = entry_of(runtime, ADV1)
    assert deferred.status == "deferred"
    # The fake's history has no times: nothing tells that a REPLACE would be refused, so it is
    # sent, and TikTok's refusal defers the audience.
    assert deferred.note == (
        "not delivered: TikTok allows about one REPLACE a day, and refuses one while the last "
        "REPLACE or the creation is unfinished; a run a day after the last full upload "
        "delivers it (mirror_strategy diff avoids REPLACE). (Audience 'users': REPLACE on "
        f'audience {adv1} for advertiser {ADV1} failed: TikTok said "{REPLACE_UNFINISHED}" '
        "(code 40002, request_id fake))"
    )
    assert entry_of(runtime, ADV2).status == "delivered"
    assert runtime.report.error is None


# -- append (files) ---------------------------------------------------------------------------


def test_append_appends_then_removes(tmp_path: Path) -> None:
    fake = FakeAudienceAPI([ADV1, ADV2])
    first = make_runtime(tmp_path, fake, sync_mode="append")
    delivery = make_delivery(first, [EMAIL])
    for i in range(5):
        delivery.add({EMAIL: email(i)}, removed=False)
    delivery.commit()

    second = make_runtime(tmp_path, fake, sync_mode="append")
    delivery = make_delivery(second, [EMAIL])
    delivery.add({EMAIL: email(0)}, removed=True)
    delivery.add({EMAIL: email(5)}, removed=False)
    delivery.add({EMAIL: email(1)}, removed=True)
    delivery.add({EMAIL: email(6)}, removed=False)
    start = len(fake.calls)
    delivery.commit()

    for adv in (ADV1, ADV2):
        audience_id = only_audience(fake, adv)
        assert fake.members(adv, audience_id) == {EMAIL: emails([2, 3, 4, 5, 6])}
        entry = entry_of(second, adv)
        assert (entry.status, entry.action, entry.created) == ("delivered", "APPEND+REMOVE", False)
        assert (entry.files, entry.identifiers_uploaded, entry.identifiers_removed) == (2, 2, 2)
    # Every audience asks before any sends (the daily operations budget plans them together).
    assert calls_since(fake, start) == [("list_audiences", ADV1), ("list_audiences", ADV2)] + [
        (method, adv)
        for adv in (ADV1, ADV2)
        for method in (
            "upload_file",
            "update_customer_audience",
            "upload_file",
            "update_customer_audience",
            "get_audience",  # read back after delivery
        )
    ]
    updates = [(c.advertiser_id, c.action) for c in fake.calls[start:] if c.action]
    assert updates == [(ADV1, "APPEND"), (ADV1, "REMOVE"), (ADV2, "APPEND"), (ADV2, "REMOVE")]


def test_append_last_record_wins_for_a_user_key(tmp_path: Path) -> None:
    fake = FakeAudienceAPI([ADV1, ADV2])
    for adv in (ADV1, ADV2):
        fake.add_audience(adv, STREAM, EMAIL, {EMAIL: emails([0, 1, 2])})
    runtime = make_runtime(tmp_path, fake, sync_mode="append")
    delivery = make_delivery(runtime, [EMAIL])
    delivery.add({EMAIL: email(0)}, removed=True, user="0")
    delivery.add({EMAIL: email(0)}, removed=False, user="0")  # back again: stays
    delivery.add({EMAIL: email(3)}, removed=False, user="3")
    delivery.add({EMAIL: email(3)}, removed=True, user="3")  # gone again: absent
    delivery.commit()
    for adv in (ADV1, ADV2):
        assert fake.members(adv, only_audience(fake, adv)) == {EMAIL: emails([0, 1, 2])}


def test_refused_audience_is_deferred_and_the_other_advertiser_delivered(
    tmp_path: Path,
) -> None:
    fake = FakeAudienceAPI([ADV1, ADV2], min_audience_size=1_000)
    small = fake.add_audience(ADV1, STREAM, EMAIL, {EMAIL: emails(range(1_000))})
    large = fake.add_audience(ADV2, STREAM, EMAIL, {EMAIL: emails(range(1_010))})
    runtime = make_runtime(tmp_path, fake, sync_mode="append")
    delivery = make_delivery(runtime, [EMAIL])
    for i in range(10):
        delivery.add({EMAIL: email(i)}, removed=True)
    delivery.commit()

    refused = entry_of(runtime, ADV1)
    assert (refused.status, refused.audience_id) == ("deferred", small)
    assert refused.note == (
        "not delivered: TikTok refuses updates that leave fewer than 1,000 users (it counts "
        "the users it matched, not the identifiers sent); TikTok holds 1,000 matched users "
        "and refuses every update (an APPEND too) that leaves fewer than 1,000: remove fewer "
        "users at once, or add users in the same run, or recreate the audience from a larger "
        "stream under a new audience_name. (Audience "
        "'users': REMOVE on audience "
        f'{small} for advertiser {ADV1} failed: TikTok said "{FLOOR_MESSAGE}" '
        "(code 40002, request_id fake))"
    )
    assert fake.members(ADV1, small) == {EMAIL: emails(range(1_000))}
    delivered = entry_of(runtime, ADV2)
    assert (delivered.status, delivered.action, delivered.identifiers_removed) == (
        "delivered",
        "REMOVE",
        10,
    )
    assert fake.members(ADV2, large) == {EMAIL: emails(range(10, 1_010))}
    assert runtime.report.error is None


def test_append_uses_the_configured_audience_id_and_creates_by_name_elsewhere(
    tmp_path: Path,
) -> None:
    fake = FakeAudienceAPI([ADV1, ADV2])
    existing = fake.add_audience(ADV1, "Old name", EMAIL, {EMAIL: emails([7])})
    config: dict[str, Any] = {
        "sync_mode": "append",
        "audiences": [
            {
                "stream": STREAM,
                "identifiers": {EMAIL: "email"},
                "audience_ids": {ADV1: existing},
            }
        ],
    }
    runtime = make_runtime(tmp_path, fake, **config)
    delivery = make_delivery(runtime, [EMAIL])
    delivery.add({EMAIL: email(1)}, removed=False)
    delivery.commit()
    assert [a.audience_id for a in fake.audiences(ADV1)] == [existing]
    assert fake.members(ADV1, existing) == {EMAIL: emails([1, 7])}
    assert fake.members(ADV2, only_audience(fake, ADV2)) == {EMAIL: emails([1])}
    assert (entry_of(runtime, ADV1).action, entry_of(runtime, ADV1).created) == ("APPEND", False)
    assert (entry_of(runtime, ADV2).action, entry_of(runtime, ADV2).created) == ("CREATE", True)


def test_append_removals_into_a_missing_audience_are_skipped_with_a_note(tmp_path: Path) -> None:
    fake = FakeAudienceAPI([ADV1, ADV2])
    runtime = make_runtime(tmp_path, fake, sync_mode="append")
    delivery = make_delivery(runtime, [EMAIL])
    delivery.add({EMAIL: email(1)}, removed=True)
    delivery.commit()
    for adv in (ADV1, ADV2):
        assert fake.audiences(adv) == []
        entry = entry_of(runtime, adv)
        assert (entry.status, entry.audience_id, entry.note) == (
            "delivered",
            None,
            "removals skipped: the audience did not exist before this run.",
        )
    assert fake.methods_called() == ["list_audiences", "list_audiences"]


def test_mirror_without_identifiers_leaves_the_audience_unchanged(tmp_path: Path) -> None:
    fake = FakeAudienceAPI([ADV1, ADV2])
    ids = {adv: fake.add_audience(adv, STREAM, EMAIL, {EMAIL: emails([1])}) for adv in (ADV1, ADV2)}
    runtime = make_runtime(tmp_path, fake, sync_mode="mirror")
    delivery = make_delivery(runtime, [EMAIL])
    delivery.add({EMAIL: email(1)}, removed=True)
    delivery.commit()
    for adv in (ADV1, ADV2):
        assert fake.members(adv, ids[adv]) == {EMAIL: emails([1])}
        entry = entry_of(runtime, adv)
        assert (entry.status, entry.note) == (
            "skipped",
            "no identifiers for this audience in this run; it was left unchanged (TikTok "
            "cannot replace an audience with an empty set).",
        )
    assert fake.calls == []


# -- incremental (Segment API) ----------------------------------------------------------------


def test_incremental_last_record_wins_per_user_key(tmp_path: Path) -> None:
    fake = FakeAudienceAPI([ADV1, ADV2])
    runtime = make_runtime(tmp_path, fake, sync_mode="incremental", partner_warmup_seconds=180)
    delivery = make_delivery(runtime, [EMAIL, GAID])
    assert isinstance(delivery, SegmentDelivery)
    delivery.add({EMAIL: email(1), GAID: gaid(1)}, removed=False, user="1")
    delivery.add({EMAIL: email(1), GAID: gaid(1)}, removed=True, user="1")  # ends absent
    delivery.add({EMAIL: email(2)}, removed=True, user="2")
    delivery.add({EMAIL: email(2), GAID: gaid(2)}, removed=False, user="2")  # ends present
    delivery.add({EMAIL: email(3)}, removed=False, user="3")
    before = timescale.monotonic()  # warm-ups are measured in TikTok's seconds
    delivery.commit()
    after = timescale.monotonic()

    for adv in (ADV1, ADV2):
        audience_id = only_audience(fake, adv)
        assert fake.members(adv, audience_id) == {
            EMAIL: emails([2, 3]),
            "AAID_SHA256": frozenset({gaid(2)}),
        }
        assert mappings(fake, adv) == [("delete", 1), ("add", 2)]
        entry = entry_of(runtime, adv)
        assert (entry.status, entry.created, entry.audience_id) == ("delivered", True, audience_id)
        assert (entry.users_added, entry.users_removed, entry.batches) == (2, 1, 2)
    # Mappings into an audience this run created are retried through TikTok's warm-up.
    warmups = [c.warmup_until for c in fake.calls if c.method == "map_users"]
    assert len(warmups) == 4
    assert all(w is not None and before + 180 <= w <= after + 180 for w in warmups)

    # The next run finds the audience by name and needs no warm-up.
    later = make_runtime(tmp_path, fake, sync_mode="incremental")
    delivery = make_delivery(later, [EMAIL, GAID])
    delivery.add({EMAIL: email(1)}, removed=False, user="1")
    start = len(fake.calls)
    delivery.commit()
    assert [c.warmup_until for c in fake.calls[start:] if c.method == "map_users"] == [None] * 2
    assert "create_partner_audience" not in [c.method for c in fake.calls[start:]]
    for adv in (ADV1, ADV2):
        assert fake.members(adv, only_audience(fake, adv))[EMAIL] == emails([1, 2, 3])


def _interleaved(delivery: Delivery, n: int) -> tuple[list[int], list[int]]:
    """Distinct users i < n; every i with i % 5 in (1, 3) is removed, the others added."""
    adds: list[int] = []
    deletes: list[int] = []
    for i in range(n):
        removed = i % 5 in (1, 3)
        (deletes if removed else adds).append(i)
        delivery.add({EMAIL: email(i)}, removed=removed, user=str(i))
    return adds, deletes


def test_interleaved_adds_and_deletes_go_out_in_full_batches_per_action(tmp_path: Path) -> None:
    fake = FakeAudienceAPI([ADV1, ADV2])
    ids = {
        adv: fake.add_audience(adv, STREAM, PARTNER, {EMAIL: emails([1, 3, 6, 8, 11, 100])})
        for adv in (ADV1, ADV2)
    }
    runtime = make_runtime(tmp_path, fake, sync_mode="incremental", segment_batch_size=3)
    delivery = make_delivery(runtime, [EMAIL])
    adds, deletes = _interleaved(delivery, 12)
    assert (len(adds), len(deletes)) == (7, 5)
    delivery.commit()
    for adv in (ADV1, ADV2):
        # ceil(7 / 3) + ceil(5 / 3) = 5 calls, deletes first.
        assert mappings(fake, adv) == [
            ("delete", 3),
            ("delete", 2),
            ("add", 3),
            ("add", 3),
            ("add", 1),
        ]
        assert fake.members(adv, ids[adv]) == {EMAIL: emails([0, 2, 4, 5, 7, 9, 10, 100])}
        entry = entry_of(runtime, adv)
        assert (entry.users_added, entry.users_removed, entry.batches) == (7, 5, 5)
        assert (entry.created, entry.audience_id, entry.status) == (False, ids[adv], "delivered")
    assert not delivery.pending


def test_flush_sends_only_full_batches(tmp_path: Path) -> None:
    fake = FakeAudienceAPI([ADV1, ADV2])
    ids = {
        adv: fake.add_audience(adv, STREAM, PARTNER, {EMAIL: emails([1, 3, 6, 8])})
        for adv in (ADV1, ADV2)
    }
    runtime = make_runtime(tmp_path, fake, sync_mode="incremental", segment_batch_size=3)
    delivery = make_delivery(runtime, [EMAIL])
    adds, deletes = _interleaved(delivery, 10)
    assert (adds, deletes) == ([0, 2, 4, 5, 7, 9], [1, 3, 6, 8])
    delivery.flush()
    for adv in (ADV1, ADV2):
        assert mappings(fake, adv) == [("delete", 3), ("add", 3), ("add", 3)]
        assert fake.members(adv, ids[adv]) == {EMAIL: emails([0, 2, 4, 5, 7, 8, 9])}
        assert entry_of(runtime, adv).status == "pending"
    assert delivery.pending

    delivery.flush()  # nothing full is left: no call
    assert len(mappings(fake, ADV1)) == 3
    delivery.commit()
    for adv in (ADV1, ADV2):
        assert mappings(fake, adv)[3:] == [("delete", 1)]
        assert fake.members(adv, ids[adv]) == {EMAIL: emails([0, 2, 4, 5, 7, 9])}
        assert entry_of(runtime, adv).status == "delivered"
    assert not delivery.pending


def test_refused_partner_audience_is_deferred_and_later_batches_skip_it(tmp_path: Path) -> None:
    fake = FakeAudienceAPI([ADV1, ADV2])
    ids = {adv: fake.add_audience(adv, STREAM, PARTNER) for adv in (ADV1, ADV2)}
    fake.fail_next(
        "map_users", (40002, "you are not the creator of this audience"), advertiser_id=ADV1
    )
    runtime = make_runtime(tmp_path, fake, sync_mode="incremental", segment_batch_size=2)
    delivery = make_delivery(runtime, [EMAIL])
    delivery.add({EMAIL: email(1)}, removed=False, user="1")
    delivery.add({EMAIL: email(2)}, removed=False, user="2")
    delivery.flush()
    delivery.add({EMAIL: email(3)}, removed=False, user="3")
    delivery.commit()

    assert mappings(fake, ADV1) == [("add", 2)]  # the refused call, and nothing after it
    assert mappings(fake, ADV2) == [("add", 2), ("add", 1)]
    assert fake.members(ADV1, ids[ADV1]) == {}
    assert fake.members(ADV2, ids[ADV2]) == {EMAIL: emails([1, 2, 3])}
    refused = entry_of(runtime, ADV1)
    assert (refused.status, refused.batches) == ("deferred", 0)
    assert refused.note == (
        "not delivered: this audience was shared in by another advertiser and cannot be updated "
        "here; give the stream another audience_name or audience_ids. (Audience 'users': "
        f"Sending 2 users (add) to audience {ids[ADV1]} for advertiser {ADV1} failed: TikTok "
        'said "you are not the creator of this audience" (code 40002, request_id fake))'
    )
    assert (entry_of(runtime, ADV2).status, entry_of(runtime, ADV2).batches) == ("delivered", 2)
    assert not delivery.pending


def test_long_partner_name_is_cut_like_tiktok_and_found_again(tmp_path: Path) -> None:
    fake = FakeAudienceAPI([ADV1, ADV2])
    long_name = "Very long audience name " * 4  # 100 characters
    cut = long_name[:67] + "..."
    config: dict[str, Any] = {
        "sync_mode": "incremental",
        "audiences": [
            {"stream": STREAM, "audience_name": long_name, "identifiers": {EMAIL: "email"}}
        ],
    }
    for run in range(2):
        runtime = make_runtime(tmp_path, fake, **config)
        delivery = make_delivery(runtime, [EMAIL])
        delivery.add({EMAIL: email(run)}, removed=False)
        delivery.commit()
        assert entry_of(runtime, ADV1, cut).created is (run == 0)
    for adv in (ADV1, ADV2):
        assert fake.members(adv, only_audience(fake, adv, cut)) == {EMAIL: emails([0, 1])}
    assert fake.methods_called().count("create_partner_audience") == 2


# -- finding and creating audiences -----------------------------------------------------------


def _lost(what: str, advertiser_id: str) -> TransientError:
    return TransientError(
        what,
        advertiser_id=advertiser_id,
        message="no answer within 2 s at 127.0.0.1:1 (api_base_url)",
        said=False,
    )


def test_lost_create_answer_with_the_create_applied_leaves_one_audience(tmp_path: Path) -> None:
    fake = FakeAudienceAPI([ADV1, ADV2])
    fake.fail_next(
        "create_customer_audience", _lost("Creating audience 'users'", ADV1), applied=True
    )
    runtime = make_runtime(tmp_path, fake, sync_mode="mirror")
    delivery = make_delivery(runtime, [EMAIL])
    for i in range(4):
        delivery.add({EMAIL: email(i)}, removed=False)
    delivery.commit()

    assert fake.unused_failures == {}
    for adv in (ADV1, ADV2):
        audience_id = only_audience(fake, adv)
        assert fake.members(adv, audience_id) == {EMAIL: emails(range(4))}
        entry = entry_of(runtime, adv)
        assert (entry.status, entry.created, entry.audience_id) == ("delivered", True, audience_id)
    assert fake.methods_called().count("create_customer_audience") == 2  # one per advertiser
    assert entry_of(runtime, ADV1).stats.retries == 1
    assert entry_of(runtime, ADV2).stats.retries == 0


def test_lost_partner_create_answer_with_the_create_applied_leaves_one_audience(
    tmp_path: Path,
) -> None:
    fake = FakeAudienceAPI([ADV1, ADV2])
    fake.fail_next(
        "create_partner_audience",
        _lost("Creating partner audience 'users'", ADV2),
        applied=True,
        advertiser_id=ADV2,
    )
    runtime = make_runtime(tmp_path, fake, sync_mode="incremental")
    delivery = make_delivery(runtime, [EMAIL])
    delivery.add({EMAIL: email(1)}, removed=False, user="1")
    delivery.commit()
    assert fake.unused_failures == {}
    for adv in (ADV1, ADV2):
        audience_id = only_audience(fake, adv)
        assert fake.members(adv, audience_id) == {EMAIL: emails([1])}
        assert (entry_of(runtime, adv).created, entry_of(runtime, adv).audience_id) == (
            True,
            audience_id,
        )
    assert fake.methods_called().count("create_partner_audience") == 2
    assert (entry_of(runtime, ADV1).stats.retries, entry_of(runtime, ADV2).stats.retries) == (0, 1)
    assert (entry_of(runtime, ADV1).stats.retries, entry_of(runtime, ADV2).stats.retries) == (0, 1)


def test_lost_create_that_did_not_apply_is_sent_again_once(tmp_path: Path) -> None:
    fake = FakeAudienceAPI([ADV1])
    fake.fail_next("create_customer_audience", _lost("Creating audience 'users'", ADV1))
    runtime = make_runtime(tmp_path, fake, sync_mode="mirror", advertiser_ids=[ADV1])
    delivery = make_delivery(runtime, [EMAIL])
    delivery.add({EMAIL: email(1)}, removed=False)
    delivery.commit()
    audience_id = only_audience(fake, ADV1)
    assert fake.members(ADV1, audience_id) == {EMAIL: emails([1])}
    assert fake.methods_called().count("create_customer_audience") == 2
    assert (entry_of(runtime, ADV1).created, entry_of(runtime, ADV1).stats.retries) == (True, 1)


def test_a_confirmed_create_is_not_seen_twice_later_in_the_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeAudienceAPI([ADV1])
    fake.fail_next(
        "create_customer_audience", _lost("Creating audience 'users'", ADV1), applied=True
    )
    runtime = make_runtime(tmp_path, fake, sync_mode="mirror", advertiser_ids=[ADV1])
    delivery = make_delivery(runtime, [EMAIL])
    delivery.add({EMAIL: email(1)}, removed=False)
    delivery.commit()
    fake.finish_processing(ADV1, only_audience(fake, ADV1))  # the next set REPLACEs it
    delivery.add({EMAIL: email(2)}, removed=False)  # after ACTIVATE_VERSION: the next set
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="target_tiktok_audiences.audiences"):
        delivery.commit()
    assert fake.members(ADV1, only_audience(fake, ADV1)) == {EMAIL: emails([2])}
    # No word of a second audience of the name (the size note of a tiny set is the summary's).
    audiences = "target_tiktok_audiences.audiences"
    assert [r.getMessage() for r in caplog.records if r.name == audiences] == []


def test_shared_in_audience_of_the_same_name_is_left_alone(tmp_path: Path) -> None:
    fake = FakeAudienceAPI([ADV1, ADV2])
    shared = fake.add_audience(ADV1, STREAM, EMAIL, {EMAIL: emails([90, 91])}, owned=False)
    runtime = make_runtime(tmp_path, fake, sync_mode="mirror")
    delivery = make_delivery(runtime, [EMAIL])
    delivery.add({EMAIL: email(1)}, removed=False)
    delivery.commit()

    first, created = fake.named(ADV1, STREAM)
    assert (first.audience_id, first.owned, first.actions) == (shared, False, [])
    assert fake.members(ADV1, shared) == {EMAIL: emails([90, 91])}
    assert (created.owned, created.actions) == (True, ["CREATE"])
    assert fake.members(ADV1, created.audience_id) == {EMAIL: emails([1])}
    entry = entry_of(runtime, ADV1)
    assert (entry.created, entry.audience_id, entry.status) == (
        True,
        created.audience_id,
        "delivered",
    )


def test_max_new_audiences_stops_the_run_with_the_exact_message(tmp_path: Path) -> None:
    fake = FakeAudienceAPI([ADV1, ADV2])
    runtime = make_runtime(tmp_path, fake, max_new=1, sync_mode="mirror")
    delivery = make_delivery(runtime, [EMAIL])
    delivery.add({EMAIL: email(1)}, removed=False)
    with pytest.raises(PermanentError) as caught:
        delivery.commit()
    message = (
        f"Creating audience 'users' for advertiser {ADV2} failed: this run already created 1 "
        "audience (max_new_audiences is 1); TikTok allows 400 per advertiser. Map only the "
        "streams you want (audiences setting) or raise max_new_audiences."
    )
    assert str(caught.value) == message
    assert runtime.report.error == message
    assert (entry_of(runtime, ADV1).status, entry_of(runtime, ADV2).status) == (
        "delivered",
        "failed",
    )
    assert fake.named(ADV2, STREAM) == []
    assert "create_customer_audience" not in [
        c.method for c in fake.calls if c.advertiser_id == ADV2
    ]


# -- per-audience call stats ------------------------------------------------------------------


def _two_contracts_two_advertisers(tmp_path: Path) -> tuple[FakeAudienceAPI, Runtime]:
    fake = FakeAudienceAPI([ADV1, ADV2])
    fake.fail_next(
        "create_customer_audience",
        _lost("Creating audience 'users (EMAIL_SHA256)'", ADV2),
        applied=True,
        advertiser_id=ADV2,
    )
    runtime = make_runtime(tmp_path, fake, sync_mode="mirror", file_max_ids=2)
    delivery = make_delivery(runtime, [EMAIL, PHONE])
    for i in range(3):
        delivery.add({EMAIL: email(i), PHONE: phone(i)}, removed=False)
    delivery.add({EMAIL: email(3)}, removed=False)
    delivery.commit()
    return fake, runtime


def test_per_audience_bytes_and_retries_go_to_the_right_entry(tmp_path: Path) -> None:
    fake, runtime = _two_contracts_two_advertisers(tmp_path)
    line = 65  # 64 hex digits and \n
    got = {
        (e.advertiser_id, e.audience_name): (e.stats.bytes_uploaded, e.stats.retries, e.files)
        for e in entries(runtime)
    }
    assert got == {
        (ADV1, "users (EMAIL_SHA256)"): (4 * line, 0, 2),
        (ADV2, "users (EMAIL_SHA256)"): (4 * line, 1, 2),
        (ADV1, "users (PHONE_SHA256)"): (3 * line, 0, 2),
        (ADV2, "users (PHONE_SHA256)"): (3 * line, 0, 2),
    }
    assert sum(e.stats.bytes_uploaded for e in entries(runtime)) == fake.total.bytes_uploaded
    assert sum(e.stats.retries for e in entries(runtime)) == fake.total.retries == 1


def test_per_audience_calls_add_up_to_the_total(tmp_path: Path) -> None:
    fake, runtime = _two_contracts_two_advertisers(tmp_path)
    assert sum(e.stats.calls for e in entries(runtime)) == fake.total.calls
