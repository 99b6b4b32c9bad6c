"""SQLite-backed state of the sandbox: tokens, advertisers, uploaded files, audiences, members.

Uploaded files are kept as-is in ``<db>.files/`` and streamed line by line when applied, so
millions of digests never sit in memory. One connection guarded by a lock serialises access from
the threaded server; WAL lets ``sqlite3 <db>`` or ``tiktok-audiences-sandbox show`` read alongside.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .clock import Clock

SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (token TEXT PRIMARY KEY, revoked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS advertisers (advertiser_id TEXT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS token_advertisers (
    token TEXT NOT NULL, advertiser_id TEXT NOT NULL, revoked INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (token, advertiser_id));
CREATE TABLE IF NOT EXISTS files (
    file_path TEXT PRIMARY KEY, advertiser_id TEXT NOT NULL, calculate_type TEXT NOT NULL,
    file_name TEXT NOT NULL, line_count INTEGER NOT NULL, size_bytes INTEGER NOT NULL,
    md5 TEXT NOT NULL, stored_name TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS audiences (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, audience_id TEXT UNIQUE NOT NULL,
    advertiser_id TEXT NOT NULL, name TEXT NOT NULL, audience_type TEXT NOT NULL,
    calculate_type TEXT, retention_in_days INTEGER, member_count INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL, updated_at REAL NOT NULL, visible_at REAL NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS shares (
    audience_id TEXT NOT NULL, advertiser_id TEXT NOT NULL,
    PRIMARY KEY (audience_id, advertiser_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audience_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT, audience_id TEXT NOT NULL, action TEXT NOT NULL,
    file_paths TEXT NOT NULL, member_count INTEGER NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS members (
    audience_id TEXT NOT NULL, id_type TEXT NOT NULL, digest TEXT NOT NULL,
    PRIMARY KEY (audience_id, id_type, digest)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, method TEXT NOT NULL,
    path TEXT NOT NULL, advertiser_id TEXT, code INTEGER, http_status INTEGER,
    users INTEGER, lines INTEGER, files INTEGER, action TEXT, fault TEXT, request_id TEXT);
"""

# Audience ids look like TikTok's numeric strings; offset keeps them long and recognisable.
AUDIENCE_ID_BASE = 7_100_000_000
# An audience is in an advertiser's library when it owns it or it was shared in.
IN_LIBRARY = (
    "(a.advertiser_id = ? OR a.audience_id IN "
    "(SELECT audience_id FROM shares WHERE advertiser_id = ?))"
)


class Store:
    """All sandbox state. Methods are thread-safe; ``transaction()`` groups writes.

    Timestamps come from ``clock`` so that moving the sandbox clock moves every rule with it.
    """

    def __init__(self, db_path: str | Path, clock: Clock | None = None) -> None:
        self.clock = clock or Clock()
        self.db_path = Path(db_path)
        self.files_dir = self.db_path.with_name(self.db_path.name + ".files")
        self.files_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE) so a failed check rolls back.
        self._conn = sqlite3.connect(self.db_path, check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA cache_size=-262144")  # 256 MiB: big random-order PK inserts
        self._conn.executescript(SCHEMA)
        columns = {r[1] for r in self._conn.execute("PRAGMA table_info(audiences)")}
        if "visible_at" not in columns:  # a db written by an older sandbox
            self._conn.execute(
                "ALTER TABLE audiences ADD COLUMN visible_at REAL NOT NULL DEFAULT 0"
            )
        if "expires_at" not in columns:  # set by the admin API; NULL: TikTok's own rule
            self._conn.execute("ALTER TABLE audiences ADD COLUMN expires_at REAL")
        if "error_msg" not in columns:  # set by the admin API: TikTok's word of a failure
            self._conn.execute("ALTER TABLE audiences ADD COLUMN error_msg TEXT")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._conn.execute(sql, tuple(params))]

    def one(self, sql: str, params: Iterable[Any] = ()) -> dict[str, Any] | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    # --- tokens and advertisers -------------------------------------------------------------

    def grant(self, token: str, advertiser_ids: Iterable[str]) -> None:
        """Create or re-enable a token with access to the advertisers (configuration wins)."""
        with self.transaction() as c:
            c.execute(
                "INSERT INTO tokens(token, revoked) VALUES (?, 0) "
                "ON CONFLICT(token) DO UPDATE SET revoked = 0",
                (token,),
            )
            for adv in advertiser_ids:
                c.execute(
                    "INSERT OR IGNORE INTO advertisers VALUES (?, ?)",
                    (adv, f"Sandbox Advertiser {adv}"),
                )
                c.execute(
                    "INSERT INTO token_advertisers VALUES (?, ?, 0) "
                    "ON CONFLICT(token, advertiser_id) DO UPDATE SET revoked = 0",
                    (token, adv),
                )

    def token_ok(self, token: str) -> bool:
        sql = "SELECT 1 FROM tokens WHERE token = ? AND revoked = 0"
        return self.one(sql, (token,)) is not None

    def can_access(self, token: str, advertiser_id: str) -> bool:
        sql = (
            "SELECT 1 FROM token_advertisers WHERE token = ? AND advertiser_id = ? AND revoked = 0"
        )
        return self.one(sql, (token, advertiser_id)) is not None

    def revoke_token(self, token: str) -> bool:
        with self.transaction() as c:
            return c.execute("UPDATE tokens SET revoked = 1 WHERE token = ?", (token,)).rowcount > 0

    def revoke_advertiser(self, token: str, advertiser_id: str) -> bool:
        sql = "UPDATE token_advertisers SET revoked = 1 WHERE token = ? AND advertiser_id = ?"
        with self.transaction() as c:
            return c.execute(sql, (token, advertiser_id)).rowcount > 0

    def advertiser(self, advertiser_id: str) -> dict[str, Any] | None:
        return self.one("SELECT * FROM advertisers WHERE advertiser_id = ?", (advertiser_id,))

    # --- files ------------------------------------------------------------------------------

    def add_file(self, row: Mapping[str, Any]) -> None:
        cols = ", ".join(row)
        marks = ", ".join("?" * len(row))
        with self.transaction() as c:
            c.execute(f"INSERT INTO files ({cols}) VALUES ({marks})", tuple(row.values()))

    def file(self, file_path: str) -> dict[str, Any] | None:
        return self.one("SELECT * FROM files WHERE file_path = ?", (file_path,))

    def iter_digests(self, stored_name: str) -> Iterator[str]:
        """Stream the digests of a stored upload (already validated at upload time)."""
        with (self.files_dir / stored_name).open("rb") as fh:
            for line in fh:
                yield line.rstrip(b"\n").decode("ascii")

    # --- audiences --------------------------------------------------------------------------

    def create_audience(
        self,
        c: sqlite3.Connection,
        *,
        advertiser_id: str,
        name: str,
        audience_type: str,
        calculate_type: str | None,
        retention_in_days: int | None,
        visible_after: float = 0.0,
    ) -> str:
        """Insert an audience; ``visible_after`` seconds pass before lists and gets show it."""
        now = self.clock.now()
        cur = c.execute(
            "INSERT INTO audiences (audience_id, advertiser_id, name, audience_type, "
            "calculate_type, retention_in_days, created_at, updated_at, visible_at) "
            "VALUES ('pending', ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                advertiser_id,
                name,
                audience_type,
                calculate_type,
                retention_in_days,
                now,
                now,
                now + visible_after,
            ),
        )
        audience_id = str(AUDIENCE_ID_BASE + int(cur.lastrowid or 0))
        sql = "UPDATE audiences SET audience_id = ? WHERE seq = ?"
        c.execute(sql, (audience_id, cur.lastrowid))
        return audience_id

    def audience(self, audience_id: str) -> dict[str, Any] | None:
        return self.one("SELECT * FROM audiences WHERE audience_id = ?", (audience_id,))

    def audiences(
        self, advertiser_id: str | None = None, *, limit: int = -1, offset: int = 0
    ) -> list[dict[str, Any]]:
        where, params = ("WHERE advertiser_id = ?", [advertiser_id]) if advertiser_id else ("", [])
        sql = f"SELECT * FROM audiences {where} ORDER BY seq DESC LIMIT ? OFFSET ?"
        return self.query(sql, [*params, limit, offset])

    def library(
        self, advertiser_id: str, *, limit: int = -1, offset: int = 0
    ) -> list[dict[str, Any]]:
        """What ``dmp/custom_audience/list`` shows: owned and shared-in audiences, once visible."""
        sql = (
            f"SELECT a.* FROM audiences a WHERE {IN_LIBRARY} AND a.visible_at <= ? "
            "ORDER BY a.seq DESC LIMIT ? OFFSET ?"
        )
        return self.query(sql, (advertiser_id, advertiser_id, self.clock.now(), limit, offset))

    def count_library(self, advertiser_id: str) -> int:
        sql = f"SELECT count(*) AS n FROM audiences a WHERE {IN_LIBRARY} AND a.visible_at <= ?"
        row = self.one(sql, (advertiser_id, advertiser_id, self.clock.now()))
        return int(row["n"]) if row else 0

    def count_audiences(self, advertiser_id: str) -> int:
        """Audiences counted against the per-account cap: owned (visible or not) and shared-in."""
        sql = f"SELECT count(*) AS n FROM audiences a WHERE {IN_LIBRARY}"
        row = self.one(sql, (advertiser_id, advertiser_id))
        return int(row["n"]) if row else 0

    def set_expiry(self, audience_id: str, expires_at: float) -> None:
        with self.transaction() as c:
            sql = "UPDATE audiences SET expires_at = ? WHERE audience_id = ?"
            c.execute(sql, (expires_at, audience_id))

    def set_error(self, audience_id: str, error_msg: str | None) -> None:
        with self.transaction() as c:
            sql = "UPDATE audiences SET error_msg = ? WHERE audience_id = ?"
            c.execute(sql, (error_msg, audience_id))

    def delete_audience(self, audience_id: str) -> None:
        """What deleting it in Ads Manager does: gone from every list, members and all."""
        with self.transaction() as c:
            for table in ("audiences", "shares", "audience_history", "members"):
                c.execute(f"DELETE FROM {table} WHERE audience_id = ?", (audience_id,))

    def share(self, audience_id: str, advertiser_id: str) -> None:
        with self.transaction() as c:
            c.execute("INSERT OR IGNORE INTO shares VALUES (?, ?)", (audience_id, advertiser_id))

    def shared_with(self, audience_id: str) -> list[str]:
        sql = "SELECT advertiser_id FROM shares WHERE audience_id = ? ORDER BY advertiser_id"
        return [r["advertiser_id"] for r in self.query(sql, (audience_id,))]

    def apply_digests(
        self,
        c: sqlite3.Connection,
        audience_id: str,
        id_type: str,
        digests: Iterable[str],
        *,
        remove: bool = False,
    ) -> int:
        """Add (duplicates collapse on the primary key) or remove digests; returns rows changed.

        Digests go through an unindexed temp table first and are merged in key order: SQLite
        sorts on disk, so memory stays flat and big files apply ~1.6x faster than row by row.
        """
        c.execute("CREATE TEMP TABLE IF NOT EXISTS staging (digest TEXT NOT NULL)")
        c.execute("DELETE FROM staging")
        c.executemany("INSERT INTO staging VALUES (?)", ((d,) for d in digests))
        if remove:
            sql = (
                "DELETE FROM members WHERE audience_id = ? AND id_type = ? "
                "AND digest IN (SELECT digest FROM staging)"
            )
        else:
            sql = "INSERT OR IGNORE INTO members SELECT ?, ?, digest FROM staging ORDER BY digest"
        changed = c.execute(sql, (audience_id, id_type)).rowcount
        c.execute("DELETE FROM staging")
        return changed

    def matched_count(self, c: sqlite3.Connection | None, audience_id: str, rate: float) -> int:
        """Members TikTok matched: those whose digest falls under `rate` (hex digests are
        uniform, so a prefix bound keeps the share, deterministically and in SQL)."""
        if rate >= 1:
            sql, params = "SELECT count(*) FROM members WHERE audience_id = ?", (audience_id,)
        else:
            bound = f"{max(0, int(rate * 0x10000)):04x}"
            sql = "SELECT count(*) FROM members WHERE audience_id = ? AND digest < ?"
            params = (audience_id, bound)  # type: ignore[assignment]
        if c is not None:
            return int(c.execute(sql, params).fetchone()[0])
        row = self.query(sql.replace("count(*)", "count(*) AS n"), params)
        return int(row[0]["n"])

    def backdate(self, audience_id: str, seconds: float) -> None:
        """Move an audience's creation and last use into the past (seeding expiry)."""
        with self.transaction() as c:
            c.execute(
                "UPDATE audiences SET created_at = created_at - ?, updated_at = updated_at - ? "
                "WHERE audience_id = ?",
                (seconds, seconds, audience_id),
            )
            c.execute(
                "UPDATE audience_history SET created_at = created_at - ? WHERE audience_id = ?",
                (seconds, audience_id),
            )

    def clear_members(self, c: sqlite3.Connection, audience_id: str) -> int:
        return c.execute("DELETE FROM members WHERE audience_id = ?", (audience_id,)).rowcount

    def set_count(self, c: sqlite3.Connection, audience_id: str, delta: int) -> int:
        c.execute(
            "UPDATE audiences SET member_count = member_count + ?, updated_at = ? "
            "WHERE audience_id = ?",
            (delta, self.clock.now(), audience_id),
        )
        row = c.execute(
            "SELECT member_count FROM audiences WHERE audience_id = ?", (audience_id,)
        ).fetchone()
        return int(row[0])

    def add_history(
        self,
        c: sqlite3.Connection,
        audience_id: str,
        action: str,
        file_paths: list[str],
        count: int,
    ) -> None:
        c.execute(
            "INSERT INTO audience_history (audience_id, action, file_paths, member_count, "
            "created_at) VALUES (?, ?, ?, ?, ?)",
            (audience_id, action, json.dumps(file_paths), count, self.clock.now()),
        )

    def history(self, audience_id: str) -> list[dict[str, Any]]:
        sql = "SELECT * FROM audience_history WHERE audience_id = ? ORDER BY id"
        return self.query(sql, (audience_id,))

    def last_action_time(self, audience_id: str, actions: Iterable[str]) -> float | None:
        actions = tuple(actions)
        marks = ", ".join("?" * len(actions))
        row = self.one(
            "SELECT max(created_at) AS t FROM audience_history "
            f"WHERE audience_id = ? AND action IN ({marks})",
            (audience_id, *actions),
        )
        return row["t"] if row else None

    def actions_since(
        self, advertiser_id: str, actions: Iterable[str], since: float
    ) -> tuple[int, float | None]:
        """(count, oldest time) of these actions on the advertiser's audiences after ``since``."""
        actions = tuple(actions)
        marks = ", ".join("?" * len(actions))
        row = self.one(
            "SELECT count(*) AS n, min(h.created_at) AS t FROM audience_history h "
            "JOIN audiences a USING (audience_id) "
            f"WHERE a.advertiser_id = ? AND h.action IN ({marks}) AND h.created_at > ?",
            (advertiser_id, *actions, since),
        )
        return (int(row["n"]), row["t"]) if row else (0, None)

    def members(self, audience_id: str) -> dict[str, list[str]]:
        """All members as {id_type: sorted digests}; for tests and the admin API."""
        out: dict[str, list[str]] = {}
        with self._lock:
            rows = self._conn.execute(
                "SELECT id_type, digest FROM members WHERE audience_id = ? "
                "ORDER BY id_type, digest",
                (audience_id,),
            )
            for id_type, digest in rows:
                out.setdefault(id_type, []).append(digest)
        return out

    # --- call log and reset -----------------------------------------------------------------

    def log_call(self, row: Mapping[str, Any]) -> None:
        cols = ", ".join(row)
        marks = ", ".join("?" * len(row))
        with self.transaction() as c:
            c.execute(
                f"INSERT INTO calls (ts, {cols}) VALUES (?, {marks})",
                (self.clock.now(), *row.values()),
            )

    def calls(self) -> list[dict[str, Any]]:
        return self.query("SELECT * FROM calls ORDER BY id")

    def reset(self) -> None:
        """Forget everything (tokens included); the caller re-grants configured tokens."""
        with self.transaction() as c:
            for table in (
                "tokens",
                "advertisers",
                "token_advertisers",
                "files",
                "audiences",
                "shares",
                "audience_history",
                "members",
                "calls",
            ):
                c.execute(f"DELETE FROM {table}")
            # Keep audience ids unique across resets so stale ids held by a client never match.
        shutil.rmtree(self.files_dir, ignore_errors=True)
        self.files_dir.mkdir(parents=True, exist_ok=True)
