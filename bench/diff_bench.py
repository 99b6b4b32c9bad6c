"""Mirror by difference, the pure part: sort + diff + new snapshot of N digests, 1% changed.

    .venv/bin/python bench/diff_bench.py [--n 5000000] [--changed 0.01] [--buffer 25000]

Untimed set-up: the old snapshot (digests of ids 0..N-1) is written to a local SnapshotStore
and the new input (ids k..N+k-1, k = N * changed / 2, so k removed and k added) to a text file,
both streaming. Timed: the new digests are read from that file into an ExternalSorter, then
sorted (runs on disk, merge), diffed against the snapshot in one pass, with the added and
removed digests spooled into upload files (spool.Spool) and the new snapshot written in the
same pass. Prints the seconds of each phase, digests per second, and the process's peak RSS.

End to end (--e2e): the real CLI, one EMAIL_SHA256 audience, against the sandbox started as its
own process (`tiktok-audiences-sandbox --port 0 --min-audience-size 1`, the other realism rules
on; its clock is moved 25 h before the REPLACE run through its admin API):

    .venv/bin/python bench/diff_bench.py --e2e [--n 5000000] [--changed 0.01]

1. full (create): N plain emails, a new audience: every digest is uploaded and created;
2. diff: the set with N * changed / 2 users removed and as many added: only those are uploaded
   (APPEND + REMOVE) against the snapshot of run 1;
3. full (REPLACE): the run-1 set again with mirror_strategy replace: every digest is uploaded
   and REPLACEd (what every run cost before mirror by difference).
Each run's CPU (user + sys) and peak RSS come from os.wait4 (bench/_rusage.py), wall from the
driver; the sandbox's own CPU is not counted, but its processing of each call is in the wall.
Audience sizes and uploaded line counts are checked after each run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import resource
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the package importable from the tree
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import Run, Sandbox, measure, tiktok_command
from target_tiktok_audiences.extsort import DEFAULT_BUFFER, ExternalSorter, diff
from target_tiktok_audiences.snapshot import Snapshot, SnapshotKey, SnapshotStore
from target_tiktok_audiences.spool import Spool, private_workdir, remove_workdir

KEY = SnapshotKey("7000000000000000001", "1", "EMAIL_SHA256")
CHUNK = 100_000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5_000_000)
    parser.add_argument("--changed", type=float, default=0.01)
    parser.add_argument("--buffer", type=int, default=DEFAULT_BUFFER)
    parser.add_argument(
        "--e2e", action="store_true", help="the real CLI against the sandbox: full vs diff"
    )
    parser.add_argument(
        "--partner",
        type=int,
        nargs="+",
        metavar="N",
        help="partner mirror memory: peak RSS of runs adding N new users each (e.g. 200000 "
        "2000000), the CLI against the sandbox",
    )
    parser.add_argument("--keep", action="store_true", help="--e2e: keep the temp dir")
    args = parser.parse_args()
    if args.partner:
        return partner_memory(args.partner)
    return end_to_end(args) if args.e2e else pure(args)


def pure(args: argparse.Namespace) -> int:
    n, shift = args.n, int(args.n * args.changed / 2)
    work = private_workdir()
    try:
        store = SnapshotStore(str(work / "snapshots"))
        # Set-up, untimed: the old snapshot, sorted, and the new input, unsorted, on disk.
        t = time.perf_counter()
        old_sorter = ExternalSorter(work, buffer_size=args.buffer)
        new_input = work / "new.txt"
        with new_input.open("w", encoding="ascii") as fh:
            for lo in range(0, n + shift, CHUNK):
                hi = min(lo + CHUNK, n + shift)
                chunk = [hashlib.sha256(b"%d" % i).hexdigest() for i in range(lo, hi)]
                old_sorter.add_many(chunk[: max(0, min(hi, n) - lo)])
                fh.writelines(d + "\n" for d in chunk[max(0, shift - lo) :])
        with store.writer(KEY) as out:
            for block in old_sorter.sorted_blocks():
                out.write_block(block)
        old_sorter.close()
        print(f"set-up: {time.perf_counter() - t:.1f} s (not counted)")

        t0 = time.perf_counter()
        sorter = ExternalSorter(work, buffer_size=args.buffer)
        with new_input.open(encoding="ascii") as fh:
            for line in fh:
                sorter.add(line[:-1])
        t1 = time.perf_counter()
        old = store.read(KEY)
        assert isinstance(old, Snapshot)
        added, removed = Spool(work, "added", 500_000), Spool(work, "removed", 500_000)
        with store.lock(KEY), store.writer(KEY) as out:
            counts = diff(
                sorter.sorted_blocks(), old.blocks(), added.write, removed.write, out.write_block
            )
        t2 = time.perf_counter()
        runs = sorter.runs
        sorter.close()
        assert (counts.added, counts.removed, counts.total) == (shift, shift, n), counts
        assert (added.pending, removed.pending) == (shift, shift)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"digests: {n:,}, changed: {2 * shift:,} ({counts})")
        print(f"add (read input, buffer, spill {runs} sorted runs): {t1 - t0:.2f} s")
        print(f"merge + diff + spool changes + write new snapshot: {t2 - t1:.2f} s")
        print(f"total: {t2 - t0:.2f} s = {n / (t2 - t0):,.0f} digests/s; peak RSS {rss:.1f} MiB")
    finally:
        remove_workdir(work)
    return 0


# --- end to end: the CLI against the sandbox ------------------------------------------------

ADVERTISER = "7000000000000000001"
AUDIENCE = "Mirror bench"


def write_input(path: Path, lo: int, hi: int) -> None:
    """Singer messages for users lo..hi-1, one plain email each (the target hashes them)."""
    with path.open("w", encoding="ascii") as fh:
        fh.write(
            json.dumps(
                {
                    "type": "SCHEMA",
                    "stream": "users",
                    "schema": {
                        "type": "object",
                        "properties": {"id": {"type": "integer"}, "email": {"type": "string"}},
                    },
                    "key_properties": ["id"],
                }
            )
            + "\n"
        )
        for start in range(lo, hi, CHUNK):
            fh.writelines(
                f'{{"type":"RECORD","stream":"users","record":{{"id":{i},'
                f'"email":"User.{i}@Example.com"}}}}\n'
                for i in range(start, min(start + CHUNK, hi))
            )


def phases(log: Path) -> tuple[float, float]:
    """Wall seconds of the input phase (read, hash, buffer; until the reader finished) and of
    the delivery phase (sort, diff or spool, upload, create/update, snapshot), from the
    timestamps of the target's log lines."""
    stamps: list[tuple[dt.datetime, str]] = []
    for line in log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            stamps.append((dt.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f"), line))
    start, end = stamps[0][0], stamps[-1][0]
    read = next(t for t, line in stamps if "completed processing" in line)
    return (read - start).total_seconds(), (end - read).total_seconds()


def bench_config(sandbox: Sandbox, work: Path, **mapping: object) -> dict[str, object]:
    """The target's config for one EMAIL_SHA256 audience of the bench users."""
    return {
        "access_token": "sandbox-token",
        "advertiser_ids": [ADVERTISER],
        "api_base_url": sandbox.base_url,
        "audiences": [
            {
                "stream": "users",
                "audience_name": AUDIENCE,
                "identifiers": {"EMAIL_SHA256": "email"},
                **mapping,
            }
        ],
        "snapshot_url": str(work / "snapshots"),
    }


def advance_clock(sandbox: Sandbox, seconds: float) -> None:
    request = urllib.request.Request(
        f"{sandbox.admin_url}/clock",
        data=json.dumps({"advance_seconds": seconds}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        resp.read()


def end_to_end(args: argparse.Namespace) -> int:
    n, shift = args.n, int(args.n * args.changed / 2)
    work = Path(tempfile.mkdtemp(prefix="tiktok-diff-bench-"))
    say = lambda *a: print(*a, flush=True)  # noqa: E731
    try:
        set_a, set_b = work / "a.singer", work / "b.singer"
        t = time.perf_counter()
        write_input(set_a, 0, n)
        write_input(set_b, shift, n + shift)  # `shift` users gone, `shift` new
        say(f"inputs: {n:,} users each, {2 * shift:,} changed ({time.perf_counter() - t:.0f} s)")
        env = {
            **os.environ,
            "TMPDIR": str(work),
            "XDG_DATA_HOME": str(work / "xdg"),
            "PYTHONWARNINGS": "ignore",
        }
        runs: list[tuple[Run, dict[str, object], int, tuple[float, float]]] = []
        with Sandbox(work) as sandbox:

            def run(name: str, data: Path, members: int, **settings: object) -> None:
                config = {
                    **bench_config(sandbox, work),
                    "report_path": str(work / f"{name}.report.json"),
                    **settings,
                }
                config_path = work / f"{name}.config.json"
                config_path.write_text(json.dumps(config))
                before = len(sandbox.calls())
                say(f"{name} ...")
                result = measure(name, tiktok_command(config_path), data, n, work, env=env)
                result.check()
                calls = sandbox.calls()[before:]
                lines = sum(c["lines"] or 0 for c in calls if c["path"].endswith("/upload/"))
                (entry,) = json.loads((work / f"{name}.report.json").read_text())["streams"][0][
                    "audiences"
                ]
                size = sandbox.audiences()[AUDIENCE]["member_count"]
                if size != members:
                    raise AssertionError(f"{name}: audience holds {size:,}, expected {members:,}")
                split = phases(result.log)
                runs.append((result, entry, lines, split))
                say(
                    f"  {entry['action']} ({entry['mirror']}): {lines:,} lines uploaded, "
                    f"CPU {result.cpu:.1f} s, wall {result.wall:.1f} s (input {split[0]:.1f} s, "
                    f"delivery {split[1]:.1f} s), peak RSS {result.rss_mib:.0f} MiB"
                )

            run("full (create)", set_a, n)
            run("diff", set_b, n)
            advance_clock(sandbox, 25 * 3600)  # TikTok allows about one REPLACE a day
            run("full (REPLACE)", set_a, n, mirror_strategy="replace")
        (full, _, full_lines, _), (dif, dif_entry, dif_lines, _), (rep, _, rep_lines, _) = runs
        if (full_lines, dif_lines, rep_lines) != (n, 2 * shift, n):
            raise AssertionError(f"uploaded lines {full_lines}, {dif_lines}, {rep_lines}")
        say("")
        say(
            "| run | identifiers uploaded | action | CPU s (user+sys) | wall s | "
            "of which input | of which delivery | peak RSS MiB |"
        )
        say("|---|---:|---|---:|---:|---:|---:|---:|")
        for result, entry, lines, (read, deliver) in runs:
            say(
                f"| {result.name} | {lines:,} | {entry['action']} | {result.cpu:.2f} | "
                f"{result.wall:.2f} | {read:.1f} | {deliver:.1f} | {result.rss_mib:.1f} |"
            )
        say("")
        say(
            f"diff / full (REPLACE): CPU {dif.cpu / rep.cpu:.2f}x, wall {dif.wall / rep.wall:.2f}x;"
            f" diff / full (create): CPU {dif.cpu / full.cpu:.2f}x, "
            f"wall {dif.wall / full.wall:.2f}x"
        )
        say(f"diff run: {dif_entry['identifiers_unchanged']:,} unchanged")
    finally:
        if args.keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def partner_memory(sizes: list[int]) -> int:
    """Peak RSS of a partner mirror that adds N new users (all of them new: the largest
    change), one fresh sandbox and audience per N; the members are checked after each run."""
    rows: list[tuple[int, Run]] = []
    for n in sizes:
        work = Path(tempfile.mkdtemp(prefix="tiktok-partner-bench-"))
        try:
            data = work / "users.singer"
            write_input(data, 0, n)
            env = {**os.environ, "TMPDIR": str(work), "PYTHONWARNINGS": "ignore"}
            with Sandbox(work, "--partner-warmup", "0") as sandbox:
                config = {
                    **bench_config(sandbox, work, audience_type="partner"),
                    "max_requests_per_second": 1000,
                }
                config_path = work / "config.json"
                config_path.write_text(json.dumps(config))
                result = measure(
                    f"partner {n:,}", tiktok_command(config_path), data, n, work, env=env
                )
                result.check()
                size = sandbox.audiences()[AUDIENCE]["member_count"]
                if size != n:
                    raise AssertionError(f"partner {n:,}: audience holds {size:,}")
            rows.append((n, result))
            print(
                f"partner mirror, {n:,} new users: CPU {result.cpu:.1f} s, wall "
                f"{result.wall:.1f} s, peak RSS {result.rss_mib:.1f} MiB",
                flush=True,
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)
    base = rows[0][1].rss_mib
    print("\n| new users | CPU s | wall s | peak RSS MiB | RSS / smallest |")
    print("|---:|---:|---:|---:|---:|")
    for n, result in rows:
        print(
            f"| {n:,} | {result.cpu:.1f} | {result.wall:.1f} | {result.rss_mib:.1f} | "
            f"{result.rss_mib / base:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
