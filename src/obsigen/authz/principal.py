"""The authenticated caller of a request, as every layer below the web edge sees it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from obsigen.authz.permissions import Permission, Role, permissions_for

PrincipalKind = Literal["user", "apikey"]


@dataclass(frozen=True, slots=True)
class Principal:
    tenant_id: str
    kind: PrincipalKind
    id: str
    roles: frozenset[Role]
    # Set when an admin proved a second factor for this session (issue #3 fills it).
    mfa: bool = False

    @property
    def permissions(self) -> frozenset[Permission]:
        return permissions_for(self.roles)

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions
