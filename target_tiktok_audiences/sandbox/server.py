"""Run the sandbox app on a werkzeug threaded server in a daemon thread (tests, demo, bench)."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from .app import SandboxApp
from .clock import Clock
from .faults import FaultRule
from .rules import ADMIN_PATH, BASE_PATH, DAY, DEFAULT_TOKENS, EXTERNAL_ADVERTISER, SandboxConfig
from .store import Store


class _QuietHandler(WSGIRequestHandler):
    """The app logs one line per call itself; werkzeug's access log would repeat it."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def date_time_string(self, timestamp: float | None = None) -> str:
        # The Date header follows the sandbox's clock, which tests move ("tomorrow").
        app = getattr(self.server, "app", None)
        if timestamp is None and isinstance(app, SandboxApp):
            timestamp = app.clock.now()
        return super().date_time_string(timestamp)


class SandboxServer:
    """A running (after ``start()``) sandbox; also a context manager.

    The realism rules default to TikTok's values (or stricter, where TikTok is undocumented); a
    test switches off only the rule it does not exercise, saying why: e.g. ``match_rate=1.0``
    (every user matched), ``update_processing_seconds=0``, ``refusal_wording="sandbox"``,
    ``min_audience_size=1``, ``replace_cooldown_seconds=0``, ``partner_warmup_seconds=0``,
    ``max_updates_per_day=0``, ``mapping_rate_limit=None``, ``file_ttl_seconds=0``,
    ``history_wording="lower"`` (one spelling of the history's undocumented action words).
    """

    def __init__(
        self,
        db_path: str | Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tokens: Mapping[str, Iterable[str]] | None = None,
        min_audience_size: int = 1000,
        replace_cooldown_seconds: float = DAY,
        partner_warmup_seconds: float = 90.0,
        max_updates_per_day: int = 24,
        slow_seconds: float = 5.0,
        max_upload_bytes: int = 50 * 1024 * 1024,
        mapping_rate_limit: int | None = 50,
        max_audiences: int = 400,
        match_rate: float = 0.7,
        refusal_wording: str = "rotate",
        file_ttl_seconds: float = 3_600.0,
        update_processing_seconds: float = 2.0,
        history_wording: str = "rotate",
        faults: Iterable[FaultRule] = (),
        time_scale: float | None = None,
    ) -> None:
        token_map = DEFAULT_TOKENS if tokens is None else tokens
        self.config = SandboxConfig(
            tokens={t: [str(a) for a in ads] for t, ads in token_map.items()},
            min_audience_size=min_audience_size,
            replace_cooldown_seconds=replace_cooldown_seconds,
            partner_warmup_seconds=partner_warmup_seconds,
            max_updates_per_day=max_updates_per_day,
            slow_seconds=slow_seconds,
            max_upload_bytes=max_upload_bytes,
            mapping_rate_limit=mapping_rate_limit,
            max_audiences=max_audiences,
            match_rate=match_rate,
            refusal_wording=refusal_wording,
            file_ttl_seconds=file_ttl_seconds,
            update_processing_seconds=update_processing_seconds,
            history_wording=history_wording,
        )
        # time_scale: the clock's (timescale.py); None: the environment's.
        self.store = Store(db_path, Clock(time_scale))
        self.app = SandboxApp(self.store, self.config)
        for rule in faults:
            self.app.faults.add(rule)
        self.host = host
        self._requested_port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> SandboxServer:
        self._server = make_server(
            self.host, self._requested_port, self.app, threaded=True, request_handler=_QuietHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"tiktok-sandbox-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.app.stopping.set()  # wake `slow` requests so they finish promptly
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None
        self.store.close()

    def __enter__(self) -> SandboxServer:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- addresses ----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("sandbox server is not running")
        return int(self._server.server_port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + BASE_PATH

    @property
    def admin_url(self) -> str:
        return self.url + ADMIN_PATH

    # --- test helpers (direct calls, same effect as the /_sandbox/ endpoints) -----------------

    def audiences(self, advertiser_id: str | None = None) -> list[dict[str, Any]]:
        return self.app.dump_audiences(advertiser_id)

    def audience(self, audience_id: str) -> dict[str, Any]:
        row = self.store.audience(str(audience_id))
        if row is None:
            raise KeyError(audience_id)
        return {
            **self.app.admin_row(row),
            "members": self.members(audience_id),
            "history": self.app.admin_history(str(audience_id)),
        }

    def members(self, audience_id: str) -> dict[str, list[str]]:
        return self.store.members(str(audience_id))

    def calls(self, path: str | None = None) -> list[dict[str, Any]]:
        return [c for c in self.store.calls() if path is None or path in c["path"]]

    def inject(
        self,
        kind: str,
        count: int | None = None,
        rate: float | None = None,
        seed: int = 0,
        paths: list[str] | None = None,
        slow_seconds: float | None = None,
        location: str | None = None,
        message: str | None = None,
    ) -> None:
        """Add a fault rule (kinds in ``faults.KINDS`` or ``code_<N>``); ``location`` is for
        ``redirect``, ``message`` replaces the words of a fault answered with a code."""
        self.app.faults.add(
            FaultRule(
                kind,
                count=count,
                rate=rate,
                seed=seed,
                paths=paths,
                slow_seconds=slow_seconds,
                location=location,
                message=message,
            )
        )

    def clear_faults(self) -> None:
        self.app.clear_faults()

    def add_token(self, token: str, advertiser_ids: Iterable[str]) -> None:
        self.app.add_token(token, list(advertiser_ids))

    def revoke_token(self, token: str) -> None:
        self.app.revoke_token(token)

    def revoke_advertiser(self, token: str, advertiser_id: str) -> None:
        self.app.revoke_advertiser(token, advertiser_id)

    def reset(self) -> None:
        self.app.reset()

    def advance_clock(self, seconds: float) -> None:
        """Move the sandbox clock forward, e.g. 86400 for "next day"."""
        self.app.advance_clock(seconds)

    def edit_members(
        self,
        audience_id: str,
        id_type: str,
        *,
        add: Iterable[str] = (),
        remove: Iterable[str] = (),
    ) -> None:
        """Change members as a person in Ads Manager would: no API call, nothing the target sees."""
        with self.store.transaction() as c:
            delta = self.store.apply_digests(c, str(audience_id), id_type, add)
            delta -= self.store.apply_digests(c, str(audience_id), id_type, remove, remove=True)
            self.store.set_count(c, str(audience_id), delta)

    def delete_audience(self, audience_id: str) -> None:
        """Delete an audience as a person would in Ads Manager."""
        self.app.change_audience(audience_id, delete=True)

    def fail_audience(self, audience_id: str, error_msg: str) -> None:
        """TikTok reports a failed match after accepting the files (audience_details.error_msg)."""
        self.app.change_audience(audience_id, error_msg=error_msg)

    def expire_audience(self, audience_id: str, in_days: float = 0) -> None:
        """Make an audience expire `in_days` from now (0: it has expired)."""
        self.app.change_audience(audience_id, expires_in_days=in_days)

    def share_audience(
        self,
        advertiser_id: str,
        audience_id: str | None = None,
        *,
        name: str = "Shared audience",
        owner_advertiser_id: str = EXTERNAL_ADVERTISER,
        partner: bool = False,
    ) -> str:
        """Share an audience into ``advertiser_id`` (is_creator false there); returns its id.

        Without ``audience_id`` an empty audience owned by ``owner_advertiser_id`` is made first.
        """
        return self.app.share_audience(
            advertiser_id,
            audience_id,
            name=name,
            owner_advertiser_id=owner_advertiser_id,
            partner=partner,
        )

    def seed_audience(
        self,
        advertiser_id: str,
        name: str,
        *,
        expires_in_days: float,
        digests: list[str] | None = None,
        calculate_type: str = "EMAIL_SHA256",
        partner: bool = False,
        retention_in_days: int | None = None,
    ) -> str:
        """An audience of ``advertiser_id`` expiring in ``expires_in_days`` (<= 0: expired)."""
        return self.app.seed_audience(
            advertiser_id,
            name,
            expires_in_days=expires_in_days,
            digests=digests,
            calculate_type=calculate_type,
            partner=partner,
            retention_in_days=retention_in_days,
        )


@contextmanager
def run_sandbox(db_path: str | Path, **options: Any) -> Iterator[SandboxServer]:
    """Start a sandbox for the duration of a ``with`` block; options are SandboxServer's.

    Tokens default to ``sandbox-token`` with advertisers 7000000000000000001 and
    7000000000000000002.
    """
    server = SandboxServer(db_path, **options).start()
    try:
        yield server
    finally:
        server.stop()
