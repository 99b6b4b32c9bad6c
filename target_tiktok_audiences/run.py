"""One run's lifecycle: client, workdir, deliveries, held STATE, and the end (report, plan)."""

from __future__ import annotations

import atexit
import difflib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from target_tiktok_audiences import redact, testhooks
from target_tiktok_audiences.audiences import AudienceDirectory
from target_tiktok_audiences.budget import Budget
from target_tiktok_audiences.client import AudienceAPI, TikTokClient
from target_tiktok_audiences.client.endpoints import REFUSAL_RETRY_SECONDS
from target_tiktok_audiences.creates import StoredCreates
from target_tiktok_audiences.deliveries import Delivery, Runtime, delivery_class, staging
from target_tiktok_audiences.deliveries.fanout import FanOutDelivery, fixed_claims
from target_tiktok_audiences.dryrun import DryRunClient, PreviewClient
from target_tiktok_audiences.identifiers import (
    ColumnEncoder,
    Encoder,
    make_column_encoder,
    one_value,
)
from target_tiktok_audiences.ledger import Ledger
from target_tiktok_audiences.places import Place, probe, report_place, spool_place
from target_tiktok_audiences.rejects import RejectsError, RejectsWriter
from target_tiktok_audiences.report import AudienceReport, RunReport, StreamReport
from target_tiktok_audiences.routing import Ignored, route_stream
from target_tiktok_audiences.settings import Settings
from target_tiktok_audiences.snapshot import LEASE_SECONDS, SnapshotStore, scope_for
from target_tiktok_audiences.spool import private_workdir, remove_dead_workdirs, remove_workdir

PROGRESS_SECONDS = 30.0


@dataclass
class Binding:
    """How one stream's records become digests, and where they go."""

    delivery: Delivery
    encoders: list[tuple[str, str, Encoder]]  # (contract, column, encoder), one value at a time
    column_encoders: list[tuple[str, str, ColumnEncoder]]  # the same, a column at a time
    remove_column: str | None
    key_properties: tuple[str, ...]
    report: StreamReport
    fanout: FanOutDelivery | None = None  # audience_name_column: the audience per record
    rejects: RejectsWriter | None = None  # rejects_url, when the stream's keys can be written

    def reject(self, record: Mapping[str, Any], contract: str, reason: str) -> None:
        """Count a rejection; with rejects_url, write its key (never the value)."""
        self.report.reject(contract, reason)
        if self.rejects is not None:
            key = {k: record.get(k) for k in self.key_properties}
            self.rejects.write(self.report.stream, key, contract, reason)
        elif self.report.rejects_why:
            self.report.rejects_counted_only += 1


def make_client(settings: Settings) -> AudienceAPI:
    """The run's client. dry_run: with a token, TikTok is read and nothing sent
    (PreviewClient); without one, nothing is read either (DryRunClient)."""
    if settings.dry_run and not settings.access_token:
        return DryRunClient(settings.output_dir)
    options: dict[str, Any] = {
        "timeout": settings.request_timeout,
        "max_retries": settings.max_retries,
        "max_retry_seconds": settings.max_retry_seconds,
        "max_requests_per_second": settings.max_requests_per_second,
        "refusal_retry_seconds": min(settings.max_retry_seconds, REFUSAL_RETRY_SECONDS),
    }
    token = settings.access_token or ""
    if settings.dry_run:
        return PreviewClient(settings.output_dir, settings.api_base_url, token, **options)
    return TikTokClient(settings.api_base_url, token, **options)


def make_budget(settings: Settings, client: AudienceAPI, snapshots: SnapshotStore) -> Budget:
    """The daily update operations budget: counted from the snapshot store's ledger (read only
    in a dry run) and TikTok's history; none where TikTok is not read (a dry run offline)."""
    limit = 0 if client.offline else settings.daily_update_operations
    return Budget(limit, client, Ledger(snapshots))


def check_places(settings: Settings, snapshot_root: str) -> None:
    """Every place this run will write, probed before a record is read (places.py)."""
    again = "fix it or choose another, then re-run"
    if not settings.dry_run:  # a dry run only reads snapshots and writes no rejects
        probe(Place("snapshot_url", snapshot_root, again))
        if settings.rejects_url:
            probe(Place("rejects_url", settings.rejects_url, again))
    if settings.dry_run:
        probe(Place("output_dir", settings.output_dir, again))
    if settings.report_path:
        probe(report_place(settings.report_path))
    probe(spool_place())


class Run:
    """Everything one invocation of the target does between its config and its exit."""

    def __init__(self, settings: Settings, logger: logging.Logger) -> None:
        self.settings = settings
        self.logger = logger
        self.finished = False
        # Every line of this process and the report are stripped of the token (TikTok may
        # echo it); the client strips it from TikTok's words first.
        self.secrets = tuple(s for s in (settings.access_token,) if s)
        redact.install(self.secrets)
        if removed := remove_dead_workdirs():
            logger.info(
                "Removed %d spool folder%s left by runs of this target that were killed.",
                removed,
                "" if removed == 1 else "s",
            )
        snapshots = SnapshotStore(
            settings.snapshot_url,
            scope=scope_for(settings.api_base_url),
            read_only=settings.dry_run,
            lease_seconds=testhooks.lease_seconds(LEASE_SECONDS),
        )
        check_places(settings, snapshots.url)  # before the dry run's folder or the spool exist
        client = testhooks.wrap(make_client(settings))
        self.client = client
        self.runtime = Runtime(
            settings=settings,
            client=client,
            budget=make_budget(settings, client, snapshots),
            directory=AudienceDirectory(
                confirm_seconds=settings.create_confirm_seconds,
                max_new=settings.max_new_audiences,
                pending=StoredCreates(snapshots),
            ),
            workdir=private_workdir(),
            report=RunReport(dry_run=settings.dry_run, read_tiktok=not client.offline),
            logger=logger,
            claims=fixed_claims((settings.mappings or {}).values()),
            snapshots=snapshots,
        )
        self.deliveries: dict[str, Delivery] = {}
        self.sealed: dict[str, Delivery] = {}  # stream -> its last complete version (mirror)
        self.bookmarks: dict[str, list[str]] = {}  # stream -> its SCHEMA's bookmark_properties
        self.rejects: RejectsWriter | None = None
        if settings.rejects_url and settings.dry_run:
            logger.info("dry_run: rejects_url is not written; rejections are counted only.")
        if settings.rejects_url and not settings.dry_run:
            self.rejects = RejectsWriter(
                settings.rejects_url, datetime.fromisoformat(self.report.started_at)
            )
            self.report.rejects_file = self.rejects.where
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
            stream_report = report.streams[stream] = StreamReport(
                stream,
                mapping.sync_mode.value,
                prehashed=not self.settings.rules.hash_identifiers,
            )
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
            if mapping.audience_name_column:
                stream_report.audience_name_column = mapping.audience_name_column
                delivery = FanOutDelivery(
                    self.runtime, mapping, stream_report, list(found), inner=kind
                )
            else:
                delivery = kind(self.runtime, mapping, stream_report, list(found))
            self.deliveries[stream] = delivery
        else:
            delivery.extend(list(found))
        bookmarks = self.bookmarks.get(stream)
        delivery.partial_stream = None
        if bookmarks and mapping.sync_mode.whole_set:
            delivery.partial_stream = f"bookmark_properties {', '.join(bookmarks)}"
            self.logger.warning(
                "Stream '%s' is replicated incrementally (bookmark_properties %s): a mirror "
                "needs the whole table every run, so its audience will be left unchanged. "
                "Select it with full-table replication, or use sync_mode append or incremental.",
                stream,
                ", ".join(bookmarks),
            )
        rejects = self._rejects_for(stream_report, tuple(key_properties), set(found.values()))
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
        columns = [(c, col, make_column_encoder(c, rules)) for c, col in found.items()]
        return Binding(
            delivery=delivery,
            encoders=[(c, col, one_value(encode)) for c, col, encode in columns],
            column_encoders=columns,
            remove_column=mapping.remove_column,
            key_properties=tuple(key_properties),
            report=stream_report,
            fanout=delivery if isinstance(delivery, FanOutDelivery) else None,
            rejects=rejects,
        )

    def _rejects_for(
        self, report: StreamReport, keys: tuple[str, ...], identifier_columns: set[str]
    ) -> RejectsWriter | None:
        """The rejects file, unless this stream's rejections can only be counted."""
        report.rejects_why = None
        if self.rejects is None:
            return None
        if not keys:
            report.rejects_why = "the stream has no key properties to name the rows by"
            return None
        if used := sorted(identifier_columns.intersection(keys)):
            # The key would be the identifier itself: the value must never be written.
            report.rejects_why = (
                f"its key properties include the identifier column {', '.join(used)}, and "
                "values are never written"
            )
            return None
        return self.rejects

    # -- STATE -----------------------------------------------------------------------------

    @property
    def pending(self) -> bool:
        return bool(self.sealed) or any(d.pending for d in self.deliveries.values())

    def _audiences(self, status: str) -> list[AudienceReport]:
        """This run's audiences in `status`, in the order they came."""
        return [a for s in self.report.streams.values() for a in s.audiences if a.status == status]

    @property
    def refused(self) -> list[str]:
        """Audiences TikTok refused this run, as 'name' in advertiser N."""
        return [
            f"'{a.audience_name}' in advertiser {a.advertiser_id} ({a.refusal})"
            for a in self._audiences("deferred")
        ]

    def undelivered(self) -> list[str]:
        """Streams whose audiences this run did not all deliver, each with the audience it
        stopped at, if it got that far."""
        streams = []
        for stream, delivery in self.deliveries.items():
            report = self.report.streams.get(stream)
            entries = report.audiences if report is not None else []
            failed = [a for a in entries if a.status not in ("delivered", "skipped", "planned")]
            if not failed and not delivery.pending:
                continue
            where = ""
            if failed:
                where = f" (stopped at '{failed[0].audience_name}' in advertiser "
                where += f"{failed[0].advertiser_id})"
            streams.append(f"stream '{stream}'{where}")
        return streams

    def stopped_line(self, line: str) -> str:
        """The last line of a run stopped while delivering: the failure, then what it left."""
        left = self.undelivered()
        if not left:
            return line
        others = "the others were delivered" if self.delivered else "none was delivered"
        stop = "" if line.endswith(".") else "."
        return (
            f"{line}{stop} Not delivered: the audiences of {', '.join(left)} ({others}; no "
            "STATE was emitted)"
        )

    @property
    def partial(self) -> list[str]:
        """Audiences TikTok applied in part (20001): re-sent by the next run, STATE held."""
        return [
            f"'{a.audience_name}' in advertiser {a.advertiser_id}"
            for a in self._audiences("partial")
        ]

    @property
    def no_access(self) -> str | None:
        """The run's one line about an API the TikTok app may not use, if any."""
        exc = self.runtime.no_access
        return str(exc) if exc is not None else None

    @property
    def delivered(self) -> int:
        """Audiences delivered this run (for the last line's wording)."""
        return len(self._audiences("delivered"))

    def state_line(self, state: Mapping[str, Any]) -> str | None:
        """The STATE line to emit now, or None while records before it are undelivered.

        A dry run confirms nothing, so it never emits STATE: a bookmark advanced by a dry run
        would make the next real run skip those rows.
        """
        # With rejects_url, STATE waits for the rejects file to be complete (complete_rejects):
        # a bookmark past rows whose rejected keys were lost would lose them for good.
        held = self.refused or self.partial or self.no_access or self.rejects is not None
        if self.settings.dry_run or self.pending or held or self.finished:
            self.logger.debug("Holding STATE until pending audiences are delivered.")
            return None
        line = json.dumps(state)
        if line == self._last_state_line:  # the SDK re-sends unchanged state on every drain
            return None
        self._last_state_line = line
        return line

    # -- the end ---------------------------------------------------------------------------

    def deliver(self) -> None:
        """End of input: every delivery sends what it holds, the update operations of all of
        them planned together (removals first: deliveries/staging.py)."""
        sealed, self.sealed = self.sealed, {}
        deliveries = []
        for stream, delivery in self.deliveries.items():
            version = sealed.get(stream)
            if version is not None and delivery.pending:
                version.discard()  # records after the boundary: a newer version
                version = None
            deliveries.append(version or delivery)
        staging.deliver(deliveries, self.runtime.budget)

    def send_held(self) -> None:
        """The SDK's max record age passed (fastpath.py): batches that wait to be full go now, so
        a trickle's STATE is not held to the end. Files still wait for the end of input: their
        update operations are few a day."""
        for delivery in self.deliveries.values():
            delivery.send_held()

    def version_boundary(self, binding: Binding) -> None:
        """ACTIVATE_VERSION after records: what was read before it is a complete version.

        Batches (incremental) go out now. A mirror's complete set waits for the end of input,
        where every audience's update operations are planned together; a later version of
        the stream replaces it. Append events simply go on accumulating.
        """
        delivery = binding.delivery
        if delivery.sends_as_it_reads:
            delivery.commit()
            return
        if not delivery.mapping.sync_mode.whole_set:
            return
        older = self.sealed.pop(binding.report.stream, None)
        if older is not None:
            older.discard()  # a newer complete version of the same stream supersedes it
        self.sealed[binding.report.stream] = delivery
        fresh = replace(delivery, contracts=list(delivery.contracts))
        fresh.partial_stream = delivery.partial_stream
        binding.delivery = self.deliveries[binding.report.stream] = fresh
        binding.fanout = fresh if isinstance(fresh, FanOutDelivery) else None

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

    def flush_rejects(self) -> None:
        if self.rejects is not None:
            self.rejects.flush()

    def complete_rejects(self) -> None:
        """End of input, before STATE: the rejects file is completed; RejectsError (the run
        fails, no STATE) when it cannot be."""
        rejects, self.rejects = self.rejects, None
        if rejects is None:
            return
        self.report.rejects_written = rejects.written
        try:
            rejects.close()
        except RejectsError:
            self.report.rejects_file = None
            raise

    def _close_rejects(self) -> None:
        """A run that failed anyway: what the rejects file holds is kept if it can be."""
        try:
            self.complete_rejects()
        except RejectsError as exc:
            self.logger.error("%s", exc)

    def finish(self, status: str, error: str | None = None) -> None:
        """Summarise the run once: log lines, JSON report, client's last word; drop temp files."""
        if self.finished:
            return
        self.finished = True
        report = self.report
        if status != "succeeded":
            for delivery in (*self.sealed.values(), *self.deliveries.values()):
                delivery.discard()
        self.add_hints()
        report.finish(status, report.error or error)
        report.calls = self.client.total
        report.operations = self.runtime.budget.summary()
        self.client.finish(report)
        self._close_rejects()
        report.log_summary(self.logger)
        if self.settings.report_path:
            try:
                report.write_json(self.settings.report_path, self.secrets)
                self.logger.info("Run report written to %s", self.settings.report_path)
            except OSError as exc:
                self.logger.error(
                    "Could not write the run report to %s (report_path): %s",
                    self.settings.report_path,
                    exc.strerror or exc,
                )
        remove_workdir(self.runtime.workdir)
