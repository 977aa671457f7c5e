"""`broadcaster channels check`: validate channels.toml and show the channels."""

from __future__ import annotations

import argparse
import asyncio

from broadcaster.channels import KINDS
from broadcaster.channels.base import Health
from broadcaster.cli.common import EXIT_FAILURE, EXIT_OK, add_config_option, load, table
from broadcaster.config import Config, Secret


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    channels = commands.add_parser("channels", help="configured channels")
    sub = channels.add_subparsers(dest="channels_command", required=True)
    check = sub.add_parser("check", help="validate the configuration and list the channels")
    add_config_option(check)
    check.add_argument("--live", action="store_true",
                       help="also ask every channel's platform whether it accepts the "
                            "credentials (nothing is posted)")
    check.set_defaults(handler=check_channels)


def check_channels(args: argparse.Namespace) -> int:
    config = load(args)
    rows = []
    for channel in config.channels:
        settings = channel.settings
        secrets = [
            f"{key}={getattr(settings, key).source}"
            for key in KINDS[channel.kind].secret_keys()
            if isinstance(getattr(settings, key), Secret)
        ]
        rows.append((
            channel.name, channel.kind, getattr(settings, "target", ""),
            ",".join(channel.languages), "exercise" if channel.exercise else "live",
            "yes" if channel.enabled else "no", " ".join(secrets),
        ))
    print(table(("channel", "kind", "target", "lang", "mode", "enabled", "secrets"), rows))
    print(f"\n{config.path}: {len(config.channels)} channel(s), configuration valid")
    if not args.live:
        return EXIT_OK
    results = asyncio.run(_check_live(config))
    print()
    print(table(("channel", "up", "health"),
                [(name, "yes" if health.up else "NO", health.message)
                 for name, health in results.items()]))
    return EXIT_OK if all(health.up for health in results.values()) else EXIT_FAILURE


async def _check_live(config: Config) -> dict[str, Health]:
    """Start every enabled channel, run its health check once, close it."""
    from broadcaster.scheduler import check

    channels = [KINDS[c.kind].create(c) for c in config.enabled_channels()]
    try:
        for channel in channels:
            await channel.start()
        results = await asyncio.gather(*(check(channel, config) for channel in channels))
    finally:
        await asyncio.gather(*(channel.close() for channel in channels),
                             return_exceptions=True)
    return {channel.name: result for channel, result in zip(channels, results, strict=True)}
