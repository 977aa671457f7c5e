"""Server-side administration on the database: users and the audit trail."""

from __future__ import annotations

import argparse
import getpass
import sys

from broadcaster.auth import ROLES, hash_password, new_token, new_user_id
from broadcaster.cli.common import (
    EXIT_FAILURE,
    EXIT_INVALID,
    EXIT_OK,
    CommandFailed,
    add_config_option,
    load,
    local_actor,
    table,
)
from broadcaster.models import iso_utc, utcnow
from broadcaster.store import AuditEntry, Ledger, User, open_ledger

MIN_PASSWORD = 10


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    users = commands.add_parser("users", help="people and their roles")
    sub = users.add_subparsers(dest="users_command", required=True)
    add = sub.add_parser("add", help="add a user; prints a new API token once")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=ROLES)
    _password_options(add, optional=True)
    add.set_defaults(handler=add_user)
    passwd = sub.add_parser("passwd", help="set a user's console password (ends their "
                            "console sessions)")
    passwd.add_argument("name")
    _password_options(passwd, optional=False)
    passwd.set_defaults(handler=set_password)
    listing = sub.add_parser("list", help="list users")
    listing.set_defaults(handler=list_users)
    disable = sub.add_parser("disable", help="disable a user (their tokens stop working)")
    disable.add_argument("name")
    disable.set_defaults(handler=disable_user)

    audit = commands.add_parser("audit", help="the audit trail")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser("verify", help="check the hash chain")
    verify.set_defaults(handler=verify_audit)
    show = audit_sub.add_parser("list", help="the newest audit events")
    show.add_argument("--limit", type=int, default=50)
    show.set_defaults(handler=list_audit)

    for parser in (add, passwd, listing, disable, verify, show):
        add_config_option(parser)


def _store(args: argparse.Namespace) -> Ledger:
    return open_ledger(load(args, secrets=False).service.database)


def _password_options(parser: argparse.ArgumentParser, optional: bool) -> None:
    group = parser.add_mutually_exclusive_group()
    if optional:
        group.add_argument("--password", action="store_true",
                           help="also set a console password (asked twice on the terminal)")
    group.add_argument("--password-stdin", action="store_true",
                       help="read the console password from the first line of stdin")


def _read_password(args: argparse.Namespace) -> str | None:
    """The new password from stdin or asked twice on the terminal; None if not wanted."""
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif getattr(args, "password", True):
        if not sys.stdin.isatty():
            raise CommandFailed("no terminal to ask for the password on; pipe it in with "
                                "--password-stdin", EXIT_INVALID)
        password = getpass.getpass("console password: ")
        if getpass.getpass("the same again: ") != password:
            raise CommandFailed("the two passwords differ; nothing was changed", EXIT_INVALID)
    else:
        return None
    if len(password) < MIN_PASSWORD:
        raise CommandFailed(f"a console password has at least {MIN_PASSWORD} characters",
                            EXIT_INVALID)
    return password


def add_user(args: argparse.Namespace) -> int:
    password = _read_password(args)
    store = _store(args)
    user_id = new_user_id()
    token, token_hash = new_token(user_id)
    now = utcnow()
    store.add_user(
        User(id=user_id, name=args.name, role=args.role, token_hash=token_hash,
             password_hash=hash_password(password) if password is not None else None,
             disabled=False, created_at=now),
        AuditEntry(actor=local_actor(), action="user.add", subject=args.name,
                   details={"role": args.role}),
    )
    print(f"created {args.role} {args.name!r}; the token is shown only now:")
    print(token)
    return EXIT_OK


def set_password(args: argparse.Namespace) -> int:
    password = _read_password(args)
    assert password is not None
    _store(args).set_password(
        args.name, hash_password(password),
        AuditEntry(actor=local_actor(), action="user.passwd", subject=args.name), utcnow(),
    )
    print(f"{args.name}: console password set; their console sessions have ended")
    return EXIT_OK


def list_users(args: argparse.Namespace) -> int:
    rows = [(u.name, u.role, "disabled" if u.disabled else "active", iso_utc(u.created_at))
            for u in _store(args).list_users()]
    print(table(("name", "role", "status", "created"), rows))
    return EXIT_OK


def disable_user(args: argparse.Namespace) -> int:
    _store(args).set_user_disabled(
        args.name, True, AuditEntry(actor=local_actor(), action="user.disable", subject=args.name),
        utcnow(),
    )
    print(f"{args.name}: disabled")
    return EXIT_OK


def verify_audit(args: argparse.Namespace) -> int:
    store = _store(args)
    broken = store.verify_audit()
    if broken is not None:
        print(f"audit chain BROKEN at {broken}")
        return EXIT_FAILURE
    count = len(store.audit_events())
    print(f"audit chain intact: {count} event(s)")
    return EXIT_OK


def list_audit(args: argparse.Namespace) -> int:
    events = _store(args).audit_events(limit=args.limit)
    rows = [(e.seq, e.at[:23] + "Z", e.actor, e.address or "", e.action, e.subject or "")
            for e in events]
    print(table(("seq", "at", "actor", "address", "action", "subject"), rows))
    return EXIT_OK
