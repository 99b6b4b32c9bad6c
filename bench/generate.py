"""Deterministic `users` stream with identifiers as a warehouse holds them, as Singer messages.

Every record is drawn from a seeded `random.Random`, so a given (n, seed) always yields the same
file. The generator knows, for each value it writes, whether target-tiktok-audiences must accept
it and what the normalised value is (mirror mode, basic email, `default_phone_region: US`), and
returns that as :class:`Expected`. The mix of each column is the table below (EMAIL_MIX,
PHONE_MIX, GAID_MIX: share, description, maker); :func:`mix_markdown` prints it for README.md.

- email: trimmed + lowercased; capitals, spaces/tabs/no-break spaces around, a few invalid,
  some null or blank.
- phone: US E.164; US national formats; `+1` with separators; international numbers of twelve
  countries written with spaces or dashes as people type them (`+44 20 7946 0958`,
  `+49 30 12345678`, `+61 2 9374 4000`, ...), some in E.164, a few with the national prefix in
  parentheses (`+44 (0)20 ...`); a few invalid, some null or blank.
- gaid: UUIDs in lower, upper or mixed case, some padded; invalid: the all-zero UUID (tracking
  limited), a UUID without dashes (looks like an MD5: "already hashed"), truncated; some null.
- idfa (narrow scenario only): the gaid rules, other UUIDs.

Two scenarios (SCENARIOS): "wide" (issue 13: the identifier columns next to a name, a country
and an `updated_at` date-time, as a whole users table) and "narrow" (issue 21: `id` and the
four identifier columns only, as an audience query selects them). For a given seed the wide
file is the same as before the narrow scenario existed.

About 2% of the records reuse the identity (key) of an earlier record, so audiences see
duplicate identifiers and the distinct count is smaller than the accepted count.
The file is written line by line: memory does not depend on ``n`` unless ``collect`` is set.
"""

from __future__ import annotations

import bisect
import itertools
import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

STREAM = "users"
# The "wide" scenario (issue 13): three identifier columns and three others, one a date-time.
CONTRACTS: tuple[str, ...] = ("EMAIL_SHA256", "PHONE_SHA256", "GAID_SHA256")
COLUMNS: dict[str, str] = {"EMAIL_SHA256": "email", "PHONE_SHA256": "phone", "GAID_SHA256": "gaid"}
# The "narrow" scenario (issue 21): an audience query's columns only, the id and four identifiers.
NARROW_COLUMNS: dict[str, str] = {**COLUMNS, "IDFA_SHA256": "idfa"}

_STRING: dict[str, object] = {"type": ["string", "null"]}


def _schema(properties: dict[str, object]) -> dict[str, object]:
    return {
        "type": "SCHEMA",
        "stream": STREAM,
        "key_properties": ["id"],
        "schema": {"type": "object", "properties": {"id": {"type": "integer"}, **properties}},
    }


SCHEMA = _schema(
    {
        **dict.fromkeys(("email", "phone", "gaid", "first_name", "country"), _STRING),
        "updated_at": {"type": ["string", "null"], "format": "date-time"},
    }
)
NARROW_SCHEMA = _schema(dict.fromkeys(NARROW_COLUMNS.values(), _STRING))


@dataclass
class Expected:
    """What the target must accept from the generated file (mirror mode, basic email, US)."""

    records: int
    contracts: tuple[str, ...] = CONTRACTS
    accepted: dict[str, int] = field(default_factory=dict)
    # contract -> distinct valid normalised values; None unless generate(collect=True)
    values: dict[str, set[str]] | None = None

    def __post_init__(self) -> None:
        self.accepted = self.accepted or dict.fromkeys(self.contracts, 0)

    def distinct(self, contract: str) -> int:
        if self.values is None:
            raise ValueError("generate(collect=True) keeps the distinct values")
        return len(self.values[contract])


Value = tuple[str | None, str | None]  # (raw value, normalised value or None when rejected)
Maker = Callable[[random.Random, int], Value]


def _messy_case(rng: random.Random, text: str) -> str:
    r = rng.random()
    if r < 0.4:
        return text
    if r < 0.7:
        return text.upper()
    if r < 0.85:
        return text[:1].upper() + text[1:]
    return "".join(c.upper() if i % 2 else c for i, c in enumerate(text))


def _pad(rng: random.Random, text: str) -> str:
    r = rng.random()
    if r < 0.8:
        return text
    if r < 0.9:
        return f"  {text} "
    if r < 0.96:
        return f"\t{text}\n"
    return f"\u00a0{text}\u00a0"  # a no-break space, as pasted from a web page


def _digits(k: int, n: int) -> str:
    """n digits that differ for every k < 10**7 (a bijection on the last 7)."""
    head = f"{k % 10 ** (n - 7):0{n - 7}d}" if n > 7 else ""
    return head + f"{(k * 2654435761) % 10_000_000:07d}"


# --- email --------------------------------------------------------------------------------------

_DOMAINS = ("example.com", "Mail.Example.org", "corp.example.net", "EXAMPLE.io")
_BAD_EMAILS = ("user{k}.example.com", "user{k}@localhost", "user {k}@example.com", "@example.com")


def _email_clean(rng: random.Random, k: int) -> Value:
    local = f"user.{k}" if k % 3 else f"user{k}+promo"
    clean = f"{local}@{_DOMAINS[k % len(_DOMAINS)]}"
    return _pad(rng, _messy_case(rng, clean)), clean.lower()


EMAIL_MIX: tuple[tuple[float, str, Maker], ...] = (
    (0.03, "null", lambda rng, k: (None, None)),
    (0.02, "blank (`\"   \"`)", lambda rng, k: ("   ", None)),
    (0.04, "invalid (no `@`, no dot in the domain, inner space, empty local part)",
     lambda rng, k: (_BAD_EMAILS[k % 4].format(k=k), None)),
    (0.91, "valid; 60% with capitals (upper, title, mixed), 20% padded (spaces, tab/newline, "
     "no-break space)", _email_clean),
)  # fmt: skip


# --- phone --------------------------------------------------------------------------------------

_AREAS = ("212", "415", "646", "312", "713", "206", "303", "617")
_BAD_PHONES = (
    "12345",  # too short for US
    "call me",
    "555-01",
    "+0 415 555",  # no country code starts with 0
    "n/a",
    "+1 415 555 01",  # 8 digits after +1: not a possible NANP number
    "+44 20 7946 0958 12",  # 12 after +44: too long for the UK
)

# (country code, national significant number digits, template writing them as people do).
# National numbers chosen never to start with the country's national prefix, so the expected
# E.164 is simply "+" + code + digits.
_INTERNATIONAL: tuple[tuple[str, str, Callable[[str], str]], ...] = (
    ("44", "20{}", lambda d: f"+44 20 {d[:4]} {d[4:]}"),  # 8 digits after 20
    ("44", "7{}", lambda d: f"+44 7{d[:3]} {d[3:]}"),  # UK mobile, 9 after 7
    ("49", "30{}", lambda d: f"+49 30 {d}"),
    ("33", "6{}", lambda d: f"+33 6 {d[:2]} {d[2:4]} {d[4:6]} {d[6:]}"),
    ("61", "2{}", lambda d: f"+61 2 {d[:4]} {d[4:]}"),
    ("91", "98{}", lambda d: f"+91 98{d[:3]} {d[3:]}"),
    ("55", "119{}", lambda d: f"+55 11 9{d[:4]}-{d[4:]}"),
    ("81", "3{}", lambda d: f"+81 3-{d[:4]}-{d[4:]}"),
    ("52", "55{}", lambda d: f"+52 55 {d[:4]} {d[4:]}"),
    ("34", "6{}", lambda d: f"+34 6{d[:2]} {d[2:4]} {d[4:6]} {d[6:]}"),
    ("39", "06{}", lambda d: f"+39 06 {d[:4]} {d[4:]}"),  # Italy keeps the 0
    ("31", "6{}", lambda d: f"+31 6 {d}"),
)


def _us(k: int) -> tuple[str, str]:
    """(area code, 7-digit subscriber number) of user k."""
    return _AREAS[k % len(_AREAS)], _digits(k, 7)


def _us_e164(rng: random.Random, k: int) -> Value:
    area, m = _us(k)
    return f"+1{area}{m}", f"+1{area}{m}"


_US_NATIONAL = (
    "({a}) {m1}-{m2}", "{a}-{m1}-{m2}", "{a}.{m1}.{m2}", "1 {a} {m1} {m2}", "{a}{m1}{m2}",
)  # fmt: skip
_US_PLUS = ("+1 {a}-{m1}-{m2}", "+1 ({a}) {m1}-{m2}", "+1 {a} {m1} {m2}", "+1.{a}.{m1}.{m2}")


def _us_written(styles: tuple[str, ...]) -> Maker:
    def make(rng: random.Random, k: int) -> Value:
        area, m = _us(k)
        raw = styles[rng.randrange(len(styles))].format(a=area, m1=m[:3], m2=m[3:])
        return _pad(rng, raw), f"+1{area}{m}"

    return make


def _international(rng: random.Random, k: int) -> Value:
    code, nsn, write = _INTERNATIONAL[rng.randrange(len(_INTERNATIONAL))]
    d = _digits(k, 9 if nsn == "7{}" else 8)
    raw = write(d)
    r = rng.random()
    if r < 0.2:  # dashes where the template has spaces
        raw = raw[:3] + raw[3:].replace(" ", "-")
    elif r < 0.3:  # only the country code set apart
        raw = raw[: 1 + len(code)] + " " + raw[1 + len(code) :].replace(" ", "").replace("-", "")
    return _pad(rng, raw), "+" + code + nsn.format(d)


def _international_e164(rng: random.Random, k: int) -> Value:
    code, nsn, _ = _INTERNATIONAL[rng.randrange(len(_INTERNATIONAL))]
    e164 = "+" + code + nsn.format(_digits(k, 9 if nsn == "7{}" else 8))
    return e164, e164


def _national_prefix(rng: random.Random, k: int) -> Value:
    d = _digits(k, 8)
    if rng.random() < 0.5:
        return f"+44 (0)20 {d[:4]} {d[4:]}", f"+4420{d}"
    return f"+49 (0)30 {d}", f"+4930{d}"


PHONE_MIX: tuple[tuple[float, str, Maker], ...] = (
    (0.03, "null", lambda rng, k: (None, None)),
    (0.02, "blank (`\"\"`)", lambda rng, k: ("", None)),
    (0.05, "invalid (too short/long, letters, country code 0, `n/a`)",
     lambda rng, k: (_BAD_PHONES[k % len(_BAD_PHONES)], None)),
    (0.20, "US E.164 (`+14155550134`)", _us_e164),
    (0.23, "US national (`(415) 555-0134`, `415-555-0134`, `415.555.0134`, "
     "`1 415 555 0134`, `4155550134`)", _us_written(_US_NATIONAL)),
    (0.10, "`+1` with separators (`+1 415-555-0134`, `+1 (415) 555-0134`, ...)",
     _us_written(_US_PLUS)),
    (0.27, "international written with spaces (70%), dashes (20%) or only the country code set "
     "apart (10%), 12 plans: UK landline and mobile, DE, FR, AU, IN, BR, JP, MX, ES, IT, NL "
     "(`+44 20 7946 0958`, `+61 2 9374 4000`, `+55 11 91234-5678`, `+81 3-1234-5678`)",
     _international),
    (0.08, "international E.164 (`+442079460958`), the same 12 plans", _international_e164),
    (0.02, "national prefix kept in parentheses (`+44 (0)20 7946 0958`, `+49 (0)30 ...`)",
     _national_prefix),
)  # fmt: skip


# --- gaid ---------------------------------------------------------------------------------------

_ZERO_UUID = "00000000-0000-0000-0000-000000000000"
_MASK128 = (1 << 128) - 1
_MUL = 0x9E3779B97F4A7C15F39CC0605CEDC835  # odd: k -> k * _MUL mod 2**128 is a bijection
_ADD = 0x6A09E667F3BCC908B2F2FE94F82BE52C


def _hex128(k: int) -> str:
    return f"{(k * _MUL + _ADD) & _MASK128:032x}"


def _uuid(k: int) -> str:
    h = _hex128(k)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _ad_id_mix(offset: int) -> tuple[tuple[float, str, Maker], ...]:
    """GAID and IDFA follow the same rules; `offset` gives each its own UUIDs per user."""

    def valid(rng: random.Random, k: int) -> Value:
        uuid = _uuid(k + offset)
        r = rng.random()
        raw = uuid.upper() if r < 0.5 else _messy_case(rng, uuid) if r < 0.6 else uuid
        return _pad(rng, raw), (None if uuid == _ZERO_UUID else uuid)

    return (
        (0.03, "null", lambda rng, k: (None, None)),
        (0.03, "all-zero UUID (tracking limited)", lambda rng, k: (_ZERO_UUID, None)),
        (0.01, "UUID without dashes (32 hex: already hashed)",
         lambda rng, k: (_hex128(k + offset), None)),
        (0.01, "truncated UUID", lambda rng, k: (_uuid(k + offset)[:-3], None)),
        (0.92, "valid; 50% upper case, 10% mixed case, 20% padded", valid),
    )  # fmt: skip


GAID_MIX = _ad_id_mix(0)
IDFA_MIX = _ad_id_mix(10**12)  # same rules, other UUIDs (no generated k comes near 10**12)


Mix = tuple[tuple[float, str, Maker], ...]
_MAKERS: tuple[tuple[str, str, Mix], ...] = (
    ("EMAIL_SHA256", "email", EMAIL_MIX),
    ("PHONE_SHA256", "phone", PHONE_MIX),
    ("GAID_SHA256", "gaid", GAID_MIX),
)
_NARROW_MAKERS: tuple[tuple[str, str, Mix], ...] = (
    *_MAKERS,
    ("IDFA_SHA256", "idfa", IDFA_MIX),
)


@dataclass(frozen=True)
class Scenario:
    """One shape of input: which identifier columns, and whether the other columns come too."""

    name: str
    columns: dict[str, str]  # contract -> column
    schema: Mapping[str, object]
    makers: tuple[tuple[str, str, Mix], ...]
    extra_columns: bool  # first_name, country, updated_at (a date-time target-csv parses)
    about: str


WIDE = Scenario(
    "wide",
    COLUMNS,
    SCHEMA,
    _MAKERS,
    True,
    "`id`, `email`, `phone`, `gaid`, `first_name`, `country`, `updated_at` (date-time); "
    "3 contracts",
)
NARROW = Scenario(
    "narrow",
    NARROW_COLUMNS,
    NARROW_SCHEMA,
    _NARROW_MAKERS,
    False,
    "`id`, `email`, `phone`, `gaid`, `idfa` (an audience query's columns); 4 contracts",
)
SCENARIOS: dict[str, Scenario] = {s.name: s for s in (WIDE, NARROW)}
_NAMES = ("Ana", "Bo", "Chen", "Dara", "Eli", "Fatima", "Goran", "Hana", "Ivo", "Jun")


def _chooser(mix: tuple[tuple[float, str, Maker], ...]) -> Callable[[random.Random, int], Value]:
    if abs(sum(share for share, _, _ in mix) - 1) > 1e-9:
        raise ValueError("a mix's shares must add up to 1")
    bounds = list(itertools.accumulate(share for share, _, _ in mix))
    makers = [make for _, _, make in mix]

    def choose(rng: random.Random, k: int) -> Value:
        index = min(bisect.bisect_right(bounds, rng.random()), len(makers) - 1)
        return makers[index](rng, k)

    return choose


def mix_markdown(scenario: Scenario = NARROW) -> str:
    """The generated mix as a Markdown table (bench/README.md shows it next to the results)."""
    rows = ["| column | share | values |", "|---|---:|---|"]
    for _, column, mix in scenario.makers:
        rows += [f"| {column} | {share:.0%} | {text} |" for share, text, _ in mix]
    return "\n".join(rows)


def generate(
    path: str | Path,
    n: int,
    seed: int = 42,
    *,
    collect: bool = False,
    scenario: Scenario = WIDE,
) -> Expected:
    """Write SCHEMA, ``n`` RECORDs and a final STATE to ``path``; return what must be accepted."""
    rng = random.Random(seed)
    expected = Expected(records=n, contracts=tuple(scenario.columns))
    if collect:
        expected.values = {c: set() for c in scenario.columns}
    accepted = expected.accepted
    values = expected.values
    makers = [(contract, column, _chooser(mix)) for contract, column, mix in scenario.makers]
    extra_columns = scenario.extra_columns
    dumps = json.dumps
    with open(path, "w", encoding="utf-8", buffering=1 << 20) as out:
        out.write(dumps(scenario.schema) + "\n")
        for i in range(n):
            # ~2% of the records are an earlier user again (duplicate identifiers).
            k = rng.randrange(i) if i and rng.random() < 0.02 else i
            record: dict[str, object] = {"id": i}
            for contract, column, make in makers:
                raw, norm = make(rng, k)
                record[column] = raw
                if norm is not None:
                    accepted[contract] += 1
                    if values is not None:
                        values[contract].add(norm)
            if not extra_columns:
                out.write(f'{{"type":"RECORD","stream":"{STREAM}","record":{dumps(record)}}}\n')
                continue
            record["first_name"] = _NAMES[k % len(_NAMES)]
            record["country"] = "US"
            record["updated_at"] = f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}T12:00:00Z"
            out.write(f'{{"type":"RECORD","stream":"{STREAM}","record":{dumps(record)}}}\n')
        out.write(dumps({"type": "STATE", "value": {"bookmarks": {STREAM: {"id": n}}}}) + "\n")
    return expected
