"""A/B of target-tiktok-audiences variants on one input, alternately, round by round.

    .venv/bin/python bench/ab.py --variant before=DIR --variant after=DIR2 [--rounds 3]
                                 [--records 200000] [--scenario narrow]

Each DIR holds a copy of the `target_tiktok_audiences` package (e.g. `git worktree` or
`cp -r`); it is put first on `sys.path` of the measured process, bytecode compiled first.
Every run goes through `bench/run.py`'s measured launcher against a fresh sandbox and is
checked against the generator (accepted counts, audience sizes). The machine is shared, so
variants alternate within each round and the medians are compared (bench/PROFILE.md).
"""

from __future__ import annotations

import argparse
import compileall
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.generate import SCENARIOS, generate
from bench.run import SEED, run_tiktok, verify

_LAUNCH = (
    "import sys; sys.path.insert(0, {root!r}); "
    "from target_tiktok_audiences import target as t; "
    "(getattr(t, 'main', None) or t.TargetTikTokAudiences.cli)()"  # as the installed command
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", action="append", required=True, help="NAME=DIR")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="narrow")
    args = parser.parse_args(argv)
    variants = dict(v.split("=", 1) for v in args.variant)
    for root in variants.values():
        if not (Path(root) / "target_tiktok_audiences" / "target.py").is_file():
            parser.error(f"{root} holds no target_tiktok_audiences package")
        compileall.compile_dir(str(Path(root) / "target_tiktok_audiences"), quiet=1)
    scenario = SCENARIOS[args.scenario]
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    rss: dict[str, list[float]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory(prefix="tta-ab-") as tmp:
        workdir = Path(tmp)
        path = workdir / "input.singer"
        expected = generate(path, args.records, SEED, collect=True, scenario=scenario)
        for i in range(args.rounds):
            for name, root in variants.items():
                command = [sys.executable, "-c", _LAUNCH.format(root=str(Path(root).resolve()))]
                result, _ = run_tiktok(
                    path,
                    args.records,
                    workdir,
                    name=f"{name}-{i}",
                    command=command,
                    columns=scenario.columns,
                )
                verify(result, expected)
                cpu[name].append(result.run.cpu)
                rss[name].append(result.run.rss_mib)
                print(
                    f"round {i + 1} {name}: {result.run.cpu:.3f} CPU s, "
                    f"{result.run.rss_mib:.1f} MiB, load {result.run.load[0]:.1f}",
                    flush=True,
                )
    first = statistics.median(cpu[next(iter(variants))])
    print(
        "\n| variant | median CPU s | min CPU s | us / record (median) | vs first | peak RSS MiB |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name in variants:
        med = statistics.median(cpu[name])
        print(
            f"| {name} | {med:.3f} | {min(cpu[name]):.3f} | {1e6 * med / args.records:.1f} | "
            f"{100 * (med / first - 1):+.1f}% | {statistics.median(rss[name]):.1f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
