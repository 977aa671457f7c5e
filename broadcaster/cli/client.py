"""The CLI's HTTP client for the daemon (BROADCASTER_URL, BROADCASTER_TOKEN)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

from broadcaster.cli.common import EXIT_FAILURE, EXIT_INVALID, CommandFailed

DEFAULT_URL = "http://127.0.0.1:8080"
# Answers that mean "your input is wrong" (exit 2) rather than "it failed" (exit 1).
_INVALID_STATUSES = {400, 404, 409, 413, 422}


class ApiClient:
    def __init__(self, url: str | None = None, token: str | None = None,
                 timeout: float = 30.0) -> None:
        self.url = (url or os.environ.get("BROADCASTER_URL") or DEFAULT_URL).rstrip("/")
        if not self.url.startswith(("http://", "https://")):
            raise CommandFailed(f"BROADCASTER_URL must be an http(s) address, not {self.url!r}",
                                EXIT_INVALID)
        self.token = token if token is not None else os.environ.get("BROADCASTER_TOKEN", "")
        self.timeout = timeout

    def call(self, method: str, path: str, body: dict[str, Any] | None = None,
             headers: dict[str, str] | None = None) -> Any:
        """The JSON answer, or CommandFailed with the daemon's message and details."""
        data = json.dumps(body).encode("utf-8") if body is not None else None
        # The scheme was checked to be http(s) in __init__.
        request = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        for key, value in (headers or {}).items():
            request.add_header(key, value)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise _failure(exc) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CommandFailed(
                f"cannot reach the daemon at {self.url} ({reason}); is `broadcaster serve` "
                "running? Set BROADCASTER_URL if it listens elsewhere", EXIT_FAILURE,
            ) from None


def _failure(exc: urllib.error.HTTPError) -> CommandFailed:
    try:
        error = json.loads(exc.read())["error"]
        message = error["message"]
        details = error.get("details") or {}
    except (ValueError, KeyError, TypeError):
        message, details = f"HTTP {exc.code}", {}
    lines = [message]
    if details and not message.startswith("invalid request"):
        lines += [f"  {field}: {problem}" for field, problem in details.items()]
    elif details:
        lines = ["invalid request:"] + [f"  {field}: {problem}" for field, problem in
                                        details.items()]
    if exc.code == 401:
        lines.append("  (set BROADCASTER_TOKEN to a token from `broadcaster users add`)")
    code = EXIT_INVALID if exc.code in _INVALID_STATUSES else EXIT_FAILURE
    return CommandFailed("\n".join(lines), code)
