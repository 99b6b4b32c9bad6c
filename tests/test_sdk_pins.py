"""The SDK seam pinned (issue 28): the SDK source the package copies or inlines, and every
private SDK member it uses.

An SDK upgrade that changes one pinned function fails here, naming what to re-check; after
the re-check, the new hash goes in PINNED. A private SDK member used anywhere in the package
must be listed in PRIVATE_MEMBERS (and still exist), so an SDK release that renames or drops
one fails here rather than in production.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import inspect
import re
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import singer_sdk
from singer_sdk import Target
from singer_sdk.contrib.msgspec import MsgSpecReader
from singer_sdk.mapper import CustomStreamMap, SameRecordTransform
from singer_sdk.metrics import Counter
from singer_sdk.singerlib.encoding.base import GenericSingerReader
from singer_sdk.sinks import BatchSink, Sink

PACKAGE = Path(__file__).resolve().parent.parent / "target_tiktok_audiences"
SDK = Path(singer_sdk.__file__).parent
SDK_VERSION = version("singer-sdk")
RECORD_PATH = "singer/fastpath.py (_process_record_message, _plan, BlockLane)"


def _fget(prop: Any) -> Callable[..., Any]:
    return prop.fget  # type: ignore[no-any-return]


# (SDK function, what of ours copies or inlines it and must be re-checked, sha256 of its source)
PINNED: dict[str, tuple[Callable[..., Any], str, str]] = {
    "Target._process_record_message": (
        Target._process_record_message,
        f"{RECORD_PATH}: the SDK's record path step for step; tests/test_record_path.py",
        "08aaf4096e2d39e7c3826848feebbaac40fb7b3e67fe863576cde90e4e425dfc",
    ),
    "Target.get_sink": (
        Target.get_sink,
        f"{RECORD_PATH}: inlined as _sinks_active.get(stream_alias)",
        "d50a023664a5c97b494aedcf6edd39d366b17fac37fe8cbb71a754c0b9bdfe7f",
    ),
    "Target._handle_max_record_age": (
        Target._handle_max_record_age,
        f"{RECORD_PATH}: called once the record-age alarm rang, to drain",
        "5762750ab10354049bb9fd31787d353050ca44fe48ddefb8442980b988f494f0",
    ),
    "Target._max_record_age_in_minutes": (
        _fget(Target._max_record_age_in_minutes),
        "singer/fastpath.py _arm_age_alarm: the age is the time since the last full drain",
        "a31b250546161e1b4ab7dd72d883c2bfa7f89039cf1fc9c08063ad82540621ae",
    ),
    "Target._reset_max_record_age": (
        Target._reset_max_record_age,
        "singer/fastpath.py _reset_max_record_age: the alarm restarts where the SDK resets the age",
        "37d69f04fba3e162ead61f2017169290957bc36ae006f38e51f4c03769c671c3",
    ),
    "Target.drain_all": (
        Target.drain_all,
        "singer/fastpath.py: a full drain resets the age (_reset_max_record_age), and emits STATE",
        "1da0109210d345c4eb560910ef74e0b1eb34c605aef604f59d78986d4b130721",
    ),
    "BatchSink._get_context": (
        BatchSink._get_context,
        f"{RECORD_PATH}: inlined as the open batch (_pending_batch) once there is one",
        "4e0d39040097dc9b9be88c7c3c7d57544c4533175731ea077b62e72fbf448184",
    ),
    "Sink.tally_record_read": (
        Sink.tally_record_read,
        f"{RECORD_PATH}: inlined (_total_records_read, _batch_records_read)",
        "b1cfae5f7a3fab1f5160e787ec04259aa9e6fcab6c87909bb07dc52e66f4fae5",
    ),
    "Sink.is_full": (
        _fget(Sink.is_full),
        f"{RECORD_PATH}: inlined as _batch_records_read >= max_size",
        "662da81db8ad2d5a8dd315c3ac5da66350ade46a21b57595b8e23ea9f4dec605",
    ),
    "Sink.current_size": (
        _fget(Sink.current_size),
        f"{RECORD_PATH}: is_full inlined on the count it returns",
        "d5a202dd74824174865369e278ddcc28e034c95ae833e9e525214d83b1b0883d",
    ),
    "Sink.max_size": (
        _fget(Sink.max_size),
        f"{RECORD_PATH}: read once per SCHEMA message",
        "0ac6a26a385f86a75a7848c260172b0cab617c53ec279ab7366aeb70fff5ac9e",
    ),
    "Sink.include_sdc_metadata_properties": (
        _fget(Sink.include_sdc_metadata_properties),
        f"{RECORD_PATH}: read once per SCHEMA message",
        "15fc7038b734c4844ed3126a0f1cf353740e0c6f73c662f6d1f8e3061d510cca",
    ),
    "Sink.key_properties": (
        _fget(Sink.key_properties),
        f"{RECORD_PATH}: read once per SCHEMA message",
        "71b69a03e24dbbfe836d5e1db2137c023dad2724e0472ebb616eb3cd4f8bcfd7",
    ),
    "Sink._remove_sdc_metadata_from_record": (
        Sink._remove_sdc_metadata_from_record,
        "singer/fastpath.py SDC_FIELDS: the fields it pops, stripped only when a record has one",
        "7cd9e5fb192f13ec47940ea5d50cb2ac5080d60acd3a473ceeaf629753eb0f63",
    ),
    "Sink._singer_validate_message": (
        Sink._singer_validate_message,
        f"{RECORD_PATH}: called only when a key property is missing (its only check)",
        "018b08ee7f624f618b592153319c95009911e2d216e7ac692bd5d46a34d844d4",
    ),
    "Sink._validate_and_parse": (
        Sink._validate_and_parse,
        "sink.py AudienceSink._validate_and_parse skips it; the record path does not call it",
        "970aadabcc4da8c7fd3b877bdd4d32e497db8f53f2f1a02bde60b6f097b11c24",
    ),
    "Sink.preprocess_record": (
        Sink.preprocess_record,
        f"{RECORD_PATH}: not called, as a no-op for AudienceSink",
        "f8282df62eb5388bf0f290caf109733449e7c76da7910189a6e8be214eb83feb",
    ),
    "Sink._after_process_record": (
        Sink._after_process_record,
        f"{RECORD_PATH}: not called, as a no-op for AudienceSink (a DEBUG line)",
        "185b5536ec21f7fbe122833ce98e28a0a2795bae930eb6518613ef95ce9bbca6",
    ),
    "Counter.increment": (
        Counter.increment,
        f"{RECORD_PATH}: inlined as value += n, its log check every 4,096 records",
        "7310d5f6f52fdbf27b861c26f3e2f294c709b3b2c9f6639347d6f828e933daf1",
    ),
    "SameRecordTransform.transform": (
        SameRecordTransform.transform,
        f"{RECORD_PATH}: not called when it returns the record as is (no flattening)",
        "db46d82cacfd5593cfc76f63521added9f53b974413f29ae0820f2cee718c7af",
    ),
    "GenericSingerReader.process_lines": (
        GenericSingerReader.process_lines,
        "reader.py PrivateSingerReader._read: the SDK's loop, with a short way for RECORD lines",
        "f6d848854616d1d8f15ee84c52d07d1e04b96bd188832a8fddf1c35e96c4b35a",
    ),
    "GenericSingerReader.assert_line_requires": (
        GenericSingerReader.assert_line_requires,
        "singer/reader.py PrivateSingerReader.assert_line_requires: the same check, other words",
        "91c2ae04d02f56c88c275c4649207bf6c9a0c60de17ec4eb3fd2309d837b1d27",
    ),
    "MsgSpecReader.deserialize_json": (
        MsgSpecReader.deserialize_json,
        "reader.py PrivateSingerReader.deserialize_json: the same decoder, no line in errors",
        "eec0fe447cd2ae9ec12a6a31fbf4e07ae017a6852c5e1f9682432bd372abf092",
    ),
    "CustomStreamMap._eval": (
        CustomStreamMap._eval,
        "failures.py private_map_errors: the wrapper put in its place on each map",
        "389317fd6fbbdc123e80afe816196b1f95b34eb08e14f47a59fc8c8050bc2d2b",
    ),
    "singer_sdk.configuration._dict_config.parse_environment_config": (
        importlib.import_module("singer_sdk.configuration._dict_config").parse_environment_config,
        "status.py: reads --config ENV settings as the SDK does",
        "8795a086c3e468a6ff9735a0bb292b94ffe9ae9982086d140873f96736d6b11d",
    ),
}

# Every private SDK member the package uses (read, called, replaced or overridden): where.
PRIVATE_MEMBERS: dict[str, str] = {
    "Sink._add_sdc_metadata_to_record": "singer/fastpath.py record path",
    "Target._assert_line_requires": "singer/fastpath.py record path",
    "Target._assert_sink_exists": "singer/fastpath.py record path",
    "Sink._batch_records_read": "singer/fastpath.py record path and lanes",
    "Sink._total_records_read": "singer/fastpath.py record path and lanes",
    "BatchSink._pending_batch": "singer/fastpath.py record path and lanes",
    "BatchSink._get_context": "singer/fastpath.py record path and lanes",
    "Target._sinks_active": "singer/fastpath.py _plan",
    "Target._handle_max_record_age": "singer/fastpath.py, the SDK path's drain",
    "Target._MAX_RECORD_AGE_IN_MINUTES": "singer/fastpath.py, the alarm's limit",
    "Target._last_full_drain_at": "singer/fastpath.py, the alarm counts from it",
    "Target._latest_state": "singer/fastpath.py, the STATE written after an age drain",
    "Target._reset_max_record_age": "singer/fastpath.py override: restarts the record-age alarm",
    "Target._process_record_message": "singer/fastpath.py override: the lean record path",
    "Target._process_schema_message": "singer/target.py override: plans and map errors",
    "Target._validate_config": "singer/target.py override: our messages",
    "Target._write_state_message": "singer/target.py override: STATE after delivery",
    "Target._handle_termination": "singer/target.py override: never deliver on a signal",
    "Sink._remove_sdc_metadata_from_record": "sink.py override and fastpath.py record path",
    "Sink._singer_validate_message": "singer/fastpath.py record path",
    "Sink._validate_and_parse": "singer/sink.py override: skipped",
    "GenericSingerReader._process_unknown_message": "singer/reader.py override: one line",
    "CustomStreamMap._eval": "failures.py: replaced on each map",
    "singer_sdk.configuration._dict_config": "status.py: parse_environment_config",
}


def _source_hash(func: Callable[..., Any]) -> str:
    return hashlib.sha256(inspect.getsource(func).encode()).hexdigest()


def changed_pins() -> list[str]:
    """What to re-check, one line per pinned SDK function whose source is not the pinned one."""
    return [
        f"singer-sdk {SDK_VERSION} changed {name}: re-check {what}; then pin "
        f"its new hash ({_source_hash(func)})"
        for name, (func, what, pinned) in PINNED.items()
        if _source_hash(func) != pinned
    ]


def test_every_pinned_sdk_function_has_the_source_it_was_checked_against() -> None:
    changed = changed_pins()
    assert not changed, "\n".join(changed)


def _sdk_private_names() -> set[str]:
    """Private names the SDK defines: methods, attributes it sets, class attributes."""
    text = "\n".join(p.read_text() for p in SDK.rglob("*.py"))
    return set(re.findall(r"(?:def |self\.|cls\.)(_[A-Za-z]\w*)", text)) | set(
        re.findall(r"^\s+(_[A-Za-z]\w*)\s*[:=]", text, re.MULTILINE)
    )


def _private_sdk_uses() -> dict[str, set[str]]:
    """SDK private names used in the package's modules that import the SDK: attributes read
    or set, methods defined (overrides), strings naming one (setattr), private modules."""
    sdk_names = _sdk_private_names()
    found: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        imports = [
            n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module is not None
        ]
        if not any(n.module and n.module.startswith("singer_sdk") for n in imports):
            continue
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                names.add(node.attr)
            elif isinstance(node, ast.FunctionDef):
                names.add(node.name)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names.add(node.value)
        module = path.relative_to(PACKAGE.parent).as_posix()
        for name in names:
            if re.fullmatch(r"_[A-Za-z]\w*", name) and name in sdk_names:
                found.setdefault(name, set()).add(module)
        for node in imports:
            if node.module and node.module.startswith("singer_sdk") and "._" in node.module:
                found.setdefault(node.module, set()).add(module)
    return found


def test_every_private_sdk_member_the_package_uses_is_listed_and_exists() -> None:
    # A member by its name (Class._name), a private module by its full name.
    listed = {q if q.startswith("singer_sdk.") else q.rsplit(".", 1)[1]: q for q in PRIVATE_MEMBERS}
    used = _private_sdk_uses()
    unlisted = {name: sorted(modules) for name, modules in used.items() if name not in listed}
    assert not unlisted, f"private SDK members used but not in PRIVATE_MEMBERS: {unlisted}"
    unused = {q for short, q in listed.items() if short not in used}
    assert not unused, f"listed in PRIVATE_MEMBERS but no longer used: {sorted(unused)}"
    classes = {
        c.__name__: c
        for c in (Target, Sink, BatchSink, GenericSingerReader, CustomStreamMap, Counter)
    }
    for qualified in PRIVATE_MEMBERS:
        if qualified.startswith("singer_sdk."):
            importlib.import_module(qualified)
            continue
        owner, name = qualified.split(".")
        source = inspect.getsource(classes[owner])
        instance_attribute = re.search(rf"self\.{name}\b\s*[:=]", source) is not None
        assert hasattr(classes[owner], name) or instance_attribute, (
            f"singer-sdk {SDK_VERSION} has no {qualified}: re-check {PRIVATE_MEMBERS[qualified]}"
        )
