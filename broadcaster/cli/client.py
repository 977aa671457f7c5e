"""The CLI's HTTP client for the daemon (BROADCASTER_URL, BROADCASTER_TOKEN)."""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from broadcaster.cli.common import EXIT_FAILURE, EXIT_INVALID, CommandFailed

DEFAULT_URL = "http://127.0.0.1:8080"
# Answers that mean "your input is wrong" (exit 2) rather than "it failed" (exit 1).
_INVALID_STATUSES = {400, 404, 409, 413, 422}
SEND_TRIES = 4
RETRY_PAUSE = 2.0  # seconds, growing with each try: 2, 4, 6


class Unanswered(CommandFailed):
    """No answer, or the daemon could not persist (503): the same request with the
    same Idempotency-Key may be tried again safely."""


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
            raise Unanswered(
                f"cannot reach the daemon at {self.url} ({reason}); is `broadcaster serve` "
                "running? Set BROADCASTER_URL if it listens elsewhere", EXIT_FAILURE,
            ) from None


def send_once(client: ApiClient, path: str, body: dict[str, Any]) -> Any:
    """POST an alert under one Idempotency-Key, trying again while the daemon does not
    answer or cannot persist: a repeat that reaches it after the first went through
    returns that first alert, never a second one."""
    key = f"cli-{secrets.token_urlsafe(16)}"
    return patiently(lambda: client.call("POST", path, body,
                                         headers={"Idempotency-Key": key}),
                     "with the same Idempotency-Key; nothing is sent twice")


def patiently(call: Callable[[], Any], how: str) -> Any:
    """``call``, tried again a few times while the daemon does not answer or cannot
    persist (a database failover takes seconds); only for calls safe to repeat."""
    for attempt in range(1, SEND_TRIES + 1):
        try:
            return call()
        except Unanswered as exc:
            if attempt == SEND_TRIES:
                raise CommandFailed(f"{exc}\n  (tried {SEND_TRIES} times; look at "
                                    "`broadcaster status` or the console before sending "
                                    "again)", exc.code) from None
            print(f"no answer ({str(exc).splitlines()[0]}); trying again {how} …",
                  file=sys.stderr, flush=True)
            time.sleep(RETRY_PAUSE * attempt)
    raise AssertionError("unreachable")


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
    if exc.code == 503:
        return Unanswered("\n".join(lines), EXIT_FAILURE)
    code = EXIT_INVALID if exc.code in _INVALID_STATUSES else EXIT_FAILURE
    return CommandFailed("\n".join(lines), code)
