"""The budget plan across audiences (deliveries/staging.py): removing calls first, within what
each ad account has left, an action of an audience all or none; and the orchestration of the
routines (nothing waits without a budget; a run-stopping failure releases every other
audience)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from target_tiktok_audiences.client import PermanentError
from target_tiktok_audiences.deliveries.staging import Ask, Routine, deliver, grant

ADV1, ADV2 = "7000000000000000001", "7000000000000000002"
APPEND, REMOVE, REPLACE = ("APPEND", False), ("REMOVE", True), ("REPLACE", True)


def granted(asks: list[Ask]) -> list[list[bool]]:
    return [a.granted for a in asks]


def test_removals_go_first_then_the_rest_in_order() -> None:
    asks = [
        Ask(ADV1, [APPEND, REMOVE]),
        Ask(ADV1, [APPEND]),
        Ask(ADV1, [APPEND, REMOVE]),
        Ask(ADV2, [APPEND, REMOVE]),
    ]
    assert grant(asks, {ADV1: 3, ADV2: 24}) == {ADV1: 3, ADV2: 2}
    assert granted(asks) == [[True, True], [False], [False, True], [True, True]]
    assert [a.refused() for a in asks] == [[], ["APPEND"], ["APPEND"], []]


def test_an_action_of_an_audience_is_granted_whole_or_not_at_all() -> None:
    # Two groups of files to APPEND (two calls) do not fit in one operation; the next
    # audience's single APPEND does.
    asks = [Ask(ADV1, [APPEND, APPEND]), Ask(ADV1, [APPEND])]
    assert grant(asks, {ADV1: 1}) == {ADV1: 1}
    assert granted(asks) == [[False, False], [True]]
    assert asks[0].allowed("APPEND") == 0 and asks[1].allowed("APPEND") == 1


def test_nothing_left_grants_nothing() -> None:
    asks = [Ask(ADV1, [REPLACE]), Ask(ADV2, [REMOVE])]
    assert grant(asks, {ADV1: 0}) == {}
    assert granted(asks) == [[False], [False]]
    assert not asks[0].complete


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
    asks = [Ask(adv, list(c)) for adv, c in spec]
    counts = grant(asks, left)
    for adv in (ADV1, ADV2):
        mine = [a for a in asks if a.advertiser_id == adv]
        used = sum(sum(a.granted) for a in mine)
        assert used == counts.get(adv, 0) <= left[adv]
        # Removals first: the removing calls granted are those a plan of removals alone grants.
        alone = [Ask(adv, [c for c in a.calls if c[1]]) for a in mine]
        grant(alone, left)
        assert [[ok for c, ok in zip(a.calls, a.granted, strict=True) if c[1]] for a in mine] == [
            a.granted for a in alone
        ]
        # Nothing wasted: every action refused would not fit in what is left over.
        spare = left[adv] - used
        for a in mine:
            for action in a.refused():
                need = sum(
                    1
                    for (x, _), ok in zip(a.calls, a.granted, strict=True)
                    if x == action and not ok
                )
                assert need > spare


class _Budget:
    """Just what staging.deliver asks of the client: operations left and the plan."""

    def __init__(self, left: dict[str, int] | None) -> None:
        self.left, self.planned = left, dict.fromkeys(left or (), 0)

    def operations_left(self, advertiser_id: str) -> int | None:
        if self.left is None:
            return None
        return self.left[advertiser_id] - self.planned[advertiser_id]

    def plan_operations(self, advertiser_id: str, count: int) -> None:
        self.planned[advertiser_id] += count


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
            yield ask
            if name == self.fail:
                raise PermanentError(f"{name}", message="the token was revoked", said=False)
            self.log.append(f"{name} sends {ask.granted}")
        finally:
            self.log.append(f"{name} unlocks")

    def close_stage(self) -> None:
        self.closed = True


def test_every_audience_asks_before_any_sends_and_removals_send_first() -> None:
    log: list[str] = []
    delivery = _Delivery(log, [("a", Ask(ADV1, [APPEND])), ("b", Ask(ADV1, [APPEND, REMOVE]))])
    deliver([delivery], _Budget({ADV1: 1}))  # type: ignore[arg-type]
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
    delivery = _Delivery(log, [("a", Ask(ADV1, [APPEND])), ("b", Ask(ADV1, [REMOVE]))])
    deliver([delivery], _Budget(None))  # type: ignore[arg-type]
    assert log == ["a asks", "a sends [True]", "a unlocks", "b asks", "b sends [True]", "b unlocks"]


def test_a_failure_that_stops_the_run_releases_every_waiting_audience() -> None:
    log: list[str] = []
    first = _Delivery(log, [("a", Ask(ADV1, [REMOVE]))], fail="a")
    second = _Delivery(log, [("b", Ask(ADV1, [APPEND]))])
    with pytest.raises(PermanentError, match="the token was revoked"):
        deliver([first, second], _Budget({ADV1: 24}))  # type: ignore[arg-type]
    assert log == ["a asks", "b asks", "a unlocks", "b unlocks"]
    assert first.closed and second.closed
