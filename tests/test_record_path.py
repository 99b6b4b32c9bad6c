"""The lean record path (TargetTikTokAudiences._process_record_message) against the SDK's own.

Both paths are fed the same messages on two fresh targets (dry run, no network); every record
the sink is given, every user it hands to its delivery (digests, removed, key), the drains,
the stream reports and the errors must be equal.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from singer_sdk import Target
from singer_sdk.singerlib.encoding.base import GenericSingerReader

from target_tiktok_audiences.deliveries.files import FileDelivery
from target_tiktok_audiences.deliveries.mirror import MirrorDelivery
from target_tiktok_audiences.run import Binding
from target_tiktok_audiences.singer.reader import PrivateSingerReader
from target_tiktok_audiences.singer.sink import BLOCK_RECORDS, AudienceSink
from target_tiktok_audiences.target import TargetTikTokAudiences

Path_ = Callable[[TargetTikTokAudiences, dict[str, Any]], None]
SDK_PATH: Path_ = Target._process_record_message  # type: ignore[assignment]
LEAN_PATH: Path_ = TargetTikTokAudiences._process_record_message

SCHEMA = {
    "type": "SCHEMA",
    "stream": "users",
    "key_properties": ["id"],
    "schema": {
        "properties": {
            "id": {"type": "integer"},
            "email": {"type": ["string", "null"]},
            "phone": {"type": ["string", "null"]},
            "unsubscribed": {"type": ["boolean", "null"]},
            "_sdc_deleted_at": {"type": ["string", "null"], "format": "date-time"},
        }
    },
}


def _record(**values: Any) -> dict[str, Any]:
    # Every column present: stream-map expressions name them.
    record = {"email": None, "phone": None, "unsubscribed": None, **values}
    return {"type": "RECORD", "stream": "users", "record": record}


RECORDS = [
    _record(id=1, email=" Ana@Example.com ", phone="+44 20 7946 0958"),
    _record(id=2, email="bo@example.com", _sdc_deleted_at="2026-01-01T00:00:00Z"),
    _record(id=3, email="chen@example.com", _sdc_deleted_at=None, _sdc_sequence=5),
    _record(id=4, email="not an email", phone="n/a", unsubscribed=True),
    _record(id=5, email=None, phone=None, _sdc_extracted_at="2026-01-01T00:00:00Z"),
    {**_record(id=6, email="dara@example.com"), "time_extracted": "2026-01-01T00:00:00Z"},
    _record(id=7, email="eli@example.com", unsubscribed=False),
]


_CLOCK_FIELDS = {"_sdc_received_at", "_sdc_batched_at", "_sdc_sequence", "_sdc_sync_started_at"}


def _seen(process: Callable[..., None], name: str, given: list[tuple[str, Any]]) -> Any:
    def process_record(record: dict[str, Any], context: dict[str, Any]) -> None:
        # The record as the sink sees it; metadata stamped with the clock shows as present (or
        # None) only.
        seen = {
            k: "<clock>" if k in _CLOCK_FIELDS and v is not None else v for k, v in record.items()
        }
        given.append((name, seen))
        process(record, context)

    return process_record


def _rejects(reject: Callable[..., None], rejected: list[Any]) -> Any:
    def recorded(record: dict[str, Any], contract: str, reason: str) -> None:
        rejected.append((record.get("id"), contract, reason))
        reject(record, contract, reason)

    return recorded


class _Given:
    """What one stream's delivery was given, in a form both of the sink's ways produce: the
    users one by one (add) or a block's digests contract by contract (add_column) become, per
    stretch between two flushes, each contract's digests in record order, the number of kept
    users, and the removed or keyed users as they came."""

    def __init__(self) -> None:
        self.stretches: list[dict[str, Any]] = [self._stretch()]

    @staticmethod
    def _stretch() -> dict[str, Any]:
        return {"digests": {}, "kept_users": 0, "users": []}

    def add(self, ids: dict[str, str], removed: bool, user: str | None = None) -> None:
        stretch = self.stretches[-1]
        if removed or user is not None:
            stretch["users"].append((ids, removed, user))
            return
        for contract, digest in ids.items():
            stretch["digests"].setdefault(contract, []).append(digest)
        stretch["kept_users"] += 1

    def add_column(self, contract: str, digests: list[str], users: int) -> None:
        stretch = self.stretches[-1]
        if digests:
            stretch["digests"].setdefault(contract, []).extend(digests)
        stretch["kept_users"] += users

    def flush(self) -> None:
        self.stretches.append(self._stretch())


def _dry_target(tmp_path: Path, **config: Any) -> TargetTikTokAudiences:
    return TargetTikTokAudiences(
        config={
            "advertiser_ids": ["7000000000000000001"],
            "dry_run": True,
            "output_dir": str(tmp_path),
            "default_phone_region": "US",
            **config,
        },
        validate_config=True,
    )


def _reports(target: TargetTikTokAudiences) -> dict[str, Any]:
    """The stream reports as JSON, without the audiences (a dry run's are its plan)."""
    reports = {
        name: json.loads(json.dumps(report, default=lambda o: o.__dict__))
        for name, report in target.run.report.streams.items()
    }
    for report in reports.values():
        report.pop("audiences")
    return reports


def _feed(
    path: Path_,
    tmp_path: Path,
    messages: list[dict[str, Any]],
    *,
    by_column: bool = True,
    **config: Any,
) -> tuple[list[tuple[str, Any]], dict[str, Any]]:
    """(what each sink was given, then what each stream's delivery was given and what it
    rejected, in order; the stream reports) after `messages`; by_column=False makes the sinks
    encode one record at a time."""
    target = _dry_target(tmp_path, **config)
    given: list[tuple[str, Any]] = []
    deliveries: dict[str, _Given] = {}
    rejected: dict[str, list[Any]] = {}  # stream -> (record id, contract, reason), in order
    for message in copy.deepcopy(messages):
        if message["type"] == "SCHEMA":
            target._process_schema_message(message)
            for name, sink in target._sinks_active.items():
                delivery = sink.binding.delivery  # type: ignore[attr-defined]
                if not getattr(delivery, "_recorded", False):  # one per stream, across sinks
                    recorder = deliveries.setdefault(name, _Given())
                    delivery.add = recorder.add
                    delivery.add_column = recorder.add_column
                    delivery.flush = recorder.flush
                    delivery._recorded = True
                if not getattr(sink, "_recorded", False):  # a new schema makes a new sink
                    sink.process_record = _seen(sink.process_record, name, given)
                    sink._recorded = True  # type: ignore[attr-defined]
                    binding = sink.binding  # type: ignore[attr-defined]
                    if binding is not None and not getattr(binding, "_recorded", False):
                        binding.reject = _rejects(binding.reject, rejected.setdefault(name, []))
                        binding._recorded = True
                    if not by_column:
                        sink._by_column = False  # type: ignore[attr-defined]
        else:
            path(target, message)
    target.drain_all()
    reports = _reports(target)
    given += [(name, recorder.stretches) for name, recorder in deliveries.items()]
    given += [(name, ("rejected", in_order)) for name, in_order in rejected.items()]
    return given, reports


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"add_record_metadata": True},
        {"stream_maps": {"users": {"__filter__": "not unsubscribed"}}},
        {"stream_maps": {"users": {"phone": "__NULL__", "email": "(email or '').strip()"}}},
        {"stream_maps": {"users": {"__alias__": "people"}}},
        # Two maps of one stream: the lean path hands it to the SDK's.
        {"stream_maps": {"people": {"__source__": "users"}}},
        {"flattening_enabled": True, "flattening_max_depth": 1},
        {"audiences": [{"stream": "users", "remove_column": "unsubscribed"}]},
        {"sync_mode": "append"},
    ],
    ids=["plain", "metadata", "filter", "map", "alias", "split", "flatten", "remove", "append"],
)
def test_lean_path_gives_the_deliveries_what_the_sdk_path_gives(
    tmp_path: Path, config: dict[str, Any]
) -> None:
    messages = [SCHEMA, *RECORDS]
    sdk = _feed(SDK_PATH, tmp_path / "sdk", messages, **config)
    lean = _feed(LEAN_PATH, tmp_path / "lean", messages, **config)
    assert lean == sdk
    assert sdk[0]  # the scenario reached a delivery


def test_a_new_schema_mid_stream_reaches_the_new_sink_as_on_the_sdk_path(tmp_path: Path) -> None:
    # The lean path keeps each stream's map and sink until the next SCHEMA message.
    changed = copy.deepcopy(SCHEMA)
    changed["schema"]["properties"]["country"] = {"type": ["string", "null"]}
    messages = [SCHEMA, *RECORDS[:3], changed, *RECORDS[3:], SCHEMA, RECORDS[0]]
    for config in ({}, {"stream_maps": {"users": {"__alias__": "people"}}}):
        sdk = _feed(SDK_PATH, tmp_path / "sdk", messages, **config)
        lean = _feed(LEAN_PATH, tmp_path / "lean", messages, **config)
        assert lean == sdk
        assert len(sdk[0]) > len(RECORDS)


@pytest.mark.parametrize(
    "bad",
    [
        {"type": "RECORD", "stream": "users"},
        {"type": "RECORD", "record": {"id": 1}},
        _record(email="no-key@example.com"),  # no key property
        {"type": "RECORD", "stream": "unknown", "record": {"id": 1}},
    ],
    ids=["no-record", "no-stream", "no-key", "no-schema"],
)
def test_lean_path_fails_as_the_sdk_path_fails(tmp_path: Path, bad: dict[str, Any]) -> None:
    errors = []
    for name, path in (("sdk", SDK_PATH), ("lean", LEAN_PATH)):
        with pytest.raises(Exception) as caught:
            _feed(path, tmp_path / name, [SCHEMA, bad])
        errors.append((type(caught.value), str(caught.value)))
    assert errors[0] == errors[1]


def test_lean_path_drains_a_full_sink_as_the_sdk_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(AudienceSink, "MAX_SIZE_DEFAULT", 10)
    many = [_record(id=i, email=f"user{i}@example.com") for i in range(25)]
    results = [
        _feed(path, tmp_path / name, [SCHEMA, *many])
        for name, path in (("sdk", SDK_PATH), ("lean", LEAN_PATH))
    ]
    assert results[0] == results[1]
    ((_, stretches),) = [(n, what) for n, what in results[1][0] if isinstance(what, list)]
    # Two drains of 10 records while reading, the last 5 at the end of input; each stretch's
    # users are delivered before its flush.
    assert [s["kept_users"] for s in stretches] == [10, 10, 5, 0]
    assert stretches[1]["digests"]["EMAIL_SHA256"] == [
        hashlib.sha256(f"user{i}@example.com".encode()).hexdigest() for i in range(10, 20)
    ]


# --- The reader's short way for RECORD lines (PrivateSingerReader._read) -----------------------

_LINES = [
    json.dumps(SCHEMA),
    *(json.dumps(m) for m in RECORDS),
    json.dumps({"type": "STATE", "value": {"bookmark": 1}}),
    json.dumps({"type": "ACTIVATE_VERSION", "stream": "users", "version": 7}),
    '{"type": "RECORD", "stream": "users", "record": {"id": 8, "email": "\\ud800"}}',
    json.dumps({"record": {"id": 9}, "stream": "users", "type": "RECORD", "version": 2}),
]


def _read(
    process_lines: Callable[..., Any], lines: list[str]
) -> tuple[list[tuple[str, Any]], Any, int]:
    """(callbacks made, the counter returned or the error raised, the reader's line number)."""
    reader = PrivateSingerReader()
    calls: list[tuple[str, Any]] = []
    kinds = ("RECORD", "SCHEMA", "STATE", "ACTIVATE_VERSION", "BATCH")
    callbacks = {k: lambda m, _k=k: calls.append((_k, m)) for k in kinds}
    try:
        result: Any = dict(process_lines(reader, io.StringIO("\n".join(lines) + "\n"), callbacks))
    except Exception as exc:  # compared below: same type, same text
        result = (type(exc), str(exc))
    return calls, result, reader.line_number


@pytest.mark.parametrize(
    "bad",
    [
        None,
        '{"type": "RECORD", "stream": "users", "record": [1]}',
        '{"type": "RECORD", "stream": 5, "record": {"id": 1}}',
        '{"type": "RECORD", "stream": "users"}',
        '{"type": "RECORDS", "stream": "users", "record": {"id": 1}}',
        '{"type": "RECORD", "stream": "users", "record": {"id": 1}',
        "[1, 2]",
        "",
    ],
    ids=["valid", "list", "stream", "no-record", "unknown", "truncated", "not-object", "blank"],
)
def test_the_readers_short_way_equals_the_sdk_loop(bad: str | None) -> None:
    lines = _LINES if bad is None else [*_LINES[:3], bad, *_LINES[3:]]
    sdk = _read(GenericSingerReader.process_lines, lines)  # via our deserialize_json
    lean = _read(PrivateSingerReader.process_lines, lines)
    assert lean == sdk
    assert sdk[0]


# --- The sink's two ways: a block of records column by column, or one record at a time --------

_VALUES = {
    "email": st.sampled_from(
        [None, "", "  ", " Ana@Example.com ", "bo@example.com", "not an email", 5, "a" * 70]
    ),
    "phone": st.sampled_from(
        [None, "+44 20 7946 0958", "(415) 555-0134", "+14155550134", "n/a", "12345", True]
    ),
    "gaid": st.sampled_from(
        [
            None,
            "6D92078A-8246-4BA4-AE5B-76104861E7DC",
            "00000000-0000-0000-0000-000000000000",
            "6d92078a82464ba4ae5b76104861e7dc",
            "zz92078a-8246-4ba4-ae5b-76104861e7dc",
        ]
    ),
}
_COLUMNS = {"EMAIL_SHA256": "email", "PHONE_SHA256": "phone", "GAID_SHA256": "gaid"}
_RECORD = st.fixed_dictionaries(
    _VALUES,
    optional={
        "_sdc_deleted_at": st.sampled_from([None, "2026-01-01T00:00:00Z"]),
        "_sdc_sequence": st.just(1),
    },
)


def _messages(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    schema = copy.deepcopy(SCHEMA)
    schema["schema"]["properties"]["gaid"] = {"type": ["string", "null"]}
    return [schema] + [
        {"type": "RECORD", "stream": "users", "record": {"id": i, **r}}
        for i, r in enumerate(records)
    ]


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    records=st.lists(_RECORD, max_size=60),
    config=st.sampled_from(
        [
            {},
            {"add_record_metadata": True},
            {"stream_maps": {"users": {"__filter__": "id % 3 != 1"}}},
            {"sync_mode": "append"},
            {"audiences": [{"stream": "users", "remove_column": "unsubscribed"}]},
        ]
    ),
)
def test_a_block_by_column_gives_what_records_one_by_one_give(
    tmp_path_factory: pytest.TempPathFactory, records: list[dict[str, Any]], config: dict[str, Any]
) -> None:
    # Every delivered digest in record order per contract, the kept users, the removed users,
    # the rejects in record order and the reports; a block is encoded early when a removed
    # record comes (it goes one by one), when the sink drains and at the end.
    config = {"audiences": [{"stream": "users", "identifiers": _COLUMNS}], **config}
    if "remove_column" in str(config):
        config["audiences"][0]["identifiers"] = _COLUMNS
    tmp = tmp_path_factory.mktemp("by-column")
    messages = _messages(records)
    one_by_one = _feed(LEAN_PATH, tmp / "one", messages, by_column=False, **config)
    by_column = _feed(LEAN_PATH, tmp / "column", messages, **config)
    assert by_column == one_by_one


def test_blocks_of_many_records_give_what_records_one_by_one_give(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Several full blocks, a drain in the middle of one (batch size 2,500), removed records
    # between them; the block path must actually be taken.
    monkeypatch.setattr(AudienceSink, "MAX_SIZE_DEFAULT", 2_500)
    rng = random.Random(21)
    pools = {column: strategy_values for column, strategy_values in _POOLS.items()}
    records = [
        {
            **{column: rng.choice(pool) for column, pool in pools.items()},
            **({"_sdc_deleted_at": "2026-01-01T00:00:00Z"} if rng.random() < 0.001 else {}),
        }
        for _ in range(6_000)
    ]
    config = {"audiences": [{"stream": "users", "identifiers": _COLUMNS}]}
    blocks: list[int] = []
    encode_block = AudienceSink._encode_block

    def counted(sink: AudienceSink) -> None:
        blocks.append(len(sink._block))
        encode_block(sink)

    one_by_one = _feed(LEAN_PATH, tmp_path / "one", _messages(records), by_column=False, **config)
    monkeypatch.setattr(AudienceSink, "_encode_block", counted)
    by_column = _feed(LEAN_PATH, tmp_path / "column", _messages(records), **config)
    assert by_column == one_by_one
    assert max(blocks) == BLOCK_RECORDS
    assert sum(blocks) == sum(1 for r in records if "_sdc_deleted_at" not in r)
    ((_, stretches),) = [(n, w) for n, w in by_column[0] if isinstance(w, list)]
    assert [s["kept_users"] for s in stretches][:2] == [
        sum(
            1
            for r in records[a:b]
            if "_sdc_deleted_at" not in r
            and any(_kept(column, r[column]) for column in _COLUMNS.values())
        )
        for a, b in ((0, 2_500), (2_500, 5_000))
    ]


_POOLS: dict[str, list[Any]] = {
    "email": [
        None,
        "",
        " x@example.com",
        "X@Example.com",
        "bad",
        *(f"u{i}@e.com" for i in range(40)),
    ],
    "phone": [
        None,
        "(415) 555-0134",
        "+44 20 7946 0958",
        "n/a",
        *(f"+1415555{i:04d}" for i in range(40)),
    ],
    "gaid": [None, "00000000-0000-0000-0000-000000000000", "6D92078A-8246-4BA4-AE5B-76104861E7DC"],
}


def _kept(column: str, value: Any) -> bool:
    return value not in (None, "", "bad", "n/a", "00000000-0000-0000-0000-000000000000")


# --- Lanes: a plain stream's RECORD lines a block at a time (reader.Lane, target._Lane) -------


def _listen(
    tmp_path: Path,
    lines: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    *,
    lanes: bool,
    **config: Any,
) -> tuple[Any, ...]:
    """Everything a run shows after reading `lines`: each stream's deliveries (stretches
    between flushes), its rejects in order, the reports, STATE on stdout, and the error."""
    given: dict[str, _Given] = {}
    rejected: dict[str, list[Any]] = {}
    with monkeypatch.context() as patch:
        for cls in (MirrorDelivery, FileDelivery):

            def add(self: Any, ids: dict[str, str], removed: bool, user: Any = None) -> None:
                given.setdefault(self.report.stream, _Given()).add(ids, removed, user)

            def add_column(self: Any, contract: str, digests: list[str], users: int) -> None:
                given.setdefault(self.report.stream, _Given()).add_column(contract, digests, users)

            def flush(self: Any) -> None:
                given.setdefault(self.report.stream, _Given()).flush()

            patch.setattr(cls, "add", add)
            patch.setattr(cls, "add_column", add_column)
            patch.setattr(cls, "flush", flush)
        reject = Binding.reject

        def recorded(self: Binding, record: dict[str, Any], contract: str, reason: str) -> None:
            rejected.setdefault(self.report.stream, []).append((record.get("id"), contract, reason))
            reject(self, record, contract, reason)

        patch.setattr(Binding, "reject", recorded)
        if not lanes:
            patch.setattr(AudienceSink, "takes_block", property(lambda self: False))
        target = _dry_target(tmp_path, **config)
        capsys.readouterr()
        error = None
        try:
            target.process_lines(io.StringIO("\n".join(lines) + "\n"))
            target.drain_all()
        except Exception as exc:  # compared: same type, same text
            error = (type(exc), str(exc))
        used_lanes = bool(target._lanes)
    reports = _reports(target)
    stretches = {name: g.stretches for name, g in given.items()}
    return stretches, rejected, reports, capsys.readouterr().out, error, used_lanes


_PLAIN = st.fixed_dictionaries(_VALUES)  # no _sdc_ field: the lane takes it in bulk
_MESSAGE = st.one_of(
    st.builds(lambda r: ("users", r), _PLAIN),
    st.builds(lambda r: ("users", r), _PLAIN),
    st.builds(lambda r: ("users", r), _RECORD),
    st.builds(lambda r: ("events", r), _RECORD),
    st.just(("STATE", None)),
    st.just(("ACTIVATE_VERSION", None)),
)


def _lines(messages: list[tuple[str, Any]]) -> list[str]:
    schema = _messages([])[0]
    out = [json.dumps(schema), json.dumps({**schema, "stream": "events"})]
    for i, (kind, record) in enumerate(messages):
        if kind == "STATE":
            out.append(json.dumps({"type": "STATE", "value": {"at": i}}))
        elif kind == "ACTIVATE_VERSION":
            out.append(json.dumps({"type": "ACTIVATE_VERSION", "stream": "users", "version": i}))
        else:
            out.append(
                json.dumps({"type": "RECORD", "stream": kind, "record": {"id": i, **record}})
            )
    return out


@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    # each example patches and restores through monkeypatch.context() and reads capsys first
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    messages=st.lists(_MESSAGE, min_size=10, max_size=120),
    max_size=st.sampled_from([3, 7, 10_000]),
)
def test_lanes_give_what_the_record_callback_gives(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    messages: list[tuple[str, Any]],
    max_size: int,
) -> None:
    # users: a plain mirror stream (a lane); events: append mode (record by record); drains
    # at a small batch size, STATE, version boundaries and removed records between them.
    config = {
        "batch_size_rows": max_size,
        "audiences": [
            {"stream": "users", "identifiers": _COLUMNS},
            {"stream": "events", "identifiers": _COLUMNS, "sync_mode": "append"},
        ],
    }
    tmp = tmp_path_factory.mktemp("lanes")
    lines = _lines(messages)
    one_by_one = _listen(tmp / "one", lines, monkeypatch, capsys, lanes=False, **config)
    by_lane = _listen(tmp / "lane", lines, monkeypatch, capsys, lanes=True, **config)
    assert by_lane[:5] == one_by_one[:5]
    assert not one_by_one[5]
    assert by_lane[5] == any(kind == "users" for kind, _ in messages)  # the lane was taken


@pytest.mark.parametrize(
    "bad",
    [
        '{"type": "RECORD", "stream": "users", "record": {"email": "k@example.com"}}',
        '{"type": "RECORD", "stream": "users", "record": {"id": 1}',
        '{"type": "RECORD", "stream": "nowhere", "record": {"id": 1}}',
    ],
    ids=["no-key", "truncated", "no-schema"],
)
def test_lanes_fail_where_and_as_the_record_callback_fails(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    bad: str,
) -> None:
    # A bad line in the middle of a block: what came before it is delivered as before, and
    # the error is the same (a missing key property: the SDK's own error).
    records = [("users", {"email": f"u{i}@example.com"}) for i in range(30)]
    lines = _lines(records)
    lines = [*lines[:20], bad, *lines[20:]]
    config = {"audiences": [{"stream": "users", "identifiers": _COLUMNS}]}
    one_by_one = _listen(tmp_path / "one", lines, monkeypatch, capsys, lanes=False, **config)
    by_lane = _listen(tmp_path / "lane", lines, monkeypatch, capsys, lanes=True, **config)
    assert by_lane[:5] == one_by_one[:5]
    assert one_by_one[4] is not None
    assert by_lane[5]


@pytest.mark.parametrize("max_size", [1, 3, 7, 1_030])
def test_lanes_drain_after_the_same_records(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    max_size: int,
) -> None:
    # 2,500 plain records, a STATE and a removed record among them: every drain of the batch
    # comes after the same record as record by record (a lane's block is cut at its room).
    records: list[tuple[str, Any]] = [
        ("users", {"email": f"u{i}@example.com", "phone": None, "gaid": None}) for i in range(2_500)
    ]
    records[1_200] = ("STATE", None)
    records[1_500] = ("users", {"email": "gone@example.com", "_sdc_deleted_at": "2026-01-01"})
    config = {
        "batch_size_rows": max_size,
        "audiences": [{"stream": "users", "identifiers": _COLUMNS}],
    }
    lines = _lines(records)
    one_by_one = _listen(tmp_path / "one", lines, monkeypatch, capsys, lanes=False, **config)
    by_lane = _listen(tmp_path / "lane", lines, monkeypatch, capsys, lanes=True, **config)
    assert by_lane[:5] == one_by_one[:5]
    stretches = by_lane[0]["users"]
    assert sum(s["kept_users"] for s in stretches) == 2_498
    # a stretch per full batch, one for the rest at the end of input, and the empty last one
    assert len(stretches) == 2_499 // max_size + (2_499 % max_size > 0) + 1


def test_a_lane_cuts_a_block_longer_than_its_batch_room(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Its limit follows the batch, but whatever reaches flush() is cut at the batch's room:
    # 3 records read (not yet encoded: a block waits for 1,024), then a block of 9 at once:
    # drains after the 5th and the 10th record, as record by record.
    lines = _lines([("users", {"email": f"u{i}@example.com"}) for i in range(3)])
    config = {"batch_size_rows": 5, "audiences": [{"stream": "users", "identifiers": _COLUMNS}]}
    target = TargetTikTokAudiences(
        config={"advertiser_ids": ["7000000000000000001"], "dry_run": True, **config},
        validate_config=True,
    )
    given = _Given()
    target.process_lines(io.StringIO("\n".join(lines) + "\n"))
    delivery = target.run.deliveries["users"]
    monkeypatch.setattr(delivery, "add_column", given.add_column)
    monkeypatch.setattr(delivery, "flush", given.flush)
    lane = target._lanes["users"]
    lane.block = [{"id": 10 + i, "email": f"v{i}@example.com"} for i in range(9)]
    lane.flush()
    target.drain_all()
    assert [s["kept_users"] for s in given.stretches] == [5, 5, 2, 0]
    emails = [f"u{i}@example.com" for i in range(3)] + [f"v{i}@example.com" for i in range(9)]
    digests = [hashlib.sha256(e.encode()).hexdigest() for e in emails]
    assert [s["digests"].get("EMAIL_SHA256") for s in given.stretches] == [
        digests[:5],
        digests[5:10],
        digests[10:],
        None,
    ]
