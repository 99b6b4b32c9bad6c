"""mirror: keep an audience equal to the stream.

By difference (mirror_strategy diff, the default): the stream's digests are sorted on disk,
compared in one pass with the snapshot of what TikTok last accepted, and only the change is
sent (APPEND/REMOVE for a customer-file audience, add/delete for a partner audience). With no
usable snapshot (first run, other rules, lost snapshot) a customer-file audience is created or
REPLACEd in full. The new snapshot is written only after TikTok accepted every change.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from target_tiktok_audiences.client import (
    MIN_AUDIENCE_SIZE,
    REFUSED_REPLACE_PROCESSING,
    AudienceAPI,
    NewAudience,
    RefusedError,
    UserBatch,
    partner_audience_name,
)
from target_tiktok_audiences.deliveries.base import Delivery, small_set_note
from target_tiktok_audiences.extsort import (
    ExternalSorter,
    diff,
    read_blocks,
    union_blocks,
    write_sorted,
)
from target_tiktok_audiences.modes import MirrorStrategy
from target_tiktok_audiences.report import AudienceReport
from target_tiktok_audiences.snapshot import (
    Reason,
    Snapshot,
    SnapshotKey,
    SnapshotWriter,
    Unusable,
)
from target_tiktok_audiences.spool import Chunk, Spool

_REPLACE_STRATEGY = Unusable(Reason.MISSING, "mirror_strategy is replace")


@dataclass(eq=False)
class _SortedSets(Delivery):
    """The stream's unique digests per contract, sorted on disk: memory stays flat."""

    _sorters: dict[str, ExternalSorter] = field(default_factory=dict, init=False)
    _seen: int = field(default=0, init=False)

    def _sorter(self, contract: str) -> ExternalSorter:
        sorter = self._sorters.get(contract)
        if sorter is None:
            workdir = Path(
                tempfile.mkdtemp(prefix=f"sort-{contract.lower()}-", dir=self.runtime.workdir)
            )
            sorter = self._sorters[contract] = ExternalSorter(workdir)
        return sorter

    def _add_digests(self, ids: dict[str, str]) -> None:
        self._seen += 1
        for contract, digest in ids.items():
            (self._sorters.get(contract) or self._sorter(contract)).add(digest)

    def flush(self) -> None:
        """Sorted runs spill by themselves; nothing is sent before the end of the set."""

    @property
    def pending(self) -> bool:
        return self._seen > 0

    def _take_sorted(self, contract: str) -> tuple[Path, int]:
        """The unique sorted digests of a contract in a private file, and their count."""
        fd, name = tempfile.mkstemp(prefix=f"sorted-{contract.lower()}-", dir=self.runtime.workdir)
        os.close(fd)
        path = Path(name)
        sorter = self._sorters.pop(contract, None)
        if sorter is None:
            return path, 0
        try:
            return path, write_sorted(sorter.sorted_blocks(), path)
        finally:
            sorter.close()

    def discard(self) -> None:
        for sorter in self._sorters.values():
            sorter.close()
        self._sorters.clear()
        self._seen = 0

    def _fingerprint(self) -> str:
        return self.runtime.fingerprint

    def _snapshot(self, key: SnapshotKey) -> Snapshot | Unusable:
        if self.runtime.settings.mirror_strategy is MirrorStrategy.REPLACE:
            return _REPLACE_STRATEGY
        return self.runtime.snapshots.read(key, self._fingerprint())

    def _write_snapshot(self, key: SnapshotKey, blocks: Iterable[list[str]]) -> None:
        """What TikTok now holds becomes the next snapshot (not in a dry run or for replace)."""
        with self._new_snapshot(key) as writer:
            if writer is not None:
                for block in blocks:
                    writer.write_block(block)

    @contextlib.contextmanager
    def _new_snapshot(self, key: SnapshotKey) -> Iterator[SnapshotWriter | None]:
        """A writer for the next snapshot (committed on a clean exit); None in a dry run."""
        store = self.runtime.snapshots
        if store.read_only or self.runtime.settings.mirror_strategy is MirrorStrategy.REPLACE:
            yield None
            return
        with store.writer(key, self._fingerprint()) as writer:
            yield writer


@dataclass(eq=False)
class MirrorDelivery(_SortedSets):
    """mirror into customer-file audiences: one audience per contract."""

    def add(self, ids: dict[str, str], removed: bool, user: str | None = None) -> None:
        if not removed:  # a mirror set simply leaves removed rows out
            self._add_digests(ids)

    def commit(self) -> None:
        contracts = list(self.contracts)
        for contract in contracts:
            path, count = self._take_sorted(contract)
            try:
                for advertiser_id in self.runtime.settings.advertiser_ids:
                    self._commit_one(advertiser_id, contract, path, count, contracts)
            finally:
                path.unlink(missing_ok=True)
        self._seen = 0

    def _commit_one(
        self, advertiser_id: str, contract: str, path: Path, count: int, contracts: list[str]
    ) -> None:
        name = self.mapping.audience_name_for(contract, contracts)
        entry = self.new_entry(advertiser_id, name, [contract])
        entry.identifiers_unique = count
        if count == 0:
            entry.status = "skipped"
            entry.note = (
                "no identifiers for this audience in this run; it was left unchanged "
                "(TikTok cannot replace an audience with an empty set)."
            )
            return
        if count < MIN_AUDIENCE_SIZE:
            entry.note = small_set_note(count, "unique ")
        with self.delivering(entry) as api:
            self._deliver(api, advertiser_id, name, contract, path, count, entry)
            if entry.status == "delivered" and entry.audience_id:
                self.read_back(api, advertiser_id, entry)

    def _deliver(
        self,
        api: AudienceAPI,
        advertiser_id: str,
        name: str,
        contract: str,
        path: Path,
        count: int,
        entry: AudienceReport,
    ) -> None:
        audience_id = self.existing_audience(api, advertiser_id, name, contract)
        if audience_id is None:
            self._create(api, advertiser_id, name, contract, path, entry)
            return
        entry.audience_id = audience_id
        key = SnapshotKey(advertiser_id, audience_id, contract)
        with self.runtime.snapshots.lock(key):
            snapshot = self._snapshot(key)
            if isinstance(snapshot, Snapshot):
                self._by_difference(api, key, path, snapshot, entry)
            else:
                self._replace(api, advertiser_id, contract, path, snapshot, entry)
                self._write_snapshot(key, read_blocks(path))
        entry.status = "delivered"

    def _create(
        self,
        api: AudienceAPI,
        advertiser_id: str,
        name: str,
        contract: str,
        path: Path,
        entry: AudienceReport,
    ) -> None:
        runtime = self.runtime
        paths = self._upload_all(api, advertiser_id, contract, path, entry)
        entry.identifiers_uploaded = entry.identifiers_unique
        audience_id, entry.created = runtime.directory.find_or_create(
            api,
            advertiser_id,
            name,
            contract,
            lambda: api.create_customer_audience(
                NewAudience(
                    advertiser_id, name, contract, paths, runtime.settings.retention_in_days
                )
            ),
        )
        entry.audience_id = audience_id
        entry.mirror = "full"
        entry.mirror_reason = "new audience"
        if entry.created:
            entry.action = "CREATE"
        else:  # another run created it meanwhile: the set still has to become the audience
            api.update_customer_audience(advertiser_id, audience_id, paths, "REPLACE")
            entry.action = "REPLACE"
        key = SnapshotKey(advertiser_id, audience_id, contract)
        with self.runtime.snapshots.lock(key):
            self._write_snapshot(key, read_blocks(path))
        entry.status = "delivered"

    def _replace(
        self,
        api: AudienceAPI,
        advertiser_id: str,
        contract: str,
        path: Path,
        why: Unusable,
        entry: AudienceReport,
    ) -> None:
        audience_id = entry.audience_id or ""
        entry.mirror, entry.mirror_reason = "full", why.detail
        status = api.get_audience(advertiser_id, audience_id)
        if status.last_action in ("REPLACE", "CREATE") and status.last_action_processing:
            when = (
                f" of {status.last_action_time:%Y-%m-%d %H:%M} UTC"
                if status.last_action_time
                else ""
            )
            raise RefusedError(
                f"REPLACE on audience {audience_id}",
                reason=REFUSED_REPLACE_PROCESSING,
                advertiser_id=advertiser_id,
                message=f"the {status.last_action}{when} is still processing; nothing was sent",
                said=False,
            )
        paths = self._upload_all(api, advertiser_id, contract, path, entry)
        api.update_customer_audience(advertiser_id, audience_id, paths, "REPLACE")
        entry.action = "REPLACE"
        entry.identifiers_uploaded = entry.identifiers_unique

    def _by_difference(
        self,
        api: AudienceAPI,
        key: SnapshotKey,
        path: Path,
        snapshot: Snapshot,
        entry: AudienceReport,
    ) -> None:
        advertiser_id, contract = key.advertiser_id, key.contract
        added, removed = self._spool("add", contract), self._spool("remove", contract)
        try:
            counts = diff(read_blocks(path), snapshot.blocks(), added.write, removed.write)
            entry.mirror, entry.mirror_reason = "diff", "snapshot of the last accepted set"
            entry.identifiers_unchanged = counts.unchanged
            actions: list[str] = []
            # APPEND first: the audience never dips below what it will hold.
            for spool, action in ((added, "APPEND"), (removed, "REMOVE")):
                chunks = spool.take()
                if not chunks:
                    continue
                paths = self._upload_once(api, advertiser_id, contract, chunks, entry)
                try:
                    api.update_customer_audience(advertiser_id, key.audience_id, paths, action)
                except Exception:
                    if actions:  # TikTok accepted the APPEND: it holds the old set and the new
                        self._write_snapshot(
                            key, union_blocks(snapshot.blocks(), read_blocks(path))
                        )
                    raise
                actions.append(action)
            entry.identifiers_uploaded = counts.added
            entry.identifiers_removed = counts.removed
            entry.action = "+".join(actions) or "NONE"
        finally:
            added.discard()
            removed.discard()
        if actions:
            self._write_snapshot(key, read_blocks(path))

    def _spool(self, kind: str, contract: str) -> Spool:
        stem = f"{id(self):x}-{kind}-{contract.lower()}"
        return Spool(self.runtime.workdir, stem, self.runtime.settings.file_max_ids)

    def _upload_once(
        self,
        api: AudienceAPI,
        advertiser_id: str,
        contract: str,
        chunks: list[Chunk],
        entry: AudienceReport,
    ) -> list[str]:
        """Upload files made for this advertiser alone, then delete them."""
        try:
            return self.upload(api, advertiser_id, contract, chunks, entry)
        finally:
            for chunk in chunks:
                chunk.path.unlink(missing_ok=True)

    def _upload_all(
        self,
        api: AudienceAPI,
        advertiser_id: str,
        contract: str,
        path: Path,
        entry: AudienceReport,
    ) -> list[str]:
        """Every digest of the set, in files of file_max_ids; their paths (one call's worth)."""
        spool = self._spool("full", contract)
        try:
            for block in read_blocks(path):
                spool.write_block(block)
        except BaseException:
            spool.discard()
            raise
        return self._upload_once(api, advertiser_id, contract, spool.take(), entry)


@dataclass(eq=False)
class PartnerMirrorDelivery(_SortedSets):
    """mirror into a partner audience: users added and deleted by difference (Segment API).

    Each user's digests are spooled as one line; the per-contract snapshots say which digests
    left (deleted one identifier at a time) and which are new (their users are added with all
    of their identifiers). Memory holds only the new digests of the run, not the audience.
    """

    _users: Path | None = field(default=None, init=False)
    _fh: TextIO | None = field(default=None, init=False)

    def add(self, ids: dict[str, str], removed: bool, user: str | None = None) -> None:
        if removed:
            return
        self._add_digests(ids)
        if self._users is None:
            fd, name = tempfile.mkstemp(prefix="users-", dir=self.runtime.workdir)
            os.close(fd)
            self._users = Path(name)
            self._fh = self._users.open("a", encoding="ascii", buffering=1 << 20)
        assert self._fh is not None
        self._fh.write("\t".join(f"{c}={d}" for c, d in ids.items()) + "\n")

    def discard(self) -> None:
        super().discard()
        if self._fh is not None:
            self._fh.close()
        if self._users is not None:
            self._users.unlink(missing_ok=True)
            self._users = None

    def commit(self) -> None:
        if self._users is None or self._fh is None:
            return
        self._fh.close()
        contracts = list(self.contracts)
        sorted_sets = {c: self._take_sorted(c) for c in contracts}
        try:
            for advertiser_id in self.runtime.settings.advertiser_ids:
                self._commit_one(advertiser_id, contracts, sorted_sets)
        finally:
            for path, _ in sorted_sets.values():
                path.unlink(missing_ok=True)
            self._users.unlink(missing_ok=True)
            self._users = None
            self._seen = 0

    def _commit_one(
        self,
        advertiser_id: str,
        contracts: list[str],
        sorted_sets: dict[str, tuple[Path, int]],
    ) -> None:
        name = partner_audience_name(self.mapping.audience_name)
        entry = self.new_entry(advertiser_id, name, contracts)
        entry.identifiers_unique = sum(n for _, n in sorted_sets.values())
        with self.delivering(entry) as api:
            audience_id, entry.created = self.partner_audience(api, advertiser_id, name)
            entry.audience_id = audience_id
            with contextlib.ExitStack() as stack:
                keys = {c: SnapshotKey(advertiser_id, audience_id, c) for c in contracts}
                for key in keys.values():
                    stack.enter_context(self.runtime.snapshots.lock(key))
                snapshots = {c: self._snapshot(k) for c, k in keys.items()}
                writers = {c: stack.enter_context(self._new_snapshot(k)) for c, k in keys.items()}
                usable = all(isinstance(s, Snapshot) for s in snapshots.values())
                new: dict[str, set[str]] | None = {} if usable else None
                removed: list[tuple[str, str]] = []
                for c, (path, _) in sorted_sets.items():
                    snap, writer = snapshots[c], writers[c]
                    if isinstance(snap, Snapshot) and new is not None:
                        got: set[str] = set()
                        gone: list[str] = []
                        counts = diff(
                            read_blocks(path),
                            snap.blocks(),
                            got.add,
                            gone.append,
                            writer.write_block if writer is not None else None,
                        )
                        new[c] = got
                        removed.extend((c, d) for d in gone)
                        entry.identifiers_unchanged += counts.unchanged
                    elif writer is not None:
                        for block in read_blocks(path):
                            writer.write_block(block)
                if usable:
                    entry.mirror, entry.mirror_reason = "diff", "snapshot of the last accepted set"
                else:
                    entry.mirror = "full"
                    entry.mirror_reason = next(
                        s.detail for s in snapshots.values() if isinstance(s, Unusable)
                    )
                    if not entry.created:
                        entry.note = (
                            "no snapshot for this partner audience: every user was added, but "
                            "users that left the stream before this run cannot be found to "
                            "delete (partner audiences have no REPLACE); from now on the "
                            "snapshot keeps it exact."
                        )
                self._send_deletes(api, advertiser_id, audience_id, contracts, removed, entry)
                self._send_adds(api, advertiser_id, audience_id, contracts, new, entry)
        if entry.status == "pending":
            entry.status = "delivered"
            self.read_back(api, advertiser_id, entry)

    def ready_by(self, entry: AudienceReport) -> float | None:
        if not entry.created:
            return None
        return time.monotonic() + self.runtime.settings.partner_warmup_seconds

    def _batches(self, users: Iterator[dict[str, str]]) -> Iterator[list[dict[str, str]]]:
        size = self.runtime.settings.segment_batch_size
        batch: list[dict[str, str]] = []
        for user in users:
            batch.append(user)
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch

    def _send_deletes(
        self,
        api: AudienceAPI,
        advertiser_id: str,
        audience_id: str,
        contracts: list[str],
        removed: list[tuple[str, str]],
        entry: AudienceReport,
    ) -> None:
        for batch in self._batches({c: d} for c, d in removed):
            api.map_users(advertiser_id, audience_id, UserBatch("delete", contracts, batch))
            entry.batches += 1
            entry.users_removed += len(batch)
        entry.identifiers_removed = len(removed)

    def _send_adds(
        self,
        api: AudienceAPI,
        advertiser_id: str,
        audience_id: str,
        contracts: list[str],
        new: dict[str, set[str]] | None,
        entry: AudienceReport,
    ) -> None:
        ready_by = self.ready_by(entry)

        def users() -> Iterator[dict[str, str]]:
            assert self._users is not None
            seen: set[str] = set()
            with self._users.open(encoding="ascii") as fh:
                for line in fh:
                    ids = dict(part.split("=", 1) for part in line.rstrip("\n").split("\t"))
                    if new is not None and not any(d in new.get(c, ()) for c, d in ids.items()):
                        continue
                    if new is not None:  # each new user once, even if it came twice
                        marker = line
                        if marker in seen:
                            continue
                        seen.add(marker)
                    yield ids

        for batch in self._batches(users()):
            api.map_users(
                advertiser_id, audience_id, UserBatch("add", contracts, batch), ready=ready_by
            )
            entry.batches += 1
            entry.users_added += len(batch)
            entry.identifiers_uploaded += sum(len(u) for u in batch)
