"""Run report: what each stream and audience received, as log lines and as JSON.

It holds counts, names and ids only; never an identifier, a digest or a token.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from target_tiktok_audiences.redact import scrub

REMOVE_FLAG = "remove_column"  # where unreadable removal flags are counted among rejections
AUDIENCE_NAME = "audience_name_column"  # where records without an audience name are counted
PARTNER_SIZE_NOTE = "TikTok counts identifiers, not users, in a partner audience's size"
MATCH_NOTE = (
    "TikTok matches uploaded users in 24-48 hours; an audience is usable for targeting from "
    "1,000 matched users."
)
NOT_READ = (
    "dry_run without access_token: TikTok was not read, so every audience is planned as new "
    "(set access_token to plan against what TikTok and the snapshots hold)."
)
GAP_SHARE = 0.05  # TikTok's size this far from the snapshot's is flagged (size_gap)


def size_gap(
    size: int | None, sent: int | None, partner: bool, added: int = 0, removed: int = 0
) -> str | None:
    """TikTok's size against the snapshot's: a gap that matching cannot explain, or None.

    A partner audience's size counts the identifiers sent, so a gap either way is a change made
    elsewhere. A customer file's size counts the users TikTok matched, never more than were
    sent: only a size above the snapshot's is sure to be an edit (fewer is what matching does).
    TikTok shows a change after 24-48 h, so what a run just `added` or `removed` may not be in
    the size yet: the gap is measured from the nearer of the sets before and after the run.
    """
    if size is None or not sent:
        return None
    low, high = sent - added, sent + removed
    gap = size - high if size > high else size - low if size < low else 0
    if abs(gap) <= max(GAP_SHARE * sent, 1) or (gap < 0 and not partner):
        return None
    more = "more" if gap > 0 else "fewer"
    return (
        f"TikTok reports {size:,} where the target sent {sent:,} ({abs(gap) * 100 / sent:.0f}% "
        f"{more}): likely edited in Ads Manager"
    )


@dataclass
class CallStats:
    """Calls made on behalf of one audience (or in total)."""

    calls: int = 0
    retries: int = 0
    bytes_uploaded: int = 0

    def add(self, field_name: str, amount: int = 1) -> None:
        setattr(self, field_name, getattr(self, field_name) + amount)


@dataclass
class AudienceReport:
    """One audience in one advertiser."""

    advertiser_id: str
    audience_name: str
    sync_mode: str
    contracts: list[str]
    audience_type: str | None = None  # customer_file | partner
    audience_id: str | None = None
    created: bool = False
    status: str = "pending"  # pending | delivered | planned | skipped | deferred | failed
    action: str | None = None
    files: int = 0
    identifiers_unique: int = 0
    identifiers_unchanged: int = 0
    identifiers_uploaded: int = 0
    identifiers_removed: int = 0
    users_added: int = 0
    users_removed: int = 0
    batches: int = 0
    refusal: str | None = None  # why TikTok refused this audience (status deferred)
    mirror: str | None = None  # diff | full
    mirror_reason: str | None = None
    is_valid: bool | None = None  # read back from TikTok after delivery
    size: int | None = None
    last_operation: str | None = None  # TikTok's word for it, as written (undocumented words)
    tiktok_error: str | None = None  # TikTok's words on a failure after it accepted a call
    note: str | None = None
    next_resync: str | None = None  # mirror by difference: when the next full REPLACE is due
    stats: CallStats = field(default_factory=CallStats)

    def defer(self, why: str, advice: str, error: str) -> None:
        """TikTok refused this audience alone: the run goes on, STATE is withheld."""
        self.status = "deferred"
        self.refusal = why
        self.note = f"not delivered: {why}; {advice}. ({error})"

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(data.pop("stats"))
        return data


@dataclass
class StreamReport:
    """What one stream brought in."""

    stream: str
    sync_mode: str
    records_read: int = 0
    records_removed: int = 0
    records_without_identifiers: int = 0
    accepted: dict[str, int] = field(default_factory=dict)  # contract -> identifiers
    removed: dict[str, int] = field(default_factory=dict)  # contract -> identifiers
    rejected: dict[str, dict[str, int]] = field(default_factory=dict)  # contract -> reason -> n
    audiences: list[AudienceReport] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)  # from the data: what to change, and why
    audience_name_column: str | None = None  # one audience per value of this column
    # Audiences of audience_name_column that got no record this run: left unchanged.
    unchanged_audiences: list[str] = field(default_factory=list)
    rejects_counted_only: int = 0  # rejections not written to rejects_url (no usable key)
    rejects_why: str | None = None  # why they were counted only
    # hash_identifiers: false: every digest arrived pre-hashed (its format checked, as it is)
    prehashed: bool = False

    @property
    def prehashed_digests(self) -> int:
        """How many of the digests taken in (added or removed) arrived pre-hashed."""
        if not self.prehashed:
            return 0
        return sum(self.accepted.values()) + sum(self.removed.values())

    def reject(self, contract: str, reason: str) -> None:
        reasons = self.rejected.setdefault(contract, {})
        reasons[reason] = reasons.get(reason, 0) + 1


@dataclass
class RunReport:
    """The whole run."""

    dry_run: bool
    read_tiktok: bool = True  # False: a dry run without a token, every audience planned as new
    started_at: str = field(default_factory=lambda: _now())
    finished_at: str | None = None
    status: str = "running"  # running | succeeded | failed | interrupted
    error: str | None = None
    streams: dict[str, StreamReport] = field(default_factory=dict)
    ignored_streams: dict[str, str] = field(default_factory=dict)  # stream -> why
    not_attempted: dict[str, str] = field(default_factory=dict)  # configured stream -> why
    calls: CallStats = field(default_factory=CallStats)
    rejects_file: str | None = None  # where rejected identifiers were written (rejects_url)
    rejects_written: int = 0
    # advertiser -> update operations of the last 24 h: limit, used, by_this_run, left
    operations: dict[str, dict[str, Any]] = field(default_factory=dict)

    def finish(self, status: str, error: str | None = None) -> None:
        self.status = status
        self.error = error
        self.finished_at = _now()

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "error": self.error,
            "dry_run": self.dry_run,
            "read_tiktok": self.read_tiktok,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "calls": asdict(self.calls),
            "operations": self.operations,
            "ignored_streams": self.ignored_streams,
            "not_attempted": self.not_attempted,
            "rejects_file": self.rejects_file,
            "rejects_written": self.rejects_written,
            "streams": [
                {
                    **{k: v for k, v in asdict(s).items() if k != "audiences"},
                    "prehashed_digests": s.prehashed_digests,
                    "audiences": [a.as_dict() for a in s.audiences],
                }
                for s in self.streams.values()
            ],
            "note": MATCH_NOTE,
        }

    def write_json(self, path: str | os.PathLike[str], secrets: Iterable[str] = ()) -> None:
        """Write atomically, so a reader never sees half a report; `secrets` (the token) are
        stripped from every text in it (TikTok's words may quote them)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".report-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(scrub(json.dumps(self.as_dict(), indent=2), secrets))
            fh.write("\n")
        os.replace(tmp, target)

    def log_summary(self, logger: logging.Logger) -> None:
        """A few lines per audience, readable in `meltano run` output."""
        if self.dry_run and not self.read_tiktok:
            logger.warning(NOT_READ)
        for stream in self.streams.values():
            rejected = sum(sum(r.values()) for r in stream.rejected.values())
            logger.info(
                "Stream '%s' (%s): %s read, %s removed, %s without a usable identifier; "
                "identifiers accepted %s; rejected %s%s.",
                stream.stream,
                stream.sync_mode,
                _n(stream.records_read, "record"),
                f"{stream.records_removed:,}",
                f"{stream.records_without_identifiers:,}",
                _counts(stream.accepted) or "none",
                f"{rejected:,}",
                f" ({_reasons(stream.rejected)})" if rejected else "",
            )
            if stream.prehashed:
                logger.info(
                    "Stream '%s': %s arrived pre-hashed (hash_identifiers: false): their format "
                    "was checked, not what they were made from.",
                    stream.stream,
                    _n(stream.prehashed_digests, "digest"),
                )
            for hint in stream.hints:
                logger.warning("Stream '%s': %s", stream.stream, hint)
            if stream.rejects_counted_only:
                logger.warning(
                    "Stream '%s': %s rejections were counted but not written to rejects_url: %s.",
                    stream.stream,
                    f"{stream.rejects_counted_only:,}",
                    stream.rejects_why,
                )
            if stream.audience_name_column is not None:
                _log_fanout(logger, stream, self.dry_run)
                continue
            for aud in stream.audiences:
                if aud.status == "pending":  # never tried: the last line names it
                    continue
                if self.dry_run:
                    logger.info("%s", _planned_line(aud))
                    _log_note(logger, aud)
                    continue
                logger.info(
                    "Audience '%s' in advertiser %s: %s.",
                    aud.audience_name,
                    aud.advertiser_id,
                    _delivery_line(aud),
                )
                _log_note(logger, aud)
        for advertiser_id, ops in self.operations.items():
            logger.info(
                "Advertiser %s: %s of its %s update operations of the last 24 h %s (%s by "
                "this run), %s left (daily_update_operations).",
                advertiser_id,
                ops["used"],
                ops["limit"],
                "would be used" if self.dry_run else "used",
                ops["by_this_run"],
                ops["left"],
            )
        for name, why in self.ignored_streams.items():
            logger.info("Stream '%s' ignored: %s", name, why)
        for name, why in self.not_attempted.items():
            logger.warning("Configured stream '%s': no audience was attempted: %s", name, why)
        if self.rejects_file:
            logger.info(
                "Rejected identifiers: %s written to %s (stream, key, contract, reason; never "
                "the value).",
                _n(self.rejects_written, "line"),
                self.rejects_file,
            )
        if self.streams and not self.dry_run:  # a dry run sent nothing to match
            logger.info(MATCH_NOTE)


def _outcome(aud: AudienceReport) -> str:
    if aud.status == "delivered" and aud.action in (None, "NONE"):
        outcome = "delivered, nothing to change"
    else:
        outcome = f"{aud.status} ({aud.action})" if aud.action else aud.status
    created = " (created)" if aud.created else ""
    return f"{outcome}, id {aud.audience_id or '-'}{created}"


def change_line(aud: AudienceReport) -> str:
    """What the audience gained and lost, and its size when the whole set is known:
    "+50 -69 -> 4,559" (with a minus sign and an arrow)."""
    added = aud.users_added or aud.identifiers_uploaded
    removed = aud.users_removed or aud.identifiers_removed
    change = f"+{added:,} \u2212{removed:,}"
    return f"{change} \u2192 {aud.identifiers_unique:,}" if aud.mirror else change


def in_days(days: float) -> str:
    """'in 7 days', 'in 6.5 days', 'in 1 day': one spelling for every number of days."""
    text = f"{days:.1f}".removesuffix(".0")
    return f"in {text} day{'' if text == '1' else 's'}"


def _log_note(logger: logging.Logger, aud: AudienceReport) -> None:
    if aud.note:
        logger.warning(
            "Audience '%s' in advertiser %s: %s", aud.audience_name, aud.advertiser_id, aud.note
        )


def _log_fanout(logger: logging.Logger, stream: StreamReport, dry_run: bool) -> None:
    """One line per audience under one heading: 40 segments stay readable."""
    statuses: dict[str, int] = {}
    for aud in stream.audiences:
        if aud.status != "pending":  # never tried: the last line names the stream
            statuses[aud.status] = statuses.get(aud.status, 0) + 1
    names = {a.audience_name for a in stream.audiences}
    advertisers = {a.advertiser_id for a in stream.audiences}
    logger.info(
        "Stream '%s': %s from column '%s' in %s (%s); %s unchanged (no records this run).",
        stream.stream,
        _n(len(names), "audience"),
        stream.audience_name_column,
        _n(len(advertisers), "advertiser"),
        _counts(statuses) or "none delivered",
        f"{len(stream.unchanged_audiences):,}",
    )
    for aud in sorted(stream.audiences, key=lambda a: (a.audience_name, a.advertiser_id)):
        if aud.status == "pending":  # never tried: the last line names it
            continue
        if dry_run:
            logger.info("  %s", _planned_line(aud))
            _log_note(logger, aud)
            continue
        logger.info("  '%s' in %s: %s.", aud.audience_name, aud.advertiser_id, _delivery_line(aud))
        _log_note(logger, aud)
    for unchanged in stream.unchanged_audiences:
        logger.warning(
            "Stream '%s': audience %s got no records this run and was left unchanged; delete "
            "it in TikTok if its value is gone for good.",
            stream.stream,
            unchanged,
        )


def _delivery_line(aud: AudienceReport) -> str:
    """The change first, then what happened, how it was sent, and what TikTok says now."""
    parts = [change_line(aud), _outcome(aud)]
    if aud.mirror == "diff":
        parts.append(f"by difference, {aud.identifiers_unchanged:,} unchanged")
    elif aud.mirror == "full":
        parts.append(f"sent in full ({aud.mirror_reason})")
    if aud.batches or aud.users_added or aud.users_removed:
        sent = _n(aud.batches, "batch", "batches")
    else:
        sent = f"{_n(aud.files, 'file')}, {_n(aud.stats.bytes_uploaded, 'byte')}"
    calls = f"{_n(aud.stats.calls, 'call')}, {_n(aud.stats.retries, 'retry', 'retries')}"
    parts.append(f"{sent}, {calls}")
    if aud.size is not None or aud.last_operation or aud.tiktok_error:
        valid = {True: "usable", False: "not usable yet", None: "validity unknown"}[aud.is_valid]
        if aud.tiktok_error:  # never "usable" beside TikTok's own word of a failure
            valid = f'TikTok reports an error: "{aud.tiktok_error}"'
        size = f"{aud.size:,}" if aud.size is not None else "unknown"
        partner = aud.audience_type == "partner"
        note = f" ({PARTNER_SIZE_NOTE})" if partner and aud.size is not None else ""
        parts.append(
            f"TikTok reports size {size}{note}, {valid}, last operation {aud.last_operation or '-'}"
        )
        if aud.mirror and (gap := _gap(aud)):
            parts.append(gap)
    if aud.next_resync:
        parts.append(f"next full resync {aud.next_resync}")
    return "; ".join(parts)


def _gap(aud: AudienceReport) -> str | None:
    gap = size_gap(
        aud.size,
        aud.identifiers_unique,
        aud.audience_type == "partner",
        added=aud.users_added or aud.identifiers_uploaded,
        removed=aud.users_removed or aud.identifiers_removed,
    )
    if gap is None:
        return None
    if aud.next_resync:
        return f"{gap}: the next full resync ({aud.next_resync}) corrects it"
    return (
        f"{gap}: only a full upload corrects it (delete the snapshot, or mirror_strategy replace)"
    )


def _planned_line(aud: AudienceReport) -> str:
    """A dry run's audience: what would happen, never as if it had."""
    where = f"Audience '{aud.audience_name}' in advertiser {aud.advertiser_id}"
    if aud.status != "planned":
        why = f" ({aud.refusal})" if aud.refusal else ""
        return f"{where}: dry run, would be {aud.status}{why}; nothing was sent."
    does = "create it" if aud.created else f"update audience {aud.audience_id or '-'}"
    if aud.action == "NONE":
        return (
            f"{where}: {change_line(aud)}; nothing to change in audience "
            f"{aud.audience_id or '-'}; nothing would be sent (dry run)."
        )
    if aud.action and aud.action != "CREATE":
        does += f" ({aud.action})"
    if aud.batches or aud.users_added or aud.users_removed:
        sent = (
            f"would add {_n(aud.users_added, 'user')} and remove {aud.users_removed:,} in "
            f"{_n(aud.batches, 'batch', 'batches')}"
        )
    else:
        sent = (
            f"would upload {_n(aud.identifiers_uploaded, 'identifier')} and remove "
            f"{aud.identifiers_removed:,} in {_n(aud.files, 'file')} "
            f"({_n(aud.stats.bytes_uploaded, 'byte')})"
        )
    if aud.mirror == "diff":
        sent += f"; {aud.identifiers_unchanged:,} unchanged (by difference)"
    elif aud.mirror == "full":
        sent += f"; all {aud.identifiers_unique:,} in full ({aud.mirror_reason})"
    return f"{where}: {change_line(aud)}; would {does}; {sent}; nothing sent (dry run)."


def _n(count: int, one: str, many: str | None = None) -> str:
    return f"{count:,} {one if count == 1 else many or one + 's'}"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}={v:,}" for k, v in sorted(counts.items()))


def _reasons(rejected: dict[str, dict[str, int]]) -> str:
    return "; ".join(f"{c}: {_counts(r)}" for c, r in sorted(rejected.items()))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
