"""The templates and approvals a running daemon serves, reloaded when files change.

The press office edits templates and approves them with the CLI while the daemon
runs; the next request sees the change (a stat of the folder per request, no
restart, no signal).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from broadcaster.approvals import Approval, ApprovalState, approval_state, read_approvals
from broadcaster.errors import TemplateError
from broadcaster.logs import event
from broadcaster.templates import Template, TemplateSet, load_templates

log = logging.getLogger("broadcaster.catalog")


@dataclass(frozen=True)
class Snapshot:
    templates: TemplateSet
    approvals: dict[str, Approval]

    def approval(self, template: Template) -> ApprovalState:
        return approval_state(template, self.approvals)


class Catalog:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._signature: tuple[tuple[str, int, int], ...] | None = None
        self._snapshot: Snapshot | None = None

    def _current_signature(self) -> tuple[tuple[str, int, int], ...]:
        try:
            entries = sorted(self.directory.glob("*.toml"))
            return tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in entries)
        except OSError:
            return ()

    def snapshot(self) -> Snapshot:
        """The current templates and approvals (reloaded if any file changed)."""
        signature = self._current_signature()
        if self._snapshot is None or signature != self._signature:
            templates = load_templates(self.directory)
            try:
                approvals = read_approvals(self.directory)
            except TemplateError as exc:
                templates.problems.append(exc)
                approvals = {}
            for problem in templates.problems:
                event(log, "template.not_loaded", logging.ERROR, problem=str(problem))
            self._snapshot = Snapshot(templates, approvals)
            self._signature = signature
        return self._snapshot
