"""Exactly the right users (issue 11): removal flags as taps send them, BATCH messages, the last
record of a user, full Segment API batches, config that cannot silently mislead, the audience
quota, nothing leaked, and dry runs that write only their own files.

Every test runs the real CLI against the strict sandbox and compares members digest by digest
with a hashlib oracle.
"""

from __future__ import annotations

import gzip
import json
import math
import re
import stat
import threading
from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from target_tiktok_audiences.sandbox.server import SandboxServer

from helpers import (
    ADV1,
    TOKEN,
    Run,
    base_config,
    record_msg,
    run_target,
    schema_msg,
    sha256,
    state_msg,
    stream_report,
)

MAPPING = "/segment/mapping/"
DELETED_AT = "2026-11-20T00:00:00Z"

# remove_column values as taps send them (JSON true, strings of any case and padding, numbers).
REMOVE = [True, "true", " TRUE ", "t", "yes", "Y", "1", 1, 2.5]
KEEP = [False, "false", "f", "no", "n", "0", 0, "", None]
UNREADABLE = ["maybe", "2", [], {}]
INVALID_FLAG = {"remove_column": {"invalid_remove_flag": len(UNREADABLE)}}


def email(prefix: str, i: int | str) -> str:
    return f"{prefix}{i}@example.com"


def digests(addresses: Iterable[str]) -> list[str]:
    return sorted({sha256(a.strip().lower()) for a in addresses})


def the_audience(sandbox: SandboxServer, name: str, advertiser: str = ADV1) -> dict[str, Any]:
    (audience,) = [a for a in sandbox.audiences(advertiser) if a["name"] == name]
    return audience


def mapping(stream: str, name: str, mode: str, **extra: Any) -> dict[str, Any]:
    return {
        "stream": stream,
        "audience_name": name,
        "sync_mode": mode,
        "identifiers": {"EMAIL_SHA256": "email"},
        "remove_column": "gone",
        **extra,
    }


def last_line(run: Run) -> str:
    """What a user reads last, without the log prefix."""
    return run.stderr.rstrip().splitlines()[-1].split(" | ")[-1]


def error_line(run: Run) -> str:
    """The last ERROR line without its prefix (at DEBUG a traceback follows it)."""
    errors = [line for line in run.stderr.splitlines() if " | ERROR    | " in line]
    return errors[-1].split(" | ")[-1]


def assert_ok(run: Run) -> None:
    assert run.returncode == 0, run.stderr[-3000:]


# --- 1. removal flags as taps send them -----------------------------------------------------


def test_removal_flags_in_append_remove_keep_or_reject(sandbox, tmp_path: Path) -> None:
    sandbox.app.config.match_rate = 1.0  # counts uploaded users; the matched floor: test_sandbox
    config = base_config(
        sandbox, advertiser_ids=[ADV1], audiences=[mapping("users", "Flags", "append")]
    )
    schema = schema_msg("users", ["email", "gone"])
    base = [email("member", i) for i in range(1200)]
    first = run_target(
        tmp_path,
        config,
        [
            schema,
            *(
                record_msg("users", {"id": i, "email": e, "gone": False})
                for i, e in enumerate(base)
            ),
        ],
        name="first",
    )
    assert_ok(first)
    assert the_audience(sandbox, "Flags")["members"] == {"EMAIL_SHA256": digests(base)}

    removed = list(range(len(REMOVE)))  # members 0..8, one per remove value
    unreadable_members = list(range(100, 100 + len(UNREADABLE)))
    kept_new = [email("kept", i) for i in range(len(KEEP))]
    second = run_target(
        tmp_path,
        config,
        [
            schema,
            *(
                record_msg("users", {"id": i, "email": base[i], "gone": v})
                for i, v in zip(removed, REMOVE, strict=True)
            ),
            # An existing member whose flag cannot be read is not removed ...
            *(
                record_msg("users", {"id": i, "email": base[i], "gone": v})
                for i, v in zip(unreadable_members, UNREADABLE, strict=True)
            ),
            *(
                record_msg("users", {"id": 5000 + i, "email": e, "gone": v})
                for i, (e, v) in enumerate(zip(kept_new, KEEP, strict=True))
            ),
            # ... and a new user whose flag cannot be read is not added.
            *(
                record_msg("users", {"id": 6000 + i, "email": email("unsure", i), "gone": v})
                for i, v in enumerate(UNREADABLE)
            ),
            state_msg({"users": 2}),
        ],
        name="second",
    )
    assert_ok(second)
    assert second.states == [{"users": 2}]
    expected = [e for i, e in enumerate(base) if i not in removed] + kept_new
    assert the_audience(sandbox, "Flags")["members"] == {"EMAIL_SHA256": digests(expected)}
    report = stream_report(second, "users")
    assert report["records_read"] == len(REMOVE) + len(KEEP) + 2 * len(UNREADABLE)
    assert report["records_removed"] == len(REMOVE)
    assert report["removed"] == {"EMAIL_SHA256": len(REMOVE)}
    assert report["accepted"] == {"EMAIL_SHA256": len(KEEP)}
    assert report["rejected"] == {"remove_column": {"invalid_remove_flag": 2 * len(UNREADABLE)}}


def test_removal_flags_in_mirror_leave_users_out_of_the_set(sandbox, tmp_path: Path) -> None:
    config = base_config(
        sandbox, advertiser_ids=[ADV1], audiences=[mapping("users", "Flags", "mirror")]
    )
    kept = [email("kept", i) for i in range(1100)]
    run = run_target(
        tmp_path,
        config,
        [
            schema_msg("users", ["email", "gone"]),
            # Every keep value, over and over.
            *(
                record_msg("users", {"id": i, "email": e, "gone": KEEP[i % len(KEEP)]})
                for i, e in enumerate(kept)
            ),
            *(
                record_msg("users", {"id": 5000 + i, "email": email("gone", i), "gone": v})
                for i, v in enumerate(REMOVE)
            ),
            *(
                record_msg("users", {"id": 6000 + i, "email": email("unsure", i), "gone": v})
                for i, v in enumerate(UNREADABLE)
            ),
            state_msg({"users": 1}),
        ],
    )
    assert_ok(run)
    assert run.states == [{"users": 1}]
    assert the_audience(sandbox, "Flags")["members"] == {"EMAIL_SHA256": digests(kept)}
    report = stream_report(run, "users")
    assert report["records_read"] == len(kept) + len(REMOVE) + len(UNREADABLE)
    assert report["records_removed"] == len(REMOVE)
    assert report["rejected"] == INVALID_FLAG


# --- 2. BATCH messages ----------------------------------------------------------------------


def batch_msg(stream: str, path: Path, compression: str) -> dict[str, Any]:
    return {
        "type": "BATCH",
        "stream": stream,
        "encoding": {"format": "jsonl", "compression": compression},
        "manifest": [path.as_uri()],
    }


def write_batch(path: Path, records: list[dict[str, Any]]) -> Path:
    """A tap's batch file: one raw record per line (JSONL), gzipped when the name says so."""
    text = "".join(json.dumps(r) + "\n" for r in records)
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize("mode", ["append", "incremental"])
def test_batch_messages_take_the_record_path(sandbox, tmp_path: Path, mode: str) -> None:
    sandbox.app.config.match_rate = 1.0  # counts uploaded users; the matched floor: test_sandbox
    config = base_config(
        sandbox, advertiser_ids=[ADV1], audiences=[mapping("users", "Batched", mode)]
    )
    schema = schema_msg("users", ["email", "gone"])
    base = [email("member", i) for i in range(1200)]
    first = run_target(
        tmp_path,
        config,
        [schema, *(record_msg("users", {"id": i, "email": e}) for i, e in enumerate(base))],
        name="first",
    )
    assert_ok(first)

    def member(i: int, **extra: Any) -> dict[str, Any]:
        return {"id": i, "email": base[i], **extra}

    def new(prefix: str, n: int) -> list[dict[str, Any]]:
        return [{"id": f"{prefix}{i}", "email": email(prefix, i)} for i in range(n)]

    plain = write_batch(
        tmp_path / "batch-0001.jsonl",
        [
            *new("plain", 20),
            *(member(i, _sdc_deleted_at=DELETED_AT) for i in (2, 3, 4)),
            *(member(i, gone="yes") for i in (5, 6, 7)),
            {"id": "unsure-plain", "email": email("unsure", 1), "gone": "maybe"},
            {"id": "nobody-plain", "email": None},
        ],
    )
    zipped = write_batch(
        tmp_path / "batch-0002.jsonl.gz",
        [
            *new("zipped", 20),
            *(member(i, _sdc_deleted_at=DELETED_AT) for i in (8, 9, 10)),
            *(member(i, gone=1) for i in (11, 12, 13)),
            {"id": "unsure-zipped", "email": email("unsure", 2), "gone": "2"},
            {"id": "nobody-zipped", "email": "not an email"},
        ],
    )
    records = [
        *(record_msg("users", r) for r in new("before", 10)),
        record_msg("users", member(0, _sdc_deleted_at=DELETED_AT)),
        record_msg("users", member(1, gone=True)),
    ]
    after = [record_msg("users", r) for r in new("after", 10)]
    second = run_target(
        tmp_path,
        config,
        [
            schema,
            *records,
            batch_msg("users", plain, "none"),
            *after,
            batch_msg("users", zipped, "gzip"),
            state_msg({"users": 2}),
        ],
        name="second",
    )
    assert_ok(second)
    assert second.states == [{"users": 2}]
    added = [
        email(p, i)
        for p, n in (("before", 10), ("plain", 20), ("after", 10), ("zipped", 20))
        for i in range(n)
    ]
    expected = base[14:] + added
    assert the_audience(sandbox, "Batched")["members"] == {"EMAIL_SHA256": digests(expected)}
    report = stream_report(second, "users")
    assert report["records_read"] == len(records) + len(after) + 2 * 28
    assert report["records_removed"] == 14
    assert report["records_without_identifiers"] == 2
    assert report["accepted"] == {"EMAIL_SHA256": len(added)}
    assert report["removed"] == {"EMAIL_SHA256": 14}
    assert report["rejected"] == {
        "EMAIL_SHA256": {"invalid_email": 1},
        "remove_column": {"invalid_remove_flag": 2},
    }


# --- 3. the last record of a user wins ------------------------------------------------------


@pytest.mark.parametrize("mode", ["append", "incremental"])
def test_last_record_of_a_user_wins(sandbox, tmp_path: Path, mode: str) -> None:
    sandbox.app.config.match_rate = 1.0  # counts uploaded users; the matched floor: test_sandbox
    config = base_config(
        sandbox,
        advertiser_ids=[ADV1],
        audiences=[mapping("keyed", "Keyed", mode), mapping("plain", "Plain", mode)],
    )
    keyed_schema = schema_msg("keyed", ["email", "gone"])
    plain_schema = schema_msg("plain", ["email", "gone"], key=None)
    keyed_base = [email("k", i) for i in range(1100)]
    plain_base = [email("p", i) for i in range(1100)]
    first = run_target(
        tmp_path,
        config,
        [
            keyed_schema,
            plain_schema,
            *(record_msg("keyed", {"id": i, "email": e}) for i, e in enumerate(keyed_base)),
            *(record_msg("plain", {"email": e}) for e in plain_base),
        ],
        name="first",
    )
    assert_ok(first)

    def keyed(i: int, address: str, gone: bool) -> dict[str, Any]:
        return record_msg("keyed", {"id": i, "email": address, "gone": gone})

    def plain(address: str, gone: bool) -> dict[str, Any]:
        return record_msg("plain", {"email": address, "gone": gone})

    second = run_target(
        tmp_path,
        config,
        [
            keyed_schema,
            plain_schema,
            # A member removed, then added again later: present.
            keyed(0, keyed_base[0], True),
            plain(plain_base[0], True),
            keyed(1, keyed_base[1], True),
            plain(plain_base[1], True),
            # A new user added, then removed: absent.
            keyed(5000, "a5000@example.com", False),
            plain("a5000@example.com", False),
            # Interleaved with other users' records.
            keyed(0, keyed_base[0], False),
            plain(plain_base[0], False),
            keyed(5000, "a5000@example.com", True),
            plain("a5000@example.com", True),
            # Keyed: one user (id 6000) changes its email; only the last record's email counts.
            keyed(6000, "first6000@example.com", False),
            keyed(6000, "second6000@example.com", False),
            # Keyed: added under one email, removed under another: neither is in the audience.
            keyed(7000, "added7000@example.com", False),
            keyed(7000, "removed7000@example.com", True),
            # Keyed: member 1 was removed above, and its last record moves it to another email:
            # the removal of the old email no longer counts.
            keyed(1, "moved1@example.com", False),
            # Plain (no key properties): different emails are different users.
            plain("first6000@example.com", False),
            plain("second6000@example.com", False),
            plain("added7000@example.com", False),
            plain("removed7000@example.com", True),
            plain("moved1@example.com", False),
            state_msg({"n": 2}),
        ],
        name="second",
    )
    assert_ok(second)
    assert second.states == [{"n": 2}]
    assert the_audience(sandbox, "Keyed")["members"] == {
        "EMAIL_SHA256": digests([*keyed_base, "second6000@example.com", "moved1@example.com"])
    }
    assert the_audience(sandbox, "Plain")["members"] == {
        "EMAIL_SHA256": digests(
            [
                *plain_base[:1],
                *plain_base[2:],  # p1's only record in this run removes it
                "first6000@example.com",
                "second6000@example.com",
                "added7000@example.com",
                "moved1@example.com",
            ]
        )
    }
    keyed_report = stream_report(second, "keyed")
    assert keyed_report["records_read"] == 10
    assert keyed_report["records_removed"] == 4


# --- 4. full Segment API batches ------------------------------------------------------------


@pytest.mark.parametrize("batch_size_rows", [None, 500])
def test_incremental_sends_full_batches_however_adds_and_deletes_interleave(
    sandbox, tmp_path: Path, batch_size_rows: int | None
) -> None:
    settings: dict[str, Any] = {"segment_batch_size": 10_000}
    if batch_size_rows is not None:
        settings["batch_size_rows"] = batch_size_rows  # the SDK drains every 500 records
    config = base_config(
        sandbox,
        advertiser_ids=[ADV1],
        audiences=[mapping("users", "Streamed", "incremental")],
        **settings,
    )
    schema = schema_msg("users", ["email", "gone"])
    # The audience exists and is past its warm-up, so every mapping call below is counted.
    seed = run_target(
        tmp_path,
        config,
        [schema, record_msg("users", {"id": -1, "email": "seed@example.com"})],
        name="seed",
    )
    assert_ok(seed)
    sandbox.advance_clock(3600)
    before = len(sandbox.calls(MAPPING))

    users = [
        {"id": i, "email": email("u", i), "gone": i % 10 == 9} for i in range(30_000)
    ]  # every 10th record a delete
    run = run_target(
        tmp_path, config, [schema, *(record_msg("users", u) for u in users), state_msg(3)]
    )
    assert_ok(run)
    assert run.states == [3]
    adds = [u["email"] for u in users if not u["gone"]]
    deletes = [u for u in users if u["gone"]]
    assert (len(adds), len(deletes)) == (27_000, 3_000)
    calls = sandbox.calls(MAPPING)[before:]
    assert len(calls) == math.ceil(27_000 / 10_000) + math.ceil(3_000 / 10_000) == 4
    assert sorted((c["action"], c["users"], c["code"]) for c in calls) == [
        ("add", 7_000, 0),
        ("add", 10_000, 0),
        ("add", 10_000, 0),
        ("delete", 3_000, 0),
    ]
    assert the_audience(sandbox, "Streamed")["members"] == {
        "EMAIL_SHA256": digests(["seed@example.com", *adds])
    }
    (entry,) = stream_report(run, "users")["audiences"]
    assert (entry["batches"], entry["users_added"], entry["users_removed"]) == (4, 27_000, 3_000)


# --- 5. config that cannot silently mislead -------------------------------------------------
# (The checks that stop the run are in test_settings.py.)


def test_a_mapped_stream_that_never_arrives_is_named_with_the_closest_one(sandbox, tmp_path):
    config = base_config(
        sandbox,
        advertiser_ids=[ADV1],
        audiences=[
            {"stream": "user", "audience_name": "Users", "identifiers": {"EMAIL_SHA256": "email"}}
        ],
    )
    run = run_target(
        tmp_path,
        config,
        [
            schema_msg("users", ["email"]),
            schema_msg("orders", ["email"]),
            record_msg("users", {"id": 1, "email": "a@example.com"}),
            record_msg("orders", {"id": 1, "email": "b@example.com"}),
            state_msg(1),
        ],
    )
    assert_ok(run)
    warning = (
        "audiences: stream 'user' is mapped but never arrived (streams that arrived: orders, "
        "users); did you mean 'users'?"
    )
    lines = [line.split(" | ")[-1] for line in run.stderr.splitlines()]
    assert lines.count(warning) == 1
    assert " | WARNING  | " in next(line for line in run.stderr.splitlines() if warning in line)
    assert sandbox.audiences(ADV1) == []
    assert run.report["ignored_streams"] == {
        "users": "it is not listed in the audiences setting",
        "orders": "it is not listed in the audiences setting",
    }


def test_api_base_url_off_the_api_path_is_warned_then_fails_clearly(sandbox, tmp_path):
    url = sandbox.url + "/open_api/v1.2"
    config = base_config(sandbox, advertiser_ids=[ADV1], api_base_url=url)
    run = run_target(
        tmp_path,
        config,
        [schema_msg("users", ["email"]), record_msg("users", {"id": 1, "email": "a@example.com"})],
    )
    assert run.returncode == 1
    assert (
        f"WARNING  | target-tiktok-audiences        | api_base_url: {url} does not end in "
        "/open_api/v1.3; TikTok's API and the sandbox both live under that path"
    ) in run.stderr
    assert re.fullmatch(
        r"Checking the access token failed: TikTok said \"unknown path "
        r"'/open_api/v1\.2/user/info/'; API paths start with /open_api/v1\.3/ and end with /\" "
        r"\(code 40002, request_id \w+\)\. HTTP 404: there is no such address; check "
        r"api_base_url \(TikTok's is https://business-api\.tiktok\.com/open_api/v1\.3\)\.",
        last_line(run),
    ), last_line(run)
    assert "Traceback" not in run.stderr
    assert run.states == []


# --- 6. the audience quota ------------------------------------------------------------------


def test_max_new_audiences_stops_the_run_after_exactly_that_many(sandbox, tmp_path):
    config = base_config(sandbox, advertiser_ids=[ADV1], max_new_audiences=3)
    streams = ["s1", "s2", "s3", "s4", "s5"]
    messages: list[dict[str, Any]] = [schema_msg(s, ["email"]) for s in streams]
    for s in streams:
        messages += [record_msg(s, {"id": i, "email": email(s, i)}) for i in range(3)]
    run = run_target(tmp_path, config, [*messages, state_msg(1)])
    assert run.returncode == 1
    assert run.stdout == ""  # no STATE
    assert last_line(run) == (
        "Creating audience 's4' for advertiser 7000000000000000001 failed: this "
        "run already created 3 audiences (max_new_audiences is 3); TikTok allows 400 per "
        "advertiser. Map only the streams you want (audiences setting) or raise "
        "max_new_audiences. Not delivered: the audiences of stream 's4' (stopped at 's4' in "
        f"advertiser {ADV1}), stream 's5' (the others were delivered; no STATE was emitted)"
    )
    assert [line for line in run.stderr.splitlines() if " | ERROR    | " in line] == [
        run.stderr.rstrip().splitlines()[-1]
    ]
    assert "Traceback" not in run.stderr
    audiences = sandbox.audiences(ADV1)
    assert sorted(a["name"] for a in audiences) == ["s1", "s2", "s3"]
    for a in audiences:
        assert a["members"] == {"EMAIL_SHA256": digests(email(a["name"], i) for i in range(3))}
    assert run.report["status"] == "failed"


# --- 7. nothing leaks -----------------------------------------------------------------------

KNOWN = {
    "email": "Known.Secret+vip@Example.com",
    "phone": "(415) 555-0199",
    "idfa": "6D92078A-8246-4BA4-AE5B-76104861E7DC",
}
# Normalised forms are just as personal as the raw ones; the token is secret.
KNOWN_FORMS = [
    *KNOWN.values(),
    "known.secret+vip@example.com",
    "+14155550199",
    "4155550199",
    "6d92078a-8246-4ba4-ae5b-76104861e7dc",
    "a-known-email@x.io",
    TOKEN,
]


def leaks(*texts: str) -> list[str]:
    text = "\n".join(texts).lower()
    return [form for form in KNOWN_FORMS if form.lower() in text]


def known_messages(stream: str = "users") -> list[dict[str, Any]]:
    return [
        schema_msg(stream, list(KNOWN)),
        record_msg(stream, {"id": 1, **KNOWN}),
        *(record_msg(stream, {"id": i, "email": email("filler", i)}) for i in range(2, 5)),
    ]


@pytest.mark.parametrize(
    ("expression", "error", "loglevel"),
    [
        ("email.nonexistent()", "AttributeDoesNotExist", "INFO"),
        # int()'s own message quotes the value: "invalid literal for int() ...: 'Known...'"
        ("int(email)", "ValueError", "DEBUG"),
    ],
)
def test_a_failing_stream_map_names_stream_property_and_error_never_the_value(
    sandbox, tmp_path, expression, error, loglevel
):
    config = base_config(
        sandbox, advertiser_ids=[ADV1], stream_maps={"users": {"email": expression}}
    )
    run = run_target(
        tmp_path, config, [*known_messages(), state_msg(1)], env={"LOGLEVEL": loglevel}
    )
    assert run.returncode == 1
    message = (
        "stream_maps: the expression for property 'email' of stream 'users' failed on a record "
        f"({error}); the record is not shown because it may hold personal data. Fix the "
        "expression and re-run"
    )
    assert error_line(run) == message
    assert ("Traceback" in run.stderr) is (loglevel == "DEBUG")
    if loglevel != "DEBUG":
        assert last_line(run) == message
    assert run.stdout == ""
    assert run.report["error"] == message
    assert leaks(run.output, json.dumps(run.report)) == []
    assert sandbox.audiences(ADV1) == []


@pytest.mark.parametrize(("kind", "shown"), [("WHATEVER", "'WHATEVER'"), (KNOWN["email"], "?")])
def test_an_unknown_message_type_is_not_echoed(sandbox, tmp_path, kind, shown):
    config = base_config(sandbox, advertiser_ids=[ADV1])
    unknown = {"type": kind, "secret": "a-known-email@x.io", "record": KNOWN}
    run = run_target(tmp_path, config, [*known_messages(), unknown, state_msg(1)])
    assert run.returncode == 1
    assert last_line(run) == (
        f"A message of unknown type {shown} arrived; its content is not shown because it may "
        "hold personal data. Check the tap's output."
    )
    assert "Traceback" not in run.stderr
    assert run.stdout == ""
    assert leaks(run.output, json.dumps(run.report)) == []


class _Recorder(BaseHTTPRequestHandler):
    """Another server on this machine: records every request's headers, answers 200."""

    seen: list[dict[str, str]]

    def _any(self) -> None:
        self.seen.append(dict(self.headers.items()))
        body = b'{"code": 0, "message": "OK", "request_id": "x", "data": {}}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _any

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def elsewhere() -> Iterator[tuple[str, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []
    handler = type("Recorder", (_Recorder,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_a_redirect_is_an_error_naming_the_host_and_the_token_stays(sandbox, tmp_path, elsewhere):
    url, seen = elsewhere
    sandbox.inject("redirect", rate=1.0, paths=["/dmp/custom_audience/file/upload/"], location=url)
    config = base_config(sandbox, advertiser_ids=[ADV1])
    run = run_target(tmp_path, config, [*known_messages(), state_msg(1)], env={"LOGLEVEL": "DEBUG"})
    assert run.returncode == 1
    host = url.removeprefix("http://")
    assert error_line(run) == (
        f"Audience 'users (EMAIL_SHA256)': Uploading a EMAIL_SHA256 file for advertiser {ADV1} "
        "failed: "
        f"127.0.0.1:{sandbox.port} (api_base_url) answered with a redirect to {host}, which is "
        "not followed so that the token stays with TikTok. Set api_base_url to the final "
        "address of the API. Not delivered: the audiences of stream 'users' (stopped at "
        f"'users (EMAIL_SHA256)' in advertiser {ADV1}) (none was delivered; no STATE was "
        "emitted)"
    )
    assert seen == []  # not one request reached the other server, so neither did the token
    assert [c["fault"] for c in sandbox.calls("/file/upload/")] == ["redirect"]
    assert run.stdout == ""
    assert leaks(run.output, json.dumps(run.report)) == []


def test_dry_run_files_are_private_and_hold_no_known_value(sandbox, tmp_path):
    out = tmp_path / "out"
    config = {
        "advertiser_ids": [ADV1],
        "access_token": TOKEN,  # with a token a dry run reads TikTok (the sandbox here)
        "api_base_url": sandbox.base_url,
        "dry_run": True,
        "output_dir": str(out),
        "default_phone_region": "US",
        "audiences": [
            {"stream": "users", "identifiers": {"EMAIL_SHA256": "email", "PHONE_SHA256": "phone"}},
            {
                "stream": "devices",
                "sync_mode": "incremental",
                "identifiers": {"IDFA_SHA256": "idfa", "EMAIL_SHA256": "email"},
            },
        ],
    }
    run = run_target(
        tmp_path,
        config,
        [*known_messages("users"), *known_messages("devices"), state_msg(1)],
        env={"LOGLEVEL": "DEBUG"},
    )
    assert_ok(run)
    (folder,) = out.iterdir()
    folders = [folder, *(p for p in folder.rglob("*") if p.is_dir())]
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert sorted(p.relative_to(folder).as_posix() for p in folders[1:]) == ["batches", "files"]
    assert len(files) == 4  # plan, two uploads (one per contract), one batch
    assert {stat.S_IMODE(p.stat().st_mode) for p in folders} == {0o700}
    assert {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o600}
    written = [p.read_text() for p in files]
    assert sha256(KNOWN["email"].lower()) in "".join(written)  # the digests are there ...
    assert leaks(*written, run.output, json.dumps(run.report)) == []  # ... the values never


# --- 8. dry_run writes only its own files ---------------------------------------------------


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_two_dry_runs_make_two_folders_and_touch_nothing_else(tmp_path):
    out = tmp_path / "out"
    (out / "mine").mkdir(parents=True)
    notes = out / "notes.txt"
    notes.write_text("the user's own file\n")
    (out / "mine" / "plan.json").write_text('{"mine": true}\n')
    (out / "files").mkdir()  # a name a dry run uses inside its own folder
    mtime = notes.stat().st_mtime_ns
    before = tree(out)
    config = {"advertiser_ids": [ADV1], "dry_run": True, "output_dir": str(out)}
    folders: list[Path] = []
    for n in range(2):
        run = run_target(
            tmp_path,
            config,
            [
                schema_msg("users", ["email"]),
                record_msg("users", {"id": n, "email": email("dry", n)}),
            ],
            name=f"dry{n}",
        )
        assert_ok(run)
        (new,) = set(out.iterdir()) - {notes, out / "mine", out / "files", *folders}
        folders.append(new)
        plan = json.loads((new / "plan.json").read_text())
        assert [(a["audience_name"], a["identifiers_uploaded"]) for a in plan["audiences"]] == [
            ("users", 1)
        ]
        (upload,) = (new / "files").iterdir()
        assert upload.read_text() == sha256(email("dry", n)) + "\n"
    assert folders[0] != folders[1]
    assert {p.name for p in out.iterdir()} == {
        "notes.txt",
        "mine",
        "files",
        *(f.name for f in folders),
    }
    after = tree(out)
    assert {
        k: v for k, v in after.items() if not k.startswith(tuple(f.name + "/" for f in folders))
    } == before
    assert list((out / "files").iterdir()) == []
    assert notes.stat().st_mtime_ns == mtime
