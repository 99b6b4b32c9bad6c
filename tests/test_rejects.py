"""rejects_url (issue 19): which rows were rejected, by key and reason, never by value.

The real CLI against the sandbox; the folder is local (modes checked) or on S3 (moto server).
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

from test_mirror_diff import s3_client, s3_endpoint, s3_env  # noqa: F401 - s3_endpoint: fixture

from target_tiktok_audiences.sandbox.server import SandboxServer

from helpers import (
    ADV1,
    Run,
    base_config,
    record_msg,
    run_target,
    schema_msg,
    sha256,
    state_msg,
    stream_report,
)

# Raw values that must never reach the folder (nor their digests).
BAD = {
    1001: {"email": "no-at-sign.example.com", "phone": "+1415555"},  # both invalid
    1002: {"email": "ab" * 32, "phone": None},  # looks hashed already
    1003: {"email": "ok.1003@example.com", "phone": "12"},  # phone invalid, email fine
}
MAPPINGS = [
    {
        "stream": "crm",
        "audience_name": "CRM",
        "identifiers": {"EMAIL_SHA256": "email", "PHONE_SHA256": "phone"},
        "audience_type": "partner",
        "remove_column": "gone",
    },
    {
        "stream": "tiers",
        "audience_name": "Tier {value}",
        "audience_name_column": "tier",
        "identifiers": {"EMAIL_SHA256": "email"},
    },
    {"stream": "nokey", "audience_name": "No key", "identifiers": {"EMAIL_SHA256": "email"}},
    {"stream": "bymail", "audience_name": "By mail", "identifiers": {"EMAIL_SHA256": "email"}},
]
RAW = [
    "no-at-sign.example.com",
    "+1415555",
    "ab" * 32,
    "yes-please",
    "tier-less@example.com",
    "nokey-bad",
    "bymail-bad",
]


def messages() -> list[dict[str, Any]]:
    good = [{"id": i, "email": f"user{i}@example.com", "gone": False} for i in range(1000)]
    crm = [*good, *({"id": i, **v, "gone": False} for i, v in BAD.items())]
    crm.append({"id": 1004, "email": "ok.1004@example.com", "gone": "yes-please"})
    tiers = [{"id": i, "email": f"user{i}@example.com", "tier": "a"} for i in range(1000)]
    tiers.append({"id": 2001, "email": "tier-less@example.com", "tier": None})
    return [
        schema_msg("crm", ["email", "phone", "gone"]),
        *(record_msg("crm", r) for r in crm),
        schema_msg("tiers", ["email", "tier"]),
        *(record_msg("tiers", r) for r in tiers),
        schema_msg("nokey", ["email"], key=None),
        record_msg("nokey", {"email": "nokey-bad"}),
        record_msg("nokey", {"email": "fine@example.com"}),
        {**schema_msg("bymail", ["email"], key=None), "key_properties": ["email"]},
        record_msg("bymail", {"email": "bymail-bad"}),
        record_msg("bymail", {"email": "fine@example.com"}),
        state_msg({"done": True}),
    ]


EXPECTED = sorted(
    [
        {
            "stream": "crm",
            "key": {"id": 1001},
            "contract": "EMAIL_SHA256",
            "reason": "invalid_email",
        },
        {
            "stream": "crm",
            "key": {"id": 1001},
            "contract": "PHONE_SHA256",
            "reason": "invalid_phone",
        },
        {
            "stream": "crm",
            "key": {"id": 1002},
            "contract": "EMAIL_SHA256",
            "reason": "already_hashed",
        },
        {
            "stream": "crm",
            "key": {"id": 1003},
            "contract": "PHONE_SHA256",
            "reason": "invalid_phone",
        },
        {
            "stream": "crm",
            "key": {"id": 1004},
            "contract": "remove_column",
            "reason": "invalid_remove_flag",
        },
        {
            "stream": "tiers",
            "key": {"id": 2001},
            "contract": "audience_name_column",
            "reason": "no_audience_name",
        },
    ],
    key=json.dumps,
)


def check_run(run: Run, lines: list[dict[str, Any]], where: str) -> None:
    assert run.returncode == 0, run.stderr[-3000:]
    assert sorted(lines, key=json.dumps) == EXPECTED
    assert run.report is not None
    assert (run.report["rejects_file"], run.report["rejects_written"]) == (where, 6)
    stamp = run.report["started_at"][:19].replace("-", "").replace(":", "") + "Z"
    assert re.fullmatch(rf".*/rejects-{stamp}-[0-9a-f]{{8}}\.jsonl", where), where
    assert f"Rejected identifiers: 6 lines written to {where}" in run.stderr
    # Streams whose rejections can only be counted say so, in the summary and the report.
    nokey, bymail = stream_report(run, "nokey"), stream_report(run, "bymail")
    assert nokey["rejected"] == {"EMAIL_SHA256": {"invalid_email": 1}}
    assert (nokey["rejects_counted_only"], bymail["rejects_counted_only"]) == (1, 1)
    assert (
        "Stream 'nokey': 1 rejections were counted but not written to rejects_url: the stream "
        "has no key properties to name the rows by." in run.stderr
    )
    assert bymail["rejects_why"] == (
        "its key properties include the identifier column email, and values are never written"
    )


def no_raw_value(data: bytes) -> None:
    for raw in RAW:
        assert raw.encode() not in data and sha256(raw).encode() not in data, raw


def test_rejected_rows_go_to_a_private_local_folder(sandbox: SandboxServer, tmp_path: Path) -> None:
    folder = tmp_path / "warehouse" / "rejects"
    config = base_config(
        sandbox, advertiser_ids=[ADV1], audiences=MAPPINGS, rejects_url=str(folder)
    )
    run = run_target(tmp_path, config, messages())
    (path,) = folder.iterdir()
    check_run(run, [json.loads(line) for line in path.read_text().splitlines()], str(path))
    for level in (tmp_path / "warehouse", folder):
        assert stat.S_IMODE(level.stat().st_mode) == 0o700, level
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    no_raw_value(path.read_bytes())
    no_raw_value(json.dumps(run.report).encode())
    for raw in RAW:
        assert raw not in run.stderr

    # A second run writes a file of its own.
    run_target(tmp_path, config, messages(), name="again")
    assert len(list(folder.iterdir())) == 2


def test_rejected_rows_go_to_s3(
    sandbox: SandboxServer,
    tmp_path: Path,
    s3_endpoint: str,  # noqa: F811 - the fixture imported above
) -> None:
    bucket = f"rejects-{os.getpid()}-{tmp_path.name.lower()[-12:].strip('_-')}"
    s3 = s3_client(s3_endpoint)
    s3.create_bucket(Bucket=bucket)
    config = base_config(
        sandbox,
        advertiser_ids=[ADV1],
        audiences=MAPPINGS,
        rejects_url=f"s3://{bucket}/team/rejects",
    )
    run = run_target(tmp_path, config, messages(), env=s3_env(s3_endpoint))
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
    (key,) = [o["Key"] for o in listed]
    assert key.startswith("team/rejects/rejects-")
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    check_run(
        run, [json.loads(line) for line in body.decode().splitlines()], f"s3://{bucket}/{key}"
    )
    no_raw_value(body)


def test_an_unwritable_folder_stops_the_run_before_reading(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    config = base_config(
        sandbox, advertiser_ids=[ADV1], audiences=MAPPINGS, rejects_url=str(blocker / "rejects")
    )
    run = run_target(tmp_path, config, messages())
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    assert last.endswith(
        f"rejects_url {blocker / 'rejects'}: cannot write there (ENOTDIR: Not a directory); "
        "fix it or choose another, then re-run"  # the probe at start (places.py)
    )
    assert "Traceback" not in run.stderr
    assert sandbox.calls() == []  # stopped before the token check, before any input
