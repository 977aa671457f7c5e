"""Commands that talk to the daemon: send, status, followup, retry."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from broadcaster.cli.client import ApiClient, patiently, send_once
from broadcaster.cli.common import (
    EXIT_FAILURE,
    EXIT_INVALID,
    EXIT_OK,
    CommandFailed,
    parse_assignments,
    table,
)

FINAL_STATES = {"delivered", "failed", "unknown", "cancelled"}
LIVE_CONFIRMATION = "SENDEN"
POLL_SECONDS = 0.5


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    send = commands.add_parser("send", help="send an alert from a template")
    send.add_argument("template", metavar="TEMPLATE")
    _message_options(send)
    send.add_argument("--exercise", action="store_true", help="an exercise, not a live alert")
    send.add_argument("--at", metavar="TIME",
                      help='send later: "2026-11-24 06:00" (the service\'s time zone) or ISO 8601')
    send.add_argument("--repeat-every", metavar="EVERY",
                      help='repeat as a reminder: "PT6H" or a cron expression "0 6 * * *"')
    send.add_argument("--repeat-until", metavar="UNTIL", default="allclear",
                      help='until a time, or "allclear" (default): until an all-clear or '
                           "correction")
    send.set_defaults(handler=send_alert)

    followup = commands.add_parser("followup", help="update, all-clear or correction")
    followup.add_argument("alert", metavar="ID")
    followup.add_argument("--kind", required=True, choices=("update", "allclear", "correction"))
    followup.add_argument("--template", required=True, metavar="T")
    _message_options(followup)
    followup.set_defaults(handler=send_followup)

    status = commands.add_parser("status", help="an alert and its deliveries")
    status.add_argument("alert", metavar="ID")
    status.add_argument("--watch", action="store_true", help="follow until every delivery is final")
    status.add_argument("--json", action="store_true", help="print the alert as JSON")
    status.set_defaults(handler=show_status)

    retry = commands.add_parser("retry", help="send a failed or unknown delivery again")
    retry.add_argument("delivery", metavar="DELIVERY_ID")
    retry.set_defaults(handler=retry_delivery)

    approve = commands.add_parser(
        "approve", help="confirm another officer's alert (two-person rule)")
    approve.add_argument("alert", metavar="ALERT_ID")
    approve.set_defaults(handler=approve_alert)

    cancel = commands.add_parser(
        "cancel", help="withdraw an alert that has not gone out (waiting or scheduled)")
    cancel.add_argument("alert", metavar="ALERT_ID")
    cancel.set_defaults(handler=cancel_alert)


def _message_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", action="append", metavar="NAME=VALUE", dest="values",
                        help="a variable value (repeat for each variable)")
    parser.add_argument("--channel", action="append", metavar="NAME", dest="channels",
                        help="only this channel (repeat for several; default: all)")
    parser.add_argument("--yes", action="store_true", help="send without asking")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--no-wait", action="store_true",
                        help="return once accepted instead of following the deliveries")


def send_alert(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {
        "template": args.template, "variables": parse_assignments(args.values),
        "mode": "exercise" if args.exercise else "live",
    }
    if args.channels:
        body["channels"] = args.channels
    if args.at:
        body["send_at"] = args.at
    if args.repeat_every:
        body["repeat"] = {"every": args.repeat_every, "until": args.repeat_until}
    return _preview_confirm_send(args, body, "/api/v1/alerts", dict(body))


def send_followup(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {
        "template": args.template, "variables": parse_assignments(args.values),
        "kind": args.kind,
    }
    if args.channels:
        body["channels"] = args.channels
    preview = {**body, "references": args.alert}
    return _preview_confirm_send(args, preview, f"/api/v1/alerts/{args.alert}/followups", body)


def _preview_confirm_send(args: argparse.Namespace, preview_body: dict[str, Any], path: str,
                          body: dict[str, Any]) -> int:
    client = ApiClient()
    preview = patiently(lambda: client.call("POST", "/api/v1/alerts/preview", preview_body),
                        "(a preview changes nothing)")
    out = sys.stderr if args.json else sys.stdout
    _print_preview(preview, out)
    if preview["problems"]:
        lines = [f"  {field}: {problem}" for field, problem in preview["problems"].items()]
        raise CommandFailed("cannot send:\n" + "\n".join(lines), EXIT_INVALID)
    if not args.yes:
        _confirm(preview["mode"], len(preview["channels"]))
    alert = send_once(client, path, body)
    print(f"accepted: {alert['id']}", file=out)
    if alert["state"] == "awaiting_approval":
        print("waiting for a second officer to confirm: broadcaster approve "
              f"{alert['id']} (or in the console)", file=out)
    elif alert["state"] == "scheduled":
        print(f"scheduled for {alert['send_at']}; withdraw with: broadcaster cancel "
              f"{alert['id']}", file=out)
    elif not args.no_wait:
        alert = _follow(client, alert["id"], None if args.json else _print_board)
    if args.json:
        print(json.dumps(alert, ensure_ascii=False, indent=2))
    return _exit_code(alert)


def _print_preview(preview: dict[str, Any], out: Any) -> None:
    mode = preview["mode"].upper()
    print(f"{mode} {preview['kind']} · template {preview['template']} "
          f"({preview['approval']})", file=out)
    for channel in preview["channels"]:
        limit = channel["limit"] if channel["limit"] is not None else "∞"
        print(f"\n── {channel['channel']} ({channel['kind']}, {channel['length']}/{limit}) ──",
              file=out)
        print(channel["text"], file=out)
        for problem in channel["problems"]:
            print(f"!! {problem}", file=out)
    print(file=out)


def _confirm(mode: str, channels: int) -> None:
    if not sys.stdin.isatty():
        raise CommandFailed("not sending without confirmation: add --yes", EXIT_INVALID)
    if mode == "live":
        prompt = (f"This is a LIVE alert to {channels} public channel(s). "
                  f"Type {LIVE_CONFIRMATION} to send: ")
        answer = input(prompt).strip()
        if answer != LIVE_CONFIRMATION:
            raise CommandFailed("not sent", EXIT_FAILURE)
    else:
        answer = input(f"Send this EXERCISE to {channels} exercise channel(s)? [y/N] ")
        if answer.strip().lower() not in ("y", "yes", "j", "ja"):
            raise CommandFailed("not sent", EXIT_FAILURE)


def _board(alert: dict[str, Any]) -> str:
    rows = [
        (d["channel"], d["state"], d["attempts"], d["url"] or d["remote_id"] or "",
         (d["error"] or "")[:70])
        for d in alert["deliveries"]
    ]
    head = f"alert {alert['id']} · {alert['mode']} {alert['kind']} · {alert['state']}"
    return head + "\n" + table(("channel", "state", "tries", "where", "error"), rows)


def _print_board(alert: dict[str, Any], previous_lines: int) -> int:
    text = _board(alert)
    if sys.stdout.isatty() and previous_lines:
        sys.stdout.write(f"\x1b[{previous_lines}F\x1b[J")
    print(text, flush=True)
    return text.count("\n") + 1


def _follow(client: ApiClient, alert_id: str,
            show: Callable[[dict[str, Any], int], int] | None) -> dict[str, Any]:
    """Poll until every delivery is final; show the board each time it changes."""
    shown, lines = None, 0
    while True:
        alert: dict[str, Any] = client.call("GET", f"/api/v1/alerts/{alert_id}")
        snapshot = [(d["state"], d["attempts"]) for d in alert["deliveries"]]
        if show is not None and snapshot != shown and (sys.stdout.isatty() or _final(alert)):
            lines = show(alert, lines)
            shown = snapshot
        if _final(alert):
            return alert
        time.sleep(POLL_SECONDS)


def _final(alert: dict[str, Any]) -> bool:
    return all(d["state"] in FINAL_STATES for d in alert["deliveries"]) and alert["state"] not in (
        "scheduled", "awaiting_approval")


def _exit_code(alert: dict[str, Any]) -> int:
    return EXIT_OK if alert["state"] in ("delivered", "delivering", "scheduled",
                                         "awaiting_approval") else EXIT_FAILURE


def show_status(args: argparse.Namespace) -> int:
    client = ApiClient()
    if args.watch:
        alert = _follow(client, args.alert, None if args.json else _print_board)
    else:
        alert = client.call("GET", f"/api/v1/alerts/{args.alert}")
        if not args.json:
            print(_board(alert))
    if args.json:
        print(json.dumps(alert, ensure_ascii=False, indent=2))
    return EXIT_OK


def retry_delivery(args: argparse.Namespace) -> int:
    delivery = ApiClient().call("POST", f"/api/v1/deliveries/{args.delivery}/retry")
    print(f"delivery {delivery['id']} on {delivery['channel']} queued again")
    return EXIT_OK


def approve_alert(args: argparse.Namespace) -> int:
    alert = ApiClient().call("POST", f"/api/v1/alerts/{args.alert}/approve")
    print(f"alert {alert['id']} confirmed; sending")
    print(_board(alert))
    return EXIT_OK


def cancel_alert(args: argparse.Namespace) -> int:
    alert = ApiClient().call("DELETE", f"/api/v1/alerts/{args.alert}")
    print(f"alert {alert['id']} withdrawn; nothing was sent")
    return EXIT_OK
