"""The dbt package (dbt/) run by dbt itself, with dbt-postgres and dbt-duckdb.

dbt-core cannot share the project's venv (it pins pathspec<0.13; the dev group's mypy needs
pathspec 1), so it gets a venv of its own, made once per test session from PyPI like the
Meltano tests' plugins (serialised across xdist workers by a file lock). dbt-core 1.10: 1.11
needs dbt-core-experimental-parser, which has no wheel for this platform.

The models are docs/warehouse-hashing.md's model as written, and one that gives every contract
of test_warehouse_sql.py's columns for its corner values: every digest is the target's, or NULL
where the docs say SQL cannot be exact (the same check as test_warehouse_sql.py).
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from helpers.pg import PostgresCluster, throwaway_cluster
from helpers.warehouse import (
    COLUMNS,
    CORNERS,
    DOC_USERS,
    check,
    docs_blocks,
    pg_literal,
    target_digest,
    users_sql,
)

REPO = Path(__file__).resolve().parents[1]
DBT_REQUIREMENTS = ("dbt-core>=1.10,<1.11", "dbt-postgres>=1.9,<2", "dbt-duckdb>=1.9,<2")
UV = Path(sys.executable).parent / "uv"


@pytest.fixture(scope="session")
def dbt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dbt executable of a venv shared by the session's workers."""
    assert UV.exists(), f"{UV} not found: uv comes with meltano (pip install --group test)"
    shared = tmp_path_factory.getbasetemp().parent
    venv = shared / "dbt-venv"
    executable = venv / "bin" / "dbt"
    with (shared / "dbt-install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not executable.exists():
            for argv in (
                [str(UV), "venv", "--quiet", "--python", sys.executable, str(venv)],
                [
                    str(UV),
                    "pip",
                    "install",
                    "--quiet",
                    "--python",
                    str(venv / "bin" / "python"),
                    *DBT_REQUIREMENTS,
                ],
            ):
                proc = subprocess.run(argv, capture_output=True, text=True, timeout=600)
                assert proc.returncode == 0, f"{argv[:3]} failed:\n{proc.stderr[-4000:]}"
    return executable


def corner_model() -> str:
    """Every column of helpers.warehouse.COLUMNS through tiktok_digest, with its settings."""
    columns = []
    for i, c in enumerate(COLUMNS):
        region = c.rules.default_phone_region
        columns.append(
            f"{{{{ tiktok_audiences.tiktok_digest('v', {json.dumps(c.contract)}, "
            f"email_normalization={json.dumps(c.rules.email_normalization)}, "
            f"default_phone_region={json.dumps(region) if region else 'none'}) }}}} as c{i}"
        )
    return f"select i, {', '.join(columns)} from {{{{ source('crm', 'raw_values') }}}}\n"


def raw_values_sql(schema: str) -> str:
    rows = ", ".join(f"({i}, {pg_literal(v)})" for i, v in enumerate(CORNERS))
    return (
        f"CREATE TABLE {schema}.raw_values (i integer, v text);\n"
        f"INSERT INTO {schema}.raw_values VALUES {rows};\n"
    )


def dbt_project(root: Path, schema: str, profile: str) -> Path:
    (root / "models").mkdir(parents=True)
    (root / "dbt_project.yml").write_text(
        "name: recipe\nversion: '1.0'\nconfig-version: 2\nprofile: recipe\n"
    )
    (root / "packages.yml").write_text(f"packages:\n  - local: {REPO / 'dbt'}\n")
    (root / "profiles.yml").write_text(profile)
    (root / "models" / "sources.yml").write_text(
        "version: 2\nsources:\n  - name: crm\n"
        f"    schema: {schema}\n    tables:\n      - name: users\n      - name: raw_values\n"
    )
    (root / "models" / "tiktok_users.sql").write_text(docs_blocks()["warehouse-dbt-model"] + "\n")
    (root / "models" / "corners.sql").write_text(corner_model())
    return root


def run_dbt(dbt: Path, root: Path) -> None:
    env = {**os.environ, "DBT_PROFILES_DIR": str(root), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    for command in (["deps"], ["run"]):
        proc = subprocess.run(
            [str(dbt), *command], cwd=root, env=env, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, f"dbt {command[0]} failed:\n{proc.stdout[-4000:]}"


def expected_users() -> list[tuple[int, str | None]]:
    # Ann's is the target's digest; josé@example.com is NULL (non-ASCII: beyond exact SQL); the
    # target rejects the other two.
    ann = target_digest(0, DOC_USERS[0][1] or "")
    assert ann is not None
    return [(1, ann), (2, None), (3, None), (4, None)]


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresCluster]:
    with throwaway_cluster() as cluster:
        yield cluster


def test_dbt_postgres_runs_the_package(dbt: Path, pg: PostgresCluster, tmp_path: Path) -> None:
    pg_database = f"dbt_{uuid.uuid4().hex[:12]}"
    pg.create_database(pg_database)
    schema = "crm"
    setup = f"CREATE SCHEMA {schema}; SET search_path = {schema};\n"
    pg.psql(setup + users_sql() + raw_values_sql(schema), pg_database)
    profile = (
        "recipe:\n  target: pg\n  outputs:\n    pg:\n      type: postgres\n"
        f"      host: {pg.host}\n      port: {pg.port}\n      user: {pg.user}\n"
        f"      password: postgres\n      dbname: {pg_database}\n      schema: models\n"
        "      threads: 1\n"
    )
    run_dbt(dbt, dbt_project(tmp_path / "project", schema, profile))

    out = pg.psql("SELECT id, email_sha256 FROM models.tiktok_users ORDER BY id;", pg_database)
    assert [tuple(line.split("|")) for line in out.split()] == [
        (str(i), d or "") for i, d in expected_users()
    ]
    out = pg.psql("SELECT * FROM models.corners ORDER BY i;", pg_database)
    rows = [[cell or None for cell in line.split("|")[1:]] for line in out.splitlines()]
    check(CORNERS, rows)


def test_dbt_duckdb_runs_the_package(dbt: Path, tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    schema = "crm"
    with duckdb.connect(str(path)) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
        connection.execute(users_sql().replace("users", f"{schema}.users", 2))
        connection.execute(f"CREATE TABLE {schema}.raw_values (i integer, v varchar)")
        connection.executemany(
            f"INSERT INTO {schema}.raw_values VALUES (?, ?)", list(enumerate(CORNERS))
        )
    profile = (
        "recipe:\n  target: duck\n  outputs:\n    duck:\n      type: duckdb\n"
        f"      path: {path}\n      schema: models\n"
    )
    run_dbt(dbt, dbt_project(tmp_path / "project", schema, profile))

    with duckdb.connect(str(path)) as connection:
        users = connection.execute("SELECT id, email_sha256 FROM models.tiktok_users ORDER BY id")
        assert users.fetchall() == expected_users()
        rows = connection.execute("SELECT * FROM models.corners ORDER BY i").fetchall()
    check(CORNERS, [list(row[1:]) for row in rows])
