"""Settings: the only module that reads the environment (prefix ``TRACKER_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic import SecretStr
from pydantic import model_validator
from pydantic_settings import BaseSettings
from pydantic_settings import SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SQLITE_URL = f"sqlite:///{PROJECT_ROOT / 'instance' / 'tracker.db'}"
_INSECURE_DEV_KEY = "dev-only-insecure-secret-key-change-me"


class Settings(BaseSettings):
    """Typed settings; tests build one explicitly instead of touching the environment."""

    model_config = SettingsConfigDict(env_prefix="TRACKER_", extra="ignore", frozen=True)

    env: Literal["development", "test", "production"] = "development"
    database_url: str = DEFAULT_SQLITE_URL
    secret_key: SecretStr = SecretStr(_INSECURE_DEV_KEY)
    public_base_url: str = "http://127.0.0.1:5000"
    # Sessions and lockout (21 CFR 11.300: detect and stop repeated unauthorised attempts).
    idle_timeout_minutes: int = Field(default=30, ge=1)
    lockout_threshold: int = Field(default=5, ge=1)
    lockout_minutes: int = Field(default=15, ge=1)
    session_cookie_secure: bool = False
    # argon2 cost; tests lower it to keep the suite fast.
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_cost: int = Field(default=65536, ge=1024)
    # Identifier issuance: a synthetic facility number until an adopter registers with ICCBBA.
    coi_issuer_fin: str = Field(default="W9999", pattern=r"^[A-NP-Z1-9][0-9]{4}$")
    coi_check_scope: Literal["full", "after_ch"] = "full"
    din_facility_fin: str = Field(default="W9999", pattern=r"^[A-NP-Z1-9][0-9]{4}$")
    # GS1 company prefix + asset type (12 digits) for cryoshipper GRAIs: GS1's example prefix
    # until an adopter has its own.
    gs1_grai_prefix: str = Field(default="061414100001", pattern=r"^[0-9]{12}$")
    # Raw TCP label printers: seconds to wait for a connection or for the printer to take data.
    printer_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    # Printable stand-in for the GS1 group separator that keyboard-wedge scanners drop.
    gs_substitute: str | None = None
    # Twilio: with no credentials the console/outbox backend is used.
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_messaging_service_sid: str | None = None
    twilio_from_number: str | None = None
    # SharedKey secret for webhooks signed with HMAC_SHA256 (X-Twilio-Webhooks-Signature-Settings).
    twilio_shared_key: SecretStr | None = None
    # A stand-in for api.twilio.com (a mock server in staging, the benchmark's fake endpoint).
    twilio_api_base_url: str | None = None
    twilio_timeout_seconds: float = Field(default=10, gt=0)
    # SMS dispatch: poll interval, and how long a claimed message may stay "sending" before
    # another dispatcher assumes its worker died (must exceed the HTTP timeout).
    sms_dispatch_seconds: float = Field(default=1.0, gt=0)
    sms_sending_lease_seconds: int = Field(default=60, ge=1)
    alert_sweep_seconds: int = Field(default=2, ge=1)
    silence_sweep_seconds: int = Field(default=15, ge=1)
    # Worker
    worker_heartbeat_seconds: int = Field(default=5, ge=1)

    @model_validator(mode="after")
    def _production_needs_real_secrets(self) -> Settings:
        if self.env == "production":
            if self.secret_key.get_secret_value() == _INSECURE_DEV_KEY:
                raise ValueError("TRACKER_SECRET_KEY must be set in production")
            if self.database_url.startswith("sqlite"):
                raise ValueError("production needs a PostgreSQL TRACKER_DATABASE_URL")
        if self.sms_sending_lease_seconds <= self.twilio_timeout_seconds:
            raise ValueError("TRACKER_SMS_SENDING_LEASE_SECONDS must exceed the Twilio timeout")
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def twilio_configured(self) -> bool:
        return bool(self.twilio_account_sid and self.twilio_auth_token)


def load_settings() -> Settings:
    """Read settings from the environment once, at an entrypoint."""
    return Settings()
