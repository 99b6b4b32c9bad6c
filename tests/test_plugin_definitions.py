"""meltano.yml, the Meltano Hub definition and the README say what the target really accepts.

The source of truth is `target-tiktok-audiences --about`: CONFIG_SCHEMA plus the SDK's builtin
settings (stream_maps, flattening_*, ...). Both plugin definitions list every one of them, and
nothing else, so that `meltano config` offers them with the right kind (Meltano parses values
from the environment by kind: a number declared `integer` would break `0.5`).
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from target_tiktok_audiences.sandbox.cli import SWITCHES, _serve_parser, build_server, env_defaults
from target_tiktok_audiences.sandbox.rules import DEFAULT_TOKENS
from target_tiktok_audiences.settings import CONFIG_SCHEMA
from target_tiktok_audiences.target import TargetTikTokAudiences

REPO = Path(__file__).resolve().parents[1]
MELTANO_YML = REPO / "meltano.yml"
HUB_FILE = REPO / "plugins" / "loaders" / "target-tiktok-audiences--target-tiktok-audiences.yml"
CLI = Path(sys.executable).parent / "target-tiktok-audiences"
# Objects listed by their sub-settings (`faker_config.seed`), as Meltano Hub lists them.
LEAF_OBJECTS = {"faker_config"}
README_START, README_END = "<!-- settings:start -->", "<!-- settings:end -->"

# JSON-schema type -> the Meltano setting kinds that carry it faithfully.
KINDS = {
    "string": {"string", "options", "password"},
    "boolean": {"boolean"},
    "integer": {"integer"},
    "number": {"decimal"},  # Meltano parses decimal to float; integer would truncate 0.5 rps
    "array": {"array"},
    "object": {"object"},
}
# Keys Meltano Hub accepts in a loader definition and in a setting (its JSON schemas).
HUB_KEYS = {
    "capabilities",
    "name",
    "pip_url",
    "variant",
    "description",
    "executable",
    "repo",
    "namespace",
    "logo_url",
    "label",
    "settings",
    "docs",
    "settings_group_validation",
    "commands",
    "dialect",
    "target_schema",
    "hidden",
    "requires",
    "maintenance_status",
    "domain_url",
    "keywords",
    "definition",
    "next_steps",
    "settings_preamble",
    "usage",
    "prereq",
    "quality",
}
HUB_REQUIRED = {
    "name",
    "namespace",
    "variant",
    "label",
    "description",
    "pip_url",
    "executable",
    "repo",
    "capabilities",
    "settings",
    "keywords",
    "maintenance_status",
    "domain_url",
}
HUB_SETTING_KEYS = {
    "name",
    "aliases",
    "label",
    "value",
    "placeholder",
    "kind",
    "description",
    "tooltip",
    "documentation",
    "protected",
    "env",
    "value_processor",
    "value_post_processor",
    "oauth",
    "options",
    "docs",
    "sensitive",
}


def _about(fmt: str) -> str:
    exe = str(CLI) if CLI.exists() else shutil.which("target-tiktok-audiences")
    assert exe, "target-tiktok-audiences is not installed"
    return subprocess.run(
        [exe, "--about", "--format", fmt], check=True, capture_output=True, text=True, timeout=60
    ).stdout


@pytest.fixture(scope="module")
def about() -> dict[str, Any]:
    return json.loads(_about("json"))


@pytest.fixture(scope="module")
def meltano_yml() -> dict[str, Any]:
    return yaml.safe_load(MELTANO_YML.read_text())


@pytest.fixture(scope="module")
def hub() -> dict[str, Any]:
    return yaml.safe_load(HUB_FILE.read_text())


def loader_of(project: dict[str, Any]) -> dict[str, Any]:
    (loader,) = [p for p in project["plugins"]["loaders"] if p["name"] == "target-tiktok-audiences"]
    return loader


def _types(prop: dict[str, Any]) -> set[str]:
    """Non-null JSON types of a property, looking into oneOf/anyOf branches."""
    raw = prop.get("type")
    if raw is not None:
        return {t for t in ([raw] if isinstance(raw, str) else raw) if t != "null"}
    branches = [b for b in prop.get("oneOf", prop.get("anyOf", [])) if isinstance(b, dict)]
    return set().union(*(_types(b) for b in branches))


def _project() -> tuple[str, str, set[str]]:
    """(distribution name, Homepage URL, console scripts) of the installed project."""
    meta = importlib.metadata.metadata("target-tiktok-audiences")
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
    scripts = {
        ep.name
        for ep in importlib.metadata.entry_points(group="console_scripts")
        if ep.value.startswith("target_tiktok_audiences")
    }
    return meta["Name"], urls["Homepage"], scripts


def expected_settings(about: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Setting name -> its JSON-schema property; LEAF_OBJECTS as dotted leaves."""
    out: dict[str, dict[str, Any]] = {}
    for name, prop in about["settings"]["properties"].items():
        if name in LEAF_OBJECTS:
            for sub, sub_prop in prop["properties"].items():
                out[f"{name}.{sub}"] = sub_prop
        else:
            out[name] = prop
    return out


def normalise(text: str) -> str:
    return " ".join(text.split())


DEFINITIONS = pytest.mark.parametrize("source", ["meltano.yml", "hub"])


@pytest.fixture
def definition(source: str, meltano_yml: dict[str, Any], hub: dict[str, Any]) -> dict[str, Any]:
    return loader_of(meltano_yml) if source == "meltano.yml" else hub


# -- settings -------------------------------------------------------------------------------


def test_config_schema_is_what_about_reports(about: dict[str, Any]) -> None:
    # The definitions are checked against --about; make sure that is CONFIG_SCHEMA (+ builtins).
    assert set(CONFIG_SCHEMA["properties"]) <= set(about["settings"]["properties"])


@DEFINITIONS
def test_every_setting_and_nothing_else(definition: dict[str, Any], about: dict[str, Any]) -> None:
    names = [s["name"] for s in definition["settings"]]
    assert len(names) == len(set(names)), "a setting is listed twice"
    expected = expected_settings(about)
    assert sorted(set(names) - set(expected)) == [], "settings the target does not know"
    assert sorted(set(expected) - set(names)) == [], "settings missing from the definition"


@DEFINITIONS
def test_kinds_labels_descriptions(definition: dict[str, Any], about: dict[str, Any]) -> None:
    expected = expected_settings(about)
    for setting in definition["settings"]:
        name, prop = setting["name"], expected[setting["name"]]
        kind = setting.get("kind")
        allowed = set().union(*(KINDS[t] for t in _types(prop))) if _types(prop) else {"string"}
        assert kind in allowed, f"{name}: kind {kind}, JSON type {sorted(_types(prop))}"
        if prop.get("enum"):
            assert kind == "options", f"{name}: an enum is kind options"
            assert [o["value"] for o in setting["options"]] == prop["enum"], name
            assert all(o.get("label") for o in setting["options"]), name
        assert setting.get("label"), f"{name}: no label"
        if prop.get("title"):
            assert setting["label"] == prop["title"], name
        assert normalise(setting.get("description", "")) == normalise(
            prop.get("description", "")
        ), f"{name}: description differs from --about"
        if "value" in setting:  # a default in the definition must be the target's default
            assert setting["value"] == prop.get("default"), name


@DEFINITIONS
def test_secrets_are_sensitive(
    source: str, definition: dict[str, Any], about: dict[str, Any]
) -> None:
    expected = expected_settings(about)
    secrets = {n for n, p in expected.items() if p.get("secret") or p.get("writeOnly")}
    assert "access_token" in secrets
    # Meltano 4 writes secrets as `kind: string` + `sensitive: true` (`password` is deprecated
    # and rewritten on the next `meltano config set`); the Hub still uses `kind: password`.
    secret_kind = "string" if source == "meltano.yml" else "password"
    for setting in definition["settings"]:
        name = setting["name"]
        assert bool(setting.get("sensitive")) == (name in secrets), name
        if name in secrets:
            assert setting["kind"] == secret_kind, name
        else:
            assert setting["kind"] != "password", name


@DEFINITIONS
def test_capabilities_match_the_target_class(
    definition: dict[str, Any], about: dict[str, Any]
) -> None:
    declared = [str(c.value) for c in TargetTikTokAudiences.capabilities]
    assert sorted(definition["capabilities"]) == sorted(declared) == sorted(about["capabilities"])


@DEFINITIONS
def test_settings_group_validation(definition: dict[str, Any], about: dict[str, Any]) -> None:
    groups = sorted(sorted(g) for g in definition["settings_group_validation"])
    # A token for real runs, or dry_run without network; the advertisers always.
    assert groups == [["access_token", "advertiser_ids"], ["advertiser_ids", "dry_run"]]
    required = set(about["settings"].get("required", []))
    assert all(required <= set(g) for g in groups)


@DEFINITIONS
def test_identity(definition: dict[str, Any]) -> None:
    name, _, scripts = _project()
    assert definition["name"] == name
    assert definition["namespace"] == "target_tiktok_audiences"
    assert definition["executable"] in scripts


# -- meltano.yml ----------------------------------------------------------------------------


def test_meltano_yml_follows_meltanos_schema(meltano_yml: dict[str, Any]) -> None:
    schema_file = importlib.resources.files("meltano") / "schemas" / "meltano.schema.json"
    jsonschema.validate(meltano_yml, json.loads(schema_file.read_text()))


def test_meltano_yml_project(meltano_yml: dict[str, Any]) -> None:
    loader = loader_of(meltano_yml)
    assert loader["pip_url"] == "-e ."
    (tap,) = meltano_yml["plugins"]["extractors"]
    assert (tap["name"], tap["variant"], tap["pip_url"]) == (
        "tap-postgres",
        "meltanolabs",
        "meltanolabs-tap-postgres",
    )
    environments = {e["name"]: e for e in meltano_yml["environments"]}
    assert meltano_yml["default_environment"] in environments
    assert meltano_yml["default_environment"] == "sandbox", "never real TikTok by default"
    # The loader's base config stays free of secrets: tokens come from .env / the environment.
    assert "access_token" not in loader.get("config", {})


def test_sandbox_environment_points_at_the_bundled_sandbox(meltano_yml: dict[str, Any]) -> None:
    sandbox = {e["name"]: e for e in meltano_yml["environments"]}["sandbox"]
    (loader,) = [
        p for p in sandbox["config"]["plugins"]["loaders"] if p["name"] == "target-tiktok-audiences"
    ]
    config = loader["config"]
    port = _serve_parser().get_default("port")
    assert config["api_base_url"] == f"http://127.0.0.1:{port}/open_api/v1.3"
    (token,) = [t for t in DEFAULT_TOKENS if t == config["access_token"]]
    assert config["advertiser_ids"] == list(DEFAULT_TOKENS[token])
    assert all(isinstance(a, str) for a in config["advertiser_ids"]), "ids are strings"


# -- the Hub definition ---------------------------------------------------------------------


def test_hub_definition_shape(hub: dict[str, Any]) -> None:
    assert sorted(set(hub) - HUB_KEYS) == [], "keys Meltano Hub does not accept"
    assert sorted(HUB_REQUIRED - set(hub)) == [], "keys Meltano Hub needs"
    for setting in hub["settings"]:
        assert sorted(set(setting) - HUB_SETTING_KEYS) == [], setting["name"]
    assert hub["maintenance_status"] == "active"
    assert "meltano_sdk" in hub["keywords"]
    assert re.fullmatch(r"https://\S+", hub["domain_url"])
    _, homepage, _ = _project()
    # No release on PyPI yet: the Hub installs from the repository (then: the package name).
    assert hub["pip_url"] == f"git+{homepage}.git"
    assert hub["repo"] == homepage
    # Hub convention: the variant is the GitHub owner, and the file is <name>--<variant>.
    owner = re.fullmatch(r"https://github\.com/([^/]+)/[^/]+", hub["repo"])
    assert owner and hub["variant"] == owner.group(1).lower()
    assert HUB_FILE.name == f"{hub['name']}--{hub['variant']}.yml"
    # Hub lists settings alphabetically.
    names = [s["name"] for s in hub["settings"]]
    assert names == sorted(names)


# -- README ---------------------------------------------------------------------------------


def about_settings_table(markdown: str) -> str:
    lines = markdown.splitlines()
    start = lines.index("## Settings")
    table: list[str] = []
    for line in lines[start + 1 :]:
        if line.startswith("|"):
            table.append(line.rstrip())
        elif table:
            break
    assert table, "--about --format markdown has no settings table"
    return "\n".join(table)


def test_readme_settings_table_is_current() -> None:
    readme = (REPO / "docs" / "settings.md").read_text(encoding="utf-8")
    assert README_START in readme and README_END in readme, (
        f"docs/settings.md needs {README_START} ... {README_END} around the settings table; "
        "then run `.venv/bin/python scripts/update-readme-settings`"
    )
    between = readme.split(README_START, 1)[1].split(README_END, 1)[0]
    assert between.strip() == about_settings_table(_about("markdown")), (
        "docs/settings.md: the table is out of date; run scripts/update-readme-settings"
    )


def test_update_readme_settings_script(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{README_START}\n| stale |\n{README_END}\n\nmore\n")
    script = [
        sys.executable,
        str(REPO / "scripts" / "update-readme-settings"),
        "--readme",
        str(readme),
    ]
    assert subprocess.run([*script, "--check"], capture_output=True).returncode == 1
    subprocess.run(script, check=True, capture_output=True)
    assert subprocess.run([*script, "--check"], capture_output=True).returncode == 0
    text = readme.read_text()
    assert text.startswith("# x\n\n") and text.endswith(f"{README_END}\n\nmore\n")
    assert about_settings_table(_about("markdown")) in text


def test_status_command(meltano_yml: dict[str, Any], hub: dict[str, Any]) -> None:
    """`meltano invoke target-tiktok-audiences:status` runs the package's status script with the
    settings Meltano puts in the environment; both definitions declare it alike."""
    ours, theirs = loader_of(meltano_yml)["commands"], hub["commands"]
    assert ours == theirs
    assert ours["status"]["executable"] == "tiktok-audiences-status"
    assert ours["status"]["args"] == "--config ENV"
    _, _, scripts = _project()
    assert "tiktok-audiences-status" in scripts


# -- settings that apply (issue 29) -----------------------------------------------------------


@DEFINITIONS
def test_settings_say_how_they_apply(definition: dict[str, Any], about: dict[str, Any]) -> None:
    settings = {s["name"]: s for s in definition["settings"]}
    props = about["settings"]["properties"]
    # load_method: the one value the target accepts, and nothing it refuses.
    assert props["load_method"]["enum"] == ["append-only"]
    assert settings["load_method"]["options"] == [{"label": "Append Only", "value": "append-only"}]
    assert "upsert" not in settings["load_method"]["description"]
    # faker is not installed with the target: its settings cannot apply and are not offered.
    assert not [n for n in settings if n.startswith("faker_config")]
    assert "faker_config" not in props
    # SDK settings that change nothing for TikTok audiences say so.
    for name in ("add_record_metadata", "batch_size_rows"):
        assert "has no effect" in settings[name]["description"].lower(), name
    # audiences shows its shape: the example in its description is a valid mapping list.
    text = settings["audiences"]["description"]
    example = json.loads(text[text.index("[") : text.index("]. Keys") + 1])
    jsonschema.validate(example, props["audiences"])
    assert example[0]["identifiers"] == {"EMAIL_SHA256": "email", "PHONE_SHA256": "phone"}
    # daily_update_operations reads in sentences, none of them long.
    sentences = settings["daily_update_operations"]["description"].split(". ")
    assert len(sentences) >= 5 and max(len(s.split()) for s in sentences) <= 25


def test_sdk_settings_the_target_refuses_are_not_offered(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"advertiser_ids": ["1"], "dry_run": True, "faker_config": {}}))
    proc = subprocess.run(
        [str(CLI), "--config", str(config)], input="", capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .endswith("Config validation failed: faker_config: unknown setting")
    ), proc.stderr


# -- the sandbox utility's switches (issue 29) --------------------------------------------------


UTILITY_FILE = (
    REPO / "plugins" / "utilities" / "tiktok-audiences-sandbox--target-tiktok-audiences.yml"
)


def test_the_sandbox_utility_exposes_every_switch(meltano_yml: dict[str, Any]) -> None:
    """Each rule that can be switched off, and `lenient`, is a setting of the utility; Meltano
    passes it as TIKTOK_AUDIENCES_SANDBOX_<NAME>, which `serve` reads."""
    hub = yaml.safe_load(UTILITY_FILE.read_text())
    (ours,) = meltano_yml["plugins"]["utilities"]
    parser = _serve_parser()
    actions = {a.dest: a for a in parser._actions}
    for definition in (hub, ours):
        settings = {s["name"]: s for s in definition["settings"]}
        assert set(SWITCHES) <= set(settings)
        for name in SWITCHES:
            kind = settings[name]["kind"]
            expected = {None: "boolean", int: "integer", float: "decimal"}[actions[name].type]
            assert kind == expected, name
            assert "value" not in settings[name], f"{name}: the default is the command's"
            if name != "lenient":
                default = actions[name].default
                assert f"default {default:g}" in settings[name]["description"], name


def test_sandbox_switches_from_the_environment() -> None:
    parser = _serve_parser()
    env = {
        "TIKTOK_AUDIENCES_SANDBOX_LENIENT": "true",
        "TIKTOK_AUDIENCES_SANDBOX_MATCH_RATE": "0.5",
        "TIKTOK_AUDIENCES_SANDBOX_MIN_AUDIENCE_SIZE": "0",
        "TIKTOK_AUDIENCES_SANDBOX_PORT": "9",  # the command line's, not a switch
    }
    assert env_defaults(parser, env) == {"lenient": True, "match_rate": 0.5, "min_audience_size": 0}
    parser.set_defaults(**env_defaults(parser, env))
    args = parser.parse_args(["--db", "x.db", "--match-rate", "0.9"])  # the flag wins
    assert (args.lenient, args.match_rate, args.min_audience_size) == (True, 0.9, 0)
    server = build_server(parser.parse_args(["--db", "x.db"]), [])
    assert (server.app.config.min_audience_size, server.app.config.match_rate) == (1, 1.0)
    bad = subprocess.run(
        [str(CLI.parent / "tiktok-audiences-sandbox"), "--db", "x.db"],
        env={"TIKTOK_AUDIENCES_SANDBOX_LENIENT": "maybe", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1] == (
        "tiktok-audiences-sandbox: error: TIKTOK_AUDIENCES_SANDBOX_LENIENT='maybe' is not a "
        "valid value for --lenient"
    )
