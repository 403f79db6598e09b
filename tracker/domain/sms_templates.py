"""SMS texts for couriers and on-call staff.

Plain SMS is unencrypted and Twilio keeps bodies, so a text may carry only what DOMAIN.md §6
allows: an opaque job code, business addresses, time windows and the last digits of a shipper
or seal number. ``SmsContext`` has no field for anything else, so a template cannot reach
patient data even by mistake; a test renders every template with realistic data to be sure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

MAX_SEGMENTS_CHARS = 459  # three GSM-7 segments; longer texts are split and may arrive out of order


@dataclass(frozen=True, slots=True)
class Place:
    """A business location: facility name and street address."""

    name: str
    address: str

    def __str__(self) -> str:
        return f"{self.name}, {self.address}" if self.address else self.name


@dataclass(frozen=True, slots=True)
class SmsContext:
    job_code: str
    ack_code: str
    pickup: Place | None = None
    dropoff: Place | None = None
    site: Place | None = None  # where it is when no shipment is involved (storage)
    # Times are pre-formatted in the site's zone by the caller, e.g. "Mar 02 09:00 EST".
    window_start: str | None = None
    window_end: str | None = None
    due: str | None = None
    shipper_last4: str | None = None
    seal_last4: str | None = None
    escalated: bool = False


def _route(ctx: SmsContext) -> str:
    parts = []
    if ctx.pickup:
        parts.append(f"from {ctx.pickup}")
    if ctx.dropoff:
        parts.append(f"to {ctx.dropoff}")
    if not parts and ctx.site:
        parts.append(f"at {ctx.site}")
    return (" " + " ".join(parts)) if parts else ""


def _kit(ctx: SmsContext) -> str:
    bits = []
    if ctx.shipper_last4:
        bits.append(f"shipper ..{ctx.shipper_last4}")
    if ctx.seal_last4:
        bits.append(f"seal ..{ctx.seal_last4}")
    return f" ({', '.join(bits)})" if bits else ""


def _head(ctx: SmsContext) -> str:
    return ("ESCALATED: " if ctx.escalated else "") + f"Job {ctx.job_code}"


def _ack(ctx: SmsContext) -> str:
    return f" Reply ACK {ctx.ack_code} when you have it in hand."


def temperature_alarm(ctx: SmsContext) -> str:
    return (
        f"{_head(ctx)}{_kit(ctx)}: temperature alarm{_route(ctx)}. Check the container and "
        f"keep it closed.{_ack(ctx)}"
    )


def logger_silent(ctx: SmsContext) -> str:
    return (
        f"{_head(ctx)}{_kit(ctx)}: the temperature logger stopped reporting{_route(ctx)}. "
        f"Check it is on and in place.{_ack(ctx)}"
    )


def shipper_hold(ctx: SmsContext) -> str:
    return (
        f"{_head(ctx)}{_kit(ctx)}: shipper hold time runs out {ctx.due or 'soon'}, before the "
        f"planned arrival plus margin{_route(ctx)}. Call dispatch.{_ack(ctx)}"
    )


def pickup_warning(ctx: SmsContext) -> str:
    return (
        f"{_head(ctx)}{_kit(ctx)}: pickup due by {ctx.due}{_route(ctx)}. "
        f"Window {ctx.window_start or '-'} to {ctx.window_end or ctx.due}.{_ack(ctx)}"
    )


def pickup_overdue(ctx: SmsContext) -> str:
    return f"{_head(ctx)}{_kit(ctx)}: pickup OVERDUE since {ctx.due}{_route(ctx)}.{_ack(ctx)}"


def delivery_warning(ctx: SmsContext) -> str:
    return f"{_head(ctx)}{_kit(ctx)}: delivery due by {ctx.due}{_route(ctx)}.{_ack(ctx)}"


def delivery_overdue(ctx: SmsContext) -> str:
    return f"{_head(ctx)}{_kit(ctx)}: delivery OVERDUE since {ctx.due}{_route(ctx)}.{_ack(ctx)}"


def deadline_warning(ctx: SmsContext) -> str:
    return (
        f"{_head(ctx)}{_kit(ctx)}: a handoff deadline falls due {ctx.due}{_route(ctx)}.{_ack(ctx)}"
    )


def deadline_overdue(ctx: SmsContext) -> str:
    return (
        f"{_head(ctx)}{_kit(ctx)}: a handoff deadline passed at {ctx.due}{_route(ctx)}.{_ack(ctx)}"
    )


def ack_received(ctx: SmsContext) -> str:
    return f"Job {ctx.job_code}: acknowledged, thank you."


def ack_not_found(ctx: SmsContext) -> str:
    return "No open alert matches that code for this phone. Reply with ACK and the 4-digit code."


def help_text(ctx: SmsContext) -> str:
    return "Cell therapy courier alerts. Reply ACK and the code to confirm, STOP to opt out."


TEMPLATES: dict[str, Callable[[SmsContext], str]] = {
    "temperature_alarm": temperature_alarm,
    "logger_silent": logger_silent,
    "shipper_hold": shipper_hold,
    "pickup_warning": pickup_warning,
    "pickup_overdue": pickup_overdue,
    "delivery_warning": delivery_warning,
    "delivery_overdue": delivery_overdue,
    "deadline_warning": deadline_warning,
    "deadline_overdue": deadline_overdue,
    "ack_received": ack_received,
    "ack_not_found": ack_not_found,
    "help": help_text,
}


def render(name: str, ctx: SmsContext) -> str:
    """Render one template; unknown names fail loudly (they are chosen in code, not by users)."""
    text = TEMPLATES[name](ctx)
    return text[:MAX_SEGMENTS_CHARS]
