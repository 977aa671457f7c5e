"""`broadcaster templates list | render | check | approve`."""

from __future__ import annotations

import argparse

from broadcaster.approvals import approval_state, approve, read_approvals
from broadcaster.channels import KINDS
from broadcaster.cli.common import (
    EXIT_INVALID,
    EXIT_OK,
    CommandFailed,
    add_config_option,
    load,
    local_actor,
    parse_assignments,
    table,
)
from broadcaster.errors import TemplateError, UnknownTemplate
from broadcaster.models import Mode, utcnow
from broadcaster.store import AuditEntry, open_ledger
from broadcaster.template_check import SAMPLE_ALERT_ID, check_templates
from broadcaster.templates import RenderContext, Template, TemplateSet, load_templates, render


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    templates = commands.add_parser("templates", help="the press office's templates")
    sub = templates.add_subparsers(dest="templates_command", required=True)

    listing = sub.add_parser("list", help="templates with their approval state")
    listing.set_defaults(handler=list_templates)

    rendering = sub.add_parser("render", help="render one template with values")
    rendering.add_argument("template", metavar="ID")
    rendering.add_argument("--set", action="append", metavar="NAME=VALUE", dest="values")
    rendering.add_argument("--examples", action="store_true",
                           help="fill variables not given with --set from their examples")
    rendering.add_argument("--lang", help="language (default: the service default)")
    rendering.add_argument("--channel-kind", choices=sorted(KINDS),
                           help="show the exact post for this kind of channel, with its length")
    rendering.add_argument("--exercise", action="store_true", help="render as an exercise")
    rendering.set_defaults(handler=render_template)

    check = sub.add_parser("check", help="render every template with extreme inputs")
    check.set_defaults(handler=check_all)

    approving = sub.add_parser("approve", help="approve a template's current file")
    approving.add_argument("template", metavar="ID")
    approving.add_argument("--by", required=True, metavar="NAME", help="who approves it")
    approving.set_defaults(handler=approve_template)

    for parser in (listing, rendering, check, approving):
        add_config_option(parser)


def list_templates(args: argparse.Namespace) -> int:
    config = load(args, secrets=False)
    template_set = load_templates(config.service.templates)
    approvals = read_approvals(config.service.templates)
    rows = [
        (t.id, t.title, t.severity.value, t.kind.value, ",".join(t.languages),
         approval_state(t, approvals).label)
        for t in template_set.templates.values()
    ]
    print(table(("id", "title", "severity", "kind", "lang", "approval"), rows))
    for problem in template_set.problems:
        print(f"not loaded: {problem}")
    return EXIT_OK if not template_set.problems else EXIT_INVALID


def _get(template_set: TemplateSet, template_id: str) -> Template:
    """The loaded template; for a file of the folder that failed to load, its problem
    instead of "unknown template". Never reads a file named by the id."""
    try:
        return template_set.get(template_id)
    except UnknownTemplate:
        for problem in template_set.problems:
            if problem.file == f"{template_id}.toml":
                raise TemplateError(
                    f"template {template_id!r} cannot be used until this is fixed: "
                    f"{problem.detail}", file=problem.file, where=problem.where,
                ) from None
        raise


def render_template(args: argparse.Namespace) -> int:
    config = load(args, secrets=False)
    template = _get(load_templates(config.service.templates), args.template)
    values: dict[str, object] = dict(template.example_values()) if args.examples else {}
    values.update(parse_assignments(args.values))
    cleaned = template.clean_values(values)
    context = RenderContext(
        city=config.service.city, info_url=config.service.info_url, alert_id=SAMPLE_ALERT_ID,
        sent_at=utcnow(), mode=Mode.EXERCISE if args.exercise else Mode.LIVE,
        exercise_banner=config.service.exercise_banner, timezone=config.service.timezone,
    )
    language = args.lang or config.service.default_language
    if language not in template.texts:
        raise CommandFailed(
            f"template {template.id!r} has no {language!r} texts (it has: "
            f"{', '.join(template.languages)})", EXIT_INVALID,
        )
    rendered = render(template, cleaned, context, language)
    if args.channel_kind:
        composed = KINDS[args.channel_kind].compose([rendered])
        print(composed.text)
        limit = "unlimited" if composed.limit is None else str(composed.limit)
        verdict = "TOO LONG" if composed.too_long else "fits"
        print(f"\n[{args.channel_kind}: {composed.length} of {limit} — {verdict}]")
        return EXIT_INVALID if composed.too_long else EXIT_OK
    print(f"headline: {rendered.headline}\n\nshort:\n{rendered.short}\n\nbody:\n{rendered.body}")
    return EXIT_OK


def check_all(args: argparse.Namespace) -> int:
    config = load(args, secrets=False)
    template_set = load_templates(config.service.templates)
    problems = check_templates(template_set, read_approvals(config.service.templates), config)
    for problem in problems:
        print(problem)
    checked = len(template_set.templates) + len(template_set.problems)
    if problems:
        print(f"\n{len(problems)} problem(s) in {checked} template(s)")
        return EXIT_INVALID
    print(f"{checked} template(s) checked: all render, fit every channel and are approved")
    return EXIT_OK


def approve_template(args: argparse.Namespace) -> int:
    config = load(args, secrets=False)
    directory = config.service.templates
    template_set = load_templates(directory)
    template = _get(template_set, args.template)
    if not args.by.strip():
        raise CommandFailed("--by needs the name of the person approving", EXIT_INVALID)
    approvals = read_approvals(directory)
    blocking = [
        p for p in check_templates(template_set, approvals, config)
        if p.template == template.id and not p.approval
    ]
    if blocking:
        for problem in blocking:
            print(problem)
        raise CommandFailed(f"{template.id}: fix the problems above before approving",
                            EXIT_INVALID)
    now = utcnow()
    # The audit event first: an approval that cannot be audited is not made.
    store = open_ledger(config.service.database)
    try:
        store.record_audit(AuditEntry(
            actor=args.by.strip(), address=local_actor(), action="template.approve",
            subject=template.id, details={"sha256": template.sha256}), now)
    finally:
        store.close()
    approval = approve(directory, template, args.by, now)
    print(f"{template.id}: approved by {approval.approved_by} at {approval.approved_at} "
          f"(sha256 {approval.sha256[:12]}…)")
    return EXIT_OK
