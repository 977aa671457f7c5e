"""Logging: one line per event to stderr (journald), key=value or JSON, secrets scrubbed.

``event(logger, "delivery.delivered", alert=…, channel=…)`` writes one structured
line. Every record passes the Scrubber, which replaces each configured secret (and
Telegram-style ``bot<token>`` path segments) with ``***`` — also in messages that
client libraries log on their own, such as the URL of a request.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from typing import Any

_BOT_TOKEN = re.compile(r"bot\d+:[A-Za-z0-9_-]+")
_STRUCTURED = "structured"


class Scrubber(logging.Filter):
    """Replaces every known secret in a record's message and arguments."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret containing another is replaced whole.
        self.secrets = sorted({*self.secrets, *(s for s in secrets if len(s) >= 4)},
                              key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return _BOT_TOKEN.sub("bot***", text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = self.scrub(message)
        record.args = None
        fields = getattr(record, _STRUCTURED, None)
        if isinstance(fields, dict):
            setattr(record, _STRUCTURED,
                    {k: self.scrub(v) if isinstance(v, str) else v for k, v in fields.items()})
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def _value(value: Any) -> str:
    text = str(value)
    if text == "" or any(ch in text for ch in ' "=\n'):
        return json.dumps(text, ensure_ascii=False)
    return text


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        parts = [f"level={record.levelname.lower()}", f"logger={record.name}",
                 f"msg={_value(record.getMessage())}"]
        for key, value in (getattr(record, _STRUCTURED, None) or {}).items():
            parts.append(f"{key}={_value(value)}")
        line = " ".join(parts)
        if record.exc_text:
            line += " exc=" + json.dumps(record.exc_text)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {"level": record.levelname.lower(), "logger": record.name,
                                    "msg": record.getMessage()}
        document.update(getattr(record, _STRUCTURED, None) or {})
        if record.exc_text:
            document["exc"] = record.exc_text
        return json.dumps(document, ensure_ascii=False, default=str)


def setup(log_format: str = "text", secrets: Iterable[str] = (),
          level: int = logging.INFO) -> Scrubber:
    """Route all logging to stderr through the scrubber; returns it for more secrets."""
    scrubber = Scrubber(secrets)
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(scrubber)
    handler.setFormatter(JsonFormatter() if log_format == "json" else KeyValueFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # httpx logs every request URL at INFO; Telegram's carries the token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    return scrubber


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one structured event."""
    logger.log(level, name, extra={_STRUCTURED: fields})
