"""Logging: one line per event to stderr (journald), key=value or JSON, secrets scrubbed.

``event(logger, "delivery.delivered", alert=…, channel=…)`` writes one structured
line. Every record passes the Scrubber, which replaces each configured secret (and
Telegram-style ``bot<token>`` path segments) with ``***`` — also in messages that
client libraries log on their own, such as the URL of a request.

Timestamps: when stderr is the journal (systemd sets ``$JOURNAL_STREAM`` to its
device and inode), journald stamps every line itself, to the microsecond, so the
line carries no time of its own but a ``<N>`` syslog priority prefix that journald
turns into the entry's priority (``journalctl -p warning`` then works). Anywhere
else (a terminal, a file, a container's log collector) each line starts with
``time=`` (UTC, milliseconds), or has a ``"time"`` key in JSON.
"""

from __future__ import annotations

import atexit
import json
import logging
import logging.handlers
import os
import queue
import re
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

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
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        return True


def _value(value: Any) -> str:
    text = str(value)
    if text == "" or any(ch in text for ch in ' "=\n'):
        return json.dumps(text, ensure_ascii=False)
    return text


# sd-daemon(3) priority prefixes, by logging level.
_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6,
             logging.DEBUG: 7}


def _time(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class _LineFormatter(logging.Formatter):
    """One record, one line; with a time of its own unless journald adds one."""

    def __init__(self, journal: bool = False) -> None:
        super().__init__()
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        line = self.line(record)
        if self.journal:
            priority = _PRIORITY.get(record.levelno, 6 if record.levelno < logging.ERROR else 3)
            return f"<{priority}>{line}"
        return line

    def line(self, record: logging.LogRecord) -> str:
        raise NotImplementedError


class KeyValueFormatter(_LineFormatter):
    def line(self, record: logging.LogRecord) -> str:
        parts = [] if self.journal else [f"time={_time(record)}"]
        parts += [f"level={record.levelname.lower()}", f"logger={record.name}",
                  f"msg={_value(record.getMessage())}"]
        for key, value in (getattr(record, _STRUCTURED, None) or {}).items():
            parts.append(f"{key}={_value(value)}")
        line = " ".join(parts)
        if record.exc_text:
            line += " exc=" + json.dumps(record.exc_text)
        return line


class JsonFormatter(_LineFormatter):
    def line(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {} if self.journal else {"time": _time(record)}
        document.update({"level": record.levelname.lower(), "logger": record.name,
                         "msg": record.getMessage()})
        document.update(getattr(record, _STRUCTURED, None) or {})
        if record.exc_text:
            document["exc"] = record.exc_text
        return json.dumps(document, ensure_ascii=False, default=str)


def stderr_is_journal(stream: TextIO | None = None,
                      environ: Mapping[str, str] | None = None) -> bool:
    """True when the stream (stderr) is connected to journald, as $JOURNAL_STREAM says."""
    stream = stream or sys.stderr
    environ = os.environ if environ is None else environ
    device, _, inode = environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        stat = os.fstat(stream.fileno())
        return (stat.st_dev, stat.st_ino) == (int(device), int(inode))
    except (ValueError, OSError):
        return False


class _Handoff(logging.handlers.QueueHandler):
    """Hands records to the writer thread as they are: scrubbing, formatting and the
    write to stderr happen there, off the event loop (a slow journal never stalls a
    fan-out)."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        if record.exc_info:
            # Tracebacks refer to live frames: turn them into text here, as they are.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        record.msg = record.getMessage()
        record.args = None
        return record


_writer: logging.handlers.QueueListener | None = None


def setup(log_format: str = "text", secrets: Iterable[str] = (),
          level: int = logging.INFO) -> Scrubber:
    """Route all logging to stderr through the scrubber, written by a thread of its
    own; returns the scrubber, for secrets learned later."""
    global _writer
    scrubber = Scrubber(secrets)
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(scrubber)
    journal = stderr_is_journal()
    handler.setFormatter(JsonFormatter(journal) if log_format == "json"
                         else KeyValueFormatter(journal))
    if _writer is not None:
        _writer.stop()
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    _writer = logging.handlers.QueueListener(records, handler, respect_handler_level=True)
    _writer.start()
    atexit.register(_writer.stop)  # write what is queued before the process ends
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(_Handoff(records))
    root.setLevel(level)
    # httpx logs every request URL at INFO; Telegram's carries the token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # APScheduler logs its own bookkeeping (job added, running, executed) at INFO:
    # lines without an event in them, every few minutes per channel.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    return scrubber


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one structured event."""
    logger.log(level, name, extra={_STRUCTURED: fields})
