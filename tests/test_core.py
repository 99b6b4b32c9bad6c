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
    config={"advertiser_ids": ["7000000000000000001"], "dry_run": True, "output_dir": OUTPUT_DIR},
)


def test_the_private_sdk_hooks_overridden_by_the_sink_still_exist() -> None:
    """AudienceSink overrides two private SDK hooks; an SDK rename must fail loudly here.

    _remove_sdc_metadata_from_record: soft deletes must be read before the SDK strips them.
    _validate_and_parse: skipped for speed (only identifier columns are read).
    """
    from singer_sdk.sinks import Sink

    from target_tiktok_audiences.sinks import AudienceSink

    for hook in ("_remove_sdc_metadata_from_record", "_validate_and_parse"):
        assert callable(getattr(Sink, hook, None)), hook
        assert hook in vars(AudienceSink), hook
