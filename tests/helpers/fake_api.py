"""FakeAudienceAPI: an in-memory TikTok behind the client's typed seam (`AudienceAPI`).

It keeps what TikTok would hold (audiences per advertiser, their members, uploaded files) and
applies TikTok's rules strictly, so delivery tests can assert exact members without HTTP:
- customer-file audiences have one calculate_type; files are read at upload (digests only);
  create takes 1-500 files of that type; update needs `action` (APPEND, REMOVE or REPLACE);
- partner audiences hold members per Segment id type (GAID is AAID there); a mapping carries
  1-10,000 users, each with at least one identifier of the id_schema;
- only the creator may update an audience (shared-in rows are listed with owned=False);
- a CREATE or REPLACE stays processing (as in the sandbox) until `finish_processing`: a
  REPLACE is refused meanwhile, and nothing in the answers says so (TikTok shows no such state);
- optional: the 1,000 floor on updates, a daily update limit; scripted failures on the next
  call of a method, before or after it applied.
Every error is TikTok's envelope (code, message) passed through the client's own
classification (`error_for`), never an error built with the client's conclusion in it; list and
get answers are TikTok-shaped rows (documented fields only, history words in lowercase as a real
answer has them) read by the client's own parsing (`parse_audience_row`, `parse_audience_status`).
"""

from __future__ import annotations

import copy
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from target_tiktok_audiences.client import (
    SEGMENT_ID_TYPES,
    AudienceAPI,
    AudienceRow,
    AudienceStatus,
    CountedCalls,
    NewAudience,
    TikTokError,
    TransientError,
    UserBatch,
    error_for,
    parse_audience_row,
    parse_audience_status,
)
from target_tiktok_audiences.report import CallStats, RunReport

T = TypeVar("T")

PARTNER = "partner"
CUSTOMER_FILE_TYPE = "Customer File"
PARTNER_TYPE = "Partner"
FILE_ACTIONS = ("APPEND", "REMOVE", "REPLACE")
MAPPING_ACTIONS = ("add", "delete")
# Written here rather than imported, so that a wrong constant in client.py fails the tests.
FLOOR = 1_000
MAX_FILES_PER_CALL = 500
MAX_USERS_PER_CALL = 10_000
MAX_NAME = 128
PARTNER_NAME_MAX = 70
MAX_FILE_BYTES = 50 * 1024 * 1024
LIST_PAGE = 100
PERMISSION_CODE = 40001
PARAMETER_CODE = 40002
# The calls that change one audience: TikTok's answer to them is classified as such.
AUDIENCE_CALLS = frozenset(
    {"create_customer_audience", "update_customer_audience", "create_partner_audience", "map_users"}
)
# TikTok's words, from ../shared/tiktok-api.md: the SDK's floor and the unfinished REPLACE.
FLOOR_MESSAGE = "The audience size cannot be less than 1,000 after this operation"
REPLACE_UNFINISHED = (
    "This replace operation is rejected as there is an existing unfinished replace operation. "
    "Please try again later. Recommend no more than one replace operation per day."
)
METHODS = (
    "preflight",
    "list_audiences",
    "get_audience",
    "upload_file",
    "create_customer_audience",
    "update_customer_audience",
    "create_partner_audience",
    "map_users",
)
_HEX = {"SHA256": re.compile(r"^[0-9a-f]{64}$"), "MD5": re.compile(r"^[0-9a-f]{32}$")}


@dataclass
class FakeAudience:
    """One audience as TikTok holds it."""

    audience_id: str
    advertiser_id: str
    name: str
    kind: str  # a calculate_type, or PARTNER
    owned: bool = True
    members: dict[str, set[str]] = field(default_factory=dict)  # contract / id type -> digests
    actions: list[str] = field(default_factory=list)  # CREATE, APPEND, ..., add, delete
    processing: bool = False  # the last CREATE or REPLACE is still being processed
    listed_type: str | None = None  # audience_type in the list, when not the usual one

    @property
    def size(self) -> int:
        return sum(len(m) for m in self.members.values())


@dataclass(frozen=True)
class FakeCall:
    """One call as the fake saw it (no digests: the members say what arrived)."""

    method: str
    advertiser_id: str | None
    audience_id: str | None = None
    action: str | None = None
    size: int = 0  # files of a create/update, lines of an upload, users of a mapping
    name: str | None = None
    warmup_until: float | None = None


@dataclass(frozen=True)
class _Failure:
    error: TikTokError | tuple[int, str]  # a network failure, or TikTok's (code, message)
    applied: bool  # the call took effect before the error (a lost answer)
    advertiser_id: str | None  # None: whichever advertiser calls next


class _World:
    """What every view of one fake shares: TikTok's state, the call log, the totals."""

    def __init__(
        self,
        advertiser_ids: Iterable[str],
        *,
        min_audience_size: int | None,
        max_updates_per_day: int | None,
        max_retries: int,
    ) -> None:
        self.advertisers = tuple(advertiser_ids)
        self.audiences: dict[str, list[FakeAudience]] = {a: [] for a in self.advertisers}
        self.uploads: dict[str, tuple[str, str, frozenset[str]]] = {}  # path -> adv, type, ids
        self.calls: list[FakeCall] = []
        self.failures: dict[str, deque[_Failure]] = {}
        self.total = CallStats()
        self.min_audience_size = min_audience_size
        self.max_updates_per_day = max_updates_per_day
        self.updates: dict[str, int] = {}
        self.max_retries = max_retries
        self.serial = 0
        self.finished: list[RunReport] = []

    def next_id(self) -> str:
        self.serial += 1
        return str(1_800_000_000_000_000 + self.serial)


class FakeAudienceAPI(CountedCalls):
    """In-memory AudienceAPI; views from `with_stats` share one world and count into stats."""

    def __init__(
        self,
        advertiser_ids: Iterable[str],
        *,
        min_audience_size: int | None = None,
        max_updates_per_day: int | None = None,
        max_retries: int = 3,
    ) -> None:
        """min_audience_size=1000 turns TikTok's floor on updates on."""
        self._world = _World(
            advertiser_ids,
            min_audience_size=min_audience_size,
            max_updates_per_day=max_updates_per_day,
            max_retries=max_retries,
        )
        super().__init__(self._world.total)

    # -- scripting and inspection (tests only) ------------------------------------------------

    def fail_next(
        self,
        method: str,
        error: TikTokError | tuple[int, str],
        *,
        applied: bool = False,
        advertiser_id: str | None = None,
    ) -> None:
        """Fail the next call of `method` (for `advertiser_id`, if given) with `error`, or with
        TikTok's answer (code, message) classified by the client as it would be over HTTP;
        applied: the call took effect before the error (its answer was lost)."""
        if method not in METHODS:
            raise ValueError(f"unknown AudienceAPI method {method!r}; one of {METHODS}")
        failure = _Failure(error, applied, advertiser_id)
        self._world.failures.setdefault(method, deque()).append(failure)

    @property
    def unused_failures(self) -> dict[str, int]:
        """Scripted failures no call consumed (a test expects none)."""
        return {m: len(q) for m, q in self._world.failures.items() if q}

    def add_audience(
        self,
        advertiser_id: str,
        name: str,
        kind: str,
        members: Mapping[str, Iterable[str]] | None = None,
        *,
        owned: bool = True,
        listed_type: str | None = None,
    ) -> str:
        """An audience that exists before the run (owned=False: shared in by another one;
        listed_type: the audience_type TikTok lists it with, e.g. one the target never saw)."""
        audience = FakeAudience(
            self._world.next_id(),
            self._need_advertiser(advertiser_id, "add_audience"),
            name,
            kind,
            owned=owned,
            members={k: set(v) for k, v in (members or {}).items()},
            listed_type=listed_type,
        )
        self._world.audiences[advertiser_id].append(audience)
        return audience.audience_id

    def audiences(self, advertiser_id: str) -> list[FakeAudience]:
        """A copy of the advertiser's audiences, in creation order."""
        return copy.deepcopy(self._world.audiences[advertiser_id])

    def named(self, advertiser_id: str, name: str) -> list[FakeAudience]:
        return [a for a in self.audiences(advertiser_id) if a.name == name]

    def members(self, advertiser_id: str, audience_id: str) -> dict[str, frozenset[str]]:
        """Members per contract (customer file) or Segment id type (partner); no empty sets."""
        audience = self._audience(advertiser_id, audience_id, "members")
        return {k: frozenset(v) for k, v in audience.members.items() if v}

    def finish_processing(self, advertiser_id: str, audience_id: str) -> None:
        """TikTok finished the audience's last CREATE or REPLACE."""
        self._audience(advertiser_id, audience_id, "finish_processing").processing = False

    def upload_digests(self, file_path: str) -> frozenset[str]:
        return self._world.uploads[file_path][2]

    @property
    def calls(self) -> list[FakeCall]:
        return list(self._world.calls)

    def methods_called(self) -> list[str]:
        return [c.method for c in self._world.calls]

    @property
    def reports(self) -> list[RunReport]:
        """The reports `finish` was given."""
        return list(self._world.finished)

    # -- AudienceAPI --------------------------------------------------------------------------

    def preflight(self, advertiser_ids: Sequence[str]) -> None:
        failure = self._enter(FakeCall("preflight", None))
        for advertiser_id in advertiser_ids:
            self._count()  # one cheap list call per advertiser, as TikTokClient does
            self._need_advertiser(advertiser_id, "Checking access to the advertiser's audiences")
        self._after(failure)

    def list_audiences(self, advertiser_id: str) -> Iterator[AudienceRow]:
        # Paged like TikTok (one call per page); rows of a page are read when it is fetched.
        page = 0
        while True:
            self._after(self._enter(FakeCall("list_audiences", advertiser_id)))
            audiences = self._world.audiences[
                self._need_advertiser(advertiser_id, "Listing custom audiences")
            ]
            rows = [_row(a) for a in audiences[page * LIST_PAGE : (page + 1) * LIST_PAGE]]
            yield from rows
            page += 1
            if page * LIST_PAGE >= len(audiences):
                return

    def get_audience(self, advertiser_id: str, audience_id: str) -> AudienceStatus:
        failure = self._enter(FakeCall("get_audience", advertiser_id, audience_id))
        audience = self._audience(advertiser_id, audience_id, f"Reading audience {audience_id}")
        row = {
            "audience_details": {**_answer_row(audience), "is_valid": True},
            # TikTok's own words (a real answer has `create`); no time: the fake has no clock.
            "audience_history": [
                {"action": a.lower(), "action_detail": "", "editor": "open_api", "msg": None}
                for a in audience.actions
            ],
        }
        status = parse_audience_status(row)
        self._after(failure)
        return status

    def upload_file(self, advertiser_id: str, calculate_type: str, path: Path) -> str:
        what = f"Uploading a {calculate_type} file"
        data = path.read_bytes()  # read now: the caller may delete the file after the upload
        failure = self._enter(FakeCall("upload_file", advertiser_id, size=data.count(b"\n")))
        self._need_advertiser(advertiser_id, what)
        self._need_contract(calculate_type, what, advertiser_id)
        if not path.name.endswith((".csv", ".txt")):
            raise self._parameter(what, advertiser_id, "file name must end in .csv or .txt")
        if len(data) > MAX_FILE_BYTES:
            raise self._parameter(what, advertiser_id, "file is larger than 50 MB")
        if not data or not data.endswith(b"\n"):
            raise self._parameter(what, advertiser_id, "file is empty or its last line has no \\n")
        lines = data.decode("utf-8").split("\n")[:-1]
        pattern = _HEX[calculate_type.rsplit("_", 1)[1]]
        if not all(pattern.match(line) for line in lines):
            raise self._parameter(
                what, advertiser_id, f"a line is not a lowercase {calculate_type}"
            )
        self._world.serial += 1
        file_path = f"fake-upload/{advertiser_id}/{self._world.serial:06d}-{path.name}"
        self._world.uploads[file_path] = (advertiser_id, calculate_type, frozenset(lines))
        self._count("bytes_uploaded", len(data))
        self._after(failure)
        return file_path

    def create_customer_audience(self, audience: NewAudience) -> str:
        advertiser_id, name, calculate_type = audience.key
        file_paths, retention_in_days = audience.file_paths, audience.retention_in_days
        what = f"Creating audience '{name}'"
        failure = self._enter(
            FakeCall("create_customer_audience", advertiser_id, size=len(file_paths), name=name)
        )
        self._need_advertiser(advertiser_id, what)
        self._need_contract(calculate_type, what, advertiser_id)
        if not 1 <= len(name) <= MAX_NAME:
            raise self._parameter(
                what, advertiser_id, "custom_audience_name must be 1-128 characters"
            )
        if retention_in_days is not None and not 1 <= retention_in_days <= 365:
            raise self._parameter(what, advertiser_id, "retention_in_days must be 1-365")
        digests = self._files(what, advertiser_id, calculate_type, file_paths)
        created = FakeAudience(
            self._world.next_id(),
            advertiser_id,
            name,
            calculate_type,
            members={calculate_type: set(digests)},
            actions=["CREATE"],
            processing=True,
        )
        self._world.audiences[advertiser_id].append(created)
        self._after(failure)
        return created.audience_id

    def update_customer_audience(
        self, advertiser_id: str, audience_id: str, file_paths: Sequence[str], action: str
    ) -> None:
        what = f"{action} on audience {audience_id}"
        failure = self._enter(
            FakeCall(
                "update_customer_audience",
                advertiser_id,
                audience_id,
                action=action,
                size=len(file_paths),
            )
        )
        audience = self._audience(advertiser_id, audience_id, what)
        if action not in FILE_ACTIONS:
            raise self._parameter(what, advertiser_id, f"action must be one of {FILE_ACTIONS}")
        if audience.kind == PARTNER:
            raise self._parameter(what, advertiser_id, "a partner audience takes no files")
        if not audience.owned:
            raise _refused(what, advertiser_id, NOT_CREATOR)
        digests = self._files(what, advertiser_id, audience.kind, file_paths)
        world = self._world
        if world.max_updates_per_day is not None:
            if world.updates.get(advertiser_id, 0) >= world.max_updates_per_day:
                raise _refused(what, advertiser_id, DAILY_LIMIT)
            world.updates[advertiser_id] = world.updates.get(advertiser_id, 0) + 1
        if action == "REPLACE" and audience.processing:
            raise _refused(what, advertiser_id, REPLACE_UNFINISHED)
        current = audience.members.get(audience.kind, set())
        if action == "APPEND":
            after = current | digests
        elif action == "REMOVE":
            after = current - digests
        else:
            after = set(digests)
        if world.min_audience_size is not None and len(after) < world.min_audience_size:
            raise _refused(what, advertiser_id, FLOOR_MESSAGE)
        audience.members[audience.kind] = after
        audience.actions.append(action)
        if action == "REPLACE":
            audience.processing = True
        self._after(failure)

    def create_partner_audience(self, advertiser_id: str, name: str) -> str:
        what = f"Creating partner audience '{name}'"
        failure = self._enter(FakeCall("create_partner_audience", advertiser_id, name=name))
        self._need_advertiser(advertiser_id, what)
        if not name:
            raise self._parameter(what, advertiser_id, "custom_audience_name is required")
        # TikTok cuts long partner names itself (67 characters + "...").
        stored = name if len(name) <= PARTNER_NAME_MAX else name[: PARTNER_NAME_MAX - 3] + "..."
        audience = FakeAudience(
            self._world.next_id(), advertiser_id, stored, PARTNER, actions=["CREATE"]
        )
        self._world.audiences[advertiser_id].append(audience)
        self._after(failure)
        return audience.audience_id

    def map_users(
        self, advertiser_id: str, audience_id: str, batch: UserBatch, *, ready: float | None = None
    ) -> None:
        action, contracts, users = batch.action, batch.contracts, batch.users
        what = f"Sending {len(users):,} users ({action}) to audience {audience_id}"
        failure = self._enter(
            FakeCall(
                "map_users",
                advertiser_id,
                audience_id,
                action=action,
                size=len(users),
                warmup_until=ready,
            )
        )
        audience = self._audience(advertiser_id, audience_id, what)
        if action not in MAPPING_ACTIONS:
            raise self._parameter(what, advertiser_id, f"action must be one of {MAPPING_ACTIONS}")
        if audience.kind != PARTNER:
            raise self._parameter(what, advertiser_id, "only partner audiences take mappings")
        if not audience.owned:
            raise _refused(what, advertiser_id, NOT_CREATOR)
        if not 1 <= len(users) <= MAX_USERS_PER_CALL:
            raise self._parameter(what, advertiser_id, "batch_data holds 1-10,000 users")
        if not contracts or len(set(contracts)) != len(contracts):
            raise self._parameter(what, advertiser_id, "id_schema is empty or repeats a type")
        for contract in contracts:
            self._need_contract(contract, what, advertiser_id)
        for user in users:
            if not user or not set(user) <= set(contracts):
                raise self._parameter(what, advertiser_id, "a user has no identifier of id_schema")
            for contract, digest in user.items():
                if not _HEX[contract.rsplit("_", 1)[1]].match(digest):
                    raise self._parameter(
                        what, advertiser_id, f"an id is not a lowercase {contract}"
                    )
        for user in users:
            for contract, digest in user.items():
                members = audience.members.setdefault(SEGMENT_ID_TYPES[contract], set())
                if action == "add":
                    members.add(digest)
                else:
                    members.discard(digest)
        audience.actions.append(action)
        self._after(failure)

    def retrying(self, func: Callable[[], T]) -> T:
        # No backoff sleeps in memory: transient errors are tried again at once, bounded.
        for _ in range(self._world.max_retries):
            try:
                return func()
            except TransientError:
                self.count_retry()
        return func()

    def finish(self, report: RunReport) -> None:
        self._world.finished.append(report)

    # -- internals ----------------------------------------------------------------------------

    def _enter(self, call: FakeCall) -> _Failure | None:
        """Log and count the call; raise a scripted failure now unless it applies first."""
        self._world.calls.append(call)
        self._count()
        queue = self._world.failures.get(call.method) or deque()
        failure = next((f for f in queue if f.advertiser_id in (None, call.advertiser_id)), None)
        if failure is not None:
            queue.remove(failure)
        if failure is not None and not failure.applied:
            raise _error_of(failure, call)
        return failure

    def _after(self, failure: _Failure | None) -> None:
        if failure is not None:
            raise _error_of(failure, self._world.calls[-1])

    def _parameter(self, what: str, advertiser_id: str, message: str) -> TikTokError:
        """A parameter error (40002), in the call being made (one audience's, or not)."""
        method = self._world.calls[-1].method
        return _tiktok(
            what, advertiser_id, PARAMETER_CODE, message, audience_call=method in AUDIENCE_CALLS
        )

    def _need_advertiser(self, advertiser_id: str, what: str) -> str:
        if advertiser_id not in self._world.audiences:
            raise _tiktok(
                what, advertiser_id, PERMISSION_CODE, "No permission to operate advertiser"
            )
        return advertiser_id

    def _need_contract(self, contract: str, what: str, advertiser_id: str) -> None:
        if contract not in SEGMENT_ID_TYPES:
            raise self._parameter(what, advertiser_id, f"unknown calculate_type {contract}")

    def _audience(self, advertiser_id: str, audience_id: str, what: str) -> FakeAudience:
        for audience in self._world.audiences[self._need_advertiser(advertiser_id, what)]:
            if audience.audience_id == audience_id:
                return audience
        raise self._parameter(what, advertiser_id, f"invalid audience ID {audience_id}")

    def _files(
        self, what: str, advertiser_id: str, calculate_type: str, file_paths: Sequence[str]
    ) -> set[str]:
        if not 1 <= len(file_paths) <= MAX_FILES_PER_CALL:
            raise self._parameter(what, advertiser_id, "file_paths holds 1-500 files")
        digests: set[str] = set()
        for file_path in file_paths:
            upload = self._world.uploads.get(file_path)
            if upload is None or upload[0] != advertiser_id:
                raise self._parameter(what, advertiser_id, "file_path unknown to this advertiser")
            if upload[1] != calculate_type:
                raise self._parameter(what, advertiser_id, "file calculate_type differs")
            digests |= upload[2]
        return digests


def _answer_row(audience: FakeAudience) -> dict[str, object]:
    """The audience as TikTok's list answer writes it (documented fields only)."""
    partner = audience.kind == PARTNER
    return {
        "audience_id": audience.audience_id,
        "name": audience.name,
        "audience_type": (PARTNER_TYPE if partner else CUSTOMER_FILE_TYPE)
        if audience.listed_type is None
        else audience.listed_type,
        "calculate_type": None if partner else audience.kind,
        "cover_num": audience.size,
        "is_creator": audience.owned,
        "shared": not audience.owned,
    }


def _row(audience: FakeAudience) -> AudienceRow:
    return parse_audience_row(_answer_row(audience))


# Words never matched by the client's hint table on purpose: the outcome must not depend on them.
NOT_CREATOR = "You are not the creator of this audience"
DAILY_LIMIT = "Exceeded the number of operations allowed for this ad account today"


def _tiktok(
    what: str, advertiser_id: str | None, code: int, message: str, *, audience_call: bool = False
) -> TikTokError:
    """TikTok's answer (code, message) as the client classifies it over HTTP."""
    return error_for(
        what, 200, code, message, "fake", advertiser_id=advertiser_id, audience_call=audience_call
    )


def _refused(what: str, advertiser_id: str, message: str) -> TikTokError:
    return _tiktok(what, advertiser_id, PARAMETER_CODE, message, audience_call=True)


def _error_of(failure: _Failure, call: FakeCall) -> TikTokError:
    if isinstance(failure.error, TikTokError):  # a network failure: no answer to classify
        return failure.error
    code, message = failure.error
    what = {
        "create_customer_audience": f"Creating audience '{call.name}'",
        "create_partner_audience": f"Creating partner audience '{call.name}'",
        "update_customer_audience": f"{call.action} on audience {call.audience_id}",
        "map_users": f"Sending {call.size:,} users ({call.action}) to audience {call.audience_id}",
    }.get(call.method, call.method)
    return _tiktok(
        what, call.advertiser_id, code, message, audience_call=call.method in AUDIENCE_CALLS
    )


def conforms(fake: FakeAudienceAPI) -> AudienceAPI:
    """Where mypy checks the fake against the protocol (structural typing)."""
    return fake
