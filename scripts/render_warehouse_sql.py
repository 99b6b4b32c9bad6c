"""Render the dbt macros (dbt/macros/tiktok_identifiers.sql) as plain SQL functions.

    .venv/bin/python scripts/render_warehouse_sql.py        # rewrite sql/<engine>/*.sql
    .venv/bin/python scripts/render_warehouse_sql.py --check  # exit 1 if they are stale

The rules are written once, in the macros; the plain functions are their rendering for users
without dbt, so the two cannot drift (tests/test_warehouse_sql.py runs both and checks that the
committed files are this script's output). dbt's own Jinja is not needed: only
``adapter.dispatch``, ``exceptions.raise_compiler_error`` and ``target.type`` are used.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jinja2

REPO = Path(__file__).resolve().parents[1]
MACROS = REPO / "dbt" / "macros" / "tiktok_identifiers.sql"
ENGINES = ("postgres", "duckdb")
OUTPUT = "tiktok_identifiers.sql"


class CompilerError(Exception):
    """What dbt's exceptions.raise_compiler_error raises."""


def _raise_compiler_error(message: str) -> None:
    raise CompilerError(message)


def macros(engine: str) -> Any:
    """The macro file as a Jinja module, dispatching as dbt does on ``engine``."""
    module: Any = None

    def dispatch(name: str, macro_namespace: str | None = None) -> Any:
        found = getattr(module, f"{engine}__{name}", None)
        return found if found is not None else getattr(module, f"default__{name}")

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)

    class Package:  # the package's own name: its macros call each other through it, as in dbt
        def __getattr__(self, name: str) -> Any:
            return getattr(module, name)

    env.globals.update(
        tiktok_audiences=Package(),
        adapter=SimpleNamespace(dispatch=dispatch),
        exceptions=SimpleNamespace(raise_compiler_error=_raise_compiler_error),
        target=SimpleNamespace(type=engine),
    )
    module = env.from_string(MACROS.read_text(encoding="utf-8")).module
    return module


def compile_model(text: str, engine: str, **context: Any) -> str:
    """A dbt model's SQL as dbt would compile it: the package's macros under their package
    name (``tiktok_audiences.tiktok_email_sha256(...)``), plus ``context`` (``source``...)."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
    return env.from_string(text).render(tiktok_audiences=macros(engine), **context)


_HEADER = """\
-- target-tiktok-audiences: its identifier rules as {title} functions ({kind}).
-- Generated from dbt/macros/tiktok_identifiers.sql by scripts/render_warehouse_sql.py: edit
-- the macros, not this file. Each function gives the digest (or normalised value) the target
-- gives for the same raw text, or NULL where SQL cannot be exact: docs/warehouse-hashing.md.
{extra}"""

_POSTGRES_EXTRA = """\
-- Needs PostgreSQL 11+ and a UTF8 database. The functions are IMMUTABLE SQL functions that
-- the planner inlines, so they cost what the expressions cost.
"""


def _postgres(m: Any) -> str:
    def function(name: str, params: str, body: str) -> str:
        return (
            f"CREATE OR REPLACE FUNCTION {name}({params})\n"
            "RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE\n"
            f"AS $$\nSELECT {body}\n$$;\n"
        )

    # An unknown mode fails the query; the message depends on the argument so that the planner
    # cannot fold it into a constant error for a mode that is never used.
    bad_mode = (
        "CAST('email_normalization is basic or tiktok, not ' || "
        "coalesce(email_normalization, 'NULL') AS integer)::text"
    )
    return _render(m, function, bad_mode, "text", " DEFAULT ")


def _duckdb(m: Any) -> str:
    def function(name: str, params: str, body: str) -> str:
        return f"CREATE OR REPLACE MACRO {name}({params}) AS\n{body};\n"

    bad_mode = (
        "error('email_normalization is basic or tiktok, not ' || "
        "coalesce(email_normalization, 'NULL'))"
    )
    return _render(m, function, bad_mode, None, " := ")


def _render(m: Any, function: Any, bad_mode: str, sql_type: str | None, default: str) -> str:
    def param(name: str, value: str | None = None) -> str:
        typed = f"{name} {sql_type}" if sql_type else name
        return typed if value is None else f"{typed}{default}{value}"

    raw = param("raw_value")
    mode = param("email_normalization", "'basic'")
    region = param("default_phone_region", "NULL")
    nanp = f"{m.tiktok_lower_ascii(m.tiktok_strip('default_phone_region'))} IN ('us', 'ca')"

    def by_mode(render: Any) -> str:
        return (
            f"CASE email_normalization WHEN 'basic' THEN {render('basic')} "
            f"WHEN 'tiktok' THEN {render('tiktok')} ELSE {bad_mode} END"
        )

    def by_region(render: Any) -> str:
        return f"CASE WHEN {nanp} THEN {render('US')} ELSE {render(None)} END"

    out = [
        function(
            "tiktok_email", f"{raw}, {mode}", by_mode(lambda e: m.tiktok_email("raw_value", e))
        ),
        function(
            "tiktok_phone", f"{raw}, {region}", by_region(lambda r: m.tiktok_phone("raw_value", r))
        ),
        function("tiktok_ad_id", raw, m.tiktok_ad_id("raw_value")),
        function(
            "tiktok_email_sha256",
            f"{raw}, {mode}",
            by_mode(lambda e: m.tiktok_email_sha256("raw_value", e)),
        ),
        function(
            "tiktok_phone_sha256",
            f"{raw}, {region}",
            by_region(lambda r: m.tiktok_phone_sha256("raw_value", r)),
        ),
    ]
    for contract in ("idfa_sha256", "idfa_md5", "gaid_sha256", "gaid_md5"):
        out.append(
            function(f"tiktok_{contract}", raw, getattr(m, f"tiktok_{contract}")("raw_value"))
        )
    return "\n".join(out)


def render(engine: str) -> str:
    m = macros(engine)
    if engine == "postgres":
        header = _HEADER.format(title="PostgreSQL", kind="SQL functions", extra=_POSTGRES_EXTRA)
        return header + "\n" + _postgres(m)
    header = _HEADER.format(title="DuckDB", kind="scalar macros", extra="")
    return header + "\n" + _duckdb(m)


def path(engine: str) -> Path:
    return REPO / "sql" / engine / OUTPUT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a file is stale")
    args = parser.parse_args(argv)
    stale = []
    for engine in ENGINES:
        text = render(engine)
        target = path(engine)
        if args.check:
            if not target.exists() or target.read_text(encoding="utf-8") != text:
                stale.append(str(target.relative_to(REPO)))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
    if stale:
        print(f"stale: {', '.join(stale)}; run scripts/render_warehouse_sql.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
