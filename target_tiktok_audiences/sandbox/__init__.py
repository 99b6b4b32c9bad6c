"""Local emulator of the TikTok Business API v1.3 custom-audience endpoints (tests, demo, bench)."""

from .app import SandboxApp
from .rules import AUDIENCE_TYPE_CUSTOMER_FILE, AUDIENCE_TYPE_PARTNER, SandboxConfig
from .server import SandboxServer, run_sandbox

__all__ = [
    "AUDIENCE_TYPE_CUSTOMER_FILE",
    "AUDIENCE_TYPE_PARTNER",
    "SandboxApp",
    "SandboxConfig",
    "SandboxServer",
    "run_sandbox",
]
