"""The budget plan across audiences (budget.py): removing calls first, within what each ad
account has left, an action of an audience all or none; and the orchestration of the routines
(deliveries/staging.py: each routine is sent its grant; nothing waits without a budget; a
run-stopping failure releases every other audience)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from target_tiktok_audiences.budget import Ask, Budget, Grant
from target_tiktok_audiences.client import PermanentError
from target_tiktok_audiences.deliveries.staging import Routine, deliver

ADV1, ADV2 = "7000000000000000001", "7000000000000000002"
APPEND, REMOVE, REPLACE = ("APPEND", False), ("REMOVE", True), ("REPLACE", True)
T0 = datetime(2026, 12, 1, 12, tzinfo=timezone.utc)
LIMIT = 24


class _TikTok:
    """What the budget reads of the client: its clock, and operations shown an hour ago, as
    many as leave each ad account `left`."""

    def __init__(self, left: Mapping[str, int]) -> None:
        self.left = dict(left)

    def now(self) -> datetime:
        return T0

    def operation_history(self, advertiser_id: str, since: datetime) -> dict[str, list[datetime]]:
        used = LIMIT - self.left.get(advertiser_id, 0)
        return {"7100000009": [T0 - timedelta(hours=1)] * used}


def budget_with(left: Mapping[str, int] | None) -> Budget:
    return Budget(0 if left is None else LIMIT, _TikTok(left or {}))


def ask(advertiser_id: str, calls: list[tuple[str, bool]]) -> Ask:
    return Ask(advertiser_id, tuple(calls))


def granted(grants: list[Grant]) -> list[list[bool]]:
    return [list(g.granted) for g in grants]


def test_removals_go_first_then_the_rest_in_order() -> None:
    budget = budget_with({ADV1: 3, ADV2: 24})
    asks = [
        ask(ADV1, [APPEND, REMOVE]),
        ask(ADV1, [APPEND]),
        ask(ADV1, [APPEND, REMOVE]),
        ask(ADV2, [APPEND, REMOVE]),
    ]
    grants = budget.plan(asks)
    assert granted(grants) == [[True, True], [False], [False, True], [True, True]]
    assert [g.refused() for g in grants] == [[], ["APPEND"], ["APPEND"], []]
    assert (budget.left(ADV1), budget.left(ADV2)) == (0, 22)  # net of the plan


def test_an_action_of_an_audience_is_granted_whole_or_not_at_all() -> None:
    # Two groups of files to APPEND (two calls) do not fit in one operation; the next
    # audience's single APPEND does.
    grants = budget_with({ADV1: 1}).plan([ask(ADV1, [APPEND, APPEND]), ask(ADV1, [APPEND])])
    assert granted(grants) == [[False, False], [True]]
    assert grants[0].allowed("APPEND") == 0 and grants[1].allowed("APPEND") == 1


def test_nothing_left_grants_nothing_and_says_when_one_fits() -> None:
    grants = budget_with({ADV1: 0}).plan([ask(ADV1, [REPLACE]), ask(ADV2, [REMOVE])])
    assert granted(grants) == [[False], [False]]
    assert not grants[0].complete
    refusal = grants[0].refusal("7100000001")
    assert str(refusal) == (
        "REPLACE on audience 7100000001 for advertiser 7000000000000000001 failed: 24 of "
        "the 24 update operations of the last 24 h are used (daily_update_operations); the next "
        "fits after 2026-12-02 11:00 UTC"
    )


def test_a_granted_call_is_taken_from_the_budget_when_sent() -> None:
    budget = budget_with({ADV1: 2})
    (grant,) = budget.plan([ask(ADV1, [APPEND, REMOVE])])
    grant.take("7100000001", "APPEND")
    grant.take("7100000001", "REMOVE")
    assert budget.summary() == {ADV1: {"limit": 24, "used": 24, "by_this_run": 2, "left": 0}}


calls = st.lists(
    st.tuples(st.sampled_from(["APPEND", "REMOVE", "REPLACE"]), st.booleans()).map(
        lambda c: (c[0], c[0] == "REMOVE" or (c[0] == "REPLACE" and c[1]))
    ),
    max_size=4,
)
asks_strategy = st.lists(st.tuples(st.sampled_from([ADV1, ADV2]), calls), max_size=12)


@settings(max_examples=300, derandomize=True)
@given(asks_strategy, st.integers(0, 8), st.integers(0, 8))
def test_the_plan_never_overspends_puts_removals_first_and_wastes_nothing(
    spec: list[tuple[str, list[tuple[str, bool]]]], left1: int, left2: int
) -> None:
    left = {ADV1: left1, ADV2: left2}
    budget = budget_with(left)
    grants = budget.plan([ask(adv, list(c)) for adv, c in spec])
    for adv in (ADV1, ADV2):
        mine = [g for g in grants if g.ask.advertiser_id == adv]
        used = sum(sum(g.granted) for g in mine)
        assert used <= left[adv]
        assert budget.left(adv) == left[adv] - used  # the plan is what is left net of
        # Removals first: the removing calls granted are those a plan of removals alone grants.
        alone = budget_with(left).plan([ask(adv, [c for c in g.ask.calls if c[1]]) for g in mine])
        assert [
            [ok for c, ok in zip(g.ask.calls, g.granted, strict=True) if c[1]] for g in mine
        ] == [list(g.granted) for g in alone]
        # Nothing wasted: every action refused would not fit in what is left over.
        spare = left[adv] - used
        for g in mine:
            for action in g.refused():
                need = sum(
                    1
                    for (x, _), ok in zip(g.ask.calls, g.granted, strict=True)
                    if x == action and not ok
                )
                assert need > spare


class _Delivery:
    """Routines that log what they do; one may fail the run when it resumes."""

    def __init__(self, log: list[str], asks: list[tuple[str, Ask]], fail: str = "") -> None:
        self.log, self.asks, self.fail = log, asks, fail
        self.closed = False

    def stage(self) -> Iterator[Routine]:
        for name, ask in self.asks:
            yield self._routine(name, ask)

    def _routine(self, name: str, ask: Ask) -> Routine:
        self.log.append(f"{name} asks")
        try:
            grant = yield ask
            if name == self.fail:
                raise PermanentError(f"{name}", message="the token was revoked", said=False)
            self.log.append(f"{name} sends {list(grant.granted)}")
        finally:
            self.log.append(f"{name} unlocks")

    def close_stage(self) -> None:
        self.closed = True


def test_every_audience_asks_before_any_sends_and_removals_send_first() -> None:
    log: list[str] = []
    delivery = _Delivery(log, [("a", ask(ADV1, [APPEND])), ("b", ask(ADV1, [APPEND, REMOVE]))])
    deliver([delivery], budget_with({ADV1: 1}))
    assert log == [
        "a asks",
        "b asks",
        "b sends [False, True]",
        "b unlocks",
        "a sends [False]",
        "a unlocks",
    ]
    assert delivery.closed


def test_without_a_budget_nothing_waits() -> None:
    log: list[str] = []
    delivery = _Delivery(log, [("a", ask(ADV1, [APPEND])), ("b", ask(ADV1, [REMOVE]))])
    deliver([delivery], budget_with(None))
    assert log == ["a asks", "a sends [True]", "a unlocks", "b asks", "b sends [True]", "b unlocks"]


def test_a_failure_that_stops_the_run_releases_every_waiting_audience() -> None:
    log: list[str] = []
    first = _Delivery(log, [("a", ask(ADV1, [REMOVE]))], fail="a")
    second = _Delivery(log, [("b", ask(ADV1, [APPEND]))])
    with pytest.raises(PermanentError, match="the token was revoked"):
        deliver([first, second], budget_with({ADV1: 24}))
    assert log == ["a asks", "b asks", "a unlocks", "b unlocks"]
    assert first.closed and second.closed


def test_a_call_the_plan_did_not_grant_is_never_taken() -> None:
    budget = budget_with({ADV1: 1})
    (grant,) = budget.plan([ask(ADV1, [APPEND, REMOVE])])
    assert grant.granted == (False, True)
    with pytest.raises(RuntimeError, match="APPEND on audience 7100000001 was not granted"):
        grant.take("7100000001", "APPEND")
    assert budget.summary() == {ADV1: {"limit": 24, "used": 23, "by_this_run": 0, "left": 1}}
