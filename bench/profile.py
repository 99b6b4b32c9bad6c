"""Where target-tiktok-audiences spends its CPU, in microseconds per record.

    .venv/bin/python bench/profile.py [--records 200000] [--scenario narrow] [--cprofile]

Runs a bench scenario (mirror, its contracts, US region) once plainly (os.wait4 CPU), once
under py-spy (sampling, installed by this script into bench/.venv-tools) and attributes every
sample to the innermost frame that matches a cost category below; the share of samples times
the plain run's CPU gives microseconds per record. With --cprofile it also runs
`python -m cProfile -o` on the target's entry point and prints the top functions (cProfile
inflates small Python calls, so the py-spy split is the one to quote).
"""

from __future__ import annotations

import argparse
import collections
import json
import pstats
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.generate import SCENARIOS, generate
from bench.run import Sandbox, measure, run_tiktok, tiktok_config

BENCH = Path(__file__).resolve().parent
TOOLS = BENCH / ".venv-tools"

# (category, substring of "function (file:line)" frames); innermost match wins, order breaks
# ties within one frame.
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("phonenumbers (parse, is_possible_number, format)", ("phonenumbers/",)),
    (
        "upload: md5 + streamed multipart (client/)",
        ("requests/", "urllib3/", "http/client", "client/", "socket.py", "ssl.py"),
    ),
    ("external sort: add, spill, merge (extsort.py)", ("extsort.py",)),
    ("spooling, snapshot (spool.py, snapshot/)", ("spool.py", "snapshot/")),
    ("our normalise/validate/hash (identifiers/)", ("identifiers/",)),
    ("delivery: Delivery.add (deliveries/)", ("deliveries/",)),
    ("AudienceSink.process_record + hooks (sink.py)", ("target_tiktok_audiences/singer/sink.py",)),
    (
        "reader: line loop and JSON decoding (reader.py, msgspec)",
        ("target_tiktok_audiences/singer/reader.py", "simplejson/", "json/", "msgspec"),
    ),
    ("SDK reader: line loop, message dispatch", ("singerlib/encoding", "io_base.py")),
    ("SDK copy.copy(record)", ("copy.py",)),
    ("SDK stream-map transform (mapper.py)", ("mapper.py",)),
    ("SDK metrics counter", ("metrics.py",)),
    ("SDK sink per-record hooks (sinks/core.py)", ("sinks/core.py", "sinks/batch.py")),
    ("SDK _process_record_message + target loop", ("target_base.py", "plugin_base.py")),
    (
        "singer/: lean record path, drain",
        ("target_tiktok_audiences/singer/fastpath.py", "target_tiktok_audiences/singer/target.py"),
    ),
    ("startup: imports", ("<frozen importlib", "importlib/")),
]


def ensure_py_spy() -> Path:
    exe = TOOLS / "bin" / "py-spy"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(TOOLS)], check=True)
        subprocess.run(
            [str(TOOLS / "bin" / "python"), "-m", "pip", "install", "-q", "py-spy"], check=True
        )
    return exe


def categorize(raw: Path) -> collections.Counter[str]:
    """py-spy --format raw: 'frame;frame;...;leaf count' lines, root first."""
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        label = "other"
        for frame in reversed(frames):  # innermost first
            hit = next((name for name, keys in CATEGORIES if any(k in frame for k in keys)), None)
            if hit is not None:
                label = hit
                break
        counts[label] += int(n)
    return counts


def leaves(raw: Path) -> collections.Counter[str]:
    """Samples per innermost function ("name (file)", line numbers dropped)."""
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        leaf = stack.split(";")[-1]
        name, _, where = leaf.partition(" (")
        counts[f"{name} ({where.rsplit(':', 1)[0].rsplit('/', 2)[-1].rstrip(')')})"] += int(n)
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=200_000)
    p.add_argument("--scenario", choices=list(SCENARIOS), default="narrow")
    p.add_argument("--rate", type=int, default=500, help="py-spy samples per second")
    p.add_argument("--cprofile", action="store_true")
    p.add_argument("--raw", type=Path, help="also keep py-spy's raw stacks in this file")
    p.add_argument(
        "--leaves", type=int, default=0, help="also list the N costliest innermost functions"
    )
    p.add_argument(
        "--command",
        nargs="+",
        default=None,
        help="target command instead of the installed entry point",
    )
    args = p.parse_args(argv)
    n = args.records
    with tempfile.TemporaryDirectory(prefix="tiktok-profile-") as tmp:
        work = Path(tmp)
        data = work / "users.singer"
        scenario = SCENARIOS[args.scenario]
        columns = scenario.columns
        generate(data, n, scenario=scenario)
        base = args.command or [sys.executable, "-m", "target_tiktok_audiences.target"]
        plain, _ = run_tiktok(data, n, work, name="plain", command=base, columns=columns)
        cpu = plain.run.cpu
        print(
            f"plain run: {n:,} records, {cpu:.2f} CPU s = {cpu / n * 1e6:.1f} us/record, "
            f"peak RSS {plain.run.rss_mib:.1f} MiB"
        )
        raw = work / "spy.txt"
        spy = ensure_py_spy()
        with Sandbox(_mk(work / "spy")) as sandbox:
            cfg = work / "spy" / "config.json"
            config = tiktok_config(sandbox.base_url, work / "spy" / "r.json", columns=columns)
            cfg.write_text(json.dumps(config))
            run = measure(
                "py-spy",
                [
                    str(spy),
                    "record",
                    "--nonblocking",
                    "-r",
                    str(args.rate),
                    "-f",
                    "raw",
                    "-o",
                    str(raw),
                    "--",
                    *base,
                    "--config",
                    str(cfg),
                ],
                data,
                n,
                work / "spy",
            )
            run.check()
        counts = categorize(raw)
        if args.raw:
            shutil.copyfile(raw, args.raw)
        total = sum(counts.values())
        print("\n| cost | share | us / record |\n|---|---:|---:|")
        for label, c in counts.most_common():
            print(f"| {label} | {c / total:.1%} | {c / total * cpu / n * 1e6:.2f} |")
        print(f"| **total** (plain run CPU / records) | 100% | {cpu / n * 1e6:.2f} |")
        print(f"\n({total:,} samples)")
        if args.leaves:
            print("\n| innermost function | share | us / record |\n|---|---:|---:|")
            for leaf, c in leaves(raw).most_common(args.leaves):
                print(f"| `{leaf}` | {c / total:.1%} | {c / total * cpu / n * 1e6:.2f} |")
        if args.cprofile:
            out = work / "prof.out"
            with Sandbox(_mk(work / "cp")) as sandbox:
                cfg = work / "cp" / "config.json"
                config = tiktok_config(sandbox.base_url, work / "cp" / "r.json", columns=columns)
                cfg.write_text(json.dumps(config))
                cmd = (
                    [*base[:1], "-m", "cProfile", "-o", str(out), *base[1:]]
                    if base[1:2] == ["-m"]
                    else base
                )
                measure("cprofile", [*cmd, "--config", str(cfg)], data, n, work / "cp").check()
            stats = pstats.Stats(str(out))
            print("\ncProfile, top 25 by own time (cProfile overhead included):")
            stats.sort_stats("tottime").print_stats(25)
    return 0


def _mk(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


if __name__ == "__main__":
    sys.exit(main())
