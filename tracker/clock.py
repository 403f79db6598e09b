"""Clocks and time-zone helpers. Services receive ``now`` or a Clock; only entrypoints read time."""

from __future__ import annotations

from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import Protocol
from zoneinfo import ZoneInfo


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock for tests and demo data; moves only when told to."""

    def __init__(self, at: datetime) -> None:
        self._at = require_aware(at)

    def now(self) -> datetime:
        return self._at

    def advance(self, delta: timedelta) -> None:
        self._at += delta


def require_aware(value: datetime) -> datetime:
    """Return ``value`` in UTC; refuse naive datetimes."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("naive datetime refused: give a time zone")
    return value.astimezone(UTC)


def to_local(value: datetime, tz: str) -> datetime:
    """Show an aware datetime in a site's zone (edges only)."""
    return require_aware(value).astimezone(ZoneInfo(tz))
