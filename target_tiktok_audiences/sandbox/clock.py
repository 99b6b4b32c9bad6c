"""The sandbox's clock: wall time plus an offset that tests move forward ("next day")."""

from __future__ import annotations

import threading
import time

from target_tiktok_audiences.timescale import time_scale


class Clock:
    """Every time-dependent rule of the sandbox reads ``now()``; ``advance()`` skips ahead.

    Real time keeps running underneath, so short windows (a 1 s warm-up) still pass by waiting.
    Under a time scale below 1 (timescale.py: tests) it runs 1/scale times as fast from its
    start, so every window passes in that share of real time and each rule keeps its value.
    """

    def __init__(self, scale: float | None = None) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()
        self.scale = time_scale() if scale is None else scale
        self._start = time.time()

    def now(self) -> float:
        with self._lock:
            real = time.time()
            return real + (real - self._start) * (1 / self.scale - 1) + self._offset

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
