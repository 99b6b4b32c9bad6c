"""A throwaway PostgreSQL cluster for the demo and the end-to-end tests (stdlib only).

initdb in a private temp dir, a free TCP port on 127.0.0.1 with trust auth, the unix socket in
the same dir, fsync off. PostgreSQL refuses to run as root, so when we are root the cluster
belongs to an unprivileged user (``postgres`` when the Debian package created it, else a
dedicated ``tta-pg`` user that we create): a fresh CI machine has none of this set up.

Used by ``demo/run_demo.py`` (imported as a sibling module) and by ``tests/pg.py`` (loaded by
file path), so it must not import anything outside the standard library.
"""

from __future__ import annotations

import glob
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SUPERUSER = "postgres"  # the database role initdb creates; not the OS user
PASSWORD = "postgres"  # trust auth ignores it; tap-postgres wants one in the URL
FALLBACK_OS_USER = "tta-pg"


class PostgresNotFound(RuntimeError):
    """initdb / pg_ctl / psql are not installed (run scripts/ensure-postgres)."""


def find_bindir() -> Path | None:
    """The directory holding initdb, pg_ctl and psql: PATH first, then Debian's layout."""
    on_path = shutil.which("initdb")
    candidates = [Path(on_path).resolve().parent] if on_path else []
    # Debian/Ubuntu keep the server binaries off PATH; take the newest major version.
    candidates += sorted(
        (Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")),
        key=lambda p: [int(x) if x.isdigit() else 0 for x in p.parent.name.split(".")],
        reverse=True,
    )
    for bindir in candidates:
        if all((bindir / tool).exists() for tool in ("initdb", "pg_ctl", "postgres")):
            return bindir
    return None


def _psql_path(bindir: Path) -> str:
    found = bindir / "psql"
    if found.exists():
        return str(found)
    on_path = shutil.which("psql")
    if on_path is None:
        raise PostgresNotFound("psql not found; install the PostgreSQL client")
    return on_path


def free_port() -> int:
    """A port free right now; the caller retries if another process takes it first."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _os_user() -> str | None:
    """None when we may run the server ourselves; else the unprivileged user to run it as."""
    if os.geteuid() != 0:
        return None
    for name in (SUPERUSER, FALLBACK_OS_USER):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    # A fresh machine without the Debian package's user: make a system user for the cluster.
    subprocess.run(
        [
            "useradd",
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            FALLBACK_OS_USER,
        ],
        check=True,
        capture_output=True,
    )
    return FALLBACK_OS_USER


def _as_user(user: str | None, argv: Sequence[str]) -> list[str]:
    if user is None:
        return list(argv)
    if shutil.which("runuser"):
        return ["runuser", "-u", user, "--", *argv]
    # su needs a shell: quote every argument.
    return ["su", "-s", "/bin/sh", user, "-c", shlex.join(argv)]


@dataclass
class PostgresCluster:
    """A running cluster; ``url(db)`` gives a SQLAlchemy/libpq URL for tap-postgres."""

    bindir: Path
    root: Path
    port: int
    os_user: str | None
    host: str = "127.0.0.1"
    user: str = SUPERUSER

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def logfile(self) -> Path:
        return self.root / "postgres.log"

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}:{PASSWORD}@{self.host}:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL through psql over TCP (trust auth); stops at the first error."""
        proc = subprocess.run(
            [
                _psql_path(self.bindir),
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                database,
            ],
            input=sql,
            text=True,
            capture_output=True,
            env={**os.environ, "PGCONNECT_TIMEOUT": "10"},
        )
        if proc.returncode != 0:
            raise RuntimeError(f"psql failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    def create_database(self, name: str) -> str:
        self.psql(f'CREATE DATABASE "{name}";')
        return self.url(name)

    def stop(self) -> None:
        subprocess.run(
            _as_user(
                self.os_user,
                [
                    str(self.bindir / "pg_ctl"),
                    "-D",
                    str(self.datadir),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ],
            ),
            capture_output=True,
        )


def _start(bindir: Path, root: Path, os_user: str | None, attempts: int = 5) -> PostgresCluster:
    last = ""
    for _ in range(attempts):
        port = free_port()
        options = (
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=40"
        )
        logfile = root / "postgres.log"
        proc = subprocess.run(
            _as_user(
                os_user,
                [
                    str(bindir / "pg_ctl"),
                    "-D",
                    str(root / "data"),
                    "-o",
                    options,
                    "-l",
                    str(logfile),
                    "-w",
                    "-t",
                    "60",
                    "start",
                ],
            ),
            capture_output=True,
            text=True,
        )
        if proc.returncode == 0:
            return PostgresCluster(bindir=bindir, root=root, port=port, os_user=os_user)
        # Most likely the port was taken between free_port() and bind: try another one.
        last = proc.stderr + (logfile.read_text() if logfile.exists() else "")
        time.sleep(0.2)
    raise RuntimeError(f"PostgreSQL did not start after {attempts} attempts:\n{last[-2000:]}")


@contextmanager
def postgres_cluster(parent: str | os.PathLike[str] | None = None) -> Iterator[PostgresCluster]:
    """Start a fresh cluster for the duration of a ``with`` block, then remove it.

    ``parent`` must be traversable by the cluster's OS user; by default the system temp dir
    (pytest's tmp dirs are private to root, so they will not do when we run as root).
    """
    bindir = find_bindir()
    if bindir is None:
        raise PostgresNotFound(
            "PostgreSQL server binaries (initdb, pg_ctl) not found; run scripts/ensure-postgres"
        )
    os_user = _os_user()
    root = Path(tempfile.mkdtemp(prefix="tta-pg-", dir=parent))
    if os_user is not None:
        entry = pwd.getpwnam(os_user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    cluster: PostgresCluster | None = None
    try:
        init = subprocess.run(
            _as_user(
                os_user,
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(root / "data"),
                    "-U",
                    SUPERUSER,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ],
            ),
            capture_output=True,
            text=True,
        )
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {init.stderr.strip() or init.stdout.strip()}")
        cluster = _start(bindir, root, os_user)
        yield cluster
    finally:
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
