"""A dry run with a token (issue 30): it reads TikTok and the snapshots, writes nothing, and plans
exactly what the next real run sends.

The oracle is the sandbox's call log: the write calls TikTok accepted from the real run that
follows a dry run (action, advertiser, audience, counts) must equal the calls of the dry run's
plan.json, one for one and in order.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import test_model as model
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize

from target_tiktok_audiences.report import NOT_READ
from target_tiktok_audiences.sandbox.server import SandboxServer
from target_tiktok_audiences.snapshot import SnapshotKey, SnapshotStore, scope_for

from helpers import (
    ADV1,
    Run,
    base_config,
    dry_run_dir,
    record_msg,
    run_target,
    schema_msg,
    state_msg,
)

# The write endpoints and the name a plan gives their calls.
WRITES = {
    "/dmp/custom_audience/file/upload/": "upload",
    "/dmp/custom_audience/create/": "create",
    "/dmp/custom_audience/update/": "update",
    "/segment/audience/": "create_partner",
    "/segment/mapping/": "mapping",
}
PLACEHOLDER = "dry-run-"


@pytest.fixture(autouse=True)
def all_matched(sandbox: SandboxServer) -> None:
    """TikTok matches every identifier here: whether an update leaves 1,000 matched users is
    known only to TikTok, which refuses it when it is sent (test_refusals); a plan cannot
    know it either."""
    sandbox.app.config.match_rate = 1.0


def email(i: int) -> str:
    return f"user.{i}@example.com"


def rows(users: Iterable[int], stream: str = "users", **columns: Any) -> list[dict]:
    return [
        schema_msg(stream, ["email", "phone", *columns]),
        *(
            record_msg(
                stream,
                {
                    "id": i,
                    "email": email(i),
                    "phone": f"+1415{i:07d}",
                    **{c: f(i) for c, f in columns.items()},
                },
            )
            for i in users
        ),
        state_msg({stream: "done"}),
    ]


def accepted_writes(sandbox: SandboxServer, start: int) -> list[tuple[Any, ...]]:
    """The write calls TikTok accepted since call number `start`, as plans count them."""
    out = []
    for call in sandbox.calls()[start:]:
        kind = WRITES.get(call["path"])
        if kind is None or call["code"] != 0 or call["fault"]:
            continue
        out.append(_key(kind, call["advertiser_id"], call["action"], call))
    return out


def _key(kind: str, advertiser_id: str, action: str | None, counts: dict) -> tuple[Any, ...]:
    if kind == "upload":
        return (kind, advertiser_id, counts["lines"])
    if kind in ("create", "update"):
        return (kind, advertiser_id, action if kind == "update" else None, counts["files"])
    if kind == "mapping":
        return (kind, advertiser_id, action, counts["users"])
    return (kind, advertiser_id)


def planned_writes(plan: dict) -> list[tuple[Any, ...]]:
    out = []
    for call in plan["calls"]:
        kind = call["call"]
        counts = {"lines": call.get("lines"), "files": len(call.get("files") or ())}
        counts["users"] = call.get("users")
        out.append(_key(kind, call["advertiser_id"], call.get("action"), counts))
    return out


def plan_of(out: Path) -> dict:
    return json.loads((dry_run_dir(out) / "plan.json").read_text())


def preview_then_run(
    sandbox: SandboxServer,
    tmp_path: Path,
    config: dict[str, Any],
    messages: list[dict],
    name: str,
    env: dict[str, str] | None = None,
) -> tuple[dict, Run, Run]:
    """A dry run, then the real run of the same input; the plan must be what the run sent."""
    out = tmp_path / f"plan-{name}"
    dry = {**config, "dry_run": True, "output_dir": str(out)}
    before = len(sandbox.calls())
    preview = run_target(tmp_path, dry, messages, name=f"{name}-dry", env=env)
    assert preview.states == [], "a dry run emitted STATE"
    assert accepted_writes(sandbox, before) == []
    assert all(c["method"] == "GET" for c in sandbox.calls()[before:]), "a dry run wrote"
    plan = plan_of(out)
    start = len(sandbox.calls())
    real = run_target(tmp_path, config, messages, name=name, env=env)
    assert planned_writes(plan) == accepted_writes(sandbox, start), (
        preview.stderr[-3000:] + real.stderr[-3000:]
    )
    assert preview.returncode == real.returncode, preview.stderr[-3000:] + real.stderr[-3000:]
    check_audiences(sandbox, plan)
    return plan, preview, real


def check_audiences(sandbox: SandboxServer, plan: dict) -> None:
    """Each planned call goes to the audience the real run used: the existing one by id, or
    one the real run created under the planned name."""
    ids = {a["audience_id"]: a for a in plan["audiences"] if a["audience_id"]}
    for call in plan["calls"]:
        audience_id = call.get("audience_id")
        if audience_id is None or call["call"] in ("create", "create_partner"):
            continue
        entry = ids[audience_id]
        named = [
            a
            for a in sandbox.audiences(call["advertiser_id"])
            if a["name"] == entry["audience_name"]
        ]
        assert len(named) == 1, named
        if audience_id.startswith(PLACEHOLDER):
            assert entry["created"] is True
        else:
            assert named[0]["audience_id"] == audience_id


def ok(run: Run) -> Run:
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def config_for(sandbox: SandboxServer, **extra: Any) -> dict[str, Any]:
    mapping = {"stream": "users", "audience_name": "Newsletter"}
    mapping["identifiers"] = {"EMAIL_SHA256": "email"}  # type: ignore[assignment]
    return base_config(sandbox, advertiser_ids=[ADV1], audiences=[mapping], **extra)


def store_files(tmp_path: Path) -> dict[str, tuple[int, int]]:
    """Every file of the snapshot store (the ledger and locks too), with size and mtime."""
    root = tmp_path / "xdg-data"
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def without_locks(files: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
    return {k: v for k, v in files.items() if not k.endswith(".lock")}


def planned_line(run: Run) -> list[str]:
    return [
        ln.split(" | ", 3)[3] for ln in run.stderr.splitlines() if "Audience 'Newsletter'" in ln
    ]


# -- exact cases ----------------------------------------------------------------------------


def test_after_two_mirror_runs_a_dry_run_plans_no_change(sandbox, tmp_path: Path) -> None:
    """The issue's case: the audience exists and has a snapshot; the plan says so."""
    config = config_for(sandbox)
    ok(run_target(tmp_path, config, rows(range(1200)), name="first"))
    sandbox.advance_clock(3600)
    ok(run_target(tmp_path, config, rows(range(1200)), name="second"))
    (audience,) = sandbox.audiences(ADV1)
    plan, preview, real = preview_then_run(sandbox, tmp_path, config, rows(range(1200)), "third")
    ok(preview)
    ok(real)
    assert plan["calls"] == []
    assert plan["read_tiktok"] is True
    (entry,) = plan["audiences"]
    assert (entry["audience_id"], entry["created"], entry["status"], entry["action"]) == (
        audience["audience_id"],
        False,
        "planned",
        "NONE",
    )
    assert planned_line(preview)[0] == (
        f"Audience 'Newsletter' in advertiser {ADV1}: +0 \u22120 \u2192 1,200; nothing to change "
        f"in audience {audience['audience_id']}; nothing would be sent (dry run)."
    )
    assert "would create it" not in preview.stderr
    assert NOT_READ not in preview.stderr


def test_a_dry_run_after_a_stream_change_plans_the_append_and_remove(
    sandbox, tmp_path: Path
) -> None:
    config = config_for(sandbox)
    ok(run_target(tmp_path, config, rows(range(1200)), name="first"))
    sandbox.advance_clock(3600)
    (audience,) = sandbox.audiences(ADV1)
    plan, preview, real = preview_then_run(
        sandbox, tmp_path, config, rows(range(100, 1350)), "changed"
    )
    ok(preview)
    ok(real)
    updates = [(c["action"], c["audience_id"]) for c in plan["calls"] if c["call"] == "update"]
    assert updates == [("APPEND", audience["audience_id"]), ("REMOVE", audience["audience_id"])]
    assert [c["lines"] for c in plan["calls"] if c["call"] == "upload"] == [150, 100]
    (entry,) = plan["audiences"]
    assert (entry["identifiers_uploaded"], entry["identifiers_removed"]) == (150, 100)
    assert plan["operations"][ADV1]["by_this_run"] == 2
    assert planned_line(preview)[0].startswith(
        f"Audience 'Newsletter' in advertiser {ADV1}: +150 \u2212100 \u2192 1,250; would update "
        f"audience {audience['audience_id']} (APPEND+REMOVE)"
    )


def test_a_dry_run_writes_nothing_and_takes_no_lock(sandbox, tmp_path: Path) -> None:
    config = config_for(sandbox)
    ok(run_target(tmp_path, config, rows(range(1200)), name="first"))
    before = store_files(tmp_path)
    assert any(name.endswith(".snap") for name in before)
    # Another run holds the audience's lock all along: a dry run neither waits for it nor
    # takes it (a real run would wait lock_wait_seconds, then defer the audience).
    store = SnapshotStore(
        str(tmp_path / "xdg-data" / "target-tiktok-audiences" / "snapshots"),
        scope=scope_for(sandbox.base_url),
    )
    out = tmp_path / "out"
    dry = {**config, "dry_run": True, "output_dir": str(out)}
    with store.lock(SnapshotKey.for_name(ADV1, "Newsletter", "AUDIENCE")):
        locked = store_files(tmp_path)
        run = ok(run_target(tmp_path, dry, rows(range(100, 1350)), name="dry"))
    assert run.states == []
    assert store_files(tmp_path) == locked
    assert without_locks(locked) == without_locks(before)  # only the test's lock changed
    (entry,) = plan_of(out)["audiences"]
    assert (entry["status"], entry["action"]) == ("planned", "APPEND+REMOVE")


def test_a_dry_run_without_a_token_says_it_did_not_read_tiktok(sandbox, tmp_path: Path) -> None:
    config = config_for(sandbox)
    ok(run_target(tmp_path, config, rows(range(1200)), name="first"))
    out = tmp_path / "out"
    dry = {**config, "dry_run": True, "output_dir": str(out)}
    del dry["access_token"]
    before = len(sandbox.calls())
    run = ok(run_target(tmp_path, dry, rows(range(1200)), name="dry"))
    assert sandbox.calls()[before:] == []  # no network at all
    lines = [ln for ln in run.stderr.splitlines() if "TikTok was not read" in ln]
    assert len(lines) == 1 and lines[0].endswith(NOT_READ)
    plan = plan_of(out)
    assert plan["read_tiktok"] is False
    (entry,) = plan["audiences"]
    assert (entry["created"], entry["action"]) == (True, "CREATE")


def test_a_dry_run_plans_the_guards_budget_and_fan_out(sandbox, tmp_path: Path) -> None:
    """What would hold an audience back, the operations budget, and every audience of a
    column (those without records too)."""
    mapping = {
        "stream": "users",
        "audience_name": "Tier {value}",
        "audience_name_column": "tier",
        "identifiers": {"EMAIL_SHA256": "email"},
    }
    config = base_config(
        sandbox, advertiser_ids=[ADV1], audiences=[mapping], daily_update_operations=1
    )
    tiers = {"tier": lambda i: "gold" if i % 3 == 0 else "silver" if i % 3 == 1 else "bronze"}
    ok(run_target(tmp_path, config, rows(range(3600), **tiers), name="first"))
    sandbox.advance_clock(2 * 86400)  # yesterday's creates spend nothing today
    # gold loses most of its users (the removal guard), silver changes (APPEND and REMOVE, one
    # operation left: the REMOVE goes, the APPEND is deferred), bronze gets no record.
    kept = [i for i in range(3600) if (i % 3 == 1 and i > 10) or (i % 3 == 0 and i < 300)]
    stream = rows([*kept, 3601, 3604], **tiers)
    plan, preview, real = preview_then_run(sandbox, tmp_path, config, stream, "second")
    assert preview.returncode == real.returncode != 0
    entries = {a["audience_name"]: a for a in plan["audiences"]}
    assert sorted(entries) == ["Tier gold", "Tier silver"]
    assert entries["Tier gold"]["status"] == "deferred"
    assert "max_removal_percent" in entries["Tier gold"]["refusal"]
    silver = entries["Tier silver"]
    assert (silver["status"], silver["action"]) == ("deferred", "REMOVE")
    assert "daily_update_operations" in silver["refusal"]
    assert [c["action"] for c in plan["calls"] if c["call"] == "update"] == ["REMOVE"]
    assert plan["operations"][ADV1]["by_this_run"] == 1
    assert plan["operations"][ADV1]["left"] == 0
    (bronze,) = plan["unchanged_audiences"]
    assert bronze["audience"].startswith("'Tier bronze' (id ")
    assert "would be deferred" in preview.stderr
    assert (
        preview.stderr.rstrip()
        .splitlines()[-1]
        .split(" | ")[-1]
        .startswith(
            f"2 audiences would not be delivered: 'Tier gold' in advertiser {ADV1} (this run "
            "would remove 1,100 of its 1,200 users (92%), more than max_removal_percent (50%)), "
            f"'Tier silver' in advertiser {ADV1} (the ad account's update operations of the last "
            "24 h are spent (daily_update_operations)); nothing was sent (dry run)"
        )
    )
    assert "update operations of the last 24 h would be used (1 by this run)" in preview.stderr


def test_an_expiring_audience_is_named_in_the_plan(sandbox, tmp_path: Path) -> None:
    config = config_for(sandbox, retention_in_days=30)
    ok(run_target(tmp_path, config, rows(range(1200)), name="first"))
    sandbox.advance_clock(3600)
    plan, preview, real = preview_then_run(sandbox, tmp_path, config, rows(range(1200)), "next")
    ok(real)
    (entry,) = plan["audiences"]
    assert "expires on" in (entry["note"] or ""), entry
    assert "expires on" in preview.stderr


def test_a_partner_mirror_dry_run_plans_the_add_and_delete_batches(sandbox, tmp_path: Path) -> None:
    mapping = {
        "stream": "users",
        "audience_name": "Partners",
        "audience_type": "partner",
        "identifiers": {"EMAIL_SHA256": "email"},
    }
    config = base_config(sandbox, advertiser_ids=[ADV1], audiences=[mapping])
    plan, _, real = preview_then_run(sandbox, tmp_path, config, rows(range(30)), "first")
    ok(real)
    assert [c["call"] for c in plan["calls"]] == ["create_partner", "mapping"]
    plan, _, real = preview_then_run(sandbox, tmp_path, config, rows(range(5, 40)), "second")
    ok(real)
    assert [(c["action"], c["users"]) for c in plan["calls"]] == [("delete", 5), ("add", 10)]


def test_the_documented_plan_is_what_a_dry_run_prints(sandbox, tmp_path: Path) -> None:
    """docs/settings.md's example summary, from the run it describes."""
    docs = (Path(__file__).resolve().parents[1] / "docs" / "settings.md").read_text()
    (block,) = re.findall(r"<!-- dry-run-example -->\n```text\n(.*?)\n```", docs, re.DOTALL)
    config = config_for(sandbox)
    ok(run_target(tmp_path, config, rows(range(4559)), name="first"))
    sandbox.advance_clock(3600)
    plan, preview, _ = preview_then_run(sandbox, tmp_path, config, rows(range(50, 4609)), "next")
    messages = [ln.split(" | ", 3)[3] for ln in preview.stderr.splitlines() if ln.count(" | ") >= 3]
    for line in block.splitlines():
        assert line in messages, line
    assert plan["operations"] == {ADV1: {"limit": 24, "used": 2, "by_this_run": 2, "left": 22}}


def test_a_due_resync_is_planned_as_the_replace_it_is(sandbox, tmp_path: Path) -> None:
    config = config_for(sandbox, resync_days=1)
    ok(run_target(tmp_path, config, rows(range(1200)), name="first"))
    sandbox.advance_clock(2 * 86400)  # the resync is due, and TikTok allows a REPLACE
    plan, preview, real = preview_then_run(sandbox, tmp_path, config, rows(range(1210)), "resync")
    ok(real)
    (entry,) = plan["audiences"]
    assert (entry["action"], entry["mirror"], entry["mirror_reason"]) == (
        "REPLACE",
        "full",
        "resync (resync_days)",
    )
    assert [(c["call"], c.get("action"), c.get("lines")) for c in plan["calls"]] == [
        ("upload", None, 1210),
        ("update", "REPLACE", None),
    ]
    assert "all 1,210 in full (resync (resync_days))" in planned_line(preview)[0]


@pytest.mark.parametrize("mode", ["append", "incremental"])
def test_append_and_incremental_dry_runs_plan_the_next_runs_calls(
    sandbox, tmp_path: Path, mode: str
) -> None:
    mapping = {
        "stream": "users",
        "audience_name": "Changes",
        "sync_mode": mode,
        "identifiers": {"EMAIL_SHA256": "email"},
        "remove_column": "gone",
    }
    config = base_config(sandbox, advertiser_ids=[ADV1], audiences=[mapping])
    first = rows(range(1300), gone=lambda i: False)
    plan, _, real = preview_then_run(sandbox, tmp_path, config, first, "first")
    ok(real)
    assert plan["audiences"][0]["created"] is True
    sandbox.advance_clock(3600)
    later = rows(range(1250, 1400), gone=lambda i: i < 1280)
    plan, _, real = preview_then_run(sandbox, tmp_path, config, later, "later")
    ok(real)
    assert plan["audiences"][0]["created"] is False
    if mode == "append":
        assert [(c["call"], c.get("action")) for c in plan["calls"]] == [
            ("upload", None),
            ("update", "APPEND"),
            ("upload", None),
            ("update", "REMOVE"),
        ]
    else:
        assert [(c["action"], c["users"]) for c in plan["calls"]] == [("delete", 30), ("add", 120)]


# -- the model: random streams and faults, then a dry run and the real run ------------------


class Previewed(model.Mirror):
    """test_model's sequences of runs and faults; before each clean run (no fault injected in
    it) a dry run of the same input and config must plan exactly what that run then sends.
    The faults of the runs between leave every state a plan must read: changes in flight,
    snapshots lost or never written, creates TikTok was still making, spent operations."""

    def send(self, config: dict[str, Any], messages: list[dict], env: dict[str, str] | None) -> Run:
        if env is not None or self.sandbox.app.faults.rules():
            return super().send(config, messages, env)
        _, _, real = preview_then_run(
            self.sandbox, self.tmp, config, messages, f"r{self.runs}", env=env
        )
        return real

    # TikTok's history words decide whether a REPLACE is tried: where they are not recognised
    # a REPLACE is sent and TikTok's refusal handled (its refusals cannot be planned), so the
    # sequences here draw the recognised spellings; test_model draws them all.
    @initialize(
        wording=st.sampled_from(["lower", "enum"]), slow=st.booleans(), users=model.Mirror.users
    )
    def maybe_killed_while_tiktok_creates(self, wording: str, slow: bool, users: set[int]) -> None:
        super().maybe_killed_while_tiktok_creates(wording, slow, users)


class PreviewedPartner(Previewed):
    partner = True


@pytest.mark.parametrize("machine", [Previewed, PreviewedPartner], ids=["file", "partner"])
def test_a_dry_run_plans_what_the_next_run_sends(machine: type[Previewed]) -> None:
    model.run_sequences(
        machine, settings(model.MODEL_SETTINGS, max_examples=3, stateful_step_count=4)
    )
