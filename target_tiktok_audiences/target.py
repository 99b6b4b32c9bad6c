"""target-tiktok-audiences: Singer target that keeps TikTok Custom Audiences in sync.

A thin adapter: the command (main) runs the Singer target of singer/ (target.py: the SDK's
overrides; fastpath.py: the record path; reader.py, sink.py), whose overrides hand over to
settings/ (config), run.py (the run's lifecycle) or failures.py (how a known failure ends).
"""

from __future__ import annotations

import gc

from target_tiktok_audiences.singer.target import TargetTikTokAudiences

__all__ = ["TargetTikTokAudiences", "main"]


def main() -> None:
    """The `target-tiktok-audiences` command."""
    # What the imports made (the SDK, jsonschema, click, our modules) lives until exit: frozen,
    # it is left out of every later full collection and of the collections at exit, ~80 ms of
    # CPU a run (bench/PROFILE.md, issue 21). Only the command does it, never a test process.
    gc.freeze()
    TargetTikTokAudiences.cli()


if __name__ == "__main__":
    main()
