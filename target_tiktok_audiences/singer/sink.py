"""AudienceSink: the SDK's view of one stream. Records flow: record -> identifiers -> delivery."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from typing import Any

from singer_sdk import Target
from singer_sdk.sinks import BatchSink

from target_tiktok_audiences.deliveries.fanout import REASON_NO_AUDIENCE_NAME, audience_value
from target_tiktok_audiences.failures import missing_key
from target_tiktok_audiences.identifiers import REASON_INVALID_REMOVE_FLAG, remove_flag
from target_tiktok_audiences.report import AUDIENCE_NAME, REMOVE_FLAG
from target_tiktok_audiences.run import Binding, Run

BLOCK_RECORDS = 1024
"""Records encoded together, column by column (AudienceSink._encode_block)."""


class AudienceSink(BatchSink):
    """One Singer stream; batches are drained into its delivery."""

    MAX_SIZE_DEFAULT = 10_000

    def __init__(
        self,
        target: Target,
        stream_name: str,
        schema: dict[str, Any],
        key_properties: Sequence[str] | None,
    ) -> None:
        # The run owns the deliveries; the sink only hands it records (no call into the Target).
        self._run: Run = target.run  # type: ignore[attr-defined]
        self._stripped_deleted = False
        super().__init__(target, stream_name, schema, key_properties)

    def get_validator(self) -> None:
        # Only the identifier columns matter, and a bad value there is counted and skipped
        # rather than failing the run; JSON-schema validation of whole records would do both
        # worse and slower.
        return None

    def _validate_and_parse(self, record: dict[str, Any]) -> dict[str, Any]:
        # The SDK would parse every date-time column of every record; only identifier columns
        # are read here, so that work is skipped (a third of the per-record cost otherwise).
        return record

    def _singer_validate_message(self, record: dict[str, Any]) -> None:
        # The SDK's error is two lines listing the record's columns; ours is one (the lean
        # record path in fastpath.py raises the same).
        for key in self.key_properties:
            if key not in record:
                raise missing_key(self.stream_name, key)

    def setup(self) -> None:
        super().setup()
        self.binding: Binding | None = self._run.bind_stream(
            self.stream_name, self.schema, self.key_properties or ()
        )
        binding = self.binding
        self._keyed = bool(
            binding
            and binding.key_properties
            and binding.delivery.mapping.sync_mode.last_record_wins
        )
        # Kept records of a plain binding wait here and are encoded BLOCK_RECORDS at a time,
        # column by column (_encode_block): a third less CPU per record than one by one
        # (bench/PROFILE.md, issue 21). Anything that reads the delivery drains this first.
        self._block: list[dict[str, Any]] = []
        self._by_column = bool(
            binding
            and binding.delivery.takes_columns
            and binding.fanout is None
            and binding.remove_column is None
            and not self._keyed
        )

    def _remove_sdc_metadata_from_record(self, record: dict[str, Any]) -> None:
        # The SDK strips _sdc_* fields when add_record_metadata is off; a soft delete must
        # still remove the user, so note it first.
        self._stripped_deleted = record.get("_sdc_deleted_at") is not None
        super()._remove_sdc_metadata_from_record(record)

    def process_record(self, record: dict[str, Any], context: dict[str, Any]) -> None:
        binding = self.binding
        if binding is None:
            return
        report = binding.report
        read = report.records_read
        if read and not read & 0xFFF:
            self._encode_block()  # the progress line counts what was accepted
            self._run.progress()  # a clock read every 4,096 records costs nothing
        report.records_read = read + 1
        if self._by_column and not self._stripped_deleted and record.get("_sdc_deleted_at") is None:
            block = self._block
            block.append(record)
            if len(block) >= BLOCK_RECORDS:
                self._encode_block()
            return
        if self._block:  # one by one from here: what came before goes first
            self._encode_block()
        if self._stripped_deleted:
            self._stripped_deleted = False
            removed = True
        else:
            removed = record.get("_sdc_deleted_at") is not None
        remove_column = binding.remove_column
        if remove_column is not None and not removed:
            flag = remove_flag(record.get(remove_column))
            if flag is None:  # never upload (or keep) a user whose removal flag is unreadable
                binding.reject(record, REMOVE_FLAG, REASON_INVALID_REMOVE_FLAG)
                return
            removed = flag
        fanout, value = binding.fanout, None
        if fanout is not None:
            value = audience_value(record.get(fanout.column))
            if value is None:  # no audience to put the user in
                binding.reject(record, AUDIENCE_NAME, REASON_NO_AUDIENCE_NAME)
                return
        # Counted as they are encoded: a record with no identifier counts for no contract.
        counts = report.removed if removed else report.accepted
        ids: dict[str, str] = {}
        for contract, column, encode in binding.encoders:
            digest, reason = encode(record.get(column))
            if digest is not None:
                ids[contract] = digest
                counts[contract] = counts.get(contract, 0) + 1
            elif reason is not None:
                binding.reject(record, contract, reason)
        if not ids:
            report.records_without_identifiers += 1
            return
        if removed:
            report.records_removed += 1
        user = (
            "\x1f".join(str(record.get(k)) for k in binding.key_properties) if self._keyed else None
        )
        if fanout is not None and value is not None:
            fanout.add_to(value, ids, removed, user)
        else:
            binding.delivery.add(ids, removed, user)

    def process_block(self, records: list[dict[str, Any]]) -> None:
        """process_record for records the caller checked to be kept records of this plain
        binding (`takes_block`): no _sdc_ field, every key property present."""
        binding = self.binding
        assert binding is not None
        report = binding.report
        while records:
            read = report.records_read
            if read and not read & 0xFFF:  # as process_record, before the 4,097th record
                self._encode_block()
                self._run.progress()
            part = records[: ((read | 0xFFF) + 1) - read]  # up to the next 4,096
            records = records[len(part) :] if len(part) < len(records) else []
            report.records_read = read + len(part)
            block = self._block
            if block:
                block += part
            else:
                self._block = block = part
            if len(block) >= BLOCK_RECORDS:
                self._encode_block()

    @property
    def takes_block(self) -> bool:
        """process_block may be used: records that are not removed go to the block."""
        return self._by_column

    def _encode_block(self) -> None:
        """process_record for the records waiting in the block, kept users of a plain binding
        (no removal, remove column, audience column or key): each contract's column is encoded
        in one pass and handed over whole; counts, rejects (in record order) and the delivered
        digests are those of the one-by-one path (tests/test_record_path.py)."""
        records = self._block
        binding = self.binding
        if not records or binding is None:
            return
        self._block = []
        report = binding.report
        counts = report.accepted
        columns: list[list[str | None]] = []  # each contract's digest or None, per record
        kept: list[tuple[str, list[str]]] = []
        rejected: list[tuple[int, int, str, str]] = []  # record, encoder order, contract, why
        for order, (contract, column, encode) in enumerate(binding.column_encoders):
            digests, reasons = encode(map(dict.get, records, repeat(column)))
            columns.append(digests)
            if reasons:
                rejected += [(i, order, contract, why) for i, why in reasons.items()]
            accepted: list[str] = list(filter(None, digests))
            if accepted:
                counts[contract] = counts.get(contract, 0) + len(accepted)
            kept.append((contract, accepted))
        # A user is a record with at least one digest, however many it has.
        users = list(map(any, zip(*columns, strict=True))).count(True) if columns else 0
        report.records_without_identifiers += len(records) - users
        rejected.sort()
        for i, _, contract, reason in rejected:
            binding.reject(records[i], contract, reason)
        delivery = binding.delivery
        for contract, accepted in kept:
            delivery.add_column(contract, accepted, users)
            users = 0  # counted once, with the first contract

    def process_batch(self, context: dict[str, Any]) -> None:
        if self.binding is None:
            return
        # BATCH messages: the SDK hands a file's records here, past process_record; they take
        # the same path as RECORD messages.
        for record in context.get("records") or ():
            self.process_record(record, context)
        self._encode_block()
        self.binding.delivery.flush()
        self._run.flush_rejects()

    def activate_version(self, new_version: int) -> None:
        # A version boundary: what was read before it is a complete set (for mirror, the
        # audience). SDK taps send it before a full-table sync's records, classic taps also
        # after them; with nothing read yet there is nothing to deliver.
        if self.binding is None:
            return
        self._encode_block()
        delivery = self.binding.delivery
        delivery.flush()
        if delivery.pending:
            self.logger.info(
                "ACTIVATE_VERSION %s for stream '%s': what was read before it is a complete "
                "version; it is delivered %s.",
                new_version,
                self.stream_name,
                "now" if delivery.sends_as_it_reads else "at the end of input",
            )
            self._run.version_boundary(self.binding)
