"""WSGI emulator of the TikTok Business API v1.3 endpoints the target uses, plus ``/_sandbox/``.

It is deliberately as strict as TikTok (tokens, advertiser access, file format, id types, batch
shapes) so that a client that passes here does not fail on the real API for a format reason.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import re
import secrets
import socket
import sqlite3
import threading
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import IO, Any

from werkzeug.wrappers import Request, Response

from .clock import Clock
from .faults import AFTER, DEFAULT_REDIRECT, FaultError, FaultRule, Faults, answer_of
from .store import Store

log = logging.getLogger("target_tiktok_audiences.sandbox")

BASE_PATH = "/open_api/v1.3"
ADMIN_PATH = "/_sandbox"
AUDIENCE_TYPE_CUSTOMER_FILE = "Customer File"
AUDIENCE_TYPE_PARTNER = "Partner Audience"
CALCULATE_TYPES = (
    "EMAIL_SHA256",
    "PHONE_SHA256",
    "IDFA_SHA256",
    "IDFA_MD5",
    "GAID_SHA256",
    "GAID_MD5",
)
SEGMENT_ID_TYPES = (
    "EMAIL_SHA256",
    "PHONE_SHA256",
    "IDFA_SHA256",
    "AAID_SHA256",
    "IDFA_MD5",
    "AAID_MD5",
)
UPDATE_ACTIONS = ("APPEND", "REMOVE", "REPLACE")
DEFAULT_TOKENS: dict[str, list[str]] = {
    "sandbox-token": ["7000000000000000001", "7000000000000000002"],
}
MAX_FILE_PATHS = 500
MAX_MAPPING_USERS = 10_000
PARTNER_NAME_MAX = 70  # longer names are cut to 67 characters + "..."
DAY = 86_400.0
# Owner of audiences shared in "from outside": an advertiser no sandbox token manages.
EXTERNAL_ADVERTISER = "7000000000000009999"
# TikTok's own words; TikTok documents no code for it, so the parameter-error code is used.
REPLACE_UNFINISHED = (
    "This replace operation is rejected as there is an existing unfinished replace operation. "
    "Please try again later. Recommend no more than one replace operation per day."
)
# WSGI environ key: seconds a create made under the `late_create` fault stays unlisted.
CREATE_DELAY = "sandbox.create_delay"

OK, NO_PERMISSION, PARAM_ERROR, RATE_LIMIT, BAD_TOKEN, SERVER_ERROR = (
    0,
    40001,
    40002,
    40100,
    40105,
    50002,
)

Handler = Callable[[Request, str, dict[str, Any]], dict[str, Any]]


class ApiError(Exception):
    """An error answered in TikTok's envelope (HTTP 200 unless ``http`` says otherwise)."""

    def __init__(self, code: int, message: str, http: int = 200) -> None:
        super().__init__(message)
        self.code, self.message, self.http = code, message, http


def param_error(message: str) -> ApiError:
    return ApiError(PARAM_ERROR, message)


@dataclass
class SandboxConfig:
    """Every realism rule is on by default, at TikTok's value; 0 switches a rule off."""

    tokens: dict[str, list[str]] = field(default_factory=lambda: dict(DEFAULT_TOKENS))
    # APPEND, REMOVE and REPLACE may not leave fewer members (a create may).
    min_audience_size: int = 1000
    # How long a CREATE or an update stays processing; a REPLACE waits for the last CREATE/REPLACE.
    replace_cooldown_seconds: float = DAY
    # A new partner audience refuses mappings this long (TikTok: about 1-2 minutes).
    partner_warmup_seconds: float = 90.0
    # APPEND + REMOVE + REPLACE per advertiser in any 24 h (Narrative's documented limit).
    max_updates_per_day: int = 24
    slow_seconds: float = 5.0
    max_upload_bytes: int = 50 * 1024 * 1024
    mapping_rate_limit: int | None = None  # segment/mapping calls per second per token
    max_audiences: int = 400  # TikTok's cap per ad account


# --- small validators: one per concept, each names the field in its message -----------------


def digest_length(id_type: str) -> int:
    return 32 if id_type.endswith("_MD5") else 64


_HEX = {n: re.compile(f"[0-9a-f]{{{n}}}") for n in (32, 64)}


def check_digest(value: Any, id_type: str, where: str) -> str:
    n = digest_length(id_type)
    if not isinstance(value, str) or not _HEX[n].fullmatch(value):
        raise param_error(f"{where}: must be {n} lowercase hex characters for {id_type}")
    return value


def check_choice(value: Any, name: str, allowed: Iterable[str]) -> str:
    allowed = tuple(allowed)
    if value is None or value == "":
        raise param_error(f"{name}: required, one of {', '.join(allowed)}")
    if value not in allowed:
        raise param_error(f"{name}: {value!r} is not supported; use one of {', '.join(allowed)}")
    return str(value)


def check_string(value: Any, name: str, lo: int = 1, hi: int | None = None) -> str:
    if not isinstance(value, str):
        raise param_error(f"{name}: required string")
    if len(value) < lo or (hi is not None and len(value) > hi):
        raise param_error(f"{name}: length must be {lo}..{hi if hi is not None else ''} characters")
    return value


def check_id(value: Any, name: str) -> str:
    """Numeric ids arrive as JSON strings (or numbers); both are read as digit strings."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.isdigit():
        raise param_error(f"{name}: required, a numeric id string")
    return value


def check_int(value: Any, name: str, lo: int, hi: int, default: int | None = None) -> int | None:
    if value is None:
        return default
    if isinstance(value, str) and value.isdigit():  # query parameters are strings
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise param_error(f"{name}: must be an integer in {lo}..{hi}")
    return value


def check_list(value: Any, name: str, lo: int, hi: int) -> list[Any]:
    if not isinstance(value, list):
        raise param_error(f"{name}: required, a list")
    if not lo <= len(value) <= hi:
        raise param_error(f"{name}: must hold {lo}..{hi} items, got {len(value)}")
    return value


def json_list_param(args: Any, name: str, hi: int = 100) -> list[str]:
    """Array query parameters are JSON strings: ``custom_audience_ids=["123"]``."""
    try:
        value = json.loads(args.get(name) or "")
    except ValueError:
        raise param_error(f'{name}: must be a JSON array string, e.g. ["123"]') from None
    return [check_id(v, name) for v in check_list(value, name, 1, hi)]


def scan_upload(
    src: IO[bytes], dst: IO[bytes], width: int, limit: int
) -> tuple[str, int, int, str]:
    """Copy an upload while hashing and checking it; returns (md5, size, lines, first_error).

    Streams in 1 MiB chunks: validation is a regex over whole lines, so 50 MB take well under
    a second and memory stays flat.
    """
    line_re = re.compile(rb"(?:[0-9a-f]{%d}\n)*" % width)
    md5, size, lines, carry, error = hashlib.md5(), 0, 0, b"", ""
    while chunk := src.read(1 << 20):
        md5.update(chunk)
        dst.write(chunk)
        size += len(chunk)
        if size > limit:
            return md5.hexdigest(), size, lines, ""
        if error:
            continue  # keep hashing so a signature mismatch is reported first
        buf = carry + chunk
        cut = buf.rfind(b"\n") + 1
        whole, carry = buf[:cut], buf[cut:]
        if not line_re.fullmatch(whole):
            bad = next(i for i, ln in enumerate(whole.split(b"\n")) if not _line_ok(ln, width))
            error = f"line {lines + bad + 1} is not {width} lowercase hex characters ending in \\n"
        lines += whole.count(b"\n")
        if len(carry) > 4096 and not error:
            error = f"line {lines + 1} is not {width} lowercase hex characters ending in \\n"
    if carry and not error:  # last line without a final newline is accepted
        if _line_ok(carry, width):
            lines += 1
        else:
            error = f"line {lines + 1} is not {width} lowercase hex characters ending in \\n"
    return md5.hexdigest(), size, lines, error


def _line_ok(line: bytes, width: int) -> bool:
    return re.fullmatch(rb"[0-9a-f]{%d}" % width, line) is not None


def _time(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def not_creator(audience_id: str, advertiser_id: str) -> ApiError:
    # TikTok documents no code for this; "no permission" is the closest documented one.
    return ApiError(
        NO_PERMISSION,
        f"No permission to operate audience {audience_id}: it was shared with advertiser "
        f"{advertiser_id} by another advertiser; only its creator (is_creator: true) can change it",
    )


def new_request_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S") + secrets.token_hex(10).upper()


# --- the application --------------------------------------------------------------------------


class SandboxApp:
    """The WSGI callable. ``store`` holds state; ``faults`` holds injected failures."""

    def __init__(self, store: Store, config: SandboxConfig | None = None) -> None:
        self.store = store
        self.clock: Clock = store.clock  # one clock for stored times and every rule
        self.config = config or SandboxConfig()
        self.faults = Faults()
        self.stopping = threading.Event()  # cuts `slow` sleeps short when the server stops
        self._mapping_calls: dict[str, deque[float]] = defaultdict(deque)
        self._rate_lock = threading.Lock()
        self.routes: dict[str, tuple[str, Handler]] = {
            "/user/info/": ("GET", self.user_info),
            "/advertiser/info/": ("GET", self.advertiser_info),
            "/dmp/custom_audience/file/upload/": ("POST", self.file_upload),
            "/dmp/custom_audience/create/": ("POST", self.audience_create),
            "/dmp/custom_audience/update/": ("POST", self.audience_update),
            "/dmp/custom_audience/list/": ("GET", self.audience_list),
            "/dmp/custom_audience/get/": ("GET", self.audience_get),
            "/segment/audience/": ("POST", self.segment_audience),
            "/segment/mapping/": ("POST", self.segment_mapping),
        }
        self.admin_routes: dict[tuple[str, str], Callable[[Request], dict[str, Any]]] = {
            ("GET", "/faults"): lambda r: {"faults": self.faults.rules()},
            ("POST", "/faults"): self._admin_add_fault,
            ("DELETE", "/faults"): lambda r: self.clear_faults(),
            ("POST", "/revoke_token"): lambda r: self._admin_call(r, self.revoke_token, "token"),
            ("POST", "/revoke_advertiser"): lambda r: self._admin_call(
                r, self.revoke_advertiser, "token", "advertiser_id"
            ),
            ("POST", "/tokens"): lambda r: self._admin_call(
                r, self.add_token, "token", "advertiser_ids"
            ),
            ("GET", "/audiences"): lambda r: {
                "audiences": self.dump_audiences(r.args.get("advertiser_id"))
            },
            ("GET", "/calls"): lambda r: {"calls": self.store.calls()},
            ("POST", "/reset"): lambda r: self.reset(),
            ("GET", "/clock"): lambda r: self.clock_state(),
            ("POST", "/clock"): self._admin_clock,
            ("POST", "/share"): self._admin_share,
        }
        self._grant_configured_tokens()

    # --- WSGI plumbing ------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        # Closing the request closes its uploaded files (spooled temp files) at once, not at
        # garbage collection, where they raise ResourceWarning in the tests' process.
        with Request(environ) as request:
            path = request.path
            if path.startswith(ADMIN_PATH + "/"):
                response = self.handle_admin(request, path[len(ADMIN_PATH) :])
            else:
                response = self.handle_api(request, path)
        return response(environ, start_response)

    def handle_api(self, request: Request, full_path: str) -> Response:
        # Outside the base path nothing matches: a client with a wrong base URL must notice.
        inside = full_path.startswith(BASE_PATH + "/")
        path = full_path[len(BASE_PATH) :] if inside else full_path
        call: dict[str, Any] = {"method": request.method, "path": path}
        request_id = new_request_id()
        rule = self.faults.pick(path) if inside else None
        if rule is not None and rule.kind not in AFTER:
            return self.fault_response(request, rule, call, request_id)
        kind = rule.kind if rule else None
        seconds = (rule.slow_seconds if rule else None) or self.config.slow_seconds
        if kind == "late_create":
            request.environ[CREATE_DELAY] = seconds
        try:
            data = self.dispatch(request, path, call)
            code, message, http = OK, "OK", 200
        except ApiError as exc:
            data, code, message, http = {}, exc.code, exc.message, exc.http
        except Exception:  # a sandbox bug must still answer in the envelope
            log.exception("sandbox error on %s %s", request.method, path)
            data, code, message, http = {}, SERVER_ERROR, "Internal sandbox error", 200
        dropped = kind in ("drop_after", "late_create")
        self.record(call, code, None if dropped else http, kind, request_id)
        if dropped:  # processed, but the client hears nothing
            return self.drop(request)
        if kind == "slow":  # processed already: the client times out although the server acted
            self.stopping.wait(seconds)
        body = self.body(code, message, None if kind == "no_data" else data, request_id)
        if kind == "drop_mid_body":
            return self.cut_short(request, body, http)
        if kind == "trickle":
            return self.trickle(body, http, seconds)
        return Response(body, status=http, mimetype="application/json")

    def dispatch(self, request: Request, path: str, call: dict[str, Any]) -> dict[str, Any]:
        route = self.routes.get(path) if request.path.startswith(BASE_PATH + "/") else None
        if route is None:
            raise ApiError(
                PARAM_ERROR,
                f"unknown path {request.path!r}; API paths start with {BASE_PATH}/ and end with /",
                http=404,
            )
        method, handler = route
        if request.method != method:
            raise param_error(f"method {request.method} is not allowed for {path}; use {method}")
        return handler(request, self.authenticate(request), call)

    def fault_response(
        self, request: Request, rule: FaultRule, call: dict[str, Any], request_id: str
    ) -> Response:
        answer = answer_of(rule.kind, rule.message)
        if answer is not None:
            known, text = answer
            self.record(call, known, 200, rule.kind, request_id)
            return self.envelope(known, text, {}, request_id)
        if rule.kind == "redirect":
            # 307 keeps method and body: a client that follows it re-sends its token elsewhere.
            query = request.query_string.decode("latin-1")
            location = (rule.location or DEFAULT_REDIRECT).rstrip("/") + request.path
            self.record(call, None, 307, rule.kind, request_id)
            return Response(
                b"", status=307, headers={"Location": location + (f"?{query}" if query else "")}
            )
        code, http = {
            "rate_limit": (RATE_LIMIT, 200),
            "server_error": (SERVER_ERROR, 200),
            "http_503": (None, 503),
            "drop": (None, None),
        }[rule.kind]
        self.record(call, code, http, rule.kind, request_id)
        if rule.kind == "drop":
            return self.drop(request)
        if rule.kind == "http_503":
            html = "<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>"
            return Response(html, status=503, mimetype="text/html")
        message = "Too many requests" if code == RATE_LIMIT else "Internal service error"
        return self.envelope(code or 0, message, {}, request_id)

    @classmethod
    def drop(cls, request: Request) -> Response:
        """Close the connection with no answer; werkzeug's write then fails and is ignored."""
        cls.close_socket(request)
        return Response(b"", status=502)

    @staticmethod
    def close_socket(request: Request) -> None:
        sock = request.environ.get("werkzeug.socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cut_short(self, request: Request, body: bytes, http: int) -> Response:
        """Headers (with the full Content-Length) and half of the body, then the socket closes."""

        def chunks() -> Iterator[bytes]:
            yield body[: len(body) // 2]
            self.close_socket(request)

        return self.streamed(chunks(), len(body), http)

    def trickle(self, body: bytes, http: int, seconds: float) -> Response:
        """One byte at a time over ``seconds``: no single read waits long, the whole does."""
        pause = seconds / max(len(body), 1)

        def chunks() -> Iterator[bytes]:
            for i in range(len(body)):
                if self.stopping.wait(pause):
                    return  # the server is stopping: leave the answer cut short
                yield body[i : i + 1]

        return self.streamed(chunks(), len(body), http)

    @staticmethod
    def streamed(chunks: Iterator[bytes], length: int, http: int) -> Response:
        response = Response(
            chunks, status=http, mimetype="application/json", direct_passthrough=True
        )
        response.headers["Content-Length"] = str(length)
        return response

    @staticmethod
    def body(code: int, message: str, data: dict[str, Any] | None, request_id: str) -> bytes:
        """TikTok's envelope; ``data`` None leaves the key out (the `no_data` fault)."""
        body: dict[str, Any] = {"code": code, "message": message, "request_id": request_id}
        if data is not None:
            body["data"] = data
        return json.dumps(body).encode()

    @classmethod
    def envelope(
        cls, code: int, message: str, data: dict[str, Any], request_id: str, http: int = 200
    ) -> Response:
        body = cls.body(code, message, data, request_id)
        return Response(body, status=http, mimetype="application/json")

    def record(
        self,
        call: dict[str, Any],
        code: int | None,
        http: int | None,
        fault: str | None,
        request_id: str,
    ) -> None:
        call = {**call, "code": code, "http_status": http, "fault": fault, "request_id": request_id}
        try:
            self.store.log_call(call)
        except sqlite3.ProgrammingError:  # store closed: a `slow` call outlived stop()
            return
        extras = [f"{k}={call[k]}" for k in ("fault", "action", "users", "lines") if call.get(k)]
        parts = [call["method"], call["path"], f"code={code}", f"http={http}", *extras]
        log.info("%s", " ".join(parts))

    # --- shared checks ------------------------------------------------------------------------

    def authenticate(self, request: Request) -> str:
        token = request.headers.get("Access-Token")
        if not token:
            hint = (
                " (send Access-Token, not Authorization: Bearer)"
                if request.headers.get("Authorization")
                else ""
            )
            raise ApiError(BAD_TOKEN, f"Access token is missing{hint}")
        if not self.store.token_ok(token):
            raise ApiError(BAD_TOKEN, "Access token is invalid or has been revoked")
        return token

    def advertiser(self, token: str, value: Any, name: str = "advertiser_id") -> str:
        advertiser_id = check_id(value, name)
        if not self.store.can_access(token, advertiser_id):
            raise ApiError(
                NO_PERMISSION,
                f"No permission to operate advertiser {advertiser_id}: "
                "the access token is not authorised for it (or access was revoked)",
            )
        return advertiser_id

    @staticmethod
    def json_body(request: Request) -> dict[str, Any]:
        body = request.get_json(silent=True) if request.is_json else None
        if not isinstance(body, dict):
            raise param_error("request body must be a JSON object (Content-Type: application/json)")
        return body

    def library_audience(self, value: Any, advertiser_id: str, name: str) -> dict[str, Any]:
        """An audience the advertiser sees: its own or shared in, and already listed."""
        audience_id = check_id(value, name)
        audience = self.store.audience(audience_id)
        if audience is None or not self.in_library(audience, advertiser_id):
            raise param_error(
                f"{name}: audience {audience_id} does not exist for advertiser {advertiser_id}"
            )
        return audience

    def in_library(self, audience: dict[str, Any], advertiser_id: str) -> bool:
        if audience["visible_at"] > self.clock.now():  # a late create is not there yet
            return False
        owner = audience["advertiser_id"]
        return owner == advertiser_id or advertiser_id in self.store.shared_with(
            audience["audience_id"]
        )

    def own_audience(self, value: Any, advertiser_id: str, name: str) -> dict[str, Any]:
        """An audience the advertiser may change: only its creator may (40001 for a shared one)."""
        audience = self.library_audience(value, advertiser_id, name)
        if audience["advertiser_id"] != advertiser_id:
            raise not_creator(audience["audience_id"], advertiser_id)
        return audience

    def files(
        self, body: dict[str, Any], advertiser_id: str, calculate_type: str
    ) -> list[dict[str, Any]]:
        """file_paths: 1..500 uploads of this advertiser, all of the audience's calculate_type."""
        rows = []
        for i, fp in enumerate(check_list(body.get("file_paths"), "file_paths", 1, MAX_FILE_PATHS)):
            row = self.store.file(fp) if isinstance(fp, str) else None
            if row is None or row["advertiser_id"] != advertiser_id:
                raise param_error(
                    f"file_paths[{i}]: no uploaded file with this path for "
                    f"advertiser {advertiser_id}"
                )
            if row["calculate_type"] != calculate_type:
                raise param_error(
                    f"file_paths[{i}]: file has calculate_type "
                    f"{row['calculate_type']}, expected {calculate_type}"
                )
            rows.append(row)
        return rows

    def audience_row(self, a: dict[str, Any], viewer: str | None = None) -> dict[str, Any]:
        """An audience as ``viewer`` (default: its owner) sees it in list and get answers."""
        retention = a["retention_in_days"]
        is_creator = viewer is None or viewer == a["advertiser_id"]
        return {
            "audience_id": a["audience_id"],
            "name": a["name"],
            "advertiser_id": a["advertiser_id"],
            "audience_type": a["audience_type"],
            "calculate_type": a["calculate_type"],
            "cover_num": a["member_count"],
            "is_valid": a["member_count"] >= self.config.min_audience_size,
            "is_expiring": False,
            "is_creator": is_creator,
            "shared": not is_creator or bool(self.store.shared_with(a["audience_id"])),
            "retention_in_days": retention,
            "create_time": _time(a["created_at"]),
            "update_time": _time(a["updated_at"]),
            "expired_time": _time(a["created_at"] + retention * 86400) if retention else None,
        }

    def history_rows(self, audience_id: str) -> list[dict[str, Any]]:
        """Operations, oldest first; ``status`` says whether TikTok is still processing one."""
        done_before = self.clock.now() - self.config.replace_cooldown_seconds
        return [
            {
                "action": h["action"],
                "status": "PROCESSING" if h["created_at"] > done_before else "COMPLETED",
                "opt_time": _time(h["created_at"]),
                "editor": "sandbox",
                "action_detail": f"{h['action']} with {len(json.loads(h['file_paths']))} file(s); "
                f"{h['member_count']} members after",
                "file_paths": json.loads(h["file_paths"]),
                "cover_num": h["member_count"],
            }
            for h in self.store.history(audience_id)
        ]

    def apply_files(
        self, c: Any, audience: dict[str, Any], action: str, files: list[dict[str, Any]]
    ) -> int:
        """Apply files to members inside an open transaction; returns the new member count."""
        aid, id_type = audience["audience_id"], audience["calculate_type"]
        delta = -self.store.clear_members(c, aid) if action == "REPLACE" else 0
        for f in files:
            digests = self.store.iter_digests(f["stored_name"])
            changed = self.store.apply_digests(c, aid, id_type, digests, remove=action == "REMOVE")
            delta += -changed if action == "REMOVE" else changed
        return self.store.set_count(c, aid, delta)

    def check_room(self, advertiser_id: str) -> None:
        if self.store.count_audiences(advertiser_id) >= self.config.max_audiences:
            raise param_error(
                f"advertiser {advertiser_id} already has {self.config.max_audiences} "
                "custom audiences, the maximum per ad account"
            )

    # --- API endpoints ------------------------------------------------------------------------

    def user_info(self, request: Request, token: str, call: dict[str, Any]) -> dict[str, Any]:
        return {
            "core_user_id": "7000000000000000000",
            "display_name": "Sandbox User",
            "email": "sandbox-user@example.com",
            "create_time": 1700000000,
        }

    def advertiser_info(self, request: Request, token: str, call: dict[str, Any]) -> dict[str, Any]:
        ids = json_list_param(request.args, "advertiser_ids")
        out = []
        for advertiser_id in ids:
            self.advertiser(token, advertiser_id, "advertiser_ids")
            row = self.store.advertiser(advertiser_id) or {"name": advertiser_id}
            out.append(
                {
                    "advertiser_id": advertiser_id,
                    "name": row["name"],
                    "status": "STATUS_ENABLE",
                    "currency": "USD",
                    "timezone": "Etc/GMT",
                    "role": "ROLE_ADVERTISER",
                }
            )
        call["advertiser_id"] = ",".join(ids)
        return {"list": out}

    def file_upload(self, request: Request, token: str, call: dict[str, Any]) -> dict[str, Any]:
        # werkzeug spools big uploads to a temp file; scan_upload stops reading past the limit.
        limit, form, uploads = self.config.max_upload_bytes, request.form, request.files
        advertiser_id = call["advertiser_id"] = self.advertiser(token, form.get("advertiser_id"))
        calculate_type = check_choice(form.get("calculate_type"), "calculate_type", CALCULATE_TYPES)
        upload = uploads.get("file")
        if upload is None:
            raise param_error("file: required (multipart file field)")
        file_name = upload.filename or ""
        if not file_name.endswith((".csv", ".txt")):
            raise param_error("file: file name must end in .csv or .txt")
        signature = check_string(form.get("file_signature"), "file_signature", 1, 64)
        stored_name = secrets.token_hex(16) + ".txt"
        dest = self.store.files_dir / stored_name
        try:
            with dest.open("wb") as out:
                md5, size, lines, error = scan_upload(
                    upload.stream, out, digest_length(calculate_type), limit
                )
            call["lines"] = lines
            if size > limit:
                raise param_error(f"file: larger than the {limit} byte limit")
            if size == 0:
                raise param_error("file: the file is empty")
            if signature != md5:
                raise param_error("file_signature: does not match the MD5 hex digest of the file")
            if error:
                raise param_error(f"file: {error} ({calculate_type})")
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
        file_path = f"dmp/{advertiser_id}/{secrets.token_hex(12)}/{file_name}"
        self.store.add_file(
            {
                "file_path": file_path,
                "advertiser_id": advertiser_id,
                "calculate_type": calculate_type,
                "file_name": file_name,
                "line_count": lines,
                "size_bytes": size,
                "md5": md5,
                "stored_name": stored_name,
                "created_at": self.clock.now(),
            }
        )
        return {"file_path": file_path, "size": size}

    def audience_create(self, request: Request, token: str, call: dict[str, Any]) -> dict[str, Any]:
        body = self.json_body(request)
        advertiser_id = call["advertiser_id"] = self.advertiser(token, body.get("advertiser_id"))
        name = check_string(body.get("custom_audience_name"), "custom_audience_name", 1, 128)
        calculate_type = check_choice(body.get("calculate_type"), "calculate_type", CALCULATE_TYPES)
        retention = check_int(body.get("retention_in_days"), "retention_in_days", 1, 365)
        files = self.files(body, advertiser_id, calculate_type)
        call.update(files=len(files), lines=sum(f["line_count"] for f in files))
        self.check_room(advertiser_id)
        with self.store.transaction() as c:
            audience_id = self.store.create_audience(
                c,
                advertiser_id=advertiser_id,
                name=name,
                calculate_type=calculate_type,
                audience_type=AUDIENCE_TYPE_CUSTOMER_FILE,
                retention_in_days=retention,
                visible_after=request.environ.get(CREATE_DELAY, 0.0),
            )
            audience = {"audience_id": audience_id, "calculate_type": calculate_type}
            count = self.apply_files(c, audience, "APPEND", files)
            self.store.add_history(c, audience_id, "CREATE", [f["file_path"] for f in files], count)
        return {"custom_audience_id": audience_id}

    def audience_update(self, request: Request, token: str, call: dict[str, Any]) -> dict[str, Any]:
        body = self.json_body(request)
        advertiser_id = call["advertiser_id"] = self.advertiser(token, body.get("advertiser_id"))
        audience = self.own_audience(
            body.get("custom_audience_id"), advertiser_id, "custom_audience_id"
        )
        if audience["audience_type"] != AUDIENCE_TYPE_CUSTOMER_FILE:
            raise param_error(
                f"custom_audience_id: audience {audience['audience_id']} is a "
                f"{audience['audience_type']}; only customer-file audiences can be "
                "updated with files"
            )
        # TikTok's default action is REPLACE when the field is absent.
        action = call["action"] = check_choice(
            body.get("action", "REPLACE"), "action", UPDATE_ACTIONS
        )
        files = self.files(body, advertiser_id, audience["calculate_type"])
        call.update(files=len(files), lines=sum(f["line_count"] for f in files))
        self.check_daily_updates(advertiser_id)
        if action == "REPLACE":
            self.check_replace_unfinished(audience["audience_id"])
        minimum = self.config.min_audience_size
        with self.store.transaction() as c:
            count = self.apply_files(c, audience, action, files)
            if count < minimum:  # raising rolls the whole update back
                raise param_error(
                    f"The audience would have {count} users after {action}, below the minimum "
                    f"of {minimum} users; nothing was changed"
                )
            self.store.add_history(
                c, audience["audience_id"], action, [f["file_path"] for f in files], count
            )
        return {"custom_audience_id": audience["audience_id"]}

    def check_replace_unfinished(self, audience_id: str) -> None:
        window = self.config.replace_cooldown_seconds
        # Stricter reading: the create counts as an unfinished replace while it is processing.
        last = self.store.last_action_time(audience_id, ("CREATE", "REPLACE"))
        if window > 0 and last is not None and self.clock.now() - last < window:
            raise param_error(REPLACE_UNFINISHED)

    def check_daily_updates(self, advertiser_id: str) -> None:
        limit = self.config.max_updates_per_day
        if limit <= 0:
            return
        # A rolling 24 h (a calendar day would allow twice the limit around midnight);
        # refused updates are not counted.
        used, oldest = self.store.actions_since(
            advertiser_id, UPDATE_ACTIONS, self.clock.now() - DAY
        )
        if used >= limit and oldest is not None:
            raise param_error(
                f"Advertiser {advertiser_id} has used its {limit} custom audience update "
                "operations (APPEND, REMOVE, REPLACE) of the last 24 hours; nothing was changed; "
                f"try again after {_time(oldest + DAY)} UTC"
            )

    def audience_list(self, request: Request, token: str, call: dict[str, Any]) -> dict[str, Any]:
        args = request.args
        advertiser_id = call["advertiser_id"] = self.advertiser(token, args.get("advertiser_id"))
        page = check_int(args.get("page"), "page", 1, 1_000_000, 1) or 1
        page_size = check_int(args.get("page_size"), "page_size", 1, 100, 10) or 10
        total = self.store.count_library(advertiser_id)
        rows = self.store.library(advertiser_id, limit=page_size, offset=(page - 1) * page_size)
        return {
            "list": [self.audience_row(a, advertiser_id) for a in rows],
            "page_info": {
                "page": page,
                "page_size": page_size,
                "total_number": total,
                "total_page": math.ceil(total / page_size),
            },
        }

    def audience_get(self, request: Request, token: str, call: dict[str, Any]) -> dict[str, Any]:
        advertiser_id = call["advertiser_id"] = self.advertiser(
            token, request.args.get("advertiser_id")
        )
        ids = json_list_param(request.args, "custom_audience_ids")
        audiences = [self.library_audience(i, advertiser_id, "custom_audience_ids") for i in ids]
        return {
            "list": [
                {
                    "audience_details": self.audience_row(a, advertiser_id),
                    "audience_history": self.history_rows(a["audience_id"]),
                }
                for a in audiences
            ]
        }

    def segment_audience(
        self, request: Request, token: str, call: dict[str, Any]
    ) -> dict[str, Any]:
        body = self.json_body(request)
        advertiser_id = call["advertiser_id"] = self.advertiser(token, body.get("advertiser_id"))
        if "id_type" in body:
            raise param_error("id_type: this field is retired; do not send it")
        call["action"] = check_choice(body.get("action"), "action", ["create"])
        name = check_string(body.get("custom_audience_name"), "custom_audience_name", 1, 1024)
        if len(name) > PARTNER_NAME_MAX:  # TikTok cuts long names instead of rejecting them
            name = name[: PARTNER_NAME_MAX - 3] + "..."
        self.check_room(advertiser_id)
        with self.store.transaction() as c:
            audience_id = self.store.create_audience(
                c,
                advertiser_id=advertiser_id,
                name=name,
                audience_type=AUDIENCE_TYPE_PARTNER,
                calculate_type=None,
                retention_in_days=None,
                visible_after=request.environ.get(CREATE_DELAY, 0.0),
            )
            self.store.add_history(c, audience_id, "CREATE", [], 0)
        return {"audience_id": audience_id}

    def segment_mapping(self, request: Request, token: str, call: dict[str, Any]) -> dict[str, Any]:
        self.check_mapping_rate(token)
        body = self.json_body(request)
        advertisers = [
            self.advertiser(token, v, "advertiser_ids")
            for v in check_list(body.get("advertiser_ids"), "advertiser_ids", 1, 100)
        ]
        call["advertiser_id"] = ",".join(advertisers)
        action = call["action"] = check_choice(body.get("action"), "action", ["add", "delete"])
        schema = [
            check_choice(v, f"id_schema[{i}]", SEGMENT_ID_TYPES)
            for i, v in enumerate(
                check_list(body.get("id_schema"), "id_schema", 1, len(SEGMENT_ID_TYPES))
            )
        ]
        if len(set(schema)) != len(schema):
            raise param_error("id_schema: duplicate id types")
        users = check_list(body.get("batch_data"), "batch_data", 1, MAX_MAPPING_USERS)
        call["users"] = len(users)
        # Validate the whole batch before touching anything: it succeeds or fails as a whole.
        groups: dict[tuple[str, str], list[str]] = defaultdict(list)
        for u, user in enumerate(users):
            for aid, id_type, digest in self.user_slots(user, schema, f"batch_data[{u}]"):
                groups[(aid, id_type)].append(digest)
        for aid in {aid for aid, _ in groups}:
            self.check_partner_audience(aid, advertisers)
        with self.store.transaction() as c:
            for (aid, id_type), digests in groups.items():
                changed = self.store.apply_digests(
                    c, aid, id_type, digests, remove=action == "delete"
                )
                self.store.set_count(c, aid, -changed if action == "delete" else changed)
        return {}

    @staticmethod
    def user_slots(user: Any, schema: list[str], where: str) -> list[tuple[str, str, str]]:
        """A user's (audience_id, id_type, digest) triples; a slot is {} or {id, audience_ids}."""
        if not isinstance(user, list) or len(user) != len(schema):
            raise param_error(
                f"{where}: must be a list of len(id_schema) = {len(schema)} "
                "elements, one per id_schema entry ({} for a missing identifier)"
            )
        out: list[tuple[str, str, str]] = []
        for i, slot in enumerate(user):
            if slot == {}:
                continue
            if not isinstance(slot, dict) or set(slot) != {"id", "audience_ids"}:
                raise param_error(
                    f'{where}[{i}]: must be {{}} or {{"id": <digest>, "audience_ids": [..]}}'
                )
            digest = check_digest(slot["id"], schema[i], f"{where}[{i}].id")
            ids = check_list(slot["audience_ids"], f"{where}[{i}].audience_ids", 1, 100)
            out.extend((check_id(a, f"{where}[{i}].audience_ids"), schema[i], digest) for a in ids)
        if not out:
            raise param_error(f"{where}: every user needs at least one identifier")
        return out

    def check_partner_audience(self, audience_id: str, advertisers: list[str]) -> None:
        audience = self.store.audience(audience_id)
        seen_by = [a for a in advertisers if audience and self.in_library(audience, a)]
        if audience is None or not seen_by:
            raise param_error(
                f"audience_ids: audience {audience_id} does not exist for advertiser_ids"
            )
        if audience["advertiser_id"] not in seen_by:
            raise not_creator(audience_id, seen_by[0])
        if audience["audience_type"] != AUDIENCE_TYPE_PARTNER:
            raise param_error(
                f"audience_ids: audience {audience_id} is a "
                f"{audience['audience_type']} audience; only partner audiences "
                "created with segment/audience accept mappings"
            )
        age = self.clock.now() - audience["created_at"]
        if age < self.config.partner_warmup_seconds:
            # TikTok answers HTTP 400 with a parameter error for a just-created audience.
            raise ApiError(
                PARAM_ERROR,
                f"audience_ids: audience {audience_id} was created {age:.0f} s ago and does not "
                "accept mappings yet; partner audiences accept mappings 1-2 minutes after "
                "creation, try again later",
                http=400,
            )

    def check_mapping_rate(self, token: str) -> None:
        limit = self.config.mapping_rate_limit
        if not limit:
            return
        now = self.clock.now()
        with self._rate_lock:
            window = self._mapping_calls[token]
            while window and now - window[0] >= 1.0:
                window.popleft()
            if len(window) >= limit:
                raise ApiError(RATE_LIMIT, "Too many requests")
            window.append(now)

    # --- admin --------------------------------------------------------------------------------

    def handle_admin(self, request: Request, path: str) -> Response:
        handler = self.admin_routes.get((request.method, path.rstrip("/") or "/"))
        try:
            if handler is None:
                raise ApiError(PARAM_ERROR, f"unknown admin endpoint {request.method} {path}", 404)
            data, code, message, http = handler(request), OK, "OK", 200
        except FaultError as exc:
            data, code, message, http = {}, PARAM_ERROR, str(exc), 400
        except ApiError as exc:
            data, code, message = {}, exc.code, exc.message
            http = exc.http if exc.http != 200 else 400
        return self.envelope(code, message, data, new_request_id(), http)

    def _admin_add_fault(self, request: Request) -> dict[str, Any]:
        self.faults.add(FaultRule.from_dict(self.json_body(request)))
        return {"faults": self.faults.rules()}

    def _admin_call(
        self, request: Request, fn: Callable[..., dict[str, Any]], *names: str
    ) -> dict[str, Any]:
        body = self.json_body(request)
        missing = [n for n in names if n not in body]
        if missing:
            raise param_error(f"{', '.join(missing)}: required")
        return fn(*(body[n] for n in names))

    def _grant_configured_tokens(self) -> None:
        for token, advertisers in self.config.tokens.items():
            self.store.grant(token, advertisers)

    def add_token(self, token: str, advertiser_ids: list[str]) -> dict[str, Any]:
        self.store.grant(token, [check_id(a, "advertiser_ids") for a in advertiser_ids])
        return {"token_added": True}

    def revoke_token(self, token: str) -> dict[str, Any]:
        return {"revoked": self.store.revoke_token(token)}

    def revoke_advertiser(self, token: str, advertiser_id: str) -> dict[str, Any]:
        return {"revoked": self.store.revoke_advertiser(token, str(advertiser_id))}

    def clear_faults(self) -> dict[str, Any]:
        self.faults.clear()
        return {"faults": []}

    def reset(self) -> dict[str, Any]:
        self.faults.clear()
        self.clock.reset()
        self.store.reset()
        self._grant_configured_tokens()
        with self._rate_lock:
            self._mapping_calls.clear()
        return {"reset": True}

    def clock_state(self) -> dict[str, Any]:
        return {"now": _time(self.clock.now()), "offset_seconds": self.clock.offset}

    def advance_clock(self, seconds: object) -> dict[str, Any]:
        """Skip ahead ("next day") without sleeping; every time-based rule follows."""
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise param_error("advance_seconds: required, a number of seconds")
        try:
            self.clock.advance(float(seconds))
        except ValueError as exc:
            raise param_error(str(exc)) from None
        return self.clock_state()

    def _admin_clock(self, request: Request) -> dict[str, Any]:
        return self.advance_clock(self.json_body(request).get("advance_seconds"))

    def share_audience(
        self,
        advertiser_id: str,
        audience_id: str | None = None,
        *,
        name: str = "Shared audience",
        owner_advertiser_id: str = EXTERNAL_ADVERTISER,
        partner: bool = False,
    ) -> str:
        """Share an audience into ``advertiser_id``; without ``audience_id``, first create one
        (EMAIL_SHA256 customer file, or partner) owned by ``owner_advertiser_id``."""
        advertiser_id = check_id(advertiser_id, "advertiser_id")
        if audience_id is None:
            owner = check_id(owner_advertiser_id, "owner_advertiser_id")
            if owner == advertiser_id:
                raise param_error("owner_advertiser_id: must differ from advertiser_id")
            self.check_room(advertiser_id)
            with self.store.transaction() as c:
                audience_id = self.store.create_audience(
                    c,
                    advertiser_id=owner,
                    name=check_string(name, "name", 1, 128),
                    audience_type=AUDIENCE_TYPE_PARTNER if partner else AUDIENCE_TYPE_CUSTOMER_FILE,
                    calculate_type=None if partner else "EMAIL_SHA256",
                    retention_in_days=None,
                )
                self.store.add_history(c, audience_id, "CREATE", [], 0)
        else:
            audience_id = check_id(audience_id, "audience_id")
            row = self.store.audience(audience_id)
            if row is None or row["advertiser_id"] == advertiser_id:
                raise param_error(
                    f"audience_id: audience {audience_id} does not exist or already belongs "
                    f"to advertiser {advertiser_id}"
                )
            self.check_room(advertiser_id)
        self.store.share(audience_id, advertiser_id)
        return audience_id

    def _admin_share(self, request: Request) -> dict[str, Any]:
        body = self.json_body(request)
        allowed = {"advertiser_id", "audience_id", "name", "owner_advertiser_id", "partner"}
        if unknown := sorted(set(body) - allowed):
            raise param_error(f"unknown fields {unknown}; use {sorted(allowed)}")
        if "advertiser_id" not in body:
            raise param_error("advertiser_id: required")
        options = {k: body[k] for k in ("name", "owner_advertiser_id", "partner") if k in body}
        audience_id = self.share_audience(body["advertiser_id"], body.get("audience_id"), **options)
        return {"audience_id": audience_id}

    def dump_audiences(self, advertiser_id: str | None = None) -> list[dict[str, Any]]:
        """Audiences with full member lists and history: the test oracle."""
        return [
            {
                **self.audience_row(a),
                "members": self.store.members(a["audience_id"]),
                "history": self.history_rows(a["audience_id"]),
            }
            for a in reversed(self.store.audiences(advertiser_id))
        ]
