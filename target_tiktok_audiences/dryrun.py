"""dry_run: an AudienceAPI that sends nothing and writes down everything.

With an access_token, `PreviewClient` is the real `TikTokClient` whose reads (the token check,
list, get, TikTok's clock, the history the operations budget counts) go to
TikTok, and whose writes (upload, create, update, mapping) are written down, never sent: the
deliveries plan with the same code as a real run, from what TikTok and the snapshot store
(read only) hold, so the plan is what the next real run would send. Without a token,
`DryRunClient` reads nothing at all: every audience is planned as new.

Each run writes into a new folder under output_dir (named by its start time), so a dry run
never touches what it did not write: files/ holds the hashed files that would be uploaded,
batches/ the Segment API batches, and plan.json the audiences, actions and counts. Everything
is private (folders 0700, files 0600): the files hold digests of personal data.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from target_tiktok_audiences.client import (
    SEGMENT_ID_TYPES,
    AudienceRow,
    AudienceStatus,
    CountedCalls,
    NewAudience,
    TikTokClient,
    UserBatch,
    file_md5,
)
from target_tiktok_audiences.report import CallStats, RunReport

T = TypeVar("T")
log = logging.getLogger("target_tiktok_audiences.dryrun")


def _private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def _private_file(path: Path) -> Any:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return open(fd, "w", encoding="utf-8")


def new_run_dir(output_dir: str | Path) -> Path:
    """A fresh folder for this run under output_dir; never an existing one."""
    root = Path(output_dir)
    root.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    for n in range(1000):
        candidate = root / (stamp if n == 0 else f"{stamp}-{n}")
        try:
            candidate.mkdir(mode=0o700)
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"output_dir {root}: too many dry runs started this second")


class _Recorder:
    """What every view of one dry-run client shares."""

    def __init__(self, output_dir: str | Path) -> None:
        self.out = new_run_dir(output_dir)
        self.calls: list[dict[str, Any]] = []
        self.total = CallStats()
        self.copies: dict[Path, tuple[str, int]] = {}
        self.ids = 0


PLACEHOLDER = "dry-run-"  # the id a dry run gives an audience it would create


class _Recording(CountedCalls):
    """The write calls of a dry run: written down under output_dir, never sent."""

    sends = False
    _rec: _Recorder

    @property
    def out(self) -> Path:
        return self._rec.out

    @property
    def calls(self) -> list[dict[str, Any]]:
        return self._rec.calls

    def _record(self, call: dict[str, Any]) -> None:
        self._rec.calls.append(call)
        self._count()

    def upload_file(self, advertiser_id: str, calculate_type: str, path: Path) -> str:
        rec = self._rec
        if path not in rec.copies:
            dest = _private_dir(rec.out / "files") / f"{len(rec.copies) + 1:04d}-{path.name}"
            with path.open("rb") as src, _private_file(dest) as dst:
                shutil.copyfileobj(src, dst.buffer)
            with dest.open("rb") as fh:
                lines = sum(1 for _ in fh)
            rec.copies[path] = (dest.relative_to(rec.out).as_posix(), lines)
        rel, lines = rec.copies[path]
        self._record(
            {
                "call": "upload",
                "advertiser_id": advertiser_id,
                "calculate_type": calculate_type,
                "file": rel,
                "lines": lines,
                "file_signature": file_md5(path),
            }
        )
        self._count("bytes_uploaded", path.stat().st_size)
        return rel

    def _new_id(self) -> str:
        self._rec.ids += 1
        return f"{PLACEHOLDER}{self._rec.ids}"

    def create_customer_audience(self, audience: NewAudience) -> str:
        advertiser_id, name, calculate_type = audience.key
        file_paths, retention_in_days = audience.file_paths, audience.retention_in_days
        audience_id = self._new_id()
        self._record(
            {
                "call": "create",
                "advertiser_id": advertiser_id,
                "name": name,
                "audience_id": audience_id,
                "calculate_type": calculate_type,
                "files": list(file_paths),
                "retention_in_days": retention_in_days,
            }
        )
        return audience_id

    def update_customer_audience(
        self, advertiser_id: str, audience_id: str, file_paths: Sequence[str], action: str
    ) -> None:
        self._record(
            {
                "call": "update",
                "advertiser_id": advertiser_id,
                "audience_id": audience_id,
                "action": action,
                "files": list(file_paths),
            }
        )

    def create_partner_audience(self, advertiser_id: str, name: str) -> str:
        audience_id = self._new_id()
        self._record(
            {
                "call": "create_partner",
                "advertiser_id": advertiser_id,
                "name": name,
                "audience_id": audience_id,
            }
        )
        return audience_id

    def map_users(
        self, advertiser_id: str, audience_id: str, batch: UserBatch, *, ready: float | None = None
    ) -> None:
        action, contracts, users = batch.action, batch.contracts, batch.users
        rec = self._rec
        out = _private_dir(rec.out / "batches") / f"{len(rec.calls) + 1:06d}-{advertiser_id}.json"
        schema = [SEGMENT_ID_TYPES[c] for c in contracts]
        with _private_file(out) as fh:
            json.dump(
                {
                    "advertiser_id": advertiser_id,
                    "audience_id": audience_id,
                    "action": action,
                    "id_schema": schema,
                    "users": [[u.get(c) for c in contracts] for u in users],
                },
                fh,
            )
        self._record(
            {
                "call": "mapping",
                "advertiser_id": advertiser_id,
                "audience_id": audience_id,
                "action": action,
                "id_schema": schema,
                "users": len(users),
                "file": out.relative_to(rec.out).as_posix(),
            }
        )

    def write_plan(self, report: RunReport) -> None:
        """Nothing was sent: delivered audiences are only planned; write plan.json."""
        audiences = []
        unchanged = []
        for stream in report.streams.values():
            for entry in stream.audiences:
                if entry.status == "delivered":
                    entry.status = "planned"
                audiences.append({"stream": stream.stream, **entry.as_dict()})
            unchanged += [
                {"stream": stream.stream, "audience": a} for a in stream.unchanged_audiences
            ]
        plan = {
            "dry_run": True,
            "read_tiktok": not self.offline,
            "audiences": audiences,
            "unchanged_audiences": unchanged,  # audience_name_column: no records this run
            "operations": report.operations,
            "calls": self.calls,
        }
        path = self.out / "plan.json"
        with _private_file(path) as fh:
            json.dump(plan, fh, indent=2)
            fh.write("\n")
        log.info("dry_run: plan written to %s", path)


class DryRunClient(_Recording):
    """No token: same calls as TikTokClient, no network at all; every audience is new."""

    offline = True  # configured audience ids are trusted: there is no list to check them in

    def __init__(self, output_dir: str | Path) -> None:
        self._rec = _Recorder(output_dir)
        super().__init__(self._rec.total)

    def retrying(self, func: Callable[[], T]) -> T:
        return func()

    def preflight(self, advertiser_ids: Sequence[str]) -> None:
        log.info("dry_run: nothing is sent to TikTok; files and plan go to %s", self.out)

    def list_audiences(self, advertiser_id: str) -> Iterator[AudienceRow]:
        return iter(())  # offline, no audience is known: the plan says what would be created

    def get_audience(self, advertiser_id: str, audience_id: str) -> AudienceStatus:
        return AudienceStatus(None, None)

    def finish(self, report: RunReport) -> None:
        self.write_plan(report)


class PreviewClient(_Recording, TikTokClient):
    """With a token: TikTokClient's reads, and its writes written down instead of sent.

    The operations budget (budget.py) counts as in a real run (the ledger, read only, and
    TikTok's history) and each planned update takes its operation, so what the budget defers
    is planned too; nothing is written to the ledger.
    """

    def __init__(self, output_dir: str | Path, base_url: str, token: str, **kwargs: Any) -> None:
        super().__init__(base_url, token, **kwargs)
        self._rec = _Recorder(output_dir)

    def preflight(self, advertiser_ids: Sequence[str]) -> None:
        super().preflight(advertiser_ids)
        log.info(
            "dry_run: TikTok and the snapshots are only read, nothing is sent or written; "
            "files and plan go to %s",
            self.out,
        )

    def get_audience(self, advertiser_id: str, audience_id: str) -> AudienceStatus:
        if audience_id.startswith(PLACEHOLDER):  # would be created: TikTok has nothing to say
            return AudienceStatus(None, None)
        return super().get_audience(advertiser_id, audience_id)

    def finish(self, report: RunReport) -> None:
        super().finish(report)
        self.write_plan(report)
