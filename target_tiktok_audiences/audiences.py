"""Find an audience by id or exact name, or create it: never twice.

A re-run finds what the last run created by name. A create whose answer was lost (timeout,
dropped connection) is followed by a fresh lookup before it is sent again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from target_tiktok_audiences.client import (
    AudienceRow,
    PermanentError,
    TransientError,
)

log = logging.getLogger("target_tiktok_audiences.audiences")

PARTNER = "partner"


class AudienceDirectory:
    """The audiences of each advertiser, listed once per run and kept current."""

    def __init__(self, client: object) -> None:
        self._client = client
        self._rows: dict[str, list[AudienceRow]] = {}

    def _list(self, advertiser_id: str, *, refresh: bool = False) -> list[AudienceRow]:
        if refresh or advertiser_id not in self._rows:
            self._rows[advertiser_id] = list(self._client.list_audiences(advertiser_id))
        return self._rows[advertiser_id]

    def by_id(self, advertiser_id: str, audience_id: str, kind: str, name: str) -> str:
        """Check that a configured audience id exists and has the right type."""
        for row in self._list(advertiser_id):
            if row.audience_id == audience_id:
                _check_compatible(row, advertiser_id, kind, name)
                return audience_id
        raise PermanentError(
            f"Using audience id {audience_id} (audiences[].audience_ids, stream audience '{name}')",
            advertiser_id=advertiser_id,
            message="no such audience in this advertiser",
            hint="Fix or remove that audience id; without it the audience is found by name "
            "or created.",
        )

    def by_name(
        self, advertiser_id: str, name: str, kind: str, *, refresh: bool = False
    ) -> str | None:
        """The id of the audience with exactly this name and a compatible type, if any."""
        matches = [r for r in self._list(advertiser_id, refresh=refresh) if r.name == name]
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

    def find_or_create(
        self, advertiser_id: str, name: str, kind: str, create: Callable[[], str]
    ) -> tuple[str, bool]:
        """(audience id, created). kind is a calculate_type or PARTNER."""
        found = self.by_name(advertiser_id, name, kind)
        if found:
            return found, False
        try:
            audience_id = create()
        except TransientError as exc:
            # TikTok may have created it before the answer was lost: look again before
            # every further try.
            self._client.count_retry()
            log.warning("%s; looking the audience up before trying again.", exc)

            def again() -> str:
                return self.by_name(advertiser_id, name, kind, refresh=True) or create()

            audience_id = self._client.retrying(again)
        self._rows.setdefault(advertiser_id, []).append(
            AudienceRow(
                audience_id,
                name,
                "Partner" if kind == PARTNER else "Customer File",
                None if kind == PARTNER else kind,
                None,
            )
        )
        log.info(
            "Created audience '%s' (%s) in advertiser %s: id %s.",
            name,
            "partner" if kind == PARTNER else kind,
            advertiser_id,
            audience_id,
        )
        return audience_id, True


def _compatible(row: AudienceRow, kind: str) -> bool:
    if kind == PARTNER:
        return row.is_partner
    return not row.is_partner and row.calculate_type == kind


def _check_compatible(row: AudienceRow, advertiser_id: str, kind: str, name: str) -> None:
    if _compatible(row, kind):
        return
    have = (
        "a partner audience"
        if row.is_partner
        else (f"a {row.audience_type or 'custom'} audience of type {row.calculate_type}")
    )
    want = (
        "a partner audience (sync_mode incremental)"
        if kind == PARTNER
        else (f"a customer-file audience of type {kind}")
    )
    raise PermanentError(
        f"Matching audience '{name}'",
        advertiser_id=advertiser_id,
        message=f"audience {row.audience_id} '{row.name}' is {have}, but this stream needs {want}",
        hint="Rename the audience (audiences[].audience_name) or point "
        "audiences[].audience_ids at a compatible audience.",
    )
