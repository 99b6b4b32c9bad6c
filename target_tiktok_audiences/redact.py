"""Secrets out of every text a person or a file receives.

TikTok's answers may quote what they were sent (the token in `message` or `request_id`), and
any text may reach a log line, an error or the run report. The client strips its token from
TikTok's words where it reads them (client/transport.py); this module is the net behind it:
every log record of the process and the report are stripped of the configured secrets.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

REDACTED = "[redacted]"
_SHORTEST = 4  # a secret shorter than this would blank ordinary words


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every occurrence of each secret replaced by REDACTED."""
    for secret in secrets:
        if len(secret) >= _SHORTEST and secret in text:
            text = text.replace(secret, REDACTED)
    return text


class Redactor(logging.Filter):
    """A handler filter: the record's final message, stripped of the secrets."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if len(s) >= _SHORTEST)

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            clean = scrub(message, self.secrets)
            if clean != message:
                record.msg, record.args = clean, None
        return True


def install(secrets: Iterable[str]) -> Redactor:
    """Put a Redactor on every handler of the root logger and of the loggers that do not
    propagate (the SDK's own), so that no line of this process leaves with a secret."""
    redactor = Redactor(secrets)
    loggers = [logging.getLogger()]
    loggers += [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger) and logger.handlers
    ]
    for logger in loggers:
        for handler in logger.handlers:
            # One redactor a handler: an earlier run of this process (tests) is replaced.
            for old in [f for f in handler.filters if isinstance(f, Redactor)]:
                handler.removeFilter(old)
            handler.addFilter(redactor)
    return redactor
