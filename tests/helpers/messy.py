"""Deterministic messy user rows and, independently of the target's code, their digests."""

from __future__ import annotations

import hashlib
import uuid

CONTRACTS = ("EMAIL_SHA256", "PHONE_SHA256", "GAID_SHA256")


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def messy_users(start: int, stop: int) -> tuple[list[dict], dict[str, set[str]]]:
    """Rows with spaces, capitals, national phone formats, upper-case ad ids and bad values.

    Returns the rows and the exact digests a correct target must deliver per contract.
    """
    rows: list[dict] = []
    expected: dict[str, set[str]] = {c: set() for c in CONTRACTS}
    for i in range(start, stop):
        email = [
            f"  User{i}@Example.COM ",
            f"USER{i}@EXAMPLE.COM",
            f"user{i}@example.com\t",
            f"User{i}@example.com",
        ][i % 4]
        phone = [
            f"(212) 555-{i % 10000:04d}",
            f"212.555.{i % 10000:04d}",
            f"+1 212 555 {i % 10000:04d}",
            f" +1212555{i % 10000:04d} ",
        ][i % 4]
        gaid = str(uuid.UUID(int=(i + 1) * 7919))
        gaid = f" {gaid.upper()} " if i % 2 else gaid
        row: dict = {"id": i, "email": email, "phone": phone, "gaid": gaid}
        if i % 10 == 3:
            row["email"] = f"user{i} at example dot com"
        if i % 10 == 5:
            row["phone"] = "12"
        if i % 10 == 7:
            row["gaid"] = "00000000-0000-0000-0000-000000000000"
        if i % 13 == 0:
            row["phone"] = None
        if i % 17 == 0:
            row["email"] = 12345  # wrong JSON type
        rows.append(row)
        if isinstance(row["email"], str) and "@" in row["email"]:
            expected["EMAIL_SHA256"].add(_sha(f"user{i}@example.com"))
        if row["phone"] not in (None, "12"):
            expected["PHONE_SHA256"].add(_sha(f"+1212555{i % 10000:04d}"))
        if not row["gaid"].startswith("00000000-0000-0000-0000-0000000000"):
            expected["GAID_SHA256"].add(_sha(str(uuid.UUID(int=(i + 1) * 7919))))
    return rows, expected
