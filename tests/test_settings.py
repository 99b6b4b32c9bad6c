"""Configuration: every bad combination stops before any record is read, naming the setting."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from target_tiktok_audiences.client import TikTokClient
from target_tiktok_audiences.modes import SyncMode
from target_tiktok_audiences.settings import Settings

from helpers import ADV1, ADV2, CLI, dry_run_dir, record_msg, run_target, schema_msg

GOOD = {"advertiser_ids": [ADV1, ADV2], "dry_run": True}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"advertiser_ids": [ADV1]}, "access_token: required unless dry_run is true"),
        (
            {"advertiser_ids": [], "dry_run": True},
            "advertiser_ids: list at least one TikTok advertiser id",
        ),
        (
            {"advertiser_ids": ["acme"], "dry_run": True},
            'advertiser_ids: "acme" is not an advertiser id: advertiser ids are numbers (ASCII '
            'digits, no spaces), e.g. "7012345678901234567"',
        ),
        (
            {**GOOD, "default_phone_region": "USA"},
            "default_phone_region: 'USA' is not an ISO 3166 alpha-2 region such as US or GB",
        ),
        (
            {**GOOD, "audiences": [{"stream": "s", "identifiers": {"EMAIL_MD5": "email"}}]},
            "audiences[0].identifiers: unknown contract 'EMAIL_MD5'; use one of EMAIL_SHA256, "
            "PHONE_SHA256, IDFA_SHA256, IDFA_MD5, GAID_SHA256, GAID_MD5",
        ),
        (
            {
                **GOOD,
                "audiences": [
                    {"stream": "s", "audience_name": "Segment", "audience_name_column": "seg"}
                ],
            },
            "audiences[0].audience_name: must contain {value} when audience_name_column is set "
            '(e.g. "Segment {value}"), or every record would go to one audience',
        ),
        (
            {
                **GOOD,
                "audiences": [
                    {"stream": "s", "audience_name_column": "seg", "audience_ids": {ADV1: "1"}}
                ],
            },
            "audiences[0].audience_ids: cannot be used with audience_name_column (one audience "
            "per value); the audiences are found by name or created",
        ),
        (
            {**GOOD, "audiences": [{"stream": "s", "audience_nme": "x"}]},
            "audiences[0]: unknown key 'audience_nme'; did you mean 'audience_name'? (keys: "
            "stream, audience_name, audience_name_column, audience_ids, identifiers, "
            "remove_column, sync_mode, audience_type)",
        ),
        (
            {
                **GOOD,
                "audiences": [
                    {
                        "stream": "s",
                        "audience_ids": {"7999": "1"},
                        "identifiers": {"EMAIL_SHA256": "email"},
                    }
                ],
            },
            "audiences[0].audience_ids: advertiser '7999' is not in advertiser_ids",
        ),
        (
            {**GOOD, "audiences": [{"stream": "s"}, {"stream": "s"}]},
            "audiences[1].stream: stream 's' is mapped twice",
        ),
        (
            {
                **GOOD,
                "audiences": [
                    {"stream": "s", "identifiers": {"GAID_SHA256": "a", "AAID_SHA256": "b"}}
                ],
            },
            "audiences[0].identifiers: a contract is mapped twice (AAID_* = GAID_*)",
        ),
        (
            {
                **GOOD,
                "audiences": [
                    {
                        "stream": "s",
                        "audience_ids": {ADV1: "1"},
                        "identifiers": {"EMAIL_SHA256": "e", "PHONE_SHA256": "p"},
                    }
                ],
            },
            "audiences[0].audience_ids: a customer-file audience holds one contract; map exactly "
            "one identifier when you name existing audiences",
        ),
        (
            {**GOOD, "audiences": [{"stream": "s", "audience_name": "x" * 129}]},
            "audiences[0].audience_name: the audience name '" + "x" * 40 + "…' would be 144 "
            "characters; TikTok allows 128",
        ),
        (
            {
                **GOOD,
                "audiences": [
                    {
                        "stream": "s",
                        "audience_name": "y" * 115,
                        "identifiers": {"EMAIL_SHA256": "e", "PHONE_SHA256": "p"},
                    }
                ],
            },
            "audiences[0].audience_name: the audience name '" + "y" * 40 + "…' would be 130 "
            "characters",
        ),
        ({**GOOD, "sync_mod": "append"}, "sync_mod: unknown setting; did you mean 'sync_mode'?"),
        (
            {
                **GOOD,
                "audiences": [
                    {"stream": "a", "audience_name": "VIP", "identifiers": {"EMAIL_SHA256": "e"}},
                    {"stream": "b", "audience_name": "VIP", "identifiers": {"EMAIL_SHA256": "m"}},
                ],
            },
            "audiences[1]: streams 'a' and 'b' would both sync audience 'VIP' in the same "
            "advertisers; give one of them another audience_name",
        ),
        (
            {**GOOD, "dry_run": False, "access_token": "abc def\n"},
            "access_token: contains whitespace or control characters (often a newline or space "
            "copied with it); paste the token again",
        ),
        (
            {**GOOD, "api_base_url": "business-api.tiktok.com/open_api/v1.3"},
            "api_base_url: must be an http(s) URL such as",
        ),
        (
            {**GOOD, "load_method": "overwrite"},
            "load_method: 'overwrite' has no meaning for TikTok audiences; remove it and choose "
            "sync_mode (mirror, append or incremental) instead",
        ),
        ({**GOOD, "sync_mode": "upsert"}, "sync_mode"),
        ({**GOOD, "segment_batch_size": 20_000}, "segment_batch_size"),
        ({**GOOD, "retention_in_days": 400}, "retention_in_days"),
    ],
)
def test_bad_config_stops_before_reading_and_names_the_setting(tmp_path, config, message):
    run = run_target(
        tmp_path,
        config,
        [schema_msg("s", ["email"]), record_msg("s", {"id": 1, "email": "a@b.co"})],
    )
    assert run.returncode == 1
    assert message in run.stderr
    assert "abc def" not in run.stderr  # a token is never echoed
    assert "Traceback" not in run.stderr
    assert (
        run.stderr.rstrip()
        .splitlines()[-1]
        .split(" | ")[-1]
        .startswith("Config validation failed: ")
    )
    assert run.report is None  # stopped before anything ran


def test_about_lists_every_setting_and_marks_the_token_secret():
    about = json.loads(
        subprocess.run(
            [CLI, "--about", "--format", "json"], check=True, capture_output=True, text=True
        ).stdout
    )
    properties = about["settings"]["properties"]
    for name in (
        "access_token",
        "advertiser_ids",
        "api_base_url",
        "sync_mode",
        "hash_identifiers",
        "email_normalization",
        "default_phone_region",
        "audiences",
        "retention_in_days",
        "dry_run",
        "output_dir",
        "report_path",
        "file_max_ids",
        "segment_batch_size",
        "max_requests_per_second",
    ):
        assert name in properties, name
    assert properties["access_token"]["secret"] is True
    assert about["settings"]["required"] == ["advertiser_ids"]


def test_aliases_and_defaults_are_normalised():
    settings = Settings.from_config(
        {
            **GOOD,
            "default_phone_region": "gb",
            "audiences": [{"stream": "app", "identifiers": {"aaid_md5": "gaid"}}],
        }
    )
    mapping = settings.mapping_for("app")
    assert mapping is not None
    assert mapping.identifiers == {"GAID_MD5": "gaid"}
    assert mapping.audience_name == "app"
    assert mapping.sync_mode is SyncMode.MIRROR
    assert settings.mapping_for("other") is None
    assert settings.rules.default_phone_region == "GB"
    assert settings.api_base_url == "https://business-api.tiktok.com/open_api/v1.3"


def test_write_calls_are_throttled(monkeypatch):
    clock = {"now": 100.0, "slept": 0.0}

    def sleep(seconds: float) -> None:
        clock["slept"] += seconds
        clock["now"] += seconds

    monkeypatch.setattr(
        "target_tiktok_audiences.client.transport.time.monotonic", lambda: clock["now"]
    )
    monkeypatch.setattr("target_tiktok_audiences.client.transport.time.sleep", sleep)
    client = TikTokClient("http://127.0.0.1:9/open_api/v1.3", "t", max_requests_per_second=4)
    for _ in range(9):
        client._throttle()
    assert clock["slept"] == pytest.approx(2.0)  # 9 writes at 4 a second span 2 seconds


def test_dry_run_sends_nothing_and_writes_files_and_plan(tmp_path: Path):
    out = tmp_path / "out"
    config = {
        "advertiser_ids": [ADV1, ADV2],
        "dry_run": True,
        "output_dir": str(out),
        "api_base_url": "http://127.0.0.1:9/unreachable",
        "audiences": [
            {"stream": "s", "audience_name": "Plan", "identifiers": {"EMAIL_SHA256": "e"}}
        ],
    }
    run = run_target(
        tmp_path,
        config,
        [
            schema_msg("s", ["e"]),
            record_msg("s", {"id": 1, "e": " Alex@Email.com"}),
            record_msg("s", {"id": 2, "e": "janedoe@gmail.com"}),
        ],
    )
    assert run.returncode == 0, run.stderr[-2000:]
    (data_file,) = (dry_run_dir(out) / "files").iterdir()
    assert data_file.read_text() == (
        "ac0f1baec38a9ef3cfcb56db981df7d9bab2568c7f53ef3776d1c059ec58e72b\n"
        "d6117306485ed0e50afab3ac871e98f81699151f30281527d63ff5f233656c69\n"
    )
    plan = json.loads((dry_run_dir(out) / "plan.json").read_text())
    assert [
        (
            a["advertiser_id"],
            a["audience_name"],
            a["action"],
            a["status"],
            a["identifiers_uploaded"],
        )
        for a in plan["audiences"]
    ] == [(ADV1, "Plan", "CREATE", "planned", 2), (ADV2, "Plan", "CREATE", "planned", 2)]
    assert [c["call"] for c in plan["calls"]] == ["upload", "create", "upload", "create"]
