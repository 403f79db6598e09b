from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from tracker import migrate
from tracker.db import Base


def test_the_migration_tree_has_exactly_one_head(settings):
    script = ScriptDirectory.from_config(migrate.alembic_config(settings.database_url))
    assert len(script.get_heads()) == 1


def test_upgrading_from_empty_gives_exactly_the_models_schema(engine):
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(ctx, Base.metadata) == []


def test_the_database_is_at_head_after_the_run_starts(engine, settings):
    assert set(migrate.current_revisions(engine)) == set(
        migrate.head_revisions(settings.database_url)
    )


def test_datetimes_come_back_aware_in_utc_on_both_databases(new_uow, clock):
    from datetime import timedelta
    from datetime import timezone

    from tracker.models import Site

    local = clock.now().astimezone(timezone(timedelta(hours=-5)))
    with new_uow() as uow:
        uow.session.add(
            Site(
                code="TZ",
                name="tz",
                kind="courier_depot",
                timezone="UTC",
                address="",
                created_at=local,
            )
        )
        uow.commit()
    with new_uow() as uow:
        from sqlalchemy import select

        stored = uow.session.scalar(select(Site.created_at).where(Site.code == "TZ"))
    assert stored == clock.now() and stored.utcoffset() == timedelta(0)
