"""Template approvals: who approved which exact file, recorded in approvals.toml.

An approval is bound to the sha256 of the template file. Editing the file after
approval makes it "changed, not approved" until someone approves it again; live
alerts use approved templates only, exercises may use drafts.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path

import tomli_w

from broadcaster.errors import TemplateError
from broadcaster.models import iso_utc
from broadcaster.templates import APPROVALS_FILE, Template

_HEADER = (
    "# Template approvals, written by `broadcaster templates approve ID --by NAME`.\n"
    "# Each entry binds an approval to the sha256 of the template file: editing the file\n"
    "# makes it \"changed, not approved\" until it is approved again.\n\n"
)


class ApprovalState(StrEnum):
    APPROVED = "approved"
    DRAFT = "draft"  # never approved
    CHANGED = "changed"  # approved once, file changed since

    @property
    def label(self) -> str:
        return {
            ApprovalState.APPROVED: "approved",
            ApprovalState.DRAFT: "not approved",
            ApprovalState.CHANGED: "changed, not approved",
        }[self]


@dataclass(frozen=True)
class Approval:
    template_id: str
    sha256: str
    approved_by: str
    approved_at: str


def read_approvals(directory: Path) -> dict[str, Approval]:
    """Every approval in the folder's approvals.toml (none when the file is absent)."""
    path = directory / APPROVALS_FILE
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise TemplateError(f"not valid TOML: {exc}", file=APPROVALS_FILE) from None
    approvals: dict[str, Approval] = {}
    for template_id, entry in document.items():
        if not isinstance(entry, dict) or not all(
            isinstance(entry.get(key), str) for key in ("sha256", "approved_by", "approved_at")
        ):
            raise TemplateError(
                "each entry needs sha256, approved_by and approved_at strings",
                file=APPROVALS_FILE, where=f"[{template_id}]",
            )
        approvals[template_id] = Approval(
            template_id, entry["sha256"], entry["approved_by"], entry["approved_at"]
        )
    return approvals


def approval_state(template: Template, approvals: Mapping[str, Approval]) -> ApprovalState:
    approval = approvals.get(template.id)
    if approval is None:
        return ApprovalState.DRAFT
    if approval.sha256 != template.sha256:
        return ApprovalState.CHANGED
    return ApprovalState.APPROVED


def approve(directory: Path, template: Template, by: str, now: datetime) -> Approval:
    """Record an approval of the template's current file; written atomically."""
    by = by.strip()
    if not by:
        raise ValueError("--by needs the name of the person approving")
    approvals = read_approvals(directory)
    approval = Approval(template.id, template.sha256, by, iso_utc(now) or "")
    approvals[template.id] = approval
    document = {
        key: {"sha256": a.sha256, "approved_by": a.approved_by, "approved_at": a.approved_at}
        for key, a in sorted(approvals.items())
    }
    path = directory / APPROVALS_FILE
    temporary = path.with_suffix(".toml.tmp")
    temporary.write_text(_HEADER + tomli_w.dumps(document), encoding="utf-8")
    os.replace(temporary, path)
    return approval
