"""The whole fresh-apheresis journey, vein to vein, played through scans only."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tests import scanning as sc
from tracker.models import CustodyEvent
from tracker.models import Item
from tracker.models import Scan
from tracker.services import custody


@pytest.fixture
def driver(new_uow, world, clock, settings):
    scanners = sc.make_scanners(new_uow, world, clock.now())
    return sc.Driver(new_uow, world, clock, settings, scanners)


def test_a_fresh_journey_runs_vein_to_vein_through_scans_alone(driver, new_uow):
    j = sc.new_journey(driver, bags=2)
    sc.walk(driver, j, "infuse")
    with new_uow() as uow:
        states = {i.public_id: i.state for i in uow.session.scalars(select(Item))}
        assert states[j.bags[0].public_id] == "consumed"
        assert states[j.products[0].public_id] == "infused"
        assert custody.verify_chains(uow.session)[f"coi:{j.order.coi}"] == []
        notes = uow.session.scalars(
            select(CustodyEvent).where(CustodyEvent.event_type == "note")
        ).all()
        assert {n.details["step"] for n in notes} >= {"collect_verify_patient", "bedside_verify"}
        refused = uow.session.scalars(select(Scan).where(Scan.result == "error")).all()
        assert refused == []
