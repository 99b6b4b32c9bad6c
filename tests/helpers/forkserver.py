"""The fork server behind helpers.cli: the package imported once, one fresh process per run.

Run as a script by helpers.cli (never imported by tests). It imports the console scripts'
entry points, then accepts one connection per run on a Unix socket. For each, it forks a
keeper, which forks the run's process and reports how it ended; the server itself never
waits, so runs started at once (concurrency tests) run at once.

The run's process sets up what a fresh process of the console script would have: argv, the
environment (os.environ, so putenv too), the working directory, stdin from a file and stdout
and stderr into files, a new random seed and tempfile's directory unset; then it calls the
entry point as the console script does (`sys.exit(main())`) and exits through the
interpreter's own shutdown (threads joined, atexit handlers, buffers flushed). A signal that
kills it (a test hook's SIGKILL) is reported as a negative code, as subprocess does.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import sys
import tempfile
from importlib.metadata import entry_points
from typing import Any

SCRIPTS = ("target-tiktok-audiences", "tiktok-audiences-status")


def _load() -> dict[str, Any]:
    found = {ep.name: ep for ep in entry_points(group="console_scripts") if ep.name in SCRIPTS}
    return {name: found[name].load() for name in SCRIPTS}


def _read_request(conn: socket.socket) -> dict[str, Any]:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            raise EOFError("the client closed the connection")
        data += chunk
    request: dict[str, Any] = json.loads(data)
    return request


def _become_the_run(request: dict[str, Any], entry: Any) -> None:
    """In the run's process: the console script's start, then its exit (never returns)."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    for fd, (path, flags) in enumerate(
        (
            (request["stdin"], os.O_RDONLY),
            (request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
            (request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
        )
    ):
        opened = os.open(path, flags, 0o600)
        os.dup2(opened, fd)
        os.close(opened)
    sys.argv = list(request["argv"])
    random.seed()
    tempfile.tempdir = None  # TMPDIR is read again, as a fresh process reads it
    sys.exit(entry())


def _keep(
    conn: socket.socket, listener: socket.socket, entries: dict[str, Any]
) -> tuple[dict[str, Any], Any]:
    """In the keeper: start the run, report its pid, wait for it, report how it ended. Returns
    only in the run's process (the request and its entry point)."""
    try:
        listener.close()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        request = _read_request(conn)
        pid = os.fork()
        if pid == 0:
            conn.close()
            return request, entries[request["script"]]
        conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        conn.sendall(json.dumps({"returncode": code}).encode() + b"\n")
    except BaseException:
        os._exit(1)
    os._exit(0)


def serve(path: str) -> tuple[dict[str, Any], Any]:
    """Fork a keeper per connection, forever; returns only in a run's process."""
    entries = _load()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # keepers are reaped by the kernel
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    listener.settimeout(5)
    parent = os.getppid()
    os.write(1, b"ready\n")  # unbuffered: a run's sys.stdout must start empty
    while True:
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            if os.getppid() != parent:  # the test process died without stopping it
                os._exit(0)
            continue
        conn.setblocking(True)
        if os.fork() == 0:
            return _keep(conn, listener, entries)
        conn.close()


if __name__ == "__main__":
    sys.path.pop(0)  # tests/helpers: its modules must not shadow the package's imports
    # Below this line only in a run's process: the console script's start and exit, with no
    # frame of the server around it (SystemExit and tracebacks as the real script has them).
    _become_the_run(*serve(sys.argv[1]))
