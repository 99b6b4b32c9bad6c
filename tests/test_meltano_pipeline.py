"""The real pipeline: `meltano run tap-postgres target-tiktok-audiences`.

Real PostgreSQL (a throwaway cluster), real Meltano (installing tap-postgres from PyPI and the
target from this checkout), real HTTP to the bundled sandbox. No mocks: the assertions are the
sandbox's audience members, digest by digest, computed here from hand-normalised values.

Cost control: one cluster and one Meltano project (one `meltano install`) per xdist worker;
installs are serialised across workers with a file lock so a cold uv cache is filled once.
Every test gets its own database, sandbox and state id, so tests never see each other's data.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from target_tiktok_audiences.sandbox.server import SandboxServer, run_sandbox

from helpers import sandbox_windows
from helpers.pg import PostgresCluster, throwaway_cluster

REPO = Path(__file__).resolve().parents[1]
MELTANO = Path(sys.executable).parent / "meltano"
ADVERTISERS = ("7000000000000000001", "7000000000000000002")
LOADER = "target-tiktok-audiences"
# Names the project's meltano.yml gives the audiences of the `public-users` stream.
EMAIL_AUDIENCE = "CRM users (EMAIL_SHA256)"
PHONE_AUDIENCE = "CRM users (PHONE_SHA256)"


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


# -- fixtures: PostgreSQL and a Meltano project, once per worker ------------------------------


@pytest.fixture(scope="session")
def pg() -> Iterator[PostgresCluster]:
    with throwaway_cluster() as cluster:
        yield cluster


@dataclass
class MeltanoProject:
    root: Path
    env: dict[str, str]

    def run(
        self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 240
    ) -> subprocess.CompletedProcess[str]:
        # Mirror snapshots go to the user data dir: the test's own (conftest sets it per test;
        # this project, made once per worker, would otherwise keep the first value it saw, or
        # the real one, shared by every run and worker and colliding on sandbox audience ids).
        private = {k: v for k, v in os.environ.items() if k == "XDG_DATA_HOME"}
        return subprocess.run(
            [str(MELTANO), *args],
            cwd=self.root,
            env={**self.env, **private, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )


def _clean_env(root: Path) -> dict[str, str]:
    # Settings from the developer's shell must not leak into the pipeline under test.
    prefixes = ("MELTANO_", "TAP_POSTGRES", "TARGET_TIKTOK_AUDIENCES")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(
        {
            "MELTANO_PROJECT_ROOT": str(root),
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            "MELTANO_ENVIRONMENT": "sandbox",
            "NO_COLOR": "1",
            "PATH": f"{MELTANO.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
    )
    return env


@pytest.fixture(scope="session")
def meltano_project(tmp_path_factory: pytest.TempPathFactory) -> MeltanoProject:
    if not MELTANO.exists():
        pytest.fail(f"meltano is not installed next to {sys.executable} (pip install --group test)")
    root = tmp_path_factory.mktemp("meltano-project")
    text = (REPO / "meltano.yml").read_text()
    # The project's own meltano.yml, with the loader installed from this checkout.
    assert text.count("pip_url: -e .\n") == 1, "meltano.yml: loader must use `pip_url: -e .`"
    (root / "meltano.yml").write_text(text.replace("pip_url: -e .\n", f"pip_url: -e {REPO}\n"))
    project = MeltanoProject(root, _clean_env(root))
    # Shared by all xdist workers of this session (getbasetemp() is per worker, its parent not).
    lock_path = tmp_path_factory.getbasetemp().parent / "meltano-install.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        proc = project.run("install", timeout=600)
    assert proc.returncode == 0, f"meltano install failed:\n{proc.stderr[-4000:]}"
    return project


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxServer]:
    # Only the 1,000 floor is lowered, and with it matching (these tables hold a handful of
    # rows; the floor is exercised by test_floor_deferral_seen_through_meltano and the other
    # end-to-end tests); every other rule is TikTok's.
    with run_sandbox(
        tmp_path / "sandbox.db",
        **sandbox_windows(min_audience_size=1, match_rate=1.0),
    ) as server:
        yield server


@pytest.fixture
def real_sandbox(tmp_path: Path) -> Iterator[SandboxServer]:
    """The sandbox as shipped: TikTok's 1,000 floor on matched users, and every other rule."""
    with run_sandbox(tmp_path / "real.db", **sandbox_windows()) as server:
        yield server


@pytest.fixture
def database(pg: PostgresCluster) -> str:
    name = f"crm_{uuid.uuid4().hex[:12]}"
    pg.create_database(name)
    return name


def run_pipeline(
    project: MeltanoProject,
    sandbox: SandboxServer,
    db_url: str,
    state_id: str,
    *,
    env: Mapping[str, str] | None = None,
    json_logs: bool = False,
) -> subprocess.CompletedProcess[str]:
    args = ["--log-format=json"] if json_logs else []
    proc = project.run(
        *args,
        "run",
        "--no-install",
        f"--state-id-suffix={state_id}",
        "tap-postgres",
        LOADER,
        env={
            "TAP_POSTGRES_SQLALCHEMY_URL": db_url,
            # The environment points at the documented port 8765; the test's sandbox is on a
            # free port.
            "TARGET_TIKTOK_AUDIENCES_API_BASE_URL": sandbox.base_url,
            **(env or {}),
        },
    )
    assert proc.returncode == 0, f"meltano run failed:\n{proc.stderr[-6000:]}"
    return proc


def audiences(sandbox: SandboxServer) -> dict[tuple[str, str], dict[str, Any]]:
    """{(advertiser, name): audience} over both sandbox advertisers."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for advertiser in ADVERTISERS:
        for audience in sandbox.audiences(advertiser):
            key = (advertiser, audience["name"])
            assert key not in out, f"duplicate audience {key}"
            out[key] = audience
    return out


def assert_members(
    found: dict[tuple[str, str], dict[str, Any]], expected: Mapping[str, tuple[str, set[str]]]
) -> None:
    """expected: audience name -> (contract, plain normalised values), in every advertiser."""
    assert set(found) == {(a, name) for a in ADVERTISERS for name in expected}
    for (advertiser, name), audience in found.items():
        contract, values = expected[name]
        want = {contract: sorted(sha256(v) for v in values)}
        assert audience["members"] == want, f"{name} in {advertiser}"


# -- the data -------------------------------------------------------------------------------

USERS_DDL = """
CREATE TABLE users (id integer PRIMARY KEY, name text, email text, phone text);
INSERT INTO users VALUES
  (1,  'Jane',   '  Jane.Doe@Gmail.com ', '(415) 555-0132'),
  (2,  'John',   'JOHN@EXAMPLE.ORG',      '+44 20 7946 0958'),
  (3,  'Mary',   'mary+news@example.com', '+4915123456789'),
  (4,  'Nope',   'not-an-email',          '12'),
  (5,  'Phoebe', NULL,                    '415.555.0199'),
  (6,  'Bob',    'bob@example',           '+1 650 253 0000'),
  (7,  'Blank',  '   ',                   NULL),
  (8,  'Ann',    'Ann@Example.com',       NULL),
  (9,  'Ann2',   ' ann@example.com',      '  +1 (212) 555-0100 ');
"""
# Hand-normalised: emails trimmed + lowercased (basic mode keeps +suffix and dots); phones in
# E.164 with default_phone_region US. Rows 4 and 7 have nothing valid; 'bob@example' has no
# dot in its domain; Ann is one member although she is in two rows.
EMAILS = {"jane.doe@gmail.com", "john@example.org", "mary+news@example.com", "ann@example.com"}
PHONES = {
    "+14155550132",
    "+442079460958",
    "+4915123456789",
    "+14155550199",
    "+16502530000",
    "+12125550100",
}


def test_mirror_follows_the_table(
    meltano_project: MeltanoProject, pg: PostgresCluster, database: str, sandbox: SandboxServer
) -> None:
    pg.psql(USERS_DDL, database)
    first = run_pipeline(meltano_project, sandbox, pg.url(database), database)

    found = audiences(sandbox)
    assert_members(
        found, {EMAIL_AUDIENCE: ("EMAIL_SHA256", EMAILS), PHONE_AUDIENCE: ("PHONE_SHA256", PHONES)}
    )
    assert {a["audience_type"] for a in found.values()} == {"Customer File"}
    ids = {key: a["audience_id"] for key, a in found.items()}
    # The run summary is readable in Meltano's console output, attributed to the loader.
    assert (
        f"Audience '{EMAIL_AUDIENCE}' in advertiser {ADVERTISERS[0]}: +4 \u22120 \u2192 4; "
        "delivered (CREATE), id "
    ) in first.stderr
    assert "TikTok matches uploaded users in 24-48 hours" in first.stderr

    # Users leave and join; a mirror audience follows the table on the next run.
    pg.psql(
        "DELETE FROM users WHERE id IN (1, 5, 8, 9);"
        "INSERT INTO users VALUES (10, 'New', 'New.User@Example.com', '212-555-0111');",
        database,
    )
    second = run_pipeline(meltano_project, sandbox, pg.url(database), database, json_logs=True)

    found = audiences(sandbox)
    assert_members(
        found,
        {
            EMAIL_AUDIENCE: (
                "EMAIL_SHA256",
                {"john@example.org", "mary+news@example.com", "new.user@example.com"},
            ),
            PHONE_AUDIENCE: (
                "PHONE_SHA256",
                {"+442079460958", "+4915123456789", "+16502530000", "+12125550111"},
            ),
        },
    )
    assert {key: a["audience_id"] for key, a in found.items()} == ids, "same audiences, updated"
    for audience in found.values():  # mirror by difference: no REPLACE after the create
        actions = [h["action"] for h in audience["history"]]
        assert actions[0] == "CREATE" and "REPLACE" not in actions and "REMOVE" in actions

    # Structured logging: Meltano gave the SDK its JSON formatter and parsed the lines back,
    # so the loader's levels survive (a plain-text plugin would log everything at info).
    events = [json.loads(line) for line in second.stderr.splitlines() if line.startswith("{")]
    ours = [e for e in events if e.get("name") == LOADER]
    assert ours and all(e.get("app_name") == "singer-sdk" for e in ours if "pid" in e)
    warnings = [e["event"] for e in ours if e["level"] == "warning"]
    assert any("only 3 unique identifiers" in w for w in warnings), warnings
    # Each audience line leads with the change (issue 29): +added -removed -> size.
    email_id = ids[ADVERTISERS[0], EMAIL_AUDIENCE]
    (line,) = [
        e["event"]
        for e in ours
        if e["level"] == "info"
        and e["event"].startswith(f"Audience '{EMAIL_AUDIENCE}' in advertiser {ADVERTISERS[0]}:")
    ]
    assert line.startswith(
        f"Audience '{EMAIL_AUDIENCE}' in advertiser {ADVERTISERS[0]}: +1 \u22122 \u2192 3; "
        f"delivered (APPEND+REMOVE), id {email_id}; by difference, 2 unchanged; 2 files, "
    ), line
    assert "processing" not in line and line.endswith("; next full resync in 7 days.")
    # No raw identifier reaches the logs.
    for text in (first.stderr, second.stderr):
        for raw in ("jane.doe", "Jane.Doe", "john@example", "555-0132", "4155550132"):
            assert raw not in text


CONTACTS_DDL = """
CREATE TABLE contacts (id integer PRIMARY KEY, mail text, unsubscribed boolean NOT NULL);
INSERT INTO contacts VALUES
  (1, ' Kim@Example.com',  false),
  (2, 'LEE@example.org ',  false),
  (3, 'gone@example.com',  true),
  (4, NULL,                false);
"""


def test_stream_maps_hash_in_the_map(
    meltano_project: MeltanoProject, pg: PostgresCluster, database: str, sandbox: SandboxServer
) -> None:
    """A user hashes in the loader's stream map and turns the target's hashing off."""
    pg.psql(CONTACTS_DDL, database)
    stream_maps = {
        "public-contacts": {
            "__alias__": "newsletter",
            "__filter__": "not unsubscribed",
            "email_sha256": "sha256(mail.strip().lower()) if mail else None",
            "mail": "__NULL__",  # the plain address never reaches the target
        },
    }
    mapping = [
        {
            "stream": "newsletter",
            "audience_name": "Newsletter",
            "identifiers": {"EMAIL_SHA256": "email_sha256"},
        }
    ]
    run_pipeline(
        meltano_project,
        sandbox,
        pg.url(database),
        database,
        env={
            "TAP_POSTGRES__SELECT": json.dumps(["public-contacts.*"]),
            "TARGET_TIKTOK_AUDIENCES_STREAM_MAPS": json.dumps(stream_maps),
            "TARGET_TIKTOK_AUDIENCES_AUDIENCES": json.dumps(mapping),
            "TARGET_TIKTOK_AUDIENCES_HASH_IDENTIFIERS": "false",
        },
    )
    # One contract: the audience keeps the configured name as is.
    assert_members(
        audiences(sandbox), {"Newsletter": ("EMAIL_SHA256", {"kim@example.com", "lee@example.org"})}
    )


def test_dry_run_environment_sends_nothing(
    meltano_project: MeltanoProject, pg: PostgresCluster, database: str, tmp_path: Path
) -> None:
    """meltano.yml's `dry-run` environment: no token, no network, hashed files and a plan."""
    pg.psql(USERS_DDL, database)
    output = tmp_path / "dry-run"
    proc = meltano_project.run(
        "run",
        "--no-install",
        f"--state-id-suffix={database}",
        "tap-postgres",
        LOADER,
        env={
            "MELTANO_ENVIRONMENT": "dry-run",
            "TAP_POSTGRES_SQLALCHEMY_URL": pg.url(database),
            "TARGET_TIKTOK_AUDIENCES_OUTPUT_DIR": str(output),
        },
    )
    assert proc.returncode == 0, f"meltano run failed:\n{proc.stderr[-6000:]}"
    (run_dir,) = output.iterdir()  # each dry run writes a folder of its own
    plan = json.loads((run_dir / "plan.json").read_text())
    assert sorted(a["audience_name"] for a in plan["audiences"]) == [
        EMAIL_AUDIENCE,
        PHONE_AUDIENCE,
    ]
    digests = {
        line for f in (run_dir / "files").iterdir() for line in f.read_text().splitlines() if line
    }
    assert digests == {sha256(v) for v in EMAILS | PHONES}


SEGMENTS_DDL = """
CREATE TABLE segments (id integer PRIMARY KEY, email text, segment text);
INSERT INTO segments VALUES
  (1, 'ann@example.com',  'gold'),
  (2, 'bob@example.com',  'gold'),
  (3, 'cat@example.com',  'silver'),
  (4, 'not-an-email',     'silver'),
  (5, 'dan@example.com',  NULL),
  (6, 'eve@example.com',  'silver');
"""


def test_one_table_many_audiences_rejects_and_status(
    meltano_project: MeltanoProject,
    pg: PostgresCluster,
    database: str,
    sandbox: SandboxServer,
    tmp_path: Path,
) -> None:
    """Issue 19 through Meltano: audience_name_column, rejects_url, then `:status`."""
    pg.psql(SEGMENTS_DDL, database)
    env = {
        "TAP_POSTGRES__SELECT": json.dumps(["public-segments.*"]),
        "TARGET_TIKTOK_AUDIENCES_AUDIENCES": json.dumps(
            [
                {
                    "stream": "public-segments",
                    "audience_name": "Tier {value}",
                    "audience_name_column": "segment",
                    "identifiers": {"EMAIL_SHA256": "email"},
                }
            ]
        ),
        "TARGET_TIKTOK_AUDIENCES_REJECTS_URL": str(tmp_path / "rejects"),
        "TARGET_TIKTOK_AUDIENCES_SNAPSHOT_URL": str(tmp_path / "snapshots"),
    }
    run = run_pipeline(meltano_project, sandbox, pg.url(database), database, env=env)
    assert_members(
        audiences(sandbox),
        {
            "Tier gold": ("EMAIL_SHA256", {"ann@example.com", "bob@example.com"}),
            "Tier silver": ("EMAIL_SHA256", {"cat@example.com", "eve@example.com"}),
        },
    )
    (rejects,) = (tmp_path / "rejects").iterdir()
    lines = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert sorted(lines, key=lambda r: r["key"]["id"]) == [
        {
            "stream": "public-segments",
            "key": {"id": 4},
            "contract": "EMAIL_SHA256",
            "reason": "invalid_email",
        },
        {
            "stream": "public-segments",
            "key": {"id": 5},
            "contract": "audience_name_column",
            "reason": "no_audience_name",
        },
    ]
    assert f"Rejected identifiers: 2 lines written to {rejects}" in run.stderr
    # The README's recipe loads the file into PostgreSQL and joins it to the source table.
    readme = (REPO / "docs" / "settings.md").read_text()
    recipe = readme.split("<!-- rejects-sql -->\n```sql\n", 1)[1].split("\n```", 1)[0]
    recipe = (
        recipe.replace("rejects-20250301T060000Z-1a2b3c4d.jsonl", str(rejects))
        .replace("public.users", "public.segments")
        .replace("'public-users'", "'public-segments'")
    )
    assert pg.psql(recipe, database).split() == [
        "4|not-an-email|EMAIL_SHA256|invalid_email",
        "5|dan@example.com|audience_name_column|no_audience_name",
    ]

    def status(*args: str) -> subprocess.CompletedProcess[str]:
        return meltano_project.run(
            "invoke",
            f"{LOADER}:status",
            *args,
            env={
                "TARGET_TIKTOK_AUDIENCES_API_BASE_URL": sandbox.base_url,
                **{k: v for k, v in env.items() if k.startswith("TARGET_")},
            },
        )

    healthy = status("--format", "json")
    assert healthy.returncode == 0, healthy.stderr[-3000:]
    report = json.loads(healthy.stdout[healthy.stdout.index("{") :])
    assert sorted((a["advertiser_id"], a["name"], a["size"]) for a in report["audiences"]) == [
        (adv, name, 2) for adv in ADVERTISERS for name in ("Tier gold", "Tier silver")
    ]
    gold = audiences(sandbox)[ADVERTISERS[0], "Tier gold"]
    sandbox.expire_audience(gold["audience_id"], in_days=-1)
    expired = status()
    assert expired.returncode == 1
    assert (
        f"Audience 'Tier gold' in advertiser {ADVERTISERS[0]} (stream 'public-segments'): "
        "expired" in expired.stderr
    )


@pytest.mark.parametrize(
    ("env", "line"),
    [
        (
            {"TARGET_TIKTOK_AUDIENCES_ACCESS_TOKEN": "not-the-token"},
            re.escape(
                'Checking the access token failed: TikTok said "Access token is invalid or has '
                'been revoked" (code 40105, request_id '
            )
            + r"\w+"
            + re.escape(
                "). Re-authorise the TikTok app and put the new token in access_token "
                "(TARGET_TIKTOK_AUDIENCES_ACCESS_TOKEN)."
            ),
        ),
        (
            {
                "TARGET_TIKTOK_AUDIENCES_API_BASE_URL": "http://127.0.0.1:9/open_api/v1.3",
                "TARGET_TIKTOK_AUDIENCES_MAX_RETRIES": "0",
            },
            re.escape(
                "The TikTok API cannot be reached at 127.0.0.1:9 (api_base_url): the connection "
                "was refused (while checking the access token)"
            )
            + ".*",  # the rest is the client's (retries, hint)
        ),
        (
            {
                "TARGET_TIKTOK_AUDIENCES_AUDIENCES": json.dumps(
                    [{"stream": "public-users", "identifiers": {"EMAIL_SHA256": "mail"}}]
                )
            },
            re.escape(
                "Config validation failed: audiences[stream=public-users].identifiers."
                "EMAIL_SHA256: column 'mail' is not in the schema of stream 'public-users' "
                "(columns: "
            )
            + ".*",
        ),
        (
            {"TARGET_TIKTOK_AUDIENCES_MAX_RETRIES": "99"},
            re.escape(
                "Config validation failed: max_retries: 99 is out of bounds; give a number "
                "from 0 to 20"
            ),
        ),
        (
            {"TARGET_TIKTOK_AUDIENCES_SNAPSHOT_URL": "/proc/no-such/snapshots"},
            re.escape(
                "snapshot_url /proc/no-such/snapshots: cannot write there (ENOENT: No such file "
                "or directory); fix it or choose another, then re-run"
            ),
        ),
    ],
    ids=["wrong-token", "unreachable-api", "bad-column", "out-of-bounds", "unwritable-snapshots"],
)
def test_a_target_that_stops_early_lets_the_tap_finish_cleanly(
    meltano_project: MeltanoProject,
    pg: PostgresCluster,
    database: str,
    sandbox: SandboxServer,
    env: dict[str, str],
    line: str,
) -> None:
    """The target stops before reading a record, yet reads (and drops) the tap's output: the
    tap finishes, and `meltano run` ends with our line, not the tap's BrokenPipeError."""
    # Far more output than the pipes between tap, Meltano and target hold.
    pg.psql(
        "CREATE TABLE users (id integer PRIMARY KEY, name text, email text, phone text);"
        "INSERT INTO users SELECT i, 'name ' || i, 'user' || i || '@example.com', NULL "
        "FROM generate_series(1, 30000) AS i;",
        database,
    )
    proc = meltano_project.run(
        "run",
        "--no-install",
        f"--state-id-suffix={database}",
        "tap-postgres",
        LOADER,
        env={
            "TAP_POSTGRES_SQLALCHEMY_URL": pg.url(database),
            "TARGET_TIKTOK_AUDIENCES_API_BASE_URL": sandbox.base_url,
            **env,
        },
    )
    assert proc.returncode == 1, proc.stderr[-6000:]
    for noise in ("BrokenPipeError", "Task exception was never retrieved", "Traceback"):
        assert noise not in proc.stderr, proc.stderr[-6000:]
    # One line, really (issue 29): no SDK line before ours, no second "Config validation
    # failed", no "Skipping parse of env var settings" at INFO.
    for noise in ("Error initializing target sink", "Skipping parse of env var settings"):
        assert f"{LOADER} {noise}" not in proc.stderr, proc.stderr[-6000:]
    assert not re.search(LOADER + " Config validation failed$", proc.stderr, re.MULTILINE)
    # Meltano re-emits the loader's structured log lines under the loader's name.
    ours = [ln for ln in proc.stderr.splitlines() if re.search(r"\[error +\] " + LOADER, ln)]
    assert len(ours) == 1, proc.stderr[-6000:]
    assert re.search(r"\[error +\] " + LOADER + " " + line + "$", ours[0]), ours
    # The tap read its whole table and ended normally.
    assert re.search(
        r"tap-postgres METRIC .* metric_name=record_count metric_value=30000", proc.stderr
    )
    assert "not-the-token" not in proc.stderr
    assert sandbox.audiences(ADVERTISERS[0]) == []


def test_floor_deferral_seen_through_meltano(
    meltano_project: MeltanoProject,
    pg: PostgresCluster,
    database: str,
    real_sandbox: SandboxServer,
) -> None:
    """TikTok's real floor: an update that leaves fewer than 1,000 matched users is deferred,
    the other audience stays delivered, and `meltano run` fails with the target's line."""
    pg.psql(
        "CREATE TABLE users (id integer PRIMARY KEY, name text, email text, phone text);"
        "INSERT INTO users SELECT i, 'u' || i, 'user' || i || '@example.com', "
        "'+1415' || lpad(i::text, 7, '0') FROM generate_series(1, 2000) AS i;",
        database,
    )
    run_pipeline(meltano_project, real_sandbox, pg.url(database), database)
    # 700 users lose their email: 1,300 identifiers, fewer than 1,000 of them matched.
    pg.psql("UPDATE users SET email = NULL WHERE id > 1300;", database)
    proc = meltano_project.run(
        "run",
        "--no-install",
        f"--state-id-suffix={database}",
        "tap-postgres",
        LOADER,
        env={
            "TAP_POSTGRES_SQLALCHEMY_URL": pg.url(database),
            "TARGET_TIKTOK_AUDIENCES_API_BASE_URL": real_sandbox.base_url,
        },
    )
    assert proc.returncode != 0
    found = audiences(real_sandbox)
    emails = {f"user{i}@example.com" for i in range(1, 2001)}
    phones = {f"+1415{i:07d}" for i in range(1, 2001)}
    assert_members(
        found, {EMAIL_AUDIENCE: ("EMAIL_SHA256", emails), PHONE_AUDIENCE: ("PHONE_SHA256", phones)}
    )
    for advertiser in ADVERTISERS:
        assert (
            f"Audience '{EMAIL_AUDIENCE}' in advertiser {advertiser}: not delivered: TikTok "
            "refuses updates that leave fewer than 1,000 users"
            in proc.stderr
            or f"Audience '{EMAIL_AUDIENCE}' in advertiser {advertiser}: not delivered: TikTok "
            "refused this audience's update"
            in proc.stderr
        )
        assert (
            f"Audience '{PHONE_AUDIENCE}' in advertiser {advertiser}: +0 \u22120 \u2192 2,000; "
            "delivered, nothing to change, id "
        ) in proc.stderr
    assert "2 audiences not delivered: " in proc.stderr
    assert "the others were delivered and no STATE was emitted" in proc.stderr
