"""The README's (and docs/') Meltano commands, run as written in a throwaway Meltano project.

The blocks run are the ```bash fences right after `<!-- readme-test: NAME -->` in README.md and
docs/*.md. Each
runs as one bash script (`set -euo pipefail`), so quoting, `$VARS` and `&` behave as in a
user's shell, in a fresh project that has what the README presumes: a configured tap-postgres
over a real PostgreSQL table of 1,600 users. Only what cannot work offline is swapped, visibly:
- the raw GitHub URLs of `plugins/` -> a copy of this checkout's `plugins/` whose
  `pip_url: git+<repo>.git` is `-e <this checkout>`;
- the loader's API base URL (TikTok by default) -> a sandbox started here;
- the sandbox's documented port 8765 -> a free port (in the block and the utility's setting);
- the alert recipe's `notify-oncall` (the user's own paging command) -> a shell function that
  prints ALERT.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from target_tiktok_audiences.sandbox.cli import _serve_parser, audience_rows
from target_tiktok_audiences.sandbox.server import run_sandbox
from target_tiktok_audiences.sandbox.store import Store

from helpers import sandbox_windows
from helpers.pg import PostgresCluster, pgcluster, throwaway_cluster
from helpers.warehouse import docs_blocks

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
MELTANO = Path(sys.executable).parent / "meltano"
LOADER = "target-tiktok-audiences"
UTILITY = "tiktok-audiences-sandbox"
DOCUMENTED_PORT = "8765"
# Enough that more than 1,000 of them match (the sandbox, like TikTok, matches only part of
# them: 70% by default), so the quick start's audiences are usable and the status healthy.
USERS = 1600
STREAM = "public-users"  # no `audiences` mapping: the audience is named after the stream
BLOCK = re.compile(r"<!-- readme-test: ([\w-]+) -->\n```bash\n(.*?)\n```", re.DOTALL)


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def readme_blocks() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in (README, *DOCS):
        for name, block in BLOCK.findall(path.read_text(encoding="utf-8")):
            assert name not in found, f"{path.name}: block {name} is marked twice"
            found[name] = block
    return found


def homepage() -> str:
    meta = importlib.metadata.metadata("target-tiktok-audiences")
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
    return urls["Homepage"]


def raw_plugins_url() -> str:
    owner_repo = homepage().removeprefix("https://github.com/")
    return f"https://raw.githubusercontent.com/{owner_repo}/main/plugins"


# -- the project the README presumes ----------------------------------------------------------


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresCluster]:
    with throwaway_cluster() as cluster:
        yield cluster


@pytest.fixture
def users_url(pg: PostgresCluster) -> str:
    database = f"crm_{uuid.uuid4().hex[:12]}"
    pg.create_database(database)
    # Mixed case on purpose: the audience holds the normalised (lowercased) addresses.
    pg.psql(
        "CREATE TABLE users (id integer PRIMARY KEY, email text);"
        f"INSERT INTO users SELECT i, 'User' || i || '@Example.com' "
        f"FROM generate_series(1, {USERS}) AS i;",
        database,
    )
    return str(pg.url(database))


EXPECTED_MEMBERS = {
    "EMAIL_SHA256": sorted(sha256(f"user{i}@example.com") for i in range(1, USERS + 1))
}


@dataclass
class Project:
    root: Path
    env: dict[str, str]

    def meltano(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(MELTANO), *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )

    def run_block(self, script: str, env: Mapping[str, str]) -> tuple[int, str]:
        """Run a README block with bash; returns (exit code, stdout + stderr).

        Output goes to a file, not a pipe: a command sent to the background (`&`) keeps its
        pipe open after bash exits. The block's process group is ended afterwards.
        """
        log = self.root / "block.log"
        with log.open("w") as out:
            proc = subprocess.Popen(
                ["bash", "-c", "set -euo pipefail\n" + script],
                cwd=self.root,
                env={**self.env, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: background jobs included
            )
            try:
                code = proc.wait(timeout=400)
            finally:
                with contextlib.suppress(ProcessLookupError):  # nothing left running
                    os.killpg(proc.pid, signal.SIGTERM)
        return code, log.read_text()


def _clean_env(root: Path) -> dict[str, str]:
    # Settings from the developer's shell must not leak into the project under test.
    prefixes = ("MELTANO_", "TAP_POSTGRES", "TARGET_TIKTOK_AUDIENCES", "TIKTOK_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(
        {
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            "NO_COLOR": "1",
            "PATH": f"{MELTANO.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
    )
    return env


@pytest.fixture
def project(tmp_path: Path, users_url: str, tmp_path_factory: pytest.TempPathFactory) -> Project:
    """A Meltano project with tap-postgres configured and installed, and nothing else."""
    root = tmp_path / "project"
    root.mkdir()
    ours = yaml.safe_load((REPO / "meltano.yml").read_text())
    (tap,) = ours["plugins"]["extractors"]
    meltano_yml = {
        "default_environment": "dev",
        "environments": [{"name": "dev"}],
        "send_anonymous_usage_stats": False,
        "project_id": str(uuid.uuid4()),  # else Meltano writes one in, re-serialising the file
        "plugins": {"extractors": [tap]},
    }
    (root / "meltano.yml").write_text(yaml.safe_dump(meltano_yml, sort_keys=False))
    project = Project(root, {**_clean_env(root), "TAP_POSTGRES_SQLALCHEMY_URL": users_url})
    # Serialised with the other Meltano tests, so a cold uv cache is filled once.
    with (tmp_path_factory.getbasetemp().parent / "meltano-install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        proc = project.meltano("install")
    assert proc.returncode == 0, f"meltano install failed:\n{proc.stderr[-4000:]}"
    return project


@pytest.fixture
def local_plugins(tmp_path: Path) -> Path:
    """This checkout's plugins/ with the GitHub pip_url turned into this checkout."""
    git_url = f"git+{homepage()}.git"
    out = tmp_path / "plugins"
    for source in sorted((REPO / "plugins").glob("*/*.yml")):
        text = source.read_text()
        assert f"pip_url: {git_url}\n" in text, f"{source.name}: pip_url is not {git_url}"
        target = out / source.parent.name / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text.replace(f"pip_url: {git_url}\n", f"pip_url: -e {REPO}\n"))
    return out


def offline(block: str, plugins: Path) -> str:
    url = raw_plugins_url()
    assert url + "/" in block, f"the block should add plugins from {url}"
    return block.replace(url, str(plugins))


def meltano_plugins(project: Project) -> dict[str, list[str]]:
    config = yaml.safe_load((project.root / "meltano.yml").read_text())
    return {kind: [p["name"] for p in plugins] for kind, plugins in config["plugins"].items()}


def config_list(project: Project) -> str:
    proc = project.meltano("config", "list", LOADER)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout


def status_alert(project: Project, base_url: str, token: str) -> str:
    """The alert recipe's block, with `notify-oncall` standing for the user's paging command."""
    block = readme_blocks()["status-alert"]
    assert "notify-oncall" in block
    stub = 'notify-oncall() { echo "ALERT $*"; }\n'
    _, output = project.run_block(
        stub + block,
        {"TARGET_TIKTOK_AUDIENCES_API_BASE_URL": base_url, "TIKTOK_ACCESS_TOKEN": token},
    )
    return output


def members_by_advertiser(db: Path) -> dict[str, dict[str, Any]]:
    """{advertiser: {name, type, members}} of a sandbox db, one audience per advertiser."""
    store = Store(db)
    try:
        found: dict[str, dict[str, Any]] = {}
        for row in audience_rows(db):
            assert row["advertiser_id"] not in found, "more than one audience per advertiser"
            found[row["advertiser_id"]] = {
                "name": row["name"],
                "type": row["audience_type"],
                "members": store.members(row["audience_id"]),
            }
        return found
    finally:
        store.close()


# -- the tests --------------------------------------------------------------------------------


def test_readme_marks_its_meltano_blocks() -> None:
    assert sorted(readme_blocks()) == ["meltano", "meltano-sandbox", "status-alert"]


def test_no_outdated_meltano_syntax() -> None:
    """Meltano 3+: `config set <plugin> …` and `add <name>`, not `config <plugin> set …` or
    `add loader <name>` (Meltano 4 reads the latter as a utility named `loader`)."""
    old = re.compile(r"meltano (config [\w-]+ (set|list|unset)|add (loader|extractor|utility) )")
    files = [README, *DOCS, REPO / "meltano.yml", *sorted((REPO / "plugins").glob("*/*.yml"))]
    for path in files:
        assert old.findall(path.read_text(encoding="utf-8")) == [], path.name


def test_install_instructions_point_at_the_repository() -> None:
    text = README.read_text(encoding="utf-8")
    git_url = f"git+{homepage()}.git"
    assert f"pip install {git_url}\n" in text
    assert f"pipx install {git_url}\n" in text


def test_sandbox_utility_definitions_agree() -> None:
    """meltano.yml's utility (run by `make demo`) is the Hub file's, minus the pip_url; its port
    is the one the `sandbox` environment and the README point the loader at."""
    ours = yaml.safe_load((REPO / "meltano.yml").read_text())
    (utility,) = ours["plugins"]["utilities"]
    hub = yaml.safe_load(
        (REPO / "plugins" / "utilities" / f"{UTILITY}--target-tiktok-audiences.yml").read_text()
    )
    for key in ("name", "namespace", "executable", "settings", "commands"):
        assert utility[key] == hub[key], key
    assert "pip_url" not in utility, "this checkout's console script, installed by make install"
    (port,) = [s["value"] for s in hub["settings"] if s["name"] == "port"]
    assert str(port) == DOCUMENTED_PORT == str(_serve_parser().get_default("port"))
    assert f"http://127.0.0.1:{port}/open_api/v1.3" in readme_blocks()["meltano-sandbox"]


def test_meltano_block(project: Project, local_plugins: Path, tmp_path: Path) -> None:
    block = readme_blocks()["meltano"]
    (advertisers,) = re.findall(r"advertiser_ids '(\[[^']*\])'", block)
    advertiser_ids: list[str] = json.loads(advertisers)
    token = f"readme-token-{uuid.uuid4().hex[:8]}"
    with run_sandbox(
        tmp_path / "sandbox.db", **sandbox_windows(tokens={token: advertiser_ids})
    ) as sandbox:
        code, output = project.run_block(
            offline(block, local_plugins),
            {
                "TIKTOK_ACCESS_TOKEN": token,
                # The block leaves api_base_url at TikTok's; the environment wins over it.
                "TARGET_TIKTOK_AUDIENCES_API_BASE_URL": sandbox.base_url,
            },
        )
        assert code == 0, output[-6000:]
        audiences = {a["advertiser_id"]: a for a in sandbox.audiences()}
        # The alert recipe on this quick-start project (no `audiences`): healthy, so no alert.
        alert = status_alert(project, sandbox.base_url, token)
        assert "ALERT" not in alert, alert[-4000:]
        status = json.loads((project.root / "status.json").read_text())
        assert status["healthy"] is True
        assert status["source"].startswith("the snapshot store ")
        assert sorted((a["advertiser_id"], a["name"]) for a in status["audiences"]) == sorted(
            (adv, STREAM) for adv in advertiser_ids
        )
        # An audience deleted in Ads Manager: the same recipe pages.
        (gone, *_) = sandbox.audiences(advertiser_ids[0])
        sandbox.delete_audience(gone["audience_id"])
        alert = status_alert(project, sandbox.base_url, token)
        assert "ALERT TikTok audiences need attention status.json" in alert, alert[-4000:]
        assert json.loads((project.root / "status.json").read_text())["healthy"] is False

    # The loader is a loader (not a utility named `loader`), and the only plugin added.
    assert meltano_plugins(project) == {"extractors": ["tap-postgres"], "loaders": [LOADER]}
    # The token went to .env, never to meltano.yml, and is shown redacted.
    assert (
        project.root / ".env"
    ).read_text() == f"TARGET_TIKTOK_AUDIENCES_ACCESS_TOKEN='{token}'\n"
    assert token not in (project.root / "meltano.yml").read_text()
    listed = config_list(project)
    assert token not in listed
    assert re.search(r"^access_token .* current value: \(redacted\) ", listed, re.M)
    assert re.search(
        rf"^advertiser_ids .* current value: {re.escape(str(advertiser_ids))} ", listed, re.M
    )
    assert sorted(audiences) == sorted(advertiser_ids)
    for audience in audiences.values():
        assert (audience["name"], audience["audience_type"]) == (STREAM, "Customer File")
        assert audience["members"] == EXPECTED_MEMBERS


def test_meltano_sandbox_block(project: Project, local_plugins: Path) -> None:
    block = readme_blocks()["meltano-sandbox"]
    assert f"127.0.0.1:{DOCUMENTED_PORT}/" in block
    port = str(pgcluster.free_port())
    code, output = project.run_block(
        offline(block, local_plugins).replace(DOCUMENTED_PORT, port),
        {"TIKTOK_AUDIENCES_SANDBOX_PORT": port},
    )
    assert code == 0, output[-6000:]

    assert meltano_plugins(project) == {
        "extractors": ["tap-postgres"],
        "utilities": [UTILITY],
        "loaders": [LOADER],
    }
    listed = config_list(project)
    assert re.search(r"^access_token .* current value: \(redacted\) ", listed, re.M)
    assert "sandbox-token" not in listed
    # The utility's default db, in the project's .meltano/.
    found = members_by_advertiser(project.root / ".meltano" / "tiktok-audiences-sandbox.db")
    (advertisers,) = re.findall(r"advertiser_ids '(\[[^']*\])'", block)
    assert sorted(found) == sorted(json.loads(advertisers))
    for audience in found.values():
        assert (audience["name"], audience["type"]) == (STREAM, "Customer File")
        assert audience["members"] == EXPECTED_MEMBERS
    # The block's `lenient` setting reached the sandbox (its first line lists the rules).
    assert "rules: lenient (every realism rule off" in output, output[-4000:]
    # `tiktok-audiences-sandbox:show` printed it.
    assert re.search(rf"^\S+ +\S+ +{STREAM} +Customer File +EMAIL_SHA256 +{USERS}$", output, re.M)


def _anchors(markdown: str) -> set[str]:
    """GitHub's anchors of a file's headings: lowercase, punctuation dropped, spaces -> '-'."""
    heads = re.findall(r"^#+ (.+)$", markdown, re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


def test_links_between_the_readme_and_docs_resolve() -> None:
    """The README of a few screens sends readers to docs/: every link lands on a heading."""
    for path in (README, *DOCS):
        text = path.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+://", target):
                continue
            file, _, anchor = target.partition("#")
            linked = (path.parent / file).resolve() if file else path
            assert linked.exists(), f"{path.name}: {target}"
            if anchor and linked.suffix == ".md":
                assert anchor in _anchors(linked.read_text(encoding="utf-8")), (
                    f"{path.name}: {target}"
                )


# -- docs/warehouse-hashing.md ----------------------------------------------------------------

FUNCTIONS_FILE = "sql/postgres/tiktok_identifiers.sql"


def test_warehouse_hashing_recipe(project: Project, local_plugins: Path, tmp_path: Path) -> None:
    """The README's Meltano block, then the doc's recipe as written: a view of digests made by
    the shipped functions, read alone with hash_identifiers false, gives an audience of the
    very digests the target made from the raw table."""
    blocks = docs_blocks()
    readme = offline(readme_blocks()["meltano"], local_plugins)
    (advertisers,) = re.findall(r"advertiser_ids '(\[[^']*\])'", readme)
    advertiser_ids: list[str] = json.loads(advertisers)
    view = blocks["warehouse-view"]
    assert FUNCTIONS_FILE in view
    # The file of a checkout of this repository, wherever it is.
    view = view.replace(FUNCTIONS_FILE, str(REPO / FUNCTIONS_FILE))
    token = f"readme-token-{uuid.uuid4().hex[:8]}"
    with run_sandbox(tmp_path / "sandbox.db", tokens={token: advertiser_ids}) as sandbox:
        env = {
            "TIKTOK_ACCESS_TOKEN": token,
            "TARGET_TIKTOK_AUDIENCES_API_BASE_URL": sandbox.base_url,
        }
        for block in (readme, view, blocks["warehouse-meltano"]):
            code, output = project.run_block(block, env)
            assert code == 0, output[-6000:]
        audiences = {(a["advertiser_id"], a["name"]): a for a in sandbox.audiences()}

    names = (STREAM, "CRM users")  # the README's run from the table, the recipe's from the view
    assert sorted(audiences) == sorted((adv, name) for adv in advertiser_ids for name in names)
    for audience in audiences.values():
        assert audience["members"] == EXPECTED_MEMBERS
    assert (
        f"Stream 'public-tiktok_users': {USERS:,} digests arrived pre-hashed "
        "(hash_identifiers: false)" in output
    )
    # Only the view was read: the table's stream never reached the target (which names every
    # stream it gets, "ignored: it is not listed in the audiences setting" included).
    assert "Stream 'public-tiktok_users'" in output
    assert "Stream 'public-users'" not in output
