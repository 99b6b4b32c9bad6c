"""The SDK's standard target tests, run against the sandbox and checked by reading the
audiences back (validate()).

Streams without an identifier column are ignored with a warning; pk_updates has an email
column and so becomes an audience.
"""

from __future__ import annotations

import gc
import inspect
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from singer_sdk import Target
from singer_sdk.mapper import SameRecordTransform
from singer_sdk.metrics import Counter, Metric
from singer_sdk.sinks import BatchSink
from singer_sdk.testing import get_target_test_class
from singer_sdk.testing.runners import TargetTestRunner
from singer_sdk.testing.suites import SingerTestSuite, target_tests
from singer_sdk.testing.templates import TargetTestTemplate

from target_tiktok_audiences import target as target_module
from target_tiktok_audiences.failures import MissingKeyProperty, missing_key
from target_tiktok_audiences.sandbox.server import SandboxServer, run_sandbox
from target_tiktok_audiences.target import TargetTikTokAudiences

from helpers import ADV1, ADV2, base_config, sandbox_windows, sha256

# What each standard test leaves in TikTok: audience name -> its members (the sandbox's
# oracle); every other test's streams have no identifier column and leave nothing.
EXPECTED_AUDIENCES: dict[str, dict[str, dict[str, list[str]]]] = {
    "pk_updates": {
        "example_stream": {
            "EMAIL_SHA256": sorted(sha256(e) for e in ("alice@example.com", "bob@example.com"))
        }
    },
}


def _validated(template: type[TargetTestTemplate]) -> type[TargetTestTemplate]:
    """The SDK's test, then what it left in TikTok: exactly the expected audiences, read back
    from the sandbox (the test's resource), and nothing for the advertiser not configured."""

    def validate(self: TargetTestTemplate) -> None:
        sandbox: SandboxServer = self.resource
        expected = EXPECTED_AUDIENCES.get(str(self.name), {})
        found = {a["name"]: a["members"] for a in sandbox.audiences(ADV1)}
        assert found == expected, self.name
        assert sandbox.audiences(ADV2) == []

    return type(template.__name__, (template,), {"validate": validate})


_SDKTests = get_target_test_class(
    TargetTikTokAudiences,
    custom_suites=[
        SingerTestSuite(kind="target", tests=[_validated(t) for t in target_tests.tests])
    ],
    include_target_tests=False,
)


class TestTargetTikTokAudiences(_SDKTests):  # type: ignore[misc,valid-type]
    """Each test against its own sandbox; the runner's config points at it."""

    @pytest.fixture
    def resource(self, tmp_path: Path) -> Iterator[SandboxServer]:
        with run_sandbox(tmp_path / "sandbox.db", **sandbox_windows()) as sandbox:
            yield sandbox

    @pytest.fixture
    def runner(self, resource: SandboxServer) -> TargetTestRunner:
        config: dict[str, Any] = base_config(resource, advertiser_ids=[ADV1])
        return TargetTestRunner(TargetTikTokAudiences, config=config, parse_env_config=True)


# Private SDK methods the project overrides, and why; an SDK rename or signature change must
# fail here, not silently stop being called in production.
PRIVATE_OVERRIDES = {
    "AudienceSink._remove_sdc_metadata_from_record": "soft deletes are read before the strip",
    "AudienceSink._validate_and_parse": "skipped for speed (only identifier columns are read)",
    "TargetTikTokAudiences._validate_config": "cross-field checks and closest-name messages",
    "TargetTikTokAudiences._write_state_message": "STATE only after delivery",
    "TargetTikTokAudiences._handle_termination": "never deliver on a signal",
    "TargetTikTokAudiences._process_schema_message": "map failures never quote a record",
    "RecordPath._process_record_message": "the SDK's record path without no-op hooks",
    "RecordPath._reset_max_record_age": "restarts the record-age alarm (record_age.py)",
    "PrivateSingerReader._process_unknown_message": "one line, never the message",
    "RecordPath._assert_sink_exists": "a RECORD before its SCHEMA is one line",
    "AudienceSink._singer_validate_message": "a missing key property is one line",
}


def _sdk_base_method(cls: type, name: str) -> object:
    for base in cls.__mro__[1:]:
        if base.__module__.startswith("singer_sdk") and name in vars(base):
            return vars(base)[name]
    return None


def _signature(method: object) -> list[tuple[str, object]]:
    func = method.__func__ if isinstance(method, (classmethod, staticmethod)) else method
    return [(p.name, p.kind) for p in inspect.signature(func).parameters.values()]


def test_every_overridden_sdk_method_keeps_the_sdk_signature() -> None:
    from target_tiktok_audiences.singer.fastpath import RecordPath
    from target_tiktok_audiences.singer.reader import PrivateSingerReader
    from target_tiktok_audiences.singer.sink import AudienceSink

    classes = {
        c.__name__: c
        for c in (AudienceSink, RecordPath, TargetTikTokAudiences, PrivateSingerReader)
    }
    overridden = []
    for cls in classes.values():
        for name, method in vars(cls).items():
            base = _sdk_base_method(cls, name)
            if base is None or not callable(getattr(cls, name)) or name == "__init__":
                continue
            overridden.append(f"{cls.__name__}.{name}")
            if name != "invoke":  # the SDK's own override of invoke is keyword-only too
                assert _signature(method) == _signature(base), f"{cls.__name__}.{name}"
    for qualified in PRIVATE_OVERRIDES:
        assert qualified in overridden, f"{qualified}: the SDK no longer has this method"
    private = {o for o in overridden if o.split(".")[1].startswith("_")}
    assert private <= set(PRIVATE_OVERRIDES) | {"PrivateSingerReader.__init__"}, (
        f"document why these private SDK methods are overridden: {private - set(PRIVATE_OVERRIDES)}"
    )


def test_the_lean_record_path_skips_only_hooks_that_do_nothing_for_audience_sink() -> None:
    # TargetTikTokAudiences._process_record_message leaves these calls out; that is only right
    # while AudienceSink keeps the SDK's no-op versions (or its own, which returns the record).
    from singer_sdk.sinks import Sink

    from target_tiktok_audiences.singer.sink import AudienceSink

    assert AudienceSink.preprocess_record is Sink.preprocess_record
    assert AudienceSink._after_process_record is Sink._after_process_record
    # ... and it asks these once per sink, or inlines them, as the SDK defines them.
    for name in ("include_sdc_metadata_properties", "key_properties", "max_size", "is_full"):
        assert getattr(AudienceSink, name) is getattr(Sink, name), name
    record = {"email": "a@example.com"}
    # Its key check is its own (one line, issue 27), which the lean path raises as it does.
    keyed = SimpleNamespace(key_properties=["id"], stream_name="users")
    with pytest.raises(MissingKeyProperty) as missing:
        AudienceSink._singer_validate_message(keyed, record)  # type: ignore[arg-type]
    assert str(missing.value) == str(missing_key("users", "id"))
    assert AudienceSink._validate_and_parse(None, record) is record  # type: ignore[arg-type]
    assert TargetTikTokAudiences.get_sink_class is Target.get_sink_class
    # ... and inlines these as the SDK defines them (issue 21).
    assert TargetTikTokAudiences.get_sink is Target.get_sink
    assert AudienceSink._get_context is BatchSink._get_context
    batch = SimpleNamespace(_pending_batch=None, start_batch=lambda context: None)
    opened = BatchSink._get_context(batch, record)  # type: ignore[arg-type]
    assert batch._pending_batch is opened
    assert BatchSink._get_context(batch, record) is opened  # type: ignore[arg-type]
    assert AudienceSink.tally_record_read is Sink.tally_record_read
    tally = SimpleNamespace(_total_records_read=3, _batch_records_read=2)
    Sink.tally_record_read(tally)  # type: ignore[arg-type]
    assert (tally._total_records_read, tally._batch_records_read) == (4, 3)
    assert Sink.current_size.fget(tally) == 3  # type: ignore[attr-defined]
    counter = Counter(Metric.RECORD_COUNT)
    counter.increment()
    counter.increment(0)
    assert counter.value == 1
    same = SameRecordTransform("users", {"properties": {}}, None, flattening_options=None)
    assert same.transform(record) is record
    assert TargetTikTokAudiences.default_sink_class is AudienceSink
    # The fields it strips only when present are the ones the SDK's strip pops.
    from target_tiktok_audiences.singer.fastpath import SDC_FIELDS as _SDC_FIELDS

    popped = {"_sdc_extra": 1, **dict.fromkeys(_SDC_FIELDS, 1)}
    Sink._remove_sdc_metadata_from_record(None, popped)  # type: ignore[arg-type]
    assert popped == {"_sdc_extra": 1}


def test_the_command_freezes_what_the_imports_made_before_the_cli_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The installed command is main(); it leaves the start-up's objects out of later
    # collections (gc.freeze) and then runs the SDK's CLI. The CLI alone (tests) does not.
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    scripts = tomllib.loads(pyproject.read_text())["project"]["scripts"]
    assert scripts["target-tiktok-audiences"] == "target_tiktok_audiences.target:main"
    frozen_at_cli: list[int] = []
    monkeypatch.setattr(
        TargetTikTokAudiences, "cli", lambda: frozen_at_cli.append(gc.get_freeze_count())
    )
    gc.unfreeze()
    try:
        target_module.main()
    finally:
        gc.unfreeze()  # this test process goes on collecting as before
    assert frozen_at_cli and frozen_at_cli[0] > 10_000
