"""Measure candidate optimisations without editing the project: monkeypatching harness.

    .venv/bin/python bench/levers.py [--records N] [--scale 4] [--repeat R]   # the matrix
    .venv/bin/python bench/levers.py verify-phone [--samples 300000]           # equivalence
    .venv/bin/python bench/levers.py big M [LEVER,...]                         # M-record mirror run
    .venv/bin/python bench/levers.py target LEVER[,LEVER...] --config CFG     # one target run

Levers (each one is what PROFILE.md recommends changing in the target's code):
- msgspec:  TargetTikTokAudiences.message_reader_class = singer_sdk.contrib.msgspec.MsgSpecReader
            (msgspec is installed by this script into bench/.deps, not into the project venv)
- nanp:     identifiers._phone gets a NANP fast path: for default_phone_region US/CA, a value
            of ASCII digits and " ()-." only that is [1]NXXNXXXXXX becomes +1NXXNXXXXXX without
            phonenumbers (verify-phone checks it against phonenumbers)
- noparse:  AudienceSink._validate_and_parse returns the record as is (the SDK otherwise walks
            the schema and parses date-times in every record; the sink reads only identifiers)
- stream:   TikTokClient uploads a file as a streamed multipart body (requests' files= reads
            the whole file, up to file_max_ids x 65 bytes, into memory, twice)
"""

from __future__ import annotations

import argparse
import io
import random
import re
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BENCH = Path(__file__).resolve().parent
DEPS = BENCH / ".deps"
LEVERS = ("msgspec", "nanp", "noparse", "stream")


# --- the levers ---------------------------------------------------------------------------------


def ensure_msgspec() -> None:
    if not (DEPS / "msgspec").exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(DEPS),
                        "msgspec"], check=True)


def lever_msgspec() -> None:
    sys.path.append(str(DEPS))
    from singer_sdk.contrib.msgspec import MsgSpecReader

    from target_tiktok_audiences.target import TargetTikTokAudiences

    TargetTikTokAudiences.message_reader_class = MsgSpecReader


NANP_REGIONS = frozenset(("US", "CA"))
_NANP_PUNCT = str.maketrans("", "", " ()-.")
_NANP_RE = re.compile(r"1?([2-9][0-9]{9})")


def nanp_phone(original: Callable[[str, str | None], str | None]
               ) -> Callable[[str, str | None], str | None]:
    """identifiers._phone with a fast path for NANP national numbers."""
    fullmatch = _NANP_RE.fullmatch

    def _phone(stripped: str, region: str | None) -> str | None:
        if region in NANP_REGIONS and stripped[0] != "+":
            m = fullmatch(stripped.translate(_NANP_PUNCT))
            if m is not None:
                return "+1" + m.group(1)
        return original(stripped, region)

    return _phone


def lever_nanp() -> None:
    from target_tiktok_audiences import identifiers

    identifiers._phone = nanp_phone(identifiers._phone)


def lever_noparse() -> None:
    from target_tiktok_audiences.sinks.base import AudienceSink

    def _validate_and_parse(self: Any, record: dict) -> dict:
        return record  # no validator, and no date-time column is ever read

    AudienceSink._validate_and_parse = _validate_and_parse  # type: ignore[method-assign]


class StreamingMultipart:
    """A multipart/form-data body read from disk in chunks; requests sends it as a stream
    with a Content-Length (it has __iter__, read and __len__)."""

    def __init__(self, form: dict[str, str], path: Path, file_name: str) -> None:
        boundary = secrets.token_hex(16)
        head = "".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n'
                       f"{v}\r\n" for k, v in form.items())
        head += (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                 f'filename="{file_name}"\r\nContent-Type: text/csv\r\n\r\n')
        tail = f"\r\n--{boundary}--\r\n".encode()
        self.content_type = f"multipart/form-data; boundary={boundary}"
        self._len = len(head.encode()) + path.stat().st_size + len(tail)
        self._parts: list[Any] = [io.BytesIO(head.encode()), path.open("rb"), io.BytesIO(tail)]

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Any:
        while chunk := self.read(1 << 16):
            yield chunk

    def read(self, size: int = -1) -> bytes:
        out = b""
        while self._parts and (size < 0 or len(out) < size):
            chunk = self._parts[0].read(-1 if size < 0 else size - len(out))
            if chunk:
                out += chunk
            else:
                self._parts.pop(0).close()
        return out

    def close(self) -> None:
        for part in self._parts:
            part.close()


def lever_stream() -> None:
    import requests

    from target_tiktok_audiences import client as mod

    original = mod.TikTokClient._send

    def _send(self: Any, method: str, path: str, what: str, advertiser_id: str | None,
              *, upload: tuple[Any, Path, str] | None = None, write: bool = False,
              **kwargs: Any) -> dict[str, Any]:
        if upload is None:
            return original(self, method, path, what, advertiser_id, write=write, **kwargs)
        if write:
            self._throttle()
        self._count("calls")
        form, file_path, file_name = upload
        body = StreamingMultipart(dict(form), file_path, file_name)
        try:
            response = self.session.request(method, self.base_url + path, data=body,
                                            headers={"Content-Type": body.content_type},
                                            timeout=self.timeout)
            self._count("bytes_uploaded", file_path.stat().st_size)
        except requests.Timeout:
            raise mod.TransientError(what, advertiser_id=advertiser_id,
                                     message=f"no answer within {self.timeout:g} s") from None
        except requests.ConnectionError:
            raise mod.TransientError(what, advertiser_id=advertiser_id,
                                     message="connection failed or was dropped") from None
        finally:
            body.close()
        return mod._unwrap(response, what, advertiser_id)

    mod.TikTokClient._send = _send  # type: ignore[method-assign]


APPLY: dict[str, Callable[[], None]] = {"msgspec": lever_msgspec, "nanp": lever_nanp,
                                        "noparse": lever_noparse, "stream": lever_stream}


def run_target(levers: str, argv: list[str]) -> None:
    for name in filter(None, levers.split(",")):
        if name != "none":
            APPLY[name]()
    from target_tiktok_audiences.target import TargetTikTokAudiences

    sys.argv = ["target-tiktok-audiences", *argv]
    TargetTikTokAudiences.cli()


# --- equivalence check of the phone fast path ----------------------------------------------------


def verify_phone(samples: int, seed: int = 7) -> int:
    """The fast path must give what phonenumbers gives, for every value it takes."""
    from target_tiktok_audiences import identifiers

    slow = identifiers._phone
    fast = nanp_phone(slow)
    rng = random.Random(seed)
    alphabet = "0123456789" * 4 + " ()-.+"
    taken = mismatches = 0
    for i in range(samples):
        if i % 2:
            # NANP-shaped: optional 1, a 10-digit number, random punctuation in between
            digits = ("1" if rng.random() < 0.3 else "") + str(rng.randrange(10**9, 10**10))
            value = "".join(c + (rng.choice(" ()-.") if rng.random() < 0.2 else "")
                            for c in digits)
        else:
            value = "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 16)))
        value = value.strip()
        if not value:
            continue
        if value[0] == "+" or _NANP_RE.fullmatch(value.translate(_NANP_PUNCT)) is None:
            continue  # not taken by the fast path: phonenumbers decides, as today
        for region in ("US", "CA"):
            taken += 1
            quick, reference = fast(value, region), slow(value, region)
            if quick != reference:
                mismatches += 1
                print(f"MISMATCH {value!r} {region}: fast {quick}, phonenumbers {reference}")
    print(f"phone fast path: {taken:,} values taken, {mismatches} differ from phonenumbers")
    return 1 if mismatches else 0


# --- the matrix ---------------------------------------------------------------------------------


def matrix(args: argparse.Namespace) -> int:
    from bench.generate import generate
    from bench.run import run_tiktok, verify

    ensure_msgspec()
    combos = ["none", *LEVERS, ",".join(LEVERS)]
    n, n4 = args.records, args.records * args.scale
    print("| levers | records/CPU s at N | us/record | vs none | peak RSS N MiB | "
          f"peak RSS {args.scale}N MiB | RSS ratio |\n|---|---:|---:|---:|---:|---:|---:|",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="tiktok-levers-") as tmp:
        work = Path(tmp)
        data, data4 = work / "n.singer", work / "n4.singer"
        expected, expected4 = generate(data, n, collect=True), generate(data4, n4, collect=True)
        base_rate = 0.0
        for combo in combos:
            cmd = [sys.executable, str(Path(__file__).resolve()), "target", combo]

            def once(path: Path, records: int, exp: Any, tag: str, combo: str = combo,
                     cmd: list[str] = cmd) -> Any:
                best = None
                for i in range(args.repeat):
                    result, _ = run_tiktok(path, records, work,
                                           name=f"{combo.replace(',', '+')}-{tag}-{i}",
                                           command=cmd)
                    verify(result, exp)
                    if best is None or result.run.cpu < best.run.cpu:
                        best = result
                return best

            small = once(data, n, expected, "n")
            large = once(data4, n4, expected4, "4n")
            rate = small.run.per_cpu_second
            base_rate = base_rate or rate
            print(f"| {combo} | {rate:,.0f} | {1e6 / rate:.1f} | {rate / base_rate:.2f}x | "
                  f"{small.run.rss_mib:.1f} | {large.run.rss_mib:.1f} | "
                  f"{large.run.maxrss_kb / small.run.maxrss_kb:.2f} |", flush=True)
    return 0


def big(records: int, levers: str) -> int:
    """The --big run of bench/run.py, with levers applied."""
    from bench.generate import generate
    from bench.run import run_tiktok, verify

    ensure_msgspec()
    with tempfile.TemporaryDirectory(prefix="tiktok-levers-big-") as tmp:
        work = Path(tmp)
        data = work / "big.singer"
        expected = generate(data, records)
        cmd = [sys.executable, str(Path(__file__).resolve()), "target", levers]
        result, _ = run_tiktok(data, records, work, name="big", command=cmd)
        verify(result, expected)
    run = result.run
    print(f"levers {levers}, {records:,} records: CPU {run.cpu:.1f} s "
          f"({run.per_cpu_second:,.0f} records / CPU s), peak RSS {run.rss_mib:.1f} MiB, "
          f"wall {run.wall:.0f} s; files per contract {result.uploads}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["big"]:
        return big(int(argv[1]), argv[2] if len(argv) > 2 else ",".join(LEVERS))
    if argv[:1] == ["target"]:
        run_target(argv[1], argv[2:])
        return 0
    if argv[:1] == ["verify-phone"]:
        p = argparse.ArgumentParser()
        p.add_argument("--samples", type=int, default=300_000)
        return verify_phone(p.parse_args(argv[1:]).samples)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=100_000)
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--repeat", type=int, default=1)
    return matrix(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
