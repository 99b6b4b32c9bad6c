"""WSGI emulator of the TikTok Business API v1.3 endpoints the target uses, plus ``/_sandbox/``.

It is deliberately as strict as TikTok (tokens, advertiser access, file format, id types, batch
shapes) so that a client that passes here does not fail on the real API for a format reason.

A reader finds one file per thing: `rules.py` (limits, codes, words), `checks.py` (field
validators), `base.py` (shared state and checks), one file per endpoint family (`account.py`,
`customer_file.py`, `segment.py`, `admin.py`), `faults.py`, and here the WSGI plumbing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import sqlite3
from collections.abc import Callable, Iterator
from typing import IO, Any

from werkzeug.formparser import FormDataParser
from werkzeug.wrappers import Request, Response

from .account import AccountEndpoints
from .admin import AdminEndpoints
from .checks import new_request_id
from .customer_file import CustomerFileEndpoints
from .faults import AFTER, DEFAULT_REDIRECT, FaultError, FaultRule, answer_of
from .rules import (
    ADMIN_PATH,
    BASE_PATH,
    CREATE_DELAY,
    OK,
    PARAM_ERROR,
    RATE_LIMIT,
    SERVER_ERROR,
    ApiError,
    Handler,
    SandboxConfig,
    param_error,
)
from .segment import SegmentEndpoints
from .store import Store

log = logging.getLogger("target_tiktok_audiences.sandbox")


class SandboxApp(AccountEndpoints, CustomerFileEndpoints, SegmentEndpoints, AdminEndpoints):
    """The WSGI callable. ``store`` holds state; ``faults`` holds injected failures."""

    def __init__(self, store: Store, config: SandboxConfig | None = None) -> None:
        super().__init__(store, config)
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
            ("POST", "/seed"): self._admin_seed,
            ("POST", "/audience"): self._admin_audience,
        }
        self._grant_configured_tokens()

    # --- WSGI plumbing ------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        # Closing the request closes its uploaded files (spooled temp files) at once, not at
        # garbage collection, where they raise ResourceWarning in the tests' process.
        with _Request(environ) as request:
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
        if kind in ("late_create", "late_listed"):
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


class _WholeTail:
    """A request body read in the parser's chunks, except that the last TAIL bytes always come
    in one piece: the closing multipart delimiter is never cut between two chunks.

    Werkzeug's MultipartDecoder adds a stray byte to the last part when a chunk ends inside
    the closing delimiter (pallets/werkzeug#3285, open on 3.1.8 and later): the sandbox would
    then check an upload the client never sent and refuse its file_signature.
    """

    TAIL = 4096

    def __init__(self, stream: IO[bytes], length: int) -> None:
        self._stream, self._left = stream, length

    def read(self, size: int = -1) -> bytes:
        if size < 0 or self._left - size < self.TAIL:
            size = self._left
        parts = []
        while size > 0:  # a socket may return less than asked: the tail must stay whole
            part = self._stream.read(size)
            if not part:
                break
            parts.append(part)
            size -= len(part)
            self._left -= len(part)
        return b"".join(parts)


class _FormParser(FormDataParser):
    def parse(
        self,
        stream: IO[bytes],
        mimetype: str,
        content_length: int | None,
        options: dict[str, str] | None = None,
    ) -> Any:
        if mimetype == "multipart/form-data" and content_length:
            stream = _WholeTail(stream, content_length)  # type: ignore[assignment]
        return super().parse(stream, mimetype, content_length, options)


class _Request(Request):
    form_data_parser_class = _FormParser
