"""Deterministic `users` stream with messy identifiers, written as Singer messages.

Every record is drawn from a seeded `random.Random`, so a given (n, seed) always yields the same
file. The generator knows, for each value it writes, whether target-tiktok-audiences must accept
it and what the normalised value is, and returns that as :class:`Expected`:

- email: trimmed + lowercased (basic mode); some with spaces/tabs around, capitals, a few invalid
  (no ``@``, no dot in the domain, inner space, empty local part), some null or blank.
- phone: E.164 (+1, +44), US national formats such as ``(415) 555-0134``, ``415-555-0134``,
  ``415.555.0134``, ``1 415 555 0134``, spaced international ``+1 415 555 0134``; a few
  invalid (too short, letters, bad country code), some null.
- gaid: UUIDs in lower or upper case, some padded; invalid: the all-zero UUID (tracking
  limited), a UUID without dashes (looks like an MD5: "already hashed"), garbage; some null.

About 2% of the records reuse the identity (key) of an earlier record, so audiences see
duplicate identifiers and the distinct count is smaller than the accepted count.
The file is written line by line: memory does not depend on ``n`` unless ``collect`` is set.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

STREAM = "users"
CONTRACTS: tuple[str, ...] = ("EMAIL_SHA256", "PHONE_SHA256", "GAID_SHA256")
COLUMNS: dict[str, str] = {"EMAIL_SHA256": "email", "PHONE_SHA256": "phone", "GAID_SHA256": "gaid"}

SCHEMA = {
    "type": "SCHEMA",
    "stream": STREAM,
    "key_properties": ["id"],
    "schema": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "email": {"type": ["string", "null"]},
            "phone": {"type": ["string", "null"]},
            "gaid": {"type": ["string", "null"]},
            "first_name": {"type": ["string", "null"]},
            "country": {"type": ["string", "null"]},
            "updated_at": {"type": ["string", "null"], "format": "date-time"},
        },
    },
}

_DOMAINS = ("example.com", "Mail.Example.org", "corp.example.net", "EXAMPLE.io")
_NAMES = ("Ana", "Bo", "Chen", "Dara", "Eli", "Fatima", "Goran", "Hana", "Ivo", "Jun")
_AREAS = ("212", "415", "646", "312", "713", "206", "303", "617")
_ZERO_UUID = "00000000-0000-0000-0000-000000000000"
_MASK128 = (1 << 128) - 1
_MUL = 0x9E3779B97F4A7C15F39CC0605CEDC835  # odd: k -> k * _MUL mod 2**128 is a bijection
_ADD = 0x6A09E667F3BCC908B2F2FE94F82BE52C


@dataclass
class Expected:
    """What the target must accept from the generated file (mirror mode, basic email, US)."""

    records: int
    accepted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CONTRACTS, 0))
    # contract -> distinct valid normalised values; None unless generate(collect=True)
    values: dict[str, set[str]] | None = None

    def distinct(self, contract: str) -> int:
        if self.values is None:
            raise ValueError("generate(collect=True) keeps the distinct values")
        return len(self.values[contract])


def _messy_case(rng: random.Random, text: str) -> str:
    r = rng.random()
    if r < 0.5:
        return text
    if r < 0.75:
        return text.upper()
    return text[:1].upper() + text[1:]


def _pad(rng: random.Random, text: str) -> str:
    r = rng.random()
    if r < 0.85:
        return text
    if r < 0.95:
        return f"  {text} "
    return f"\t{text}\n"


def _email(rng: random.Random, k: int) -> tuple[str | None, str | None]:
    """(raw value, normalised value or None when invalid/absent)."""
    r = rng.random()
    domain = _DOMAINS[k % len(_DOMAINS)]
    local = f"user.{k}" if k % 3 else f"user{k}+promo"
    if r < 0.03:
        return None, None
    if r < 0.04:
        return "   ", None
    if r < 0.08:  # invalid
        bad = (
            f"user{k}.example.com",
            f"user{k}@localhost",
            f"user {k}@example.com",
            "@example.com",
        )
        return bad[k % len(bad)], None
    clean = f"{local}@{domain}"
    return _pad(rng, _messy_case(rng, clean)), clean.lower()


def _phone(rng: random.Random, k: int) -> tuple[str | None, str | None]:
    r = rng.random()
    area = _AREAS[k % len(_AREAS)]
    m = f"{(k * 2654435761) % 10_000_000:07d}"  # bijective on k < 10**7
    e164 = f"+1{area}{m}"
    if r < 0.03:
        return None, None
    if r < 0.08:  # invalid
        bad = ("12345", "call me", "555-01", "+0 415 555", "n/a")
        return bad[k % len(bad)], None
    if r < 0.40:
        return e164, e164
    if r < 0.47:  # UK mobile, E.164
        uk = f"+447{m}{k % 100:02d}"
        return uk, uk
    if r < 0.72:
        return _pad(rng, f"({area}) {m[:3]}-{m[3:]}"), e164
    if r < 0.84:
        return f"{area}-{m[:3]}-{m[3:]}", e164
    if r < 0.90:
        return f"{area}.{m[:3]}.{m[3:]}", e164
    if r < 0.95:
        return f"1 {area} {m[:3]} {m[3:]}", e164
    return f"+1 {area} {m[:3]} {m[3:]}", e164


def _gaid(rng: random.Random, k: int) -> tuple[str | None, str | None]:
    r = rng.random()
    h = f"{(k * _MUL + _ADD) & _MASK128:032x}"
    uuid = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
    if r < 0.03:
        return None, None
    if r < 0.06:
        return _ZERO_UUID, None  # tracking limited
    if r < 0.07:
        return h, None  # no dashes: 32 hex, rejected as "already hashed"
    if r < 0.08:
        return uuid[:-3], None
    raw = uuid.upper() if r < 0.45 else uuid
    return _pad(rng, raw), (None if uuid == _ZERO_UUID else uuid)


_MAKERS = (
    ("EMAIL_SHA256", "email", _email),
    ("PHONE_SHA256", "phone", _phone),
    ("GAID_SHA256", "gaid", _gaid),
)


def generate(path: str | Path, n: int, seed: int = 42, *, collect: bool = False) -> Expected:
    """Write SCHEMA, ``n`` RECORDs and a final STATE to ``path``; return what must be accepted."""
    rng = random.Random(seed)
    expected = Expected(records=n)
    if collect:
        expected.values = {c: set() for c in CONTRACTS}
    accepted = expected.accepted
    values = expected.values
    dumps = json.dumps
    with open(path, "w", encoding="utf-8", buffering=1 << 20) as out:
        out.write(dumps(SCHEMA) + "\n")
        for i in range(n):
            # ~2% of the records are an earlier user again (duplicate identifiers).
            k = rng.randrange(i) if i and rng.random() < 0.02 else i
            record: dict[str, object] = {"id": i}
            for contract, column, make in _MAKERS:
                raw, norm = make(rng, k)
                record[column] = raw
                if norm is not None:
                    accepted[contract] += 1
                    if values is not None:
                        values[contract].add(norm)
            record["first_name"] = _NAMES[k % len(_NAMES)]
            record["country"] = "US"
            record["updated_at"] = f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}T12:00:00Z"
            out.write(f'{{"type":"RECORD","stream":"{STREAM}","record":{dumps(record)}}}\n')
        out.write(dumps({"type": "STATE", "value": {"bookmarks": {STREAM: {"id": n}}}}) + "\n")
    return expected
