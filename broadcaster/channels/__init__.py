"""The channel registry: one explicit line per kind, never discovered by scanning.

A kind's module is imported the first time something asks for that kind, so a
daemon whose configuration has only webhooks never loads the Telegram or X client
libraries (they cost half a second of start-up and tens of megabytes).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping

from broadcaster.channels.base import ChannelKind

_MODULES = {
    "webhook": "broadcaster.channels.webhook",
    "telegram": "broadcaster.channels.telegram",
    "facebook": "broadcaster.channels.facebook",
    "x": "broadcaster.channels.x",
    "mastodon": "broadcaster.channels.mastodon",
    "email": "broadcaster.channels.email",
}


class _Registry(Mapping[str, ChannelKind]):
    """kind name → ChannelKind, importing the kind's module on first use."""

    def __getitem__(self, name: str) -> ChannelKind:
        module = importlib.import_module(_MODULES[name])
        kind = module.KIND
        assert isinstance(kind, ChannelKind) and kind.name == name
        return kind

    def __iter__(self) -> Iterator[str]:
        return iter(_MODULES)

    def __len__(self) -> int:
        return len(_MODULES)


KINDS: Mapping[str, ChannelKind] = _Registry()
