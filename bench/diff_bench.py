"""Mirror by difference, the pure part: sort + diff + new snapshot of N digests, 1% changed.

    .venv/bin/python bench/diff_bench.py [--n 5000000] [--changed 0.01] [--buffer 100000]

Untimed set-up: the old snapshot (digests of ids 0..N-1) is written to a local SnapshotStore
and the new input (ids k..N+k-1, k = N * changed / 2, so k removed and k added) to a text file,
both streaming. Timed: the new digests are read from that file into an ExternalSorter, then
sorted (runs on disk, merge), diffed against the snapshot in one pass, with the added and
removed digests spooled into upload files (spool.Spool) and the new snapshot written in the
same pass. Prints the seconds of each phase, digests per second, and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the package importable from the tree
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from target_tiktok_audiences.extsort import ExternalSorter, diff
from target_tiktok_audiences.snapshot import (
    Snapshot,
    SnapshotKey,
    SnapshotStore,
    fingerprint,
)
from target_tiktok_audiences.spool import Spool, private_workdir, remove_workdir

KEY = SnapshotKey("7000000000000000001", "1", "EMAIL_SHA256")
RULES = fingerprint(hash_identifiers=True, email_normalization="basic", default_phone_region=None)
CHUNK = 100_000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5_000_000)
    parser.add_argument("--changed", type=float, default=0.01)
    parser.add_argument("--buffer", type=int, default=100_000)
    args = parser.parse_args()
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
        with store.writer(KEY, RULES) as out:
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
        old = store.read(KEY, RULES)
        assert isinstance(old, Snapshot)
        added, removed = Spool(work, "added", 500_000), Spool(work, "removed", 500_000)
        with store.lock(KEY), store.writer(KEY, RULES) as out:
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


if __name__ == "__main__":
    sys.exit(main())
