"""target-tiktok-audiences: Singer target that keeps TikTok Custom Audiences in sync.

A thin adapter: each SDK override hands over to settings/ (config), run.py (the run's
lifecycle) or failures.py (how a known failure ends).
"""

from __future__ import annotations

import copy
import enum
import gc
import logging
import signal
import sys
import time
import weakref
from collections.abc import Callable
from itertools import repeat
from types import FrameType
from typing import Any

import click
from singer_sdk import Target
from singer_sdk.exceptions import ConfigValidationError, RecordsWithoutSchemaException
from singer_sdk.helpers.capabilities import PluginCapabilities
from singer_sdk.mapper import SameRecordTransform
from singer_sdk.sinks import Sink

from target_tiktok_audiences.failures import (
    KNOWN,
    DeliveryIncomplete,
    InputError,
    RecordBeforeSchema,
    config_file_error,
    describe,
    exit_on_known_failure,
    missing_key,
    private_map_errors,
)
from target_tiktok_audiences.reader import Lane, PrivateSingerReader
from target_tiktok_audiences.record_age import AgeAlarm
from target_tiktok_audiences.run import Run
from target_tiktok_audiences.settings import (
    CONFIG_SCHEMA,
    Settings,
    config_errors,
    config_warnings,
    schema_errors,
    unknown_key_errors,
)
from target_tiktok_audiences.sink import BLOCK_RECORDS, AudienceSink

README_URL = "https://github.com/target-tiktok-audiences/target-tiktok-audiences#readme"
HELP = (
    "Keep TikTok Custom Audiences in sync with the Singer messages read from stdin (or --input): "
    "emails, phone numbers and mobile ad ids are normalised, hashed and sent to every "
    "advertiser in advertiser_ids (sync_mode mirror, append or incremental; dry_run sends "
    "nothing). Settings come from --config FILE, or from TARGET_TIKTOK_AUDIENCES_* environment "
    "variables with --config ENV. `--about` lists every setting; the README explains modes, "
    "tokens and the bundled sandbox.\n\n\b\n"  # \b: click keeps the URL on one line
    f"README: {README_URL}"
)


# The SDK's own settings, described as they apply to this target (`--about`, the README table).
SDK_SETTINGS = {
    "load_method": "Always append-only, the only value accepted: how each audience changes is "
    "chosen by sync_mode.",
    "add_record_metadata": "Has no effect on what is sent: _sdc_* fields never reach TikTok, "
    "and a record with _sdc_deleted_at removes its user whatever this says.",
    "batch_size_rows": "Records the SDK collects before handing them on; has no effect on what "
    "is sent (file_max_ids and segment_batch_size size the uploads).",
    "flattening_enabled": "true: nested objects become columns named parent__child (see "
    "flattening_separator), so an identifier inside an object can be mapped in "
    "audiences[].identifiers.",
}


class _SdkNoise(logging.Filter):
    """The SDK's lines around ours (issue 29): a failure ends with ONE line, our own.

    "Error initializing target sink" comes before our line for a stream that cannot be bound,
    and the SDK's "Config validation failed" warning before ours, which names the setting: both
    are dropped. "Skipping parse of env var settings..." (every run without --config ENV) says
    nothing a user acts on: it is DEBUG.
    """

    DROPPED = frozenset({"Error initializing target sink '%s'", "Config validation failed"})
    DEBUG = frozenset(
        {"Skipping parse of env var settings...", "Parsing env var for settings config..."}
    )

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__()
        self._owner_logger = logger

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg in self.DROPPED and record.levelno >= logging.WARNING:
            return False  # ours never have these exact texts: they name the setting or stream
        if record.msg in self.DEBUG and record.levelno == logging.INFO:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return self._owner_logger.isEnabledFor(logging.DEBUG)
        return True


class TargetTikTokAudiences(Target):
    """Maps stream columns to TikTok identifier contracts and syncs the audiences."""

    name = "target-tiktok-audiences"
    config_jsonschema = CONFIG_SCHEMA
    default_sink_class = AudienceSink
    message_reader_class = PrivateSingerReader
    # No validate_records: only identifier columns are read, and bad values there are counted.
    capabilities = [  # noqa: RUF012 - the SDK declares it as a class variable
        PluginCapabilities.ABOUT,
        PluginCapabilities.STREAM_MAPS,
        PluginCapabilities.FLATTENING,
        PluginCapabilities.STRUCTURED_LOGGING,
    ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._terminating = False
        self._records_seen = 0
        self._plans: dict[str, _Plan] = {}  # stream -> what its records need (_plan)
        # Raised (by the alarm's thread) once the last full drain is older than the SDK's max
        # record age: the next record drains, as the SDK's check on every record would.
        self._aged = False
        self._age_alarm = AgeAlarm(_rang(weakref.ref(self)))
        super().__init__(*args, **kwargs)
        # One sink drains at a time: write calls share one throttle, so parallel drains would
        # only queue behind it.
        self.max_parallelism = 1
        for warning in config_warnings(self.config):
            self.logger.warning(warning)
        self.run = Run(Settings.from_config(self.config), self.logger)
        reader = self.message_reader
        assert isinstance(reader, PrivateSingerReader)
        self._lanes: dict[str, Lane] = reader.lanes  # stream -> _Lane, made by _plan
        # The report carries the same line the log ends with.
        reader.on_failure = lambda exc: self.run.finish("failed", describe(exc))
        self.run.preflight()

    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        # The SDK's pass fills in defaults; its messages quote values (perhaps the token) and
        # Python reprs, so ours name the setting instead. Unknown keys get the closest name.
        invalid = super()._validate_config(raise_errors=False)
        unknown = unknown_key_errors(self.config, self.config_jsonschema["properties"])
        errors = unknown + (schema_errors(self.config, self.config_jsonschema) if invalid else [])
        if not errors:
            errors = config_errors(self.config)
        if errors and raise_errors:
            raise ConfigValidationError(errors[0], errors=errors)
        return errors

    @classmethod
    def append_builtin_config(cls, config_jsonschema: dict[str, Any]) -> None:
        super().append_builtin_config(config_jsonschema)
        # The SDK's defaults may be enum members (load_method's TargetLoadMethods.APPEND_ONLY),
        # which `--about --format markdown` and so the README would print by their Python name.
        properties = config_jsonschema.get("properties", {})
        for prop in properties.values():
            if isinstance(prop.get("default"), enum.Enum):
                prop["default"] = prop["default"].value
        # The SDK's settings as they apply here (issue 29): faker is not installed with this
        # target, so faker_config cannot apply; the others say what they do, or that they do
        # nothing for TikTok audiences.
        properties.pop("faker_config", None)
        for name, text in SDK_SETTINGS.items():
            if name in properties:
                properties[name]["description"] = text
        if "load_method" in properties:
            properties["load_method"]["enum"] = ["append-only"]

    @classmethod
    def cb_config(cls, ctx: click.Context, param: click.Option, value: tuple[str, ...]) -> Any:
        # The SDK reads --config files while click parses the arguments, before invoke().
        with exit_on_known_failure(cls.logger):
            try:
                return super().cb_config(ctx, param, value)
            except (FileNotFoundError, ValueError) as exc:
                message = config_file_error(exc, [v for v in value if v != "ENV"])
                if message is None:
                    raise
                raise ConfigValidationError(message, errors=[message]) from None

    @classmethod
    def get_singer_command(cls) -> click.Command:
        command = super().get_singer_command()
        command.help = HELP  # the SDK's is "Execute the Singer target."
        return command

    @classmethod
    def invoke(cls, **kwargs: Any) -> None:
        with exit_on_known_failure(cls.logger):
            super().invoke(**kwargs)

    def _process_schema_message(self, message_dict: dict[str, Any]) -> None:
        # Read before the SDK builds the sink: a mirror of an incremental stream is guarded.
        bookmarks = message_dict.get("bookmark_properties")
        stream = message_dict.get("stream")
        if isinstance(stream, str):
            self.run.bookmarks[stream] = (
                [str(b) for b in bookmarks] if isinstance(bookmarks, list) else []
            )
        self._plans.clear()  # maps and sinks may change
        self._lanes.clear()  # the reader flushed them before this message
        _check_key_properties(message_dict)
        super()._process_schema_message(message_dict)
        # The stream's maps are (re)built here; their failures must not quote a record.
        for stream_map in self.mapper.stream_maps.get(message_dict["stream"], ()):
            private_map_errors(stream_map)

    def _process_record_message(self, message_dict: dict[str, Any]) -> None:
        # The SDK's record path, step for step, without the per-record work that does nothing
        # for AudienceSink (issue 21): what each stream's record needs (its map, sink and the
        # sink's settings: metadata, key properties, batch size) is looked up once per SCHEMA
        # message (_plan); with one stream map the record is not copied (nothing reads the
        # original) and the SDK's no-op map (no flattening) is not called; AudienceSink's
        # no-op hooks (_validate_and_parse, preprocess_record, _after_process_record's DEBUG
        # line) are not called; _sdc_ fields are stripped only when the record has some;
        # get_sink, _get_context, tally_record_read, the record counter and is_full are
        # inlined as the SDK defines them; the counter's clock is read every 4,096 records and
        # the max-age check runs once record_age's alarm has rung. Several maps of one stream
        # (stream splitting) take the SDK's path. tests/test_record_path.py proves it equal;
        # tests/test_core.py and tests/test_sdk_pins.py guard what it inlines.
        if "stream" not in message_dict or "record" not in message_dict:
            self._assert_line_requires(message_dict, requires={"stream", "record"})  # raises
        stream_name = message_dict["stream"]
        plan = self._plans.get(stream_name) or self._plan(stream_name)
        if plan is _SDK_PATH:
            super()._process_record_message(message_dict)
            return
        stream_map, same, sink, add_metadata, key_properties, max_size, counter = plan
        record = message_dict["record"] if same else stream_map.transform(message_dict["record"])
        if record is not None:
            if sink is None:
                self._assert_sink_exists(stream_map.stream_alias)  # raises
            assert sink is not None
            context = sink._pending_batch  # BatchSink._get_context, once a batch is open
            if context is None:
                context = sink._get_context(record)
            if add_metadata:
                sink._add_sdc_metadata_to_record(record, message_dict, context)
            elif not _SDC_FIELDS.isdisjoint(record):
                sink._remove_sdc_metadata_from_record(record)
            for key in key_properties:
                if key not in record:
                    raise missing_key(sink.stream_name, key)
            sink._total_records_read += 1  # Sink.tally_record_read
            sink._batch_records_read += 1
            sink.process_record(record, context)
            counter.value += 1  # Counter.increment; its clock is read below
            if sink._batch_records_read >= max_size:  # Sink.is_full
                self.logger.info(
                    "Target sink for '%s' is full. Current size is '%s'. Draining...",
                    sink.stream_name,
                    sink.current_size,
                )
                self.drain_one(sink)
        self._records_seen += 1
        if not self._records_seen & 0xFFF and record is not None:
            counter.increment(0)  # logs the count when its interval has passed
        if self._aged:
            self._drain_aged()

    def _assert_sink_exists(self, stream_name: str) -> None:
        # The SDK's error is a traceback; the tap is what must change.
        try:
            super()._assert_sink_exists(stream_name)
        except RecordsWithoutSchemaException:
            raise RecordBeforeSchema(
                f"Input: a RECORD of stream '{stream_name}' came before the stream's SCHEMA "
                "message; the tap must send SCHEMA first (Singer spec). Fix the tap or its "
                "stream maps and re-run"
            ) from None

    def _plan(self, stream_name: str) -> _Plan:
        """What a record of `stream_name` needs, as the SDK's path finds it (its checks and
        errors in its order); kept until the next SCHEMA message, which may change maps and
        sinks (_process_schema_message clears it)."""
        stream_maps = self.mapper.stream_maps
        if stream_name not in stream_maps:
            self._assert_sink_exists(stream_name)
        maps = stream_maps[stream_name]
        if len(maps) != 1:
            plan: _Plan = _SDK_PATH
        else:
            stream_map = maps[0]
            same = stream_map.__class__ is SameRecordTransform and not (
                stream_map.flattening_options and stream_map.flattening_enabled
            )
            sink = self._sinks_active.get(stream_map.stream_alias)  # Target.get_sink
            if sink is None:  # the SDK's error, for the first record the map lets through
                return (stream_map, same, None, False, (), 0, None)
            plan = (
                stream_map,
                same,
                sink,
                sink.include_sdc_metadata_properties,
                tuple(sink.key_properties),
                sink.max_size,
                sink.record_counter_metric,
            )
            if same and not plan[3] and isinstance(sink, AudienceSink) and sink.takes_block:
                self._lanes[stream_name] = _Lane(self, stream_name, plan)
        self._plans[stream_name] = plan
        if not self._age_alarm.armed:
            self._arm_age_alarm()
        return plan

    def _arm_age_alarm(self) -> None:
        limit = self._MAX_RECORD_AGE_IN_MINUTES * 60
        self._age_alarm.arm(limit - (time.time() - self._last_full_drain_at))

    def _age_rang(self) -> None:
        """On the alarm's thread: the next record drains; the next record of a lane flushes
        its block at once (the flag first: _Lane.flush sets its limit, then reads it)."""
        self._aged = True
        for lane in list(self._lanes.values()):
            lane.limit = 0

    def _drain_aged(self) -> None:
        """The SDK's max-age check and drain; after a drain, batches that wait to be full
        are sent too and the STATE written, so a trickle's STATE is not held to the end."""
        self._handle_max_record_age()
        if not self._aged:  # drained: _reset_max_record_age lowered the flag
            self.run.send_held()
            if self._latest_state:
                self._write_state_message(copy.deepcopy(self._latest_state))

    def _reset_max_record_age(self) -> None:
        super()._reset_max_record_age()  # every full drain (drain_all)
        self._aged = False
        if self._age_alarm.armed:  # records came, and input goes on
            self._arm_age_alarm()

    def process_endofpipe(self) -> None:
        run = self.run
        self._age_alarm.disarm()  # no record comes any more
        try:
            self.drain_all()  # flush every sink; STATE stays held while files are undelivered
            run.deliver()
            run.complete_rejects()
        except KNOWN as exc:
            message = run.stopped_line(describe(exc))
            run.finish("failed", message)
            raise DeliveryIncomplete(message) from exc
        except Exception as exc:
            run.finish("failed", describe(exc))
            raise
        run.warn_missing_streams()
        refused, no_access = run.refused, run.no_access
        super().process_endofpipe()  # emits STATE unless an audience was refused
        if no_access:
            run.finish("failed", no_access)
            raise DeliveryIncomplete(no_access)
        if refused:
            others = (
                "the others were delivered"
                if run.delivered
                else "no other audience was delivered in this run"
            )
            # A dry run sent nothing: it says what a real run would hold back.
            dry = run.settings.dry_run
            outcome = "nothing was sent (dry run)" if dry else f"{others} and no STATE was emitted"
            message = (
                f"{len(refused)} audience{'s' if len(refused) > 1 else ''} "
                f"{'would not be' if dry else 'not'} delivered: {', '.join(refused)}; {outcome}; "
                "the summary above says what to do"
            )
            run.finish("failed", message)
            raise DeliveryIncomplete(message)
        partial = run.partial
        if partial:
            self.logger.warning(
                "TikTok applied only part of the updates of %s; no STATE was emitted, so the "
                "next run sends them again.",
                ", ".join(partial),
            )
        run.finish("succeeded")

    def _write_state_message(self, state: dict[str, Any]) -> None:
        # STATE only once TikTok accepted every record before it; a failed run emits none.
        line = self.run.state_line(state)
        if line is not None:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:
        # Unlike the SDK default, never deliver on a signal: a half-read mirror set must not
        # replace an audience. A second signal while stopping is ignored.
        if self._terminating:
            return
        self._terminating = True
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        self.logger.error(
            "Received signal %d: stopping without delivering what is pending; no STATE was "
            "emitted for it, so re-running is safe.",
            signum,
        )
        self.run.finish("interrupted", f"stopped by signal {signum}")
        sys.exit(128 + signum)


_LOGGER = logging.getLogger(TargetTikTokAudiences.name)  # the SDK's plugin logger
_LOGGER.addFilter(_SdkNoise(_LOGGER))


class _Lane:
    """A plain stream's RECORD lines, a block at a time (issue 21): the reader puts each record
    in `block` (reader.Lane) instead of calling _process_record_message, and flush() does what
    that would have done for each of them, in bulk: the tallies, AudienceSink.process_block
    and the drain when the batch is full, cut at the batch's room so that a drain comes after
    the same record. A block with a record that has a _sdc_ field or lacks a key property
    goes through _process_record_message record by record (errors unchanged).
    tests/test_record_path.py holds lanes to the record-by-record path."""

    def __init__(self, target: TargetTikTokAudiences, stream: str, plan: _Plan) -> None:
        self.block: list[dict[str, Any]] = []
        self.limit = 1  # made while its first record is read; flush() sets the batch's room
        self._target = target
        self._stream = stream
        _, _, sink, _, self._keys, self._max_size, self._counter = plan
        assert isinstance(sink, AudienceSink)
        self._sink = sink

    def _room(self) -> int:
        return max(1, self._max_size - self._sink._batch_records_read)

    def flush(self) -> None:
        records = self.block
        if not records:
            return
        self.block = []
        if all(map(_SDC_FIELDS.isdisjoint, records)) and all(
            all(map(dict.__contains__, records, repeat(key))) for key in self._keys
        ):
            while len(records) > (room := self._room()):
                self._take(records[:room])
                records = records[room:]
            self._take(records)
        else:
            for record in records:
                self._target._process_record_message({"stream": self._stream, "record": record})
        self.limit = min(BLOCK_RECORDS, self._room())
        if self._target._aged:  # read after the limit is set: the alarm may ring meanwhile
            self.limit = 0

    def _take(self, records: list[dict[str, Any]]) -> None:
        """_process_record_message for kept records that fit in the open batch."""
        target, sink, n = self._target, self._sink, len(records)
        if sink._pending_batch is None:
            sink._get_context(records[0])  # BatchSink: a batch opens with its first record
        sink._total_records_read += n  # Sink.tally_record_read
        sink._batch_records_read += n
        sink.process_block(records)
        self._counter.value += n  # Counter.increment; its clock is read below
        if sink._batch_records_read >= self._max_size:  # Sink.is_full
            target.logger.info(
                "Target sink for '%s' is full. Current size is '%s'. Draining...",
                sink.stream_name,
                sink.current_size,
            )
            target.drain_one(sink)
        seen = target._records_seen
        target._records_seen = seen + n
        if (seen >> 12) != (target._records_seen >> 12):  # every 4,096 records
            self._counter.increment(0)
        if target._aged:
            target._drain_aged()


# A stream's record path (see _plan): (map, is the map a no-op?, sink, add _sdc metadata?,
# key properties, max batch size, record counter); _SDK_PATH for several maps of a stream.
_Plan = tuple[Any, bool, Sink | None, bool, tuple[str, ...], int, Any]
_SDK_PATH: _Plan = (None, False, None, False, (), 0, None)

# What the SDK's _remove_sdc_metadata_from_record pops (sinks/core.py).
_SDC_FIELDS = frozenset(
    {
        "_sdc_extracted_at",
        "_sdc_received_at",
        "_sdc_batched_at",
        "_sdc_deleted_at",
        "_sdc_sequence",
        "_sdc_table_version",
        "_sdc_sync_started_at",
    }
)


def _rang(target: weakref.ref[TargetTikTokAudiences]) -> Callable[[], None]:
    """The alarm's call, by weak reference: a run's lingering timer keeps no target alive."""

    def ring() -> None:
        alive = target()
        if alive is not None:
            alive._age_rang()

    return ring


def _check_key_properties(message: dict[str, Any]) -> None:
    """key_properties must name properties of the SCHEMA: rows are named by them (rejects_url)
    and a record without them cannot be told apart."""
    schema = message.get("schema")
    keys = message.get("key_properties")
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(keys, list) or not isinstance(properties, dict):
        return
    for key in keys:
        if key not in properties:
            raise InputError(
                f"Input: the SCHEMA of stream '{message.get('stream')}' names key property "
                f"'{key}' in key_properties, but it is not one of the stream's properties; "
                "fix the tap's key properties (or its stream maps) and re-run"
            )


def main() -> None:
    """The `target-tiktok-audiences` command."""
    # What the imports made (the SDK, jsonschema, click, our modules) lives until exit: frozen,
    # it is left out of every later full collection and of the collections at exit, ~80 ms of
    # CPU a run (bench/PROFILE.md, issue 21). Only the command does it, never a test process.
    gc.freeze()
    TargetTikTokAudiences.cli()


if __name__ == "__main__":
    main()
