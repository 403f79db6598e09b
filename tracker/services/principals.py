"""Who is acting: a user (roles scoped per site) or a registered device."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field

from sqlalchemy import ColumnElement
from sqlalchemy import Select
from sqlalchemy import exists
from sqlalchemy import or_

from tracker.domain.access import Role
from tracker.domain.errors import TrackerError
from tracker.models import Shipment
from tracker.models import TherapyOrder
from tracker.models import User


@dataclass(frozen=True)
class Principal:
    user_id: int | None
    name: str
    # (role, site_id); site_id None means every site (administrators only).
    grants: frozenset[tuple[Role, int | None]] = field(default_factory=frozenset)
    device_id: int | None = None
    device_site_id: int | None = None

    @property
    def is_admin(self) -> bool:
        return any(role is Role.admin for role, _ in self.grants)

    @property
    def site_ids(self) -> frozenset[int] | None:
        """Sites this principal may see; None means all of them."""
        if self.is_admin:
            return None
        sites = {site for _, site in self.grants if site is not None}
        if self.device_site_id is not None:
            sites.add(self.device_site_id)
        return frozenset(sites)

    def roles_at(self, site_id: int) -> frozenset[Role]:
        return frozenset(role for role, site in self.grants if site in (site_id, None))

    def has_role_at(self, roles: frozenset[Role], site_id: int) -> bool:
        return bool(self.roles_at(site_id) & roles)

    def require_role_at(self, roles: frozenset[Role], site_id: int, action: str) -> None:
        """Refuse with ``forbidden`` unless the principal holds one of ``roles`` at the site."""
        if not self.has_role_at(roles, site_id) and not self.is_admin:
            raise TrackerError("forbidden", f"you may not {action} at this site")

    def can_see_site(self, site_id: int) -> bool:
        sites = self.site_ids
        return sites is None or site_id in sites


def principal_for_user(user: User) -> Principal:
    grants = frozenset((Role(a.role), a.site_id) for a in user.roles)
    return Principal(user_id=user.id, name=user.full_name, grants=grants)


def scope_orders(stmt: Select[TherapyOrder], principal: Principal) -> Select[TherapyOrder]:
    """Restrict an order query to the sites the principal works at (in SQL, not templates)."""
    sites = principal.site_ids
    if sites is None:
        return stmt
    conditions: list[ColumnElement[bool]] = [
        TherapyOrder.treatment_site_id.in_(sites),
        TherapyOrder.collection_site_id.in_(sites),
        TherapyOrder.manufacturing_site_id.in_(sites),
    ]
    if principal.user_id is not None:
        # Couriers see the orders whose shipments they carry, and nothing else.
        conditions.append(
            exists().where(
                Shipment.order_id == TherapyOrder.id,
                Shipment.courier_user_id == principal.user_id,
            )
        )
    return stmt.where(or_(*conditions))
