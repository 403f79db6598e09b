"""The SMS outbox dispatcher, delivery status callbacks and inbound replies.

Dispatch, in order (each step its own short transaction, the provider call outside any):
1. Recover: a row left 'sending' or 'checking' longer than the lease belonged to a worker that
   died mid-call; it goes to 'verify', never straight back to 'pending'.
2. Verify: look the message up at the provider; found -> 'sent', not found -> 'pending' (safe
   to resend), lookup failed -> try again later, then 'unknown' (and the alert escalates).
3. Send: claim due 'pending' rows with FOR UPDATE SKIP LOCKED (two dispatchers never claim
   one row), mark them 'sending', commit, call the provider, record the outcome:
   429 -> 'pending' with backoff; 5xx/timeout -> 'verify'; permanent refusal -> 'failed'.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session
from sqlalchemy.orm import sessionmaker

from tracker.adapters.sms import UNSUBSCRIBED
from tracker.adapters.sms import SendResult
from tracker.adapters.sms import SmsSender
from tracker.adapters.sms import SmsSendError
from tracker.clock import require_aware
from tracker.domain import alerting
from tracker.domain.alerting import parse_reply
from tracker.domain.sms_templates import SmsContext
from tracker.domain.sms_templates import render
from tracker.models import Alert
from tracker.models import SmsInbound
from tracker.models import SmsOptOut
from tracker.models import SmsOutbox
from tracker.models import SmsStatusEvent
from tracker.models import User
from tracker.services import alerts
from tracker.services import custody
from tracker.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

BATCH = 20
VERIFY_DELAY = timedelta(seconds=2)
LIVE_STATES = ("sent", "sending", "verify", "checking", "unknown")


@dataclass(frozen=True)
class Claimed:
    id: int
    to_phone: str
    body: str
    created_at: datetime


@dataclass
class DispatchReport:
    sent: int = 0
    retried: int = 0
    to_verify: int = 0
    found: int = 0
    failed: int = 0
    suppressed: int = 0
    recovered: int = 0
    errors: list[str] = field(default_factory=list)


def set_opt_out(
    session: Session, *, phone: str, opted_out: bool, source: str, now: datetime
) -> None:
    """Record STOP (or START) for a number; staff see it on the alerts page."""
    row = session.get(SmsOptOut, phone)
    if row is None:
        session.add(SmsOptOut(phone=phone, opted_out=opted_out, source=source, changed_at=now))
    else:
        row.opted_out, row.source, row.changed_at = opted_out, source, now
    session.flush()


def _claim(
    session_factory: sessionmaker[Session],
    *,
    state: str,
    to_state: str,
    now: datetime,
    worker: str,
    report: DispatchReport,
) -> list[Claimed]:
    with UnitOfWork(session_factory) as uow:
        rows = list(
            uow.session.scalars(
                select(SmsOutbox)
                .where(SmsOutbox.state == state, SmsOutbox.next_attempt_at <= now)
                .order_by(SmsOutbox.id)
                .limit(BATCH)
                .with_for_update(of=SmsOutbox, skip_locked=True)
            )
        )
        claimed = []
        for row in rows:
            if state == "pending" and alerts.is_opted_out(uow.session, row.to_phone):
                row.state, row.last_error = "suppressed", "recipient opted out (STOP)"
                report.suppressed += 1
                if row.alert_id:
                    alerts.escalate_now(uow.session, row.alert_id, now)
                continue
            row.state, row.claimed_at, row.claimed_by = to_state, now, worker
            if to_state == "sending":
                row.attempts += 1
            claimed.append(Claimed(row.id, row.to_phone, row.body, row.created_at))
        uow.commit()
    return claimed


def recover_stale(*, uow: UnitOfWork, now: datetime, lease: timedelta) -> int:
    """Rows claimed by a worker that stopped answering go to 'verify' (they may have gone)."""
    result = uow.session.execute(
        update(SmsOutbox)
        .where(
            SmsOutbox.state.in_(("sending", "checking")),
            SmsOutbox.claimed_at < now - lease,
        )
        .values(state="verify", next_attempt_at=now, last_error="dispatcher lease expired")
        .execution_options(synchronize_session=False)
    )
    uow.commit()
    return int(getattr(result, "rowcount", 0) or 0)


def _apply_status(row: SmsOutbox, status: str) -> None:
    if alerting.status_moves_forward(row.twilio_status, status):
        row.twilio_status = status


def _mark_sent(session: Session, row: SmsOutbox, result: SendResult, now: datetime) -> None:
    row.state, row.sid, row.sent_at, row.last_error = "sent", result.sid, now, None
    _apply_status(row, result.status)
    # A status callback can beat our own commit; apply any that arrived first.
    for status, code in session.execute(
        select(SmsStatusEvent.status, SmsStatusEvent.error_code).where(
            SmsStatusEvent.message_sid == result.sid
        )
    ):
        _after_status(session, row, status, code, now)


def _after_status(
    session: Session, row: SmsOutbox, status: str, code: int | None, now: datetime
) -> None:
    _apply_status(row, status)
    if status in alerting.FAILED_DELIVERY:
        row.error_code = code
        if code == UNSUBSCRIBED:
            set_opt_out(
                session, phone=row.to_phone, opted_out=True, source="carrier_error", now=now
            )
        if row.alert_id:
            alerts.escalate_now(session, row.alert_id, now)


def _finish_send(
    session_factory: sessionmaker[Session],
    job: Claimed,
    outcome: SendResult | SmsSendError,
    now: datetime,
    worker: str,
    report: DispatchReport,
) -> None:
    with UnitOfWork(session_factory) as uow:
        session = uow.session
        row = session.scalar(
            select(SmsOutbox).where(SmsOutbox.id == job.id).with_for_update(of=SmsOutbox)
        )
        assert row is not None
        if isinstance(outcome, SendResult):
            if row.state != "sent":
                _mark_sent(session, row, outcome, now)
                report.sent += 1
            uow.commit()
            return
        row.last_error = outcome.message[:500]
        row.error_code = outcome.code
        if row.state != "sending" or row.claimed_by != worker:
            uow.commit()  # our lease ran out and another dispatcher owns the row now
            return
        if outcome.outcome == "retry" and row.attempts < alerting.MAX_SEND_ATTEMPTS:
            row.state = "pending"
            row.next_attempt_at = now + alerting.retry_delay(row.attempts)
            report.retried += 1
        elif outcome.outcome == "maybe_sent" and row.attempts < alerting.MAX_SEND_ATTEMPTS:
            row.state, row.next_attempt_at = "verify", now + VERIFY_DELAY
            report.to_verify += 1
        else:
            row.state = "failed"
            report.failed += 1
            if outcome.code == UNSUBSCRIBED:
                row.state = "suppressed"
                set_opt_out(
                    session, phone=row.to_phone, opted_out=True, source="carrier_error", now=now
                )
            if row.alert_id:
                alerts.escalate_now(session, row.alert_id, now)
        uow.commit()


def _finish_verify(
    session_factory: sessionmaker[Session],
    job: Claimed,
    found: SendResult | None | SmsSendError,
    now: datetime,
    worker: str,
    report: DispatchReport,
) -> None:
    with UnitOfWork(session_factory) as uow:
        session = uow.session
        row = session.scalar(
            select(SmsOutbox).where(SmsOutbox.id == job.id).with_for_update(of=SmsOutbox)
        )
        assert row is not None
        if row.state != "checking" or row.claimed_by != worker:
            uow.commit()
            return
        if isinstance(found, SendResult):
            _mark_sent(session, row, found, now)
            report.found += 1
        elif found is None:
            # The provider has no such message: it never went, so sending it is safe.
            row.state, row.next_attempt_at = "pending", now
        else:
            row.verify_attempts += 1
            row.last_error = found.message[:500]
            if row.verify_attempts >= alerting.MAX_VERIFY_ATTEMPTS:
                row.state = "unknown"
                report.failed += 1
                if row.alert_id:
                    alerts.escalate_now(session, row.alert_id, now)
            else:
                row.state = "verify"
                row.next_attempt_at = now + alerting.retry_delay(row.verify_attempts)
        uow.commit()


def dispatch(
    *,
    session_factory: sessionmaker[Session],
    sender: SmsSender,
    now: Callable[[], datetime],
    worker: str,
    status_callback: str | None,
    lease: timedelta,
    max_rounds: int = 50,
) -> DispatchReport:
    """Send what is due until nothing is left (bounded); see the module docstring."""
    report = DispatchReport()
    with UnitOfWork(session_factory) as uow:
        report.recovered = recover_stale(uow=uow, now=now(), lease=lease)
    for _ in range(max_rounds):
        checks = _claim(
            session_factory,
            state="verify",
            to_state="checking",
            now=now(),
            worker=worker,
            report=report,
        )
        for job in checks:
            try:
                found: SendResult | None | SmsSendError = sender.find_sent(
                    to=job.to_phone, body=job.body, since=job.created_at
                )
            except SmsSendError as exc:
                found = exc
            _finish_verify(session_factory, job, found, now(), worker, report)
        jobs = _claim(
            session_factory,
            state="pending",
            to_state="sending",
            now=now(),
            worker=worker,
            report=report,
        )
        for job in jobs:
            try:
                outcome: SendResult | SmsSendError = sender.send(
                    to=job.to_phone, body=job.body, status_callback=status_callback
                )
            except SmsSendError as exc:
                outcome = exc
            _finish_send(session_factory, job, outcome, now(), worker, report)
        if not checks and not jobs:
            break
    return report


class Dispatcher:
    """One dispatcher per worker process, run by the scheduler and by NOTIFY wake-ups.

    A wake-up while a pass is running makes that pass go round once more instead of starting
    a second one (a wake-up in the last instant waits for the next poll, at most a second).
    """

    def __init__(self, run_pass: Callable[[], object]) -> None:
        self._run_pass = run_pass
        self._lock = threading.Lock()
        self._again = threading.Event()

    def wake(self) -> None:
        self._again.set()
        if not self._lock.acquire(blocking=False):
            return
        try:
            while self._again.is_set():
                self._again.clear()
                self._run_pass()
        finally:
            self._lock.release()


# --- webhooks -----------------------------------------------------------------------------


def record_status(
    *, uow: UnitOfWork, message_sid: str, status: str, error_code: int | None, now: datetime
) -> None:
    """Store a delivery status callback once per (sid, status); statuses never go backwards."""
    session = uow.session
    row = session.scalar(
        select(SmsOutbox).where(SmsOutbox.sid == message_sid).with_for_update(of=SmsOutbox)
    )
    new = alerts.insert_ignore(
        session,
        SmsStatusEvent,
        {
            "message_sid": message_sid[:64],
            "status": status[:16],
            "error_code": error_code,
            "outbox_id": row.id if row else None,
            "received_at": require_aware(now),
        },
    )
    if row is not None and new is not None:
        _after_status(session, row, status, error_code, now)


@dataclass(frozen=True)
class InboundResult:
    action: str
    outcome: str
    reply: str | None
    alert_id: int | None = None


def handle_inbound(
    *,
    uow: UnitOfWork,
    message_sid: str,
    from_phone: str,
    to_phone: str,
    body: str,
    now: datetime,
) -> InboundResult:
    """Act on a text we received: ACK <code>, STOP/START, HELP. Idempotent per MessageSid."""
    now = require_aware(now)
    session = uow.session
    seen = session.scalar(select(SmsInbound).where(SmsInbound.message_sid == message_sid))
    if seen is not None:
        return InboundResult(seen.action, "duplicate delivery", None, seen.alert_id)
    reply = parse_reply(body)
    user = session.scalar(select(User).where(User.phone == from_phone).order_by(User.id).limit(1))
    result: InboundResult
    if reply.action == "stop":
        set_opt_out(session, phone=from_phone, opted_out=True, source="keyword", now=now)
        # Twilio's opt-out handling answers STOP itself; a second reply would not be delivered.
        result = InboundResult("stop", "opted out", None)
    elif reply.action == "start":
        set_opt_out(session, phone=from_phone, opted_out=False, source="keyword", now=now)
        result = InboundResult("start", "opted back in", None)
    elif reply.action == "ack" and reply.code:
        result = _acknowledge_by_sms(session, reply.code, from_phone, user, message_sid, now)
    elif user is not None:
        result = InboundResult(reply.action, "help sent", render("help", _bare()))
    else:
        result = InboundResult(reply.action, "unknown sender, ignored", None)
    session.add(
        SmsInbound(
            message_sid=message_sid[:64],
            from_phone=from_phone[:32],
            to_phone=to_phone[:32],
            body=body[:1600],
            action=result.action,
            outcome=result.outcome[:200],
            alert_id=result.alert_id,
            user_id=user.id if user else None,
            received_at=now,
        )
    )
    session.flush()
    return result


def _bare(job_code: str = "-", ack_code: str = "-") -> SmsContext:
    return SmsContext(job_code=job_code, ack_code=ack_code)


def _acknowledge_by_sms(
    session: Session,
    code: str,
    phone: str,
    user: User | None,
    message_sid: str,
    now: datetime,
) -> InboundResult:
    # Only an alert this phone was actually texted about: a guessed code acknowledges nothing.
    alert = session.scalar(
        select(Alert)
        .join(SmsOutbox, SmsOutbox.alert_id == Alert.id)
        .where(
            Alert.ack_code == code,
            SmsOutbox.to_phone == phone,
            SmsOutbox.state.in_(LIVE_STATES),
        )
        .order_by(Alert.status != "open", Alert.id.desc())
        .limit(1)
        .with_for_update(of=Alert)
    )
    if alert is None:
        return InboundResult(
            "ack", f"no alert {code} for this phone", render("ack_not_found", _bare())
        )
    if alert.status != "open":
        return InboundResult(
            "ack",
            f"alert {alert.id} already {alert.status}",
            render("ack_received", _bare(alert.job_code)),
            alert.id,
        )
    alerts.mark_acknowledged(
        session,
        alert,
        now=now,
        user_id=user.id if user else None,
        channel="sms",
        comment=f"SMS reply from {phone}",
        phone=phone,
    )
    # The acknowledgement is custody evidence: who (by phone), when, for which job.
    custody.record_note(
        session,
        order_id=alert.order_id,
        item_id=alert.item_id,
        shipment_id=alert.shipment_id,
        site_id=alert.site_id,
        actor_user_id=user.id if user else None,
        occurred_at=now,
        now=now,
        details={
            "note": "sms_acknowledgement",
            "alert_id": alert.id,
            "job_code": alert.job_code,
            "phone": phone,
            "message_sid": message_sid,
            "received_at": now.isoformat(),
        },
    )
    return InboundResult(
        "ack",
        f"acknowledged alert {alert.id}",
        render("ack_received", _bare(alert.job_code)),
        alert.id,
    )
