"""Mirror mode end to end: the real CLI against the sandbox, members checked digest by digest."""

from __future__ import annotations

from pathlib import Path

from helpers import (
    ADV1,
    ADV2,
    audiences_by_name,
    base_config,
    record_msg,
    run_target,
    schema_msg,
    sha256,
    state_msg,
    stream_report,
)
from helpers.messy import CONTRACTS, messy_users

MAPPING = {
    "stream": "users",
    "audience_name": "Loyal customers",
    "identifiers": {"EMAIL_SHA256": "email", "PHONE_SHA256": "phone", "GAID_SHA256": "gaid"},
}


def users_messages(rows: list[dict], bookmark: int) -> list[dict]:
    return [
        schema_msg("users", ["email", "phone", "gaid"]),
        *(record_msg("users", r) for r in rows),
        state_msg({"bookmark": bookmark}),
    ]


def test_messy_rows_mirror_into_two_advertisers_then_replace(sandbox, tmp_path: Path) -> None:
    # The second run keeps a third of the users: meant here, so the removal guard is lifted.
    config = base_config(sandbox, audiences=[MAPPING], file_max_ids=1000, max_removal_percent=100)
    rows, expected = messy_users(0, 3000)
    first = run_target(tmp_path, config, users_messages(rows, 1), name="first")
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.states == [{"bookmark": 1}]

    ids = {}
    for advertiser in (ADV1, ADV2):
        audiences = audiences_by_name(sandbox, advertiser)
        assert sorted(audiences) == [f"Loyal customers ({c})" for c in sorted(CONTRACTS)]
        for contract in CONTRACTS:
            audience = audiences[f"Loyal customers ({contract})"]
            assert audience["members"] == {contract: sorted(expected[contract])}
            ids[advertiser, contract] = audience["audience_id"]
    report = stream_report(first, "users")
    assert report["records_read"] == 3000
    assert report["accepted"] == {c: len(expected[c]) for c in CONTRACTS}
    emails = [r["email"] for r in rows]
    assert report["rejected"] == {
        "EMAIL_SHA256": {
            "invalid_email": sum(isinstance(e, str) and "@" not in e for e in emails),
            "wrong_type": sum(isinstance(e, int) for e in emails),
        },
        "PHONE_SHA256": {"invalid_phone": sum(r["phone"] == "12" for r in rows)},
        "GAID_SHA256": {"tracking_limited": 300},
    }
    uploads = sandbox.calls("/dmp/custom_audience/file/upload/")
    # Files are split by file_max_ids, and each advertiser gets its own uploads.
    assert len(uploads) == 2 * sum(-(-len(expected[c]) // 1000) for c in CONTRACTS)
    assert max(c["lines"] for c in uploads) == 1000

    rows2, expected2 = messy_users(2000, 4500)
    second = run_target(tmp_path, config, users_messages(rows2, 2), name="second")
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.states == [{"bookmark": 2}]
    for advertiser in (ADV1, ADV2):
        audiences = audiences_by_name(sandbox, advertiser)
        assert len(sandbox.audiences(advertiser)) == 3  # nothing new was created
        for contract in CONTRACTS:
            audience = audiences[f"Loyal customers ({contract})"]
            assert audience["audience_id"] == ids[advertiser, contract]
            assert audience["members"] == {contract: sorted(expected2[contract])}
    entries = stream_report(second, "users")["audiences"]
    # Mirror by difference: the snapshot of run one is diffed, no REPLACE is sent.
    assert {(e["action"], e["created"], e["status"], e["mirror"]) for e in entries} == {
        ("APPEND+REMOVE", False, "delivered", "diff")
    }
    assert sandbox.calls("/dmp/custom_audience/update/") and all(
        c["action"] in ("APPEND", "REMOVE") for c in sandbox.calls("/dmp/custom_audience/update/")
    )


def test_single_contract_uses_the_audience_name_and_skips_removed_rows(sandbox, tmp_path):
    config = base_config(
        sandbox,
        advertiser_ids=[ADV1],
        audiences=[
            {
                "stream": "users",
                "audience_name": "Newsletter",
                "identifiers": {"EMAIL_SHA256": "email"},
            }
        ],
    )
    messages = [
        schema_msg("users", ["email"]),
        record_msg("users", {"id": 1, "email": "janedoe@gmail.com"}),
        record_msg(
            "users", {"id": 2, "email": "alex@email.com", "_sdc_deleted_at": "2026-01-01T00:00:00Z"}
        ),
        record_msg("users", {"id": 3, "email": "testing@testing.com"}),
    ]
    run = run_target(tmp_path, config, messages)
    assert run.returncode == 0, run.stderr[-3000:]
    (audience,) = sandbox.audiences(ADV1)
    assert audience["name"] == "Newsletter"
    assert audience["members"] == {
        "EMAIL_SHA256": sorted([sha256("janedoe@gmail.com"), sha256("testing@testing.com")])
    }
    report = stream_report(run, "users")
    assert report["records_removed"] == 1
    assert "only 2 unique identifiers" in run.stderr


def emails_messages(indices: range) -> list[dict]:
    return [
        schema_msg("users", ["email"]),
        *(record_msg("users", {"id": i, "email": f"u{i}@x.io"}) for i in indices),
    ]


def test_existing_audience_found_by_id_and_mirrored(sandbox, tmp_path):
    config = base_config(
        sandbox,
        advertiser_ids=[ADV1],
        audiences=[
            {"stream": "users", "audience_name": "First", "identifiers": {"EMAIL_SHA256": "email"}}
        ],
    )
    run = run_target(tmp_path, config, emails_messages(range(1500)), name="create")
    assert run.returncode == 0, run.stderr[-3000:]
    (audience,) = sandbox.audiences(ADV1)
    config["audiences"] = [
        {
            "stream": "users",
            "audience_name": "Renamed in config",
            "audience_ids": {ADV1: audience["audience_id"]},
            "identifiers": {"EMAIL_SHA256": "email"},
        }
    ]
    run = run_target(tmp_path, config, emails_messages(range(300, 1800)), name="by-id")
    assert run.returncode == 0, run.stderr[-3000:]
    (audience,) = sandbox.audiences(ADV1)
    assert audience["name"] == "First"  # found by id; TikTok keeps its name
    assert audience["members"] == {
        "EMAIL_SHA256": sorted(sha256(f"u{i}@x.io") for i in range(300, 1800))
    }
    (entry,) = stream_report(run, "users")["audiences"]
    assert (entry["action"], entry["identifiers_uploaded"], entry["identifiers_removed"]) == (
        "APPEND+REMOVE",
        300,
        300,
    )


def test_hash_identifiers_false_passes_digests_and_rejects_plain_values(sandbox, tmp_path):
    digest = sha256("janedoe@gmail.com")
    config = base_config(
        sandbox,
        advertiser_ids=[ADV1],
        hash_identifiers=False,
        audiences=[
            {"stream": "users", "audience_name": "Hashed", "identifiers": {"EMAIL_SHA256": "email"}}
        ],
    )
    messages = [
        schema_msg("users", ["email"]),
        record_msg("users", {"id": 1, "email": digest.upper()}),
        record_msg("users", {"id": 2, "email": "alex@email.com"}),
        record_msg("users", {"id": 3, "email": sha256("x")[:40]}),
    ]
    run = run_target(tmp_path, config, messages)
    assert run.returncode == 0, run.stderr[-3000:]
    (audience,) = sandbox.audiences(ADV1)
    assert audience["members"] == {"EMAIL_SHA256": [digest]}
    assert stream_report(run, "users")["rejected"] == {"EMAIL_SHA256": {"not_hashed": 2}}
    assert "alex@email.com" not in run.output


def test_hashing_on_rejects_values_that_already_look_hashed(sandbox, tmp_path):
    config = base_config(
        sandbox,
        advertiser_ids=[ADV1],
        audiences=[
            {"stream": "users", "audience_name": "Plain", "identifiers": {"EMAIL_SHA256": "email"}}
        ],
    )
    messages = [
        schema_msg("users", ["email"]),
        record_msg("users", {"id": 1, "email": sha256("janedoe@gmail.com")}),
        record_msg("users", {"id": 2, "email": "alex@email.com"}),
    ]
    run = run_target(tmp_path, config, messages)
    assert run.returncode == 0, run.stderr[-3000:]
    (audience,) = sandbox.audiences(ADV1)
    assert audience["members"] == {"EMAIL_SHA256": [sha256("alex@email.com")]}
    assert stream_report(run, "users")["rejected"] == {"EMAIL_SHA256": {"already_hashed": 1}}


def test_a_name_match_of_the_wrong_type_stops_with_both_named(sandbox, tmp_path):
    config = base_config(
        sandbox,
        advertiser_ids=[ADV1],
        audiences=[
            {"stream": "users", "audience_name": "Shared", "identifiers": {"PHONE_SHA256": "phone"}}
        ],
    )
    first = run_target(
        tmp_path,
        config,
        [schema_msg("users", ["phone"]), record_msg("users", {"id": 1, "phone": "+14155550134"})],
        name="phone",
    )
    assert first.returncode == 0, first.stderr[-3000:]
    config["audiences"][0]["identifiers"] = {"EMAIL_SHA256": "email"}
    second = run_target(
        tmp_path,
        config,
        [
            schema_msg("users", ["email"]),
            record_msg("users", {"id": 1, "email": "a@b.co"}),
            state_msg({"bookmark": 9}),
        ],
        name="email",
    )
    assert second.returncode != 0
    assert second.states == []
    assert "type PHONE_SHA256" in second.stderr
    assert "customer-file audience of type EMAIL_SHA256" in second.stderr
    assert len(sandbox.audiences(ADV1)) == 1


def test_activate_version_delivers_the_last_complete_version(sandbox, tmp_path):
    """Each version is a complete set; the audience ends equal to the last one, which alone is
    sent (one CREATE, no update operation spent on a set already superseded)."""
    sandbox.app.config.match_rate = 1.0  # counts uploaded users; the matched floor: test_sandbox
    config = base_config(
        sandbox,
        advertiser_ids=[ADV1],
        audiences=[
            {
                "stream": "users",
                "audience_name": "Versions",
                "identifiers": {"EMAIL_SHA256": "email"},
            }
        ],
    )
    activate = [{"type": "ACTIVATE_VERSION", "stream": "users", "version": v} for v in (1, 2)]
    version1, version2 = range(1200), range(200, 1400)
    messages = [
        schema_msg("users", ["email"]),
        activate[0],  # SDK taps announce a version first
        *(record_msg("users", {"id": i, "email": f"v{i}@x.io"}) for i in version1),
        state_msg(1),
        activate[1],  # the next version starts: version 1 is complete
        *(record_msg("users", {"id": i, "email": f"v{i}@x.io"}) for i in version2),
        state_msg(2),
    ]
    run = run_target(tmp_path, config, messages)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.states == [2]
    (audience,) = sandbox.audiences(ADV1)
    assert audience["members"] == {"EMAIL_SHA256": sorted(sha256(f"v{i}@x.io") for i in version2)}
    actions = [a["action"] for a in stream_report(run, "users")["audiences"]]
    assert actions == ["CREATE"]
    assert "ACTIVATE_VERSION 2 for stream 'users': what was read before it is a complete " in (
        run.stderr
    )
