"""target-tiktok-audiences: Singer target that keeps TikTok Custom Audiences in sync.

A thin adapter: each SDK override hands over to settings.py (config), run.py (the run's
lifecycle) or failures.py (how a known failure ends).
"""

from __future__ import annotations

import enum
import signal
import sys
from types import FrameType
from typing import Any

import click
from singer_sdk import Target
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.helpers.capabilities import PluginCapabilities

from target_tiktok_audiences.failures import (
    DeliveryIncomplete,
    config_file_error,
    describe,
    exit_on_known_failure,
    private_map_errors,
)
from target_tiktok_audiences.reader import PrivateSingerReader
from target_tiktok_audiences.run import Run
from target_tiktok_audiences.settings import (
    CONFIG_SCHEMA,
    Settings,
    config_errors,
    config_warnings,
    schema_errors,
    unknown_key_errors,
)
from target_tiktok_audiences.sink import AudienceSink

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


class TargetTikTokAudiences(Target):
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
        super().__init__(*args, **kwargs)
        # One sink drains at a time: write calls share one throttle, so parallel drains would
        # only queue behind it.
        self.max_parallelism = 1
        for warning in config_warnings(self.config):
            self.logger.warning(warning)
        self.run = Run(Settings.from_config(self.config), self.logger)
        reader = self.message_reader
        assert isinstance(reader, PrivateSingerReader)
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
        for prop in config_jsonschema.get("properties", {}).values():
            if isinstance(prop.get("default"), enum.Enum):
                prop["default"] = prop["default"].value

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
        super()._process_schema_message(message_dict)
        # The stream's maps are (re)built here; their failures must not quote a record.
        for stream_map in self.mapper.stream_maps.get(message_dict["stream"], ()):
            private_map_errors(stream_map)

    def process_endofpipe(self) -> None:
        run = self.run
        try:
            self.drain_all()  # flush every sink; STATE stays held while files are undelivered
            run.deliver()
        except Exception as exc:
            run.finish("failed", describe(exc))
            raise
        run.warn_missing_streams()
        refused = run.refused
        super().process_endofpipe()  # emits STATE unless an audience was refused
        if refused:
            message = (
                f"{len(refused)} audience{'s' if len(refused) > 1 else ''} not delivered: "
                f"{', '.join(refused)}; the others were delivered and no STATE was emitted; the "
                "summary above says what to do"
            )
            run.finish("failed", message)
            raise DeliveryIncomplete(message)
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


if __name__ == "__main__":
    TargetTikTokAudiences.cli()
