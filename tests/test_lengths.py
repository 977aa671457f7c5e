"""How each platform counts a text (broadcaster/lengths.py) and the exact post a
channel kind composes from rendered texts (ChannelKind.compose)."""

from __future__ import annotations

import pytest

from broadcaster import lengths
from broadcaster.channels import KINDS
from broadcaster.channels.base import RenderedText

FAMILY = "\U0001F468\u200d\U0001F469\u200d\U0001F467\u200d\U0001F466"  # 👨‍👩‍👧‍👦, 4 people + 3 ZWJ
SIREN = "\U0001F6A8"  # 🚨
FLAG_DE = "\U0001F1E9\U0001F1EA"  # 🇩🇪, two regional indicators
E_ACUTE_DECOMPOSED = "e\u0301"  # e + combining acute accent
SHORT_URL = "https://x.de"
LONG_URL = "https://www.koblenz.de/warnung/" + "ä" * 120


# X: weighted length, URL = 23, emoji = 2


def test_x_counts_latin_letters_and_umlauts_once() -> None:
    assert lengths.x_weighted_length("Straße Überflutung") == 18


@pytest.mark.parametrize("url", [SHORT_URL, LONG_URL])
def test_x_counts_every_link_as_23_whatever_its_length(url: str) -> None:
    assert lengths.x_weighted_length(url) == 23
    assert lengths.x_weighted_length(f"Infos: {url}") == len("Infos: ") + 23


@pytest.mark.parametrize("emoji", [SIREN, FAMILY, FLAG_DE], ids=["siren", "family-zwj", "flag"])
def test_x_counts_an_emoji_as_2(emoji: str) -> None:
    assert lengths.x_weighted_length(emoji) == 2
    assert lengths.x_weighted_length(f"Achtung {emoji}") == len("Achtung ") + 2


def test_x_counts_cjk_characters_as_2() -> None:
    assert lengths.x_weighted_length("警報") == 4


def test_x_counts_after_nfc_normalisation() -> None:
    assert lengths.x_weighted_length(E_ACUTE_DECOMPOSED) == 1


def test_x_limit_is_280() -> None:
    assert lengths.X_LIMIT == 280


# Mastodon: grapheme clusters, URL = 23


@pytest.mark.parametrize("emoji", [FAMILY, FLAG_DE, SIREN], ids=["family-zwj", "flag", "siren"])
def test_mastodon_counts_an_emoji_sequence_as_one_grapheme(emoji: str) -> None:
    assert lengths.mastodon_length(emoji) == 1


def test_mastodon_counts_a_letter_with_combining_accent_once() -> None:
    assert lengths.mastodon_length(E_ACUTE_DECOMPOSED) == 1


@pytest.mark.parametrize("url", [SHORT_URL, LONG_URL])
def test_mastodon_counts_every_link_as_23_whatever_its_length(url: str) -> None:
    assert lengths.mastodon_length(url) == 23
    assert lengths.mastodon_length(f"Infos: {url} und {url}") == len("Infos:  und ") + 46


@pytest.mark.parametrize("after", [".", ",", ")", "!", "?", ":", ";"])
def test_mastodon_counts_punctuation_right_after_a_link(after: str) -> None:
    # Mastodon's link pattern never ends in punctuation, so the character is text.
    text = f"(Infos: https://www.koblenz.de/warnung{after}"
    assert lengths.mastodon_length(text) == len("(Infos: ") + 23 + 1
    # and agrees with X, which counts links the same way for this text
    assert lengths.mastodon_length(text) == lengths.x_weighted_length(text)


def test_mastodon_does_not_treat_an_address_without_scheme_as_a_link() -> None:
    assert lengths.mastodon_length("www.koblenz.de") == len("www.koblenz.de")


def test_mastodon_default_limit_is_500() -> None:
    assert lengths.MASTODON_DEFAULT_LIMIT == 500


# Telegram: UTF-16 code units of the visible text


def test_telegram_counts_the_visible_text_without_tags() -> None:
    assert lengths.telegram_length("<b>Warnung</b>\n\nText") == len("Warnung\n\nText")


def test_telegram_counts_an_html_entity_as_the_character_it_shows() -> None:
    assert lengths.telegram_length("A &amp; B &lt;C&gt;") == len("A & B <C>")


def test_telegram_counts_utf16_code_units() -> None:
    assert lengths.telegram_length(SIREN) == 2  # one surrogate pair
    assert lengths.telegram_length(FAMILY) == 4 * 2 + 3  # four pairs and three ZWJ
    assert lengths.telegram_length("Überflutung") == 11  # BMP characters count 1


# Facebook: characters


def test_facebook_counts_code_points() -> None:
    assert lengths.characters("Straße") == 6
    assert lengths.characters(FAMILY) == 7
    assert lengths.characters(LONG_URL) == len(LONG_URL)  # no link shortening


# What a channel kind composes


RENDERED = RenderedText(
    language="de",
    headline="Evakuierung: Oberwerth <Süd> & Rheinufer",
    short="kurz",
    body="Bitte verlassen Sie das Gebiet <Süd> & Rheinufer. 🚨",
)


def test_telegram_post_escapes_html_and_counts_what_readers_see() -> None:
    composed = KINDS["telegram"].compose([RENDERED])
    assert composed.text == (
        "<b>Evakuierung: Oberwerth &lt;Süd&gt; &amp; Rheinufer</b>\n\n"
        "Bitte verlassen Sie das Gebiet &lt;Süd&gt; &amp; Rheinufer. 🚨"
    )
    visible = f"{RENDERED.headline}\n\n{RENDERED.body}"
    assert composed.length == len(visible) + 1  # the siren is a surrogate pair
    assert composed.limit == lengths.TELEGRAM_LIMIT == 4096
    assert not composed.too_long


def test_telegram_post_over_4096_is_too_long() -> None:
    long_body = RenderedText(language="de", headline="H", short="s", body="x" * 4094)
    composed = KINDS["telegram"].compose([long_body])
    assert composed.length == 1 + 2 + 4094
    assert composed.too_long


def test_webhook_post_is_plain_text_and_unlimited() -> None:
    composed = KINDS["webhook"].compose([RENDERED])
    assert composed.text == f"{RENDERED.headline}\n\n{RENDERED.body}"
    assert composed.limit is None
    assert not composed.too_long
