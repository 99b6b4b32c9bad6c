"""TikTok as it documents itself: the client reads only documented fields, and neither the
sandbox nor the tests' fake answers with anything more (client/documented.py).

tests/contract/ holds answers shaped as public sources show them, each with its source; the
client's own reading of each is tested here, over HTTP-shaped answers.
"""

from __future__ import annotations

import hashlib
import io
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import requests
import urllib3
from requests.adapters import BaseAdapter

from target_tiktok_audiences.client import TikTokClient, operation_kind
from target_tiktok_audiences.client.documented import (
    AUDIENCE_FIELDS,
    DATA_FIELDS,
    undocumented,
)
from target_tiktok_audiences.sandbox.server import SandboxServer, run_sandbox

from helpers import ADV1, TOKEN, sha256
from helpers.fake_api import FakeAudienceAPI, _answer_row

CONTRACT = Path(__file__).parent / "contract"
API = "http://tiktok.invalid/open_api/v1.3"
UTC = timezone.utc


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((CONTRACT / name).read_text(encoding="utf-8"))
    return loaded


class Canned(BaseAdapter):
    """Answers every request with the fixture's answer: TikTok's words go through the
    client's transport and parsing as they would over the network."""

    def __init__(self, answer: dict[str, Any]) -> None:
        super().__init__()
        self.answer = answer
        self.paths: list[str] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.paths.append(str(request.path_url).split("?")[0])
        body = json.dumps(self.answer).encode()
        raw = urllib3.HTTPResponse(
            body=io.BytesIO(body), status=200, preload_content=False, decode_content=False
        )
        response = requests.Response()
        response.status_code, response.raw, response.url = 200, raw, request.url or ""
        response.headers["Content-Type"] = "application/json"
        return response

    def close(self) -> None:
        pass


def client_answering(
    answer: dict[str, Any], token: str = "tok-canned-1234"
) -> tuple[TikTokClient, Canned]:
    adapter = Canned(answer)
    session = requests.Session()
    session.mount("http://", adapter)
    return TikTokClient(API, token, session=session, max_retries=0), adapter


@pytest.mark.parametrize("name", sorted(p.name for p in CONTRACT.glob("*.json")))
def test_contract_fixtures_hold_only_documented_fields(name: str) -> None:
    loaded = fixture(name)
    assert loaded["_source"]
    assert undocumented(loaded["path"], loaded["answer"]) == []


def test_the_real_get_answer_reads_as_documented() -> None:
    client, _ = client_answering(fixture("get_segment_fixture.json")["answer"])
    status = client.get_audience("42884288", "888888888")
    assert (status.is_valid, status.size, status.expiring) == (False, 0, False)
    assert status.expires == datetime(2024, 8, 2, 16, 27, 49, tzinfo=UTC)
    assert status.last is not None
    assert (status.last.word, status.last.kind, status.last.editor, status.last.msg) == (
        "create",
        "CREATE",
        "open_api",
        None,
    )
    assert status.last.at == datetime(2023, 8, 3, 16, 27, 49, tzinfo=UTC)
    assert status.tiktok_error is None
    # A CREATE recognised in lowercase and under 24 h old holds a REPLACE back; a day later not.
    made = datetime(2023, 8, 3, 16, 27, 49, tzinfo=UTC)
    assert status.recent_full_upload(made.replace(hour=20)) == status.last
    assert status.recent_full_upload(made.replace(day=4, hour=17)) is None


def test_the_list_reads_as_documented() -> None:
    client, _ = client_answering(fixture("list_go_sdk.json")["answer"])
    rows = list(client.list_audiences(ADV1))
    assert [(r.audience_id, r.name, r.owned, r.expiring, r.size) for r in rows] == [
        ("7100000001", "Newsletter", True, False, 4559),
        ("7100000002", "Shared in", False, True, 2000),
    ]
    assert [r.is_customer_file for r in rows] == [True, True]
    assert rows[0].calculate_type == "EMAIL_SHA256"


def test_an_empty_ad_account_is_an_empty_list_in_one_call() -> None:
    client, adapter = client_answering(fixture("list_empty_account.json")["answer"])
    assert list(client.list_audiences(ADV1)) == []
    assert adapter.paths == ["/open_api/v1.3/dmp/custom_audience/list/"]


def test_tiktoks_word_after_acceptance_is_read() -> None:
    client, _ = client_answering(fixture("get_failed_match.json")["answer"])
    status = client.get_audience(ADV1, "7100000001")
    assert status.tiktok_error == "Some data in the file failed to parse"
    assert status.last is not None and status.last.kind == "APPEND"
    assert (status.message, status.error_message) == (None, None)  # "" is no word


@pytest.mark.parametrize(
    ("word", "kind"),
    [
        ("create", "CREATE"),
        ("CREATE", "CREATE"),
        ("append", "APPEND"),
        ("Append", "APPEND"),
        ("REMOVE", "REMOVE"),
        ("replace", "REPLACE"),
        ("Customer file uploaded", None),
        ("Users added by file", None),
        ("File refreshed", None),
        ("", None),
        (None, None),
        (7, None),
    ],
)
def test_history_words_are_matched_loosely_and_never_guessed(word: object, kind: str) -> None:
    assert operation_kind(word) == kind


# -- the sandbox answers with documented fields only ----------------------------------------


def _answers(sandbox: SandboxServer, token: str) -> list[tuple[str, dict[str, Any]]]:
    """One answer of every endpoint the target calls, as the sandbox gives it over HTTP."""
    base = sandbox.base_url
    session = requests.Session()
    session.headers["Access-Token"] = token
    out: list[tuple[str, dict[str, Any]]] = []

    def call(method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        body: dict[str, Any] = session.request(method, base + path, timeout=30, **kwargs).json()
        assert body["code"] == 0, body
        out.append((path, body))
        return body

    call("GET", "/user/info/")
    digests = "".join(sha256(f"user{i}@example.com") + "\n" for i in range(2000)).encode()
    uploaded = call(
        "POST",
        "/dmp/custom_audience/file/upload/",
        data={
            "advertiser_id": ADV1,
            "calculate_type": "EMAIL_SHA256",
            "file_signature": hashlib.md5(digests).hexdigest(),
        },
        files={"file": ("a.csv", digests)},
    )
    file_path = uploaded["data"]["file_path"]
    created = call(
        "POST",
        "/dmp/custom_audience/create/",
        json={
            "advertiser_id": ADV1,
            "custom_audience_name": "documented",
            "file_paths": [file_path],
            "calculate_type": "EMAIL_SHA256",
        },
    )
    audience_id = created["data"]["custom_audience_id"]
    call(
        "POST",
        "/dmp/custom_audience/update/",
        json={
            "advertiser_id": ADV1,
            "custom_audience_id": audience_id,
            "file_paths": [file_path],
            "action": "APPEND",
        },
    )
    call("GET", "/dmp/custom_audience/list/", params={"advertiser_id": ADV1, "page_size": 100})
    for _ in range(5):  # every spelling of the history in turn
        call(
            "GET",
            "/dmp/custom_audience/get/",
            params={"advertiser_id": ADV1, "custom_audience_ids": json.dumps([audience_id])},
        )
    partner = call(
        "POST",
        "/segment/audience/",
        json={"advertiser_id": ADV1, "action": "create", "custom_audience_name": "partner"},
    )
    call(
        "POST",
        "/segment/mapping/",
        json={
            "advertiser_ids": [ADV1],
            "action": "add",
            "id_schema": ["EMAIL_SHA256"],
            "batch_data": [
                [{"id": sha256("p@example.com"), "audience_ids": [partner["data"]["audience_id"]]}]
            ],
        },
    )
    return out


@pytest.fixture
def plain_sandbox(tmp_path: Path) -> Any:
    with run_sandbox(
        tmp_path / "sandbox.db", partner_warmup_seconds=0, update_processing_seconds=0
    ) as server:
        yield server


def test_every_sandbox_answer_holds_only_documented_fields(plain_sandbox: SandboxServer) -> None:
    answers = _answers(plain_sandbox, TOKEN)
    assert {path for path, _ in answers} == set(DATA_FIELDS)
    for path, body in answers:
        assert undocumented(path, body) == [], path
    # The history comes in every spelling, and no history at all, in turn.
    words = [
        tuple(h["action"] for h in body["data"]["list"][0]["audience_history"])
        for path, body in answers
        if path.endswith("/get/")
    ]
    assert words[:4] == [
        ("create", "append"),
        ("CREATE", "APPEND"),
        ("Customer file uploaded", "Users added by file"),
        (),
    ]


def test_the_check_fails_when_the_sandbox_tells_more(
    plain_sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = plain_sandbox.app
    history_rows = app.history_rows

    def talkative(audience_id: str) -> list[dict[str, Any]]:
        return [{**h, "status": "PROCESSING"} for h in history_rows(audience_id)]

    monkeypatch.setattr(app, "history_rows", talkative)
    monkeypatch.setattr(app.config, "history_wording", "lower")
    found = {
        field for path, body in _answers(plain_sandbox, TOKEN) for field in undocumented(path, body)
    }
    assert found == {"data.list[].audience_history[].status"}


def test_the_fakes_rows_hold_only_documented_fields() -> None:
    fake = FakeAudienceAPI([ADV1])
    audience_id = fake.add_audience(ADV1, "x", "EMAIL_SHA256", {"EMAIL_SHA256": {"a" * 64}})
    row = _answer_row(fake.audiences(ADV1)[0])
    assert set(row) <= AUDIENCE_FIELDS
    assert fake.get_audience(ADV1, audience_id).size == 1


def test_the_sandbox_answers_an_empty_account_without_list(plain_sandbox: SandboxServer) -> None:
    answer = requests.get(
        plain_sandbox.base_url + "/dmp/custom_audience/list/",
        params={"advertiser_id": ADV1},
        headers={"Access-Token": TOKEN},
        timeout=30,
    ).json()
    assert answer["code"] == 0 and "list" not in answer["data"]
    assert answer["data"]["page_info"]["total_number"] == 0


def test_tiktoks_words_after_acceptance_never_carry_the_token() -> None:
    answer = fixture("get_failed_match.json")["answer"]
    row = answer["data"]["list"][0]
    row["audience_details"]["error_msg"] = "token tok-planted-1234 is not allowed"
    row["audience_history"][-1]["msg"] = "bad tok-planted-1234"
    client, _ = client_answering(answer, token="tok-planted-1234")
    status = client.get_audience(ADV1, "7100000001")
    assert status.error_message == "token [redacted] is not allowed"
    assert status.last is not None and status.last.msg == "bad [redacted]"
