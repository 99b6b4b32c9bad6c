"""The target's configuration: declared once (CONFIG_SCHEMA), a typed view of it, and the
cross-field checks the JSON schema cannot express. Every message names the setting to fix.

Modules: schema.py (CONFIG_SCHEMA), model.py (Settings, AudienceMapping), checks.py (the checks).
"""

from target_tiktok_audiences.settings.checks import (
    config_errors,
    config_warnings,
    schema_errors,
    unknown_key_errors,
)
from target_tiktok_audiences.settings.model import (
    NAME_VALUE,
    AudienceMapping,
    Settings,
)
from target_tiktok_audiences.settings.schema import (
    AUDIENCE_MAPPING,
    AUDIENCE_TYPES,
    CONFIG_SCHEMA,
    DEFAULT_API_BASE_URL,
    LONGEST_CONTRACT,
    MAPPING_KEYS,
    MAX_AUDIENCES,
    MAX_FILE_IDS,
    REMOVE_FLAG_HELP,
    SCHEMA_DEFAULTS,
    SYNC_MODES,
)

__all__ = [
    "AUDIENCE_MAPPING",
    "AUDIENCE_TYPES",
    "CONFIG_SCHEMA",
    "DEFAULT_API_BASE_URL",
    "LONGEST_CONTRACT",
    "MAPPING_KEYS",
    "MAX_AUDIENCES",
    "MAX_FILE_IDS",
    "NAME_VALUE",
    "REMOVE_FLAG_HELP",
    "SCHEMA_DEFAULTS",
    "SYNC_MODES",
    "AudienceMapping",
    "Settings",
    "config_errors",
    "config_warnings",
    "schema_errors",
    "unknown_key_errors",
]
