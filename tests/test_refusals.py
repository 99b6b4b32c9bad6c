"""TikTok's refusals by structure, not words (issue 18): the official code table, one refused
audience deferred while every other audience and advertiser is delivered, whatever TikTok says.

TikTok's words come from ../shared/tiktok-api.md (the SDK's table and floor, the REPLACE text)
and from text the client has never seen; each answer goes through the client's own parsing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from target_tiktok_audiences.client import (
    REFUSED_BELOW_MINIMUM,
    REFUSED_OTHER,
    REFUSED_REPLACE_PROCESSING,
    NewAudience,
    NoAccessError,
    PartialSuccess,
    PermanentError,
    RefusedError,
    TikTokClient,
    TransientError,
    UserBatch,
    error_for,
)
from target_tiktok_audiences.client.codes import (
    HINT_APP_CREDENTIALS,
    HINT_AUTH,
    HINT_NO_ACCESS,
    HINT_NO_SEGMENT_ACCESS,
    HINT_PERMISSION,
    HINT_TOKEN_EXPIRED,
    FileExpiredError,
    refusal_reason,
)
from target_tiktok_audiences.sandbox.server import SandboxServer, run_sandbox

from helpers import (
    ADV1,
    ADV2,
    TOKEN,
    Run,
    base_config,
    record_msg,
    run_target,
    sandbox_windows,
    schema_msg,
    sha256,
    state_msg,
)

CREATE = "/dmp/custom_audience/create/"
UPDATE = "/dmp/custom_audience/update/"
UPLOAD = "/dmp/custom_audience/file/upload/"
MAPPING = "/segment/mapping/"
EMAIL = "EMAIL_SHA256"

# The official SDK's table (tiktok-api.md "Error codes"), one row per code or range end.
TRANSIENT = [
    40100, 40016, 40132, 40133, 61000,  # rate limits
    50000, 50002,  # server side
    51000, 51003, 51010, 51063, 51099,  # failures inside TikTok
    52000, 52100, 52299, 53102, 53103, 60001,
    40200, 40201, 40202,  # conflicts, work still running
]  # fmt: skip
RUN_LEVEL = {
    40001: HINT_PERMISSION,
    40101: HINT_APP_CREDENTIALS,
    40102: HINT_TOKEN_EXPIRED,
    **{code: HINT_AUTH for code in range(40103, 40110)},
}
# 40002, 40700 (an RPC validation error: not transient) and codes in no list (near the known
# ones, and far from them).
REFUSAL_CODES = [40002, 40003, 40700, 40911, 41999, 50001, 51100, 99999]
# The app may not call the endpoint: run-level for that API.
NO_ACCESS = [40117, 40118, 40130]

# Words: the SDK's floor, TikTok's REPLACE text, and words the client has never seen.
SDK_FLOOR = "The audience size cannot be less than 1,000 after this operation"
REPLACE_TEXT = (
    "This replace operation is rejected as there is an existing unfinished replace operation. "
    "Please try again later. Recommend no more than one replace operation per day."
)
UNSEEN = [
    "This operation is not supported for the audience at the moment",
    "Le public ne peut pas être modifié",
    "",
    "Operation rejected (0x7f)",
]


# -- the code table, as the client classifies it --------------------------------------------


@pytest.mark.parametrize("audience_call", [True, False])
@pytest.mark.parametrize("code", TRANSIENT)
def test_transient_codes_are_retried_on_any_call(code: int, audience_call: bool) -> None:
    error = error_for("X", 200, code, "m", "r1", advertiser_id=ADV1, audience_call=audience_call)
    assert type(error) is TransientError


@pytest.mark.parametrize("audience_call", [True, False])
@pytest.mark.parametrize(("code", "hint"), RUN_LEVEL.items())
def test_authorisation_codes_stop_the_run_with_their_action(
    code: int, hint: str, audience_call: bool
) -> None:
    error = error_for("X", 200, code, "m", "r1", advertiser_id=ADV1, audience_call=audience_call)
    assert type(error) is PermanentError
    assert str(error) == (
        f'X for advertiser {ADV1} failed: TikTok said "m" (code {code}, request_id r1). {hint}'
    )


def test_the_authorisation_hints_name_the_right_action() -> None:
    assert HINT_TOKEN_EXPIRED.startswith("The access token expired: re-authorise")
    assert "app's credentials" in HINT_APP_CREDENTIALS
    assert HINT_AUTH.startswith("Re-authorise the TikTok app")


@pytest.mark.parametrize("message", [SDK_FLOOR, REPLACE_TEXT, *UNSEEN])
@pytest.mark.parametrize("code", REFUSAL_CODES)
def test_other_codes_refuse_the_audience_whatever_the_words(code: int, message: str) -> None:
    error = error_for("X", 200, code, message, "r1", advertiser_id=ADV1, audience_call=True)
    assert type(error) is RefusedError
    assert (error.code, error.tiktok_message, error.request_id) == (code, message, "r1")
    # Outside one audience's change the same answer stops the run (it is not a refusal).
    run_level = error_for("X", 200, code, message, "r1", advertiser_id=ADV1, audience_call=False)
    assert type(run_level) is PermanentError


@pytest.mark.parametrize("audience_call", [True, False])
@pytest.mark.parametrize("code", NO_ACCESS)
def test_no_access_codes_stop_that_api_with_one_line(code: int, audience_call: bool) -> None:
    segment = error_for(
        "X", 200, code, "m", "r1", advertiser_id=ADV1, audience_call=audience_call, path=MAPPING
    )
    assert type(segment) is NoAccessError and segment.family == "partner"
    assert str(segment) == (
        f'X for advertiser {ADV1} failed: TikTok said "m" (code {code}, request_id r1). '
        f"{HINT_NO_SEGMENT_ACCESS}"
    )
    assert "append or mirror with audience_type customer_file" in HINT_NO_SEGMENT_ACCESS
    other = error_for(
        "X", 200, code, "m", "r1", advertiser_id=ADV1, audience_call=audience_call, path=UPDATE
    )
    assert type(other) is NoAccessError and other.family == "customer_file"
    assert other.hint == HINT_NO_ACCESS


@pytest.mark.parametrize("audience_call", [True, False])
def test_partial_success_is_not_an_error_of_the_run(audience_call: bool) -> None:
    error = error_for(
        "X", 200, 20001, "1 of 2 failed", "r1", advertiser_id=ADV1, audience_call=audience_call
    )
    assert type(error) is PartialSuccess
    assert not isinstance(error, (PermanentError, TransientError))


def test_file_expired_is_its_own_error_on_an_audience_call() -> None:
    error = error_for("X", 200, 40910, "File expired", "r", advertiser_id=ADV1, audience_call=True)
    assert isinstance(error, FileExpiredError) and isinstance(error, RefusedError)


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (SDK_FLOOR, REFUSED_BELOW_MINIMUM),
        ("Audience size is less than 1000", REFUSED_BELOW_MINIMUM),
        (REPLACE_TEXT, REFUSED_REPLACE_PROCESSING),
        *((text, REFUSED_OTHER) for text in UNSEEN),
    ],
)
def test_the_words_only_choose_the_hint(message: str, reason: str) -> None:
    assert refusal_reason(message) == reason


# -- the client against the sandbox: retries, no retries, uploading again -------------------


def client_of(sandbox: SandboxServer) -> TikTokClient:
    return TikTokClient(sandbox.base_url, TOKEN, timeout=5, max_retries=3, max_retry_seconds=30)


@pytest.mark.parametrize("code", TRANSIENT)
def test_each_transient_code_is_retried_and_then_succeeds(
    sandbox: SandboxServer, code: int
) -> None:
    sandbox.inject(f"code_{code}", count=1, paths=["/user/info/"])
    client = client_of(sandbox)
    client.preflight([ADV1])
    assert [c["code"] for c in sandbox.calls("/user/info/")] == [code, 0]
    assert client.total.retries == 1


@pytest.mark.parametrize("code", RUN_LEVEL)
def test_each_authorisation_code_on_an_update_stops_at_once(
    sandbox: SandboxServer, tmp_path: Path, code: int
) -> None:
    client = client_of(sandbox)
    audience_id, path = _audience(client, tmp_path)
    sandbox.inject(f"code_{code}", count=1, paths=[UPDATE])
    with pytest.raises(PermanentError) as caught:
        client.update_customer_audience(ADV1, audience_id, [path], "APPEND")
    assert not isinstance(caught.value, RefusedError)
    assert caught.value.hint == RUN_LEVEL[code]
    assert len(sandbox.calls(UPDATE)) == 1  # no retries


def _audience(client: TikTokClient, tmp_path: Path, n: int = 3) -> tuple[str, str]:
    file = tmp_path / "ids.txt"
    file.write_text("".join(sha256(f"u{i}@example.com") + "\n" for i in range(n)))
    path = client.upload_file(ADV1, EMAIL, file)
    return client.create_customer_audience(NewAudience(ADV1, "Codes", EMAIL, [path])), path


def test_an_expired_file_is_uploaded_again_and_the_call_sent_again(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    client = client_of(sandbox)
    audience_id, _ = _audience(client, tmp_path, 2_000)  # the matched floor holds after APPEND
    more = tmp_path / "more.txt"
    more.write_text("".join(sha256(f"v{i}@example.com") + "\n" for i in range(2)))
    path = client.upload_file(ADV1, EMAIL, more)
    more.unlink()  # as the deliveries do right after an upload
    sandbox.inject("code_40910", count=1, paths=[UPDATE])
    client.update_customer_audience(ADV1, audience_id, [path], "APPEND")

    updates = sandbox.calls(UPDATE)
    assert [c["code"] for c in updates] == [40910, 0]
    assert len(sandbox.calls(UPLOAD)) == 3  # the create's file, the new one, and it again
    members = sandbox.members(audience_id)[EMAIL]
    want = [sha256(f"u{i}@example.com") for i in range(2_000)]
    assert sorted(members) == sorted(want + [sha256(f"v{i}@example.com") for i in range(2)])
    assert client.total.retries == 1
    assert not list(tmp_path.glob(".kept-*"))  # the kept copy went once it was used


# -- end to end: one refused audience, the others delivered, exit 1, no STATE ---------------

ALPHA = {"stream": "alpha", "audience_name": "Alpha", "identifiers": {EMAIL: "email"}}
BETA = {"stream": "beta", "audience_name": "Beta", "identifiers": {EMAIL: "email"}}


def messages(users: range, done: int) -> list[dict[str, Any]]:
    return [
        schema_msg("alpha", ["email"]),
        schema_msg("beta", ["email"]),
        *(record_msg("alpha", {"id": i, "email": f"a{i}@example.com"}) for i in users),
        *(record_msg("beta", {"id": i, "email": f"b{i}@example.com"}) for i in users),
        state_msg({"done": done}),
    ]


def digests(prefix: str, users: range) -> list[str]:
    return sorted(sha256(f"{prefix}{i}@example.com") for i in users)


def members_of(sandbox: SandboxServer, advertiser_id: str, name: str) -> list[str] | None:
    found = [a for a in sandbox.audiences(advertiser_id) if a["name"] == name]
    if not found:
        return None
    (audience,) = found
    return sorted(next(iter(sandbox.members(audience["audience_id"]).values()), []))


def entry(run: Run, stream: str, advertiser_id: str) -> dict[str, Any]:
    assert run.report is not None, run.stderr[-3000:]
    (report,) = [s for s in run.report["streams"] if s["stream"] == stream]
    (found,) = [a for a in report["audiences"] if a["advertiser_id"] == advertiser_id]
    return found


def assert_deferred_alone(
    run: Run, sandbox: SandboxServer, path: str, code: int, message: str, name: str
) -> None:
    """Alpha in ADV1 deferred with TikTok's words and request id; exit 1 and no STATE."""
    assert run.returncode == 1, run.stderr[-3000:]
    assert run.stdout == ""  # no STATE
    refused = entry(run, "alpha", ADV1)
    assert refused["status"] == "deferred"
    (call,) = [c for c in sandbox.calls(path) if c["fault"]]
    assert call["code"] == code
    said = f'TikTok said "{message}" ' if message else ""
    assert f"{said}(code {code}, request_id {call['request_id']})" in refused["note"]
    lines = [line for line in run.stderr.splitlines() if "not delivered:" in line]
    assert any(f"Audience '{name}' in advertiser {ADV1}: not delivered:" in x for x in lines)
    assert (
        run.stderr.rstrip()
        .splitlines()[-1]
        .endswith(
            f"1 audience not delivered: '{name}' in advertiser {ADV1} ({refused['refusal']}); the "
            "others were delivered and no STATE was emitted; the summary above says what to do"
        )
    )
    for stream, adv in (("alpha", ADV2), ("beta", ADV1), ("beta", ADV2)):
        assert entry(run, stream, adv)["status"] == "delivered"


FILE_CASES = [
    (40002, SDK_FLOOR),
    (40002, REPLACE_TEXT),
    *((40002, text) for text in UNSEEN[:2]),
    (41999, "Something TikTok has not documented"),
    (50001, ""),
]


@pytest.mark.parametrize(("code", "message"), FILE_CASES)
def test_customer_file_refusal_defers_one_audience_only(
    sandbox: SandboxServer, tmp_path: Path, code: int, message: str
) -> None:
    sandbox.inject(f"code_{code}", count=1, paths=[CREATE], message=message or None)
    config = base_config(sandbox, audiences=[ALPHA, BETA])
    run = run_target(tmp_path, config, messages(range(5), 1))
    shown = message or {50001: "Something TikTok has not documented"}.get(code, "")
    assert_deferred_alone(run, sandbox, CREATE, code, shown, "Alpha")
    assert members_of(sandbox, ADV1, "Alpha") is None  # nothing was created there
    assert members_of(sandbox, ADV2, "Alpha") == digests("a", range(5))
    for adv in (ADV1, ADV2):
        assert members_of(sandbox, adv, "Beta") == digests("b", range(5))


PARTNER_CASES = [(40002, SDK_FLOOR), (40002, UNSEEN[0]), (41999, UNSEEN[1])]


@pytest.mark.parametrize(("code", "message"), PARTNER_CASES)
def test_partner_refusal_defers_one_audience_only(
    sandbox: SandboxServer, tmp_path: Path, code: int, message: str
) -> None:
    audiences = [{**m, "sync_mode": "incremental"} for m in (ALPHA, BETA)]
    config = base_config(sandbox, audiences=audiences)
    first = run_target(tmp_path, config, messages(range(3), 1), name="first")
    assert first.returncode == 0, first.stderr[-3000:]
    sandbox.inject(f"code_{code}", count=1, paths=[MAPPING], message=message)
    run = run_target(tmp_path, config, messages(range(3, 6), 2), name="second")
    assert_deferred_alone(run, sandbox, MAPPING, code, message, "Alpha")
    assert _partner_members(sandbox, ADV1, "Alpha") == digests("a", range(3))
    assert _partner_members(sandbox, ADV2, "Alpha") == digests("a", range(6))
    for adv in (ADV1, ADV2):
        assert _partner_members(sandbox, adv, "Beta") == digests("b", range(6))


def _partner_members(sandbox: SandboxServer, advertiser_id: str, name: str) -> list[str]:
    (audience,) = [a for a in sandbox.audiences(advertiser_id) if a["name"] == name]
    return sorted(sandbox.members(audience["audience_id"]).get(EMAIL, []))


def test_an_authorisation_code_on_a_create_stops_the_whole_run(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    sandbox.inject("code_40102", count=1, paths=[CREATE])
    config = base_config(sandbox, audiences=[ALPHA, BETA])
    run = run_target(tmp_path, config, messages(range(5), 1))
    assert run.returncode == 1
    assert run.stdout == ""
    (call,) = sandbox.calls(CREATE)
    assert (
        run.stderr.rstrip()
        .splitlines()[-1]
        .endswith(
            f"| Creating audience 'Alpha' for advertiser {ADV1} failed: TikTok said \"Access token "
            f'expired" (code 40102, request_id {call["request_id"]}). {HINT_TOKEN_EXPIRED} '
            f"Not delivered: the audiences of stream 'alpha' (stopped at 'Alpha' in advertiser "
            f"{ADV1}), stream 'beta' (none was delivered; no STATE was emitted)"
        )
    )
    assert sandbox.audiences(ADV2) == []  # nothing after it was sent


# -- a connection that cannot be made is an answer (issue 20) ------------------------------


def test_an_unresolvable_host_gets_two_tries_and_a_refused_one_three() -> None:
    import requests

    from target_tiktok_audiences.client.transport import Transport

    def transport(url: str) -> Transport:
        return Transport(
            url,
            "t",
            timeout=1,
            max_retries=8,
            max_retry_seconds=60,
            max_requests_per_second=20,
            session=None,
        )

    remote = transport("https://api.example.invalid/open_api/v1.3")
    unresolved = requests.ConnectionError("Failed to resolve 'api.example.invalid'")
    tries = [remote._unanswered_error(unresolved, "X", None) for _ in range(2)]
    assert [e.last_try for e in tries] == [False, True]
    assert tries[0].tiktok_message == (
        "the host name could not be resolved at api.example.invalid:443 (api_base_url)"
    )
    assert str(tries[0]) == (
        "The TikTok API cannot be reached at api.example.invalid:443 (api_base_url): the host "
        "name could not be resolved (while x). Check api_base_url and the network (proxy, "
        "firewall, DNS); the run is safe to re-run."
    )
    assert "sandbox" not in str(tries[0])

    local = transport("http://127.0.0.1:9/open_api/v1.3")
    refused = requests.ConnectionError("[Errno 111] Connection refused")
    tries = [local._unanswered_error(refused, "X", None) for _ in range(3)]
    assert [e.last_try for e in tries] == [False, False, True]
    assert tries[0].hint.endswith("Is `tiktok-audiences-sandbox serve` running?")


def test_the_fake_refuses_a_replace_after_a_create_as_the_sandbox_does(tmp_path: Path) -> None:
    from helpers.fake_api import FakeAudienceAPI

    fake = FakeAudienceAPI([ADV1])
    file = tmp_path / "ids.txt"
    file.write_text(sha256("a@example.com") + "\n")
    path = fake.upload_file(ADV1, EMAIL, file)
    audience_id = fake.create_customer_audience(NewAudience(ADV1, "P", EMAIL, [path]))
    status = fake.get_audience(ADV1, audience_id)
    # TikTok's word for the create, and no state: the refusal alone says it is unfinished.
    assert status.last is not None and (status.last.word, status.last.kind) == ("create", "CREATE")
    with pytest.raises(RefusedError) as caught:
        fake.update_customer_audience(ADV1, audience_id, [path], "REPLACE")
    assert caught.value.reason == REFUSED_REPLACE_PROCESSING  # chosen by the client's hints
    fake.finish_processing(ADV1, audience_id)
    fake.update_customer_audience(ADV1, audience_id, [path], "REPLACE")


# -- refusals the target could not predict, from the sandbox's own rules ---------------------


def matched(prefix: str, users: range) -> int:
    """The sandbox's matching (70% by default, decided per digest): the oracle."""
    return sum(int(sha256(f"{prefix}{i}@example.com")[:4], 16) < int(0.7 * 0x10000) for i in users)


def test_a_matched_floor_refusal_defers_one_audience_only(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    config = base_config(sandbox, audiences=[ALPHA, BETA])
    first = run_target(tmp_path, config, messages(range(2_000), 1), name="first")
    assert first.returncode == 0, first.stderr[-3000:]
    # Alpha keeps 1,300 identifiers, more than the target's own count needs, but fewer than
    # 1,000 of them are matched users; Beta keeps 2,000.
    alpha, beta = range(1_300), range(2_000)
    assert matched("a", alpha) < 1_000 < len(alpha)
    second_messages = [
        schema_msg("alpha", ["email"]),
        schema_msg("beta", ["email"]),
        *(record_msg("alpha", {"id": i, "email": f"a{i}@example.com"}) for i in alpha),
        *(record_msg("beta", {"id": i, "email": f"b{i + 50}@example.com"}) for i in beta),
        state_msg({"done": 2}),
    ]
    run = run_target(tmp_path, config, second_messages, name="second")
    assert run.returncode == 1
    assert run.stdout == ""
    for adv in (ADV1, ADV2):
        assert entry(run, "alpha", adv)["status"] == "deferred"
        assert members_of(sandbox, adv, "Alpha") == digests("a", range(2_000))  # unchanged
        assert entry(run, "beta", adv)["status"] == "delivered"
        assert members_of(sandbox, adv, "Beta") == digests("b", range(50, 2_050))


def test_one_ad_account_out_of_operations_never_stops_the_other(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    config = base_config(sandbox, audiences=[ALPHA])
    first = run_target(tmp_path, config, messages(range(2_000), 1), name="first")
    assert first.returncode == 0, first.stderr[-3000:]
    sandbox.app.config.max_updates_per_day = 2  # TikTok's 24, reached sooner
    only_adv1 = base_config(sandbox, advertiser_ids=[ADV1], audiences=[ALPHA])
    spend = run_target(tmp_path, only_adv1, messages(range(10, 2_010), 2), name="spend")
    assert spend.returncode == 0, spend.stderr[-3000:]  # APPEND + REMOVE: ADV1's two
    run = run_target(tmp_path, config, messages(range(20, 2_020), 3), name="third")
    assert run.returncode == 1
    assert run.stdout == ""
    refused = entry(run, "alpha", ADV1)
    assert refused["status"] == "deferred"
    assert members_of(sandbox, ADV1, "Alpha") == digests("a", range(10, 2_010))
    assert entry(run, "alpha", ADV2)["status"] == "delivered"
    assert members_of(sandbox, ADV2, "Alpha") == digests("a", range(20, 2_020))


# -- every code of the table on one audience's change, customer file and partner -------------


@pytest.fixture
def ready(tmp_path: Path) -> Iterator[SandboxServer]:
    # No partner warm-up: its own refusals would mix with the code under test.
    with run_sandbox(tmp_path / "ready.db", **sandbox_windows(partner_warmup_seconds=0)) as server:
        yield server


def _change(client: TikTokClient, tmp_path: Path, path: str) -> Callable[[], None]:
    """One audience's change (an APPEND, or a mapping add) ready to send."""
    if path == UPDATE:
        audience_id, _ = _audience(client, tmp_path, 2_000)
        file = tmp_path / "more.txt"
        file.write_text(sha256("new@example.com") + "\n")
        file_path = client.upload_file(ADV1, EMAIL, file)
        return lambda: client.update_customer_audience(ADV1, audience_id, [file_path], "APPEND")
    partner = client.create_partner_audience(ADV1, "Partner codes")
    batch = UserBatch("add", [EMAIL], [{EMAIL: sha256("new@example.com")}])
    return lambda: client.map_users(ADV1, partner, batch)


@pytest.mark.parametrize("path", [UPDATE, MAPPING], ids=["customer-file", "partner"])
@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        *((c, "retried") for c in TRANSIENT),
        *((c, "run-level") for c in RUN_LEVEL),
        *((c, "refused") for c in REFUSAL_CODES),
    ],
)
def test_each_code_on_one_audiences_change(
    ready: SandboxServer, tmp_path: Path, path: str, code: int, outcome: str
) -> None:
    client = client_of(ready)
    send = _change(client, tmp_path, path)
    ready.inject(f"code_{code}", count=1, paths=[path])
    if outcome == "retried":
        send()
        assert [c["code"] for c in ready.calls(path)][-2:] == [code, 0]
        return
    if outcome == "refused" and path == UPDATE:
        # A refused APPEND or REMOVE in words no hint knows may answer a busy audience: it is
        # sent again with backoff (bounded; the fault answers once), never waiting on a state.
        send()
        assert [c["code"] for c in ready.calls(path)] == [code, 0]
        assert client.total.retries == 1
        return
    with pytest.raises(PermanentError) as caught:
        send()
    assert isinstance(caught.value, RefusedError) is (outcome == "refused")
    assert caught.value.code == code and caught.value.request_id
    assert [c["code"] for c in ready.calls(path)] == [code]  # not retried


# -- an API the app may not use, and a partial success (issue 26) ---------------------------


def test_no_access_to_the_segment_api_is_one_line_and_the_file_audiences_go_on(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    sandbox.inject("code_40117", rate=1.0, paths=["/segment/"])  # every Segment API call
    partner = {**ALPHA, "sync_mode": "incremental"}
    config = base_config(sandbox, audiences=[partner, BETA])
    run = run_target(tmp_path, config, messages(range(5), 1))
    assert run.returncode == 1
    assert run.stdout == ""  # no STATE
    # One call to the Segment API: the first refusal stops that API for the run.
    assert len(sandbox.calls("/segment/")) == 1
    for adv in (ADV1, ADV2):
        assert members_of(sandbox, adv, "Beta") == digests("b", range(5))
        assert entry(run, "beta", adv)["status"] == "delivered"
        assert entry(run, "alpha", adv)["status"] == "failed"
    last = run.stderr.rstrip().splitlines()[-1]
    assert "code 40117" in last and last.endswith(HINT_NO_SEGMENT_ACCESS)
    assert sum(HINT_NO_SEGMENT_ACCESS in line for line in run.stderr.splitlines()) == 1
    assert "Traceback" not in run.stderr


def test_a_partial_success_is_sent_again_by_the_next_run(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    audiences = [{**m, "sync_mode": "incremental"} for m in (ALPHA, BETA)]
    config = base_config(sandbox, audiences=audiences)
    sandbox.inject("code_20001", count=1, paths=[MAPPING], message="1 of 5 users failed")
    first = run_target(tmp_path, config, messages(range(5), 1), name="first")
    # Not a failure of the run, but no STATE: the tap sends the rows again next time.
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stdout == ""
    partial = [
        a for s in first.report["streams"] for a in s["audiences"] if a["status"] == "partial"
    ]
    assert len(partial) == 1 and partial[0]["tiktok_error"] == "1 of 5 users failed"
    assert "TikTok applied only part of the updates of" in first.stderr
    again = run_target(tmp_path, config, messages(range(5), 1), name="again")
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.states == [{"done": 1}]
    for adv in (ADV1, ADV2):
        for name, prefix in (("Alpha", "a"), ("Beta", "b")):
            assert _partner_members(sandbox, adv, name) == digests(prefix, range(5))


def test_an_audience_created_under_the_matched_floor_is_explained_by_numbers(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    """Issue 29: created with 1,300 identifiers, of which TikTok matched fewer than 1,000; an
    APPEND of 50 more is refused too. Both lines say TikTok's numbers and the way out."""
    config = base_config(sandbox, advertiser_ids=[ADV1], audiences=[ALPHA])
    first = run_target(tmp_path, config, messages(range(1_300), 1), name="first")
    assert first.returncode == 0, first.stderr[-3000:]
    held = matched("a", range(1_300))
    assert held < 1_000
    assert (
        f"Audience 'Alpha' in advertiser {ADV1}: TikTok matched {held:,} users of this audience, "
        "fewer than 1,000: it cannot be used for targeting, and TikTok refuses every update "
        "that leaves it under 1,000 matched users, an APPEND included, until one update brings "
        "enough." in first.stderr
    )
    second = run_target(tmp_path, config, messages(range(1_350), 2), name="second")
    assert second.returncode == 1
    refused = entry(second, "alpha", ADV1)
    assert refused["status"] == "deferred"
    assert (
        f"TikTok holds {held:,} matched users and refuses every update (an APPEND too) that "
        f"leaves fewer than 1,000: send at least {1_000 - held:,} more matched users in one run "
        "(mirror keeps the refused change in flight and sends it again with the next one, so "
        "additions add up; TikTok matches only part of the identifiers sent), or recreate the "
        "audience from a larger stream under a new audience_name" in refused["note"]
    )
