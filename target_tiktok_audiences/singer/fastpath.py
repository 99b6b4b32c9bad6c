"""The lean record path (issue 21): the SDK's record path step for step, without the
per-record work that does nothing for AudienceSink, and block lanes for plain streams.

`RecordPath._process_record_message` is the SDK's path; a stream's `RecordPlan` (what its records
need: map, sink and the sink's settings) is looked up once per SCHEMA message; `BlockLane` takes
a plain stream's records a block at a time. The switch to the SDK's own path: a stream with
several maps takes it (`SDK_PATH`), and tests/test_record_path.py runs whole inputs both ways
(`Target._process_record_message` in place of ours) and compares what the deliveries get.

Every SDK private member this module uses (tests/test_sdk_pins.py pins their sources and lists
every private member the package uses): Target._process_record_message,
Target._assert_line_requires, Target._assert_sink_exists, Target._sinks_active,
Target._handle_max_record_age, Target._MAX_RECORD_AGE_IN_MINUTES, Target._last_full_drain_at,
Target._latest_state, Target._reset_max_record_age, Target._write_state_message,
BatchSink._pending_batch, BatchSink._get_context, Sink._add_sdc_metadata_to_record,
Sink._remove_sdc_metadata_from_record, Sink._total_records_read, Sink._batch_records_read.
"""

from __future__ import annotations

import copy
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from itertools import repeat
from typing import Any

from singer_sdk import Target
from singer_sdk.exceptions import RecordsWithoutSchemaException
from singer_sdk.mapper import SameRecordTransform
from singer_sdk.sinks import Sink

from target_tiktok_audiences.failures import RecordBeforeSchema, missing_key
from target_tiktok_audiences.run import Run
from target_tiktok_audiences.singer.reader import Lane
from target_tiktok_audiences.singer.record_age import AgeAlarm
from target_tiktok_audiences.singer.sink import BLOCK_RECORDS, AudienceSink


@dataclass(frozen=True, slots=True)
class RecordPlan:
    """What a stream's records need, as the SDK's path finds it (see RecordPath._plan)."""

    stream_map: Any  # the stream's one map (a singer_sdk.mapper.StreamMap)
    same: bool  # the map is the SDK's no-op: the record is not copied, the map not called
    sink: Sink | None  # None: the SDK's error, for the first record the map lets through
    add_metadata: bool  # the sink's include_sdc_metadata_properties
    key_properties: tuple[str, ...]
    max_size: int  # the sink's batch size (Sink.is_full)
    counter: Any  # the sink's record counter (a singer_sdk.metrics.Counter)


# Several maps of one stream (stream splitting): the SDK's own path.
SDK_PATH = RecordPlan(None, False, None, False, (), 0, None)

# What the SDK's _remove_sdc_metadata_from_record pops (sinks/core.py).
SDC_FIELDS = frozenset(
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


class RecordPath(Target):
    """The SDK's Target with the lean record path and the record-age alarm."""

    run: Run  # set by the target's __init__
    _lanes: dict[str, Lane]  # stream -> BlockLane, made by _plan (the reader's, shared)

    def _start_record_path(self) -> None:
        """Before the SDK's __init__: the state the record path keeps."""
        self._records_seen = 0
        self._plans: dict[str, RecordPlan] = {}  # stream -> what its records need (_plan)
        # Raised (by the alarm's thread) once the last full drain is older than the SDK's max
        # record age: the next record drains, as the SDK's check on every record would.
        self._aged = False
        self._age_alarm = AgeAlarm(_rang(weakref.ref(self)))

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
        if plan is SDK_PATH:
            super()._process_record_message(message_dict)
            return
        same, sink, counter = plan.same, plan.sink, plan.counter
        stream_map = plan.stream_map
        record = message_dict["record"] if same else stream_map.transform(message_dict["record"])
        if record is not None:
            if sink is None:
                self._assert_sink_exists(stream_map.stream_alias)  # raises
            assert sink is not None
            context = sink._pending_batch  # BatchSink._get_context, once a batch is open
            if context is None:
                context = sink._get_context(record)
            if plan.add_metadata:
                sink._add_sdc_metadata_to_record(record, message_dict, context)
            elif not SDC_FIELDS.isdisjoint(record):
                sink._remove_sdc_metadata_from_record(record)
            for key in plan.key_properties:
                if key not in record:
                    raise missing_key(sink.stream_name, key)
            sink._total_records_read += 1  # Sink.tally_record_read
            sink._batch_records_read += 1
            sink.process_record(record, context)
            counter.value += 1  # Counter.increment; its clock is read below
            if sink._batch_records_read >= plan.max_size:  # Sink.is_full
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

    def _plan(self, stream_name: str) -> RecordPlan:
        """What a record of `stream_name` needs, as the SDK's path finds it (its checks and
        errors in its order); kept until the next SCHEMA message, which may change maps and
        sinks (_process_schema_message clears it)."""
        stream_maps = self.mapper.stream_maps
        if stream_name not in stream_maps:
            self._assert_sink_exists(stream_name)
        maps = stream_maps[stream_name]
        if len(maps) != 1:
            plan: RecordPlan = SDK_PATH
        else:
            stream_map = maps[0]
            same = stream_map.__class__ is SameRecordTransform and not (
                stream_map.flattening_options and stream_map.flattening_enabled
            )
            sink = self._sinks_active.get(stream_map.stream_alias)  # Target.get_sink
            if sink is None:  # the SDK's error, for the first record the map lets through
                return RecordPlan(stream_map, same, None, False, (), 0, None)
            plan = RecordPlan(
                stream_map,
                same,
                sink,
                sink.include_sdc_metadata_properties,
                tuple(sink.key_properties),
                sink.max_size,
                sink.record_counter_metric,
            )
            if (
                same
                and not plan.add_metadata
                and isinstance(sink, AudienceSink)
                and sink.takes_block
            ):
                self._lanes[stream_name] = BlockLane(self, stream_name, plan)
        self._plans[stream_name] = plan
        if not self._age_alarm.armed:
            self._arm_age_alarm()
        return plan

    def _arm_age_alarm(self) -> None:
        limit = self._MAX_RECORD_AGE_IN_MINUTES * 60
        self._age_alarm.arm(limit - (time.time() - self._last_full_drain_at))

    def _age_rang(self) -> None:
        """On the alarm's thread: the next record drains; the next record of a lane flushes
        its block at once (the flag first: BlockLane.flush sets its limit, then reads it)."""
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


class BlockLane:
    """A plain stream's RECORD lines, a block at a time (issue 21): the reader puts each record
    in `block` (reader.Lane) instead of calling _process_record_message, and flush() does what
    that would have done for each of them, in bulk: the tallies, AudienceSink.process_block
    and the drain when the batch is full, cut at the batch's room so that a drain comes after
    the same record. A block with a record that has a _sdc_ field or lacks a key property
    goes through _process_record_message record by record (errors unchanged).
    tests/test_record_path.py holds lanes to the record-by-record path."""

    def __init__(self, target: RecordPath, stream: str, plan: RecordPlan) -> None:
        self.block: list[dict[str, Any]] = []
        self.limit = 1  # made while its first record is read; flush() sets the batch's room
        self._target = target
        self._stream = stream
        sink, self._keys, self._max_size = plan.sink, plan.key_properties, plan.max_size
        self._counter = plan.counter
        assert isinstance(sink, AudienceSink)
        self._sink = sink

    def _room(self) -> int:
        return max(1, self._max_size - self._sink._batch_records_read)

    def flush(self) -> None:
        records = self.block
        if not records:
            return
        self.block = []
        if all(map(SDC_FIELDS.isdisjoint, records)) and all(
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


def _rang(target: weakref.ref[RecordPath]) -> Callable[[], None]:
    """The alarm's call, by weak reference: a run's lingering timer keeps no target alive."""

    def ring() -> None:
        alive = target()
        if alive is not None:
            alive._age_rang()

    return ring
