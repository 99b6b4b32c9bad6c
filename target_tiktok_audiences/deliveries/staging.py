"""Every audience of a commit asks before any sends: the update operations are planned together.

A delivery's commit is a series of routines, one per audience: each prepares its change under
its lock, then yields one `Ask` for the update calls it needs and waits. Once every routine of
the commit has asked, the budget (budget.py) plans what each ad account has left, removing
calls first, and each routine is sent its `Grant`: it sends what the grant allows, and what it
does not is that audience's deferral, with the time it fits. Without a budget (0, a dry run
offline) every ask is granted at once and nothing waits.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Iterator
from typing import Protocol

from target_tiktok_audiences.budget import Ask, Budget, Grant


class Skipped(Exception):
    """A routine's audience was deferred before it began (its lock could not be taken): that
    routine ends, the others go on."""


# A routine yields its Ask (at most one per plan; a later one is granted from what the plan
# left) and is sent its Grant.
Routine = Generator[Ask, Grant, None]


class Staged(Protocol):
    def stage(self) -> Iterator[Routine]:
        """One routine per audience of the commit, each run to its ask as it comes."""

    def close_stage(self) -> None:
        """Every routine has ended: drop what they shared (sorted sets, spools)."""


def deliver(deliveries: Iterable[Staged], budget: Budget) -> None:
    """Run every routine of the deliveries to its ask, plan the budget, then let them send."""
    staged = list(deliveries)
    routines: list[Routine] = []  # asked and not ended: closed if the run stops
    asks: list[Ask] = []
    try:
        for delivery in staged:
            for routine in delivery.stage():
                try:
                    ask = next(routine, None)
                except Skipped:
                    continue
                if ask is None:
                    continue
                if budget.counted:
                    routines.append(routine)
                    asks.append(ask)
                else:  # no budget: nothing waits
                    _finish(routine, budget.grant_all(ask), budget)
        # Audiences with removals granted send first.
        plan = sorted(
            zip(routines, budget.plan(asks), strict=True), key=lambda rg: not rg[1].removes
        )
        routines = [routine for routine, _ in plan]
        for routine, grant in plan:
            routines.remove(routine)
            _finish(routine, grant, budget)
    finally:
        for routine in routines:
            routine.close()  # a run-stopping failure: the locks of the others are released
        for delivery in staged:
            delivery.close_stage()


def _finish(routine: Routine, grant: Grant, budget: Budget) -> None:
    """Send the routine its grant and run it to its end; a later ask is granted from what the
    plan left."""
    try:
        while True:
            (grant,) = budget.plan([routine.send(grant)])
    except StopIteration:
        pass
