"""What a sandbox is started with. Kept apart from the stand-ins so that the CLI can
offer these defaults without importing every stand-in."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SandboxOptions:
    """What a sandbox is started with; secrets are the stand-ins' own, not a city's."""

    host: str = "127.0.0.1"
    port: int = 8025
    smtp_port: int | None = 8026
    # The sandbox's own well-known test secrets, documented in DESIGN.md.
    webhook_secret: str = "sandbox-webhook-secret"  # noqa: S105
    x_consumer_secret: str = "sandbox-consumer-secret"  # noqa: S105
    x_access_secret: str = "sandbox-access-secret"  # noqa: S105
    mastodon_max_characters: int = 500  # what the Mastodon stand-in announces
