"""Customer-file audiences fed by uploaded files of digests (mirror by REPLACE, and append)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from target_tiktok_audiences.client import (
    MAX_FILE_PATHS_PER_CALL,
    MIN_AUDIENCE_SIZE,
    AudienceAPI,
)
from target_tiktok_audiences.deliveries.base import Delivery
from target_tiktok_audiences.report import AudienceReport
from target_tiktok_audiences.spool import Chunk, Spool


@dataclass(eq=False)
class FileDelivery(Delivery):
    """Spools digests per contract; at commit uploads them and creates or updates audiences.

    The mode says what the first update is (mirror: REPLACE, append: APPEND), whether a
    removed row is sent (append: REMOVE, after the adds) or just left out (mirror), and
    whether an empty set is skipped (mirror).
    """

    _added: dict[str, Spool] = field(default_factory=dict, init=False)
    _removed: dict[str, Spool] = field(default_factory=dict, init=False)

    def _spool(self, spools: dict[str, Spool], contract: str, kind: str) -> Spool:
        spool = spools.get(contract)
        if spool is None:
            stem = f"{id(self):x}-{kind}-{contract.lower()}"
            spool = spools[contract] = Spool(
                self.runtime.workdir, stem, self.runtime.settings.file_max_ids
            )
        return spool

    def add(self, ids: dict[str, str], removed: bool, user: str | None = None) -> None:
        if removed:
            if self.mapping.sync_mode.is_whole_set:
                return  # a mirror set simply leaves removed rows out
            spools, kind = self._removed, "remove"
        else:
            spools, kind = self._added, "add"
        for contract, digest in ids.items():
            spool = spools.get(contract) or self._spool(spools, contract, kind)
            spool.write(digest)

    def flush(self) -> None:
        for spool in (*self._added.values(), *self._removed.values()):
            spool.flush()

    @property
    def pending(self) -> bool:
        return any(s.pending for s in (*self._added.values(), *self._removed.values()))

    def commit(self) -> None:
        for contract in self.contracts:
            added = self._added[contract].take() if contract in self._added else []
            removed = self._removed[contract].take() if contract in self._removed else []
            try:
                self._commit_contract(contract, added, removed)
            finally:
                for chunk in (*added, *removed):
                    chunk.path.unlink(missing_ok=True)

    def discard(self) -> None:
        for spool in (*self._added.values(), *self._removed.values()):
            spool.discard()

    def _commit_contract(self, contract: str, added: list[Chunk], removed: list[Chunk]) -> None:
        mode = self.mapping.sync_mode
        name = self.mapping.audience_name_for(contract, self.contracts)
        size = sum(c.lines for c in added)
        if not added and not removed and not mode.skips_empty:
            return
        for advertiser_id in self.runtime.settings.advertiser_ids:
            entry = self.new_entry(advertiser_id, name, [contract])
            if mode.skips_empty and not added:
                entry.status = "skipped"
                entry.note = (
                    "no identifiers for this audience in this run; it was left unchanged "
                    "(TikTok cannot replace an audience with an empty set)."
                )
                continue
            if mode.is_whole_set and size < MIN_AUDIENCE_SIZE:
                entry.note = (
                    f"only {size:,} identifier{'s' if size != 1 else ''}; TikTok needs "
                    f"{MIN_AUDIENCE_SIZE:,} matched users before an audience can be used, and "
                    f"refuses updates that leave fewer than {MIN_AUDIENCE_SIZE:,}."
                )
            with self.delivering(entry) as api:
                self._deliver(api, advertiser_id, name, contract, added, removed, entry)

    def _deliver(
        self,
        api: AudienceAPI,
        advertiser_id: str,
        name: str,
        contract: str,
        added: list[Chunk],
        removed: list[Chunk],
        entry: AudienceReport,
    ) -> None:
        runtime = self.runtime
        directory = runtime.directory
        explicit = self.mapping.audience_ids.get(advertiser_id)
        audience_id = (
            directory.by_id(advertiser_id, explicit, contract, name)
            if explicit
            else directory.by_name(advertiser_id, name, contract)
        )
        if added:
            groups = self._upload(api, advertiser_id, contract, name, added, entry)
            entry.identifiers_uploaded = sum(c.lines for c in added)
            first = self.mapping.sync_mode.first_action
            if audience_id is None:
                audience_id, entry.created = directory.find_or_create(
                    api,
                    advertiser_id,
                    name,
                    contract,
                    lambda: api.create_customer_audience(
                        advertiser_id,
                        name,
                        contract,
                        groups[0],
                        runtime.settings.retention_in_days,
                    ),
                )
                entry.action = "CREATE"
            entry.audience_id = audience_id
            if not entry.created:
                api.update_customer_audience(advertiser_id, audience_id, groups[0], first)
                entry.action = first
            for group in groups[1:]:
                api.update_customer_audience(advertiser_id, audience_id, group, "APPEND")
        entry.audience_id = audience_id
        if removed:
            if audience_id is None:
                entry.note = "removals skipped: the audience does not exist yet."
            else:
                for group in self._upload(api, advertiser_id, contract, name, removed, entry):
                    api.update_customer_audience(advertiser_id, audience_id, group, "REMOVE")
                entry.identifiers_removed = sum(c.lines for c in removed)
                entry.action = f"{entry.action}+REMOVE" if entry.action else "REMOVE"
        entry.status = "delivered"

    def _upload(
        self,
        api: AudienceAPI,
        advertiser_id: str,
        contract: str,
        name: str,
        chunks: Sequence[Chunk],
        entry: AudienceReport,
    ) -> list[list[str]]:
        """Upload the chunks; their file paths grouped by what one call may carry."""
        paths: list[str] = []
        for i, chunk in enumerate(chunks, 1):
            if len(chunks) > 1:
                self.runtime.logger.info(
                    "Audience '%s' in advertiser %s: uploading file %d of %d (%s identifiers).",
                    name,
                    advertiser_id,
                    i,
                    len(chunks),
                    f"{chunk.lines:,}",
                )
            paths.append(api.upload_file(advertiser_id, contract, chunk.path))
            entry.files += 1
        step = MAX_FILE_PATHS_PER_CALL
        return [paths[i : i + step] for i in range(0, len(paths), step)]
