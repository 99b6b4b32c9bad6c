"""The warehouse SQL (sql/*/tiktok_identifiers.sql and the dbt macros they are rendered from)
against the target's own encoder, in a real PostgreSQL and in DuckDB.

For every raw value and every contract the SQL gives what identifiers.make_encoder gives, or
NULL; and inside the scope docs/warehouse-hashing.md promises (ASCII emails, phones in E.164
syntax, North American numbers with region US or CA, every ad id) it gives exactly the
target's answer, a digest or NULL alike (helpers/warehouse.py). The dbt macros are rendered
here by scripts/render_warehouse_sql.py's dispatch shim, fast enough for Hypothesis;
tests/test_dbt_package.py runs them in dbt itself.
"""

from __future__ import annotations

import functools
import hashlib
import string
import uuid
from collections.abc import Callable, Iterator, Sequence

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.pg import PostgresCluster, throwaway_cluster
from helpers.warehouse import (
    COLUMNS,
    CORNERS,
    ZERO_UUID,
    check,
    docs_blocks,
    exact_in_sql,
    pg_literal,
    render,
    target_digest,
    users_sql,
)

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
# Dots and '+' often (the tiktok rules), and ASCII that no address may hold (space, tab, control
# characters, DEL); then now and then a character of another script.
ASCII_LOCAL = string.ascii_letters + string.digits + ".+" * 8 + "-_'!#~"
ASCII_JUNK = ' \t\x01\x7f"\\|'
UNICODE = "\u00e9\u00c9\u0130\u0131\u212a\u00df\uff21\u0663"
emails = st.builds(
    lambda pre, local, at, host, dot, tld, post: f"{pre}{local}{at}{host}{dot}{tld}{post}",
    pads,
    st.text(alphabet=ASCII_LOCAL, min_size=1, max_size=10)
    | st.builds(
        lambda a, junk, b: a + junk + b,
        st.text(alphabet=ASCII_LOCAL, max_size=4),
        st.sampled_from(ASCII_JUNK),
        st.text(alphabet=ASCII_LOCAL, max_size=4),
    )
    | st.text(alphabet=ASCII_LOCAL + UNICODE, max_size=10),
    st.sampled_from(["@"] * 6 + ["@@", "", "\uff20", "@ "]),
    st.text(alphabet=string.ascii_letters + string.digits + "-", max_size=8)
    | st.text(alphabet=string.ascii_letters + "\u00fc\u0130\u212a.", max_size=8),
    st.sampled_from([".", ".", ".", "", "..", "\u3002"]),
    st.text(alphabet=string.ascii_letters, max_size=4),
    pads,
)
# Digits with a country code: '+' (or not, or twice), 6-17 digits (a leading 0 too), written
# compactly or with separators, now and then a digit of another script; and ten digits in the
# North American shape (or not quite: a first digit 0 or 1).
PHONE_LAYOUTS = ["{}{}{}", "{}{}{}", "{}{}{}", "{} {} {}", "{}-{}-{}", "({}) {}.{}", "{}({}){}"]
phones = st.builds(
    lambda pre, plus, digits, layout, cut, post: (
        pre + plus + layout.format(digits[:cut], digits[cut : cut + 3], digits[cut + 3 :]) + post
    ),
    pads,
    st.sampled_from(["+", "+", "+", "", "", "1", "1 ", "++", "00", "\uff0b"]),
    st.text(alphabet="0123456789" * 8 + "\u0663\uff11", min_size=6, max_size=17)
    | st.builds(
        lambda first, rest: first + rest,
        st.sampled_from("2345678901"),
        st.text(alphabet="0123456789", min_size=9, max_size=9),
    ),
    st.sampled_from(PHONE_LAYOUTS),
    st.integers(1, 4),
    pads,
) | st.builds(
    # E.164's edges: '+', a first digit 0-9, 6 to 17 digits in all.
    lambda first, rest: f"+{first}{rest}",
    st.sampled_from("0123456789"),
    st.text(alphabet="0123456789", min_size=5, max_size=16),
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
# Every kind in every example, each value once.
values = st.builds(
    lambda *kinds: [v for kind in kinds for v in kind],
    st.lists(emails, min_size=1, max_size=12, unique=True),
    st.lists(phones, min_size=1, max_size=12, unique=True),
    st.lists(ad_ids, min_size=1, max_size=6, unique=True),
    st.lists(hexes | anything, max_size=4, unique=True),
    st.lists(long_values, max_size=1),
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


def test_corners_in_both_engines(
    pg: PostgresCluster, pg_functions: str, duck: duckdb.DuckDBPyConnection
) -> None:
    check(CORNERS, pg_evaluate(pg, pg_functions)(CORNERS, function_sql()))
    check(CORNERS, pg_evaluate(pg, pg_functions)(CORNERS, macro_sql("postgres")))
    check(CORNERS, duck_evaluate(duck)(CORNERS, function_sql()))
    check(CORNERS, duck_evaluate(duck)(CORNERS, macro_sql("duckdb")))


def test_a_turkish_database_gives_the_same_digests(pg: PostgresCluster) -> None:
    """lower() and upper() follow the database's locale (Turkish: 'I' -> a dotless i); the SQL
    uses neither, so a database whose collation is Turkish gives the same digests."""
    database = f"tr_{uuid.uuid4().hex[:12]}"
    pg.psql(
        f"CREATE DATABASE {database} TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C.UTF-8' "
        "LOCALE_PROVIDER icu ICU_LOCALE 'tr-TR';"
    )
    pg.psql(render.path("postgres").read_text(encoding="utf-8"), database)
    assert pg.psql("SELECT lower('IVAN');", database).strip() == "\u0131van"  # the trap
    check(CORNERS, pg_evaluate(pg, database)(CORNERS, function_sql()))
    check(CORNERS, pg_evaluate(pg, database)(CORNERS, macro_sql("postgres")))


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
