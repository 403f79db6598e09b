"""The app factory: binds settings, database, auth and blueprints. Runs nothing at import."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from flask import Flask
from flask import Response
from flask import jsonify
from flask.typing import ResponseReturnValue
from werkzeug.middleware.proxy_fix import ProxyFix

from schedules import api as schedules_api
from schedules import views as schedules_views
from tracker.cli import init_cli
from tracker.clock import Clock
from tracker.clock import SystemClock
from tracker.config import Settings
from tracker.config import load_settings
from tracker.db import make_engine
from tracker.db import make_session_factory
from tracker.services.auth import make_hasher
from tracker.web import admin
from tracker.web import alerts
from tracker.web import api
from tracker.web import api_admin  # noqa: F401  (administration API routes)
from tracker.web import api_alerts  # noqa: F401  (adds its routes to the API blueprint)
from tracker.web import api_cockpit  # noqa: F401  (dashboard, timeline, audit, certificate routes)
from tracker.web import api_comparability  # noqa: F401  (comparability API routes)
from tracker.web import api_quality  # noqa: F401  (quality gates: acceptance, lots, results)
from tracker.web import audit
from tracker.web import cockpit
from tracker.web import comparability
from tracker.web import health
from tracker.web import journey
from tracker.web import labels_api
from tracker.web import labels_ui
from tracker.web import quality
from tracker.web import scanner
from tracker.web import scans_api
from tracker.web import twilio
from tracker.web import ui
from tracker.web.auth import init_auth
from tracker.web.errors import register_error_handlers
from tracker.web.openapi import RowIdConverter
from tracker.web.runtime import Runtime
from tracker.web.runtime import init_runtime

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

CSP = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; "
    "img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)


def create_app(settings: Settings | None = None, *, clock: Clock | None = None) -> Flask:
    settings = settings or load_settings()
    app = Flask(__name__, static_folder=str(STATIC_DIR), static_url_path="/static")
    app.config.update(
        SECRET_KEY=settings.secret_key.get_secret_value(),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.session_cookie_secure,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=12),
        # Scanner stations stay open a whole shift; the idle timeout protects the session.
        WTF_CSRF_TIME_LIMIT=None,
        MAX_CONTENT_LENGTH=16 * 1024 * 1024,
        JSON_SORT_KEYS=False,
    )
    engine = make_engine(settings.database_url)
    init_runtime(
        app,
        Runtime(
            settings=settings,
            engine=engine,
            session_factory=make_session_factory(engine),
            hasher=make_hasher(settings),
            clock=clock or SystemClock(),
        ),
    )
    if settings.env == "production":
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)  # type: ignore[method-assign]
    # Before any blueprint: their <int:...> rules compile with this converter.
    app.url_map.converters["int"] = RowIdConverter
    init_auth(app)
    register_error_handlers(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(scans_api.bp)
    app.register_blueprint(scanner.bp)
    app.register_blueprint(ui.bp)
    app.register_blueprint(labels_api.bp)
    app.register_blueprint(labels_ui.bp)
    app.register_blueprint(alerts.bp)
    app.register_blueprint(twilio.bp)
    app.register_blueprint(schedules_api.bp)
    app.register_blueprint(schedules_views.bp)
    for cockpit_bp in (cockpit.bp, journey.bp, audit.bp, admin.bp, quality.bp):
        app.register_blueprint(cockpit_bp)
    app.register_blueprint(comparability.bp)
    init_cli(app)

    @app.get("/api/openapi.json")
    def openapi() -> ResponseReturnValue:
        return jsonify(api.openapi_document())

    @app.after_request
    def _security_headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        return response

    @app.template_filter("local")
    def _local(value: object, tz: str = "UTC") -> str:
        from datetime import datetime

        if not isinstance(value, datetime):
            return "" if value is None else str(value)
        return value.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M %Z")

    @app.template_filter("utc")
    def _utc(value: object) -> str:
        from datetime import datetime

        if not isinstance(value, datetime):
            return "" if value is None else str(value)
        return value.strftime("%Y-%m-%d %H:%M UTC")

    logging.getLogger("tracker").setLevel(logging.INFO)
    return app
