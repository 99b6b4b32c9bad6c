"""Real TikTok, not an ideal one (issue 10): the real CLI against the sandbox with its realistic
defaults (1,000 floor, REPLACE cooldown, partner warm-up, late creates, shared-in audiences).

Members are checked digest by digest against hashlib; call counts come from the sandbox's log.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.wrappers import Request

from target_tiktok_audiences.sandbox.server import SandboxServer, run_sandbox

from helpers import (
    ADV1,
    ADV2,
    Run,
    base_config,
    record_msg,
    run_target,
    schema_msg,
    sha256,
    state_msg,
    stream_report,
)

EMAIL, PHONE = "EMAIL_SHA256", "PHONE_SHA256"
CREATE = "/dmp/custom_audience/create/"
FLOOR = (
    "TikTok refuses updates that leave fewer than 1,000 users (it counts the users it matched, "
    "not the identifiers sent)"
)
UPDATE = "/dmp/custom_audience/update/"
UPLOAD = "/dmp/custom_audience/file/upload/"
LIST = "/dmp/custom_audience/list/"
GET = "/dmp/custom_audience/get/"
SEGMENT_CREATE = "/segment/audience/"
MAPPING = "/segment/mapping/"

VIP = {"stream": "vip", "audience_name": "VIP", "identifiers": {EMAIL: "email"}}
PEOPLE = {
    "stream": "people",
    "audience_name": "People",
    "sync_mode": "incremental",
    "identifiers": {EMAIL: "email", PHONE: "phone"},
}
PEOPLE_MIRROR = {**PEOPLE, "sync_mode": "mirror", "audience_type": "partner"}


def realistic_config(sandbox: SandboxServer, **overrides: Any) -> dict[str, Any]:
    """base_config (request_timeout 2) with short confirm and warm-up windows."""
    return base_config(
        sandbox, **{"create_confirm_seconds": 6, "partner_warmup_seconds": 20, **overrides}
    )


# -- users and their oracle ---------------------------------------------------------------------


def email_of(i: int) -> str:
    return f"user{i}@example.com"


def phone_of(i: int) -> str:
    return f"+1415555{i:04d}"


def vip_messages(indices: range, done: int = 1) -> list[dict]:
    """Messy spelling on purpose: the oracle hashes the normalised form."""
    return [
        schema_msg("vip", ["email"]),
        *(record_msg("vip", {"id": i, "email": f"  User{i}@Example.COM "}) for i in indices),
        state_msg({"done": done}),
    ]


def people_messages(indices: range, done: int = 1) -> list[dict]:
    return [
        schema_msg("people", ["email", "phone"]),
        *(
            record_msg("people", {"id": i, "email": email_of(i).upper(), "phone": phone_of(i)})
            for i in indices
        ),
        state_msg({"done": done}),
    ]


def emails(indices: range) -> dict[str, list[str]]:
    return {EMAIL: sorted(sha256(email_of(i)) for i in indices)}


def emails_and_phones(indices: range) -> dict[str, list[str]]:
    return {
        EMAIL: sorted(sha256(email_of(i)) for i in indices),
        PHONE: sorted(sha256(phone_of(i)) for i in indices),
    }


def owned(sandbox: SandboxServer, advertiser_id: str, name: str) -> list[dict]:
    """The advertiser's own audiences of that name (the oracle, members included)."""
    return [a for a in sandbox.audiences(advertiser_id) if a["name"] == name]


def only(sandbox: SandboxServer, advertiser_id: str, name: str) -> dict:
    (audience,) = owned(sandbox, advertiser_id, name)
    return audience


def entries(run: Run, stream: str) -> dict[str, dict]:
    """The report's audiences of a stream, by advertiser."""
    return {a["advertiser_id"]: a for a in stream_report(run, stream)["audiences"]}


def last_line(run: Run) -> str:
    return run.stderr.rstrip("\n").splitlines()[-1]


def ok(run: Run, states: list[Any]) -> None:
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.states == states


@pytest.fixture
def slow_warmup(tmp_path: Path) -> Iterator[SandboxServer]:
    """New partner audiences refuse mappings for 1.5 s: the first try, not the retry 2 s later."""
    with run_sandbox(tmp_path / "warm.db", partner_warmup_seconds=1.5, slow_seconds=3.0) as server:
        yield server


# -- a new partner audience fills on the first run ----------------------------------------------


@pytest.mark.parametrize("mapping", [PEOPLE, PEOPLE_MIRROR], ids=["incremental", "mirror"])
def test_new_partner_audience_fills_on_the_first_run_through_the_warmup(
    slow_warmup: SandboxServer, tmp_path: Path, mapping: dict
) -> None:
    sandbox = slow_warmup
    config = realistic_config(sandbox, audiences=[mapping], segment_batch_size=100)
    run = run_target(tmp_path, config, people_messages(range(250)))
    ok(run, [{"done": 1}])

    report = entries(run, "people")
    for adv in (ADV1, ADV2):
        audience = only(sandbox, adv, "People")
        assert audience["audience_type"] == "Partner Audience"
        assert audience["members"] == emails_and_phones(range(250))
        mappings = [c for c in sandbox.calls(MAPPING) if c["advertiser_id"] == adv]
        # Refused while warming up (HTTP 400, parameter error), then 3 batches of 100/100/50.
        refused = [c for c in mappings if c["code"] != 0]
        assert refused, "the warm-up was never met: the test proves nothing"
        assert [(c["code"], c["http_status"]) for c in refused] == [(40002, 400)] * len(refused)
        assert mappings[len(refused) :] == [c for c in mappings if c["code"] == 0]
        assert [c["users"] for c in mappings[len(refused) :]] == [100, 100, 50]
        assert len(sandbox.calls(SEGMENT_CREATE)) == 2  # one create per advertiser, no more
        assert report[adv]["created"] is True
        assert report[adv]["retries"] >= len(refused)
    assert "does not take users yet" in run.stderr


def test_warmup_retries_end_after_partner_warmup_seconds(tmp_path: Path) -> None:
    with run_sandbox(tmp_path / "cold.db", partner_warmup_seconds=600) as sandbox:
        config = realistic_config(
            sandbox, advertiser_ids=[ADV1], audiences=[PEOPLE], partner_warmup_seconds=3
        )
        started = time.monotonic()
        run = run_target(tmp_path, config, people_messages(range(10)))
        elapsed = time.monotonic() - started
        assert run.returncode == 1
        assert run.states == []
        # Past the warm-up the refusal is that audience's: deferred with TikTok's words.
        assert "does not accept mappings yet" in run.stderr
        assert f"1 audience not delivered: 'People' in advertiser {ADV1}" in last_line(run)
        assert 3 <= elapsed < 30
        assert {c["code"] for c in sandbox.calls(MAPPING)} == {40002}
        assert only(sandbox, ADV1, "People")["members"] == {}


# -- a create answered late leaves one audience --------------------------------------------------


@pytest.mark.parametrize(
    ("mapping", "path", "messages", "expected"),
    [
        (VIP, CREATE, vip_messages(range(300)), emails(range(300))),
        (PEOPLE, SEGMENT_CREATE, people_messages(range(300)), emails_and_phones(range(300))),
    ],
    ids=["customer-file", "partner"],
)
def test_a_create_answered_late_leaves_one_audience(
    sandbox: SandboxServer,
    tmp_path: Path,
    mapping: dict,
    path: str,
    messages: list[dict],
    expected: dict,
) -> None:
    # Created at once, listed only 3 s (slow_seconds) later; the connection is dropped.
    sandbox.inject("late_create", count=1, paths=[path], slow_seconds=3)
    config = realistic_config(sandbox, audiences=[mapping])
    run = run_target(tmp_path, config, messages)
    ok(run, [{"done": 1}])
    name = mapping["audience_name"]
    for adv in (ADV1, ADV2):
        assert only(sandbox, adv, name)["members"] == expected
    creates = sandbox.calls(path)
    assert [(c["advertiser_id"], c["fault"]) for c in creates] == [
        (ADV1, "late_create"),
        (ADV2, None),
    ]
    assert "looking the audience up before creating it again" in run.stderr
    assert f"Audience '{name}' in advertiser {ADV1} was created after all" in run.stderr
    report = entries(run, mapping["stream"])
    assert report[ADV1]["audience_id"] == only(sandbox, ADV1, name)["audience_id"]
    assert report[ADV1]["created"] is True


# -- a shared-in audience of the same name is left alone ----------------------------------------


@pytest.mark.parametrize(
    ("mapping", "partner", "messages", "expected"),
    [
        (VIP, False, vip_messages, emails),
        (PEOPLE, True, people_messages, emails_and_phones),
    ],
    ids=["customer-file", "partner"],
)
def test_a_shared_in_audience_of_the_same_name_is_left_alone(
    sandbox: SandboxServer,
    tmp_path: Path,
    mapping: dict,
    partner: bool,
    messages: Any,
    expected: Any,
) -> None:
    sandbox.app.config.match_rate = 1.0  # counts uploaded users; the matched floor: test_sandbox
    name = mapping["audience_name"]
    shared = sandbox.share_audience(ADV1, name=name, partner=partner)
    config = realistic_config(sandbox, advertiser_ids=[ADV1], audiences=[mapping])
    # Twice: the re-run must find the run's own audience, never the shared one.
    for n, users in enumerate((range(1_000), range(1_005)), 1):
        run = run_target(tmp_path, config, messages(users, n), name=f"run{n}")
        ok(run, [{"done": n}])
        ours = only(sandbox, ADV1, name)
        assert ours["audience_id"] != shared
        assert ours["members"] == expected(users)
        entry = entries(run, mapping["stream"])[ADV1]
        assert (entry["audience_id"], entry["created"]) == (ours["audience_id"], n == 1)
        assert (
            f"Advertiser {ADV1} sees an audience named '{name}' shared in by another "
            "advertiser; it is left alone."
        ) in run.stderr
    untouched = sandbox.audience(shared)
    assert untouched["members"] == {}
    assert [h["action"] for h in untouched["history"]] == ["CREATE"]


# -- each listed transient code is survived ------------------------------------------------------

TRANSIENT_CODES = [
    "code_40016",
    "code_40133",
    "code_51001",
    "code_60001",
    "code_40200",
    "code_40201",
    "code_40202",
    "code_40700",
]
# Answered after TikTok acted (the answer is cut, late or empty): the create is not repeated.
AFTER_ACTING = ["drop_mid_body", "trickle", "no_data"]
# Every path a first run calls; the list twice: the advertiser check, then the name lookup.
FAULTED = {"/user/info/": 1, LIST: 2, UPLOAD: 1, CREATE: 1, SEGMENT_CREATE: 1, MAPPING: 1, GET: 1}
# A trickle costs request_timeout each time: only the calls that change something.
TRICKLED = {UPLOAD: 1, CREATE: 1, SEGMENT_CREATE: 1, MAPPING: 1}


@pytest.fixture
def no_warmup(tmp_path: Path) -> Iterator[SandboxServer]:
    """Realistic but for the partner warm-up (tested above): faults alone set the pace."""
    with run_sandbox(tmp_path / "quick.db", partner_warmup_seconds=0, slow_seconds=3.0) as server:
        yield server


@pytest.mark.parametrize("kind", TRANSIENT_CODES + AFTER_ACTING)
def test_each_transient_fault_is_retried_to_the_exact_audiences(
    no_warmup: SandboxServer, tmp_path: Path, kind: str
) -> None:
    sandbox = no_warmup
    faults = TRICKLED if kind == "trickle" else FAULTED
    for path, count in faults.items():
        sandbox.inject(kind, count=count, paths=[path])
    config = realistic_config(
        sandbox,
        advertiser_ids=[ADV1],
        audiences=[VIP, PEOPLE],
        create_confirm_seconds=1,  # a refused create (not applied) is sent again after 1 s
        segment_batch_size=100,
        file_max_ids=100,
    )
    run = run_target(tmp_path, config, [*vip_messages(range(300)), *people_messages(range(300))])
    ok(run, [{"done": 1}])
    assert only(sandbox, ADV1, "VIP")["members"] == emails(range(300))
    assert only(sandbox, ADV1, "People")["members"] == emails_and_phones(range(300))

    faulted = [c for c in sandbox.calls() if c["fault"] == kind]
    assert {p: sum(c["path"] == p for c in faulted) for p in faults} == faults
    # Each faulted call is tried once more (a create: looked up, then sent again if missing);
    # an empty answer is fine where nothing is read from it: the checks before input, mappings.
    retried = faulted
    if kind == "no_data":
        checks = sandbox.calls()[:2]
        assert [c["path"] for c in checks] == ["/user/info/", LIST]
        ignored = {c["id"] for c in checks}
        retried = [c for c in faulted if c["id"] not in ignored and c["path"] != MAPPING]
    assert run.report["calls"]["retries"] == len(retried)
    for path in (CREATE, SEGMENT_CREATE):
        applied = [c for c in sandbox.calls(path) if c["code"] == 0]
        assert len(applied) == 1, path  # never a second audience
        # Applied before the answer went wrong: found by name, not sent again.
        assert len(sandbox.calls(path)) == (1 if kind in AFTER_ACTING else 2)


def test_a_trickling_answer_is_cut_at_request_timeout_and_retried(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    # Each byte comes well within request_timeout; the whole answer would take 60 s.
    sandbox.inject("trickle", count=1, paths=["/user/info/"], slow_seconds=60)
    config = realistic_config(sandbox, advertiser_ids=[ADV1], audiences=[VIP])
    started = time.monotonic()
    run = run_target(tmp_path, config, vip_messages(range(20)))
    elapsed = time.monotonic() - started
    ok(run, [{"done": 1}])
    assert elapsed < 20
    assert "the answer took longer than 2 s" in run.stderr
    assert [c["fault"] for c in sandbox.calls("/user/info/")] == ["trickle", None]
    assert only(sandbox, ADV1, "VIP")["members"] == emails(range(20))


# -- the advertiser check: one row of the audience list -----------------------------------------


def test_the_advertiser_check_is_a_one_row_audience_list(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    page_sizes: list[tuple[str | None, str | None]] = []
    method, handler = sandbox.app.routes[LIST]

    def spy(request: Request, token: str, call: dict[str, Any]) -> dict[str, Any]:
        page_sizes.append((request.args.get("advertiser_id"), request.args.get("page_size")))
        return handler(request, token, call)

    sandbox.app.routes[LIST] = (method, spy)
    config = realistic_config(sandbox, audiences=[VIP])
    run = run_target(tmp_path, config, vip_messages(range(30)))
    ok(run, [{"done": 1}])

    calls = sandbox.calls()
    assert [(c["path"], c["advertiser_id"]) for c in calls[:3]] == [
        ("/user/info/", None),
        (LIST, ADV1),
        (LIST, ADV2),
    ]
    assert page_sizes[:2] == [(ADV1, "1"), (ADV2, "1")]
    assert not [c for c in calls if c["path"] == "/advertiser/info/"]
    for adv in (ADV1, ADV2):
        assert only(sandbox, adv, "VIP")["members"] == emails(range(30))


# -- a mirror set of more than 50 files: one create, one REPLACE --------------------------------


def test_more_than_50_files_go_in_one_create_and_one_replace(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    sandbox.app.config.match_rate = 1.0  # counts uploaded users; the matched floor: test_sandbox
    config = realistic_config(
        sandbox,
        advertiser_ids=[ADV1],
        audiences=[VIP],
        file_max_ids=20,
        mirror_strategy="replace",
    )
    first = run_target(tmp_path, config, vip_messages(range(1_100), 1), name="first")
    ok(first, [{"done": 1}])
    (create,) = sandbox.calls(CREATE)
    assert (create["files"], create["lines"]) == (55, 1_100)
    assert len(sandbox.calls(UPLOAD)) == 55
    assert sandbox.calls(UPDATE) == []
    audience = only(sandbox, ADV1, "VIP")
    assert audience["members"] == emails(range(1_100))
    (created,) = audience["history"]
    assert (created["action"], len(set(created["file_paths"]))) == ("CREATE", 55)

    sandbox.advance_clock(86_400 + 1)
    second = run_target(tmp_path, config, vip_messages(range(50, 1_150), 2), name="second")
    ok(second, [{"done": 2}])
    (replace,) = sandbox.calls(UPDATE)
    assert (replace["action"], replace["files"], replace["lines"]) == ("REPLACE", 55, 1_100)
    assert len(sandbox.calls(UPLOAD)) == 110
    audience = only(sandbox, ADV1, "VIP")
    assert audience["members"] == emails(range(50, 1_150))
    assert [(h["action"], len(set(h["file_paths"]))) for h in audience["history"]] == [
        ("CREATE", 55),
        ("REPLACE", 55),
    ]


# -- one refused audience never stops the others -------------------------------------------------

SMALL = {"stream": "small", "audience_name": "Small", "identifiers": {EMAIL: "email"}}


def small_messages(indices: range) -> list[dict]:
    return [
        schema_msg("small", ["email"]),
        *(record_msg("small", {"id": i, "email": email_of(i)}) for i in indices),
    ]


def test_an_audience_refused_for_the_1000_floor_does_not_stop_the_others(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    sandbox.app.config.refusal_wording = "sdk"  # checks the floor hint; unseen words: test_refusals
    sandbox.app.config.match_rate = 1.0  # the floor by count here; matched: test_refusals
    config = realistic_config(sandbox, audiences=[SMALL, VIP])
    first = [*small_messages(range(1_050)), *vip_messages(range(1_020), 1)]
    ok(run_target(tmp_path, config, first, name="first"), [{"done": 1}])

    # Small loses 60 of 1,050 (990 left: refused); VIP swaps 10 users (delivered).
    second = [*small_messages(range(990)), *vip_messages(range(10, 1_030), 2)]
    run = run_target(tmp_path, config, second, name="second")
    assert run.returncode == 1
    assert run.stdout == ""  # no STATE
    for adv in (ADV1, ADV2):
        assert only(sandbox, adv, "Small")["members"] == emails(range(1_050))
        assert only(sandbox, adv, "VIP")["members"] == emails(range(10, 1_030))
        assert entries(run, "small")[adv]["status"] == "deferred"
        assert entries(run, "vip")[adv]["status"] == "delivered"
        assert entries(run, "vip")[adv]["action"] == "APPEND+REMOVE"
    for adv in (ADV1, ADV2):
        summary = [
            line
            for line in run.stderr.splitlines()
            if f"Audience 'Small' in advertiser {adv}: not delivered:" in line
        ]
        assert len(summary) == 1, run.stderr[-3000:]
        assert "TikTok refuses updates that leave fewer than 1,000 users" in summary[0]
    assert last_line(run).endswith(
        f"2 audiences not delivered: 'Small' in advertiser {ADV1} ({FLOOR}), 'Small' in "
        f"advertiser {ADV2} ({FLOOR}); the others were delivered and no STATE was emitted; the "
        "summary above says what to do"
    )
    assert run.report["status"] == "failed"


# -- a REPLACE while the last one is still processing -------------------------------------------


def test_replace_while_processing_is_deferred_without_sending_anything(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    sandbox.app.config.match_rate = 1.0  # counts uploaded users; the matched floor: test_sandbox
    config = realistic_config(
        sandbox, advertiser_ids=[ADV1], audiences=[VIP], mirror_strategy="replace"
    )
    ok(run_target(tmp_path, config, vip_messages(range(1_100), 1), name="first"), [{"done": 1}])
    audience_id = only(sandbox, ADV1, "VIP")["audience_id"]

    sandbox.advance_clock(3_600)  # an hour later: the create is still processing
    before = len(sandbox.calls())
    second = run_target(tmp_path, config, vip_messages(range(100, 1_200), 2), name="second")
    assert second.returncode == 1
    assert second.stdout == ""
    paths = [c["path"] for c in sandbox.calls()[before:]]
    assert UPDATE not in paths and UPLOAD not in paths  # nothing sent, so nothing refused
    assert paths.count(GET) == 1  # the check before the REPLACE; nothing to read back
    assert only(sandbox, ADV1, "VIP")["members"] == emails(range(1_100))
    (summary,) = [
        line
        for line in second.stderr.splitlines()
        if f"Audience 'VIP' in advertiser {ADV1}: not delivered:" in line
    ]
    assert "still processing" in summary
    assert f"REPLACE on audience {audience_id}" in summary
    assert last_line(second).endswith(
        f"1 audience not delivered: 'VIP' in advertiser {ADV1} (TikTok is still processing "
        "this audience's last REPLACE or its creation); no other audience was delivered in this "
        "run and no STATE "
        "was emitted; the summary above says what to do"
    )

    sandbox.advance_clock(86_400)
    third = run_target(tmp_path, config, vip_messages(range(100, 1_200), 3), name="third")
    ok(third, [{"done": 3}])
    (replace,) = sandbox.calls(UPDATE)
    assert (replace["action"], replace["code"]) == ("REPLACE", 0)
    assert only(sandbox, ADV1, "VIP")["members"] == emails(range(100, 1_200))
    assert entries(third, "vip")[ADV1]["action"] == "REPLACE"


# -- after delivery each audience is read back once ----------------------------------------------


def test_each_audience_is_read_back_once_after_delivery(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    sandbox.app.config.match_rate = 1.0  # counts uploaded users; the matched floor: test_sandbox
    two_contracts = {
        "stream": "people",
        "audience_name": "Both",
        "identifiers": {EMAIL: "email", PHONE: "phone"},
    }
    # 1,200 emails, 700 phones: one audience valid, one not yet.
    messages = [
        schema_msg("people", ["email", "phone"]),
        *(
            record_msg(
                "people", {"id": i, "email": email_of(i), "phone": phone_of(i) if i < 700 else None}
            )
            for i in range(1_200)
        ),
        state_msg({"done": 1}),
    ]
    streamed = {**PEOPLE, "stream": "streamed", "audience_name": "Streamed"}
    streamed_messages = [
        schema_msg("streamed", ["email", "phone"]),
        *(
            record_msg("streamed", {"id": i, "email": email_of(i), "phone": phone_of(i)})
            for i in range(40)
        ),
    ]
    config = realistic_config(sandbox, audiences=[two_contracts, streamed])
    run = run_target(tmp_path, config, [*streamed_messages, *messages])
    ok(run, [{"done": 1}])

    expected = {
        # TikTok's word for its last operation, and no processing state: it documents none.
        "Both (EMAIL_SHA256)": (True, 1_200, "CREATE"),
        "Both (PHONE_SHA256)": (False, 700, "CREATE"),
        "Streamed": (False, 80, "CREATE"),
    }
    for adv in (ADV1, ADV2):
        gets = [c for c in sandbox.calls(GET) if c["advertiser_id"] == adv]
        assert len(gets) == 3  # once per audience, after its delivery
        assert only(sandbox, adv, "Both (EMAIL_SHA256)")["members"] == emails(range(1_200))
        assert only(sandbox, adv, "Both (PHONE_SHA256)")["members"] == {
            PHONE: sorted(sha256(phone_of(i)) for i in range(700))
        }
        got = {
            a["audience_name"]: (a["is_valid"], a["size"], a["last_operation"])
            for s in run.report["streams"]
            for a in s["audiences"]
            if a["advertiser_id"] == adv
        }
        assert got == expected
