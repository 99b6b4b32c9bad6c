"""Issue 27, the corners left: each case runs the real CLI and asserts the exact line, the exit
code, STATE or none, and that a planted secret is nowhere (output, report, files left).

Items: 3 (one audience, one mapping), 4 (rejects_url as strict as snapshot_url), 5 (input errors
are one line), 6 (what TikTok echoes is redacted), 7 (no secret in any URL message), 9 (dead
runs' spool folders, the clash message). Item 1 is in test_model.py, item 2 in test_lease.py.
"""

from __future__ import annotations

import json
import re
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from test_known_failures import (
    SECRET,
    assert_one_line,
    dry,
    error_lines,
    everything_written,
    vip_messages,
)
from test_mirror_diff import s3_endpoint, s3_env  # noqa: F401 - s3_endpoint: fixture

from target_tiktok_audiences.rejects import RejectsError, RejectsWriter
from target_tiktok_audiences.sandbox.server import SandboxServer, run_sandbox
from target_tiktok_audiences.snapshot import (
    SnapshotError,
    SnapshotKey,
    SnapshotStore,
    Unusable,
    scope_for,
)
from target_tiktok_audiences.testhooks import VARIABLE as FAULT

from helpers import (
    ADV1,
    base_config,
    record_msg,
    run_target,
    schema_msg,
    singer_lines,
    state_msg,
)

# -- 5. input errors are one line ---------------------------------------------------------

EMAIL = f"{SECRET}@example.com"  # a value that must never be quoted
USERS_SCHEMA = {
    "type": "SCHEMA",
    "stream": "vip",
    "schema": {"properties": {"id": {"type": "integer"}, "email": {"type": "string"}}},
    "key_properties": ["id"],
}
INPUT_ERRORS = [
    (
        [record_msg("vip", {"id": 1, "email": EMAIL})],
        "Input: a RECORD of stream 'vip' came before the stream's SCHEMA message; the tap must "
        "send SCHEMA first (Singer spec). Fix the tap or its stream maps and re-run",
    ),
    (
        [USERS_SCHEMA, record_msg("vip", {"email": EMAIL})],
        "Input: a RECORD of stream 'vip' lacks key property 'id' (key_properties of its "
        "SCHEMA); the record is not shown because it may hold personal data. Fix the tap or "
        "its stream maps and re-run",
    ),
    (
        [{**USERS_SCHEMA, "key_properties": ["uid"]}, record_msg("vip", {"id": 1, "email": EMAIL})],
        "Input: the SCHEMA of stream 'vip' names key property 'uid' in key_properties, but it "
        "is not one of the stream's properties; fix the tap's key properties (or its stream "
        "maps) and re-run",
    ),
]


@pytest.mark.parametrize(("messages", "line"), INPUT_ERRORS, ids=["before", "missing", "absent"])
def test_input_errors_are_one_line(tmp_path: Path, messages: list[dict], line: str) -> None:
    text = singer_lines([*messages, state_msg({"at": 1})])
    run = run_target(tmp_path, dry(tmp_path, audiences=[VIP_MAPPING]), text)
    assert_one_line(run, line, tmp_path, secrets=(SECRET,))


VIP_MAPPING = {"stream": "vip", "audience_name": "VIP", "identifiers": {"EMAIL_SHA256": "email"}}


# -- 4 and 7. URLs: refused at config check, never quoted -----------------------------------

URL_CASES = [
    (
        "rejects_url",
        f"s3://KEY:{SECRET}@bucket/p",
        "rejects_url s3://bucket/p: has a user or password before '@'; give credentials "
        "through the environment (AWS_ACCESS_KEY_ID, a profile, a role), never in the URL, "
        "which is logged",
    ),
    (
        "rejects_url",
        f"s3://bucket/p?X-Amz-Signature={SECRET}",
        "rejects_url s3://bucket/p: has a query or fragment ('?…' or '#…'), which may hold a "
        "signature or token and would end up in object names; remove it and give credentials "
        "through the environment (AWS_ACCESS_KEY_ID, a profile, a role)",
    ),
    (
        "rejects_url",
        "http://127.0.0.1:9/rejects",
        "rejects_url http://127.0.0.1:9/rejects: http:// cannot be written; give a folder, or "
        "an object store URL such as s3://bucket/prefix",
    ),
    (
        "snapshot_url",
        f"s3://u%3A{SECRET}%40bucket/p",
        "snapshot_url s3://…/p: the bucket name is not one (3 to 63 lowercase letters, digits, "
        "'.' or '-'); it is not shown, as it may hold a secret typed in the wrong place",
    ),
    (
        "rejects_url",
        f"s3://bucket/u:{SECRET}@x/p",
        "rejects_url s3://bucket/…/p: a folder name holds '@' or an encoded ':' or '@', as a "
        "user and password do; give credentials through the environment (AWS_ACCESS_KEY_ID, a "
        "profile, a role), never in the URL, which is logged",
    ),
    (
        "api_base_url",
        f"http://127.0.0.1:9/open_api/v1.3?sig={SECRET}",
        "api_base_url: has a query or fragment ('?…' or '#…'); TikTok's API takes none, and "
        "it may hold a secret, which would be logged; remove it",
    ),
]


@pytest.mark.parametrize(("setting", "url", "line"), URL_CASES)
def test_urls_with_secrets_are_refused_before_any_call(
    tmp_path: Path, setting: str, url: str, line: str
) -> None:
    config = {
        "access_token": "tok",
        "advertiser_ids": [ADV1],
        "api_base_url": "http://127.0.0.1:9/open_api/v1.3",
        "audiences": [VIP_MAPPING],
        setting: url,
    }
    run = run_target(tmp_path, config, vip_messages())
    assert_one_line(run, f"Config validation failed: {line}", tmp_path, report=False)
    (tmp_path / "run" / "config.json").unlink()  # the config holds the URL as written
    assert SECRET not in run.stdout + run.stderr + everything_written(tmp_path)
    assert "calls" not in run.stderr  # nothing was called: the API address is a dead port


def rejects_run(
    sandbox: SandboxServer, tmp_path: Path, rejects_url: str, env: dict[str, str] | None = None
) -> Any:
    config = base_config(sandbox, advertiser_ids=[ADV1], audiences=[VIP_MAPPING])
    config["rejects_url"] = rejects_url
    messages = [
        schema_msg("vip", ["email"]),
        *(record_msg("vip", {"id": i, "email": f"v{i}@example.com"}) for i in range(1000)),
        record_msg("vip", {"id": 5000, "email": "not-an-email"}),
        state_msg({"at": 1}),
    ]
    return run_target(tmp_path, config, messages, env=env)


def test_a_full_disk_under_the_rejects_folder_fails_the_run_naming_it(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    folder = tmp_path / "rejects"
    run = rejects_run(sandbox, tmp_path, str(folder), env={FAULT: "fail:rejects:1"})
    (written,) = folder.iterdir()
    assert_one_line(
        run,
        f"rejects_url {folder}: the rejects file {written} could not be written (no space "
        "left on the disk of "
        f"{folder}); its rejected keys would be lost, so no STATE was emitted. Fix the folder "
        "(or free its disk) and re-run",
        tmp_path,
    )


def test_a_rejects_bucket_that_does_not_exist_stops_the_run_before_input(
    sandbox: SandboxServer,
    tmp_path: Path,
    s3_endpoint: str,  # noqa: F811 - the fixture imported above
) -> None:
    """A bucket that does not exist is found by the probe at start (issue 29), where it used to
    log a line and exit 0 with STATE; a rejects file that cannot be completed later fails the
    run too (the full-disk test above)."""
    run = rejects_run(sandbox, tmp_path, "s3://no-such-bucket/rejects", env=s3_env(s3_endpoint))
    assert run.returncode == 1, run.stderr[-3000:]
    assert run.stdout == ""
    assert "Traceback" not in run.stderr
    (line,) = error_lines(run)
    assert line == (
        "rejects_url s3://no-such-bucket/rejects: cannot write there (the bucket or folder does "
        "not exist); fix it or choose another, then re-run"
    )
    assert [c for c in sandbox.calls() if c["path"].endswith(WRITES)] == []


# -- 6. what TikTok echoes is redacted ------------------------------------------------------

PLANTED_TOKEN = f"tok-{SECRET}"
LIST_PATH = "/dmp/custom_audience/list/"


def echo_run(tmp_path: Path, **fault: Any) -> Any:
    # TikTok's own database (the sandbox's) lives outside the run's folder: it knows the token.
    with run_sandbox(
        tmp_path.parent / f"{tmp_path.name}.db", tokens={PLANTED_TOKEN: [ADV1]}
    ) as server:
        server.inject(count=20, paths=[LIST_PATH], **fault)
        config = base_config(
            server, access_token=PLANTED_TOKEN, advertiser_ids=[ADV1], audiences=[VIP_MAPPING]
        )
        return run_target(tmp_path, config, [*vip_messages(), state_msg({"at": 1})])


def test_the_token_tiktok_echoes_is_redacted_everywhere(tmp_path: Path) -> None:
    run = echo_run(
        tmp_path, kind="permission_error", message=f"No permission for token {PLANTED_TOKEN}"
    )
    assert run.returncode == 1, run.stderr[-3000:]
    line = error_lines(run)[-1]
    assert re.fullmatch(
        rf"Checking access to the advertiser's audiences for advertiser {ADV1} failed: TikTok "
        r'said "No permission for token \[redacted\]" \(code 40001, request_id [0-9A-Za-z]+\)\. '
        r".+",
        line,
    ), line
    assert run.stdout == ""
    assert run.report is not None and run.report["error"] == line
    (tmp_path / "run" / "config.json").unlink()  # the config holds the token, as written
    assert SECRET not in run.stdout + run.stderr + everything_written(tmp_path)


def test_a_redirect_without_a_port_says_so(tmp_path: Path) -> None:
    run = echo_run(tmp_path, kind="redirect", location=f"http://127.0.0.1/x?sig={SECRET}")
    assert run.returncode == 1
    assert "redirect to 127.0.0.1 (no port given), which is not followed" in error_lines(run)[-1]
    assert "None" not in error_lines(run)[-1]
    assert SECRET not in run.stdout + run.stderr + json.dumps(run.report)


def test_a_storage_library_error_is_one_line_without_its_text() -> None:
    """botocore's errors are no OSError: the store turns them into its own line."""
    store = SnapshotStore("memory://corners-bucket/p")

    class LibraryError(Exception):
        pass

    def refuse(*_: Any, **__: Any) -> Any:
        raise LibraryError(f"request to bucket with key {SECRET}")

    inner = store._fs._fs  # type: ignore[union-attr]
    inner.open = refuse
    key = SnapshotKey(ADV1, "123", "EMAIL_SHA256")
    found = store.read(key)
    assert isinstance(found, Unusable)
    assert found.detail == (
        f"snapshot memory://corners-bucket/p/{ADV1}/123/EMAIL_SHA256.snap is unreadable "
        "(EIO: storage error LibraryError)"
    )


# -- 3. one audience, one mapping -------------------------------------------------------------

WRITES = ("/file/upload/", "/custom_audience/create/", "/custom_audience/update/", "/segment/")


def test_two_fixed_mappings_of_one_name_are_refused_before_any_call(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    mappings = [
        {"stream": "a", "audience_name": "gold", "identifiers": {"EMAIL_SHA256": "email"}},
        {"stream": "b", "audience_name": "gold", "identifiers": {"PHONE_SHA256": "phone"}},
    ]
    run = run_target(tmp_path, base_config(sandbox, audiences=mappings), vip_messages())
    assert_one_line(
        run,
        "Config validation failed: audiences[1]: streams 'a' and 'b' would both sync audience "
        "'gold' in the same advertisers; give one of them another audience_name",
        tmp_path,
        report=False,
    )
    assert sandbox.calls() == []


@pytest.mark.parametrize(
    ("fixed", "value"),
    [
        ({"EMAIL_SHA256": "email"}, "gold"),
        ({"EMAIL_SHA256": "email", "PHONE_SHA256": "phone"}, "gold (EMAIL_SHA256)"),
    ],
    ids=["same-name", "suffixed"],
)
def test_a_fan_out_value_naming_another_mappings_audience_stops_before_sending(
    sandbox: SandboxServer, tmp_path: Path, fixed: dict[str, str], value: str
) -> None:
    mappings = [
        {"stream": "golds", "audience_name": "gold", "identifiers": fixed},
        {
            "stream": "tiers",
            "audience_name": "{value}",
            "audience_name_column": "tier",
            "identifiers": {"EMAIL_SHA256": "email"},
        },
    ]
    messages = [
        schema_msg("golds", ["email", "phone"]),
        *(
            record_msg("golds", {"id": i, "email": f"g{i}@example.com", "phone": None})
            for i in range(3)
        ),
        schema_msg("tiers", ["email", "tier"]),
        record_msg("tiers", {"id": 1, "email": "t1@example.com", "tier": "silver"}),
        record_msg("tiers", {"id": 2, "email": EMAIL, "tier": f"{value} "}),
        state_msg({"at": 1}),
    ]
    config = base_config(sandbox, audiences=mappings)
    run = run_target(tmp_path, config, messages)
    assert_one_line(
        run,
        "Naming an audience from column 'tier' failed: audiences[stream=tiers]."
        f"audience_name_column: stream 'tiers' (value '{value}' of column 'tier') and stream "
        f"'golds' (audience_name 'gold') would both sync audience '{value}'; two mappings must "
        "never sync one audience. Give one of them another audience_name (or leave the value "
        "out of the stream); nothing of it was sent.",
        tmp_path,
        secrets=(SECRET,),
    )
    assert [c for c in sandbox.calls() if c["path"].endswith(WRITES)] == []


def test_a_lock_this_run_holds_is_never_waited_on(tmp_path: Path) -> None:
    store = SnapshotStore(str(tmp_path / "snaps"), lock_wait_seconds=600)
    key = SnapshotKey.for_name(ADV1, "gold", "AUDIENCE")
    with store.lock(key), pytest.raises(SnapshotError) as refused, store.lock(key):
        pass  # pragma: no cover - the inner lock refuses at once
    assert str(refused.value) == (
        f"this run already holds the snapshot lock for an audience name of advertiser {ADV1}: "
        "two of its mappings sync one audience; give one of them another audience_name"
    )
    with store.lock(key):  # released: taken again at once
        pass


# -- 9. spool folders of dead runs --------------------------------------------------------------


def start_time(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as fh:
        return int(fh.read().rsplit(b")", 1)[1].split()[19])


def test_spool_folders_of_dead_runs_are_removed_never_a_live_ones(tmp_path: Path) -> None:
    work = tmp_path / "run"  # run_target's TMPDIR
    work.mkdir()
    gone = subprocess.Popen(["true"])
    gone_started = start_time(gone.pid)
    gone.wait()
    live = subprocess.Popen(["sleep", "60"])
    try:
        live_started = start_time(live.pid)
        folders = {
            "dead": work / f"target-tiktok-audiences-{gone.pid}-{gone_started}-abc123",
            "reused": work / f"target-tiktok-audiences-{live.pid}-{live_started - 1}-def456",
            "live": work / f"target-tiktok-audiences-{live.pid}-{live_started}-ghi789",
            "older": work / "target-tiktok-audiences-k2j3h4",  # an older version's: whose?
        }
        for folder in folders.values():
            folder.mkdir()
            (folder / "digests.txt").write_text("0" * 64 + "\n")
        run = run_target(tmp_path, dry(tmp_path, audiences=[VIP_MAPPING]), vip_messages())
    finally:
        live.kill()
        live.wait()
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Removed 2 spool folders left by runs of this target that were killed." in run.stderr
    assert sorted(p.name for p in work.glob("target-tiktok-audiences-*")) == sorted(
        [folders["live"].name, folders["older"].name]
    )


def test_the_rejects_writer_refuses_credentials_itself() -> None:
    """The writer is the last guard: built without the config check, it still says nothing."""
    with pytest.raises(RejectsError) as refused:
        RejectsWriter(f"s3://KEY:{SECRET}@bucket/p", datetime.now(timezone.utc))
    assert str(refused.value) == URL_CASES[0][2]


@pytest.mark.parametrize("extra", [{}, {"audience_type": "partner"}, {"sync_mode": "incremental"}])
def test_a_lock_that_cannot_be_taken_defers_its_audience_in_one_line(
    sandbox: SandboxServer, tmp_path: Path, extra: dict[str, str]
) -> None:
    """The store's root can be written (the probe at start passes) but the lock's folder cannot
    be made (a file sits where the API host's folder goes): the audience is deferred with the
    store's line, where the run used to end in "generator didn't yield"."""
    root = tmp_path / "snapshots"
    root.mkdir()
    (root / scope_for(sandbox.base_url)).write_text("not a folder")
    config = base_config(
        sandbox,
        advertiser_ids=[ADV1],
        audiences=[{**VIP_MAPPING, **extra}],
        snapshot_url=str(root),
    )
    run = run_target(tmp_path, config, [*vip_messages(), state_msg({"at": 1})])
    assert_one_line(
        run,
        f"1 audience not delivered: 'VIP' in advertiser {ADV1} (the snapshot store failed); no "
        "other audience was delivered in this run and no STATE was emitted; the summary above "
        "says what to do",
        tmp_path,
    )
    assert "generator didn't yield" not in run.stderr
    assert [c for c in sandbox.calls() if c["path"].endswith(WRITES)] == []


def test_a_request_id_that_quotes_the_token_is_redacted() -> None:
    from types import SimpleNamespace

    from target_tiktok_audiences.client.transport import unwrap

    body = {"code": 40001, "message": f"bad {PLANTED_TOKEN}", "request_id": PLANTED_TOKEN}
    transport = SimpleNamespace(host="127.0.0.1:9", secrets=(PLANTED_TOKEN,))
    with pytest.raises(Exception) as failed:
        unwrap(200, {}, json.dumps(body).encode(), "Listing", ADV1, transport)  # type: ignore[arg-type]
    assert str(failed.value).startswith(
        f'Listing for advertiser {ADV1} failed: TikTok said "bad [redacted]" (code 40001, '
        "request_id [redacted])"
    )
    assert SECRET not in str(failed.value)
