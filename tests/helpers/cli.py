"""Running the console scripts in tests: a fresh process per run, without paying the imports.

The suite runs the target's CLI about 650 times, and importing it (the SDK, requests,
phonenumbers, ...) is most of a small run's CPU: about 0.35 s each, a third of the suite. Each
test process therefore starts one fork server (forkserver.py) that imports the package once;
every run is a new process forked from it, with its own argv, environment, working directory
and stdio, ending as the console script ends (exit code, or the signal that killed it). What
it runs is the console script's own entry point, from its first line to its exit.

TARGET_TIKTOK_AUDIENCES_TEST_CLI=exec runs the installed console script instead (the README
and Meltano tests, and test_cli_runner.py, always run the real executables).
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path

BIN = Path(sys.executable).parent
MODE_VARIABLE = "TARGET_TIKTOK_AUDIENCES_TEST_CLI"
_SERVER = Path(__file__).with_name("forkserver.py")


class _Server:
    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="tta-fork-")
        self.path = os.path.join(self.dir, "s")
        self.proc = subprocess.Popen(
            [sys.executable, str(_SERVER), self.path],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line != b"ready\n":
            raise RuntimeError(f"the CLI fork server did not start (it said {line!r})")
        atexit.register(self.stop)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _text(data: bytes) -> str:
    """As subprocess.run(text=True) reads it (UTF-8 here, universal newlines)."""
    return data.decode().replace("\r\n", "\n").replace("\r", "\n")


_server: _Server | None = None
_lock = threading.Lock()


def _get_server() -> _Server:
    global _server
    with _lock:
        if _server is None or _server.proc.poll() is not None:
            _server = _Server()
        return _server


def run(
    script: str,
    args: list[str],
    *,
    input: str | bytes = "",
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run a console script of the package as subprocess.run(capture_output=True, text=True)
    would, `input` on its stdin (bytes as they are)."""
    env = dict(os.environ if env is None else env)
    cwd = str(cwd or os.getcwd())
    argv = [str(BIN / script), *args]
    if os.environ.get(MODE_VARIABLE) == "exec":
        done = subprocess.run(
            argv,
            input=input if isinstance(input, bytes) else input.encode(),
            capture_output=True,
            timeout=timeout,
            cwd=cwd,
            env=env,
        )
        return subprocess.CompletedProcess(
            argv, done.returncode, _text(done.stdout), _text(done.stderr)
        )
    io_dir = Path(tempfile.mkdtemp(prefix="tta-run-"))
    try:
        stdin, stdout, stderr = io_dir / "in", io_dir / "out", io_dir / "err"
        stdin.write_bytes(input if isinstance(input, bytes) else input.encode())
        request = {
            "script": script,
            "argv": argv,
            "env": env,
            "cwd": cwd,
            "stdin": str(stdin),
            "stdout": str(stdout),
            "stderr": str(stderr),
        }
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(_get_server().path)
            conn.sendall(json.dumps(request).encode() + b"\n")
            conn.settimeout(timeout)
            answers = conn.makefile("r")
            pid = json.loads(answers.readline())["pid"]
            try:
                line = answers.readline()
            except TimeoutError:
                os.kill(pid, 9)
                raise subprocess.TimeoutExpired(argv, timeout) from None
            if not line:
                raise RuntimeError(f"the CLI fork server lost run {pid}")
            code = json.loads(line)["returncode"]
        return subprocess.CompletedProcess(
            argv, code, _text(stdout.read_bytes()), _text(stderr.read_bytes())
        )
    finally:
        shutil.rmtree(io_dir, ignore_errors=True)
