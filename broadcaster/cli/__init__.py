"""The `broadcaster` command line: one module per command group, wired here."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from broadcaster import __version__
from broadcaster.cli import admin_cmd, alerts_cmd, channels_cmd, ops_cmd, service_cmd, templates_cmd
from broadcaster.cli.common import EXIT_FAILURE, EXIT_INVALID, CommandFailed, err
from broadcaster.errors import (
    BroadcasterError,
    ConfigError,
    DatabaseUnreachable,
    TemplateError,
    UnknownTemplate,
    ValidationError,
)

# Exit 2: what the person gave is wrong, including a database the configuration names
# that cannot be reached or refuses the login (fix the file, the password or the server).
_INVALID_INPUT = (ConfigError, TemplateError, UnknownTemplate, ValidationError,
                  DatabaseUnreachable)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="broadcaster",
        description="Crisis-communication broadcast service for city administrations.",
    )
    parser.add_argument("--version", action="version", version=f"broadcaster {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (service_cmd, alerts_cmd, templates_cmd, channels_cmd, admin_cmd, ops_cmd):
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except CommandFailed as exc:
        err(f"error: {exc}")
        return exc.code
    except _INVALID_INPUT as exc:
        err(f"error: {exc}")
        return EXIT_INVALID
    except BroadcasterError as exc:
        err(f"error: {exc}")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    except EOFError:
        err("error: no answer; not sent")
        return EXIT_FAILURE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
