"""Issue 20: hostile configs and input end with one line, and nothing secret is ever printed.

Each case runs the real CLI and asserts the last line exactly (where a person reads it), exit
code 1, no traceback, and that no secret of the case is anywhere: stdout, stderr, the run report
and every file the run left under its folder. docs/FAILURES.md lists these lines and tests.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from target_tiktok_audiences.failures import drain_input
from target_tiktok_audiences.settings import CONFIG_SCHEMA, Settings, config_errors
from target_tiktok_audiences.snapshot import SnapshotError, SnapshotStore

from helpers import (
    ADV1,
    CLI,
    TOKEN,
    Run,
    base_config,
    cli,
    dry_run_dir,
    record_msg,
    run_target,
    schema_msg,
    singer_lines,
)

SECRET = "S3cr3t-4f9a1b"  # part of every credential planted below; never printed anywhere
VIP = {"stream": "vip", "audience_name": "VIP", "identifiers": {"EMAIL_SHA256": "email"}}
NOT_SHOWN = "it is not shown because it may hold personal data"


def vip_messages(n: int = 3) -> list[dict]:
    return [
        schema_msg("vip", ["email"]),
        *(record_msg("vip", {"id": i, "email": f"v{i}@example.com"}) for i in range(n)),
    ]


def dry(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    return {
        "advertiser_ids": [ADV1],
        "dry_run": True,
        "output_dir": str(tmp_path / "out"),
        **overrides,
    }


def error_lines(run: Run) -> list[str]:
    """The message of every ERROR line (at DEBUG a traceback follows the last one)."""
    parts = [ln.split(" | ", 3) for ln in run.stderr.splitlines() if ln.count(" | ") >= 3]
    return [p[3] for p in parts if p[1].strip() == "ERROR"]


def last_line(run: Run) -> str:
    lines = run.stderr.rstrip("\n").splitlines()
    parts = lines[-1].split(" | ", 3)
    assert len(parts) == 4 and parts[1].strip() == "ERROR", run.stderr[-3000:]
    return parts[3]


def everything_written(root: Path) -> str:
    """Every file under root, as text (bytes that are not UTF-8 replaced)."""
    return "\n".join(
        p.read_bytes().decode("utf-8", "replace") for p in sorted(root.rglob("*")) if p.is_file()
    )


def assert_one_line(
    run: Run, line: str, root: Path, *, secrets: tuple[str, ...] = (), report: bool = True
) -> None:
    """Exit 1, the exact last line, no traceback, no STATE; no secret anywhere."""
    assert run.returncode == 1, run.stderr[-3000:]
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    assert last_line(run) == line
    assert run.stdout == ""
    if report:
        assert run.report is not None and run.report["status"] == "failed"
        assert run.report["error"] == line
    else:
        assert run.report is None  # stopped before anything ran
    for secret in secrets:
        assert secret not in run.stdout + run.stderr
        assert secret not in everything_written(root)


def run_bytes(tmp_path: Path, config: dict[str, Any], data: bytes) -> Run:
    """run_target for input that is not valid UTF-8 (run_target's input is text)."""
    work = tmp_path / "run"
    work.mkdir(parents=True, exist_ok=True)
    config = {"report_path": str(work / "report.json"), **config}
    (work / "config.json").write_text(json.dumps(config))
    env = {**os.environ, "TMPDIR": str(work), "XDG_DATA_HOME": str(tmp_path / "xdg-data")}
    proc = cli.run(
        "target-tiktok-audiences",
        ["--config", str(work / "config.json")],
        input=data,
        timeout=120,
        cwd=work,
        env=env,
    )
    report_path = Path(config["report_path"])
    report = json.loads(report_path.read_text()) if report_path.exists() else None
    return Run(proc.returncode, proc.stdout, proc.stderr, report)


# -- leaks -----------------------------------------------------------------------------------


@pytest.mark.parametrize("loglevel", ["INFO", "DEBUG"])
def test_a_token_with_a_trailing_newline_is_refused_and_never_shown(tmp_path, loglevel):
    config = {
        "access_token": f"tok-{SECRET}\n",
        "advertiser_ids": [ADV1],
        "api_base_url": "http://127.0.0.1:9/open_api/v1.3",
    }
    run = run_target(tmp_path, config, vip_messages(), env={"LOGLEVEL": loglevel})
    assert run.returncode == 1
    assert error_lines(run) == [
        "Config validation failed: access_token: contains whitespace or control characters "
        "(often a newline or space copied with it); paste the token again"
    ]
    assert run.report is None
    # The config file holds the token, as the user wrote it; nothing else may.
    (tmp_path / "run" / "config.json").unlink()
    assert SECRET not in run.stdout + run.stderr + everything_written(tmp_path)
    if loglevel == "INFO":
        assert "Traceback" not in run.stderr


CREDENTIAL_URLS = [
    (
        f"s3://AKIAEXAMPLE:{SECRET}@bucket/snapshots",
        "snapshot_url s3://bucket/snapshots: has a user or password before '@'; give "
        "credentials through the environment (AWS_ACCESS_KEY_ID, a profile, a role), never in "
        "the URL, which is logged",
    ),
    (
        f"filecache::memory://u:{SECRET}@b/p",
        "snapshot_url filecache::memory://b/p: has a user or password before '@'; give "
        "credentials through the environment (AWS_ACCESS_KEY_ID, a profile, a role), never in "
        "the URL, which is logged",
    ),
    (
        f"s3://bucket:{SECRET}/x",
        "snapshot_url s3://bucket/x: has ':' followed by something other than a port number "
        "after the bucket or host; give credentials through the environment "
        "(AWS_ACCESS_KEY_ID, a profile, a role), never in the URL, which is logged",
    ),
    (
        f"memory://bucket/p?X-Amz-Signature={SECRET}",
        "snapshot_url memory://bucket/p: has a query or fragment ('?…' or '#…'), which may hold "
        "a signature or token and would end up in object names; remove it and give "
        "credentials through the environment (AWS_ACCESS_KEY_ID, a profile, a role)",
    ),
]


@pytest.mark.parametrize("loglevel", ["INFO", "DEBUG"])
@pytest.mark.parametrize(("url", "line"), CREDENTIAL_URLS)
def test_credentials_in_snapshot_url_are_refused_and_never_shown(tmp_path, url, line, loglevel):
    config = dry(tmp_path, snapshot_url=url, audiences=[VIP])
    run = run_target(tmp_path, config, vip_messages(), env={"LOGLEVEL": loglevel})
    assert run.returncode == 1
    assert error_lines(run) == [f"Config validation failed: {line}"]
    assert run.report is None
    assert not (tmp_path / "out").exists()  # nothing ran, no object was named
    (tmp_path / "run" / "config.json").unlink()
    assert SECRET not in run.stdout + run.stderr + everything_written(tmp_path)
    if loglevel == "INFO":
        assert "Traceback" not in run.stderr


@pytest.mark.parametrize(("url", "line"), CREDENTIAL_URLS)
def test_the_snapshot_store_refuses_credentials_itself(url, line):
    """The store is the last guard: built without the config check, it still says nothing."""
    with pytest.raises(SnapshotError) as refused:
        SnapshotStore(url)
    assert str(refused.value) == line
    assert SECRET not in str(refused.value)


def test_an_empty_snapshot_url_is_a_config_error(tmp_path):
    run = run_target(tmp_path, dry(tmp_path, snapshot_url=""), vip_messages())
    assert_one_line(
        run,
        "Config validation failed: snapshot_url: is empty; leave it unset for the user data "
        "folder, or give a folder or an fsspec URL such as s3://bucket/prefix",
        tmp_path,
        report=False,
    )


# -- configuration: every number bounded, ids and URLs checked before anything runs ----------


def numeric_settings() -> dict[str, dict[str, Any]]:
    """Ours, not the SDK's built-in settings (which an in-process target adds to the schema)."""
    ours = {f.name for f in dataclasses.fields(Settings)}
    return {
        name: prop
        for name, prop in CONFIG_SCHEMA["properties"].items()
        if name in ours and {"integer", "number"} & set(prop["type"])
    }


def test_every_numeric_setting_has_bounds():
    bounds = {n: (p.get("minimum"), p.get("maximum")) for n, p in numeric_settings().items()}
    assert bounds == {
        "retention_in_days": (1, 365),
        "file_max_ids": (1, 750_000),
        "segment_batch_size": (1, 10_000),
        "max_requests_per_second": (0.1, 1000),
        "request_timeout": (1, 3600),
        "max_retries": (0, 20),
        "max_retry_seconds": (1, 86_400),
        "partner_warmup_seconds": (0, 3600),
        "create_confirm_seconds": (0, 3600),
        "max_new_audiences": (0, 400),
        "resync_days": (0, 3650),
        "max_removal_percent": (0, 100),
        "daily_update_operations": (0, 1000),
    }


@pytest.mark.parametrize(
    ("setting", "value", "line"),
    [
        ("request_timeout", 1e308, "request_timeout: 1e+308 is out of bounds; give a number "
         "from 1 to 3600"),
        ("request_timeout", 0.5, "request_timeout: 0.5 is out of bounds; give a number from 1 "
         "to 3600"),
        ("max_retry_seconds", 1e12, "max_retry_seconds: 1e+12 is out of bounds; give a number "
         "from 1 to 86400"),
        ("max_requests_per_second", 1e9, "max_requests_per_second: 1e+09 is out of bounds; "
         "give a number from 0.1 to 1000"),
        ("max_new_audiences", 10_000, "max_new_audiences: 10000 is out of bounds; give a "
         "number from 0 to 400"),
        ("max_retries", -1, "max_retries: -1 is out of bounds; give a number from 0 to 20"),
        ("max_retries", "3", "max_retries: must be a whole number"),
    ],
)  # fmt: skip
def test_numbers_out_of_bounds_stop_before_anything_runs(tmp_path, setting, value, line):
    config = {
        "access_token": TOKEN,
        "advertiser_ids": [ADV1],
        "api_base_url": "http://127.0.0.1:9/open_api/v1.3",
        setting: value,
    }
    run = run_target(tmp_path, config, vip_messages())
    assert_one_line(run, f"Config validation failed: {line}", tmp_path, report=False)


def test_nan_passes_the_schema_bounds_but_not_the_config_check():
    config = {"advertiser_ids": [ADV1], "dry_run": True, "request_timeout": float("nan")}
    assert config_errors(config) == ["request_timeout: must be a finite number"]


def test_a_missing_required_setting_is_named(tmp_path):
    run = run_target(tmp_path, {"dry_run": True}, vip_messages())
    assert_one_line(
        run, "Config validation failed: advertiser_ids: required", tmp_path, report=False
    )


def test_a_mistyped_token_is_named_never_echoed(tmp_path):
    run = run_target(tmp_path, dry(tmp_path, access_token=int("4242" + "7" * 8)), vip_messages())
    assert_one_line(
        run, "Config validation failed: access_token: must be a string", tmp_path, report=False
    )
    assert "42427777" not in run.stderr


def test_an_api_base_url_with_port_99999_is_a_config_error(tmp_path):
    config = {
        "access_token": TOKEN,
        "advertiser_ids": [ADV1],
        "api_base_url": "http://127.0.0.1:99999/open_api/v1.3",
    }
    run = run_target(tmp_path, config, vip_messages())
    assert_one_line(
        run,
        "Config validation failed: api_base_url: give host and, if needed, a port from 1 to "
        "65535, such as http://127.0.0.1:8765/open_api/v1.3 (no user or password)",
        tmp_path,
        report=False,
    )


@pytest.mark.parametrize(
    "advertiser",
    [f" {ADV1}", f"{ADV1} ", "7000 0000", "\uff17\uff10\uff10\uff10"],  # full-width "7000"
    ids=["leading-space", "trailing-space", "inner-space", "full-width"],
)
def test_advertiser_ids_must_be_ascii_digits(tmp_path, advertiser):
    run = run_target(tmp_path, dry(tmp_path, advertiser_ids=[advertiser]), vip_messages())
    assert_one_line(
        run,
        f"Config validation failed: advertiser_ids: {json.dumps(advertiser)} is not an "
        "advertiser id: advertiser ids are numbers (ASCII digits, no spaces), e.g. "
        '"7012345678901234567"',
        tmp_path,
        report=False,
    )


@pytest.mark.parametrize("audience_id", ["../../x", "123/../../x", "12 34", ""])
def test_audience_ids_must_be_numbers_even_in_a_dry_run(tmp_path, audience_id):
    config = dry(tmp_path, audiences=[{**VIP, "audience_ids": {ADV1: audience_id}}])
    run = run_target(tmp_path, config, vip_messages())
    assert_one_line(
        run,
        "Config validation failed: audiences[0].audience_ids: the audience id for advertiser "
        f'{ADV1} must be a number (ASCII digits), e.g. "7234567890123456789"',
        tmp_path,
        report=False,
    )
    assert not (tmp_path / "out").exists()
    assert not (tmp_path.parent / "x").exists()


def test_a_stream_name_too_long_for_an_audience_stops_before_anything_is_sent(sandbox, tmp_path):
    stream = "s" * 130
    config = base_config(sandbox, advertiser_ids=[ADV1])  # no `audiences`: named after streams
    messages = [
        schema_msg(stream, ["email"]),
        *(record_msg(stream, {"id": i, "email": f"p{i}@example.com"}) for i in range(1500)),
    ]
    run = run_target(tmp_path, config, messages)
    assert_one_line(
        run,
        f"Config validation failed: stream '{'s' * 40}…': the audience name '{'s' * 40}…' "
        "would be 130 characters; TikTok allows 128. Map the stream in audiences with a "
        "shorter audience_name (or rename it with a stream map __alias__)",
        tmp_path,
    )
    assert [c["method"] for c in sandbox.calls()] == ["GET", "GET"]  # the token and advertiser
    assert sandbox.audiences(ADV1) == []


def test_a_stream_name_too_long_once_suffixed_is_caught_too(tmp_path):
    stream = "m" * 115  # + " (PHONE_SHA256)" is 130
    messages = [
        schema_msg(stream, ["email", "phone"]),
        record_msg(stream, {"id": 1, "email": "a@example.com", "phone": "+14155550134"}),
    ]
    run = run_target(tmp_path, dry(tmp_path), messages)
    assert_one_line(
        run,
        f"Config validation failed: stream '{'m' * 40}…': the audience name '{'m' * 40}…' "
        "would be 130 characters; TikTok allows 128. Map the stream in audiences with a "
        "shorter audience_name (or rename it with a stream map __alias__)",
        tmp_path,
    )
    assert not list((dry_run_dir(tmp_path / "out")).glob("files/*"))


def test_invalid_stream_map_key_properties_end_with_one_line(tmp_path):
    config = dry(tmp_path, stream_maps={"vip": {"__key_properties__": ["nope"]}})
    run = run_target(tmp_path, config, vip_messages())
    assert_one_line(
        run,
        "stream_maps: Invalid key properties for 'vip': [nope]. Property 'nope' was not "
        "detected in schema. Fix stream_maps and re-run",
        tmp_path,
    )


def test_a_stream_map_expression_that_does_not_parse_ends_with_one_line(tmp_path):
    config = dry(tmp_path, stream_maps={"vip": {"x": "1 +"}})
    run = run_target(tmp_path, config, vip_messages())
    assert_one_line(
        run, "stream_maps: Failed to parse expression 1 +. Fix stream_maps and re-run", tmp_path
    )


# -- input -----------------------------------------------------------------------------------


def test_an_invalid_utf8_byte_names_its_line_never_its_content(tmp_path):
    good = singer_lines(vip_messages(2)).encode()
    bad = b'{"type": "RECORD", "stream": "vip", "record": {"id": 9, "email": "jane\xff.' + (
        SECRET.encode() + b'@example.com"}}\n'
    )
    run = run_bytes(tmp_path, dry(tmp_path), good + bad)
    assert_one_line(
        run,
        "Input line 4 is not valid UTF-8 (a byte that is not UTF-8 at character 71); it is not "
        "shown because it may hold personal data. Check the tap's output encoding.",
        tmp_path,
        secrets=(SECRET,),
    )


SCHEMA = schema_msg("vip", ["email"])


@pytest.mark.parametrize(
    ("message", "line"),
    [
        (
            {"type": ["RECORD"], "stream": "vip"},
            "Input line 2: a Singer message's type must be a string such as RECORD or SCHEMA, "
            "not a list; check the tap's output.",
        ),
        (
            {"type": "RECORD", "stream": "vip", "record": f"{SECRET}@example.com"},
            f"Input line 2: the record of a RECORD message must be an object, not a string; "
            f"{NOT_SHOWN}. Check the tap's output.",
        ),
        (
            {"type": "RECORD", "stream": "vip", "record": [f"{SECRET}@example.com"]},
            f"Input line 2: the record of a RECORD message must be an object, not a list; "
            f"{NOT_SHOWN}. Check the tap's output.",
        ),
        (
            {"type": "RECORD", "stream": 7, "record": {"email": f"{SECRET}@example.com"}},
            f"Input line 2: the stream of a RECORD message must be a string, not a whole "
            f"number; {NOT_SHOWN}. Check the tap's output.",
        ),
        (
            {**SCHEMA, "schema": "object"},
            f"Input line 2: the schema of a SCHEMA message must be an object, not a string; "
            f"{NOT_SHOWN}. Check the tap's output.",
        ),
        (
            {**SCHEMA, "schema": {"properties": ["email"]}},
            f"Input line 2: the schema's properties of a SCHEMA message must be an object, not "
            f"a list; {NOT_SHOWN}. Check the tap's output.",
        ),
        (
            {**SCHEMA, "key_properties": "id"},
            f"Input line 2: the key_properties of a SCHEMA message must be a list or null, not "
            f"a string; {NOT_SHOWN}. Check the tap's output.",
        ),
        (
            {**SCHEMA, "key_properties": [1]},
            f"Input line 2: the key_properties of a SCHEMA message must be a list of strings, "
            f"not a list holding other values; {NOT_SHOWN}. Check the tap's output.",
        ),
        (
            {"type": "ACTIVATE_VERSION", "stream": "vip", "version": "1"},
            f"Input line 2: the version of a ACTIVATE_VERSION message must be a whole number, "
            f"not a string; {NOT_SHOWN}. Check the tap's output.",
        ),
    ],
    ids=[
        "type-list",
        "record-string",
        "record-list",
        "stream-number",
        "schema-string",
        "properties-list",
        "key-properties-string",
        "key-properties-numbers",
        "version-string",
    ],
)
def test_messages_of_the_wrong_shape_end_with_one_line(tmp_path, message, line):
    run = run_target(tmp_path, dry(tmp_path), [SCHEMA, message, *vip_messages(2)[1:]])
    assert_one_line(run, line, tmp_path, secrets=(SECRET,))


BATCH_LINE = (
    "Input line 2: a BATCH message of format {}; this target reads BATCH files in jsonl (plain "
    "or gzip), and parquet only where pyarrow is installed. Set the tap's batch_config encoding "
    "format to jsonl, or let it send RECORD messages."
)


@pytest.mark.parametrize("fmt", ["parquet", "avro"])
def test_a_batch_in_an_unsupported_encoding_says_which_are_supported(tmp_path, fmt):
    if fmt == "parquet" and importlib.util.find_spec("pyarrow"):
        pytest.skip("pyarrow is installed: parquet batches are read")
    batch = {
        "type": "BATCH",
        "stream": "vip",
        "encoding": {"format": fmt, "compression": "gzip"},
        "manifest": [f"file://{tmp_path}/batch-1.{fmt}"],
    }
    run = run_target(tmp_path, dry(tmp_path), [SCHEMA, batch])
    assert_one_line(run, BATCH_LINE.format(f"'{fmt}'"), tmp_path)


# -- the end of a failed run: the tap is not left writing into a closed pipe -----------------


def test_after_a_failure_the_rest_of_the_input_is_read_so_the_tap_can_finish(tmp_path):
    """The target stops at its config; a tap still writing 8 MB never meets a closed pipe."""
    work = tmp_path / "run"
    work.mkdir()
    config = work / "config.json"
    config.write_text(json.dumps({"advertiser_ids": ["not-a-number"], "dry_run": True}))
    line = singer_lines([record_msg("vip", {"id": 1, "email": "x@example.com"})]).encode()
    stderr: list[bytes] = []
    with subprocess.Popen(
        [CLI, "--config", str(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=work,
    ) as proc:
        assert proc.stdin is not None and proc.stderr is not None
        errors = proc.stderr
        reader = threading.Thread(target=lambda: stderr.append(errors.read()))
        reader.start()
        for _ in range(8 * 1024 * 1024 // len(line)):  # far more than a pipe buffer holds
            proc.stdin.write(line)  # a BrokenPipeError here is what the tap would die of
        proc.stdin.close()
        assert proc.wait(timeout=60) == 1
        reader.join()
    err = stderr[0].decode()
    assert err.rstrip().splitlines()[-1].split(" | ")[-1] == (
        'Config validation failed: advertiser_ids: "not-a-number" is not an advertiser id: '
        'advertiser ids are numbers (ASCII digits, no spaces), e.g. "7012345678901234567"'
    )
    assert "Traceback" not in err


def test_draining_is_bounded_when_the_writer_never_stops(monkeypatch):
    read_fd, write_fd = os.pipe()
    stdin = os.fdopen(read_fd, "r")
    monkeypatch.setattr("sys.stdin", stdin)
    try:
        os.write(write_fd, b"more input\n" * 100)
        started = time.monotonic()
        drain_input(seconds=0.5)  # the writer keeps the pipe open: only the bound ends it
        assert time.monotonic() - started >= 0.5
        os.write(write_fd, b"x")  # still open: draining never closes the pipe
    finally:
        os.close(write_fd)
        stdin.close()


# -- what a new user reads ------------------------------------------------------------------


def test_help_says_what_the_target_does_and_where_to_read_more():
    out = subprocess.run([CLI, "--help"], capture_output=True, text=True, check=True).stdout
    text = " ".join(out.split())
    assert "Execute the Singer target" not in text
    assert text.startswith(
        "Usage: target-tiktok-audiences [OPTIONS] Keep TikTok Custom Audiences in sync with the "
        "Singer messages read from stdin (or --input): emails, phone numbers and mobile ad ids "
        "are normalised, hashed and sent to every advertiser in advertiser_ids"
    )
    assert "with --config ENV. `--about` lists every setting;" in text
    assert (
        "README: https://github.com/target-tiktok-audiences/target-tiktok-audiences#readme\n" in out
    )


def test_a_dry_run_says_what_it_would_do_never_that_it_did(tmp_path):
    run = run_target(tmp_path, dry(tmp_path, audiences=[VIP]), vip_messages(3))
    assert run.returncode == 0, run.stderr[-3000:]
    messages = [ln.split(" | ", 3)[3] for ln in run.stderr.splitlines() if ln.count(" | ") >= 3]
    assert f"Would create audience 'VIP' (EMAIL_SHA256) in advertiser {ADV1} (dry run)." in (
        messages
    )
    assert (
        f"Audience 'VIP' in advertiser {ADV1}: +3 \u22120 \u2192 3; would create it; would upload "
        "3 identifiers and remove 0 in 1 file (195 bytes); all 3 in full (new audience); "
        "nothing sent (dry run)."
    ) in messages
    # Nothing was sent, so nothing is being matched: no 24-48 h line (issue 29).
    assert "24-48" not in run.stderr
    assert "Created audience" not in run.stderr and "dry-run-1" not in run.stderr
    assert "delivered" not in run.stderr


def test_a_partner_dry_run_says_it_would_add(tmp_path):
    config = dry(tmp_path, audiences=[{**VIP, "sync_mode": "incremental"}])
    run = run_target(tmp_path, config, vip_messages(3))
    assert run.returncode == 0, run.stderr[-3000:]
    assert (
        f"Audience 'VIP' in advertiser {ADV1}: +3 \u22120; would create it; would add 3 users "
        "and remove 0 in 1 batch; nothing sent (dry run)."
    ) in run.stderr
    assert f"Would create audience 'VIP' (partner) in advertiser {ADV1} (dry run)." in run.stderr


# -- README claims ---------------------------------------------------------------------------


def test_the_token_variable_needs_config_env_with_the_standalone_cli(sandbox, tmp_path):
    """README: the standalone CLI reads TARGET_TIKTOK_AUDIENCES_ACCESS_TOKEN with --config ENV."""
    work = tmp_path / "env"
    work.mkdir()
    config = base_config(sandbox, advertiser_ids=[ADV1], audiences=[VIP])
    del config["access_token"]
    (work / "config.json").write_text(json.dumps(config))
    env = {**os.environ, "TARGET_TIKTOK_AUDIENCES_ACCESS_TOKEN": TOKEN, "TMPDIR": str(work)}
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    data = singer_lines(vip_messages(3))

    def target(*args: str) -> subprocess.CompletedProcess[str]:
        return cli.run(
            "target-tiktok-audiences",
            ["--config", str(work / "config.json"), *args],
            input=data,
            env=env,
            cwd=work,
            timeout=120,
        )

    without = target()
    assert without.returncode == 1
    assert (
        without.stderr.rstrip()
        .splitlines()[-1]
        .endswith("Config validation failed: access_token: required unless dry_run is true")
    )
    with_env = target("--config", "ENV")
    assert with_env.returncode == 0, with_env.stderr[-3000:]
    assert [a["name"] for a in sandbox.audiences(ADV1)] == ["VIP"]


def test_the_1000_floor_refuses_updates_not_creates(sandbox, tmp_path):
    """README: creating an audience of fewer than 1,000 users is allowed; an update is not."""
    config = base_config(sandbox, advertiser_ids=[ADV1], audiences=[VIP])
    first = run_target(tmp_path, config, vip_messages(5), name="first")
    assert first.returncode == 0, first.stderr[-3000:]
    (audience,) = sandbox.audiences(ADV1)
    assert len(audience["members"]["EMAIL_SHA256"]) == 5
    second = run_target(tmp_path, config, vip_messages(4), name="second")
    assert second.returncode == 1
    (entry,) = second.report["streams"][0]["audiences"]
    assert (entry["status"], entry["refusal"]) == (
        "deferred",
        "TikTok refuses updates that leave fewer than 1,000 users (it counts the users it "
        "matched, not the identifiers sent)",
    )
    assert sandbox.audiences(ADV1)[0]["members"] == audience["members"]  # unchanged


def test_the_readme_settings_table_shows_load_method_as_the_plugin_file_does():
    readme = (Path(__file__).resolve().parents[1] / "docs" / "settings.md").read_text()
    assert "TargetLoadMethods" not in readme
    (row,) = [r for r in readme.splitlines() if r.startswith("| load_method |")]
    assert row.startswith("| load_method | False | append-only | ")


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (
            None,
            "Config validation failed: --config: 'config.json' was not found; give the path of "
            "a JSON file, or ENV",
        ),
        (
            '{"advertiser_ids": ["7000000000000000001"], "dry_run": true, "request_timeout": NaN}',
            "Config validation failed: --config: 'config.json' is not valid JSON at line 1, "
            "column 81 (NaN and Infinity are not JSON either); fix the file and re-run",
        ),
        (
            '{"advertiser_ids": ["7000000000000000001"],\n "access_token": "tok-' + SECRET,
            "Config validation failed: --config: 'config.json' is not valid JSON at line 2, "
            "column 18 (NaN and Infinity are not JSON either); fix the file and re-run",
        ),
    ],
    ids=["missing", "nan", "cut-short"],
)
def test_a_config_file_missing_or_not_json_ends_with_one_line(tmp_path, text, line):
    if text is not None:
        (tmp_path / "config.json").write_text(text)
    done = cli.run(
        "target-tiktok-audiences",
        ["--config", "config.json"],
        input=singer_lines(vip_messages()),
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.rstrip().splitlines()[-1].split(" | ")[-1] == line
    assert SECRET not in done.stdout + done.stderr
