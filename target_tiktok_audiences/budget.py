"""The daily update operations budget, in one place: counted, planned, granted, taken.

TikTok allows 24 update operations (APPEND, REMOVE, REPLACE) per ad account per day (Narrative's
documentation; modelled as a rolling 24 h, the stricter reading).
- Counted: before the first update of an advertiser in a run, the operations of the last 24 h:
  those this target sent, from its own ledger (ledger.py), plus those of others (Ads Manager,
  other tools) that TikTok's `audience_history` shows, as the client reports them
  (`operation_history`: only words it recognises, since TikTok's are undocumented; an
  unrecognised entry counts for nothing, and the ledger still holds ours). The clock is
  TikTok's (the client's `now`, from its answers' Date header).
- Planned: each audience of a commit asks for the update calls it needs (an `Ask`); `plan`
  grants them within what each ad account has left, removing calls first (privacy: a user who
  left the stream should leave the audience first), then the rest in the order they came; the
  calls of one action of one audience all or none (a part of a change is no use to anyone).
- Granted: the `Grant` is sent into the audience's routine (deliveries/staging.py), which sends
  only what it allows; what it does not is that audience's refusal, with the time it fits.
- Taken: each update sent takes one operation through its Grant, written to the ledger first
  (a failure there raises, and nothing is sent). A call TikTok then refuses, or whose answer
  was lost, still counts (the stricter reading).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from target_tiktok_audiences.client.codes import REFUSED_BUDGET, RefusedError

WINDOW = timedelta(hours=24)

# A call an audience needs: (action, whether it removes users who left the stream).
Call = tuple[str, bool]


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


class OperationSource(Protocol):
    """What the client reports: TikTok's time, and the update operations its history shows."""

    def now(self) -> datetime: ...

    def operation_history(
        self, advertiser_id: str, since: datetime
    ) -> dict[str, list[datetime]]: ...


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


@dataclass(frozen=True)
class Ask:
    """The update calls one audience needs, in the order it sends them."""

    advertiser_id: str
    calls: tuple[Call, ...]


@dataclass(frozen=True)
class Grant:
    """What the plan allows one audience: the calls of its Ask that it may send, and the way
    each is taken from the budget (the ledger first)."""

    ask: Ask
    granted: tuple[bool, ...]
    budget: Budget = field(repr=False)

    @property
    def complete(self) -> bool:
        return all(self.granted)

    @property
    def any(self) -> bool:
        return any(self.granted)

    @property
    def removes(self) -> bool:
        """Some call granted removes users."""
        return any(r and ok for (_, r), ok in zip(self.ask.calls, self.granted, strict=True))

    def allowed(self, action: str) -> int:
        """How many calls of `action` may be sent."""
        pairs = zip(self.ask.calls, self.granted, strict=True)
        return sum(ok for (a, _), ok in pairs if a == action)

    def refused(self) -> list[str]:
        """The actions not granted, once each, in order."""
        out: list[str] = []
        for (action, _), ok in zip(self.ask.calls, self.granted, strict=True):
            if not ok and action not in out:
                out.append(action)
        return out

    def take(self, audience_id: str, action: str) -> None:
        """Before `action` is sent to the audience: one operation, written to the ledger."""
        if not self.allowed(action):  # a delivery's bug: never a call the plan did not grant
            raise RuntimeError(f"{action} on audience {audience_id} was not granted")
        self.budget.take(
            self.ask.advertiser_id, audience_id, action, f"{action} on audience {audience_id}"
        )

    def refusal(self, audience: str) -> RefusedError:
        """The calls the plan had no room for: this audience's deferral."""
        what = f"{' and '.join(self.refused())} on audience {audience}"
        return self.budget.refusal(self.ask.advertiser_id, what)


class Budget:
    """Update operations per advertiser: those of the last 24 h, and this run's plan."""

    def __init__(
        self, limit: int, source: OperationSource, ledger: OperationLog | None = None
    ) -> None:
        self.limit = limit  # 0: no budget (the ledger is still written)
        self._source = source
        self._ledger = ledger
        self._times: dict[str, list[datetime]] = {}
        self._sent: dict[str, int] = {}
        self._planned: dict[str, int] = {}  # granted by this run and not sent yet

    @property
    def counted(self) -> bool:
        """Whether asks wait for a plan (False: every ask is granted at once)."""
        return self.limit > 0

    def left(self, advertiser_id: str) -> int:
        """Operations the ad account has left, net of what this run planned."""
        recent = self._recent(self._history(advertiser_id))
        return max(self.limit - len(recent) - self._planned.get(advertiser_id, 0), 0)

    def grant_all(self, ask: Ask) -> Grant:
        return Grant(ask, (True,) * len(ask.calls), self)

    def plan(self, asks: Sequence[Ask]) -> list[Grant]:
        """Grant the asks within what their ad accounts have left (see the module)."""
        if not self.counted:
            return [self.grant_all(ask) for ask in asks]
        room = {adv: self.left(adv) for adv in dict.fromkeys(a.advertiser_id for a in asks)}
        granted = [[False] * len(ask.calls) for ask in asks]
        for removing_pass in (True, False):
            for ask, marks in zip(asks, granted, strict=True):
                adv = ask.advertiser_id
                for action in dict.fromkeys(a for a, _ in ask.calls):
                    calls = [
                        i
                        for i, (a, removing) in enumerate(ask.calls)
                        if a == action and removing is removing_pass and not marks[i]
                    ]
                    if not calls or len(calls) > room[adv]:
                        continue
                    for i in calls:
                        marks[i] = True
                    room[adv] -= len(calls)
                    self._planned[adv] = self._planned.get(adv, 0) + len(calls)
        return [Grant(ask, tuple(marks), self) for ask, marks in zip(asks, granted, strict=True)]

    def take(self, advertiser_id: str, audience_id: str, action: str, what: str) -> None:
        """One operation for this update, written to the ledger before it is sent, or a
        refusal that says when one fits (then nothing is written or sent)."""
        now = self._source.now()
        if not self.counted:
            self._record(advertiser_id, audience_id, action, now)
            return
        times = self._history(advertiser_id)
        planned = self._planned.get(advertiser_id, 0)
        if planned:
            self._planned[advertiser_id] = planned - 1
        if len(self._recent(times)) >= self.limit:
            raise self.refusal(advertiser_id, what)
        self._record(advertiser_id, audience_id, action, now)
        # Counted when sent, even if TikTok then refuses it (the stricter reading).
        times.append(self._now(times))
        self._sent[advertiser_id] = self._sent.get(advertiser_id, 0) + 1

    def refusal(self, advertiser_id: str, what: str) -> RefusedError:
        """`what` does not fit: how many are used (and planned), and when the next one fits."""
        if not self.counted:
            return RefusedError(
                what, reason=REFUSED_BUDGET, advertiser_id=advertiser_id, said=False
            )
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

    def _record(self, advertiser_id: str, audience_id: str, action: str, at: datetime) -> None:
        if self._ledger is not None:
            self._ledger.record(advertiser_id, audience_id, action, at)

    def _history(self, advertiser_id: str) -> list[datetime]:
        """The ad account's operations of the last 24 h: ours from the ledger, and those
        TikTok's history shows beyond ours (read once per run)."""
        times = self._times.get(advertiser_id)
        if times is None:
            since = self._source.now() - WINDOW
            ours = self._ledger.entries(advertiser_id, since) if self._ledger is not None else []
            shown = self._source.operation_history(advertiser_id, since)
            times = self._times[advertiser_id] = sorted(operation_times(ours, shown))
        return times

    def _recent(self, times: list[datetime]) -> list[datetime]:
        since = self._now(times) - WINDOW
        return sorted(t for t in times if t > since)

    def _now(self, times: list[datetime]) -> datetime:
        # Never before the newest operation TikTok shows (its history and Date may disagree).
        return max([self._source.now(), *times])
