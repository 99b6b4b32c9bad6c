"""The lean record path (TargetTikTokAudiences._process_record_message) against the SDK's own.

Both paths are fed the same messages on two fresh targets (dry run, no network); every record
the sink is given, every user it hands to its delivery (digests, removed, key), the drains,
the stream reports and the errors must be equal.
"""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from singer_sdk import Target
from singer_sdk.singerlib.encoding.base import GenericSingerReader

from target_tiktok_audiences.reader import PrivateSingerReader
from target_tiktok_audiences.sink import AudienceSink
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


def _feed(
    path: Path_, tmp_path: Path, messages: list[dict[str, Any]], **config: Any
) -> tuple[list[tuple[str, Any]], dict[str, Any]]:
    """(what each stream's delivery was given, the stream reports) after `messages`."""
    target = TargetTikTokAudiences(
        config={
            "advertiser_ids": ["7000000000000000001"],
            "dry_run": True,
            "output_dir": str(tmp_path),
            "default_phone_region": "US",
            **config,
        },
        validate_config=True,
    )
    given: list[tuple[str, Any]] = []
    for message in copy.deepcopy(messages):
        if message["type"] == "SCHEMA":
            target._process_schema_message(message)
            for name, sink in target._sinks_active.items():
                delivery = sink.binding.delivery  # type: ignore[attr-defined]
                if not getattr(delivery, "_recorded", False):
                    delivery.add = lambda ids, removed, user=None, _n=name: given.append(
                        (_n, (ids, removed, user))
                    )
                    delivery.flush = lambda _n=name: given.append((_n, "flush"))
                    delivery._recorded = True
                    sink.process_record = _seen(sink.process_record, name, given)
        else:
            path(target, message)
    reports = {
        name: json.loads(json.dumps(report, default=lambda o: o.__dict__))
        for name, report in target.run.report.streams.items()
    }
    for report in reports.values():
        report.pop("audiences")
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
    given = results[1][0]
    users_before_flushes = [
        sum(isinstance(what, tuple) for _, what in given[:i])
        for i, (_, what) in enumerate(given)
        if what == "flush"
    ]
    assert users_before_flushes == [10, 20]


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
