"""The run summary and progress lines a user reads at 3 a.m.: in process, offline (dry run)."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest

from target_tiktok_audiences import run as run_module
from target_tiktok_audiences.target import TargetTikTokAudiences

from helpers import ADV1, record_msg, schema_msg, singer_lines


def listen(tmp_path: Path, messages: list[dict], **config: object) -> TargetTikTokAudiences:
    target = TargetTikTokAudiences(
        config={
            "advertiser_ids": [ADV1],
            "dry_run": True,
            "output_dir": str(tmp_path / "out"),
            **config,
        }
    )
    target.listen(io.StringIO(singer_lines(messages)))
    return target


def messages_of(records: list[dict], columns: list[str]) -> list[dict]:
    return [schema_msg("users", columns), *(record_msg("users", r) for r in records)]


def test_progress_lines_name_the_stream_and_counts(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(run_module, "PROGRESS_SECONDS", 0.0)
    records = [{"id": i, "email": f"u{i}@x.io"} for i in range(8193)]
    with caplog.at_level(logging.INFO):
        listen(tmp_path, messages_of(records, ["email"]))
    lines = [r.getMessage() for r in caplog.records if "records read (" in r.getMessage()]
    assert [line.split(" records read")[0] for line in lines] == [
        "Stream 'users': 4,096",
        "Stream 'users': 8,192",
    ]
    assert lines[-1].endswith(
        "identifiers accepted EMAIL_SHA256=8,192; spooled to disk, sent at the end of input."
    )


def test_hints_from_the_data_and_configured_streams_that_never_came(tmp_path, caplog):
    records = [
        {"id": i, "phone": "(415) 555-01" + f"{i:02d}", "work_email": "a@b.co"} for i in range(30)
    ]
    with caplog.at_level(logging.INFO):
        target = listen(tmp_path, messages_of(records, ["phone", "work_email"]))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert (
        "Stream 'users': 30 phone numbers were rejected and default_phone_region is not set: "
        "numbers written without a country code cannot be read; set default_phone_region "
        "(e.g. US)"
    ) in warnings
    assert (
        "Stream 'users': column 'work_email' looks like an identifier but is not used; map it "
        "in audiences[].identifiers if it should be"
    ) in warnings
    assert target.run.report.streams["users"].rejected == {"PHONE_SHA256": {"invalid_phone": 30}}


def test_a_configured_stream_that_never_arrives_is_listed_with_the_closest_name(tmp_path, caplog):
    records = [{"id": 1, "email": "a@b.co"}]
    config = {
        "audiences": [
            {"stream": "users", "identifiers": {"EMAIL_SHA256": "email"}},
            {"stream": "user", "identifiers": {"EMAIL_SHA256": "email"}, "audience_name": "Other"},
        ]
    }
    with caplog.at_level(logging.INFO):
        target = listen(tmp_path, messages_of(records, ["email"]), **config)
    why = "never arrived (streams that arrived: users); did you mean 'users'?"
    assert target.run.report.not_attempted == {"user": why}
    messages = [r.getMessage() for r in caplog.records]
    assert f"audiences: stream 'user' is mapped but {why}" in messages
    assert f"Configured stream 'user': no audience was attempted: {why}" in messages


@pytest.mark.parametrize("rows", [1234])
def test_summary_counts_use_one_number_format(tmp_path, caplog, rows):
    records = [{"id": i, "email": f"u{i}@x.io"} for i in range(rows)]
    with caplog.at_level(logging.INFO):
        listen(tmp_path, messages_of(records, ["email"]))
    (line,) = [
        r.getMessage()
        for r in caplog.records
        if r.getMessage().startswith("Stream 'users' (mirror)")
    ]
    assert line == (
        "Stream 'users' (mirror): 1,234 records read, 0 removed, 0 without a usable identifier; "
        "identifiers accepted EMAIL_SHA256=1,234; rejected 0."
    )
    (audience,) = [
        r.getMessage() for r in caplog.records if r.getMessage().startswith("Audience 'users' in")
    ]
    assert (
        "would upload 1,234 identifiers and remove 0 in 1 file (80,210 bytes); all 1,234 in "
        "full (new audience)"
    ) in audience
