"""append: customer-file audiences fed by uploaded files of digests (APPEND, then REMOVE)."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from target_tiktok_audiences.budget import Ask, Grant
from target_tiktok_audiences.client import (
    MAX_FILE_PATHS_PER_CALL,
    AudienceAPI,
    NewAudience,
)
from target_tiktok_audiences.deliveries.base import Delivery
from target_tiktok_audiences.deliveries.staging import Routine
from target_tiktok_audiences.extsort import ExternalSorter
from target_tiktok_audiences.report import AudienceReport
from target_tiktok_audiences.spool import Chunk, Spool


@dataclass(eq=False)
class FileDelivery(Delivery):
    """Spools digests per contract; at commit uploads them and creates or updates audiences.

    Each user's last record in the run decides whether it is added or removed: records are
    kept as events (user key, order, action, digests) sorted on disk, so memory stays flat.
    A user is its key properties when the stream has them, else its identifiers.
    """

    _added: dict[str, Spool] = field(default_factory=dict, init=False)
    _removed: dict[str, Spool] = field(default_factory=dict, init=False)
    _events: ExternalSorter | None = field(default=None, init=False)
    _seq: int = field(default=0, init=False)
    _staged: list[Chunk] = field(default_factory=list, init=False)  # read until close_stage

    def _spool(self, spools: dict[str, Spool], contract: str, kind: str) -> Spool:
        spool = spools.get(contract)
        if spool is None:
            stem = f"{id(self):x}-{kind}-{contract.lower()}"
            spool = spools[contract] = Spool(
                self.runtime.workdir, stem, self.runtime.settings.file_max_ids
            )
        return spool

    def add(self, ids: dict[str, str], removed: bool, user: str | None = None) -> None:
        if self._events is None:
            workdir = Path(tempfile.mkdtemp(prefix="events-", dir=self.runtime.workdir))
            self._events = ExternalSorter(workdir)
        digests = ",".join(f"{c}={d}" for c, d in ids.items())
        key = hashlib.sha256((user if user is not None else digests).encode()).hexdigest()
        self._seq += 1
        self._events.add(f"{key}\t{self._seq:012d}\t{'r' if removed else 'a'}\t{digests}")

    def flush(self) -> None:
        """Events spill to disk by themselves; files are uploaded at the end of input."""

    @property
    def pending(self) -> bool:
        return self._seq > 0

    def _last_records(self) -> None:
        """Each user's last event into the add or remove spools of its contracts."""
        events, self._events, self._seq = self._events, None, 0
        if events is None:
            return
        try:
            last: str | None = None
            for line in events.sorted_unique():
                if last is not None and line[:64] != last[:64]:
                    self._spool_event(last)
                last = line
            if last is not None:
                self._spool_event(last)
        finally:
            events.close()

    def _spool_event(self, line: str) -> None:
        _, _, action, digests = line.split("\t", 3)
        spools, kind = (self._removed, "remove") if action == "r" else (self._added, "add")
        for pair in digests.split(","):
            contract, digest = pair.split("=", 1)
            (spools.get(contract) or self._spool(spools, contract, kind)).write(digest)

    def stage(self) -> Iterator[Routine]:
        self._last_records()
        for contract in self.contracts:
            added = self._added.pop(contract).take() if contract in self._added else []
            removed = self._removed.pop(contract).take() if contract in self._removed else []
            self._staged.extend((*added, *removed))
            if not added and not removed:
                continue
            name = self.mapping.audience_name_for(contract, self.contracts)
            for advertiser_id in self.runtime.settings.advertiser_ids:
                yield self._commit_one(advertiser_id, name, contract, added, removed)

    def close_stage(self) -> None:
        for chunk in self._staged:
            chunk.path.unlink(missing_ok=True)
        self._staged.clear()

    def discard(self) -> None:
        if self._events is not None:
            self._events.close()
            self._events, self._seq = None, 0
        for spool in (*self._added.values(), *self._removed.values()):
            spool.discard()
        self.close_stage()

    def _commit_one(
        self, advertiser_id: str, name: str, contract: str, added: list[Chunk], removed: list[Chunk]
    ) -> Routine:
        entry = self.new_entry(advertiser_id, name, [contract])
        with self.delivering(entry) as api:
            yield from self._deliver(api, advertiser_id, name, contract, added, removed, entry)
            self.read_back(api, advertiser_id, entry)

    def _deliver(
        self,
        api: AudienceAPI,
        advertiser_id: str,
        name: str,
        contract: str,
        added: list[Chunk],
        removed: list[Chunk],
        entry: AudienceReport,
    ) -> Generator[Ask, Grant, None]:
        runtime = self.runtime
        directory = runtime.directory
        audience_id = self.existing_audience(api, advertiser_id, name, contract)
        # One call per group of files: a new audience takes the first group in its create,
        # and has nobody to remove.
        appends = _groups(added) - (audience_id is None and bool(added))
        removes = _groups(removed) if audience_id is not None else 0
        grant = yield from self.ask(
            entry, [("APPEND", False)] * appends + [("REMOVE", True)] * removes
        )
        if grant.allowed("APPEND") < appends:
            added = []  # granted all or none (Budget.plan)
        if added:
            groups = self._upload(api, advertiser_id, contract, added, entry)
            entry.identifiers_uploaded = sum(c.lines for c in added)
            if audience_id is None:
                audience_id, entry.created = directory.find_or_create(
                    api,
                    advertiser_id,
                    name,
                    contract,
                    lambda: api.create_customer_audience(
                        NewAudience(
                            advertiser_id,
                            name,
                            contract,
                            groups[0],
                            runtime.settings.retention_in_days,
                        )
                    ),
                )
                entry.action = "CREATE"
            entry.audience_id = audience_id
            if not entry.created:
                self.update(api, grant, audience_id, groups[0], "APPEND")
                entry.action = "APPEND"
            for group in groups[1:]:
                self.update(api, grant, audience_id, group, "APPEND")
        entry.audience_id = audience_id
        if removed:
            if audience_id is None or entry.created:
                # Users removed before the audience existed were never in it: no operation.
                entry.note = "removals skipped: the audience did not exist before this run."
            elif grant.allowed("REMOVE") == removes:
                for group in self._upload(api, advertiser_id, contract, removed, entry):
                    self.update(api, grant, audience_id, group, "REMOVE")
                entry.identifiers_removed = sum(c.lines for c in removed)
                entry.action = f"{entry.action}+REMOVE" if entry.action else "REMOVE"
        if not grant.complete:  # STATE is withheld: the next run reads these rows again
            raise self.not_granted(grant, entry)
        entry.status = "delivered"

    def _upload(
        self,
        api: AudienceAPI,
        advertiser_id: str,
        contract: str,
        chunks: Sequence[Chunk],
        entry: AudienceReport,
    ) -> list[list[str]]:
        """Upload the chunks; their file paths grouped by what one call may carry."""
        paths = self.upload(api, advertiser_id, contract, chunks, entry)
        step = MAX_FILE_PATHS_PER_CALL
        return [paths[i : i + step] for i in range(0, len(paths), step)]


def _groups(chunks: Sequence[Chunk]) -> int:
    """Update calls for these files (one call takes up to MAX_FILE_PATHS_PER_CALL)."""
    return -(-len(chunks) // MAX_FILE_PATHS_PER_CALL)
