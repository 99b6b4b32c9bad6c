"""One supported Python range: pyproject, its tools, the workflow, CI and README agree."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_supported_python_range_is_the_same_everywhere() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    floor = pyproject["project"]["requires-python"]
    assert re.fullmatch(r">=3\.\d+", floor), floor
    minor = int(floor.split(".")[1])
    assert sys.version_info[:2] >= (3, minor)
    claimed = sorted(
        int(c.rsplit(".", 1)[1])
        for c in pyproject["project"]["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    )
    assert claimed[0] == minor, claimed
    assert pyproject["tool"]["mypy"]["python_version"] == f"3.{minor}"
    assert pyproject["tool"]["ruff"]["target-version"] == f"py3{minor}"
    workflow = (ROOT / ".github" / "workflows" / "test.yml").read_text()
    matrix = re.search(r"python-version: \[([^\]]*)\]", workflow)
    assert matrix is not None
    tested = [int(v.strip(' "').split(".")[1]) for v in matrix[1].split(",")]
    assert tested == claimed, (tested, claimed)  # every claimed version, none more
    # .ci/run proves the floor itself: it reads it from pyproject.toml.
    assert "requires-python" in (ROOT / ".ci" / "run").read_text()
    assert f"with Python 3.{minor}+ (`python3` on your PATH)" in (ROOT / "README.md").read_text()
