"""RFC 5545 calendar feeds. Pure: standard library only.

Rules applied (RFC 5545 sections in brackets):

* Lines end with CRLF and are folded so that no line exceeds 75 octets, not counting the line
  break; a continuation line starts with one space, which counts towards its 75 [3.1]. Folding
  never splits a UTF-8 character.
* TEXT values escape backslash, semicolon, comma and newline [3.3.11].
* Every DATE-TIME is written in UTC with the ``Z`` suffix (form #2) [3.3.5], so no VTIMEZONE is
  needed and no client guesses a zone.
* Each VEVENT carries UID, DTSTAMP, DTSTART and DTEND [3.6.1]; SEQUENCE grows when the event
  changes so that clients replace their copy [3.8.7.4].

Callers put only opaque references in summaries and descriptions: a calendar feed leaves the
system and must never carry patient identity.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime

from schedules.slots import require_utc

PRODID = "-//COI tracker//Schedules//EN"
STATUSES = frozenset({"TENTATIVE", "CONFIRMED", "CANCELLED"})


@dataclass(frozen=True)
class IcsEvent:
    uid: str
    start: datetime
    end: datetime
    summary: str
    description: str = ""
    status: str = "CONFIRMED"
    sequence: int = 0
    categories: tuple[str, ...] = ()
    url: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", require_utc(self.start, "event start"))
        object.__setattr__(self, "end", require_utc(self.end, "event end"))
        if self.end <= self.start:
            raise ValueError("event end must be after its start")
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {sorted(STATUSES)}")
        if not self.uid or any(c in self.uid for c in "\r\n"):
            raise ValueError("uid must be a non-empty single line")


def escape_text(value: str) -> str:
    """Escape a TEXT value (backslash first, then ; , and line breaks)."""
    value = value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
    return value.replace("\r\n", "\\n").replace("\r", "\\n").replace("\n", "\\n")


def fold(line: str, limit: int = 75) -> str:
    """Fold one content line into CRLF-joined chunks of at most ``limit`` octets."""
    chunks: list[str] = []
    current = ""
    size = 0
    budget = limit
    for char in line:
        width = len(char.encode("utf-8"))
        if size + width > budget:
            chunks.append(current)
            current, size = " ", 1  # the continuation space is part of the next line
            budget = limit
        current += char
        size += width
    chunks.append(current)
    return "\r\n".join(chunks)


def format_utc(instant: datetime) -> str:
    """DATE-TIME form #2: ``YYYYMMDDTHHMMSSZ``."""
    return require_utc(instant).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def render_calendar(*, name: str, events: Iterable[IcsEvent], now: datetime) -> bytes:
    """Return a VCALENDAR (UTF-8, CRLF, folded) publishing ``events``."""
    stamp = format_utc(now)
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{PRODID}",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        f"X-WR-CALNAME:{escape_text(name)}",
    ]
    for event in events:
        lines += [
            "BEGIN:VEVENT",
            f"UID:{event.uid}",
            f"DTSTAMP:{stamp}",
            f"DTSTART:{format_utc(event.start)}",
            f"DTEND:{format_utc(event.end)}",
            f"SUMMARY:{escape_text(event.summary)}",
        ]
        if event.description:
            lines.append(f"DESCRIPTION:{escape_text(event.description)}")
        if event.categories:
            lines.append("CATEGORIES:" + ",".join(escape_text(c) for c in event.categories))
        if event.url:
            lines.append(f"URL:{event.url}")
        lines += [f"STATUS:{event.status}", f"SEQUENCE:{event.sequence}", "TRANSP:OPAQUE"]
        lines.append("END:VEVENT")
    lines.append("END:VCALENDAR")
    return ("".join(fold(line) + "\r\n" for line in lines)).encode("utf-8")
