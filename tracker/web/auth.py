"""Sessions (Flask-Login), idle timeout, login/logout pages and API principal resolution."""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint
from flask import Flask
from flask import Response
from flask import flash
from flask import g
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for
from flask.typing import ResponseReturnValue
from flask_login import LoginManager
from flask_login import UserMixin
from flask_login import current_user
from flask_login import login_user
from flask_login import logout_user
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import bindparam
from sqlalchemy import select

from tracker.domain.access import Role
from tracker.domain.errors import TrackerError
from tracker.models import RoleAssignment
from tracker.models import User
from tracker.services import auth as auth_service
from tracker.services.principals import Principal
from tracker.services.principals import principal_for_user
from tracker.web.runtime import runtime

login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.session_protection = "strong"
csrf = CSRFProtect()

bp = Blueprint("auth", __name__)


class SessionUser(UserMixin):  # type: ignore[misc]
    def __init__(
        self,
        user_id: int,
        username: str,
        full_name: str,
        session_version: int,
        principal: Principal,
    ) -> None:
        self.user_id = user_id
        self.username = username
        self.full_name = full_name
        self.session_version = session_version
        self.principal = principal

    @classmethod
    def of(cls, user: User) -> SessionUser:
        return cls(
            user.id, user.username, user.full_name, user.session_version, principal_for_user(user)
        )

    def get_id(self) -> str:
        # Carrying the version lets an administrator revoke every session by bumping it.
        return f"{self.user_id}:{self.session_version}"


# Every request of a logged-in browser or scanner re-reads its user: one statement for the
# user and all their roles (no ORM objects; the request's connection, see Runtime.uow).
_Q_SESSION_USER = (
    select(
        User.username,
        User.full_name,
        User.active,
        User.session_version,
        RoleAssignment.role,
        RoleAssignment.site_id,
    )
    .outerjoin(RoleAssignment, RoleAssignment.user_id == User.id)
    .where(User.id == bindparam("user"))
)


@login_manager.user_loader  # type: ignore[untyped-decorator]
def _load_user(raw: str) -> SessionUser | None:
    try:
        user_id, version = (int(part) for part in raw.split(":", 1))
    except ValueError:
        return None
    with runtime().reading() as conn:
        rows = conn.execute(_Q_SESSION_USER, {"user": user_id}).all()
    if not rows:
        return None
    first = rows[0]
    if not first.active or first.session_version != version:
        return None
    grants = frozenset((Role(r.role), r.site_id) for r in rows if r.role is not None)
    principal = Principal(user_id=user_id, name=first.full_name, grants=grants)
    return SessionUser(user_id, first.username, first.full_name, first.session_version, principal)


LAST_SEEN_STEP = 15.0

# Pages that refresh themselves send this header: a refresh is not the person being active.
POLL_HEADER = "X-Tracker-Poll"


def _to_login() -> ResponseReturnValue:
    """Send the browser to the login page; an htmx request is told to leave the page whole
    (HX-Redirect) instead of having the login form swapped into a fragment."""
    target = url_for("auth.login", next=request.path)
    if request.headers.get("HX-Request"):
        return Response(status=204, headers={"HX-Redirect": target})
    return redirect(target)


@login_manager.unauthorized_handler  # type: ignore[untyped-decorator]
def _unauthorized() -> ResponseReturnValue:
    return _to_login()


def _enforce_idle_timeout() -> ResponseReturnValue | None:
    if not current_user.is_authenticated:
        return None
    rt = runtime()
    now = rt.clock.now().timestamp()
    last = session.get("last_seen")
    limit = timedelta(minutes=rt.settings.idle_timeout_minutes).total_seconds()
    if last is not None and now - float(last) > limit:
        logout_user()
        session.clear()
        if request.path.startswith("/api/"):
            raise TrackerError("session_expired")
        flash("Your session was idle too long. Please log in again.", "warning")
        return _to_login()
    # Activity is written to the cookie at most every LAST_SEEN_STEP seconds: a scanner making
    # several scans a minute does not re-sign and re-send its session cookie on every scan.
    # (The idle limit is in minutes; this makes it up to that many seconds later, never sooner.)
    stale = last is None or now - float(last) >= LAST_SEEN_STEP
    if stale and request.headers.get(POLL_HEADER) != "1":
        session["last_seen"] = now
    return None


def current_principal() -> Principal:
    """The acting principal for this request: device token, or logged-in user."""
    cached: Principal | None = g.get("principal")
    if cached is not None:
        return cached
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        rt = runtime()
        with rt.uow() as uow:
            device = auth_service.authenticate_device(
                uow=uow, token=header.removeprefix("Bearer ").strip(), now=rt.clock.now()
            )
            uow.commit()
            principal = Principal(
                user_id=None, name=device.name, device_id=device.id, device_site_id=device.site_id
            )
    elif current_user.is_authenticated:
        principal = current_user.principal
    else:
        raise TrackerError("unauthenticated")
    g.principal = principal
    return principal


def init_auth(app: Flask) -> None:
    login_manager.init_app(app)
    csrf.init_app(app)
    app.before_request(_enforce_idle_timeout)
    app.register_blueprint(bp)


def _safe_next(target: str | None) -> str:
    # Only local paths: an open redirect after login is a phishing aid.
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return url_for("cockpit.dashboard")


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    if request.method == "GET":
        return render_template("login.html", next=request.args.get("next", ""))
    rt = runtime()
    username = request.form.get("username", "").strip()
    password = request.form.get("password", "")
    try:
        with rt.uow() as uow:
            user = auth_service.authenticate(
                uow=uow,
                hasher=rt.hasher,
                settings=rt.settings,
                username=username,
                password=password,
                now=rt.clock.now(),
            )
            session_user = SessionUser.of(user)
    except TrackerError as exc:
        # The form is shown again (200) with the coded reason; the API answers with 401/423.
        return render_template(
            "login.html",
            error=exc.message,
            reason=exc.reason,
            username=username,
            next=request.form.get("next", ""),
        )
    session.clear()
    login_user(session_user)
    session["last_seen"] = rt.clock.now().timestamp()
    return redirect(_safe_next(request.form.get("next")))


@bp.route("/logout", methods=["POST"])
def logout() -> ResponseReturnValue:
    logout_user()
    session.clear()
    flash("You are logged out.", "info")
    return redirect(url_for("auth.login"))
