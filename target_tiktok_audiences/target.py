"""target-tiktok-audiences: Singer target that keeps TikTok Custom Audiences in sync."""

from __future__ import annotations

import atexit
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

from singer_sdk import Target
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.helpers.capabilities import PluginCapabilities

from target_tiktok_audiences.audiences import AudienceDirectory
from target_tiktok_audiences.client import TikTokClient
from target_tiktok_audiences.dryrun import DryRunClient
from target_tiktok_audiences.identifiers import (
    DETECTED_COLUMN_NAMES,
    Encoder,
    detect_identifier_columns,
    make_encoder,
)
from target_tiktok_audiences.reader import PrivateSingerReader
from target_tiktok_audiences.report import RunReport, StreamReport
from target_tiktok_audiences.settings import CONFIG_SCHEMA, Settings, cross_field_errors
from target_tiktok_audiences.sinks import AudienceSink, Delivery, Runtime
from target_tiktok_audiences.sinks.files import FileDelivery
from target_tiktok_audiences.sinks.segment import SegmentDelivery
from target_tiktok_audiences.spool import private_workdir, remove_workdir

F = TypeVar("F", bound=Callable[..., Any])

DETECTED_COLUMNS = ", ".join(n for names in DETECTED_COLUMN_NAMES.values() for n in names)


@dataclass
class Binding:
    """How one stream's records become digests, and where they go."""

    delivery: Delivery
    encoders: list[tuple[str, str, Encoder]]
    remove_column: str | None
    report: StreamReport


def _reported(method: F) -> F:
    """Record a failure in the run report before it propagates and stops the run."""

    @wraps(method)
    def wrapper(self: TargetTikTokAudiences, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:
            self.finish("failed", str(exc))
            raise

    return wrapper  # type: ignore[return-value]


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
        self._finished = True  # nothing to report until the runtime exists
        super().__init__(*args, **kwargs)
        # One sink at a time: calls to TikTok are throttled and attributed per audience.
        self.max_parallelism = 1
        self.settings = Settings.from_config(self.config)
        self._deliveries: dict[str, Delivery] = {}
        self._last_state_line: str | None = None
        report = RunReport(dry_run=self.settings.dry_run)
        client: TikTokClient | DryRunClient
        if self.settings.dry_run:
            client = DryRunClient(self.settings.output_dir)
        else:
            client = TikTokClient(
                self.settings.api_base_url,
                self.settings.access_token or "",
                timeout=self.settings.request_timeout,
                max_retries=self.settings.max_retries,
                max_retry_seconds=self.settings.max_retry_seconds,
                max_requests_per_second=self.settings.max_requests_per_second,
            )
        self.runtime = Runtime(
            settings=self.settings,
            client=client,
            directory=AudienceDirectory(client),
            workdir=private_workdir(),
            report=report,
            logger=self.logger,
        )
        self._finished = False
        atexit.register(remove_workdir, self.runtime.workdir)
        self.message_reader.on_failure = lambda exc: self.finish("failed", str(exc))
        self._preflight()

    @_reported
    def _preflight(self) -> None:
        """Check the token and every advertiser before a single record is read."""
        if self.settings.dry_run:
            self.logger.info(
                "dry_run: nothing is sent to TikTok; files and plan go to %s",
                self.settings.output_dir,
            )
            return
        client = self.runtime.client
        client.check_token()
        client.check_advertisers(self.settings.advertiser_ids)
        self.logger.info(
            "Access token accepted for advertisers %s.", ", ".join(self.settings.advertiser_ids)
        )

    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        errors = super()._validate_config(raise_errors=False)
        if not errors:
            errors = cross_field_errors(self.config)
        if errors and raise_errors:
            raise ConfigValidationError("Config validation failed", errors=errors)
        return errors

    # -- streams ---------------------------------------------------------------------------

    def bind_stream(self, stream: str, schema: dict) -> Binding | None:
        """Decide what a stream becomes; None when it is ignored."""
        mapping = self.settings.mapping_for(stream)
        report = self.runtime.report
        if mapping is None:
            return self._ignore(stream, "it is not listed in the audiences setting")
        columns = list((schema.get("properties") or {}).keys())
        if mapping.identifiers is None:
            found = detect_identifier_columns(columns)
            if not found:
                return self._ignore(
                    stream, f"it has no identifier column (looked for {DETECTED_COLUMNS})"
                )
        else:
            found = dict(mapping.identifiers)
        wanted = [(f"identifiers.{c}", col) for c, col in found.items()]
        if mapping.remove_column:
            wanted.append(("remove_column", mapping.remove_column))
        missing = [
            f"audiences[stream={stream}].{key}: column '{col}' is not in the schema of "
            f"stream '{stream}' (columns: {', '.join(columns) or 'none'})"
            for key, col in wanted
            if col not in columns
        ]
        if missing:
            raise ConfigValidationError(missing[0], errors=missing)
        stream_report = report.streams.get(stream)
        if stream_report is None:
            stream_report = report.streams[stream] = StreamReport(stream, mapping.sync_mode)
        delivery = self._deliveries.get(stream)
        if delivery is None:
            kind = SegmentDelivery if mapping.sync_mode == "incremental" else FileDelivery
            delivery = self._deliveries[stream] = kind(
                self.runtime, mapping, stream_report, list(found)
            )
        else:
            delivery.extend(list(found))
        self.logger.info(
            "Stream '%s' -> audience '%s' (%s) in %d advertiser(s): %s.",
            stream,
            mapping.audience_name,
            mapping.sync_mode,
            len(self.settings.advertiser_ids),
            ", ".join(f"{c} from column '{col}'" for c, col in found.items()),
        )
        rules = self.settings.rules
        return Binding(
            delivery=delivery,
            encoders=[(c, col, make_encoder(c, rules)) for c, col in found.items()],
            remove_column=mapping.remove_column,
            report=stream_report,
        )

    def _ignore(self, stream: str, why: str) -> None:
        if stream not in self.runtime.report.ignored_streams:
            self.runtime.report.ignored_streams[stream] = why
            self.logger.warning("Stream '%s' is ignored: %s.", stream, why)

    # -- the end of input -----------------------------------------------------------------

    @_reported
    def process_endofpipe(self) -> None:
        self.drain_all()  # flush every sink; STATE stays held while files are undelivered
        for delivery in self._deliveries.values():
            delivery.commit()
        super().process_endofpipe()  # now emits the held STATE and cleans up the sinks
        self.finish("succeeded")

    def _write_state_message(self, state: dict) -> None:
        # STATE only once TikTok accepted every record before it; a failed run emits none.
        if any(d.pending for d in self._deliveries.values()):
            self.logger.debug("Holding STATE until pending audiences are delivered.")
            return
        line = json.dumps(state)
        if line != self._last_state_line:  # the SDK re-sends unchanged state on every drain
            self._last_state_line = line
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:
        # Unlike the SDK default, never deliver on a signal: a half-read mirror set must not
        # replace an audience.
        self.logger.error(
            "Received signal %d: stopping without delivering what is pending; no STATE was "
            "emitted for it, so re-running is safe.",
            signum,
        )
        self.finish("interrupted", f"stopped by signal {signum}")
        sys.exit(128 + signum)

    # -- the end ---------------------------------------------------------------------------

    def finish(self, status: str, error: str | None = None) -> None:
        """Summarise the run once: log lines, JSON report, dry-run plan; drop temp files."""
        if self._finished:
            return
        self._finished = True
        runtime = self.runtime
        report = runtime.report
        if status != "succeeded":
            for delivery in self._deliveries.values():
                delivery.discard()
        if isinstance(runtime.client, DryRunClient):
            for stream in report.streams.values():
                for entry in stream.audiences:
                    if entry.status == "delivered":
                        entry.status = "planned"  # nothing was sent
        report.finish(status, report.error or error)
        report.calls = runtime.client.total
        report.log_summary(self.logger)
        if self.settings.report_path:
            report.write_json(self.settings.report_path)
            self.logger.info("Run report written to %s", self.settings.report_path)
        if isinstance(runtime.client, DryRunClient):
            plan = runtime.client.write_plan(
                [
                    {"stream": s.stream, **a.as_dict()}
                    for s in report.streams.values()
                    for a in s.audiences
                ]
            )
            self.logger.info("dry_run: plan written to %s", Path(plan))
        remove_workdir(runtime.workdir)


if __name__ == "__main__":
    TargetTikTokAudiences.cli()
