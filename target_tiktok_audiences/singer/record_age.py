"""The SDK's max record age, kept by time on the lean record path (issue 28).

The SDK drains every sink (and so emits STATE) on the first record that comes once its last
full drain is older than Target._MAX_RECORD_AGE_IN_MINUTES: a clock read on every record. The
lean path (fastpath.py) reads a flag instead, which this alarm's timer thread raises when that
time has passed; a trickle of records is drained within the limit at no cost per record.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class AgeAlarm:
    """Calls `ring` (on its own thread) `seconds` after arm(); arming again starts over."""

    def __init__(self, ring: Callable[[], None]) -> None:
        self._ring = ring
        self._timer: threading.Timer | None = None

    @property
    def armed(self) -> bool:
        return self._timer is not None

    def arm(self, seconds: float) -> None:
        self.disarm()
        timer = threading.Timer(max(seconds, 0.0), self._ring)
        timer.daemon = True  # never keeps a finished run's process alive
        timer.name = "max-record-age"
        timer.start()
        self._timer = timer

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
