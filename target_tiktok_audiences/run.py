"""One run's lifecycle: client, workdir, deliveries, held STATE, and the end (report, plan)."""

from __future__ import annotations

import atexit
import difflib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from target_tiktok_audiences.audiences import AudienceDirectory
from target_tiktok_audiences.client import AudienceAPI, TikTokClient
from target_tiktok_audiences.deliveries import Delivery, Runtime, delivery_class
from target_tiktok_audiences.dryrun import DryRunClient
from target_tiktok_audiences.identifiers import Encoder, make_encoder
from target_tiktok_audiences.report import RunReport, StreamReport
from target_tiktok_audiences.routing import Ignored, route_stream
from target_tiktok_audiences.settings import Settings
from target_tiktok_audiences.snapshot import SnapshotStore, fingerprint
from target_tiktok_audiences.spool import private_workdir, remove_workdir

PROGRESS_SECONDS = 30.0


@dataclass
class Binding:
    """How one stream's records become digests, and where they go."""

    delivery: Delivery
    encoders: list[tuple[str, str, Encoder]]
    remove_column: str | None
    key_properties: tuple[str, ...]
    report: StreamReport


def make_client(settings: Settings) -> AudienceAPI:
    if settings.dry_run:
        return DryRunClient(settings.output_dir)
    return TikTokClient(
        settings.api_base_url,
        settings.access_token or "",
        timeout=settings.request_timeout,
        max_retries=settings.max_retries,
        max_retry_seconds=settings.max_retry_seconds,
        max_requests_per_second=settings.max_requests_per_second,
        daily_update_operations=settings.daily_update_operations,
    )


class Run:
    """Everything one invocation of the target does between its config and its exit."""

    def __init__(self, settings: Settings, logger: logging.Logger) -> None:
        self.settings = settings
        self.logger = logger
        self.finished = False
        client = make_client(settings)
        self.client = client
        self.runtime = Runtime(
            settings=settings,
            client=client,
            directory=AudienceDirectory(
                confirm_seconds=settings.create_confirm_seconds,
                max_new=settings.max_new_audiences,
            ),
            workdir=private_workdir(),
            report=RunReport(dry_run=settings.dry_run),
            logger=logger,
            snapshots=SnapshotStore(settings.snapshot_url, read_only=settings.dry_run),
            fingerprint=fingerprint(
                hash_identifiers=settings.rules.hash_identifiers,
                email_normalization=settings.rules.email_normalization,
                default_phone_region=settings.rules.default_phone_region,
            ),
        )
        self.deliveries: dict[str, Delivery] = {}
        self._started = time.monotonic()
        self._next_progress = self._started + PROGRESS_SECONDS
        self._last_state_line: str | None = None
        atexit.register(remove_workdir, self.runtime.workdir)

    @property
    def report(self) -> RunReport:
        return self.runtime.report

    def preflight(self) -> None:
        """Token and advertisers are checked before a single record is read."""
        try:
            self.client.preflight(self.settings.advertiser_ids)
        except Exception as exc:
            self.finish("failed", str(exc))
            raise

    # -- streams ---------------------------------------------------------------------------

    def bind_stream(
        self, stream: str, schema: Mapping[str, Any], key_properties: Sequence[str]
    ) -> Binding | None:
        """What a stream's records feed; None when the stream is ignored."""
        route = route_stream(self.settings, stream, schema)
        report = self.report
        if isinstance(route, Ignored):
            if stream not in report.ignored_streams:
                report.ignored_streams[stream] = route.why
                self.logger.warning("Stream '%s' is ignored: %s.", stream, route.why)
            return None
        mapping, found = route.mapping, route.columns
        stream_report = report.streams.get(stream)
        if stream_report is None:
            stream_report = report.streams[stream] = StreamReport(stream, mapping.sync_mode.value)
        for column in route.lookalikes:
            hint = (
                f"column '{column}' looks like an identifier but is not used; map it in "
                "audiences[].identifiers if it should be"
            )
            if hint not in stream_report.hints:
                stream_report.hints.append(hint)
        delivery = self.deliveries.get(stream)
        if delivery is None:
            kind = delivery_class(mapping.sync_mode, mapping.audience_type)
            delivery = self.deliveries[stream] = kind(
                self.runtime, mapping, stream_report, list(found)
            )
        else:
            delivery.extend(list(found))
        self.logger.info(
            "Stream '%s' -> audience '%s' (%s, %s) in %d advertiser(s): %s.",
            stream,
            mapping.audience_name,
            mapping.sync_mode.value,
            mapping.audience_type.value,
            len(self.settings.advertiser_ids),
            ", ".join(f"{c} from column '{col}'" for c, col in found.items()),
        )
        rules = self.settings.rules
        return Binding(
            delivery=delivery,
            encoders=[(c, col, make_encoder(c, rules)) for c, col in found.items()],
            remove_column=mapping.remove_column,
            key_properties=tuple(key_properties),
            report=stream_report,
        )

    # -- STATE -----------------------------------------------------------------------------

    @property
    def pending(self) -> bool:
        return any(d.pending for d in self.deliveries.values())

    @property
    def refused(self) -> list[str]:
        """Audiences TikTok refused this run, as 'name' in advertiser N."""
        return [
            f"'{a.audience_name}' in advertiser {a.advertiser_id} ({a.refusal})"
            for s in self.report.streams.values()
            for a in s.audiences
            if a.status == "deferred"
        ]

    def state_line(self, state: Mapping[str, Any]) -> str | None:
        """The STATE line to emit now, or None while records before it are undelivered."""
        if self.pending or self.refused or self.finished:
            self.logger.debug("Holding STATE until pending audiences are delivered.")
            return None
        line = json.dumps(state)
        if line == self._last_state_line:  # the SDK re-sends unchanged state on every drain
            return None
        self._last_state_line = line
        return line

    # -- the end ---------------------------------------------------------------------------

    def deliver(self) -> None:
        """End of input: every delivery sends what it holds."""
        for delivery in self.deliveries.values():
            delivery.commit()

    def warn_missing_streams(self) -> None:
        """Mapped streams that never arrived: most often a typo or a stream map rename."""
        if self.settings.mappings is None:
            return
        arrived = sorted({*self.report.streams, *self.report.ignored_streams})
        for stream in self.settings.mappings:
            if stream in self.deliveries:
                continue
            close = difflib.get_close_matches(stream, arrived, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            why = f"never arrived (streams that arrived: {', '.join(arrived) or 'none'}){hint}"
            self.report.not_attempted[stream] = why
            self.logger.warning("audiences: stream '%s' is mapped but %s", stream, why)

    def progress(self) -> None:
        """Every PROGRESS_SECONDS while reading: a line per stream, for long runs."""
        now = time.monotonic()
        if now < self._next_progress:
            return
        elapsed = max(now - self._started, 1e-9)
        self._next_progress = now + PROGRESS_SECONDS
        for stream in self.report.streams.values():
            self.logger.info(
                "Stream '%s': %s records read (%s a second), identifiers accepted %s; %s.",
                stream.stream,
                f"{stream.records_read:,}",
                f"{stream.records_read / elapsed:,.0f}",
                ", ".join(f"{c}={n:,}" for c, n in sorted(stream.accepted.items())) or "none",
                "batches go out as they fill"
                if stream.sync_mode == "incremental"
                else "spooled to disk, sent at the end of input",
            )

    def add_hints(self) -> None:
        """Hints from the data: what to change so that fewer users are lost."""
        for stream in self.report.streams.values():
            phones = stream.rejected.get("PHONE_SHA256", {}).get("invalid_phone", 0)
            if phones and not self.settings.rules.default_phone_region:
                stream.hints.append(
                    f"{phones:,} phone numbers were rejected and default_phone_region is not "
                    "set: numbers written without a country code cannot be read; set "
                    "default_phone_region (e.g. US)"
                )

    def finish(self, status: str, error: str | None = None) -> None:
        """Summarise the run once: log lines, JSON report, client's last word; drop temp files."""
        if self.finished:
            return
        self.finished = True
        report = self.report
        if status != "succeeded":
            for delivery in self.deliveries.values():
                delivery.discard()
        self.add_hints()
        report.finish(status, report.error or error)
        report.calls = self.client.total
        self.client.finish(report)
        report.log_summary(self.logger)
        if self.settings.report_path:
            try:
                report.write_json(self.settings.report_path)
                self.logger.info("Run report written to %s", self.settings.report_path)
            except OSError as exc:
                self.logger.error(
                    "Could not write the run report to %s (report_path): %s",
                    self.settings.report_path,
                    exc.strerror or exc,
                )
        remove_workdir(self.runtime.workdir)
