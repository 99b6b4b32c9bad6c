"""Find an audience by id or exact name, or create it: never twice.

A re-run finds what the last run created by name. A create whose answer was lost (timeout,
dropped connection) is followed by lookups for `create_confirm_seconds` before it is sent
again. Audiences shared in by another advertiser are listed by TikTok but cannot be updated:
a name never resolves to one of them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Protocol

from target_tiktok_audiences import timescale
from target_tiktok_audiences.client import (
    REFUSED_EXPIRED,
    REFUSED_UNKNOWN_TYPE,
    AudienceAPI,
    AudienceRow,
    PermanentError,
    RefusedError,
    TransientError,
)

log = logging.getLogger("target_tiktok_audiences.audiences")

PARTNER = "partner"
_CONFIRM_POLL_SECONDS = (1.0, 2.0, 4.0, 8.0, 15.0)


class PendingCreates(Protocol):
    """Where creates in flight are recorded across runs (creates.StoredCreates)."""

    @property
    def recording(self) -> bool: ...

    def mark(self, advertiser_id: str, name: str) -> None: ...
    def clear(self, advertiser_id: str, name: str) -> None: ...
    def age(self, advertiser_id: str, name: str) -> float | None: ...


class _NoRecords:
    @property
    def recording(self) -> bool:
        return False

    def mark(self, advertiser_id: str, name: str) -> None:
        pass

    def clear(self, advertiser_id: str, name: str) -> None:
        pass

    def age(self, advertiser_id: str, name: str) -> float | None:
        return None


class AudienceDirectory:
    """The audiences of each advertiser, listed once per run and kept current."""

    def __init__(
        self,
        *,
        confirm_seconds: float = 120,
        max_new: int = 25,
        pending: PendingCreates | None = None,
    ) -> None:
        self._pending: PendingCreates = pending or _NoRecords()
        # (advertiser, id) of audiences an earlier run's create made and this run adopted:
        # as new as a created one (a partner audience may still refuse mappings)
        self.adopted: set[tuple[str, str]] = set()
        self._unsettled: set[tuple[str, str]] = set()  # (advertiser, name) created, recorded
        self._rows: dict[str, list[AudienceRow]] = {}
        self._listed_at: dict[str, float] = {}  # monotonic time of each advertiser's listing
        # (advertiser, name) -> the expired audience a fresh one replaces (ad groups must move)
        self.expired: dict[tuple[str, str], AudienceRow] = {}
        self._confirm_seconds = confirm_seconds
        self._max_new = max_new
        self.created = 0

    def _list(
        self, api: AudienceAPI, advertiser_id: str, *, refresh: bool = False
    ) -> list[AudienceRow]:
        if refresh or advertiser_id not in self._rows:
            self._listed_at[advertiser_id] = time.monotonic()
            self._rows[advertiser_id] = list(api.list_audiences(advertiser_id))
        return self._rows[advertiser_id]

    def listed_since(self, advertiser_id: str, since: float) -> bool:
        """Whether the advertiser's audiences were listed at or after `since` (monotonic)."""
        return self._listed_at.get(advertiser_id, -1.0) >= since

    def rows(self, api: AudienceAPI, advertiser_id: str) -> list[AudienceRow]:
        """The advertiser's audiences as listed once this run (with those it created)."""
        return list(self._list(api, advertiser_id))

    def by_id(
        self, api: AudienceAPI, advertiser_id: str, audience_id: str, kind: str, name: str
    ) -> str:
        """Check that a configured audience id exists, is ours and has the right type."""
        if api.offline:
            return audience_id
        for row in self._list(api, advertiser_id):
            if row.audience_id == audience_id:
                _check_compatible(row, advertiser_id, kind, name)
                if row.expired(_now()):
                    raise RefusedError(
                        f"Using audience id {audience_id} (audiences[].audience_ids, "
                        f"audience '{name}')",
                        reason=REFUSED_EXPIRED,
                        advertiser_id=advertiser_id,
                        message=f"this audience expired on {row.expires:%Y-%m-%d}; TikTok keeps "
                        "it only to be deleted",
                        said=False,
                    )
                if not row.owned:
                    raise PermanentError(
                        f"Using audience id {audience_id} (audiences[].audience_ids, "
                        f"audience '{name}')",
                        advertiser_id=advertiser_id,
                        message="this audience was shared in by another advertiser; only its "
                        "creator can update it",
                        hint="Point audience_ids at an audience this advertiser created.",
                        said=False,
                    )
                return audience_id
        raise PermanentError(
            f"Using audience id {audience_id} (audiences[].audience_ids, audience '{name}')",
            advertiser_id=advertiser_id,
            message="no such audience in this advertiser",
            hint="Fix or remove that audience id; without it the audience is found by name "
            "or created.",
            said=False,
        )

    def by_name(
        self, api: AudienceAPI, advertiser_id: str, name: str, kind: str, *, refresh: bool = False
    ) -> str | None:
        """The id of our audience with exactly this name and a compatible type, if any."""
        listed = [r for r in self._list(api, advertiser_id, refresh=refresh) if r.name == name]
        now = _now()
        # Never an expired audience (TikTok: size 0, it can only be deleted): a fresh one of
        # that name takes its place, and the summary says so.
        named = [r for r in listed if not (r.owned and r.expired(now))]
        for row in listed:
            if row not in named:
                self.expired.setdefault((advertiser_id, name), row)
        matches = [r for r in named if r.owned]
        if len(matches) < len(named):
            log.info(
                "Advertiser %s sees an audience named '%s' shared in by another advertiser; "
                "it is left alone.",
                advertiser_id,
                name,
            )
        if not matches:
            return None
        for row in matches:
            if _compatible(row, kind):
                if len(matches) > 1:
                    log.warning(
                        "Advertiser %s has %d audiences named '%s'; using %s.",
                        advertiser_id,
                        len(matches),
                        name,
                        row.audience_id,
                    )
                return row.audience_id
        _check_compatible(matches[0], advertiser_id, kind, name)
        return None  # pragma: no cover - _check_compatible raised

    def row(self, advertiser_id: str, audience_id: str) -> AudienceRow | None:
        """The listed row of an audience, if this run listed it."""
        rows = self._rows.get(advertiser_id) or []
        return next((r for r in rows if r.audience_id == audience_id), None)

    def find_or_create(
        self,
        api: AudienceAPI,
        advertiser_id: str,
        name: str,
        kind: str,
        create: Callable[[], str],
    ) -> tuple[str, bool]:
        """(audience id, created). kind is a calculate_type or PARTNER."""
        found = self.by_name(api, advertiser_id, name, kind)
        if found:
            return found, False
        if self.created >= self._max_new:
            raise PermanentError(
                f"Creating audience '{name}'",
                advertiser_id=advertiser_id,
                message=f"this run already created {self.created} audience"
                f"{'' if self.created == 1 else 's'} "
                f"(max_new_audiences is {self._max_new}); TikTok allows 400 per advertiser",
                hint="Map only the streams you want (audiences setting) or raise "
                "max_new_audiences.",
                said=False,
            )
        # A run killed from here on is awaited (a dry run's store records nothing: creates.py).
        self._pending.mark(advertiser_id, name)
        try:
            audience_id = create()
        except TransientError as exc:
            # TikTok may have created it before the answer was lost, and may list it only
            # later: look again for a while before creating it again.
            api.count_retry()
            log.warning("%s; looking the audience up before creating it again.", exc)
            confirmed = self._confirm(api, advertiser_id, name, kind)

            def again() -> str:
                return self.by_name(api, advertiser_id, name, kind, refresh=True) or create()

            audience_id = confirmed or api.retrying(again)
        except Exception:
            self._pending.clear(advertiser_id, name)  # refused: nothing is being created
            raise
        # Kept until the audience is delivered (settle): TikTok may answer a create before it
        # lists the audience, and a run killed meanwhile leaves the next one to wait for it.
        self._unsettled.add((advertiser_id, name))
        self.created += 1
        rows = self._rows.setdefault(advertiser_id, [])
        if all(r.audience_id != audience_id for r in rows):  # a lookup may have listed it
            rows.append(
                AudienceRow(
                    audience_id,
                    name,
                    "Partner" if kind == PARTNER else "Customer File",
                    None if kind == PARTNER else kind,
                    None,
                )
            )
        kind_shown = "partner" if kind == PARTNER else kind
        if not api.sends:  # a dry run's id is a placeholder: nothing was created
            log.info(
                "Would create audience '%s' (%s) in advertiser %s (dry run).",
                name,
                kind_shown,
                advertiser_id,
            )
        else:
            log.info(
                "Created audience '%s' (%s) in advertiser %s: id %s.",
                name,
                kind_shown,
                advertiser_id,
                audience_id,
            )
        return audience_id, True

    def settle(self, advertiser_id: str, name: str) -> None:
        """The audience this run created is delivered: its create record goes."""
        if (advertiser_id, name) in self._unsettled:
            self._unsettled.discard((advertiser_id, name))
            self._pending.clear(advertiser_id, name)

    def await_pending(
        self, api: AudienceAPI, advertiser_id: str, name: str, kind: str
    ) -> str | None:
        """An earlier run sent a create of `name` and never saw its audience (it was killed,
        its answer was lost): wait for that audience to appear, up to create_confirm_seconds
        after that create was sent, and adopt it. None: there is no such create, or its
        audience did not appear in time (a create may then be sent)."""
        if api.offline:  # a dry run that reads TikTok awaits it too, as the real run would
            return None
        age = self._pending.age(advertiser_id, name)
        if age is None:
            return None
        left = max(self._confirm_seconds - age, 0.0)
        log.info(
            "Audience '%s' in advertiser %s: an earlier run sent its create %.0f s ago and did "
            "not see it made; looking it up for up to %.0f s before creating one.",
            name,
            advertiser_id,
            age,
            left,
        )
        if left:
            found = self._confirm(api, advertiser_id, name, kind, seconds=left)
        else:  # sent long ago: one fresh look
            found = self.by_name(api, advertiser_id, name, kind, refresh=True)
        if found is None:
            return None
        self.adopted.add((advertiser_id, found))
        self._pending.clear(advertiser_id, name)
        return found

    def _confirm(
        self,
        api: AudienceAPI,
        advertiser_id: str,
        name: str,
        kind: str,
        *,
        seconds: float | None = None,
    ) -> str | None:
        deadline = timescale.monotonic() + (self._confirm_seconds if seconds is None else seconds)
        for pause in (0.0, *_CONFIRM_POLL_SECONDS, *[15.0] * 1000):
            now = timescale.monotonic()
            if now >= deadline:
                return None
            timescale.sleep(min(pause, deadline - now))
            try:
                found = self.by_name(api, advertiser_id, name, kind, refresh=True)
            except TransientError:
                continue
            if found:
                log.info(
                    "Audience '%s' in advertiser %s was created after all: id %s.",
                    name,
                    advertiser_id,
                    found,
                )
                return found
        return None  # pragma: no cover - the deadline ends the loop


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _compatible(row: AudienceRow, kind: str) -> bool:
    if kind == PARTNER:
        return row.is_partner
    return row.is_customer_file and row.calculate_type == kind


def _check_compatible(row: AudienceRow, advertiser_id: str, kind: str, name: str) -> None:
    if _compatible(row, kind):
        return
    if not row.is_partner and not row.is_customer_file:
        # Not a guess: a type the target does not know is never updated, and never taken as a
        # reason to create a second audience of the same name. Only this audience waits.
        raise RefusedError(
            f"Matching audience '{name}'",
            reason=REFUSED_UNKNOWN_TYPE,
            advertiser_id=advertiser_id,
            message=f"audience {row.audience_id} '{row.name}' has audience_type "
            f"'{row.audience_type}', which is neither a customer-file nor a partner audience",
            said=False,
        )
    have = (
        "a partner audience"
        if row.is_partner
        else (f"a {row.audience_type or 'custom'} audience of type {row.calculate_type}")
    )
    want = (
        "a partner audience (sync_mode incremental or audience_type partner)"
        if kind == PARTNER
        else (f"a customer-file audience of type {kind}")
    )
    raise PermanentError(
        f"Matching audience '{name}'",
        advertiser_id=advertiser_id,
        message=f"audience {row.audience_id} '{row.name}' is {have}, but this stream needs {want}",
        hint="Rename the audience (audiences[].audience_name) or point "
        "audiences[].audience_ids at a compatible audience.",
        said=False,
    )
