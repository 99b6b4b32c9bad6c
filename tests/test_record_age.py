"""Max record age by time (issue 28): a trickle of records is drained, and its STATE emitted,
once the last full drain is older than the SDK's limit, however few records came."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from target_tiktok_audiences.sandbox.server import run_sandbox
from target_tiktok_audiences.singer.record_age import AgeAlarm
from target_tiktok_audiences.target import TargetTikTokAudiences

from helpers import (
    ADV1,
    base_config,
    record_msg,
    sandbox_windows,
    schema_msg,
    sha256,
    state_msg,
)

# The SDK's limit is 5 minutes; scaled to half a second here.
LIMIT_MINUTES = 0.5 / 60
INCREMENTAL = {
    "stream": "people",
    "audience_name": "People",
    "sync_mode": "incremental",
    "identifiers": {"EMAIL_SHA256": "email"},
}
# A mirror without key property: its records go through a lane (reader.Lane); its STATE
# waits for the end of input (the whole set is delivered then), its drains do not.
MIRROR = {**INCREMENTAL, "sync_mode": "mirror"}


def test_the_alarm_rings_once_after_its_seconds_and_not_when_disarmed() -> None:
    rang: list[int] = []
    done = threading.Event()

    def ring() -> None:
        rang.append(1)
        done.set()

    alarm = AgeAlarm(ring)
    assert not alarm.armed
    alarm.arm(0.05)
    assert alarm.armed
    assert done.wait(10)
    assert rang == [1]
    alarm.arm(60)
    alarm.disarm()
    assert not alarm.armed
    alarm.arm(0.0)  # the limit already passed: at once
    assert done.wait(10)
    alarm.disarm()


@pytest.mark.parametrize(
    ("mapping", "key", "lane"), [(INCREMENTAL, "id", False), (MIRROR, None, True)]
)
def test_a_trickle_is_drained_with_its_state_within_the_max_record_age(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    mapping: dict[str, Any],
    key: str | None,
    lane: bool,
) -> None:
    monkeypatch.setattr(TargetTikTokAudiences, "_MAX_RECORD_AGE_IN_MINUTES", LIMIT_MINUTES)
    # No warm-up: the first drain maps into the audience it creates (not what is tested here).
    with run_sandbox(
        tmp_path / "sandbox.db", **sandbox_windows(partner_warmup_seconds=0)
    ) as sandbox:
        config = base_config(sandbox, advertiser_ids=[ADV1], audiences=[mapping])
        target = TargetTikTokAudiences(config=config, validate_config=True)
        rang = threading.Event()
        ring, drain_all = target._age_rang, target.drain_all
        read: list[Any] = []  # the records read so far
        drains: list[Any] = []  # the last record read at each full drain

        def rung() -> None:
            ring()
            rang.set()

        def drained(**kwargs: Any) -> None:
            drains.append(read[-1])
            drain_all(**kwargs)

        monkeypatch.setattr(target, "_age_rang", rung)
        monkeypatch.setattr(target, "drain_all", drained)
        lanes: list[bool] = []
        seen: list[Any] = []  # (the last record read, the STATE lines written since)

        def states() -> list[Any]:
            return [json.loads(line) for line in capsys.readouterr().out.splitlines()]

        def trickle() -> Iterator[str]:
            yield json.dumps(schema_msg("people", ["email"], key=key)) + "\n"
            for i in (0, 1, 2, 9):
                read.append(i)
                yield json.dumps(record_msg("people", {"id": i, "email": f"u{i}@x.io"})) + "\n"
                yield json.dumps(state_msg({"people": i})) + "\n"
                seen.append((i, states()))
                lanes.append("people" in target._lanes)
                # The tap is quiet until the last drain is older than the limit (no sleep:
                # the alarm's own event, half a second after that drain).
                while i != 9 and not target._aged:
                    assert rang.wait(30)
                    rang.clear()

        target.listen(trickle())  # type: ignore[arg-type]
        assert lanes[1:] == [lane] * 3
        # Each record after a quiet limit drains all (the first one too, when the limit
        # passed before it); the end of input twice (ours, then the SDK's).
        assert drains[-2:] == [9, 9]
        assert drains[:-2] in ([1, 2, 9], [0, 1, 2, 9])
        assert not target._age_alarm.armed  # disarmed at the end of input
        (audience,) = sandbox.audiences(ADV1)
        emails = [f"u{i}@x.io" for i in (0, 1, 2, 9)]
        assert audience["members"] == {"EMAIL_SHA256": sorted(map(sha256, emails))}
        if lane:  # a mirror's set is complete at the end of input only
            assert seen[-1] == (9, []) and states() == [{"people": 9}]
            return
        # The STATE of what each drain delivered is written before the next record is read.
        seen.append(("end", states()))
        assert seen == [
            (0, []),
            (1, [{"people": 0}]),
            (2, [{"people": 1}]),
            (9, [{"people": 2}]),
            ("end", [{"people": 9}]),
        ]
