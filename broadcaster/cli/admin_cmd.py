"""Server-side administration on the database: users and the audit trail."""

from __future__ import annotations

import argparse

from broadcaster.auth import ROLES, new_token, new_user_id
from broadcaster.cli.common import EXIT_FAILURE, EXIT_OK, add_config_option, load, table
from broadcaster.models import iso_utc, utcnow
from broadcaster.store import AuditEntry, Store, User

CLI_ACTOR = "cli"


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    users = commands.add_parser("users", help="people and their roles")
    sub = users.add_subparsers(dest="users_command", required=True)
    add = sub.add_parser("add", help="add a user; prints a new API token once")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=ROLES)
    add.set_defaults(handler=add_user)
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

    for parser in (add, listing, disable, verify, show):
        add_config_option(parser)


def _store(args: argparse.Namespace) -> Store:
    return Store(load(args, secrets=False).service.database)


def add_user(args: argparse.Namespace) -> int:
    store = _store(args)
    user_id = new_user_id()
    token, token_hash = new_token(user_id)
    now = utcnow()
    store.add_user(
        User(id=user_id, name=args.name, role=args.role, token_hash=token_hash,
             password_hash=None, disabled=False, created_at=now),
        AuditEntry(actor=CLI_ACTOR, action="user.add", subject=args.name,
                   details={"role": args.role}),
    )
    print(f"created {args.role} {args.name!r}; the token is shown only now:")
    print(token)
    return EXIT_OK


def list_users(args: argparse.Namespace) -> int:
    rows = [(u.name, u.role, "disabled" if u.disabled else "active", iso_utc(u.created_at))
            for u in _store(args).list_users()]
    print(table(("name", "role", "status", "created"), rows))
    return EXIT_OK


def disable_user(args: argparse.Namespace) -> int:
    _store(args).set_user_disabled(
        args.name, True, AuditEntry(actor=CLI_ACTOR, action="user.disable", subject=args.name),
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
