"""One time scale for the waits tests shorten: the client's retry backoff and the sandbox's clock.

TARGET_TIKTOK_AUDIENCES_TIME_SCALE holds the real seconds one second of TikTok's time takes;
unset (production, the demo, the bench) it is 1. The test suite sets it below 1: the client's
retry waits (and their give-up time) shrink by that factor, and the sandbox's clock runs that
much faster, so its windows (a partner audience's warm-up, an update's processing, a file's
expiry, the 24 h limits) pass in the same proportion. Every rule keeps TikTok's value and is
checked as before: only time runs faster. Request timeouts and the write throttle stay in real
seconds: they are about this machine and the network, which no scale makes faster.
"""

from __future__ import annotations

import os
import time

VARIABLE = "TARGET_TIKTOK_AUDIENCES_TIME_SCALE"


def time_scale() -> float:
    """The scale in the environment: real seconds per second of TikTok's time, in (0, 1]."""
    text = os.environ.get(VARIABLE, "")
    if not text:
        return 1.0
    try:
        scale = float(text)
    except ValueError:
        scale = 0.0
    if not 0 < scale <= 1:
        raise ValueError(f"{VARIABLE}: must be a number in (0, 1], such as 0.05; it is {text!r}")
    return scale


def monotonic() -> float:
    """time.monotonic() in seconds of TikTok's time: what waits for TikTok measure."""
    return time.monotonic() / time_scale()


def sleep(seconds: float) -> None:
    """Wait `seconds` of TikTok's time (a pause before asking TikTok again)."""
    time.sleep(seconds * time_scale())
