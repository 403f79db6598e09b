from sqlalchemy import func
from sqlalchemy import select

from tracker.demo import seed_demo
from tracker.models import CustodyEvent
from tracker.models import TherapyOrder
from tracker.services.auth import make_hasher
from tracker.services.custody import verify_chains


def test_demo_data_loads_once_with_a_dozen_journeys_all_in_the_past(new_uow, settings, clock):
    with new_uow() as uow:
        assert (
            seed_demo(uow=uow, hasher=make_hasher(settings), settings=settings, now=clock.now())
            is True
        )
        uow.commit()
    with new_uow() as uow:
        assert (
            seed_demo(uow=uow, hasher=make_hasher(settings), settings=settings, now=clock.now())
            is False
        )
        assert uow.session.scalar(select(func.count(TherapyOrder.id))) == 12
        latest = uow.session.scalar(select(func.max(CustodyEvent.occurred_at)))
        assert latest <= clock.now()
        report = verify_chains(uow.session)
        assert len(report) >= 12 and all(breaks == [] for breaks in report.values())
        states = set(uow.session.scalars(select(CustodyEvent.to_state)))
        assert {"collected", "in_transit", "in_manufacturing", "released", "infused"} <= states
