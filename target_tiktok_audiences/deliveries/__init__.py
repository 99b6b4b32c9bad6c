"""Delivery paths, one module each, and the registry from (sync mode, audience type) to them."""

from __future__ import annotations

from target_tiktok_audiences.deliveries.base import Delivery, Runtime
from target_tiktok_audiences.deliveries.files import FileDelivery
from target_tiktok_audiences.deliveries.mirror import MirrorDelivery
from target_tiktok_audiences.deliveries.partner_mirror import PartnerMirrorDelivery
from target_tiktok_audiences.deliveries.segment import SegmentDelivery
from target_tiktok_audiences.modes import AudienceType, SyncMode

DELIVERIES: dict[tuple[SyncMode, AudienceType], type[Delivery]] = {
    (SyncMode.MIRROR, AudienceType.CUSTOMER_FILE): MirrorDelivery,
    (SyncMode.MIRROR, AudienceType.PARTNER): PartnerMirrorDelivery,
    (SyncMode.APPEND, AudienceType.CUSTOMER_FILE): FileDelivery,
    (SyncMode.APPEND, AudienceType.PARTNER): SegmentDelivery,
    (SyncMode.INCREMENTAL, AudienceType.PARTNER): SegmentDelivery,
}


def delivery_class(mode: SyncMode, audience_type: AudienceType) -> type[Delivery]:
    """The delivery of a mapping; settings validation rules out unknown combinations."""
    try:
        return DELIVERIES[(mode, audience_type)]
    except KeyError:
        raise ValueError(
            f"sync_mode {mode.value} with audience_type {audience_type.value} is not supported"
        ) from None


__all__ = ["DELIVERIES", "Delivery", "Runtime", "delivery_class"]
