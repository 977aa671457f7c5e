"""Long-running commands: serve, sandbox, demo."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from broadcaster import logs
from broadcaster.cli.common import EXIT_OK, CommandFailed, add_config_option, load
from broadcaster.config import with_node
from broadcaster.sandbox.options import SandboxOptions


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser("serve", help="run the daemon")
    serve.add_argument(
        "--wait-for-database", action="store_true",
        help="wait for a PostgreSQL server that does not answer yet instead of ending the "
        "start (the systemd unit uses it; a refused login still ends it at once)")
    serve.add_argument("--node", metavar="NAME",
                       help="this node's name in the ledger (default: [service] node, else "
                       "the host name)")
    add_config_option(serve)
    serve.set_defaults(handler=serve_daemon)

    sandbox = commands.add_parser("sandbox", help="run local stand-ins for every platform")
    sandbox.add_argument("--listen", default="127.0.0.1:8025", metavar="HOST:PORT")
    sandbox.add_argument("--smtp-port", type=int, default=8026)
    defaults = SandboxOptions()
    sandbox.add_argument("--webhook-secret", default=defaults.webhook_secret)
    sandbox.add_argument("--x-consumer-secret", default=defaults.x_consumer_secret)
    sandbox.add_argument("--x-access-secret", default=defaults.x_access_secret)
    sandbox.set_defaults(handler=run_sandbox)

    demo = commands.add_parser("demo", help="sandbox + daemon + one exercise alert")
    demo.add_argument("--once", action="store_true",
                      help="stop after the alert instead of keeping everything running")
    demo.add_argument("--templates", type=Path, metavar="DIR",
                      help="templates folder (default: ./templates)")
    demo.set_defaults(handler=run_demo)


def serve_daemon(args: argparse.Namespace) -> int:
    from broadcaster.daemon import serve

    config = load(args)
    if args.node is not None:
        config = with_node(config, args.node)
    scrubber = logs.setup(config.service.log_format, config.secret_values())
    asyncio.run(serve(config, scrubber, wait_for_database=args.wait_for_database))
    return EXIT_OK


def run_sandbox(args: argparse.Namespace) -> int:
    from broadcaster.sandbox.server import serve_forever

    host, _, port = args.listen.rpartition(":")
    options = SandboxOptions(
        host=host or "127.0.0.1", port=int(port), smtp_port=args.smtp_port,
        webhook_secret=args.webhook_secret, x_consumer_secret=args.x_consumer_secret,
        x_access_secret=args.x_access_secret,
    )
    logs.setup("text", [])
    try:
        asyncio.run(serve_forever(options))
    except OSError as exc:
        raise CommandFailed(f"cannot listen on {args.listen}: {exc.strerror}") from None
    return EXIT_OK


def run_demo(args: argparse.Namespace) -> int:
    from broadcaster.demo import demo

    return asyncio.run(demo(once=args.once, templates=args.templates))
