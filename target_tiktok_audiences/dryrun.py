"""dry_run: a stand-in for the TikTok client that sends nothing and writes down everything.

Under output_dir: files/ holds the hashed files that would be uploaded, batches/ the Segment
API batches, and plan.json the audiences, advertisers, actions and counts.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from target_tiktok_audiences.client import SEGMENT_ID_TYPES, AudienceRow, CallStats, file_md5


class DryRunClient:
    """Same calls as TikTokClient; no network at all."""

    def __init__(self, output_dir: str | Path) -> None:
        self.out = Path(output_dir)
        for stale in ("files", "batches", "plan.json"):
            target = self.out / stale
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
        self.out.mkdir(parents=True, exist_ok=True)
        self.calls: list[dict[str, Any]] = []
        self.total = CallStats()
        self.tracker: CallStats | None = None
        self._copies: dict[Path, tuple[str, int]] = {}
        self._ids = 0

    def _record(self, call: dict[str, Any]) -> None:
        self.calls.append(call)
        for stats in (self.total, self.tracker):
            if stats is not None:
                stats.calls += 1

    def retrying(self, func: Callable[[], Any]) -> Any:
        return func()

    def check_token(self) -> None:
        """Nothing to check offline."""

    def check_advertisers(self, advertiser_ids: Sequence[str]) -> None:
        """Nothing to check offline."""

    def list_audiences(self, advertiser_id: str) -> Iterator[AudienceRow]:
        return iter(())  # offline, no audience is known: the plan says what would be created

    def upload_file(self, advertiser_id: str, calculate_type: str, path: Path) -> str:
        if path not in self._copies:
            dest = self.out / "files" / f"{len(self._copies) + 1:04d}-{path.name}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
            with dest.open("rb") as fh:
                lines = sum(1 for _ in fh)
            self._copies[path] = (dest.relative_to(self.out).as_posix(), lines)
        rel, lines = self._copies[path]
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
        for stats in (self.total, self.tracker):
            if stats is not None:
                stats.bytes_uploaded += path.stat().st_size
        return rel

    def _new_id(self) -> str:
        self._ids += 1
        return f"dry-run-{self._ids}"

    def create_customer_audience(
        self,
        advertiser_id: str,
        name: str,
        calculate_type: str,
        file_paths: Sequence[str],
        retention_in_days: int | None,
    ) -> str:
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
        self,
        advertiser_id: str,
        audience_id: str,
        action: str,
        contracts: Sequence[str],
        users: Sequence[Mapping[str, str]],
    ) -> None:
        batch = self.out / "batches" / f"{len(self.calls) + 1:06d}-{advertiser_id}.json"
        batch.parent.mkdir(parents=True, exist_ok=True)
        schema = [SEGMENT_ID_TYPES[c] for c in contracts]
        with batch.open("w", encoding="utf-8") as fh:
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
                "file": batch.relative_to(self.out).as_posix(),
            }
        )

    def write_plan(self, audiences: list[dict[str, Any]]) -> Path:
        plan = self.out / "plan.json"
        plan.write_text(
            json.dumps({"dry_run": True, "audiences": audiences, "calls": self.calls}, indent=2)
            + "\n",
            encoding="utf-8",
        )
        return plan
