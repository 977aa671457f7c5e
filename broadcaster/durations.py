"""ISO 8601 durations as the press office writes them ("PT12H", "P1DT6H", "PT30M").

Only days, hours, minutes and seconds: months and years have no fixed length, and
no alert lasts that long. Hand-written because the subset is ten lines and a
dependency for it would be heavier than the code.
"""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION = re.compile(
    r"^P(?:(?P<days>\d+)D)?(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?$"
)


def parse_duration(text: str) -> timedelta:
    """Parse "PT6H" and friends; ValueError with an example when it is not one."""
    match = _DURATION.match(text.strip().upper())
    if not match or text.strip().upper() in ("P", "PT") or text.strip().upper().endswith("T"):
        raise ValueError(f"{text!r} is not an ISO 8601 duration like PT12H or P1DT6H")
    parts = {name: int(value) for name, value in match.groupdict().items() if value}
    duration = timedelta(**parts)
    if duration <= timedelta(0):
        raise ValueError(f"{text!r} is zero; give a positive duration like PT12H")
    return duration


def format_duration(duration: timedelta) -> str:
    """The inverse of parse_duration, for showing a duration back."""
    seconds = int(duration.total_seconds())
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    time_part = "".join(
        f"{value}{unit}" for value, unit in ((hours, "H"), (minutes, "M"), (seconds, "S")) if value
    )
    return "P" + (f"{days}D" if days else "") + (f"T{time_part}" if time_part else "")
