import pytest
from pydantic import ValidationError

from tracker.config import Settings


def test_settings_come_from_tracker_prefixed_environment_variables(monkeypatch):
    monkeypatch.setenv("TRACKER_IDLE_TIMEOUT_MINUTES", "7")
    monkeypatch.setenv("TRACKER_COI_ISSUER_FIN", "G1234")
    monkeypatch.setenv("IDLE_TIMEOUT_MINUTES", "99")  # unprefixed: ignored
    settings = Settings()
    assert settings.idle_timeout_minutes == 7
    assert settings.coi_issuer_fin == "G1234"


def test_production_refuses_the_development_secret_and_sqlite(monkeypatch):
    monkeypatch.setenv("TRACKER_ENV", "production")
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        Settings()
    monkeypatch.setenv("TRACKER_SECRET_KEY", "a-real-secret")
    with pytest.raises(ValidationError, match="PostgreSQL"):
        Settings()
    monkeypatch.setenv("TRACKER_DATABASE_URL", "postgresql+psycopg://u:p@db/tracker")
    assert Settings().env == "production"


def test_a_facility_number_must_be_iccbba_shaped(monkeypatch):
    monkeypatch.setenv("TRACKER_COI_ISSUER_FIN", "O1234")  # O is never a FIN letter
    with pytest.raises(ValidationError):
        Settings()


def test_twilio_counts_as_configured_only_with_sid_and_token():
    assert not Settings(twilio_account_sid="AC1").twilio_configured
    assert Settings(twilio_account_sid="AC1", twilio_auth_token="t").twilio_configured  # type: ignore[arg-type]
