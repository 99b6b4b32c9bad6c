"""What the rest of the target sees of TikTok: its limits, the `AudienceAPI` seam and its types.

`AudienceAPI` is the seam every other module is typed with; `TikTokClient` (endpoints.py) talks
to TikTok, the dry runs' clients (dryrun.py) write down what would be sent, and tests use an
in-memory fake.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from target_tiktok_audiences.client.limits import PARTNER_NAME_MAX
from target_tiktok_audiences.report import CallStats

if TYPE_CHECKING:
    from target_tiktok_audiences.report import RunReport

T = TypeVar("T")

# TikTok does not document the audience_type strings of its list: only these spellings are
# recognised (as TikTok's UI and the sandbox write them); any other type is named in an error,
# never guessed from a word in it.
CUSTOMER_FILE_TYPES = frozenset({"customer file", "customer file audience"})
PARTNER_TYPES = frozenset({"partner", "partner audience"})


def _type_key(audience_type: str) -> str:
    return " ".join(audience_type.replace("_", " ").lower().split())


@dataclass(frozen=True)
class AudienceRow:
    """One row of the custom-audience list, in our own words."""

    audience_id: str
    name: str
    audience_type: str
    calculate_type: str | None
    size: int | None
    owned: bool = True  # False: shared in by another advertiser (is_creator false)
    expires: datetime | None = None  # expired_time; past: TikTok keeps it only to be deleted
    expiring: bool = False  # is_expiring: TikTok shows it as about to expire (within 60 days)

    def expired(self, now: datetime) -> bool:
        return self.expires is not None and self.expires <= now

    @property
    def is_partner(self) -> bool:
        return _type_key(self.audience_type) in PARTNER_TYPES

    @property
    def is_customer_file(self) -> bool:
        return _type_key(self.audience_type) in CUSTOMER_FILE_TYPES


@dataclass(frozen=True)
class Operation:
    """One entry of an audience's history, as TikTok wrote it (client/documented.py)."""

    word: str  # TikTok's action word, undocumented: `create` in a real answer
    kind: str | None  # CREATE, APPEND, REMOVE or REPLACE when the word names one, else None
    at: datetime | None
    editor: str | None = None  # "open_api" for calls through the API (TikTok's docs)
    msg: str | None = None  # TikTok's failure words on a partial success (a part not parsed)


REPLACE_SPACING = timedelta(hours=24)  # TikTok recommends one REPLACE a day


@dataclass(frozen=True)
class AudienceStatus:
    """What `dmp/custom_audience/get` says of one audience: only documented fields.

    TikTok exposes no processing state: whether an update is still being processed is never
    read here, only what was done and when (as far as its words are recognised).
    """

    is_valid: bool | None
    size: int | None
    history: tuple[Operation, ...] = ()  # oldest first
    expires: datetime | None = None  # expired_time, read defensively
    expiring: bool = False  # is_expiring: within TikTok's 60 days
    message: str | None = None  # audience_details.msg: TikTok's word on the audience's state
    error_message: str | None = None  # audience_details.error_msg: a failed create or update

    @property
    def last(self) -> Operation | None:
        return self.history[-1] if self.history else None

    def recent_full_upload(self, now: datetime) -> Operation | None:
        """A recognised CREATE or REPLACE under 24 h old: a REPLACE now would most likely be
        refused. Unrecognised words and no history give None (then the REPLACE is sent)."""
        for op in reversed(self.history):
            if op.kind in ("CREATE", "REPLACE") and op.at is not None:
                return op if now - op.at < REPLACE_SPACING else None
        return None

    @property
    def tiktok_error(self) -> str | None:
        """TikTok's words on a failure after it accepted a call: error_msg, or the last
        operation's msg (a part of the file that failed to parse)."""
        last = self.last
        return self.error_message or (last.msg if last is not None else None)


@dataclass(frozen=True)
class NewAudience:
    """A customer-file audience to create from uploaded files."""

    advertiser_id: str
    name: str
    calculate_type: str
    file_paths: Sequence[str]
    retention_in_days: int | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return self.advertiser_id, self.name, self.calculate_type


@dataclass(frozen=True)
class UserBatch:
    """Users for one all-or-nothing segment/mapping call: each {contract: digest}."""

    action: str  # add | delete
    contracts: Sequence[str]
    users: Sequence[Mapping[str, str]]


def partner_audience_name(name: str) -> str:
    """The name TikTok stores for a partner audience (it cuts long names)."""
    return name if len(name) <= PARTNER_NAME_MAX else name[: PARTNER_NAME_MAX - 3] + "..."


def file_md5(path: Path) -> str:
    """MD5 hex of a file, which TikTok wants as file_signature."""
    md5 = hashlib.md5()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            md5.update(chunk)
    return md5.hexdigest()


class AudienceAPI(Protocol):
    """Everything the deliveries ask of TikTok; TikTokClient, DryRunClient and test fakes."""

    @property
    def offline(self) -> bool:
        """True when nothing reaches TikTok (dry run): configured audience ids are trusted."""

    @property
    def sends(self) -> bool:
        """False in a dry run: write calls are written down, never sent (reads may be)."""

    @property
    def total(self) -> CallStats:
        """Every call of the run, whichever view made it."""

    def with_stats(self, stats: CallStats) -> AudienceAPI:
        """A view of this client that also counts its calls into `stats` (one audience)."""

    def preflight(self, advertiser_ids: Sequence[str]) -> None:
        """Check the token and every advertiser before any input is read."""

    def list_audiences(self, advertiser_id: str) -> Iterator[AudienceRow]:
        """Every custom audience the advertiser sees, page by page."""

    def get_audience(self, advertiser_id: str, audience_id: str) -> AudienceStatus:
        """Validity, size and the state of the last operation of one audience."""

    def upload_file(self, advertiser_id: str, calculate_type: str, path: Path) -> str:
        """Upload one file of digests; returns TikTok's opaque file_path."""

    def create_customer_audience(self, audience: NewAudience) -> str:
        """Create a customer-file audience; never retried blindly (it could duplicate)."""

    def update_customer_audience(
        self, advertiser_id: str, audience_id: str, file_paths: Sequence[str], action: str
    ) -> None:
        """APPEND, REMOVE or REPLACE the users of the files."""

    def create_partner_audience(self, advertiser_id: str, name: str) -> str:
        """Create a partner (Segment API) audience; never retried blindly."""

    def map_users(
        self, advertiser_id: str, audience_id: str, batch: UserBatch, *, ready: float | None = None
    ) -> None:
        """Add or delete users in one all-or-nothing call (retried through a warm-up)."""

    def retrying(self, func: Callable[[], T]) -> T:
        """Run func under the retry policy (create-or-find sequences)."""

    def count_retry(self) -> None:
        """A call is tried again outside the retry policy."""

    def finish(self, report: RunReport) -> None:
        """The run ended: anything the client still has to say (a dry run writes its plan)."""

    def now(self) -> datetime:
        """TikTok's time (UTC): what its 24 hours and the resync are measured on."""

    def operation_history(self, advertiser_id: str, since: datetime) -> dict[str, list[datetime]]:
        """Per audience of the ad account, when TikTok's history shows an update operation
        after `since` (what budget.py counts beside its ledger)."""


Self = TypeVar("Self", bound="CountedCalls")


class CountedCalls:
    """Per-audience views of one client: each view counts its calls into the run's total and
    into the stats it was made for, so deliveries never share a mutable tracker."""

    _stats: tuple[CallStats, ...]
    offline = False
    sends = True

    def __init__(self, total: CallStats) -> None:
        self._stats = (total,)

    def now(self) -> datetime:
        """Ours, where there is no TikTok to ask (a dry run, a test double)."""
        return datetime.now(timezone.utc)

    def operation_history(self, advertiser_id: str, since: datetime) -> dict[str, list[datetime]]:
        """Nothing shown where TikTok is not read (a dry run offline)."""
        return {}

    @property
    def total(self) -> CallStats:
        """Every call of the run, whichever view made it."""
        return self._stats[0]

    def with_stats(self: Self, stats: CallStats) -> Self:
        view = copy.copy(self)
        view._stats = (*self._stats, stats)
        return view

    def _count(self, field_name: str = "calls", amount: int = 1) -> None:
        for stats in self._stats:
            stats.add(field_name, amount)

    def count_retry(self) -> None:
        self._count("retries")
