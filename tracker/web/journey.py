"""A patient's journey page and a shipment's page (custody, acknowledgements, temperature)."""

from __future__ import annotations

from flask import Blueprint
from flask import jsonify
from flask import render_template
from flask import request
from flask.typing import ResponseReturnValue
from flask_login import login_required

from tracker import queries_journey
from tracker import queries_quality
from tracker.services import certificates
from tracker.web.auth import current_principal
from tracker.web.runtime import runtime

bp = Blueprint("journey", __name__)


@bp.get("/orders/<public_id>/journey")
@login_required  # type: ignore[untyped-decorator]
def journey(public_id: str) -> ResponseReturnValue:
    rt = runtime()
    show = request.args.get("show", "")
    with rt.uow() as uow:
        data = queries_journey.journey(
            uow.session, current_principal(), public_id, now=rt.clock.now()
        )
        quality = queries_quality.order_quality(
            uow.session, current_principal(), public_id, rt.clock.now()
        )
    if show in queries_journey.KINDS:
        data["entries"] = [e for e in data["entries"] if e["kind"] == show]
    return render_template(
        "cockpit/journey.html",
        j=data,
        show=show,
        kinds=queries_journey.KINDS,
        kind_labels=queries_journey.KIND_LABELS,
        can_sign=_may_sign(),
        q=quality,
    )


def _may_sign() -> bool:
    principal = current_principal()
    return principal.is_admin or any(
        role in certificates.SIGN_OFF_ROLES for role, _ in principal.grants
    )


@bp.get("/orders/<public_id>/journey/chain")
@login_required  # type: ignore[untyped-decorator]
def chain_status(public_id: str) -> ResponseReturnValue:
    """Re-verify the hash chain now (the page's "verify again" button)."""
    rt = runtime()
    with rt.uow() as uow:
        data = queries_journey.journey(
            uow.session, current_principal(), public_id, now=rt.clock.now()
        )
    return render_template("cockpit/_chain.html", j=data, now=rt.clock.now())


@bp.get("/shipments/<public_id>")
@login_required  # type: ignore[untyped-decorator]
def shipment(public_id: str) -> ResponseReturnValue:
    rt = runtime()
    with rt.uow() as uow:
        data = queries_journey.shipment_page(
            uow.session, current_principal(), public_id, now=rt.clock.now()
        )
    return render_template("cockpit/shipment.html", s=data)


@bp.get("/shipments/<public_id>/temperatures.json")
@login_required  # type: ignore[untyped-decorator]
def temperatures(public_id: str) -> ResponseReturnValue:
    rt = runtime()
    with rt.uow() as uow:
        data = queries_journey.shipment_temperatures(
            uow.session, current_principal(), public_id, now=rt.clock.now()
        )
    return jsonify(data)
