"""Known failures end with one line a person can act on, exit code 1 and no traceback.

Each case runs the real CLI and reads its whole stderr: the last line (after the log prefix) is
asserted exactly, tracebacks appear only with LOGLEVEL=DEBUG, stdout holds no STATE, and the
run report says `failed` whenever the run got as far as writing it.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import re
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from target_tiktok_audiences.failures import exit_on_known_failure
from target_tiktok_audiences.spool import Spool
from target_tiktok_audiences.target import TargetTikTokAudiences

from helpers import (
    ADV1,
    TOKEN,
    Run,
    audiences_by_name,
    base_config,
    record_msg,
    run_target,
    schema_msg,
    sha256,
    singer_lines,
    state_msg,
)

MIRROR = {"stream": "vip", "audience_name": "VIP", "identifiers": {"EMAIL_SHA256": "email"}}
STREAMED = {
    "stream": "people",
    "audience_name": "People",
    "sync_mode": "incremental",
    "identifiers": {"EMAIL_SHA256": "email"},
}
UNKNOWN_ADVERTISER = "7000000000000000009"
# A retry line is the client's own; backoff's logger must stay silent (logger=None).
RETRY_LINE = re.compile(r"[.?!] Retry (\d+) in \d+\.\d s\.$")
HINT_AUTH = (
    "Re-authorise the TikTok app and put the new token in access_token "
    "(TARGET_TIKTOK_AUDIENCES_ACCESS_TOKEN)."
)
HINT_NETWORK = (
    "Check api_base_url and the network (proxy, firewall, DNS); the run is safe to re-run."
)


def messages_of(run: Run) -> list[str]:
    """The message part of every log line ("time | LEVEL | logger | message")."""
    return [line.split(" | ", 3)[3] for line in run.stderr.splitlines() if line.count(" | ") >= 3]


def last_line(run: Run) -> str:
    """The last line a person reads, without the log prefix; it must be an ERROR line."""
    lines = run.stderr.rstrip("\n").splitlines()
    assert lines, "no output at all"
    parts = lines[-1].split(" | ", 3)
    assert len(parts) == 4 and parts[1].strip() == "ERROR", run.stderr[-3000:]
    return parts[3]


def assert_failed_cleanly(run: Run, *, report: bool = True) -> None:
    """Exit 1, no STATE, no traceback, and (when asked) a report that says failed."""
    assert run.returncode == 1, run.stderr[-3000:]
    assert run.stdout == ""
    assert "Traceback" not in run.stderr
    assert "Backing off" not in run.stderr and "Giving up" not in run.stderr
    if report:
        assert run.report is not None, run.stderr[-3000:]
        assert run.report["status"] == "failed"
        assert run.report["error"]


def request_id(sandbox, path: str) -> str:
    (call,) = sandbox.calls(path)
    return str(call["request_id"])


def writes(sandbox) -> list[str]:
    """Paths of every call that could change an audience (all of them are POSTs)."""
    return [c["path"] for c in sandbox.calls() if c["method"] == "POST"]


def people(n: int, domain: str = "example.com") -> list[dict]:
    return [record_msg("people", {"id": i, "email": f"p{i}@{domain}"}) for i in range(n)]


def vips(n: int) -> list[dict]:
    return [record_msg("vip", {"id": i, "email": f"v{i}@example.com"}) for i in range(n)]


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections: bound by this test, never listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


# -- token and advertiser --------------------------------------------------------------------


def test_wrong_token_ends_with_one_line_naming_the_setting(sandbox, tmp_path):
    config = base_config(sandbox, access_token="not-the-token", audiences=[MIRROR])
    run = run_target(tmp_path, config, [schema_msg("vip", ["email"]), state_msg(1)])
    assert_failed_cleanly(run)
    rid = request_id(sandbox, "/user/info/")
    assert last_line(run) == (
        'Checking the access token failed: TikTok said "Access token is invalid or has been '
        f'revoked" (code 40105, request_id {rid}). {HINT_AUTH}'
    )
    assert run.report["error"] == last_line(run)
    assert "not-the-token" not in run.stderr


def test_with_loglevel_debug_the_same_failure_shows_its_traceback(sandbox, tmp_path):
    config = base_config(sandbox, access_token="not-the-token", audiences=[MIRROR])
    run = run_target(tmp_path, config, [state_msg(1)], env={"LOGLEVEL": "DEBUG"})
    assert run.returncode == 1
    assert run.stdout == ""
    assert "Traceback (most recent call last):" in run.stderr
    error = f'Checking the access token failed: TikTok said "Access token is invalid or has been revoked" (code 40105, request_id {request_id(sandbox, "/user/info/")}). {HINT_AUTH}'  # noqa: E501
    assert run.stderr.rstrip("\n").splitlines()[-1].endswith(f"PermanentError: {error}")
    assert "not-the-token" not in run.stderr


def test_wrong_advertiser_ends_with_one_line_naming_it(sandbox, tmp_path):
    config = base_config(sandbox, advertiser_ids=[ADV1, UNKNOWN_ADVERTISER], audiences=[MIRROR])
    run = run_target(tmp_path, config, [schema_msg("vip", ["email"]), state_msg(1)])
    assert_failed_cleanly(run)
    calls = [c for c in sandbox.calls("/dmp/custom_audience/list/")]
    assert len(calls) == 2  # one check per advertiser, the refused one not retried
    rid = str(calls[-1]["request_id"])
    assert last_line(run) == (
        f"Checking access to the advertiser's audiences for advertiser {UNKNOWN_ADVERTISER} "
        f'failed: TikTok said "No permission to operate advertiser {UNKNOWN_ADVERTISER}: the '
        'access token is not authorised for it (or access was revoked)" '
        f"(code 40001, request_id {rid}). Make sure the token's app has the Audience Management "
        "permission and access to this advertiser, or remove the advertiser from advertiser_ids."
    )
    assert run.report["error"] == last_line(run)


# -- network and retries ---------------------------------------------------------------------


def test_unreachable_api_gives_up_in_seconds_naming_host_port_and_setting(
    tmp_path, closed_port: int
):
    # The default max_retries (8): a refused connection is an answer, tried three times only.
    config = {
        "access_token": TOKEN,
        "advertiser_ids": [ADV1],
        "api_base_url": f"http://127.0.0.1:{closed_port}/open_api/v1.3",
        "request_timeout": 2,
        "audiences": [MIRROR],
    }
    run = run_target(tmp_path, config, [state_msg(1)], timeout=60)
    assert_failed_cleanly(run)
    # First that the API cannot be reached, then what was being done (issue 29).
    said = (
        f"The TikTok API cannot be reached at 127.0.0.1:{closed_port} (api_base_url): the "
        "connection was refused (while checking the access token)"
    )
    hint = f"{HINT_NETWORK} Is `tiktok-audiences-sandbox serve` running?"
    line = last_line(run)
    assert re.fullmatch(
        re.escape(said) + r"\. Gave up after 3 tries in \d+ s\. " + re.escape(hint), line
    ), line
    # TikTok said nothing: the network failure is our own observation.
    assert "TikTok said" not in run.stderr
    retries = [m for m in messages_of(run) if RETRY_LINE.search(m)]
    assert [RETRY_LINE.search(m).group(1) for m in retries] == ["1", "2"]  # type: ignore[union-attr]
    # One stop per sentence: "...safe to re-run. Is ... running? Retry 1 in 0.4 s."
    assert all(m.startswith(f"{said}. {hint} Retry ") for m in retries), retries
    assert ".;" not in run.stderr and "?;" not in run.stderr
    assert run.report["error"] == line


def test_three_rate_limits_log_three_retry_lines_and_the_run_succeeds(sandbox, tmp_path):
    sandbox.inject("rate_limit", count=3, paths=["/user/info/"])
    # A customer-file audience: a new partner audience's warm-up would add retries of its own.
    config = base_config(sandbox, advertiser_ids=[ADV1], audiences=[MIRROR])
    run = run_target(tmp_path, config, [schema_msg("vip", ["email"]), *vips(1000), state_msg(1)])
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.states == [1]
    retries = [m for m in messages_of(run) if RETRY_LINE.search(m)]
    rids = [str(c["request_id"]) for c in sandbox.calls("/user/info/")]
    assert len(rids) == 4  # three refused, the fourth accepted
    assert [RETRY_LINE.sub("", m) for m in retries] == [
        'Checking the access token failed: TikTok said "Too many requests" '
        f"(code 40100, request_id {rid})"
        for rid in rids[:3]
    ]
    assert [RETRY_LINE.search(m).group(1) for m in retries] == ["1", "2", "3"]  # type: ignore[union-attr]
    assert "Backing off" not in run.stderr and "Giving up" not in run.stderr
    assert "Traceback" not in run.stderr
    assert run.report["status"] == "succeeded"
    assert run.report["calls"]["retries"] == 3
    members = audiences_by_name(sandbox, ADV1)["VIP"]["members"]
    assert members == {"EMAIL_SHA256": sorted(sha256(f"v{i}@example.com") for i in range(1000))}


def test_rate_limits_beyond_max_retries_give_up_once(sandbox, tmp_path):
    sandbox.inject("rate_limit", count=3, paths=["/user/info/"])
    config = base_config(sandbox, advertiser_ids=[ADV1], audiences=[STREAMED], max_retries=2)
    run = run_target(tmp_path, config, [schema_msg("people", ["email"]), state_msg(1)])
    assert_failed_cleanly(run)
    rids = [str(c["request_id"]) for c in sandbox.calls("/user/info/")]
    assert len(rids) == 3
    said = 'Checking the access token failed: TikTok said "Too many requests" (code 40100'
    assert len([m for m in messages_of(run) if RETRY_LINE.search(m)]) == 2
    assert sum("Gave up after" in m for m in messages_of(run)) == 1
    assert re.fullmatch(
        re.escape(f"{said}, request_id {rids[-1]}). Gave up after 3 tries in ")
        + r"\d+"
        + re.escape(" s. TikTok kept failing; the run is safe to re-run later."),
        last_line(run),
    ), last_line(run)


def test_an_http_503_page_is_not_reported_as_words_of_tiktok(sandbox, tmp_path):
    sandbox.inject("http_503", count=3, paths=["/user/info/"])
    config = base_config(sandbox, advertiser_ids=[ADV1], audiences=[STREAMED], max_retries=2)
    run = run_target(tmp_path, config, [state_msg(1)])
    assert_failed_cleanly(run)
    assert "TikTok said" not in run.stderr
    host = sandbox.base_url.split("/")[2]
    assert re.fullmatch(
        re.escape(f"Checking the access token failed: HTTP 503 from {host} (api_base_url)")
        + r"\. Gave up after 3 tries in \d+ s\. TikTok kept failing; the run is safe to re-run "
        r"later\.",
        last_line(run),
    ), last_line(run)


# -- input -----------------------------------------------------------------------------------


def test_invalid_json_line_names_its_line_number_never_its_content(sandbox, tmp_path):
    config = base_config(sandbox, advertiser_ids=[ADV1], audiences=[STREAMED])
    secret = "secret.person@example.com"
    data = (
        singer_lines([schema_msg("people", ["email"]), *people(3)])
        + '{"type": "RECORD", "stream": "people", "record": {"email": "'
        + secret
        + '"\n'
        + singer_lines(people(2))
    )
    run = run_target(tmp_path, config, data)
    assert_failed_cleanly(run)
    assert last_line(run) == (
        "Input line 5 is not valid JSON (Input data was truncated); it is not shown because it "
        "may hold personal data. Check the tap's output."
    )
    assert run.report["error"] == last_line(run)
    assert secret not in run.stderr and secret not in json.dumps(run.report)
    assert writes(sandbox) == []  # nothing delivered after a bad line


def test_a_lone_surrogate_in_an_email_is_one_rejection_never_a_stop(sandbox, tmp_path):
    config = base_config(sandbox, advertiser_ids=[ADV1], audiences=[STREAMED])
    # What a Python tap's json.dumps writes for a string holding a lone surrogate.
    odd = '{"type": "RECORD", "stream": "people", "record": {"id": 9999, "email": "jane\\ud800@example.com", "name": "\\udfff"}}\n'  # noqa: E501
    data = singer_lines([schema_msg("people", ["email", "name"]), *people(1000)]) + odd
    data += singer_lines([state_msg(1)])
    run = run_target(tmp_path, config, data)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.states == [1]
    assert "Traceback" not in run.stderr
    stream = run.report["streams"][0]
    assert stream["rejected"] == {"EMAIL_SHA256": {"invalid_email": 1}}
    assert stream["accepted"] == {"EMAIL_SHA256": 1000}
    members = audiences_by_name(sandbox, ADV1)["People"]["members"]
    assert members == {"EMAIL_SHA256": sorted(sha256(f"p{i}@example.com") for i in range(1000))}


# -- full disk -------------------------------------------------------------------------------


ENOSPC_LINE = (
    "No space left on the disk of the spool folder {}: set TMPDIR to a folder on a larger disk "
    "(the spool holds every digest of the largest audience), then re-run"
)


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs: the spool fills it. Needs root (or CAP_SYS_ADMIN); skipped otherwise."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); see the in-process test")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_full_spool_disk_names_the_folder_and_still_writes_the_report(
    sandbox, tmp_path, tiny_tmpfs: Path
):
    config = base_config(sandbox, advertiser_ids=[ADV1], audiences=[MIRROR])
    # 6,000 digests of 65 bytes are 390 KB: more than the disk holds.
    messages = [schema_msg("vip", ["email"]), *vips(6000), state_msg(1)]
    run = run_target(tmp_path, config, messages, env={"TMPDIR": str(tiny_tmpfs)})
    assert_failed_cleanly(run)
    assert last_line(run) == ENOSPC_LINE.format(tiny_tmpfs)
    assert run.report["error"] == last_line(run)
    assert writes(sandbox) == []
    assert list(tiny_tmpfs.iterdir()) == []  # the spool folder was removed


@pytest.fixture
def own_signal_handlers() -> Iterator[None]:
    """An in-process target installs SIGINT/SIGTERM handlers; the test worker gets its own back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


@pytest.mark.usefixtures("own_signal_handlers")
def test_full_spool_disk_in_process(sandbox, tmp_path, caplog, monkeypatch):
    """The same failure without mounting anything: every write of digests to the spool folder
    (the upload spool, and the sorted set a mirror uploads as it is) raises ENOSPC."""

    def full(*_: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Spool, "write", full)
    monkeypatch.setattr(Spool, "write_block", full)
    monkeypatch.setattr("target_tiktok_audiences.deliveries.sortedsets.write_sorted", full)
    report_path = tmp_path / "report.json"
    config = base_config(
        sandbox, advertiser_ids=[ADV1], audiences=[MIRROR], report_path=str(report_path)
    )
    target = TargetTikTokAudiences(config=config, validate_config=True)
    data = singer_lines([schema_msg("vip", ["email"]), *vips(1000), state_msg(1)])
    with (
        caplog.at_level(logging.INFO),
        pytest.raises(SystemExit) as exited,
        exit_on_known_failure(target.logger),
    ):
        target.listen(io.StringIO(data))
    assert exited.value.code == 1
    last = caplog.records[-1]
    assert last.levelno == logging.ERROR
    assert last.getMessage() == ENOSPC_LINE.format(tempfile.gettempdir())
    assert not last.exc_info  # no traceback at the default level
    report = json.loads(report_path.read_text())
    assert report["status"] == "failed"
    assert report["error"] == last.getMessage()
    assert writes(sandbox) == []
