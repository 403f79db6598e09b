"""Roles and what they may do. Pure data and functions; services and queries enforce them."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    coordinator = "coordinator"
    collection_nurse = "collection_nurse"
    manufacturing_operator = "manufacturing_operator"
    qa = "qa"
    infusion_nurse = "infusion_nurse"
    courier = "courier"
    admin = "admin"


class SiteKind(StrEnum):
    collection_centre = "collection_centre"
    processing_lab = "processing_lab"
    manufacturing_facility = "manufacturing_facility"
    treatment_centre = "treatment_centre"
    courier_depot = "courier_depot"


# Who may read a patient's name, date of birth and MRN: clinical roles at the patient's
# treatment site only. Everyone else works with the opaque patient reference.
PHI_ROLES = frozenset({Role.coordinator, Role.collection_nurse, Role.infusion_nurse})

# Who may create therapy orders, and record custody changes by hand (scans come later).
ORDER_ROLES = frozenset({Role.coordinator, Role.admin})
CUSTODY_ROLES = frozenset(
    {
        Role.coordinator,
        Role.collection_nurse,
        Role.manufacturing_operator,
        Role.qa,
        Role.infusion_nurse,
        Role.courier,
    }
)


def may_read_phi(roles_at_site: frozenset[Role]) -> bool:
    """True when any of the user's roles at the treatment site may see identity data."""
    return bool(roles_at_site & PHI_ROLES)
