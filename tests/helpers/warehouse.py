"""What the warehouse SQL (dbt/macros, sql/) must give, shared by tests/test_warehouse_sql.py
(the plain functions and the macros rendered, in PostgreSQL and DuckDB), tests/test_dbt_package.py
(the package run by dbt) and tests/test_readme_commands.py (the docs' recipe).

For every raw value and every contract the SQL gives what identifiers.make_encoder gives, or
NULL; and inside the scope docs/warehouse-hashing.md promises (ASCII emails, phones in E.164
syntax, North American numbers with region US or CA, every ad id) exactly the target's answer.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from target_tiktok_audiences.identifiers import Rules, make_encoder

REPO = Path(__file__).resolve().parents[2]
WAREHOUSE_DOC = REPO / "docs" / "warehouse-hashing.md"


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


def pg_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# Hand-picked corners, so that each is run whatever Hypothesis draws.
CORNERS = [
    " Jane.Doe@Gmail.COM\u3000",  # ideographic space: Python's strip removes it
    "\u200bjane@gmail.com",  # zero-width space: not whitespace, an invalid email
    "\ufeffjane@gmail.com",
    "jane@gmail.com\x1c",  # a file separator is whitespace to Python
    "jane@\u212aelvin.com",  # Kelvin sign: lowercases to 'k' in Python only
    "\u0130stanbul@example.com",
    "IVAN.IVANOV@EXAMPLE.COM",  # upper-case I: lowercased by Python's rules, not a locale's
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


DOCS_BLOCK = re.compile(r"<!-- docs-test: ([\w-]+) -->\n```\w+\n(.*?)\n```", re.DOTALL)
DOC_USERS = [
    (1, " Ann@Example.com", "+14155550134"),
    (2, "jos\u00e9@example.com", "(415) 555-0134"),  # non-ASCII: NULL; a US number: exact
    (3, "not-an-email", "+44 20 7946 0958"),  # invalid: NULL; spaced: NULL, the target's +44...
    (4, None, None),
]


def docs_blocks() -> dict[str, str]:
    text = WAREHOUSE_DOC.read_text(encoding="utf-8")
    return dict(DOCS_BLOCK.findall(text))


def users_sql() -> str:
    def literal(value: str | None) -> str:
        return "NULL" if value is None else pg_literal(value)

    rows = ", ".join(f"({i}, {literal(e)}, {literal(p)})" for i, e, p in DOC_USERS)
    return (
        "CREATE TABLE users (id integer PRIMARY KEY, email text, phone text);\n"
        f"INSERT INTO users VALUES {rows};\n"
    )
