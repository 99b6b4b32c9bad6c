"""A throwaway PostgreSQL cluster for the end-to-end tests.

The cluster code lives in ``demo/pgcluster.py`` (the demo runs it too, without pytest); this
module loads it by path and adds the test policy: a missing PostgreSQL is a skip only on a
developer machine (``CI`` unset) that has no binaries at all. In CI it fails loudly, because a
green run that skipped the real pipeline would prove nothing.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load_pgcluster() -> ModuleType:
    name = "tta_demo_pgcluster"  # private name: never clash with a `demo` package elsewhere
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "demo" / "pgcluster.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look the module up while the class is built
    spec.loader.exec_module(module)
    return module


pgcluster = _load_pgcluster()
PostgresCluster = pgcluster.PostgresCluster


def require_postgres() -> None:
    """Skip (developer machine without PostgreSQL) or fail (CI) when binaries are missing."""
    if pgcluster.find_bindir() is not None:
        return
    message = (
        "PostgreSQL server binaries (initdb, pg_ctl) not found; "
        "run `bash scripts/ensure-postgres` (make test does)"
    )
    if os.environ.get("CI"):
        pytest.fail(message + " - CI must run the PostgreSQL pipeline tests", pytrace=False)
    pytest.skip(message)


@contextmanager
def throwaway_cluster() -> Iterator[PostgresCluster]:
    """A fresh cluster for one pytest session (one per xdist worker)."""
    require_postgres()
    with pgcluster.postgres_cluster() as cluster:
        yield cluster
