"""Snapshot store: local dir and a real S3 API (moto in server mode on 127.0.0.1)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from target_tiktok_audiences.convergence import Tracker
from target_tiktok_audiences.creates import StoredCreates
from target_tiktok_audiences.snapshot import (
    HEADER_SIZE,
    Kind,
    Reason,
    Snapshot,
    SnapshotCorrupt,
    SnapshotError,
    SnapshotKey,
    SnapshotStore,
    Unusable,
    display_url,
    scope_for,
)
from target_tiktok_audiences.snapshot import format as snapshot

KEY = SnapshotKey("7000000000000000001", "123456", "EMAIL_SHA256")
StoreFactory = Callable[..., SnapshotStore]


def sha(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


def digests(start: int, stop: int) -> list[str]:
    return sorted(sha(i) for i in range(start, stop))


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """One moto S3 server per test process, on a free port of 127.0.0.1 only."""
    with pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
            mp.delenv(name, raising=False)
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        mp.setenv("AWS_CONFIG_FILE", os.devnull)
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        # How a user points at MinIO or another S3 API: the standard botocore variable.
        mp.setenv("AWS_ENDPOINT_URL_S3", endpoint)
        try:
            yield endpoint
        finally:
            server.stop()


@pytest.fixture
def bucket(s3_endpoint: str) -> str:
    name = f"snap-{uuid.uuid4().hex[:16]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture(params=["local", "s3"])
def make_store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> StoreFactory:
    # Object-store temp files go to tmp_path/"tmp", so the tests can see none is left over.
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    if request.param == "local":
        url = str(tmp_path / "snapshots")
    else:
        url = f"s3://{request.getfixturevalue('bucket')}/prefix"

    def make(**kwargs: object) -> SnapshotStore:
        return SnapshotStore(url, **kwargs)  # type: ignore[arg-type]

    return make


def write(store: SnapshotStore, values: list[str], key: SnapshotKey = KEY) -> None:
    with store.lock(key), store.writer(key) as out:
        out.write_block(values[: len(values) // 2])
        for value in values[len(values) // 2 :]:
            out.write(value)


def read_all(store: SnapshotStore, key: SnapshotKey = KEY) -> list[str]:
    found = store.read(key)
    assert isinstance(found, Snapshot), found
    return list(found)


def leftovers(store: SnapshotStore, tmp_path: Path) -> list[str]:
    """Temp files the store left: beside a local snapshot, or in the private temp dir."""
    names = [p.name for p in (tmp_path / "tmp").iterdir()]
    if store.local:
        names += [p.name for p in (tmp_path / "snapshots" / KEY.advertiser_id).rglob("*.tmp")]
    return names


def test_round_trip(make_store: StoreFactory, tmp_path: Path) -> None:
    store = make_store()
    assert store.read(KEY) == Unusable(Reason.MISSING, f"no snapshot at {store.where(KEY)}")
    values = digests(0, 70_000)  # more than one block
    write(store, values)
    found = store.read(KEY)
    assert isinstance(found, Snapshot)
    assert (found.count, found.header.digest_bytes, found.header.key) == (70_000, 32, KEY)
    assert list(found) == values
    assert [len(b) for b in found.blocks(30_000)] == [30_000, 30_000, 10_000]
    assert leftovers(store, tmp_path) == []


def test_a_failed_write_leaves_the_previous_snapshot(
    make_store: StoreFactory, tmp_path: Path
) -> None:
    store = make_store()
    first = digests(0, 1000)
    write(store, first)
    with pytest.raises(RuntimeError, match=r"^TikTok refused$"), store.writer(KEY) as out:
        out.write_block(digests(500, 1500))
        # Not visible before the writer commits, to this store or another one.
        assert read_all(make_store()) == first
        raise RuntimeError("TikTok refused")
    assert read_all(store) == first
    assert leftovers(store, tmp_path) == []


def test_another_audience_snapshot_is_not_used(make_store: StoreFactory) -> None:
    store = make_store()
    write(store, digests(0, 10))
    where = store.where(KEY)
    # A snapshot copied under another audience's name is refused.
    other = SnapshotKey(KEY.advertiser_id, "999", KEY.contract)
    with store.writer(other) as out:
        out.write_block(digests(0, 3))
    raw = _get(store, other.name)
    _put(store, KEY.name, raw)
    assert store.read(KEY) == Unusable(
        Reason.OTHER_AUDIENCE,
        f"snapshot {where} was made for audience 999 (EMAIL_SHA256) of advertiser "
        "7000000000000000001",
    )


def test_truncated_and_corrupt_snapshots(make_store: StoreFactory) -> None:
    store = make_store()
    write(store, digests(0, 100))
    raw = _get(store, KEY.name)
    where = store.where(KEY)
    _put(store, KEY.name, raw[:-1])
    assert store.read(KEY) == Unusable(
        Reason.UNREADABLE, f"snapshot {where} is unreadable: truncated"
    )
    _put(store, KEY.name, b"garbage")
    assert store.read(KEY) == Unusable(
        Reason.UNREADABLE, f"snapshot {where} is unreadable: short header"
    )
    flipped = raw[:HEADER_SIZE] + bytes([raw[HEADER_SIZE] ^ 1]) + raw[HEADER_SIZE + 1 :]
    _put(store, KEY.name, flipped)
    found = store.read(KEY)
    assert isinstance(found, Snapshot)
    with pytest.raises(SnapshotCorrupt) as err:
        list(found)
    assert str(err.value) == f"snapshot {where} is corrupt (checksum mismatch)"


def test_lock_waits_a_bounded_time_then_says_so(make_store: StoreFactory) -> None:
    store, other = make_store(), make_store(lock_wait_seconds=0.6)
    started = time.monotonic()
    with store.lock(KEY), pytest.raises(SnapshotError) as err, other.lock(KEY):
        pass
    assert time.monotonic() - started >= 0.6  # it waited before giving up
    message = str(err.value)
    assert message.startswith(
        "another run holds the snapshot lock for audience 123456 (EMAIL_SHA256) of advertiser "
        "7000000000000000001 ("
    )
    assert message.endswith(
        "; waited 1 s. Re-run when it has finished; if no other run is active, remove the lock"
    )
    with other.lock(KEY):  # released: free again
        pass
    # Another audience is not blocked.
    with store.lock(KEY), other.lock(SnapshotKey(KEY.advertiser_id, "7", KEY.contract)):
        pass


def test_lock_is_taken_once_the_holder_releases_it(make_store: StoreFactory) -> None:
    import threading

    store, other = make_store(), make_store(lock_wait_seconds=30)
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with store.lock(KEY):
            held.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(5)
    threading.Timer(0.5, release.set).start()
    with other.lock(KEY):  # waits for the holder instead of failing
        assert release.is_set()
    holder.join()


def test_read_only_store_reads_and_never_writes(make_store: StoreFactory) -> None:
    writable = make_store()
    write(writable, digests(0, 5))
    dry = make_store(read_only=True)
    assert read_all(dry) == digests(0, 5)
    with writable.lock(KEY), dry.lock(KEY):  # a dry run takes no lock
        pass
    with pytest.raises(SnapshotError) as err, dry.writer(KEY):
        pass
    assert str(err.value) == (
        f"snapshot store {dry.display} is read-only (dry run): no snapshot is written"
    )


def test_writer_refuses_unsorted_or_malformed_digests(make_store: StoreFactory) -> None:
    store = make_store()
    unsorted = r"^digests must be written in ascending order$"
    with pytest.raises(ValueError, match=unsorted), store.writer(KEY) as out:
        out.write_block(sorted([sha(1), sha(2)], reverse=True))
    malformed = r"^digests must be 64 lowercase hex characters$"
    with pytest.raises(ValueError, match=malformed), store.writer(KEY) as out:
        out.write_block([sha(1).upper()])
    assert store.read(KEY).reason is Reason.MISSING  # type: ignore[union-attr]


# -- local only -------------------------------------------------------------------------------


def test_local_files_are_private(tmp_path: Path) -> None:
    store = SnapshotStore(str(tmp_path / "a" / "snapshots"))
    write(store, digests(0, 3))
    root = tmp_path / "a"
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), path


def test_file_url(tmp_path: Path) -> None:
    write(SnapshotStore(f"file://{tmp_path}"), digests(0, 3))
    assert (tmp_path / KEY.name).is_file()


def test_default_dir_follows_xdg_and_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    store = SnapshotStore(None)
    assert store.url == str(tmp_path / "xdg" / "target-tiktok-audiences" / "snapshots")
    write(store, digests(0, 3))
    assert (tmp_path / "xdg" / "target-tiktok-audiences" / "snapshots" / KEY.name).is_file()
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert SnapshotStore(None).url == str(
        tmp_path / "home" / ".local" / "share" / "target-tiktok-audiences" / "snapshots"
    )


HOLD = """
import sys
from target_tiktok_audiences.snapshot import SnapshotKey, SnapshotStore
with SnapshotStore(sys.argv[1]).lock(SnapshotKey(*sys.argv[2:5])):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_local_lock_excludes_another_process(tmp_path: Path) -> None:
    url = str(tmp_path / "snapshots")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, url, KEY.advertiser_id, KEY.audience_id, KEY.contract],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with (
            pytest.raises(SnapshotError) as err,
            SnapshotStore(url, lock_wait_seconds=0.3).lock(KEY),
        ):
            pass
        lock_file = tmp_path / "snapshots" / KEY.lock_name
        assert str(err.value) == (
            "another run holds the snapshot lock for audience 123456 (EMAIL_SHA256) of "
            f"advertiser 7000000000000000001 (lock file {lock_file}); waited 0 s. Re-run when "
            "it has finished; if no other run is active, remove the lock"
        )
    finally:
        holder.communicate("")
    assert holder.returncode == 0
    with SnapshotStore(url).lock(KEY):
        pass


# -- object storage only ----------------------------------------------------------------------


def test_s3_lock_has_a_lease_that_a_live_run_renews(bucket: str) -> None:
    url = f"s3://{bucket}/prefix"
    store = SnapshotStore(url, lease_seconds=1.5, lock_wait_seconds=0.5)
    s3 = boto3.client("s3")
    lock_key = f"prefix/{KEY.lock_name}"

    def lock_record() -> dict[str, float]:
        record: dict[str, float] = json.loads(
            s3.get_object(Bucket=bucket, Key=lock_key)["Body"].read()
        )
        return record

    with store.lock(KEY):
        first = lock_record()
        assert set(first) == {"owner", "created", "expires"}
        time.sleep(2.0)  # longer than the lease: the live run renewed it meanwhile
        renewed = lock_record()
        assert renewed["owner"] == first["owner"] and renewed["expires"] > first["expires"]
        with pytest.raises(SnapshotError), SnapshotStore(url, lock_wait_seconds=0.5).lock(KEY):
            pass  # a renewed lease is not stale
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket=bucket, Key=lock_key)  # released


def test_s3_lock_of_a_killed_run_expires_with_its_lease(bucket: str) -> None:
    url = f"s3://{bucket}/prefix"
    store = SnapshotStore(url, lock_wait_seconds=0.5)
    s3 = boto3.client("s3")
    lock_key = f"prefix/{KEY.lock_name}"
    live = json.dumps({"owner": "other:1:x", "created": time.time(), "expires": time.time() + 60})
    s3.put_object(Bucket=bucket, Key=lock_key, Body=live.encode())
    with pytest.raises(SnapshotError) as err, store.lock(KEY):
        pass
    assert str(err.value) == (
        "another run holds the snapshot lock for audience 123456 (EMAIL_SHA256) of advertiser "
        f"7000000000000000001 (lock object s3://{bucket}/prefix/{KEY.lock_name}, renewed by "
        "its run every 40 s); waited 0 s. Re-run when it has finished; if no other run is "
        "active, remove the lock"
    )
    dead = json.dumps(
        {"owner": "other:1:x", "created": time.time() - 70, "expires": time.time() - 1}
    )
    s3.put_object(Bucket=bucket, Key=lock_key, Body=dead.encode())
    with store.lock(KEY):  # the killed run's lock is taken over
        body = s3.get_object(Bucket=bucket, Key=lock_key)["Body"].read()
        assert b"other:1:x" not in body


def test_scope_is_the_api_host() -> None:
    assert scope_for("https://business-api.tiktok.com/open_api/v1.3") == "business-api.tiktok.com"
    assert scope_for("http://127.0.0.1:8123/open_api/v1.3") == "127.0.0.1_8123"
    assert scope_for("http://[::1]:99/x") == "unknown-host"  # not a plain path segment


def test_scoped_store_reads_a_snapshot_written_before_scopes(tmp_path: Path) -> None:
    write(SnapshotStore(str(tmp_path)), digests(0, 5))
    scoped = SnapshotStore(str(tmp_path), scope="business-api.tiktok.com")
    assert read_all(scoped) == digests(0, 5)
    write(scoped, digests(0, 7))
    assert (tmp_path / "business-api.tiktok.com" / KEY.name).is_file()
    assert read_all(scoped) == digests(0, 7)


def test_s3_objects_hold_the_format(bucket: str) -> None:
    store = SnapshotStore(f"s3://{bucket}")
    values = digests(0, 10)
    write(store, values)
    raw = boto3.client("s3").get_object(Bucket=bucket, Key=KEY.name)["Body"].read()
    assert raw[HEADER_SIZE:] == bytes.fromhex("".join(values))
    assert raw[:HEADER_SIZE].rstrip().startswith(b"{") and raw[HEADER_SIZE - 1 :][:1] == b"\n"


def test_missing_package_and_unknown_protocol() -> None:
    with pytest.raises(SnapshotError) as err:
        SnapshotStore("gs://bucket/snapshots")
    assert str(err.value) == "snapshot_url gs://bucket/snapshots: install gcsfs to use it"
    code = (
        "import sys; sys.modules['s3fs'] = None\n"
        "from target_tiktok_audiences.snapshot import SnapshotStore, SnapshotError\n"
        "try:\n    SnapshotStore('s3://bucket/x')\n"
        "except SnapshotError as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == (
        "snapshot_url s3://bucket/x: install target-tiktok-audiences[s3] (s3fs) to use it\n"
    )


def test_display_url_drops_credentials() -> None:
    assert display_url("s3://KEY:SECRET@bucket/p") == "s3://bucket/p"
    assert display_url("az://container/p?sig=abc&se=1") == "az://container/p"


# -- helpers reading and writing raw objects --------------------------------------------------


def _get(store: SnapshotStore, name: str) -> bytes:
    if store.local:
        return (Path(store.url) / name).read_bytes()
    bucket, _, prefix = store.url.removeprefix("s3://").partition("/")
    return boto3.client("s3").get_object(Bucket=bucket, Key=f"{prefix}/{name}")["Body"].read()


def _put(store: SnapshotStore, name: str, data: bytes) -> None:
    if store.local:
        (Path(store.url) / name).write_bytes(data)
        return
    bucket, _, prefix = store.url.removeprefix("s3://").partition("/")
    boto3.client("s3").put_object(Bucket=bucket, Key=f"{prefix}/{name}", Body=data)


# --- A create's set: recorded in flight, then copied as the snapshot (issue 21) ---------------


def _counting_source(values: list[str]) -> tuple[Callable[[], Iterator[list[str]]], list[int]]:
    calls: list[int] = []

    def source() -> Iterator[list[str]]:
        calls.append(1)
        return iter([values[:40_000], values[40_000:]])

    return source, calls


def test_a_confirmed_create_copies_the_set_it_recorded_in_flight(
    make_store: StoreFactory,
) -> None:
    store = make_store()
    name_key = SnapshotKey.for_name(KEY.advertiser_id, "users (EMAIL_SHA256)", KEY.contract)
    values = digests(0, 70_000)
    source, calls = _counting_source(values)
    tracker = Tracker(store, KEY, name_key)
    tracker.record_create(source)
    tracker.confirm(
        source, full=True, base=None, now=dt.datetime(2026, 11, 30, 12, tzinfo=dt.timezone.utc)
    )
    found = store.read(KEY)
    assert isinstance(found, Snapshot)
    header = found.header
    assert (header.key, header.kind, header.count, header.digest_bytes) == (
        KEY,
        Kind.SNAPSHOT,
        70_000,
        32,
    )
    assert header.full_at == "2026-11-30T12:00:00+00:00"
    assert list(found) == values  # its checksum is checked as it is read
    assert store.read(name_key, Kind.IN_FLIGHT).reason is Reason.MISSING  # type: ignore[union-attr]
    # Read once where the store is local (the copy), twice on object storage (no copy).
    assert len(calls) == (1 if store.local else 2)


def test_a_changed_in_flight_record_is_not_copied(tmp_path: Path) -> None:
    store = SnapshotStore(str(tmp_path / "snapshots"))
    name_key = SnapshotKey.for_name(KEY.advertiser_id, "users (EMAIL_SHA256)", KEY.contract)
    values = digests(0, 1_000)
    source, calls = _counting_source(values)
    store.write(name_key, source(), kind=Kind.IN_FLIGHT, source=source)
    # Another writer replaces the in-flight record meanwhile (the header differs).
    other = SnapshotStore(str(tmp_path / "snapshots"))
    other.write(name_key, [digests(5_000, 5_010)], kind=Kind.IN_FLIGHT)
    assert not store.copy_written(source, KEY)
    assert store.read(KEY).reason is Reason.MISSING  # type: ignore[union-attr]
    # Same header, different body: the checksum check refuses it, nothing is committed.
    store.write(name_key, source(), kind=Kind.IN_FLIGHT, source=source)
    path = tmp_path / "snapshots" / name_key.path(Kind.IN_FLIGHT)
    body = bytearray(path.read_bytes())
    body[HEADER_SIZE] ^= 1
    path.write_bytes(bytes(body))
    assert not store.copy_written(source, KEY)
    assert store.read(KEY).reason is Reason.MISSING  # type: ignore[union-attr]
    # Same header, a byte cut off the end: refused, not a crash halfway through.
    store.write(name_key, source(), kind=Kind.IN_FLIGHT, source=source)
    path.write_bytes(path.read_bytes()[:-1])
    assert not store.copy_written(source, KEY)
    assert store.read(KEY).reason is Reason.MISSING  # type: ignore[union-attr]
    assert not store.copy_written(lambda: iter(()), KEY)  # another source: nothing known
    assert len(calls) == 3


def test_a_confirmed_partner_create_over_a_mib_is_copied_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """copy_written reads whole entries: a partner set (33 bytes an entry, and 1 MiB is no
    multiple of 33) over 1 MiB is copied byte for byte, not refused halfway."""
    now = "2026-11-30T12:00:00+00:00"
    monkeypatch.setattr(snapshot, "utc_now", lambda: now)
    store = SnapshotStore(str(tmp_path / "snapshots"))
    values = sorted(f"0{1 + i % 3}{sha(i)}" for i in range(40_000))  # tag, then the digest
    name_key = SnapshotKey.for_name(KEY.advertiser_id, "vip", "PARTNER")
    key = SnapshotKey(KEY.advertiser_id, KEY.audience_id, "PARTNER")
    source, calls = _counting_source(values)
    tracker = Tracker(store, key, name_key)
    tracker.record_create(source)
    tracker.confirm(source, full=True, base=None, now=dt.datetime.fromisoformat(now))
    reference = SnapshotStore(str(tmp_path / "reference"))
    reference.write(key, [values], full_at=now)
    assert _get(store, key.name) == (tmp_path / "reference" / key.name).read_bytes()
    assert len(calls) == 1  # the in-flight record; the snapshot is its copy


# --- A set written from the sorted file's text (issue 21, third round) -----------------------

NOW = "2026-11-30T12:00:00+00:00"


def _lines_file(path: Path, values: list[str]) -> Path:
    path.write_bytes("".join(v + "\n" for v in values).encode("ascii"))
    return path


@pytest.mark.parametrize(
    "values",
    [
        digests(0, 70_000),  # 70 reads of 64 KiB, each ending inside a line
        sorted(hashlib.md5(str(i).encode()).hexdigest() for i in range(3_000)),  # 16 bytes
        [sha(1)],
        [sha(1) * 1100, sha(2) * 1100],  # lines longer than a read (the store takes any width)
        [],
    ],
    ids=["sha256", "md5", "one", "long", "empty"],
)
@pytest.mark.parametrize("kind", [Kind.SNAPSHOT, Kind.IN_FLIGHT])
def test_a_set_written_from_its_sorted_file_equals_one_written_from_its_blocks(
    make_store: StoreFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    values: list[str],
    kind: Kind,
) -> None:
    monkeypatch.setattr(snapshot, "utc_now", lambda: NOW)
    store = make_store()
    path = _lines_file(tmp_path / "sorted.txt", values)
    assert store.write_lines(KEY, path, kind=kind, full_at=NOW) == len(values)
    reference = SnapshotStore(str(tmp_path / "reference"))
    reference.write(KEY, [values[:1234], values[1234:]], kind=kind, full_at=NOW)
    assert _get(store, KEY.path(kind)) == (tmp_path / "reference" / KEY.path(kind)).read_bytes()
    found = store.read(KEY, kind)
    assert isinstance(found, Snapshot)
    assert list(found) == values


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (sha(1).upper() + "\n", "digests must be 64 lowercase hex characters"),
        (sha(1)[:62] + "\n" + sha(2) + "\n", "digests must be 62 lowercase hex characters"),
        (sha(1) + "\r\n", "digests must be an even number of hex characters"),
        ("".join(d + "\n" for d in digests(0, 2)).replace("\n", "\r\n"), "digests must be an even"),
        (
            min(sha(1), sha(2)) + "\n" + max(sha(1), sha(2)),
            "the last line of a sorted file has no newline",
        ),
        (sha(1)[:30] + " " + sha(1)[31:] + "\n", "digests must be 64 lowercase hex characters"),
        (sha(1) + "\n\n", "digests must be 64 lowercase hex characters"),
        ("\n", "digests must be an even number of hex characters"),
        ("é" * 32 + "\n", "'ascii' codec can't decode"),
    ],
)
def test_a_sorted_file_that_is_not_one_digest_a_line_is_refused(
    tmp_path: Path, text: str, error: str
) -> None:
    store = SnapshotStore(str(tmp_path / "snapshots"))
    path = tmp_path / "sorted.txt"
    path.write_bytes(text.encode("utf-8"))
    with pytest.raises(ValueError, match=f"^{error}"):
        store.write_lines(KEY, path)
    assert store.read(KEY).reason is Reason.MISSING  # type: ignore[union-attr]


def test_a_sorted_file_is_checked_to_ascend_from_read_to_read(tmp_path: Path) -> None:
    """Lines within one read are the writer's to order (write_sorted checks them); from one
    read to the next the store checks them itself."""
    values = digests(0, 2_000)
    whole = (1 << 16) // 65  # lines the first read holds whole: the second starts lower
    lines = values[-whole:] + values[:-whole]
    store = SnapshotStore(str(tmp_path / "snapshots"))
    path = _lines_file(tmp_path / "sorted.txt", lines)
    with pytest.raises(ValueError, match=r"^digests must be written in strictly ascending order$"):
        store.write_lines(KEY, path)
    assert store.read(KEY).reason is Reason.MISSING  # type: ignore[union-attr]


def test_a_tracker_records_a_create_from_its_sorted_file(
    make_store: StoreFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In flight and as the snapshot, byte for byte what the blocks give; the stream itself is
    not read (the file is)."""
    monkeypatch.setattr(snapshot, "utc_now", lambda: NOW)
    store = make_store()
    values = digests(0, 70_000)
    path = _lines_file(tmp_path / "sorted.txt", values)
    name_key = SnapshotKey.for_name(KEY.advertiser_id, "users (EMAIL_SHA256)", KEY.contract)
    source, calls = _counting_source(values)
    tracker = Tracker(store, KEY, name_key, path)
    tracker.record_create(source)
    reference = SnapshotStore(str(tmp_path / "reference"))
    reference.write(name_key, [values], kind=Kind.IN_FLIGHT)
    in_flight = name_key.path(Kind.IN_FLIGHT)
    assert _get(store, in_flight) == (tmp_path / "reference" / in_flight).read_bytes()
    tracker.confirm(source, full=True, base=None, now=dt.datetime.fromisoformat(NOW))
    reference.write(KEY, [values], full_at=NOW)
    assert _get(store, KEY.name) == (tmp_path / "reference" / KEY.name).read_bytes()
    assert calls == []


def test_a_create_record_is_aged_from_the_moment_it_was_written(tmp_path: Path) -> None:
    """The next run waits create_confirm_seconds minus the record's age for the audience: a time
    cut to the whole second would age it by up to a second (20 of TikTok's seconds at the
    suite's time scale), and the wait would end before TikTok lists the audience."""
    store = SnapshotStore(str(tmp_path / "store"))
    before = dt.datetime.now(dt.timezone.utc)
    StoredCreates(store).mark("7000000000000000001", "VIP")
    after = dt.datetime.now(dt.timezone.utc)
    record = store.read(
        SnapshotKey.for_name("7000000000000000001", "VIP", "AUDIENCE"), Kind.CREATING
    )
    assert isinstance(record, Snapshot)
    assert before <= dt.datetime.fromisoformat(record.header.created_at) <= after
