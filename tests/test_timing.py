"""Times officers give: send_at with daylight saving time, reminder series, notes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from broadcaster.errors import ValidationError
from broadcaster.timing import (
    parse_repeat,
    parse_send_at,
    parse_time,
    reminder_note,
)

BERLIN = ZoneInfo("Europe/Berlin")
# Clocks go forward on 28 March 2027 (02:00 → 03:00) and back on 31 October 2027.
SPRING = datetime(2027, 3, 20, 12, 0, tzinfo=UTC)
AUTUMN = datetime(2027, 10, 25, 12, 0, tzinfo=UTC)


def test_a_local_time_is_read_in_the_service_time_zone() -> None:
    winter = parse_send_at("2026-11-24 06:00", BERLIN, datetime(2026, 11, 23, tzinfo=UTC))
    assert winter == datetime(2026, 11, 24, 5, 0, tzinfo=UTC)
    summer = parse_time("2027-07-01T06:00", "send_at", BERLIN)
    assert summer == datetime(2027, 7, 1, 4, 0, tzinfo=UTC)


def test_an_iso_time_with_an_offset_is_taken_as_it_is() -> None:
    moment = parse_send_at("2026-11-24T06:00:00+01:00", BERLIN,
                           datetime(2026, 11, 23, tzinfo=UTC))
    assert moment == datetime(2026, 11, 24, 5, 0, tzinfo=UTC)


def test_a_time_in_the_gap_when_clocks_go_forward_is_refused() -> None:
    with pytest.raises(ValidationError) as refused:
        parse_send_at("2027-03-28 02:30", BERLIN, SPRING)
    message = refused.value.problems["send_at"]
    assert "does not exist" in message and "clocks go forward" in message
    assert "01:30" in message and "03:30" in message
    # The minutes either side exist.
    assert parse_send_at("2027-03-28 01:59", BERLIN, SPRING) == datetime(
        2027, 3, 28, 0, 59, tzinfo=UTC)
    assert parse_send_at("2027-03-28 03:00", BERLIN, SPRING) == datetime(
        2027, 3, 28, 1, 0, tzinfo=UTC)


def test_a_time_that_happens_twice_when_clocks_go_back_means_the_first() -> None:
    moment = parse_send_at("2027-10-31 02:30", BERLIN, AUTUMN)
    # The first 02:30 is still summer time (UTC+2): 00:30 UTC — one instant, so one send.
    assert moment == datetime(2027, 10, 31, 0, 30, tzinfo=UTC)


@pytest.mark.parametrize("value, words", [
    ("2026-11-22 06:00", "in the past"),
    ("2026-12-24 06:00", "more than 30 days ahead"),
    ("morgen früh", "not a time"),
    ("2026-11-24", "YYYY-MM-DD HH:MM"),
    ("", "give a time"),
    (1700000000, "give a time"),
])
def test_bad_send_at_is_refused_naming_the_field(value: object, words: str) -> None:
    with pytest.raises(ValidationError) as refused:
        parse_send_at(value, BERLIN, datetime(2026, 11, 23, 8, 0, tzinfo=UTC))
    assert words in refused.value.problems["send_at"]


def test_repeat_with_a_duration_until_the_all_clear() -> None:
    first = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    repeat = parse_repeat({"every": "PT6H", "until": "allclear"}, BERLIN, first)
    assert repeat.every == timedelta(hours=6) and repeat.until is None
    assert repeat.to_json() == {"every": "PT6H", "until": "allclear"}
    trigger = repeat.trigger(BERLIN, first)
    assert trigger.get_next_fire_time(None, first) == first + timedelta(hours=6)


def test_a_cron_weekday_means_what_crontab_means() -> None:
    # "0 6 * * 0" is Sundays at 06:00 in crontab; APScheduler 3 alone would read Monday.
    first = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # a Monday
    repeat = parse_repeat({"every": "0 6 * * 0"}, BERLIN, first)
    upcoming = repeat.trigger(BERLIN, first).get_next_fire_time(None, first)
    assert upcoming.astimezone(BERLIN).strftime("%A %H:%M") == "Sunday 06:00"
    weekdays = parse_repeat({"every": "30 7 * * 1-5"}, BERLIN, first)
    tuesday = weekdays.trigger(BERLIN, first).get_next_fire_time(None, first)
    assert tuesday.astimezone(BERLIN).strftime("%A %H:%M") == "Tuesday 07:30"


@pytest.mark.parametrize("document, field, words", [
    ({"every": "0 0 30 2 *"}, "repeat.every", "never fires"),
    ({"every": "0 6 * * *", "until": "2026-11-23 09:30"}, "repeat.every", "never fires"),
    ({"every": "PT30S"}, "repeat.every", "at least PT1M"),
    ({"every": "jeden Morgen"}, "repeat.every", "five fields"),
    ({"every": "61 * * * *"}, "repeat.every", "not a cron expression"),
    ({"every": "PT6H", "until": "2026-11-23 08:30"}, "repeat.until", "after the alert"),
    ({"every": "PT6H", "until": "bald"}, "repeat.until", "not a time"),
    ({"every": "PT6H", "often": True}, "repeat.often", "unknown"),
    ({}, "repeat.every", "a duration"),
])
def test_bad_repeat_is_refused_naming_the_field(document: dict[str, object], field: str,
                                                words: str) -> None:
    first = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # 09:00 in Berlin
    with pytest.raises(ValidationError) as refused:
        parse_repeat(document, BERLIN, first)
    assert words in refused.value.problems[field]


def test_the_reminder_note_carries_the_time_in_the_channels_language() -> None:
    moment = datetime(2026, 11, 24, 5, 0, tzinfo=UTC)
    assert reminder_note("de", moment, BERLIN) == "\n\nErinnerung – Stand 06:00 Uhr"
    assert reminder_note("en", moment, BERLIN) == "\n\nReminder – as of 06:00"
    assert reminder_note("fr", moment, BERLIN) == "\n\nReminder – as of 06:00"
