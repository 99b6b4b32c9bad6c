"""The sandbox's clock: wall time plus an offset that tests move forward ("next day")."""

from __future__ import annotations

import threading
import time


class Clock:
    """Every time-dependent rule of the sandbox reads ``now()``; ``advance()`` skips ahead.

    Real time keeps running underneath, so short windows (a 1 s warm-up) still pass by waiting.
    """

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return time.time() + self._offset

    def advance(self, seconds: float) -> float:
        """Move the clock forward (never back: time-based rules assume it only grows)."""
        if seconds < 0:
            raise ValueError("advance_seconds: must be >= 0; the sandbox clock never goes back")
        with self._lock:
            self._offset += seconds
            return self._offset

    @property
    def offset(self) -> float:
        with self._lock:
            return self._offset

    def reset(self) -> None:
        with self._lock:
            self._offset = 0.0
