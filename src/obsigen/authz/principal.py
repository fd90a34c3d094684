"""The authenticated caller of a request, as every layer below the web edge sees it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from obsigen.authz.permissions import Permission, permissions_for

PrincipalKind = Literal["user", "apikey"]


def _no_grants() -> Mapping[str, frozenset[Permission]]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Principal:
    tenant_id: str
    kind: PrincipalKind
    id: str
    # Role names: built-in (``Role`` values) and the tenant's custom roles.
    roles: frozenset[str]
    # Tenant-wide grants; None means "the built-in roles' permissions" (computed once).
    granted: frozenset[Permission] | None = None
    # Grants that hold only inside one workspace: workspace id -> permissions.
    workspace_grants: Mapping[str, frozenset[Permission]] = field(default_factory=_no_grants)
    # True when this session proved a second factor (token ``amr`` holds one).
    mfa: bool = False
    # The session a JWT belongs to (None for API keys).
    session_id: str | None = None
    amr: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.granted is None:
            object.__setattr__(self, "granted", permissions_for(self.roles))

    @property
    def permissions(self) -> frozenset[Permission]:
        assert self.granted is not None
        return self.granted

    def can(self, permission: Permission, workspace: str | None = None) -> bool:
        """Whether a role grants ``permission`` (tenant-wide, or inside ``workspace``).

        Says nothing about MFA: the web edge checks that separately so that a missing second
        factor gets its own answer (step up) rather than a plain denial.
        """
        if permission in self.permissions:
            return True
        if workspace is not None:
            return permission in self.workspace_grants.get(workspace, frozenset())
        return False
