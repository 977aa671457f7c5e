"""The channel registry: one explicit line per kind, never discovered by scanning."""

from __future__ import annotations

from broadcaster.channels import webhook
from broadcaster.channels.base import ChannelKind

KINDS: dict[str, ChannelKind] = {
    kind.name: kind
    for kind in (
        webhook.KIND,
    )
}
