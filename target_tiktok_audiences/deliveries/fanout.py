"""audience_name_column: one stream, one audience per value of a column.

A wrapper around the mapping's own delivery: each value gets an inner delivery of the
registry's class, built with a copy of the mapping whose audience_name is the resolved name, so
every mode and audience type (and mirror's snapshot per audience) works unchanged.

Names are checked when a value first appears, before anything is uploaded. Deliveries that
send only at the end (mirror, append with files) do not hold one inner delivery per value while
reading: records are kept as events sorted on disk by value, and at the end each value's events
are replayed into its inner delivery, one audience at a time, so memory does not grow with the
number of audiences. Deliveries that send as they read (Segment API batches) stay live.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from itertools import groupby
from pathlib import Path

from target_tiktok_audiences.audiences import PARTNER
from target_tiktok_audiences.client import (
    AUDIENCE_NAME_MAX,
    PARTNER_NAME_MAX,
    AudienceRow,
    PermanentError,
    partner_audience_name,
)
from target_tiktok_audiences.deliveries.base import Delivery
from target_tiktok_audiences.deliveries.staging import Routine
from target_tiktok_audiences.extsort import ExternalSorter
from target_tiktok_audiences.identifiers import CONTRACTS
from target_tiktok_audiences.modes import AudienceType, SyncMode
from target_tiktok_audiences.settings import NAME_VALUE, AudienceMapping
from target_tiktok_audiences.snapshot import SnapshotStore

_SEP = "\t"
REASON_NO_AUDIENCE_NAME = "no_audience_name"  # audience_name_column is null or empty


def audience_value(raw: object) -> str | None:
    """The value that names a record's audience; None when there is none (null, empty, nested)."""
    if raw is None or isinstance(raw, dict | list):
        return None
    value = str(raw).strip()
    return value or None


def name_pattern(mapping: AudienceMapping) -> re.Pattern[str]:
    """Names the mapping's template can produce (with the per-contract suffix, if any)."""
    before, _, after = mapping.audience_name.partition(NAME_VALUE)
    return re.compile(f"{re.escape(before)}.+{re.escape(after)}( \\([A-Z0-9_]+\\))?")


def matches(mapping: AudienceMapping, name: str) -> bool:
    """Whether TikTok's name of an audience can be one of this mapping's."""
    if name_pattern(mapping).fullmatch(name):
        return True
    # A partner name over PARTNER_NAME_MAX is cut by TikTok: the start is all that is left.
    before = mapping.audience_name.partition(NAME_VALUE)[0]
    return (
        mapping.audience_type is AudienceType.PARTNER
        and len(name) == PARTNER_NAME_MAX
        and name.endswith("...")
        and name.startswith(before[: PARTNER_NAME_MAX - 3])
    )


def _hex(text: str) -> str:
    return text.encode("utf-8").hex()


@dataclass(eq=False)
class FanOutDelivery(Delivery):
    """One inner delivery per audience name; see the module docstring."""

    inner: type[Delivery]  # the registry's class for the mapping's mode and type
    _names: dict[str, str] = field(default_factory=dict, init=False)  # value -> audience name
    _cut: dict[str, str] = field(default_factory=dict, init=False)  # partner name -> value
    _live: dict[str, Delivery] = field(default_factory=dict, init=False)
    _events: ExternalSorter | None = field(default=None, init=False)
    _seq: int = field(default=0, init=False)
    _staged: list[Delivery] = field(default_factory=list, init=False)

    @property
    def column(self) -> str:
        return self.mapping.audience_name_column or ""

    def add(self, ids: dict[str, str], removed: bool, user: str | None = None) -> None:
        raise TypeError("a fan-out delivery needs the record's audience: use add_to")

    def add_to(
        self, value: str, ids: dict[str, str], removed: bool, user: str | None = None
    ) -> None:
        """One user of the audience that `value` names."""
        if value not in self._names:
            self._names[value] = self._check_name(value)
        if self.inner.sends_as_it_reads:
            delivery = self._live.get(value) or self._open(value)
            delivery.add(ids, removed, user)
            return
        if self._events is None:
            self._events = ExternalSorter(self._workdir())
        self._seq += 1
        digests = ",".join(f"{c}={d}" for c, d in ids.items())
        who = "" if user is None else _hex(user)
        self._events.add(
            _SEP.join((_hex(value), f"{self._seq:012d}", "r" if removed else "a", who, digests))
        )

    def _workdir(self) -> Path:
        return Path(tempfile.mkdtemp(prefix="fanout-", dir=self.runtime.workdir))

    def _open(self, value: str) -> Delivery:
        mapping = replace(self.mapping, audience_name=self._names[value], audience_name_column=None)
        delivery = self.inner(self.runtime, mapping, self.report, list(self.contracts))
        delivery.partial_stream = self.partial_stream  # each audience of the stream is guarded
        if self.inner.sends_as_it_reads:
            self._live[value] = delivery
        return delivery

    def extend(self, contracts: Sequence[str]) -> None:
        super().extend(contracts)
        for delivery in self._live.values():
            delivery.extend(contracts)

    # -- names, checked as they appear -----------------------------------------------------

    def _check_name(self, value: str) -> str:
        mapping = self.mapping
        name = mapping.audience_name_of(value)
        where = f"audiences[stream={mapping.stream}].audience_name_column"
        shown = f"'{name[:60]}…'" if len(name) > 60 else f"'{name}'"
        partner = mapping.audience_type is AudienceType.PARTNER
        resolved = replace(mapping, audience_name=name)
        longest = (
            name
            if partner
            else resolved.audience_name_for(max(self.contracts, key=len), self.contracts)
        )
        if len(longest) > AUDIENCE_NAME_MAX:
            raise PermanentError(
                f"Naming an audience from column '{mapping.audience_name_column}'",
                message=f"{where}: the audience name {shown} would be {len(longest)} "
                f"characters; TikTok allows {AUDIENCE_NAME_MAX}",
                hint="Shorten audience_name or the column's values; nothing was uploaded.",
                said=False,
            )
        if partner:
            cut = partner_audience_name(name)
            other = self._cut.setdefault(cut, value)
            if other != value:
                raise PermanentError(
                    f"Naming an audience from column '{mapping.audience_name_column}'",
                    message=f"{where}: the values {_distinct(other, value)} both give "
                    f"the partner audience '{cut}' once TikTok cuts names to 67 characters "
                    "and '...'",
                    hint="Shorten audience_name so that the values differ in the first 67 "
                    "characters; nothing was uploaded.",
                    said=False,
                )
        self._claim(value, self._synced(name))
        self._count_new(name)
        return name

    def _synced(self, name: str) -> list[str]:
        """The audience names (as TikTok stores them) that the resolved `name` syncs."""
        if self.mapping.audience_type is AudienceType.PARTNER:
            return [partner_audience_name(name)]
        mapping = replace(self.mapping, audience_name=name, audience_name_column=None)
        return [mapping.audience_name_for(c, self.contracts) for c in self.contracts]

    def _claim(self, value: str, names: list[str]) -> None:
        """One audience, one mapping: a value whose audience another mapping (or another
        value) syncs stops the run before anything of it is sent."""
        claims = self.runtime.claims
        me = f"stream '{self.mapping.stream}' (value '{value}' of column '{self.column}')"
        for audience in names:
            other = claims.setdefault(audience, me)
            if other != me:
                raise PermanentError(
                    f"Naming an audience from column '{self.column}'",
                    message=f"audiences[stream={self.mapping.stream}].audience_name_column: "
                    f"{me} and {other} would both sync audience '{audience}'; two mappings "
                    "must never sync one audience",
                    hint="Give one of them another audience_name (or leave the value out of "
                    "the stream); nothing of it was sent.",
                    said=False,
                )

    def _count_new(self, name: str) -> None:
        """max_new_audiences counts audiences of new values before anything is uploaded."""
        runtime = self.runtime
        api = runtime.client
        partner = self.mapping.audience_type is AudienceType.PARTNER
        mapping = replace(self.mapping, audience_name=name, audience_name_column=None)
        names = (
            [(partner_audience_name(name), PARTNER)]
            if partner
            else [(mapping.audience_name_for(c, self.contracts), c) for c in self.contracts]
        )
        for advertiser_id in runtime.settings.advertiser_ids:
            for audience, kind in names:
                if not runtime.directory.by_name(api, advertiser_id, audience, kind):
                    runtime.new_audiences.add((advertiser_id, audience, kind))
        planned = len(runtime.new_audiences)
        if planned > runtime.settings.max_new_audiences:
            raise PermanentError(
                f"Naming audiences from column '{self.mapping.audience_name_column}' of "
                f"stream '{self.mapping.stream}'",
                message=f"this run would create {planned} audiences (max_new_audiences is "
                f"{runtime.settings.max_new_audiences}); TikTok allows 400 per advertiser",
                hint="Check the column's values, or raise max_new_audiences; nothing was uploaded.",
                said=False,
            )

    # -- delivery ------------------------------------------------------------------------------

    def flush(self) -> None:
        for delivery in self._live.values():
            delivery.flush()

    def send_held(self) -> None:
        for delivery in self._live.values():
            delivery.send_held()

    @property
    def pending(self) -> bool:
        return self._seq > 0 or any(d.pending for d in self._live.values())

    def discard(self) -> None:
        for delivery in self._live.values():
            delivery.discard()
        if self._events is not None:
            self._events.close()
            self._events, self._seq = None, 0
        self.close_stage()

    def stage(self) -> Iterator[Routine]:
        for delivery in self._live.values():
            yield from delivery.stage()
        events, self._events, self._seq = self._events, None, 0
        if events is not None:
            try:
                for value, rows in self._by_value(events):
                    delivery = self._open(value)
                    self._staged.append(delivery)  # its sets are read until close_stage
                    for ids, removed, user in rows:
                        delivery.add(ids, removed, user)
                    yield from delivery.stage()
            finally:
                events.close()
        self._note_missing()

    def close_stage(self) -> None:
        for delivery in self._live.values():
            delivery.close_stage()
        staged, self._staged = self._staged, []
        for delivery in staged:
            delivery.discard()

    @staticmethod
    def _by_value(
        events: ExternalSorter,
    ) -> Iterator[tuple[str, Iterator[tuple[dict[str, str], bool, str | None]]]]:
        """Each value with its events in the order they were read (sorted by value, then seq)."""
        for key, lines in groupby(events.sorted_unique(), key=lambda line: line.split(_SEP, 1)[0]):
            yield bytes.fromhex(key).decode("utf-8"), (_event(line) for line in lines)

    # -- audiences whose value stopped appearing -----------------------------------------------

    def _note_missing(self) -> None:
        """Mirror: an audience its snapshots know that got no record this run is left as is."""
        if self.mapping.sync_mode is not SyncMode.MIRROR:
            return
        runtime = self.runtime
        if runtime.client.offline:
            return
        # Names this run delivered, and the fixed names of other mappings, are not this one's.
        others = {a.audience_name for s in runtime.report.streams.values() for a in s.audiences}
        others.update(
            name
            for m in (runtime.settings.mappings or {}).values()
            if not m.audience_name_column
            for name in fixed_names(m)
        )
        for advertiser_id in runtime.settings.advertiser_ids:
            rows = runtime.directory.rows(runtime.client, advertiser_id)
            for row in known_audiences(
                runtime.snapshots, rows, self.mapping, advertiser_id, others
            ):
                self.report.unchanged_audiences.append(
                    f"'{row.name}' (id {row.audience_id}) in advertiser {advertiser_id}"
                )


def _distinct(a: str, b: str) -> str:
    """Two values that share a long start, shown so that they do not look the same: the
    shared start cut short, what follows it in full."""
    shared = next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )
    if shared <= 40:
        return f"'{a}' and '{b}'"
    start = a[:20]
    return (
        f"'{start}…{a[shared:]}' and '{start}…{b[shared:]}' (alike in their first {shared} "
        "characters)"
    )


def fixed_claims(mappings: Iterable[AudienceMapping]) -> dict[str, str]:
    """Audience name -> the mapping without audience_name_column that syncs it."""
    return {
        name: f"stream '{m.stream}' (audience_name '{m.audience_name}')"
        for m in mappings
        if not m.audience_name_column
        for name in fixed_names(m)
    }


def _event(line: str) -> tuple[dict[str, str], bool, str | None]:
    _, _, action, who, digests = line.split(_SEP, 4)
    ids = dict(pair.split("=", 1) for pair in digests.split(","))
    return ids, action == "r", bytes.fromhex(who).decode("utf-8") if who else None


def fixed_names(mapping: AudienceMapping) -> list[str]:
    """The names a mapping without audience_name_column gives its audiences."""
    if mapping.audience_type is AudienceType.PARTNER:
        return [partner_audience_name(mapping.audience_name)]
    if mapping.identifiers is not None:
        contracts = list(mapping.identifiers)
        return [mapping.audience_name_for(c, contracts) for c in contracts]
    return [mapping.audience_name, *(f"{mapping.audience_name} ({c})" for c in CONTRACTS)]


def known_audiences(
    snapshots: SnapshotStore,
    rows: Iterable[AudienceRow],
    mapping: AudienceMapping,
    advertiser_id: str,
    others: Collection[str] = (),
) -> list[AudienceRow]:
    """The audiences of a fan-out mapping that its snapshots know (not named in `others`)."""
    with_snapshots = snapshots.snapshot_contracts(advertiser_id)
    return [
        r
        for r in rows
        if r.audience_id in with_snapshots and r.name not in others and matches(mapping, r.name)
    ]
