"""TikTok's daily update operations per ad account, counted from our ledger and TikTok's history.

TikTok allows 24 update operations (APPEND, REMOVE, REPLACE) per ad account per day (Narrative's
documentation; modelled as a rolling 24 h, the stricter reading). Before the first update of an
advertiser in a run, the operations of the last 24 h are counted: those this target sent, from
its own ledger (ledger.py: written before each send), plus those of others (Ads Manager, other
tools) that `audience_history` shows in words it recognises (TikTok's words are undocumented:
an unrecognised entry counts for nothing, the ledger still holds ours). The deliveries plan the
run's operations within what is left (`left`, `plan`: removals first, see
deliveries/staging.py); each update sent then takes one, recorded in the ledger before it is
sent, and one that does not fit is that audience's refusal (deferred, with the time it fits),
not a call TikTok would refuse.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, Protocol

from target_tiktok_audiences.client.codes import REFUSED_BUDGET, RefusedError

WINDOW = timedelta(hours=24)
OPERATIONS = ("APPEND", "REMOVE", "REPLACE")


class LoggedOperation(Protocol):
    @property
    def audience_id(self) -> str: ...

    @property
    def action(self) -> str: ...

    @property
    def at(self) -> datetime: ...


class OperationLog(Protocol):
    """Where this target writes down its update operations before it sends them (ledger.py)."""

    def record(self, advertiser_id: str, audience_id: str, action: str, at: datetime) -> None: ...

    def entries(self, advertiser_id: str, since: datetime) -> Iterable[LoggedOperation]: ...


def operation_times(
    ours: Iterable[LoggedOperation], shown: dict[str, list[datetime]]
) -> list[datetime]:
    """The times of the ad account's operations: ours (the ledger) and, per audience, those the
    history shows beyond ours (`shown`: audience id -> times of recognised operations); of
    those, the latest (the stricter reading of when one fits again)."""
    sent = list(ours)
    mine = Counter(op.audience_id for op in sent)
    times = [op.at for op in sent]
    for audience_id, seen in shown.items():
        others = len(seen) - mine.get(audience_id, 0)
        if others > 0:
            times += sorted(seen)[-others:]
    return times


class OperationBudget:
    """Update operations per advertiser: those TikTok shows for the last 24 h, and this run's."""

    def __init__(
        self,
        limit: int,
        count: Callable[[str], list[datetime]],  # advertiser -> times of its operations
        now: Callable[[], datetime],
    ) -> None:
        self.limit = limit  # 0: no budget
        self._count = count  # ledger + others' operations in TikTok's history
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

    def take(
        self,
        advertiser_id: str,
        audience_id: str,
        action: str,
        what: str,
        record: Callable[[datetime], None] | None = None,
    ) -> None:
        """One operation for this update, or a refusal that says when one fits; `record`
        writes it to the ledger first (a failure there raises and nothing is sent)."""
        now = self._clock()
        if self.limit <= 0:
            if record is not None:
                record(now)
            return
        times = self._history(advertiser_id)
        planned = self._planned.get(advertiser_id, 0)
        if planned:
            self._planned[advertiser_id] = planned - 1
        if len(self._recent(times)) >= self.limit:
            raise self.refusal(advertiser_id, what)
        if record is not None:
            record(now)
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
