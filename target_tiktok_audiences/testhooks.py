"""Faults that tests inject into a real run of the CLI; inert unless the variable is set.

TARGET_TIKTOK_AUDIENCES_TEST_FAULT holds one fault:
- `kill:before:STEP:N` / `kill:after:STEP:N`: SIGKILL the process just before, or just after,
  the N-th STEP of the run (a kill between any two calls, as production meets it);
- `kill:during:STEP:N`: SIGKILL the process once the N-th STEP was sent, whatever its answer
  (with the sandbox's `late_create`: a kill while TikTok is still creating the audience);
- `pause:before|during|after:STEP:N`: SIGSTOP the process there (a frozen container, a long
  pause), until the test sends SIGCONT (fencing tests);
- `fail:STEP:N`: the N-th STEP fails with "no space left on device".
STEP is a TikTok write call (`upload_file`, `create_customer_audience`,
`update_customer_audience`, `create_partner_audience`, `map_users`), a snapshot store write
(`in_flight`, `snapshot`) or a line of the rejects file (`rejects`). Only the model-based and
fault tests set it.
"""

from __future__ import annotations

import errno
import os
import signal
from collections import Counter
from typing import TYPE_CHECKING, Any, cast

from target_tiktok_audiences.fencing import WRITE_CALLS

if TYPE_CHECKING:
    from target_tiktok_audiences.client import AudienceAPI

VARIABLE = "TARGET_TIKTOK_AUDIENCES_TEST_FAULT"
# Seconds of an object-storage lock's lease (snapshot.LEASE_SECONDS otherwise): the fencing
# tests pause a run past a lease of seconds, not of minutes.
LEASE_VARIABLE = "TARGET_TIKTOK_AUDIENCES_TEST_LEASE_SECONDS"
_seen: Counter[str] = Counter()


def lease_seconds(default: float) -> float:
    """The lease of object-storage locks: `default`, unless a test set LEASE_VARIABLE."""
    value = os.environ.get(LEASE_VARIABLE, "")
    return float(value) if value else default


def _fault() -> tuple[str, str, str, int] | None:
    """(action, when, step, n) of the configured fault, if any."""
    spec = os.environ.get(VARIABLE, "")
    if not spec:
        return None
    parts = spec.split(":")
    if parts[0] in ("kill", "pause") and len(parts) == 4:
        return parts[0], parts[1], parts[2], int(parts[3])
    if parts[0] == "fail" and len(parts) == 3:
        return "fail", "before", parts[1], int(parts[2])
    raise ValueError(f"{VARIABLE}: use kill:before|during|after:STEP:N or fail:STEP:N")


def checkpoint(when: str, step: str) -> None:
    """Called before and after each step; acts when the configured fault names this one."""
    fault = _fault()
    if fault is None:
        return
    action, at, name, n = fault
    if when == "before":
        _seen[step] += 1  # the N-th step is counted as it starts, whichever side the fault is
    if name != step or at != when or _seen[step] != n:
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if action == "pause":  # SIGSTOP: the whole process waits for the test's SIGCONT
        os.kill(os.getpid(), signal.SIGSTOP)
        return
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class _Faulty:
    """The client, with checkpoints around each write call (and its per-audience views)."""

    def __init__(self, inner: AudienceAPI) -> None:
        self._inner = inner

    def with_stats(self, stats: Any) -> AudienceAPI:
        return wrap(self._inner.with_stats(stats))

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if name not in WRITE_CALLS:
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            checkpoint("before", name)
            try:
                result = value(*args, **kwargs)
            finally:
                checkpoint("during", name)
            checkpoint("after", name)
            return result

        return call


def wrap(client: AudienceAPI) -> AudienceAPI:
    """The client as is, or with checkpoints when a test asked for a fault."""
    if not os.environ.get(VARIABLE):
        return client
    return cast("AudienceAPI", _Faulty(client))
