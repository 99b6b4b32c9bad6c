"""Every place the target writes is probed before a record is read (issue 29).

The real console script: a place that cannot be written ends the run at start with one line
naming the setting and the cause, before any TikTok call and with no summary of audiences that
were never tried. Object stores are probed too (moto in server mode, as test_snapshot does).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_snapshot import bucket, s3_endpoint  # noqa: F401 - fixtures

from target_tiktok_audiences.sandbox.server import SandboxServer

from helpers import (
    ADV1,
    Run,
    base_config,
    cli,
    record_msg,
    run_target,
    schema_msg,
    singer_lines,
    state_msg,
)

AGAIN = "fix it or choose another, then re-run"
STREAMS = ("users", "vip", "gold")


def messages() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for stream in STREAMS:
        out.append(schema_msg(stream, ["email"]))
        out += [record_msg(stream, {"id": i, "email": f"{stream}{i}@x.io"}) for i in range(1200)]
    return [*out, state_msg({"done": True})]


def run_cli(tmp_path: Path, config: dict[str, Any]) -> Run:
    """The CLI without run_target, which reads report_path back (here it cannot be read)."""
    (tmp_path / "config.json").write_text(json.dumps(config))
    proc = cli.run(
        "target-tiktok-audiences",
        ["--config", str(tmp_path / "config.json")],
        input=singer_lines(messages()),
        timeout=120,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr, None)


def last_line(stderr: str) -> str:
    return stderr.strip().splitlines()[-1].split(" | ")[-1]


def assert_stopped_at_start(run: Any, sandbox: SandboxServer, line: str) -> None:
    assert run.returncode == 1
    assert run.stdout == ""  # no STATE
    assert last_line(run.stderr) == line
    assert "Traceback" not in run.stderr and "pending" not in run.stderr
    assert "Audience '" not in run.stderr  # no summary of audiences never tried
    assert sandbox.calls() == []  # not even the token check


def test_an_unwritable_snapshot_url_is_named_at_start(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    config = base_config(sandbox, advertiser_ids=[ADV1], snapshot_url=str(blocker / "snaps"))
    run = run_target(tmp_path, config, messages())
    assert_stopped_at_start(
        run,
        sandbox,
        f"snapshot_url {blocker / 'snaps'}: cannot write there (ENOTDIR: Not a directory); {AGAIN}",
    )
    config["snapshot_url"] = str(blocker)
    run = run_target(tmp_path, config, messages(), name="file-url")
    assert_stopped_at_start(
        run, sandbox, f"snapshot_url {blocker}: is a file, not a folder; {AGAIN}"
    )


def test_rejects_url_output_dir_and_report_path_are_probed(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    config = base_config(sandbox, advertiser_ids=[ADV1], rejects_url=str(blocker))
    run = run_target(tmp_path, config, messages())
    assert_stopped_at_start(
        run, sandbox, f"rejects_url {blocker}: is a file, not a folder; {AGAIN}"
    )

    dry = {"advertiser_ids": [ADV1], "dry_run": True, "output_dir": str(blocker / "out")}
    run = run_target(tmp_path, dry, messages(), name="dry")
    assert_stopped_at_start(
        run,
        sandbox,
        f"output_dir {blocker / 'out'}: cannot write there (ENOTDIR: Not a directory); {AGAIN}",
    )

    folder = tmp_path / "reports"
    folder.mkdir()
    config = base_config(sandbox, advertiser_ids=[ADV1], report_path=str(folder))
    run = run_cli(tmp_path, config)
    assert_stopped_at_start(
        run,
        sandbox,
        f"report_path {folder}: is a folder; give the path of a file (e.g. {folder}/report.json)",
    )
    config["report_path"] = str(blocker / "report.json")
    run = run_cli(tmp_path, config)
    assert_stopped_at_start(
        run,
        sandbox,
        f"report_path {blocker}: is a file, not a folder; give a report_path in a folder this "
        "user can write, then re-run",
    )


def test_missing_folders_are_created_and_the_probe_leaves_nothing(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    sandbox.app.config.match_rate = 1.0
    snaps, rejects = tmp_path / "deep" / "snaps", tmp_path / "deep" / "rejects"
    config = base_config(
        sandbox, advertiser_ids=[ADV1], snapshot_url=str(snaps), rejects_url=str(rejects)
    )
    run = run_target(tmp_path, config, messages()[:1202])  # users only
    assert run.returncode == 0, run.stderr[-2000:]
    assert oct(snaps.stat().st_mode & 0o777) == "0o700"
    left = [p.name for p in (tmp_path / "deep").rglob("*") if "probe" in p.name]
    assert left == []


def test_an_object_store_is_probed_at_start(
    sandbox: SandboxServer,
    tmp_path: Path,
    bucket: str,  # noqa: F811 - the fixture
) -> None:
    missing = f"{bucket}-missing"
    config = base_config(sandbox, advertiser_ids=[ADV1], snapshot_url=f"s3://{missing}/snaps")
    run = run_target(tmp_path, config, messages())
    assert_stopped_at_start(
        run,
        sandbox,
        f"snapshot_url s3://{missing}/snaps: cannot write there (the bucket or folder does not "
        f"exist); {AGAIN}",
    )
    config = base_config(
        sandbox,
        advertiser_ids=[ADV1],
        snapshot_url=f"s3://{bucket}/snaps",
        rejects_url=f"s3://{missing}/rejects",
    )
    run = run_target(tmp_path, config, messages(), name="rejects")
    assert_stopped_at_start(
        run,
        sandbox,
        f"rejects_url s3://{missing}/rejects: cannot write there (the bucket or folder does not "
        f"exist); {AGAIN}",
    )


@pytest.mark.parametrize("step", ["upload_file"])
def test_a_run_stopped_while_delivering_names_what_was_not_delivered(
    sandbox: SandboxServer, tmp_path: Path, step: str
) -> None:
    """A disk that fills during delivery: the last line says which audiences were left."""
    sandbox.app.config.match_rate = 1.0
    config = base_config(sandbox, advertiser_ids=[ADV1])
    run = run_target(
        tmp_path,
        config,
        messages(),
        env={"TARGET_TIKTOK_AUDIENCES_TEST_FAULT": f"fail:{step}:2"},
    )
    assert run.returncode == 1 and run.stdout == ""
    line = last_line(run.stderr)
    assert line.endswith(
        f". Not delivered: the audiences of stream 'vip' (stopped at 'vip' in advertiser {ADV1}), "
        "stream 'gold' (the others were delivered; no STATE was emitted)"
    ), line
    assert "pending" not in run.stderr
    assert run.report is not None and run.report["error"] == line
    assert line.startswith("No space left on the disk of the spool folder")
