from datetime import timedelta

from sqlalchemy import text

from tests.factories import make_bag
from tests.factories import make_order
from tracker.domain.custody import CustodyState
from tracker.services import custody


def test_verify_chain_reports_intact_chains_and_exits_zero(app, new_uow, world, clock):
    order = make_order(new_uow, world, clock.now())
    make_bag(new_uow, world, order, clock.now())
    result = app.test_cli_runner().invoke(args=["tracker", "verify-chain"])
    assert result.exit_code == 0, result.output
    assert "0 broken" in result.output


def test_verify_chain_names_the_broken_event_and_exits_one(
    app, new_uow, world, clock, connection, is_postgres
):
    order = make_order(new_uow, world, clock.now())
    bag = make_bag(new_uow, world, order, clock.now())
    clock.advance(timedelta(minutes=1))
    with new_uow() as uow:
        custody.change_item_state(
            uow=uow,
            principal=world.principals["nurse"],
            item_public_id=bag.public_id,
            to_state=CustodyState.labelled,
            now=clock.now(),
        )
        uow.commit()
    # Someone with database rights rewrites history behind the append-only trigger.
    if is_postgres:
        connection.execute(text("ALTER TABLE custody_events DISABLE TRIGGER USER"))
    else:
        connection.execute(text("DROP TRIGGER custody_events_no_update"))
    connection.execute(text("UPDATE custody_events SET occurred_at = occurred_at WHERE seq = 1"))
    connection.execute(text("UPDATE custody_events SET reason = 'edited' WHERE seq = 2"))
    result = app.test_cli_runner().invoke(args=["tracker", "verify-chain"])
    assert result.exit_code == 1
    assert f"BROKEN coi:{order.coi} event #2" in result.output
    assert "#1" not in result.output


def test_seed_demo_prints_the_demo_logins_and_is_idempotent(app):
    runner = app.test_cli_runner()
    first = runner.invoke(args=["tracker", "seed-demo"])
    second = runner.invoke(args=["tracker", "seed-demo"])
    assert first.exit_code == second.exit_code == 0
    assert "demo data loaded" in first.output and "already present" in second.output
    assert "coordinator" in first.output and "demo-password" in first.output
