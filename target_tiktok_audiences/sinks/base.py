"""AudienceSink: turns records into digests and hands them to the stream's delivery."""

from __future__ import annotations

import abc
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from singer_sdk.sinks import BatchSink

from target_tiktok_audiences.audiences import AudienceDirectory
from target_tiktok_audiences.client import TikTokError
from target_tiktok_audiences.identifiers import Encoder
from target_tiktok_audiences.report import AudienceReport, RunReport, StreamReport
from target_tiktok_audiences.settings import AudienceMapping, Settings

if TYPE_CHECKING:
    from target_tiktok_audiences.target import TargetTikTokAudiences


@dataclass
class Runtime:
    """What every delivery of a run shares."""

    settings: Settings
    client: Any  # TikTokClient, or DryRunClient in dry_run
    directory: AudienceDirectory
    workdir: Path
    report: RunReport
    logger: logging.Logger


@dataclass(eq=False)
class Delivery(abc.ABC):
    """Everything one stream sends to TikTok, across schema changes of the stream."""

    runtime: Runtime
    mapping: AudienceMapping
    report: StreamReport
    contracts: list[str]

    def extend(self, contracts: Sequence[str]) -> None:
        """A new schema of the stream may bring more identifier columns."""
        self.contracts.extend(c for c in contracts if c not in self.contracts)

    @abc.abstractmethod
    def add(self, ids: dict[str, str], removed: bool) -> None:
        """One user: its digests by contract, and whether it is to be removed."""

    @abc.abstractmethod
    def flush(self) -> None:
        """The SDK drained a batch of the stream."""

    @abc.abstractmethod
    def commit(self) -> None:
        """End of input or ACTIVATE_VERSION: deliver everything spooled."""

    @property
    @abc.abstractmethod
    def pending(self) -> bool:
        """True while some added or removed user has not been accepted by TikTok."""

    def discard(self) -> None:  # noqa: B027 - optional hook
        """Drop undelivered data (a failed or interrupted run)."""

    @contextmanager
    def tracking(self, entry: AudienceReport) -> Iterator[None]:
        """Attribute calls to the audience; mark it failed if TikTok stops us."""
        client = self.runtime.client
        client.tracker = entry.stats
        try:
            yield
        except TikTokError as exc:
            entry.status = "failed"
            self.runtime.report.error = str(exc)
            raise
        finally:
            client.tracker = None

    def new_entry(self, advertiser_id: str, name: str, contracts: list[str]) -> AudienceReport:
        entry = AudienceReport(
            advertiser_id=advertiser_id,
            audience_name=name,
            sync_mode=self.mapping.sync_mode,
            contracts=contracts,
        )
        self.report.audiences.append(entry)
        return entry


class AudienceSink(BatchSink):
    """One Singer stream. Records flow: record -> identifiers -> delivery -> client."""

    MAX_SIZE_DEFAULT = 10_000

    def __init__(
        self,
        target: TargetTikTokAudiences,
        stream_name: str,
        schema: dict,
        key_properties: Sequence[str] | None,
    ) -> None:
        self._target = target
        self._stripped_deleted = False
        super().__init__(target, stream_name, schema, key_properties)

    def get_validator(self) -> None:
        # Only the identifier columns matter, and a bad value there is counted and skipped
        # rather than failing the run; JSON-schema validation of whole records would do both
        # worse and slower.
        return None

    def _validate_and_parse(self, record: dict) -> dict:
        # The SDK would parse every date-time column of every record; only identifier columns
        # are read here, so that work is skipped (a third of the per-record cost otherwise).
        return record

    def setup(self) -> None:
        super().setup()
        binding = self._target.bind_stream(self.stream_name, self.schema)
        self.delivery: Delivery | None = binding.delivery if binding else None
        self._encoders: list[tuple[str, str, Encoder]] = binding.encoders if binding else []
        self._remove_column: str | None = binding.remove_column if binding else None
        self._stream_report: StreamReport | None = binding.report if binding else None

    def _remove_sdc_metadata_from_record(self, record: dict) -> None:
        # The SDK strips _sdc_* fields when add_record_metadata is off; a soft delete must
        # still remove the user, so note it first.
        self._stripped_deleted = record.get("_sdc_deleted_at") is not None
        super()._remove_sdc_metadata_from_record(record)

    def process_record(self, record: dict, context: dict) -> None:
        delivery = self.delivery
        if delivery is None:
            return
        report = self._stream_report
        report.records_read += 1  # type: ignore[union-attr]
        remove_column = self._remove_column
        removed = (
            self._stripped_deleted
            or record.get("_sdc_deleted_at") is not None
            or (remove_column is not None and record.get(remove_column) is True)
        )
        self._stripped_deleted = False
        ids: dict[str, str] = {}
        for contract, column, encode in self._encoders:
            digest, reason = encode(record.get(column))
            if digest is not None:
                ids[contract] = digest
            elif reason is not None:
                report.reject(contract, reason)  # type: ignore[union-attr]
        if not ids:
            report.records_without_identifiers += 1  # type: ignore[union-attr]
            return
        counts = report.removed if removed else report.accepted  # type: ignore[union-attr]
        for contract in ids:
            counts[contract] = counts.get(contract, 0) + 1
        if removed:
            report.records_removed += 1  # type: ignore[union-attr]
        delivery.add(ids, removed)

    def process_batch(self, context: dict) -> None:
        if self.delivery is not None:
            self.delivery.flush()

    def activate_version(self, new_version: int) -> None:
        # A version boundary: what was read before it is a complete set (for mirror, the
        # audience). SDK taps send it before a full-table sync's records, classic taps also
        # after them; with nothing read yet there is nothing to deliver.
        if self.delivery is not None:
            self.delivery.flush()
            if self.delivery.pending:
                self.logger.info(
                    "ACTIVATE_VERSION %s for stream '%s': delivering what was read before it.",
                    new_version,
                    self.stream_name,
                )
                self.delivery.commit()
