"""``tiktok-audiences-sandbox``: serve the emulator, or ``show`` the audiences in a sandbox db.

tiktok-audiences-sandbox --port 8765 --db sandbox.db [--fault http_503:0.33 --seed 1]
tiktok-audiences-sandbox show --db sandbox.db

The realism rules (1,000 matched users, one REPLACE per day, one APPEND or REMOVE at a time,
partner warm-up, 24 updates a day, 50 mappings a second, expiring file paths, several wordings)
are on by default; each flag set to 0 switches its rule off (1 for --match-rate),
``--lenient`` all of them. The same switches come from TIKTOK_AUDIENCES_SANDBOX_<SWITCH>
variables (e.g. TIKTOK_AUDIENCES_SANDBOX_LENIENT=true), which is how the Meltano utility's
settings reach them; a flag on the command line wins.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sqlite3
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .faults import AFTER, KINDS, FaultError, FaultRule
from .rules import DAY, DEFAULT_TOKENS
from .server import SandboxServer

ENV_PREFIX = "TIKTOK_AUDIENCES_SANDBOX_"
# The switches a Meltano setting of the same name sets (plugins/utilities/, meltano.yml).
SWITCHES = (
    "lenient",
    "min_audience_size",
    "match_rate",
    "replace_cooldown",
    "update_processing",
    "partner_warmup",
    "max_updates_per_day",
    "mapping_rate_limit",
)
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off", ""}


def env_defaults(parser: argparse.ArgumentParser, env: dict[str, str]) -> dict[str, Any]:
    """The switches' values from TIKTOK_AUDIENCES_SANDBOX_* variables (as Meltano sets them)."""
    actions = {a.dest: a for a in parser._actions if a.dest in SWITCHES}
    found: dict[str, Any] = {}
    for dest in SWITCHES:
        name = ENV_PREFIX + dest.upper()
        raw = env.get(name)
        if raw is None:
            continue
        action = actions[dest]
        try:
            if action.type is None:  # a flag: --lenient
                word = raw.strip().lower()
                if word not in _TRUE | _FALSE:
                    raise ValueError(raw)
                found[dest] = word in _TRUE
            else:
                found[dest] = action.type(raw)  # type: ignore[operator]
        except ValueError:
            parser.error(f"{name}={raw!r} is not a valid value for {action.option_strings[0]}")
    return found


def _serve_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tiktok-audiences-sandbox",
        description="Local emulator of the TikTok Business API v1.3 (custom audiences). "
        "Use `tiktok-audiences-sandbox show --db PATH` to list stored audiences.",
        epilog="Admin endpoints (JSON) under /_sandbox/: GET|POST|DELETE faults, POST tokens, "
        "POST revoke_token, POST revoke_advertiser, GET audiences, GET calls, POST reset, "
        'GET|POST clock {"advance_seconds": 86400}, POST share {"advertiser_id": ..., '
        '"audience_id"?: ..., "name"?: ..., "owner_advertiser_id"?: ..., "partner"?: false}, '
        'POST audience {"audience_id": ..., "delete": true | "expires_in_days": N}.',
    )
    p.add_argument("--db", required=True, help="SQLite file holding the sandbox state")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765, help="0 picks a free port (default 8765)")
    p.add_argument(
        "--token",
        default=next(iter(DEFAULT_TOKENS)),
        help="access token to accept (default: sandbox-token)",
    )
    p.add_argument(
        "--advertiser",
        action="extend",
        nargs="+",
        dest="advertisers",
        metavar="ID",
        help="advertiser ids the token can manage "
        "(default: 7000000000000000001 7000000000000000002)",
    )
    p.add_argument(
        "--min-audience-size",
        type=int,
        default=1000,
        metavar="N",
        help="refuse an APPEND/REMOVE/REPLACE that leaves fewer users (default 1000; 0 = off)",
    )
    p.add_argument(
        "--replace-cooldown",
        type=float,
        default=DAY,
        metavar="SECONDS",
        help="a REPLACE is refused this long after the last CREATE/REPLACE of its audience "
        "(default 86400; 0 = off)",
    )
    p.add_argument(
        "--partner-warmup",
        type=float,
        default=90.0,
        metavar="SECONDS",
        help="a new partner audience refuses mappings (HTTP 400, 40002) this long "
        "(default 90; 0 = off)",
    )
    p.add_argument(
        "--max-updates-per-day",
        type=int,
        default=24,
        metavar="N",
        help="APPEND+REMOVE+REPLACE per advertiser in any 24 h (default 24; 0 = off)",
    )
    p.add_argument(
        "--max-audiences",
        type=int,
        default=400,
        metavar="N",
        help="audiences per advertiser, shared-in ones included (default 400)",
    )
    p.add_argument(
        "--match-rate",
        type=float,
        default=0.7,
        metavar="SHARE",
        help="share of users TikTok matches, decided per digest; the floor and cover_num count "
        "matched users (default 0.7; 1: all)",
    )
    p.add_argument(
        "--refusal-wording",
        choices=["rotate", "help", "sdk", "novel", "sandbox"],
        default="rotate",
        help="words of refusals: TikTok's help pages, the SDK's, words never seen before, the "
        "sandbox's own, or each in turn (default rotate)",
    )
    p.add_argument(
        "--file-ttl",
        type=float,
        default=3_600.0,
        metavar="SECONDS",
        help="an uploaded file_path expires (40910) after this (default 3600)",
    )
    p.add_argument(
        "--update-processing",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="an APPEND or REMOVE is refused this long after the audience's previous APPEND or "
        "REMOVE (default 2; TikTok shows no processing state, so neither does the sandbox)",
    )
    p.add_argument(
        "--history-wording",
        choices=["rotate", "lower", "enum", "novel", "none"],
        default="rotate",
        help="action words of audience_history, which TikTok does not document: lowercase "
        "(as a real answer shows), the update enums, words never seen, no history, or each in "
        "turn (default rotate)",
    )
    p.add_argument(
        "--lenient",
        action="store_true",
        help="switch the realism rules off (min size 1, every user matched, no cooldown, "
        "warm-up, daily limit, processing window or mapping rate limit), for demos and "
        "benchmarks",
    )
    p.add_argument(
        "--slow-seconds",
        type=float,
        default=5.0,
        help="duration of the `slow` and `trickle` faults and the `late_create` (`late_listed`) "
        "listing delay (default 5)",
    )
    p.add_argument("--max-upload-bytes", type=int, default=50 * 1024 * 1024)
    p.add_argument(
        "--mapping-rate-limit",
        type=int,
        default=50,
        metavar="N",
        help="answer 40100 above N segment/mapping calls per second per token (default 50, "
        "TikTok's)",
    )
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND:N|KIND:RATE[@PATHS]",
        help=f"inject faults: kinds {', '.join(sorted(KINDS))}; e.g. rate_limit:3 "
        "(next 3 calls), http_503:0.33 (a third of calls), "
        "drop:1@/segment/mapping/ (path filter). Applied before the answer (not processed) "
        f"except {', '.join(sorted(AFTER))}. code_NNNNN answers that TikTok code (any N: every "
        "code of the official table, or one never documented); redirect "
        "answers 307 to http://127.0.0.1:9; late_create creates but lists the audience only "
        "--slow-seconds later and drops the answer (late_listed: answers it); drop_mid_body "
        "cuts the body in half; trickle sends it byte by byte over --slow-seconds; no_data "
        "answers code 0 without data",
    )
    p.add_argument("--seed", type=int, default=0, help="seed for rate-based faults")
    return p


def rules_line(args: argparse.Namespace) -> str:
    """The rules in force, in a few words: what a user trying things needs to know."""
    if args.lenient:
        return "lenient (every realism rule off: size 1 allowed, every user matched)"
    rules = [
        f"updates may not leave fewer than {args.min_audience_size:,} matched users"
        if args.min_audience_size
        else "no size floor",
        f"{args.match_rate:.0%} of users matched",
        f"one REPLACE per {args.replace_cooldown:g} s" if args.replace_cooldown else "",
        f"APPEND/REMOVE {args.update_processing:g} s apart" if args.update_processing else "",
        f"partner warm-up {args.partner_warmup:g} s" if args.partner_warmup else "",
        f"{args.max_updates_per_day} updates a day per advertiser"
        if args.max_updates_per_day
        else "",
        f"{args.mapping_rate_limit} mappings a second" if args.mapping_rate_limit else "",
    ]
    return ", ".join(r for r in rules if r)


def build_server(args: argparse.Namespace, faults: list[FaultRule]) -> SandboxServer:
    """A (not yet started) server configured by the parsed command line."""
    advertisers = args.advertisers or DEFAULT_TOKENS[next(iter(DEFAULT_TOKENS))]
    return SandboxServer(
        args.db,
        host=args.host,
        port=args.port,
        tokens={args.token: advertisers},
        min_audience_size=1 if args.lenient else args.min_audience_size,
        replace_cooldown_seconds=0 if args.lenient else args.replace_cooldown,
        partner_warmup_seconds=0 if args.lenient else args.partner_warmup,
        max_updates_per_day=0 if args.lenient else args.max_updates_per_day,
        max_audiences=args.max_audiences,
        slow_seconds=args.slow_seconds,
        max_upload_bytes=args.max_upload_bytes,
        mapping_rate_limit=0 if args.lenient else args.mapping_rate_limit,
        match_rate=1.0 if args.lenient else args.match_rate,
        refusal_wording=args.refusal_wording,
        file_ttl_seconds=args.file_ttl,
        update_processing_seconds=0 if args.lenient else args.update_processing,
        history_wording=args.history_wording,
        faults=faults,
    )


def serve(argv: Sequence[str]) -> int:
    parser = _serve_parser()
    parser.set_defaults(**env_defaults(parser, dict(os.environ)))
    args = parser.parse_args(argv)
    try:
        faults = [FaultRule.parse(spec, seed=args.seed) for spec in args.fault]
    except FaultError as exc:
        parser.error(str(exc))
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s sandbox %(message)s"
    )
    server = build_server(args, faults).start()
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    print(server.base_url, flush=True)  # one line: scripts read the URL from stdout
    logging.getLogger("target_tiktok_audiences.sandbox").info(
        "serving %s (admin %s, db %s); rules: %s",
        server.base_url,
        server.admin_url,
        args.db,
        rules_line(args),
    )
    while not done.wait(0.5):
        pass
    server.stop()
    return 0


def audience_rows(db: Path) -> list[dict[str, Any]]:
    """Audiences in a sandbox db, read-only (works while a server is running)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        rows = conn.execute(
            "SELECT a.advertiser_id, a.audience_id, a.name, a.audience_type, a.calculate_type, "
            "a.member_count, (SELECT group_concat(DISTINCT m.id_type) FROM members m "
            "WHERE m.audience_id = a.audience_id) AS id_types "
            "FROM audiences a ORDER BY a.advertiser_id, a.seq"
        ).fetchall()
        return [dict(r) for r in rows]
    finally:
        conn.close()


def show(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="tiktok-audiences-sandbox show",
        description="Print the audiences stored in a sandbox db.",
    )
    parser.add_argument("--db", required=True)
    args = parser.parse_args(argv)
    db = Path(args.db)
    if not db.exists():
        print(f"no sandbox database at {db}", file=sys.stderr)
        return 2
    header = ("advertiser", "audience_id", "name", "type", "calculate_type", "members")
    table = [header] + [
        (
            r["advertiser_id"],
            r["audience_id"],
            r["name"],
            r["audience_type"],
            r["calculate_type"] or r["id_types"] or "-",
            str(r["member_count"]),
        )
        for r in audience_rows(db)
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    if len(table) == 1:
        print("(no audiences)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["show"]:
        return show(argv[1:])
    if argv[:1] == ["serve"]:
        argv = argv[1:]
    return serve(argv)


if __name__ == "__main__":
    sys.exit(main())
