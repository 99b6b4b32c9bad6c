"""The Singer sink and the deliveries it feeds (files for mirror/append, Segment API batches)."""

from target_tiktok_audiences.sinks.base import AudienceSink, Delivery, Runtime

__all__ = ["AudienceSink", "Delivery", "Runtime"]
