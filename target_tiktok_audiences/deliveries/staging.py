"""Update operations planned across every audience of a commit: removals of users who left first.

TikTok allows each ad account a number of update operations (APPEND, REMOVE, REPLACE) a day
(`daily_update_operations`). A delivery's commit is a series of routines, one per audience:
each prepares its change under its lock, then yields one `Ask` for the updates it needs and
waits. Once every routine of the commit has asked, `grant` plans the operations each ad
account has left: first every call that removes users (privacy: a user who left the stream
should leave the audience first), then the others, in the order the audiences came. The
routines then send what was granted; what was not is that audience's deferral, with the time
it fits. Without a budget (0, a dry run) every ask is granted at once and nothing waits.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from target_tiktok_audiences.client import AudienceAPI


@dataclass
class Ask:
    """The update calls one audience needs, in the order it sends them."""

    advertiser_id: str
    calls: list[tuple[str, bool]]  # (action, whether it removes users who left)
    granted: list[bool] = field(init=False)

    def __post_init__(self) -> None:
        self.granted = [False] * len(self.calls)

    def grant_all(self) -> None:
        self.granted = [True] * len(self.calls)

    @property
    def complete(self) -> bool:
        return all(self.granted)

    @property
    def removes(self) -> bool:
        """Some call granted removes users."""
        return any(r and ok for (_, r), ok in zip(self.calls, self.granted, strict=True))

    def allowed(self, action: str) -> int:
        """How many calls of `action` may be sent."""
        return sum(ok for (a, _), ok in zip(self.calls, self.granted, strict=True) if a == action)

    def refused(self) -> list[str]:
        """The actions not granted, once each, in order."""
        out: list[str] = []
        for (action, _), ok in zip(self.calls, self.granted, strict=True):
            if not ok and action not in out:
                out.append(action)
        return out


class Skipped(Exception):
    """A routine's audience was deferred before it began (its lock could not be taken): that
    routine ends, the others go on."""


# A routine yields its Ask (at most one per budget plan; a later one is granted from what the
# plan left) and resumes once the plan is made.
Routine = Generator[Ask, None, None]


class Staged(Protocol):
    def stage(self) -> Iterator[Routine]:
        """One routine per audience of the commit, each run to its ask as it comes."""

    def close_stage(self) -> None:
        """Every routine has ended: drop what they shared (sorted sets, spools)."""


def grant(asks: Sequence[Ask], left: Mapping[str, int]) -> dict[str, int]:
    """Grant calls within each ad account's `left`: removing calls first, then the rest, in
    the order the asks came; the calls of one action of one audience all or none (a part of
    a change is no use to anyone). Returns the calls granted per ad account."""
    budget = dict(left)
    granted: dict[str, int] = {}
    for removing_pass in (True, False):
        for ask in asks:
            adv = ask.advertiser_id
            for action in dict.fromkeys(a for a, _ in ask.calls):
                calls = [
                    i
                    for i, (a, removing) in enumerate(ask.calls)
                    if a == action and removing is removing_pass and not ask.granted[i]
                ]
                if not calls or len(calls) > budget.get(adv, 0):
                    continue
                for i in calls:
                    ask.granted[i] = True
                budget[adv] -= len(calls)
                granted[adv] = granted.get(adv, 0) + len(calls)
    return granted


def deliver(deliveries: Iterable[Staged], api: AudienceAPI) -> None:
    """Run every routine of the deliveries to its ask, plan the budget, then let them send."""
    staged = list(deliveries)
    waiting: list[tuple[Routine, Ask]] = []
    try:
        for delivery in staged:
            for routine in delivery.stage():
                try:
                    ask = next(routine, None)
                except Skipped:
                    continue
                if ask is None:
                    continue
                if api.operations_left(ask.advertiser_id) is None:  # no budget: nothing waits
                    ask.grant_all()
                    _finish(routine, api)
                else:
                    waiting.append((routine, ask))
        _plan([ask for _, ask in waiting], api)
        # Audiences with removals granted send first.
        waiting.sort(key=lambda w: not w[1].removes)
        while waiting:
            routine, _ = waiting.pop(0)
            _finish(routine, api)
    finally:
        for routine, _ in waiting:
            routine.close()  # a run-stopping failure: the locks of the others are released
        for delivery in staged:
            delivery.close_stage()


def _finish(routine: Routine, api: AudienceAPI) -> None:
    """Resume a routine to its end; a later ask is granted from what the plan left."""
    for ask in routine:
        if api.operations_left(ask.advertiser_id) is None:
            ask.grant_all()
        else:
            _plan([ask], api)


def _plan(asks: Sequence[Ask], api: AudienceAPI) -> None:
    """Grant the asks within what their ad accounts have left, and tell the client."""
    left = {adv: api.operations_left(adv) or 0 for adv in {a.advertiser_id for a in asks}}
    for adv, count in grant(asks, left).items():
        api.plan_operations(adv, count)
