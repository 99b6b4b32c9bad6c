"""The Singer target: TargetTikTokAudiences, the SDK's Target with our settings, CLI, messages,
end of input, STATE and signals; its record path is fastpath.py's."""

from __future__ import annotations

import enum
import logging
import signal
import sys
from types import FrameType
from typing import Any

import click
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.helpers.capabilities import PluginCapabilities

from target_tiktok_audiences.failures import (
    KNOWN,
    DeliveryIncomplete,
    InputError,
    config_file_error,
    describe,
    exit_on_known_failure,
    private_map_errors,
)
from target_tiktok_audiences.run import Run
from target_tiktok_audiences.settings import (
    CONFIG_SCHEMA,
    Settings,
    config_errors,
    config_warnings,
    schema_errors,
    unknown_key_errors,
)
from target_tiktok_audiences.singer.fastpath import RecordPath
from target_tiktok_audiences.singer.reader import PrivateSingerReader
from target_tiktok_audiences.singer.sink import AudienceSink

README_URL = "https://github.com/target-tiktok-audiences/target-tiktok-audiences#readme"
HELP = (
    "Keep TikTok Custom Audiences in sync with the Singer messages read from stdin (or --input): "
    "emails, phone numbers and mobile ad ids are normalised, hashed and sent to every "
    "advertiser in advertiser_ids (sync_mode mirror, append or incremental; dry_run sends "
    "nothing). Settings come from --config FILE, or from TARGET_TIKTOK_AUDIENCES_* environment "
    "variables with --config ENV. `--about` lists every setting; the README explains modes, "
    "tokens and the bundled sandbox.\n\n\b\n"  # \b: click keeps the URL on one line
    f"README: {README_URL}"
)


# The SDK's own settings, described as they apply to this target (`--about`, the README table).
SDK_SETTINGS = {
    "load_method": "Always append-only, the only value accepted: how each audience changes is "
    "chosen by sync_mode.",
    "add_record_metadata": "Has no effect on what is sent: _sdc_* fields never reach TikTok, "
    "and a record with _sdc_deleted_at removes its user whatever this says.",
    "batch_size_rows": "Records the SDK collects before handing them on; has no effect on what "
    "is sent (file_max_ids and segment_batch_size size the uploads).",
    "flattening_enabled": "true: nested objects become columns named parent__child (see "
    "flattening_separator), so an identifier inside an object can be mapped in "
    "audiences[].identifiers.",
}


class _SdkNoise(logging.Filter):
    """The SDK's lines around ours (issue 29): a failure ends with ONE line, our own.

    "Error initializing target sink" comes before our line for a stream that cannot be bound,
    and the SDK's "Config validation failed" warning before ours, which names the setting: both
    are dropped. "Skipping parse of env var settings..." (every run without --config ENV) says
    nothing a user acts on: it is DEBUG.
    """

    DROPPED = frozenset({"Error initializing target sink '%s'", "Config validation failed"})
    DEBUG = frozenset(
        {"Skipping parse of env var settings...", "Parsing env var for settings config..."}
    )

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__()
        self._owner_logger = logger

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg in self.DROPPED and record.levelno >= logging.WARNING:
            return False  # ours never have these exact texts: they name the setting or stream
        if record.msg in self.DEBUG and record.levelno == logging.INFO:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return self._owner_logger.isEnabledFor(logging.DEBUG)
        return True


class TargetTikTokAudiences(RecordPath):
    """Maps stream columns to TikTok identifier contracts and syncs the audiences."""

    name = "target-tiktok-audiences"
    config_jsonschema = CONFIG_SCHEMA
    default_sink_class = AudienceSink
    message_reader_class = PrivateSingerReader
    # No validate_records: only identifier columns are read, and bad values there are counted.
    capabilities = [  # noqa: RUF012 - the SDK declares it as a class variable
        PluginCapabilities.ABOUT,
        PluginCapabilities.STREAM_MAPS,
        PluginCapabilities.FLATTENING,
        PluginCapabilities.STRUCTURED_LOGGING,
    ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._terminating = False
        self._start_record_path()
        super().__init__(*args, **kwargs)
        # One sink drains at a time: write calls share one throttle, so parallel drains would
        # only queue behind it.
        self.max_parallelism = 1
        for warning in config_warnings(self.config):
            self.logger.warning(warning)
        self.run = Run(Settings.from_config(self.config), self.logger)
        reader = self.message_reader
        assert isinstance(reader, PrivateSingerReader)
        self._lanes = reader.lanes  # stream -> BlockLane, made by _plan
        # The report carries the same line the log ends with.
        reader.on_failure = lambda exc: self.run.finish("failed", describe(exc))
        self.run.preflight()

    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        # The SDK's pass fills in defaults; its messages quote values (perhaps the token) and
        # Python reprs, so ours name the setting instead. Unknown keys get the closest name.
        invalid = super()._validate_config(raise_errors=False)
        unknown = unknown_key_errors(self.config, self.config_jsonschema["properties"])
        errors = unknown + (schema_errors(self.config, self.config_jsonschema) if invalid else [])
        if not errors:
            errors = config_errors(self.config)
        if errors and raise_errors:
            raise ConfigValidationError(errors[0], errors=errors)
        return errors

    @classmethod
    def append_builtin_config(cls, config_jsonschema: dict[str, Any]) -> None:
        super().append_builtin_config(config_jsonschema)
        # The SDK's defaults may be enum members (load_method's TargetLoadMethods.APPEND_ONLY),
        # which `--about --format markdown` and so the README would print by their Python name.
        properties = config_jsonschema.get("properties", {})
        for prop in properties.values():
            if isinstance(prop.get("default"), enum.Enum):
                prop["default"] = prop["default"].value
        # The SDK's settings as they apply here (issue 29): faker is not installed with this
        # target, so faker_config cannot apply; the others say what they do, or that they do
        # nothing for TikTok audiences.
        properties.pop("faker_config", None)
        for name, text in SDK_SETTINGS.items():
            if name in properties:
                properties[name]["description"] = text
        if "load_method" in properties:
            properties["load_method"]["enum"] = ["append-only"]

    @classmethod
    def cb_config(cls, ctx: click.Context, param: click.Option, value: tuple[str, ...]) -> Any:
        # The SDK reads --config files while click parses the arguments, before invoke().
        with exit_on_known_failure(cls.logger):
            try:
                return super().cb_config(ctx, param, value)
            except (FileNotFoundError, ValueError) as exc:
                message = config_file_error(exc, [v for v in value if v != "ENV"])
                if message is None:
                    raise
                raise ConfigValidationError(message, errors=[message]) from None

    @classmethod
    def get_singer_command(cls) -> click.Command:
        command = super().get_singer_command()
        command.help = HELP  # the SDK's is "Execute the Singer target."
        return command

    @classmethod
    def invoke(cls, **kwargs: Any) -> None:
        with exit_on_known_failure(cls.logger):
            super().invoke(**kwargs)

    def _process_schema_message(self, message_dict: dict[str, Any]) -> None:
        # Read before the SDK builds the sink: a mirror of an incremental stream is guarded.
        bookmarks = message_dict.get("bookmark_properties")
        stream = message_dict.get("stream")
        if isinstance(stream, str):
            self.run.bookmarks[stream] = (
                [str(b) for b in bookmarks] if isinstance(bookmarks, list) else []
            )
        self._plans.clear()  # maps and sinks may change
        self._lanes.clear()  # the reader flushed them before this message
        _check_key_properties(message_dict)
        super()._process_schema_message(message_dict)
        # The stream's maps are (re)built here; their failures must not quote a record.
        for stream_map in self.mapper.stream_maps.get(message_dict["stream"], ()):
            private_map_errors(stream_map)

    def process_endofpipe(self) -> None:
        run = self.run
        self._age_alarm.disarm()  # no record comes any more
        try:
            self.drain_all()  # flush every sink; STATE stays held while files are undelivered
            run.deliver()
            run.complete_rejects()
        except KNOWN as exc:
            message = run.stopped_line(describe(exc))
            run.finish("failed", message)
            raise DeliveryIncomplete(message) from exc
        except Exception as exc:
            run.finish("failed", describe(exc))
            raise
        run.warn_missing_streams()
        refused, no_access = run.refused, run.no_access
        super().process_endofpipe()  # emits STATE unless an audience was refused
        if no_access:
            run.finish("failed", no_access)
            raise DeliveryIncomplete(no_access)
        if refused:
            others = (
                "the others were delivered"
                if run.delivered
                else "no other audience was delivered in this run"
            )
            # A dry run sent nothing: it says what a real run would hold back.
            dry = run.settings.dry_run
            outcome = "nothing was sent (dry run)" if dry else f"{others} and no STATE was emitted"
            message = (
                f"{len(refused)} audience{'s' if len(refused) > 1 else ''} "
                f"{'would not be' if dry else 'not'} delivered: {', '.join(refused)}; {outcome}; "
                "the summary above says what to do"
            )
            run.finish("failed", message)
            raise DeliveryIncomplete(message)
        partial = run.partial
        if partial:
            self.logger.warning(
                "TikTok applied only part of the updates of %s; no STATE was emitted, so the "
                "next run sends them again.",
                ", ".join(partial),
            )
        run.finish("succeeded")

    def _write_state_message(self, state: dict[str, Any]) -> None:
        # STATE only once TikTok accepted every record before it; a failed run emits none.
        line = self.run.state_line(state)
        if line is not None:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:
        # Unlike the SDK default, never deliver on a signal: a half-read mirror set must not
        # replace an audience. A second signal while stopping is ignored.
        if self._terminating:
            return
        self._terminating = True
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        self.logger.error(
            "Received signal %d: stopping without delivering what is pending; no STATE was "
            "emitted for it, so re-running is safe.",
            signum,
        )
        self.run.finish("interrupted", f"stopped by signal {signum}")
        sys.exit(128 + signum)


_LOGGER = logging.getLogger(TargetTikTokAudiences.name)  # the SDK's plugin logger
_LOGGER.addFilter(_SdkNoise(_LOGGER))


def _check_key_properties(message: dict[str, Any]) -> None:
    """key_properties must name properties of the SCHEMA: rows are named by them (rejects_url)
    and a record without them cannot be told apart."""
    schema = message.get("schema")
    keys = message.get("key_properties")
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(keys, list) or not isinstance(properties, dict):
        return
    for key in keys:
        if key not in properties:
            raise InputError(
                f"Input: the SCHEMA of stream '{message.get('stream')}' names key property "
                f"'{key}' in key_properties, but it is not one of the stream's properties; "
                "fix the tap's key properties (or its stream maps) and re-run"
            )
