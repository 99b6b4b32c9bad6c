"""TikTok's daily update operations per ad account, counted from what TikTok shows.

TikTok allows 24 update operations (APPEND, REMOVE, REPLACE) per ad account per day (Narrative's
documentation; modelled as a rolling 24 h, the stricter reading). Before the first update of an
advertiser in a run, the operations of the last 24 h are read from `audience_history`. The
deliveries plan the run's operations within what is left (`left`, `plan`: removals first, see
deliveries/staging.py); each update sent then takes one, and one that does not fit is that
audience's refusal (deferred, with the time it fits), not a call TikTok would refuse.
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
        self._planned: dict[str, int] = {}  # planned by this run and not sent yet

    def left(self, advertiser_id: str) -> int | None:
        """Operations the ad account has left, net of what this run planned; None: no budget."""
        if self.limit <= 0:
            return None
        recent = self._recent(self._history(advertiser_id))
        return max(self.limit - len(recent) - self._planned.get(advertiser_id, 0), 0)

    def plan(self, advertiser_id: str, count: int) -> None:
        """This run will send `count` more operations (granted by the deliveries' plan)."""
        if self.limit > 0 and count > 0:
            self._planned[advertiser_id] = self._planned.get(advertiser_id, 0) + count

    def take(self, advertiser_id: str, what: str) -> None:
        """One operation for this update, or a refusal that says when one fits."""
        if self.limit <= 0:
            return
        times = self._history(advertiser_id)
        planned = self._planned.get(advertiser_id, 0)
        if planned:
            self._planned[advertiser_id] = planned - 1
        if len(self._recent(times)) >= self.limit:
            raise self.refusal(advertiser_id, what)
        # Counted when sent, even if TikTok then refuses it (the stricter reading).
        times.append(self._now(times))
        self._sent[advertiser_id] = self._sent.get(advertiser_id, 0) + 1

    def refusal(self, advertiser_id: str, what: str) -> RefusedError:
        """`what` does not fit: how many are used (and planned), and when the next one fits."""
        times = self._history(advertiser_id)
        now = self._now(times)
        # This run's planned operations, not sent yet, will take their place now.
        ahead = [*self._recent(times), *[now] * self._planned.get(advertiser_id, 0)]
        fits = ahead[max(len(ahead) - self.limit, 0)] + WINDOW if ahead else now
        planned = len(ahead) - len(self._recent(times))
        used = f"{len(ahead) - planned} of the {self.limit} update operations of the last 24 h "
        used += f"are used and {planned} planned by this run" if planned else "are used"
        return RefusedError(
            what,
            reason=REFUSED_BUDGET,
            advertiser_id=advertiser_id,
            message=f"{used} (daily_update_operations); the next fits after "
            f"{fits:%Y-%m-%d %H:%M} UTC",
            said=False,
        )

    def _history(self, advertiser_id: str) -> list[datetime]:
        times = self._times.get(advertiser_id)
        if times is None:
            times = self._times[advertiser_id] = sorted(self._count(advertiser_id))
        return times

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
