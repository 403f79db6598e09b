"""Schedules JSON API under /api/v1, documented in the same OpenAPI registry as the rest."""

from __future__ import annotations

from datetime import date
from datetime import datetime
from datetime import time
from datetime import timedelta
from typing import Any
from typing import Literal

from flask import Blueprint
from flask import Response
from flask import jsonify
from flask import request
from flask.typing import ResponseReturnValue
from pydantic import Field
from sqlalchemy import select

from schedules import queries
from schedules import service
from schedules.deadlines import plan_deadlines
from schedules.ics import render_calendar
from schedules.models import JourneyPlan
from schedules.planning import Plan
from schedules.planning import StepKind
from schedules.profiles import FIELD_NAMES
from schedules.service import HoursSpec
from schedules.slots import ResourceKind
from schedules.slots import local_date
from tracker.domain.errors import TrackerError
from tracker.models import TherapyOrder
from tracker.web.api import registry
from tracker.web.auth import csrf
from tracker.web.auth import current_principal
from tracker.web.openapi import MAX_DB_ID
from tracker.web.openapi import Query
from tracker.web.openapi import Strict
from tracker.web.openapi import UtcDateTime
from tracker.web.runtime import runtime

bp = Blueprint("schedules_api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)
TAG = "schedules"


@bp.before_request
def _authenticate_and_check_csrf() -> None:
    # Same rule as the core API: sessions prove the request came from our pages.
    principal = current_principal()
    if principal.device_id is None and request.method not in ("GET", "HEAD", "OPTIONS"):
        csrf.protect()


Reason = Field(min_length=3, max_length=2000)
Code = Field(min_length=1, max_length=32)


class ResourceIn(Strict):
    kind: ResourceKind
    name: str = Field(min_length=1, max_length=120)
    product_code: str | None = Field(default=None, max_length=32)
    slot_minutes: int | None = Field(default=None, ge=5, le=24 * 60)


class ResourceOut(Strict):
    public_id: str
    site: str
    kind: str
    name: str
    product_code: str | None
    slot_minutes: int | None


class PeriodIn(Strict):
    weekday: int = Field(ge=0, le=6)
    opens: str = Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
    closes: str = Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
    capacity: int = Field(ge=0, le=1000)


class HoursIn(Strict):
    hours: list[PeriodIn] = Field(max_length=200)
    reason: str = Reason


class SyncOut(Strict):
    added: int
    removed: int
    changed: int


class ClosureIn(Strict):
    first_day: date
    last_day: date
    kind: Literal["closure", "holiday"]
    reason: str = Reason
    resource: str | None = None


class ClosureOut(Strict):
    id: int
    kind: str
    first_day: date
    last_day: date


class ProposalIn(Strict):
    earliest_collection: UtcDateTime


class BookIn(Strict):
    earliest_collection: UtcDateTime
    tentative: bool = True
    hold_hours: int = Field(default=48, ge=1, le=336)
    fingerprint: str | None = Field(default=None, max_length=64)


class StepOut(Strict):
    kind: str
    site: str
    start: UtcDateTime
    end: UtcDateTime
    deadline: UtcDateTime | None
    resource: str | None


class ExplanationOut(Strict):
    step: str
    earliest: UtcDateTime
    chosen: UtcDateTime
    message: str


class DeadlineOut(Strict):
    kind: str
    due_at: UtcDateTime
    site: str
    description: str


class ProposalOut(Strict):
    order: str
    profile_version: str
    fingerprint: str
    unconfirmed_profile_fields: list[str]
    steps: list[StepOut]
    explanations: list[ExplanationOut]
    deadlines: list[DeadlineOut]


class PlanOut(Strict):
    public_id: str
    order: str
    status: str
    held_until: UtcDateTime | None
    profile_version: str
    version: int
    steps: list[StepOut]
    explanations: list[ExplanationOut]
    deadlines: list[DeadlineOut]


class ReasonIn(Strict):
    reason: str = Reason


class MoveIn(Strict):
    step: StepKind
    new_start: UtcDateTime


class RescheduleIn(MoveIn):
    reason: str = Reason
    confirm: str = Field(min_length=1, max_length=64)


class ViolationOut(Strict):
    code: str
    message: str


class MoveOut(Strict):
    step: str
    old_start: UtcDateTime
    old_end: UtcDateTime
    new_start: UtcDateTime
    new_end: UtcDateTime
    moved: bool
    rebooked: bool
    snapped_from: UtcDateTime | None
    violations: list[ViolationOut]
    problem: str | None


class PreviewOut(Strict):
    plan: str
    step: str
    fingerprint: str
    moves: list[MoveOut]
    problems: list[str]


class WaitlistIn(Strict):
    urgency_category: str = Field(min_length=1, max_length=32)
    bridging_therapy_failing: bool = False
    prior_slot_cancellations: int = Field(default=0, ge=0, le=100)
    note: str = Field(default="", max_length=2000)


class WaitlistUpdateIn(Strict):
    urgency_category: str | None = Field(default=None, min_length=1, max_length=32)
    bridging_therapy_failing: bool | None = None
    prior_slot_cancellations: int | None = Field(default=None, ge=0, le=100)
    reason: str = Reason


class ComponentOut(Strict):
    name: str
    value: float
    weight: float
    contribution: float


class EntryOut(Strict):
    rank: int
    public_id: str
    order: str
    patient: str
    product: str
    inputs: dict[str, Any]
    components: list[ComponentOut]
    total: float
    policy_version: str


class WaitlistOut(Strict):
    site: str
    entries: list[EntryOut]
    policy: dict[str, Any]


class EntryRef(Strict):
    public_id: str
    status: str


class JourneyIn(Strict):
    values: dict[str, Any]
    confirmed: list[str] = Field(max_length=len(FIELD_NAMES))
    reason: str = Reason


class JourneyOut(Strict):
    code: str
    version: int
    starting_material: str
    values: dict[str, Any]
    confirmed: list[str]
    defaults_to_confirm: list[str]


class NotificationOut(Strict):
    id: int
    kind: str
    subject: str
    body: str
    plan: str | None
    order: str | None
    created_at: UtcDateTime
    read: bool


class NotificationList(Strict):
    notifications: list[NotificationOut]


class FeedOut(Strict):
    url: str


class CalendarOut(Strict):
    site: str
    timezone: str
    resources: list[dict[str, Any]]
    totals: list[dict[str, Any]]


class CalendarQuery(Query):
    start: str | None = Field(
        default=None,
        pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
        description="First local day (YYYY-MM-DD); today at the site by default.",
    )
    days: int = Field(default=7, ge=1, le=62, description="How many days.")


class SiteOut(Strict):
    code: str
    name: str
    kind: str
    timezone: str
    has_capacity: bool
    manufacturing: bool


class PlannedOrderOut(Strict):
    public_id: str
    patient: str
    product: str
    treatment_site: str
    plan: str | None
    plan_status: str | None
    infusion: UtcDateTime | None = Field(description="Booked infusion start, if planned.")


class OverviewOut(Strict):
    sites: list[SiteOut]
    orders: list[PlannedOrderOut]


class PastPlanOut(Strict):
    public_id: str
    status: str
    created_at: UtcDateTime
    ended_at: UtcDateTime | None
    reason: str | None
    profile_version: str


class WaitingOut(Strict):
    public_id: str
    position: int
    of: int
    score: float


class FlagOut(Strict):
    step: str
    code: str
    message: str


class OrderPlanOut(Strict):
    order: str
    can_plan: bool
    plan: PlanOut | None = Field(description="The live plan (held or booked), if any.")
    flags: list[FlagOut] = Field(description="Timing rules the live plan breaks.")
    history: list[PastPlanOut]
    waiting: WaitingOut | None
    urgencies: list[str]


class ProfileOut(Strict):
    code: str
    name: str
    version: int
    starting_material: str
    unconfirmed: int = Field(description="Journey numbers still waiting for confirmation.")


class ProfileList(Strict):
    profiles: list[ProfileOut]


def _now() -> datetime:
    return runtime().clock.now()


def _step_out(plan: Plan) -> list[StepOut]:
    return [
        StepOut(
            kind=s.kind.value,
            site=s.site,
            start=s.start,
            end=s.end,
            deadline=s.deadline,
            resource=s.resource_id,
        )
        for s in plan.steps
    ]


def _explanations_out(plan: Plan) -> list[ExplanationOut]:
    return [
        ExplanationOut(step=e.step.value, earliest=e.earliest, chosen=e.chosen, message=e.message)
        for e in plan.explanations
    ]


def _deadlines_out(plan: Plan) -> list[DeadlineOut]:
    return [
        DeadlineOut(kind=d.kind.value, due_at=d.due_at, site=d.site, description=d.description)
        for d in plan_deadlines(plan)
    ]


def _plan_out(uow: Any, public_id: str) -> dict[str, Any]:
    row = uow.session.scalar(select(JourneyPlan).where(JourneyPlan.public_id == public_id))
    if row is None:
        raise TrackerError("not_found", f"no plan {public_id}")
    order_id = uow.session.scalar(
        select(TherapyOrder.public_id).where(TherapyOrder.id == row.order_id)
    )
    order = queries.visible_order(uow.session, current_principal(), order_id)
    plan = service.stored_plan(uow.session, row)
    return PlanOut(
        public_id=row.public_id,
        order=order.public_id,
        status=row.status,
        held_until=row.held_until,
        profile_version=row.profile_version,
        version=row.version_id,
        steps=_step_out(plan),
        explanations=_explanations_out(plan),
        deadlines=_deadlines_out(plan),
    ).model_dump(mode="json")


def _parse_time(value: str) -> time:
    hour, minute = value.split(":")
    return time(int(hour), int(minute))


@registry.route(
    bp,
    "/sites/<site_code>/resources",
    "POST",
    summary="Define a bookable resource at a site (administrators)",
    body=ResourceIn,
    response=ResourceOut,
    status=201,
    tag=TAG,
)
def create_resource(site_code: str, payload: ResourceIn) -> ResponseReturnValue:
    with runtime().uow() as uow:
        resource = service.define_resource(
            uow=uow,
            principal=current_principal(),
            site_code=site_code,
            kind=payload.kind,
            name=payload.name,
            product_code=payload.product_code,
            slot_minutes=payload.slot_minutes,
            now=_now(),
        )
        uow.commit()
        out = ResourceOut(
            public_id=resource.public_id,
            site=site_code,
            kind=resource.kind,
            name=resource.name,
            product_code=resource.product_code,
            slot_minutes=resource.slot_minutes,
        )
    return jsonify(out.model_dump()), 201


@registry.route(
    bp,
    "/resources/<resource_id>/hours",
    "PUT",
    summary="Replace a resource's weekly hours in site-local time; future windows re-expand",
    body=HoursIn,
    response=SyncOut,
    errors=(400, 401, 403, 404, 409),
    tag=TAG,
)
def put_hours(resource_id: str, payload: HoursIn) -> ResponseReturnValue:
    hours = [
        HoursSpec(p.weekday, _parse_time(p.opens), _parse_time(p.closes), p.capacity)
        for p in payload.hours
    ]
    with runtime().uow() as uow:
        result = service.set_weekly_hours(
            uow=uow,
            principal=current_principal(),
            resource_public_id=resource_id,
            hours=hours,
            reason=payload.reason,
            now=_now(),
        )
        uow.commit()
    return jsonify(
        SyncOut(added=result.added, removed=result.removed, changed=result.changed).model_dump()
    )


@registry.route(
    bp,
    "/sites/<site_code>/closures",
    "POST",
    summary="Close a site or one resource on local dates (refused if bookings hold them)",
    body=ClosureIn,
    response=ClosureOut,
    status=201,
    errors=(400, 401, 403, 404, 409),
    tag=TAG,
)
def create_closure(site_code: str, payload: ClosureIn) -> ResponseReturnValue:
    with runtime().uow() as uow:
        closure = service.add_closure(
            uow=uow,
            principal=current_principal(),
            site_code=site_code,
            first_day=payload.first_day,
            last_day=payload.last_day,
            kind=payload.kind,
            reason=payload.reason,
            resource_public_id=payload.resource,
            now=_now(),
        )
        uow.commit()
        out = ClosureOut(
            id=closure.id,
            kind=closure.kind,
            first_day=closure.first_day,
            last_day=closure.last_day,
        )
    return jsonify(out.model_dump(mode="json")), 201


@registry.route(
    bp,
    "/sites/<site_code>/calendar",
    "GET",
    summary="Capacity, use and bookings per resource and local day",
    response=CalendarOut,
    query=CalendarQuery,
    tag=TAG,
)
def get_calendar(site_code: str, params: CalendarQuery) -> ResponseReturnValue:
    try:
        start = date.fromisoformat(params.start) if params.start is not None else None
    except ValueError as exc:
        raise TrackerError("invalid_request", "start is a real date, YYYY-MM-DD") from exc
    days = params.days
    with runtime().uow() as uow:
        site = queries.visible_site(uow.session, current_principal(), site_code)
        first = start or local_date(_now(), site.timezone)
        cal = queries.site_calendar(
            uow.session, current_principal(), site_code=site_code, day=first, days=days
        )
    resources = [
        {
            "public_id": r["public_id"],
            "name": r["name"],
            "kind": r["kind"],
            "product": r["product"],
            "days": [
                {
                    "date": c["date"].isoformat(),
                    "capacity": c["capacity"],
                    "used": c["used"],
                    "windows": [
                        {
                            "start": w["starts_at"].isoformat(),
                            "end": w["ends_at"].isoformat(),
                            "capacity": w["capacity"],
                            "used": w["used"],
                            "bookings": [
                                {k: b[k] for k in ("booking", "plan", "order", "tentative")}
                                for b in w["bookings"]
                            ],
                        }
                        for w in c["windows"]
                    ],
                }
                for c in r["cells"]
            ],
        }
        for r in cal["resources"]
    ]
    totals = [
        {"date": t["date"].isoformat(), "capacity": t["capacity"], "used": t["used"]}
        for t in cal["totals"]
    ]
    return jsonify(
        CalendarOut(
            site=site_code, timezone=cal["site"]["timezone"], resources=resources, totals=totals
        ).model_dump()
    )


@registry.route(
    bp,
    "/orders/<public_id>/plan-proposals",
    "POST",
    summary="Propose the earliest feasible journey, with why each later date was chosen",
    body=ProposalIn,
    response=ProposalOut,
    errors=(400, 401, 403, 404, 409),
    tag=TAG,
)
def propose(public_id: str, payload: ProposalIn) -> ResponseReturnValue:
    with runtime().uow() as uow:
        proposal = service.propose_journey(
            uow=uow,
            principal=current_principal(),
            order_public_id=public_id,
            earliest_collection=payload.earliest_collection,
            now=_now(),
        )
    plan = proposal.plan
    out = ProposalOut(
        order=public_id,
        profile_version=plan.profile_version,
        fingerprint=proposal.fingerprint,
        unconfirmed_profile_fields=list(proposal.unconfirmed),
        steps=_step_out(plan),
        explanations=_explanations_out(plan),
        deadlines=_deadlines_out(plan),
    )
    return jsonify(out.model_dump(mode="json"))


@registry.route(
    bp,
    "/orders/<public_id>/plans",
    "POST",
    summary="Book (or tentatively hold) collection, manufacturing and infusion: all or nothing",
    body=BookIn,
    response=PlanOut,
    status=201,
    errors=(400, 401, 403, 404, 409),
    tag=TAG,
)
def book(public_id: str, payload: BookIn) -> ResponseReturnValue:
    with runtime().uow() as uow:
        row = service.book_plan(
            uow=uow,
            principal=current_principal(),
            order_public_id=public_id,
            earliest_collection=payload.earliest_collection,
            tentative=payload.tentative,
            hold_for=timedelta(hours=payload.hold_hours),
            expected_fingerprint=payload.fingerprint,
            now=_now(),
        )
        uow.commit()
        out = _plan_out(uow, row.public_id)
    return jsonify(out), 201


@registry.route(bp, "/plans/<plan_id>", "GET", summary="A journey plan", response=PlanOut, tag=TAG)
def get_plan(plan_id: str) -> ResponseReturnValue:
    with runtime().uow() as uow:
        return jsonify(_plan_out(uow, plan_id))


@registry.route(
    bp,
    "/plans/<plan_id>/confirmation",
    "POST",
    summary="Confirm a tentative hold before it expires",
    response=PlanOut,
    errors=(400, 401, 403, 404, 409),
    tag=TAG,
)
def confirm(plan_id: str) -> ResponseReturnValue:
    with runtime().uow() as uow:
        service.confirm_plan(
            uow=uow, principal=current_principal(), plan_public_id=plan_id, now=_now()
        )
        uow.commit()
        return jsonify(_plan_out(uow, plan_id))


@registry.route(
    bp,
    "/plans/<plan_id>/cancellation",
    "POST",
    summary="Cancel a plan and release its capacity (reason required)",
    body=ReasonIn,
    response=PlanOut,
    errors=(400, 401, 403, 404, 409),
    tag=TAG,
)
def cancel(plan_id: str, payload: ReasonIn) -> ResponseReturnValue:
    with runtime().uow() as uow:
        service.cancel_plan(
            uow=uow,
            principal=current_principal(),
            plan_public_id=plan_id,
            reason=payload.reason,
            now=_now(),
        )
        uow.commit()
        return jsonify(_plan_out(uow, plan_id))


def _preview_out(preview: service.ReschedulePreview) -> dict[str, Any]:
    return PreviewOut(
        plan=preview.plan_public_id,
        step=preview.step.value,
        fingerprint=preview.fingerprint,
        moves=[
            MoveOut(
                step=m.step.value,
                old_start=m.old_start,
                old_end=m.old_end,
                new_start=m.new_start,
                new_end=m.new_end,
                moved=m.moved,
                rebooked=m.rebooked,
                snapped_from=m.snapped_from,
                violations=[ViolationOut(code=v.code, message=v.message) for v in m.violations],
                problem=m.problem,
            )
            for m in preview.replan.moves
        ],
        problems=list(preview.replan.problems),
    ).model_dump(mode="json")


@registry.route(
    bp,
    "/plans/<plan_id>/reschedule-previews",
    "POST",
    summary="Show the knock-on effects of moving one step (nothing changes)",
    body=MoveIn,
    response=PreviewOut,
    errors=(400, 401, 403, 404, 409),
    tag=TAG,
)
def preview_move(plan_id: str, payload: MoveIn) -> ResponseReturnValue:
    with runtime().uow() as uow:
        preview = service.preview_reschedule(
            uow=uow,
            principal=current_principal(),
            plan_public_id=plan_id,
            step=payload.step,
            new_start=payload.new_start,
            now=_now(),
        )
        return jsonify(_preview_out(preview))


@registry.route(
    bp,
    "/plans/<plan_id>/reschedules",
    "POST",
    summary="Apply a previewed move: confirm with its fingerprint and give a reason",
    body=RescheduleIn,
    response=PlanOut,
    errors=(400, 401, 403, 404, 409),
    tag=TAG,
)
def reschedule(plan_id: str, payload: RescheduleIn) -> ResponseReturnValue:
    with runtime().uow() as uow:
        service.reschedule_step(
            uow=uow,
            principal=current_principal(),
            plan_public_id=plan_id,
            step=payload.step,
            new_start=payload.new_start,
            reason=payload.reason,
            confirm=payload.confirm,
            now=_now(),
        )
        uow.commit()
        return jsonify(_plan_out(uow, plan_id))


@registry.route(
    bp,
    "/sites/<site_code>/waitlist",
    "GET",
    summary="A manufacturing site's waitlist with each score's inputs and components",
    response=WaitlistOut,
    tag=TAG,
)
def get_waitlist(site_code: str) -> ResponseReturnValue:
    with runtime().uow() as uow:
        data = queries.waitlist(uow.session, current_principal(), site_code=site_code, now=_now())
    entries = [
        EntryOut(**{k: e[k] for k in EntryOut.model_fields if k != "components"},
                 components=[ComponentOut(**c) for c in e["components"]])
        for e in data["entries"]
    ]  # fmt: skip
    return jsonify(WaitlistOut(site=site_code, entries=entries, policy=data["policy"]).model_dump())


@registry.route(
    bp,
    "/orders/<public_id>/waitlist",
    "POST",
    summary="Put an order on its manufacturing site's waitlist",
    body=WaitlistIn,
    response=EntryRef,
    status=201,
    errors=(400, 401, 403, 404, 409),
    tag=TAG,
)
def join_waitlist(public_id: str, payload: WaitlistIn) -> ResponseReturnValue:
    with runtime().uow() as uow:
        entry = service.join_waitlist(
            uow=uow,
            principal=current_principal(),
            order_public_id=public_id,
            urgency_category=payload.urgency_category,
            bridging_therapy_failing=payload.bridging_therapy_failing,
            prior_slot_cancellations=payload.prior_slot_cancellations,
            note=payload.note,
            now=_now(),
        )
        uow.commit()
        out = EntryRef(public_id=entry.public_id, status=entry.status)
    return jsonify(out.model_dump()), 201


@registry.route(
    bp,
    "/waitlist/<entry_id>",
    "PATCH",
    summary="Change a waitlist entry's score inputs (reason required)",
    body=WaitlistUpdateIn,
    response=EntryRef,
    errors=(400, 401, 403, 404, 409),
    tag=TAG,
)
def update_waitlist(entry_id: str, payload: WaitlistUpdateIn) -> ResponseReturnValue:
    with runtime().uow() as uow:
        entry = service.update_waitlist_entry(
            uow=uow,
            principal=current_principal(),
            entry_public_id=entry_id,
            urgency_category=payload.urgency_category,
            bridging_therapy_failing=payload.bridging_therapy_failing,
            prior_slot_cancellations=payload.prior_slot_cancellations,
            reason=payload.reason,
            now=_now(),
        )
        uow.commit()
        out = EntryRef(public_id=entry.public_id, status=entry.status)
    return jsonify(out.model_dump())


def _journey_out(data: dict[str, Any]) -> dict[str, Any]:
    return JourneyOut(
        code=data["code"],
        version=data["version"],
        starting_material=data["starting_material"],
        values=data["values"],
        confirmed=data["confirmed"],
        defaults_to_confirm=data["defaults_to_confirm"],
    ).model_dump()


@registry.route(
    bp,
    "/product-profiles/<code>/journey",
    "GET",
    summary="A product profile's journey numbers; unconfirmed ones are defaults to confirm",
    response=JourneyOut,
    tag=TAG,
)
def get_journey(code: str) -> ResponseReturnValue:
    current_principal()
    with runtime().uow() as uow:
        return jsonify(_journey_out(queries.profile_journey(uow.session, code)))


@registry.route(
    bp,
    "/product-profiles/<code>/journey",
    "PUT",
    summary="Edit journey numbers: saves a new profile version (administrators)",
    body=JourneyIn,
    response=JourneyOut,
    tag=TAG,
)
def put_journey(code: str, payload: JourneyIn) -> ResponseReturnValue:
    with runtime().uow() as uow:
        service.update_journey_profile(
            uow=uow,
            principal=current_principal(),
            code=code,
            values=payload.values,
            confirmed=payload.confirmed,
            reason=payload.reason,
            now=_now(),
        )
        uow.commit()
        return jsonify(_journey_out(queries.profile_journey(uow.session, code)))


@registry.route(
    bp, "/notifications", "GET", summary="Your in-app notifications", response=NotificationList,
    tag=TAG,
)  # fmt: skip
def list_notifications() -> ResponseReturnValue:
    principal = current_principal()
    with runtime().uow() as uow:
        rows = queries.notifications(uow.session, principal.user_id)
    return jsonify(
        NotificationList(notifications=[NotificationOut(**r) for r in rows]).model_dump(mode="json")
    )


@registry.route(
    bp,
    "/notifications/<notification_id>/read",
    "POST",
    summary="Mark one of your notifications as read",
    response=NotificationOut,
    tag=TAG,
)
def read_notification(notification_id: str) -> ResponseReturnValue:
    principal = current_principal()
    if not notification_id.isdigit() or int(notification_id) > MAX_DB_ID:
        raise TrackerError("not_found", f"no notification {notification_id}")
    with runtime().uow() as uow:
        service.mark_notification_read(
            uow=uow, principal=principal, notification_id=int(notification_id), now=_now()
        )
        uow.commit()
        row = next(
            r for r in queries.notifications(uow.session, principal.user_id)
            if r["id"] == int(notification_id)
        )  # fmt: skip
    return jsonify(NotificationOut(**row).model_dump(mode="json"))


@registry.route(
    bp,
    "/sites/<site_code>/calendar-feeds",
    "POST",
    summary="Issue a secret ICS feed URL for a site (shown once)",
    response=FeedOut,
    status=201,
    tag=TAG,
)
def create_feed(site_code: str) -> ResponseReturnValue:
    rt = runtime()
    with rt.uow() as uow:
        token = service.issue_calendar_feed(
            uow=uow, principal=current_principal(), site_code=site_code, now=_now()
        )
        uow.commit()
    url = f"{rt.settings.public_base_url.rstrip('/')}/schedules/feeds/{token}.ics"
    return jsonify(FeedOut(url=url).model_dump()), 201


@registry.route(
    bp,
    "/schedule-overview",
    "GET",
    summary="Sites you work at (with or without capacity) and active orders with plan status",
    response=OverviewOut,
    tag=TAG,
)
def overview() -> ResponseReturnValue:
    with runtime().uow() as uow:
        data = queries.overview(uow.session, current_principal())
    orders = [
        {k: v for k, v in o.items() if k not in ("infusion", "infusion_at")}
        | {"infusion": o["infusion_at"]}
        for o in data["orders"]
    ]
    out = OverviewOut.model_validate({"sites": data["sites"], "orders": orders}, strict=False)
    return jsonify(out.model_dump(mode="json"))


@registry.route(
    bp,
    "/orders/<public_id>/plan",
    "GET",
    summary="An order's live plan, the rules it breaks, earlier plans and its waitlist place",
    response=OrderPlanOut,
    tag=TAG,
)
def get_order_plan(public_id: str) -> ResponseReturnValue:
    principal = current_principal()
    with runtime().uow() as uow:
        data = queries.order_plan(uow.session, principal, public_id, _now())
        live = data["plan"]
        out = OrderPlanOut(
            order=public_id,
            can_plan=data["can_plan"],
            plan=PlanOut.model_validate(_plan_out(uow, live["public_id"]), strict=False)
            if live
            else None,
            flags=[FlagOut(**f) for f in live["flags"]] if live else [],
            history=[
                PastPlanOut.model_validate(h, strict=False)
                for h in queries.plan_history(uow.session, principal, public_id)
                if live is None or h["public_id"] != live["public_id"]
            ],
            waiting=WaitingOut(**data["waiting"]) if data["waiting"] else None,
            urgencies=data["urgencies"],
        )
    return jsonify(out.model_dump(mode="json"))


@registry.route(
    bp,
    "/product-profiles",
    "GET",
    summary="Active product profiles, with how many journey numbers await confirmation",
    response=ProfileList,
    tag=TAG,
)
def list_profiles() -> ResponseReturnValue:
    current_principal()
    with runtime().uow() as uow:
        rows = queries.profiles(uow.session)
    return jsonify(ProfileList(profiles=[ProfileOut(**r) for r in rows]).model_dump())


@registry.route(
    bp,
    "/sites/<site_code>/calendar.ics",
    "GET",
    summary="A site's bookings as an RFC 5545 calendar (opaque plan and order references)",
    produces=("text/calendar",),
    tag=TAG,
)
def site_calendar_ics(site_code: str) -> ResponseReturnValue:
    rt = runtime()
    with rt.uow() as uow:
        site = queries.visible_site(uow.session, current_principal(), site_code)
        events = queries.feed_events(
            uow.session, site, now=_now(), base_url=rt.settings.public_base_url
        )
        body = render_calendar(name=f"{site.name} schedule", events=events, now=_now())
    return Response(
        body,
        headers={
            "Content-Type": "text/calendar; charset=utf-8",
            "Content-Disposition": f'inline; filename="{site_code}.ics"',
            "Cache-Control": "no-store",
        },
    )
