"""How each platform counts the length of a text. Pure functions, no I/O.

- X: weighted length from twitter-text (most Latin code points 1, CJK and emoji 2,
  every URL 23, NFC-normalised), limit 280.
- Mastodon: grapheme clusters, every URL 23, limit 500 unless the instance says otherwise.
- Telegram: UTF-16 code units of the text after entity parsing, limit 4096.
- Facebook: characters, limit 63,206.
- E-mail and webhooks: unlimited.
"""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Callable
from typing import Any

import regex

X_LIMIT = 280
MASTODON_DEFAULT_LIMIT = 500
TELEGRAM_LIMIT = 4096
FACEBOOK_LIMIT = 63_206

URL_WEIGHT = 23
# Mastodon replaces every http(s) link by 23 characters, whatever its length. As in
# Mastodon's own URL pattern, a link does not end in punctuation: the full stop after
# "… https://example.org/warnung." is text and counts. (A link that does end in a
# balanced ")" is counted one too long here: safe for a limit check.)
_URL = re.compile(r"https?://[^\s<>\"]*[^\s<>\"()?!*'「」;:=,.$%\[\]~&|@]", re.IGNORECASE)
_GRAPHEME = regex.compile(r"\X")
_TAG = re.compile(r"<[^>]+>")


@functools.cache
def _twitter_parse() -> Callable[[str], Any]:
    # twitter-text takes half a second to import (pkg_resources and a huge emoji
    # regex), so it is loaded on first use instead of at every start of the CLI.
    from twitter_text import parse_tweet

    return parse_tweet  # type: ignore[no-any-return]


def warm_up() -> None:
    """Load the slow counting tables now, so the first preview is not the slow one."""
    x_weighted_length("")


def x_weighted_length(text: str) -> int:
    """X's weighted length, exactly as the platform counts it."""
    return int(_twitter_parse()(text).weightedLength)


def mastodon_length(text: str) -> int:
    """Grapheme clusters with every URL counted as 23."""
    without_urls = _URL.sub("", text)
    urls = len(_URL.findall(text))
    return len(_GRAPHEME.findall(without_urls)) + urls * URL_WEIGHT


def telegram_visible(html_text: str) -> str:
    """What Telegram displays of our HTML: the tags removed, the entities unescaped."""
    return html.unescape(_TAG.sub("", html_text))


def telegram_length(html_text: str) -> int:
    """UTF-16 code units of what Telegram displays after parsing our HTML."""
    return len(telegram_visible(html_text).encode("utf-16-le")) // 2


def characters(text: str) -> int:
    """Plain code point count."""
    return len(text)
