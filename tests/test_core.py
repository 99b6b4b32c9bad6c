"""The SDK's standard target tests, run offline in dry_run mode.

Streams without an identifier column are ignored with a warning; pk_updates has an email
column and so becomes a planned audience.
"""

from __future__ import annotations

import tempfile

from singer_sdk.testing import get_target_test_class

from target_tiktok_audiences.target import TargetTikTokAudiences

# The suite's config is fixed when the class is built; each pytest-xdist worker gets its own dir.
_OUTPUT = tempfile.TemporaryDirectory(prefix="target-tiktok-audiences-sdk-tests-")
OUTPUT_DIR = _OUTPUT.name

TestTargetTikTokAudiences = get_target_test_class(
    TargetTikTokAudiences,
    config={"advertiser_ids": ["7000000000000000001"], "dry_run": True,
            "output_dir": OUTPUT_DIR},
)
