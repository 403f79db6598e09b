"""Every SMS template, rendered with realistic data built by the real services, carries no
patient name, date of birth, MRN, COI, DIN, product brand or other link to the patient."""

from datetime import date
from datetime import timedelta

import pytest

from tests.alert_helpers import COURIER_PHONE
from tests.alert_helpers import give_phone
from tracker.domain import identifiers
from tracker.domain.alerting import DeadlineKind
from tracker.domain.alerting import Notify
from tracker.domain.custody import CustodyState as S
from tracker.domain.custody import ItemKind
from tracker.domain.sms_templates import TEMPLATES
from tracker.domain.sms_templates import render
from tracker.services import alerts
from tracker.services import custody
from tracker.services import deadlines
from tracker.services import orders

BRANDS = ["Kymriah", "Yescarta", "Tecartus", "Breyanzi", "Abecma", "Carvykti", "Aucatzyl"]


@pytest.fixture
def journey(new_uow, world, clock):
    now = clock.now()
    give_phone(new_uow, world, "courier", COURIER_PHONE)
    p = world.principals
    with new_uow() as uow:
        profile = orders.create_product_profile(
            uow=uow,
            code="YESCARTA-US",
            name="Yescarta (axicabtagene ciloleucel)",
            product_code="S1009900",
            starting_material="fresh",
            data={"storage_max_c": -150, "thaw_to_infusion_minutes": 180},
            now=now,
        )
        patient = orders.register_patient(
            uow=uow,
            principal=p["coord"],
            treatment_site_code="TC1",
            given_name="Rosalind",
            family_name="Quixotewright",
            date_of_birth=date(1961, 7, 4),
            mrn="MRN-0042-XYZ",
            now=now,
        )
        order = orders.create_order(
            uow=uow,
            principal=p["coord"],
            patient_public_id=patient.public_id,
            product_code=profile.code,
            collection_site_code="CC1",
            manufacturing_site_code="MF1",
            coi_fin="W9999",
            now=now,
        )
        bag = custody.register_bag(
            uow=uow,
            principal=p["nurse"],
            order_public_id=order.public_id,
            kind=ItemKind.apheresis_bag,
            now=now,
        )
        shipper = custody.register_shipper(
            uow=uow,
            principal=p["admin"],
            serial="EVO-IS-2026-0042",
            site_code="CC1",
            validated_hold_hours=20,
            now=now,
        )
        custody.change_item_state(
            uow=uow,
            principal=p["admin"],
            item_public_id=shipper.public_id,
            to_state=S.charged,
            now=now,
        )
        shipment = custody.create_shipment(
            uow=uow,
            principal=p["nurse"],
            order_public_id=order.public_id,
            origin_code="CC1",
            destination_code="MF1",
            item_public_ids=[bag.public_id],
            shipper_public_id=shipper.public_id,
            courier_user_id=world.users["courier"].id,
            tamper_seal="SEAL-00098765",
            air_waybill="AWB-12345678",
            logger_serial="LOG-PHI-1",
            planned_pickup_at=now + timedelta(hours=1),
            planned_delivery_at=now + timedelta(hours=16),
            now=now,
        )
        storage_deadline = deadlines.set_deadline(
            uow=uow,
            kind=DeadlineKind.thaw_to_infusion,
            due_at=now + timedelta(hours=3),
            site_id=world.sites["TC1"].id,
            dedupe_key="phi:thaw",
            order_id=order.id,
            item_id=bag.id,
            now=now,
        )
        made = []
        for key, shipment_id, deadline_id in (
            ("with-shipment", shipment.id, None),
            ("storage", None, storage_deadline.id),
        ):
            made.append(
                alerts.raise_alert(
                    uow.session,
                    dedupe_key=f"phi:{key}",
                    kind="temperature_excursion",
                    severity="alarm",
                    notify=Notify.in_app,
                    title=f"{patient.public_id} test",
                    site_id=world.sites["CC1"].id,
                    order_id=order.id,
                    item_id=bag.id,
                    shipment_id=shipment_id,
                    deadline_id=deadline_id,
                    subject=shipment.public_id if shipment_id else bag.public_id,
                    now=now,
                )
            )
        uow.commit()
        contexts = [
            alerts.sms_context(uow.session, alert, escalated=escalated)
            for alert in made
            for escalated in (False, True)
        ]
        coi_grouped, coi_check = identifiers.coi_eye_readable(order.coi)
        din_grouped, _ = identifiers.format_din_eye_readable(bag.din)
        forbidden = [
            "Rosalind",
            "Quixotewright",
            "1961-07-04",
            "07/04/1961",
            "04.07.1961",
            "1961",
            "MRN-0042-XYZ",
            "0042-XYZ",
            order.coi,
            coi_grouped,
            bag.din,
            din_grouped,
            patient.public_id,
            patient.wristband_code,
            order.public_id,
            bag.public_id,
            "YESCARTA-US",
            "axicabtagene",
            "EVO-IS-2026-0042",
            "SEAL-00098765",
            "AWB-12345678",
            *BRANDS,
        ]
        return contexts, forbidden, made[0].job_code


def test_every_template_renders_without_any_patient_identifier(journey):
    contexts, forbidden, _ = journey
    rendered = {}
    for name in TEMPLATES:
        for ctx in contexts:
            text = render(name, ctx)
            rendered.setdefault(name, []).append(text)
            lowered = text.lower()
            leaks = [f for f in forbidden if f.lower() in lowered]
            assert leaks == [], f"template {name!r} leaks {leaks}: {text}"
    assert set(rendered) == set(TEMPLATES)


def test_templates_carry_only_the_job_code_places_windows_and_last_digits(journey):
    contexts, _, job_code = journey
    text = render("pickup_warning", contexts[0])
    assert job_code in text
    assert "Collection One, 1 Test Street" in text and "Manufacturing One" in text
    assert "shipper ..0042" in text and "seal ..8765" in text
    assert "EST" in text or "EDT" in text  # the pickup window in the origin site's zone
    assert render("temperature_alarm", contexts[1]).startswith("ESCALATED: ")
