"""What every CLI command shares: exit codes, --config, error output, tables."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import unicodedata
from collections.abc import Sequence

from broadcaster.config import Config, config_path, load_config

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INVALID = 2


class CommandFailed(Exception):
    """Ends a command with a message on stderr and the given exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        self.code = code
        super().__init__(message)


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", metavar="PATH",
        help="configuration file (default: $BROADCASTER_CONFIG, else ./channels.toml)",
    )


def load(args: argparse.Namespace, *, secrets: bool = True) -> Config:
    """The configuration named by --config; ConfigError propagates (exit 2).

    secrets=False checks secret references in form only, for commands that do not
    talk to any platform (users, audit, templates).
    """
    return load_config(config_path(args.config), resolve_secrets=secrets)


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain, aligned text table."""
    cells = [[str(h) for h in headers], *[[("" if c is None else str(c)) for c in r] for r in rows]]
    widths = [max(_width(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for index, row in enumerate(cells):
        padded = [cell + " " * (widths[i] - _width(cell)) for i, cell in enumerate(row)]
        lines.append("  ".join(padded).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def parse_assignments(pairs: Sequence[str] | None) -> dict[str, str]:
    """--set k=v … into a dict; a pair without '=' is a usage error."""
    values: dict[str, str] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CommandFailed(f"--set {pair!r}: write NAME=VALUE", EXIT_INVALID)
        values[key.strip()] = value
    return values


def err(message: str) -> None:
    print(message, file=sys.stderr)


def local_actor() -> str:
    """Who runs a server-side command, for the audit trail: the operating-system user."""
    try:
        return f"{getpass.getuser()} (command line)"
    except (KeyError, OSError):
        return f"uid {os.getuid()} (command line)"
