"""Times officers give: when to send, how often to repeat, until when. No I/O.

``send_at`` is ISO 8601 with an offset, or a local wall time ("2026-11-24 06:00")
in the service's time zone. A local time is checked against daylight saving time:
one that does not exist (the night clocks go forward) is refused with the nearest
valid times; one that exists twice (the night they go back) means the first, so
the alert fires once.

A reminder series repeats an alert ``every`` ISO 8601 duration ("PT6H") or cron
expression ("0 6 * * *", in the service's time zone) ``until`` a time or "allclear"
(until an all-clear or correction ends it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from broadcaster.durations import format_duration, parse_duration
from broadcaster.errors import ValidationError

MAX_AHEAD = timedelta(days=30)
MIN_REPEAT = timedelta(minutes=1)
UNTIL_ALLCLEAR = "allclear"
_LOCAL = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2})?$")
_NOTE = {"de": "Erinnerung – Stand {time} Uhr", "en": "Reminder – as of {time}"}


def parse_time(value: object, field: str, zone: ZoneInfo) -> datetime:
    """A moment from ISO 8601 with offset or a local wall time; ValidationError names
    the field. A wall time that does not exist in ``zone`` is refused."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError({field: 'give a time such as "2026-11-24 06:00" or '
                                      '"2026-11-24T06:00:00+01:00"'})
    text = value.strip()
    if _LOCAL.match(text):
        wall = datetime.fromisoformat(text.replace(" ", "T"))
        first = wall.replace(tzinfo=zone, fold=0)
        second = wall.replace(tzinfo=zone, fold=1)
        if first.utcoffset() != second.utcoffset() and _wall(first, zone) != wall:
            # In the gap when clocks go forward, neither reading maps back to the wall time.
            before = (first - timedelta(minutes=60)).astimezone(zone)
            raise ValidationError({field: (
                f"{wall:%H:%M} does not exist on {wall:%d.%m.%Y} in {zone.key}: clocks go "
                f"forward that night; choose {before:%H:%M} or "
                f"{first.astimezone(UTC).astimezone(zone):%H:%M}")})
        return first.astimezone(UTC)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError({field: f"{text!r} is not a time; use YYYY-MM-DD HH:MM "
                                      "(local) or ISO 8601 with an offset"}) from None
    if moment.tzinfo is None:
        raise ValidationError({field: f"{text!r}: give the time as YYYY-MM-DD HH:MM"})
    return moment.astimezone(UTC)


def _wall(moment: datetime, zone: ZoneInfo) -> datetime:
    return moment.astimezone(UTC).astimezone(zone).replace(tzinfo=None)


def parse_send_at(value: object, zone: ZoneInfo, now: datetime) -> datetime:
    """When a scheduled alert goes out: in the future, at most 30 days ahead."""
    moment = parse_time(value, "send_at", zone)
    if moment <= now:
        raise ValidationError({"send_at": f"{_local(moment, zone)} is in the past; send now "
                                          "or choose a later time"})
    if moment > now + MAX_AHEAD:
        raise ValidationError({"send_at": f"{_local(moment, zone)} is more than 30 days "
                                          "ahead; schedule it later"})
    return moment


def _local(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%d.%m.%Y %H:%M %Z")


@dataclass(frozen=True)
class Repeat:
    """A validated reminder series."""

    every: timedelta | str  # a duration or a cron expression
    until: datetime | None  # None: until an all-clear or correction

    def trigger(self, zone: ZoneInfo, start: datetime) -> BaseTrigger:
        """The APScheduler trigger for repetitions after ``start``."""
        end = self.until
        if isinstance(self.every, timedelta):
            return IntervalTrigger(seconds=self.every.total_seconds(),
                                   start_date=start + self.every, end_date=end, timezone=UTC)
        return CronTrigger(**_cron_fields(self.every), timezone=zone, start_date=start,
                           end_date=end)

    def to_json(self) -> dict[str, str]:
        every = format_duration(self.every) if isinstance(self.every, timedelta) else self.every
        until = self.until.isoformat() if self.until else UNTIL_ALLCLEAR
        return {"every": every, "until": until}


_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _cron_fields(expression: str) -> dict[str, str]:
    minute, hour, day, month, day_of_week = expression.split()
    return {"minute": minute, "hour": hour, "day": day, "month": month,
            "day_of_week": _crontab_weekdays(day_of_week)}


def _crontab_weekdays(field: str) -> str:
    """Crontab's weekday field (0 and 7 are Sunday) as day names: APScheduler 3 counts
    0 as Monday, so numbers cannot be passed through."""
    if field == "*":
        return "*"
    days: set[int] = set()
    for token in field.lower().split(","):
        span, _, step_text = token.partition("/")
        step = int(step_text) if step_text else 1
        if span == "*":
            low, high = 0, 6
        else:
            first, _, last = span.partition("-")
            low = _weekday(first)
            high = _weekday(last) if last else (6 if step_text else low)
            if last and high == 0 and low > 0:
                high = 7  # "5-7" / "fri-sun" run to Sunday
        if step < 1 or high < low:
            raise ValueError(f"weekday range {token!r} runs backwards")
        days.update(day % 7 for day in range(low, high + 1, step))
    return ",".join(_WEEKDAYS[day] for day in sorted(days))


def _weekday(token: str) -> int:
    if token in _WEEKDAYS:
        return _WEEKDAYS.index(token)
    if token.isdigit() and 0 <= int(token) <= 7:
        return int(token) % 7 if int(token) != 7 else 0
    raise ValueError(f"{token!r} is not a weekday (0-7 or sun-sat)")


def parse_repeat(document: object, zone: ZoneInfo, first: datetime,
                 minimum: timedelta = MIN_REPEAT) -> Repeat:
    """A reminder series from ``{"every": …, "until": …}``; ValidationError names the
    field. ``first`` is when the alert itself goes out."""
    if not isinstance(document, Mapping):
        raise ValidationError({"repeat": 'an object: {"every": "PT6H", "until": "allclear"}'})
    unknown = set(document) - {"every", "until"}
    if unknown:
        raise ValidationError({f"repeat.{sorted(unknown)[0]}": "unknown; known: every, until"})
    every_text = document.get("every")
    if not isinstance(every_text, str) or not every_text.strip():
        raise ValidationError({"repeat.every": 'a duration such as "PT6H" or a cron '
                                               'expression such as "0 6 * * *"'})
    until_value: Any = document.get("until", UNTIL_ALLCLEAR)
    until = None if until_value == UNTIL_ALLCLEAR else parse_time(until_value, "repeat.until",
                                                                   zone)
    every: timedelta | str
    if every_text.strip().upper().startswith("P"):
        try:
            every = parse_duration(every_text)
        except ValueError as exc:
            raise ValidationError({"repeat.every": str(exc)}) from None
        if every < minimum:
            raise ValidationError({"repeat.every": f"at least {format_duration(minimum)}"})
    else:
        every = " ".join(every_text.split())
        if len(every.split()) != 5:
            raise ValidationError({"repeat.every": "a cron expression has five fields: minute "
                                                   "hour day month weekday"})
        try:
            CronTrigger(**_cron_fields(every), timezone=zone)
        except ValueError as exc:
            raise ValidationError({"repeat.every": f"not a cron expression: {exc}"}) from None
    repeat = Repeat(every=every, until=until)
    if until is not None and until <= first:
        raise ValidationError({"repeat.until": "must be after the alert goes out"})
    upcoming = repeat.trigger(zone, first).get_next_fire_time(None, first)
    if upcoming is None:
        raise ValidationError({"repeat.every": "never fires" + (
            " before repeat.until" if until else "") + "; check the expression"})
    return repeat


def reminder_note(language: str, moment: datetime, zone: ZoneInfo) -> str:
    """The line that marks a repetition, with its time (so no platform sees a
    duplicate text, and readers see it is current)."""
    template = _NOTE.get(language, _NOTE["en"])
    return "\n\n" + template.format(time=moment.astimezone(zone).strftime("%H:%M"))

