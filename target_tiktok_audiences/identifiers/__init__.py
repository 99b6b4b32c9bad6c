"""Identifier contracts: normalise, validate and hash user identifiers.

Pure functions only (no I/O, no HTTP, no Singer SDK) so that the sinks, the dry-run writer and the
tests all share one definition of what TikTok receives. The rules follow design.md "Identifiers"
and tiktok-api.md "Identifier normalisation".

The hot path is :func:`make_encoder`: it resolves every setting once and returns a closure that is
called once per identifier value (millions of times per run).

Modules: contracts.py (contracts, reasons, rules, digest), emails.py, phones.py, ad_ids.py
(one normaliser each), encoders.py (the hot path), columns.py (remove flag, column detection).
"""

from target_tiktok_audiences.identifiers.ad_ids import (
    normalize_ad_id,
)
from target_tiktok_audiences.identifiers.columns import (
    DETECTED_COLUMN_NAMES,
    detect_identifier_columns,
    identifier_like_columns,
    remove_flag,
)
from target_tiktok_audiences.identifiers.contracts import (
    ALGORITHMS,
    CONTRACT_ALIASES,
    CONTRACTS,
    EMAIL_MODES,
    KINDS,
    MAX_VALUE_LENGTH,
    REASON_ALREADY_HASHED,
    REASON_INVALID_AD_ID,
    REASON_INVALID_EMAIL,
    REASON_INVALID_PHONE,
    REASON_INVALID_REMOVE_FLAG,
    REASON_MESSAGES,
    REASON_NOT_HASHED,
    REASON_TOO_LONG,
    REASON_TRACKING_LIMITED,
    REASON_WRONG_TYPE,
    REASONS,
    Rules,
    algorithm_of,
    canonical_contract,
    digest,
    kind_of,
)
from target_tiktok_audiences.identifiers.emails import (
    normalize_email,
)
from target_tiktok_audiences.identifiers.encoders import (
    ColumnEncoder,
    Encoder,
    make_column_encoder,
    make_encoder,
    one_value,
)
from target_tiktok_audiences.identifiers.phones import (
    normalize_phone,
)

__all__ = [
    "ALGORITHMS",
    "CONTRACTS",
    "CONTRACT_ALIASES",
    "DETECTED_COLUMN_NAMES",
    "EMAIL_MODES",
    "KINDS",
    "MAX_VALUE_LENGTH",
    "REASONS",
    "REASON_ALREADY_HASHED",
    "REASON_INVALID_AD_ID",
    "REASON_INVALID_EMAIL",
    "REASON_INVALID_PHONE",
    "REASON_INVALID_REMOVE_FLAG",
    "REASON_MESSAGES",
    "REASON_NOT_HASHED",
    "REASON_TOO_LONG",
    "REASON_TRACKING_LIMITED",
    "REASON_WRONG_TYPE",
    "ColumnEncoder",
    "Encoder",
    "Rules",
    "algorithm_of",
    "canonical_contract",
    "detect_identifier_columns",
    "digest",
    "identifier_like_columns",
    "kind_of",
    "make_column_encoder",
    "make_encoder",
    "normalize_ad_id",
    "normalize_email",
    "normalize_phone",
    "one_value",
    "remove_flag",
]
