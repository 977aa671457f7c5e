"""`broadcaster channels check`: validate channels.toml and show the channels."""

from __future__ import annotations

import argparse

from broadcaster.channels import KINDS
from broadcaster.cli.common import EXIT_OK, add_config_option, load, table
from broadcaster.config import Secret


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    channels = commands.add_parser("channels", help="configured channels")
    sub = channels.add_subparsers(dest="channels_command", required=True)
    check = sub.add_parser("check", help="validate the configuration and list the channels")
    add_config_option(check)
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
    return EXIT_OK
