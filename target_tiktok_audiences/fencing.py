"""Fencing: a run that cannot prove it still holds an audience's lock sends nothing more to it.

An object-storage lock is a lease (snapshot.py): a run paused past it (SIGSTOP, a frozen
container, a long pause of the process) may find that another run took the lock over and
delivered meanwhile. Each write call of the audience's client view therefore checks the lease
first (and the snapshot store checks it before each write): the moment it is lost, the audience
is deferred with one line, and no STATE is emitted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from target_tiktok_audiences.client import AudienceAPI
    from target_tiktok_audiences.snapshot import Lease

# The calls that change something at TikTok (testhooks puts its checkpoints around them too).
WRITE_CALLS = frozenset(
    {
        "upload_file",
        "create_customer_audience",
        "update_customer_audience",
        "create_partner_audience",
        "map_users",
    }
)


class _Fenced:
    """The client, each write call preceded by a check of the lease."""

    def __init__(self, inner: AudienceAPI, lease: Lease) -> None:
        self._inner = inner
        self._lease = lease

    def with_stats(self, stats: Any) -> AudienceAPI:
        return fenced(self._inner.with_stats(stats), self._lease)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if name not in WRITE_CALLS:
            return value
        lease = self._lease

        def call(*args: Any, **kwargs: Any) -> Any:
            lease.check()  # LeaseLost: this audience is deferred, nothing more is sent
            return value(*args, **kwargs)

        return call


def fenced(client: AudienceAPI, lease: Lease) -> AudienceAPI:
    """`client` whose write calls go out only while `lease` holds."""
    return cast("AudienceAPI", _Fenced(client, lease))
