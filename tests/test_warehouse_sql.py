"""The warehouse SQL (sql/*/tiktok_identifiers.sql and the dbt macros they are rendered from)
against the target's own encoder, in a real PostgreSQL and in DuckDB.

For every raw value and every contract the SQL gives what identifiers.make_encoder gives, or
NULL; and inside the scope docs/warehouse-hashing.md promises (ASCII emails, phones in E.164
syntax, North American numbers with region US or CA, every ad id) it gives exactly the
target's answer, a digest or NULL alike. The dbt macros are rendered by
scripts/render_warehouse_sql.py's dispatch shim: dbt-core cannot share this venv (see
docs/warehouse-hashing.md).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import re
import string
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from target_tiktok_audiences.identifiers import Rules, make_encoder

from helpers.pg import PostgresCluster, throwaway_cluster

REPO = Path(__file__).resolve().parents[1]


def _load_renderer() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "tta_render_warehouse_sql", REPO / "scripts" / "render_warehouse_sql.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


render = _load_renderer()

HYPOTHESIS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=100,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Python's str.isspace() characters (what the target's strip() removes) and look-alikes that
# are not whitespace to Python (zero-width space, BOM, Mongolian vowel separator, soft hyphen).
WHITESPACE = "".join(chr(c) for c in range(0x3001) if chr(c).isspace())
LOOKALIKES = "\u200b\ufeff\u180e\u00ad"
ZERO_UUID = "00000000-0000-0000-0000-000000000000"
# The phones the docs promise: E.164 syntax, and with region US or CA the North American shape.
E164 = re.compile(r"\+[1-9][0-9]{7,14}")
NANP = re.compile(r"1?[2-9][0-9]{9}")


@dataclass(frozen=True)
class Column:
    """One contract under one set of the target's settings, as SQL sees it."""

    contract: str
    rules: Rules
    function: str  # the plain function's call, {v} for the value

    def macro(self, m: Any, value_sql: str) -> str:
        """The dbt macro's inline expression for the value."""
        return str(
            m.tiktok_digest(
                value_sql,
                self.contract,
                email_normalization=self.rules.email_normalization,
                default_phone_region=self.rules.default_phone_region,
            )
        )


COLUMNS = (
    Column("EMAIL_SHA256", Rules(), "tiktok_email_sha256({v})"),
    Column(
        "EMAIL_SHA256", Rules(email_normalization="tiktok"), "tiktok_email_sha256({v}, 'tiktok')"
    ),
    Column("PHONE_SHA256", Rules(), "tiktok_phone_sha256({v})"),
    Column("PHONE_SHA256", Rules(default_phone_region="US"), "tiktok_phone_sha256({v}, 'US')"),
    # The region as the target reads it: trimmed, any case.
    Column(
        "PHONE_SHA256",
        Rules(default_phone_region=" ca\t"),
        "tiktok_phone_sha256({v}, ' ca' || chr(9))",
    ),
    Column("PHONE_SHA256", Rules(default_phone_region="GB"), "tiktok_phone_sha256({v}, 'GB')"),
    Column("IDFA_SHA256", Rules(), "tiktok_idfa_sha256({v})"),
    Column("IDFA_MD5", Rules(), "tiktok_idfa_md5({v})"),
    Column("GAID_SHA256", Rules(), "tiktok_gaid_sha256({v})"),
    Column("AAID_MD5", Rules(), "tiktok_gaid_md5({v})"),
)
ENCODERS = [make_encoder(c.contract, c.rules) for c in COLUMNS]


def target_digest(column: int, value: str) -> str | None:
    return ENCODERS[column](value)[0]


def _drop_separators(value: str) -> str:
    return value.translate(str.maketrans("", "", " -.()"))


def exact_in_sql(column: Column, value: str) -> bool:
    """Whether docs/warehouse-hashing.md promises the target's answer, not NULL, for value."""
    if len(value) > 4096:
        return True
    stripped = value.strip()
    if column.contract == "EMAIL_SHA256":
        return stripped.isascii()
    if column.contract == "PHONE_SHA256":
        region = (column.rules.default_phone_region or "").strip().upper()
        nanp = region in ("US", "CA") and NANP.fullmatch(_drop_separators(stripped))
        return E164.fullmatch(stripped) is not None or bool(nanp)
    return True  # ad ids: always exact


def check(values: Sequence[str], found: Sequence[Sequence[str | None]]) -> None:
    assert len(found) == len(values)
    for value, row in zip(values, found, strict=True):
        for i, column in enumerate(COLUMNS):
            want = target_digest(i, value)
            got = row[i]
            where = f"{column.function.format(v=ascii(value))} under {column.rules}"
            if exact_in_sql(column, value):
                assert got == want, where
            else:
                assert got is None or got == want, where


# -- the engines ------------------------------------------------------------------------------


Evaluate = Callable[[Sequence[str], Sequence[str]], list[list[str | None]]]


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresCluster]:
    with throwaway_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="module")
def pg_functions(pg: PostgresCluster) -> str:
    database = f"sql_{uuid.uuid4().hex[:12]}"
    pg.create_database(database)
    pg.psql(render.path("postgres").read_text(encoding="utf-8"), database)
    return database


def pg_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def pg_evaluate(pg: PostgresCluster, database: str) -> Evaluate:
    def evaluate(values: Sequence[str], expressions: Sequence[str]) -> list[list[str | None]]:
        rows = ", ".join(f"({i}, {pg_literal(v)})" for i, v in enumerate(values))
        select = ", ".join(expressions)
        out = pg.psql(f"SELECT i, {select} FROM (VALUES {rows}) AS t(i, v) ORDER BY i;", database)
        result = []
        for line in out.splitlines():  # digests are hex: no separator or newline inside
            i, *cells = line.split("|")
            assert int(i) == len(result)
            result.append([cell or None for cell in cells])
        return result

    return evaluate


@pytest.fixture(scope="module")
def duck() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect()
    connection.execute(render.path("duckdb").read_text(encoding="utf-8"))
    yield connection
    connection.close()


def duck_evaluate(connection: duckdb.DuckDBPyConnection) -> Evaluate:
    def evaluate(values: Sequence[str], expressions: Sequence[str]) -> list[list[str | None]]:
        cursor = connection.cursor()
        cursor.execute("CREATE TEMP TABLE t (i INTEGER, v VARCHAR)")
        cursor.executemany("INSERT INTO t VALUES (?, ?)", list(enumerate(values)))
        rows = cursor.execute(f"SELECT {', '.join(expressions)} FROM t ORDER BY i").fetchall()
        cursor.execute("DROP TABLE t")
        return [list(row) for row in rows]

    return evaluate


@functools.cache
def function_sql() -> tuple[str, ...]:
    return tuple(c.function.format(v="v") for c in COLUMNS)


@functools.cache
def macro_sql(engine: str) -> tuple[str, ...]:
    m = render.macros(engine)
    return tuple(c.macro(m, "v") for c in COLUMNS)


# -- the vectors of tiktok-api.md -------------------------------------------------------------

VECTORS = [
    (
        "tiktok_email_sha256('janedoe@gmail.com')",
        "d6117306485ed0e50afab3ac871e98f81699151f30281527d63ff5f233656c69",
    ),
    (
        "tiktok_email_sha256('testing@testing.com')",
        "584c4423c421df49955759498a71495aba49b8780eb9387dff333b6f0982c777",
    ),
    (
        "tiktok_email_sha256('alex@email.com')",
        "ac0f1baec38a9ef3cfcb56db981df7d9bab2568c7f53ef3776d1c059ec58e72b",
    ),
    (
        "tiktok_email_sha256('Test.User+tag@Testing.com', 'tiktok')",
        "2458778dc6906a947a016ee3bef93b57099bb130945b8f717f7d8794beb69bca",
    ),
    (
        "tiktok_phone_sha256('+129988776655')",
        "31e78a3bf9ce2b43316f64fe883a531d6266938091e94e2f2480272481163dee",
    ),
    (
        "tiktok_phone_sha256('(415) 555-0134', 'US')",
        "e80ac8e3eca883c7344a609f3532e3f70365f5c1facd204f88f5d2c7caebac38",
    ),
    (
        "tiktok_idfa_sha256(' 6D92078A-8246-4BA4-AE5B-76104861E7DC ')",
        "31b806b4deec8c4cb1ffb18b9ab4ee1fa82a2b30e1f47902f04d03f5db023376",
    ),
    (
        "tiktok_idfa_md5(' 6D92078A-8246-4BA4-AE5B-76104861E7DC ')",
        "0c2074fb86930fc4a2a7bb791240a7d3",
    ),
    # Normalised values, through the normalisers themselves.
    ("tiktok_email('Test.User+tag@Testing.com', 'tiktok')", "testuser@testing.com"),
    ("tiktok_phone('(415) 555-0134', 'US')", "+14155550134"),
    (
        "tiktok_ad_id(' 6D92078A-8246-4BA4-AE5B-76104861E7DC ')",
        "6d92078a-8246-4ba4-ae5b-76104861e7dc",
    ),
]


def test_public_vectors_in_postgres(pg: PostgresCluster, pg_functions: str) -> None:
    out = pg.psql("SELECT " + ", ".join(sql for sql, _ in VECTORS) + ";", pg_functions)
    assert out.strip().split("|") == [want for _, want in VECTORS]


def test_public_vectors_in_duckdb(duck: duckdb.DuckDBPyConnection) -> None:
    row = duck.execute("SELECT " + ", ".join(sql for sql, _ in VECTORS)).fetchone()
    assert list(row or ()) == [want for _, want in VECTORS]


# -- drawn values, adversarial ones included ---------------------------------------------------

pads = st.text(alphabet=WHITESPACE + LOOKALIKES, max_size=3) | st.just("")
ASCII_LOCAL = string.ascii_letters + string.digits + "._+-'!#~"
UNICODE = '\u00e9\u00c9\u0130\u0131\u212a\u00df\uff21\u0663 \t\x01\x7f"\\|'
emails = st.builds(
    lambda pre, local, at, host, dot, tld, post: f"{pre}{local}{at}{host}{dot}{tld}{post}",
    pads,
    st.text(alphabet=ASCII_LOCAL, min_size=1, max_size=10)
    | st.text(alphabet=ASCII_LOCAL + UNICODE, max_size=10),
    st.sampled_from(["@"] * 6 + ["@@", "", "\uff20", "@ "]),
    st.text(alphabet=string.ascii_letters + string.digits + "-", max_size=8)
    | st.text(alphabet=string.ascii_letters + "\u00fc\u0130\u212a.", max_size=8),
    st.sampled_from([".", ".", ".", "", "..", "\u3002"]),
    st.text(alphabet=string.ascii_letters, max_size=4),
    pads,
)
# Digits with a country code: '+' (or not, or twice), 6-17 digits (a leading 0 too), written
# compactly or with separators, now and then a digit of another script.
PHONE_LAYOUTS = ["{}", "{} {} {}", "{}-{}-{}", "({}) {}.{}", "{}({}){}", "{} {}{}"]
phones = st.builds(
    lambda pre, plus, digits, layout, cut, post: (
        pre
        + plus
        + layout.format(*(digits[:cut], digits[cut : cut + 3], digits[cut + 3 :])).replace("{}", "")
        + post
    ),
    pads,
    st.sampled_from(["+", "+", "+", "", "", "1", "1 ", "++", "00", "\uff0b"]),
    st.text(alphabet="0123456789" * 8 + "\u0663\uff11", min_size=6, max_size=17)
    | st.text(alphabet="23456789", min_size=1, max_size=1).flatmap(
        lambda first: st.text(alphabet="0123456789", min_size=9, max_size=9).map(
            lambda rest: first + rest  # the North American shape
        )
    ),
    st.sampled_from(PHONE_LAYOUTS),
    st.integers(1, 4),
    pads,
)


def _case(value: str, mask: list[bool]) -> str:
    return "".join(
        c.upper() if up else c for c, up in zip(value, mask + [False] * len(value), strict=False)
    )


ad_ids = st.builds(
    lambda pre, raw, mask, post: f"{pre}{_case(raw, mask)}{post}",
    pads,
    st.uuids().map(str) | st.just(ZERO_UUID),
    st.lists(st.booleans(), max_size=36),
    pads,
) | st.builds(
    # One character changed: a non-hex letter, a full-width digit, a missing or extra dash.
    lambda raw, at, char: raw[:at] + char + raw[at + 1 :],
    st.uuids().map(str),
    st.integers(0, 35),
    st.sampled_from(["g", "G", "\uff10", "", "--", " ", "-"]),
)
hexes = st.text(alphabet="0123456789abcdefABCDEF", min_size=32, max_size=32) | st.text(
    alphabet="0123456789abcdef", min_size=64, max_size=64
)
long_values = st.builds(
    lambda value, pad: value + " " * pad,
    st.sampled_from(["a@b.co", "+14155550134", "4155550134", str(uuid.UUID(int=7))]),
    st.sampled_from([4090, 4096 - 6, 4096 - 5, 5000]),
)
anything = st.text(max_size=24)
values = st.lists(
    st.one_of(emails, phones, ad_ids, hexes, anything, long_values), min_size=5, max_size=40
)
# PostgreSQL's text cannot hold NUL.
pg_values = values.map(lambda vs: [v.replace("\x00", "") for v in vs])


@HYPOTHESIS
@given(drawn=pg_values)
def test_postgres_functions_give_the_targets_digest_or_null(
    pg: PostgresCluster, pg_functions: str, drawn: list[str]
) -> None:
    check(drawn, pg_evaluate(pg, pg_functions)(drawn, function_sql()))


@HYPOTHESIS
@given(drawn=pg_values)
def test_postgres_macros_give_the_targets_digest_or_null(
    pg: PostgresCluster, pg_functions: str, drawn: list[str]
) -> None:
    check(drawn, pg_evaluate(pg, pg_functions)(drawn, macro_sql("postgres")))


@HYPOTHESIS
@given(drawn=values)
def test_duckdb_functions_give_the_targets_digest_or_null(
    duck: duckdb.DuckDBPyConnection, drawn: list[str]
) -> None:
    check(drawn, duck_evaluate(duck)(drawn, function_sql()))


@HYPOTHESIS
@given(drawn=values)
def test_duckdb_macros_give_the_targets_digest_or_null(
    duck: duckdb.DuckDBPyConnection, drawn: list[str]
) -> None:
    check(drawn, duck_evaluate(duck)(drawn, macro_sql("duckdb")))


# Hand-picked corners, so that each is run whatever Hypothesis draws.
CORNERS = [
    " Jane.Doe@Gmail.COM\u3000",  # ideographic space: Python's strip removes it
    "\u200bjane@gmail.com",  # zero-width space: not whitespace, an invalid email
    "\ufeffjane@gmail.com",
    "jane@gmail.com\x1c",  # a file separator is whitespace to Python
    "jane@\u212aelvin.com",  # Kelvin sign: lowercases to 'k' in Python only
    "\u0130stanbul@example.com",
    "j.a.n.e+x+y@g.mail.com",
    "+.@x.y",
    ".@x.y",
    "a@b@c.d",
    "a@bcd",
    "a b@c.d",
    "@c.d",
    "a@.",
    "+14155550134",
    " +14155550134\u2028",
    "+04155550134",
    "+1234567",
    "+123456789012345",
    "+1234567890123456",
    "+1 415 555 0134",
    "+\u0661\u0664\u0661\u0665\u0665\u0665\u0660\u0661\u0663\u0664",
    "14155550134",
    "1 (415) 555-0134",
    "4155550134",
    "1415555013",
    "(415)555.0134",
    "11234567890",
    "0123456789",
    "415 555 0134 ext 1",
    "6D92078A-8246-4BA4-AE5B-76104861E7DC",
    ZERO_UUID,
    ZERO_UUID.replace("0", "O"),
    "6d92078a82464ba4ae5b76104861e7dc",
    "6d92078a-8246-4ba4-ae5b-76104861e7dc" + "0",
    "a" * 64,
    "A" * 32,
    "a@b.co" + " " * 4090,
    "a@b.co" + " " * 4091,
    "",
    "   ",
    "'; DROP TABLE t; --",
]


def test_corners_in_both_engines(
    pg: PostgresCluster, pg_functions: str, duck: duckdb.DuckDBPyConnection
) -> None:
    check(CORNERS, pg_evaluate(pg, pg_functions)(CORNERS, function_sql()))
    check(CORNERS, pg_evaluate(pg, pg_functions)(CORNERS, macro_sql("postgres")))
    check(CORNERS, duck_evaluate(duck)(CORNERS, function_sql()))
    check(CORNERS, duck_evaluate(duck)(CORNERS, macro_sql("duckdb")))
    # Not all NULL: the scope the docs promise is answered.
    digests = duck_evaluate(duck)(CORNERS, function_sql())
    assert sum(cell is not None for row in digests for cell in row) == sum(
        target_digest(i, v) is not None and exact_in_sql(c, v)
        for v in CORNERS
        for i, c in enumerate(COLUMNS)
    )


# -- what the SQL refuses ---------------------------------------------------------------------


def test_unknown_email_normalization_fails_the_query(
    pg: PostgresCluster, pg_functions: str, duck: duckdb.DuckDBPyConnection
) -> None:
    with pytest.raises(RuntimeError, match="email_normalization is basic or tiktok, not strict"):
        pg.psql(
            "SELECT tiktok_email_sha256(v, 'strict') FROM (VALUES ('a@b.co')) t(v);", pg_functions
        )
    with pytest.raises(duckdb.Error, match="email_normalization is basic or tiktok, not strict"):
        duck.execute("SELECT tiktok_email_sha256(v, 'strict') FROM (VALUES ('a@b.co')) t(v)")
    # A mode column that only ever says basic or tiktok is fine (no error folded at plan time).
    out = pg.psql(
        "SELECT tiktok_email(v, m) FROM (VALUES ('A.b+c@D.co', 'basic'), ('A.b+c@D.co', 'tiktok')) "
        "t(v, m);",
        pg_functions,
    )
    assert out.split() == ["a.b+c@d.co", "ab@d.co"]


def test_macros_refuse_other_engines_and_unknown_settings() -> None:
    with pytest.raises(render.CompilerError, match="only PostgreSQL and DuckDB are supported"):
        render.macros("snowflake").tiktok_email_sha256("email")
    m = render.macros("postgres")
    with pytest.raises(render.CompilerError, match="email_normalization is 'basic' or 'tiktok'"):
        m.tiktok_email_sha256("email", "strict")
    with pytest.raises(render.CompilerError, match="unknown contract 'EMAIL_MD5'"):
        m.tiktok_digest("email", "EMAIL_MD5")


def test_the_plain_sql_files_are_the_macros_rendered() -> None:
    for engine in render.ENGINES:
        assert render.path(engine).read_text(encoding="utf-8") == render.render(engine), (
            f"{render.path(engine)} is stale: run scripts/render_warehouse_sql.py"
        )


# -- docs/warehouse-hashing.md's SQL, as written -----------------------------------------------

DOCS_BLOCK = re.compile(r"<!-- docs-test: ([\w-]+) -->\n```\w+\n(.*?)\n```", re.DOTALL)
DOC_USERS = [
    (1, " Ann@Example.com", "+14155550134"),
    (2, "jos\u00e9@example.com", "(415) 555-0134"),  # non-ASCII: NULL; a US number: exact
    (3, "not-an-email", "+44 20 7946 0958"),  # invalid: NULL; spaced: NULL, the target's +44...
    (4, None, None),
]


def docs_blocks() -> dict[str, str]:
    text = (REPO / "docs" / "warehouse-hashing.md").read_text(encoding="utf-8")
    return dict(DOCS_BLOCK.findall(text))


def users_sql() -> str:
    def literal(value: str | None) -> str:
        return "NULL" if value is None else pg_literal(value)

    rows = ", ".join(f"({i}, {literal(e)}, {literal(p)})" for i, e, p in DOC_USERS)
    return (
        "CREATE TABLE users (id integer PRIMARY KEY, email text, phone text);\n"
        f"INSERT INTO users VALUES {rows};\n"
    )


def test_the_docs_count_of_values_left_null(pg: PostgresCluster, pg_functions: str) -> None:
    schema = f"count_{uuid.uuid4().hex[:8]}"
    sql = f"CREATE SCHEMA {schema}; SET search_path = {schema}, public;\n" + users_sql()
    out = pg.psql(sql + docs_blocks()["warehouse-count"] + ";", pg_functions)
    assert out.split() == ["2|1"]  # emails 2 and 3; phone 3


def test_the_docs_dbt_model_compiles_to_the_targets_digests(
    pg: PostgresCluster, pg_functions: str, duck: duckdb.DuckDBPyConnection
) -> None:
    block = docs_blocks()["warehouse-dbt-model"]
    # Ann's digest is the target's; josé@example.com is beyond what SQL can do exactly (NULL),
    # the other two the target rejects too.
    ann = hashlib.sha256(b"ann@example.com").hexdigest()
    assert target_digest(0, " Ann@Example.com") == ann
    assert not exact_in_sql(COLUMNS[0], "jos\u00e9@example.com")
    want = [f"1|{ann}", "2|", "3|", "4|"]
    schema = f"dbt_{uuid.uuid4().hex[:8]}"
    model = render.compile_model(block, "postgres", source=lambda _source, table: table)
    out = pg.psql(
        f"CREATE SCHEMA {schema}; SET search_path = {schema};\n{users_sql()}"
        f"SELECT * FROM ({model}) AS m ORDER BY id;",
        pg_functions,
    )
    assert out.split() == want
    model = render.compile_model(block, "duckdb", source=lambda _source, table: f"{schema}.users")
    cursor = duck.cursor()
    cursor.execute(f"CREATE SCHEMA {schema}")
    cursor.execute(users_sql().replace("users", f"{schema}.users", 2))
    rows = cursor.execute(f"SELECT * FROM ({model}) AS m ORDER BY id").fetchall()
    assert [f"{i}|{d or ''}" for i, d in rows] == want
