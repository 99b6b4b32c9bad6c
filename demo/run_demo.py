"""The demo: `meltano run tap-postgres target-tiktok-audiences` end to end, on this machine.

    make demo        (or: .venv/bin/python demo/run_demo.py)

1. starts the bundled TikTok API emulator (`tiktok-audiences-sandbox`, a free port, a fresh
   database in demo/.work/run/sandbox.db);
2. starts a throwaway PostgreSQL with a `users` table of messy emails and phone numbers;
3. runs the pipeline with this repository's meltano.yml (environment `sandbox`);
4. deletes some users and runs it again: the mirror audiences follow the table;
5. prints the audiences the emulator now holds (`meltano invoke tiktok-audiences-sandbox:show`).

Everything it starts is stopped on exit, also on Ctrl-C. It runs any number of times: each run
starts from an empty TikTok and an empty Meltano state (demo/.work/run/ is recreated), and only
Meltano's plugin installs (demo/.work/meltano/) are kept, so the second run is faster. Needs
PostgreSQL's server binaries (`bash scripts/ensure-postgres` installs them).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from pgcluster import PostgresCluster, PostgresNotFound, postgres_cluster

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "demo" / ".work"
# One demo run's state: sandbox db (and its `.files/` upload dir), Meltano's system db (job
# state), the target's user data dir. Recreated by every run, so no run sees the one before.
RUN = WORK / "run"
BIN = Path(sys.executable).parent
USERS = 3000  # TikTok (and the emulator) needs 1,000 *matched* users, about 70% of them
REMOVED = 120
SEED = 20240601  # fixed: the demo prints the same numbers every time


def say(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def tool(name: str) -> str:
    found = BIN / name
    if found.exists():
        return str(found)
    on_path = shutil.which(name)
    if on_path is None:
        sys.exit(f"{name} not found; run `make install` first")
    return on_path


# -- the data -------------------------------------------------------------------------------

FIRST = [
    "Jane",
    "John",
    "Mary",
    "Ahmed",
    "Li",
    "Sofia",
    "Noah",
    "Emma",
    "Lucas",
    "Aiko",
    "Omar",
    "Chloe",
    "Mateo",
    "Ines",
    "Ravi",
    "Zoe",
]
LAST = ["Doe", "Smith", "Garcia", "Chen", "Okafor", "Rossi", "Novak", "Kim", "Silva", "Haddad"]
DOMAINS = ["gmail.com", "example.com", "example.org", "mail.example.net", "yahoo.com"]


def messy_users(n: int, seed: int) -> list[tuple[int, str, str | None, str | None]]:
    """Rows as a CRM would have them: mixed case, stray spaces, national and E.164 phones,
    a few broken values. The target normalises, validates and hashes them."""
    rng = random.Random(seed)
    rows = []
    for i in range(1, n + 1):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        email: str | None = f"{first}.{last}{i}@{rng.choice(DOMAINS)}"
        email = rng.choice([email, email.upper(), f"  {email} ", email.lower()])
        area, line = rng.randint(201, 989), rng.randint(0, 9999)
        phone: str | None = rng.choice(
            [
                f"({area}) 555-{line:04d}",
                f"{area}.555.{line:04d}",
                f"+1{area}555{line:04d}",
                f"+1 {area} 555 {line:04d}",
                f"+44 20 7946 {line:04d}",
            ]
        )
        roll = rng.random()
        if roll < 0.04:
            email = "not-an-email"
        elif roll < 0.08:
            email = None
        elif roll < 0.11:
            phone = "12"
        elif roll < 0.16:
            phone = None
        rows.append((i, f"{first} {last}", email, phone))
    return rows


def sql_literal(value: str | None) -> str:
    return "NULL" if value is None else "'" + value.replace("'", "''") + "'"


def load_users(pg: PostgresCluster, database: str) -> None:
    rows = messy_users(USERS, SEED)
    values = ",\n".join(
        f"({i}, {sql_literal(name)}, {sql_literal(email)}, {sql_literal(phone)})"
        for i, name, email, phone in rows
    )
    pg.psql(
        "CREATE TABLE users (id integer PRIMARY KEY, name text, email text, phone text);\n"
        f"INSERT INTO users VALUES\n{values};",
        database,
    )
    sample = pg.psql("SELECT id, email, phone FROM users ORDER BY id LIMIT 6;", database)
    print("    id | email | phone   (first rows, as stored)")
    for line in sample.strip().splitlines():
        print("    " + line.replace("|", " | "))


# -- the sandbox ----------------------------------------------------------------------------


@contextmanager
def sandbox(db: Path) -> Iterator[str]:
    """Run the emulator CLI on a free port; yield its base URL."""
    log = (RUN / "sandbox.log").open("w")
    proc = subprocess.Popen(
        [tool("tiktok-audiences-sandbox"), "--port", "0", "--db", str(db)],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()  # the CLI prints its URL first
        if not base_url.startswith("http"):
            raise RuntimeError(f"sandbox did not start; see {RUN / 'sandbox.log'}")
        yield base_url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


# -- Meltano --------------------------------------------------------------------------------


def meltano(args: list[str], env: dict[str, str]) -> None:
    cmd = [tool("meltano"), *args]
    print("    $ meltano " + " ".join(args), flush=True)
    result = subprocess.run(cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        sys.exit(f"meltano {' '.join(args)} failed with exit code {result.returncode}")


def meltano_env(pg_url: str, api_base_url: str, db: Path) -> dict[str, str]:
    # Keep the user's shell settings for these plugins out of the demo.
    prefixes = ("TAP_POSTGRES", "TARGET_TIKTOK_AUDIENCES", "MELTANO_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(
        {
            "MELTANO_PROJECT_ROOT": str(REPO),
            "MELTANO_SYS_DIR_ROOT": str(WORK / "meltano"),  # plugin venvs, kept between runs
            # ... but not the job state: a bookmark of the last demo must not shape this one.
            "MELTANO_DATABASE_URI": f"sqlite:///{RUN / 'meltano.db'}",
            # Where the target keeps per-audience state by default (platformdirs' user data
            # dir, e.g. mirror snapshots); snapshot_url says it on every OS once declared.
            "XDG_DATA_HOME": str(RUN / "data"),
            "TARGET_TIKTOK_AUDIENCES_SNAPSHOT_URL": str(RUN / "snapshots"),
            "MELTANO_ENVIRONMENT": "sandbox",
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            "TAP_POSTGRES_SQLALCHEMY_URL": pg_url,
            # meltano.yml's sandbox environment says port 8765; ours runs on a free port.
            "TARGET_TIKTOK_AUDIENCES_API_BASE_URL": api_base_url,
            "TIKTOK_AUDIENCES_SANDBOX_DB": str(db),
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
    )
    return env


def show(env: dict[str, str]) -> None:
    # Through meltano.yml's utility entry, as in a Meltano project; its db is ours.
    meltano(["invoke", "tiktok-audiences-sandbox:show"], env)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds the with-blocks: servers are stopped


def main() -> int:
    signal.signal(signal.SIGTERM, _terminate)
    # Each demo starts from an empty TikTok: the sandbox keeps its uploads in a directory
    # next to its db (sandbox.db.files/), so the whole run directory goes, not just the db.
    shutil.rmtree(RUN, ignore_errors=True)
    RUN.mkdir(parents=True)
    db = RUN / "sandbox.db"
    started = time.monotonic()

    say("Starting the TikTok API emulator (tiktok-audiences-sandbox)")
    try:
        with sandbox(db) as api_base_url:
            print(
                f"    {api_base_url}  (token sandbox-token, advertisers "
                "7000000000000000001 and 7000000000000000002)"
            )
            say("Starting a throwaway PostgreSQL with a messy `users` table")
            with postgres_cluster() as pg:
                pg.create_database("crm")
                load_users(pg, "crm")
                env = meltano_env(pg.url("crm"), api_base_url, db)

                say(
                    "Installing the plugins (tap-postgres from PyPI, the target from this "
                    "checkout; fast after the first time)"
                )
                meltano(["install"], env)

                say("Run 1: meltano run tap-postgres target-tiktok-audiences")
                meltano(["run", "tap-postgres", "target-tiktok-audiences"], env)
                show(env)

                say(f"{REMOVED} users leave (DELETE FROM users); run 2 mirrors the table")
                pg.psql(
                    f"DELETE FROM users WHERE id % {USERS // REMOVED} = 0 "
                    f"AND id <= {REMOVED * (USERS // REMOVED)};",
                    "crm",
                )
                meltano(["run", "tap-postgres", "target-tiktok-audiences"], env)

                say(
                    "The audiences in the emulator (meltano invoke "
                    "tiktok-audiences-sandbox:show): same ids, new members"
                )
                show(env)
    except PostgresNotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # the with-blocks above already stopped both servers
        print("\ninterrupted; the sandbox and PostgreSQL were stopped", file=sys.stderr)
        return 130
    say(
        f"Done in {time.monotonic() - started:.0f}s. The emulator's database stays at "
        f"{db.relative_to(REPO)}; inspect it again with\n    "
        f".venv/bin/tiktok-audiences-sandbox show --db {db.relative_to(REPO)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
