"""TikTok's daily update operations per ad account, counted from what TikTok shows.

TikTok allows 24 update operations (APPEND, REMOVE, REPLACE) per ad account per day (Narrative's
documentation; modelled as a rolling 24 h, the stricter reading). Before the first update of an
advertiser in a run, the operations of the last 24 h are read from `audience_history`; each
update of the run then takes one, and one that does not fit is that audience's refusal
(deferred, with the time it fits), not a call TikTok would refuse.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from target_tiktok_audiences.client.codes import REFUSED_BUDGET, RefusedError

WINDOW = timedelta(hours=24)
OPERATIONS = ("APPEND", "REMOVE", "REPLACE")


class OperationBudget:
    """Update operations per advertiser: those TikTok shows for the last 24 h, and this run's."""

    def __init__(
        self,
        limit: int,
        count: Callable[[str], list[datetime]],
        now: Callable[[], datetime],
    ) -> None:
        self.limit = limit  # 0: no budget
        self._count = count  # advertiser -> times of its operations TikTok shows
        self._clock = now  # TikTok's time (its answers' Date header): its 24 h, not ours
        self._times: dict[str, list[datetime]] = {}
        self._sent: dict[str, int] = {}

    def take(self, advertiser_id: str, what: str) -> None:
        """One operation for this update, or a refusal that says when one fits."""
        if self.limit <= 0:
            return
        times = self._times.get(advertiser_id)
        if times is None:
            times = self._times[advertiser_id] = sorted(self._count(advertiser_id))
        recent = self._recent(times)
        if len(recent) >= self.limit:
            fits = recent[len(recent) - self.limit] + WINDOW
            raise RefusedError(
                what,
                reason=REFUSED_BUDGET,
                advertiser_id=advertiser_id,
                message=f"{len(recent)} of the {self.limit} update operations of the last 24 h "
                f"are used (daily_update_operations); the next fits after {fits:%Y-%m-%d %H:%M} "
                "UTC",
                said=False,
            )
        # Counted when sent, even if TikTok then refuses it (the stricter reading).
        times.append(self._now(times))
        self._sent[advertiser_id] = self._sent.get(advertiser_id, 0) + 1

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per advertiser that sent updates: operations used in the last 24 h, by this run, left."""
        out = {}
        for advertiser_id, times in self._times.items():
            used = len(self._recent(times))
            out[advertiser_id] = {
                "limit": self.limit,
                "used": used,
                "by_this_run": self._sent.get(advertiser_id, 0),
                "left": max(self.limit - used, 0),
            }
        return out

    def _recent(self, times: list[datetime]) -> list[datetime]:
        since = self._now(times) - WINDOW
        return sorted(t for t in times if t > since)

    def _now(self, times: list[datetime]) -> datetime:
        # Never before the newest operation TikTok shows (its history and Date may disagree).
        return max([self._clock(), *times])
