"""Custom roles and role bindings, and the rules that keep granting from becoming escalation.

A role is a name and a set of permissions: the five built-in ones (``ROLE_PERMISSIONS``) or a
tenant's own (``custom_roles``). A binding gives a role to a principal in a scope: the whole
tenant (``"tenant"``) or one workspace (``"workspace:<id>"``).

Every change here is administrative, so each function first checks that the actor may manage
roles with a second factor, and then that the change stays within what the actor holds: an
actor grants, revokes, creates, edits or deletes only roles whose permissions are a subset of
its own. So only an owner hands out ``owner``, and an admin cannot mint a custom role that
carries ``tenant:keys:manage``. A tenant keeps at least one active owner.

The functions work inside the caller's transaction and return an ``AdminChange``; the caller
records it (``admin.change``) once the transaction has committed, so the audit never shows a
change that was rolled back. Refusals raise ``Forbidden``; ``denial_event`` describes them.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from obsigen.audit.events import AuditEvent, actor_of
from obsigen.authz.permissions import (
    MFA_REQUIRED,
    ROLE_NAME_PATTERN,
    ROLE_PERMISSIONS,
    Permission,
    Role,
    builtin_role,
    parse_permissions,
)
from obsigen.authz.principal import Principal
from obsigen.db.auth_models import CustomRole
from obsigen.db.models import ApiKey, RoleBinding, User
from obsigen.errors import Conflict, Forbidden, InvalidInput, MfaRequired, NotFound

TENANT_SCOPE = "tenant"
WORKSPACE_PREFIX = "workspace:"
# role_bindings.scope is 64 characters; the prefix takes 10 of them.
_WORKSPACE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,53}$")
_ROLE_NAME = re.compile(ROLE_NAME_PATTERN)
MAX_DESCRIPTION = 200
PRINCIPAL_KINDS = ("user", "apikey")

BUILTIN_DESCRIPTIONS: dict[Role, str] = {
    Role.OWNER: "Everything, including tenant settings and keys; only an owner grants owner.",
    Role.ADMIN: "Users, roles, API keys, sessions, tool policy and approvals.",
    Role.AUDITOR: "Reads the audit trail, users and tool policy; changes nothing.",
    Role.MEMBER: "Uses the assistant: chat, conversations, code and files.",
    Role.VIEWER: "Reads models, conversations and files.",
}


# --- scopes ----------------------------------------------------------------------------------


def workspace_of(scope: str) -> str | None:
    """The workspace id of a ``workspace:<id>`` scope; None for any other scope."""
    if not scope.startswith(WORKSPACE_PREFIX):
        return None
    workspace = scope[len(WORKSPACE_PREFIX) :]
    return workspace if _WORKSPACE_ID.fullmatch(workspace) else None


def parse_scope(value: str) -> str:
    if value == TENANT_SCOPE or workspace_of(value) is not None:
        return value
    raise InvalidInput("scope: 'tenant' or 'workspace:<id>' (letters, digits, '-', '_')")


# --- what a role grants ----------------------------------------------------------------------


def stored_permissions(values: Iterable[object]) -> frozenset[Permission]:
    """A stored custom role's permissions. A string this version does not know grants nothing
    rather than failing every request of everyone who holds the role."""
    known: set[Permission] = set()
    for value in values:
        try:
            known.add(Permission(str(value)))
        except ValueError:
            continue
    return frozenset(known)


async def custom_role_permissions(
    session: AsyncSession, tenant_id: str, names: Collection[str]
) -> dict[str, frozenset[Permission]]:
    if not names:
        return {}
    rows = await session.execute(
        select(CustomRole.name, CustomRole.permissions).where(
            CustomRole.tenant_id == tenant_id, CustomRole.name.in_(sorted(names))
        )
    )
    return {name: stored_permissions(permissions) for name, permissions in rows.all()}


def role_permissions(
    name: str, custom: Mapping[str, frozenset[Permission]]
) -> frozenset[Permission] | None:
    """What role ``name`` grants; None when it is neither built-in nor a known custom role."""
    role = builtin_role(name)
    if role is not None:
        return ROLE_PERMISSIONS[role]
    return custom.get(name)


@dataclass(frozen=True, slots=True)
class RoleInfo:
    name: str
    permissions: frozenset[Permission]
    builtin: bool
    description: str = ""

    @property
    def needs_mfa(self) -> bool:
        return bool(self.permissions & MFA_REQUIRED)


def _builtin_info(role: Role) -> RoleInfo:
    return RoleInfo(role.value, ROLE_PERMISSIONS[role], True, BUILTIN_DESCRIPTIONS[role])


def _custom_info(row: CustomRole) -> RoleInfo:
    return RoleInfo(row.name, stored_permissions(row.permissions), False, row.description)


async def list_roles(session: AsyncSession, tenant_id: str) -> list[RoleInfo]:
    rows = await session.scalars(
        select(CustomRole).where(CustomRole.tenant_id == tenant_id).order_by(CustomRole.name)
    )
    return [_builtin_info(role) for role in Role] + [_custom_info(row) for row in rows]


async def resolve_role(session: AsyncSession, tenant_id: str, name: str) -> RoleInfo:
    role = builtin_role(name)
    if role is not None:
        return _builtin_info(role)
    row = await session.scalar(
        select(CustomRole).where(CustomRole.tenant_id == tenant_id, CustomRole.name == name)
    )
    if row is None:
        raise NotFound(f"no role named {name!r}")
    return _custom_info(row)


def ensure_key_assignable(role: RoleInfo) -> None:
    """API keys never hold administrative permissions: a key is a bearer secret and can never
    prove a second factor, and every administrative permission needs one."""
    administrative = sorted(role.permissions & MFA_REQUIRED)
    if administrative:
        raise InvalidInput(
            f"role {role.name!r} carries administrative permissions ({', '.join(administrative)})"
            " that need an interactive session with MFA; an API key can never prove a second"
            " factor, so it cannot hold this role"
        )


# --- audit -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AdminChange:
    """One administrative change, ready to be recorded once its transaction has committed."""

    action: str  # role.create | role.update | role.delete | role.grant | role.revoke
    target: dict[str, str]
    before: Any
    after: Any
    details: dict[str, str] = field(default_factory=dict)

    def event(self, actor: Principal, source_address: str | None = None) -> AuditEvent:
        return AuditEvent(
            type="admin.change",
            tenant_id=actor.tenant_id,
            actor=actor_of(actor),
            outcome="success",
            source_address=source_address,
            target=self.target,
            data={
                "action": self.action,
                **self.details,
                "before": self.before,
                "after": self.after,
            },
        )


def denial_event(
    actor: Principal,
    action: str,
    target: dict[str, str],
    reason: str,
    source_address: str | None = None,
) -> AuditEvent:
    """An administrative change refused for lack of permission (escalation, no grant)."""
    return AuditEvent(
        type="authz.decision",
        tenant_id=actor.tenant_id,
        actor=actor_of(actor),
        outcome="denied",
        source_address=source_address,
        target=target,
        data={"action": action, "reason": reason[:300]},
    )


# --- access choke points ---------------------------------------------------------------------


def _ensure_manager(actor: Principal) -> None:
    # The web edge checks the same; repeated here so that no other caller can skip it.
    if not actor.can(Permission.ROLES_MANAGE):
        raise Forbidden(f"requires {Permission.ROLES_MANAGE.value}")
    if not actor.mfa:
        raise MfaRequired(f"{Permission.ROLES_MANAGE.value} needs a session with a second factor")


def _ensure_within(
    actor: Principal, permissions: frozenset[Permission], scope: str, refusal: str
) -> None:
    held = actor.permissions
    workspace = workspace_of(scope)
    if workspace is not None:
        held = held | actor.workspace_grants.get(workspace, frozenset())
    missing = sorted(permissions - held)
    if missing:
        raise Forbidden(f"{refusal}: it carries permissions you do not hold ({', '.join(missing)})")


async def access_custom_role(session: AsyncSession, actor: Principal, name: str) -> CustomRole:
    row = await session.scalar(
        select(CustomRole).where(CustomRole.tenant_id == actor.tenant_id, CustomRole.name == name)
    )
    if row is None:
        raise NotFound(f"no custom role named {name!r}")
    return row


async def access_principal(
    session: AsyncSession, actor: Principal, principal_kind: str, principal_id: str
) -> None:
    """Raises NotFound unless the principal exists in the actor's tenant (same answer for
    "missing" and "another tenant's")."""
    if principal_kind == "user":
        found = await session.scalar(
            select(User.id).where(User.tenant_id == actor.tenant_id, User.id == principal_id)
        )
    elif principal_kind == "apikey":
        found = await session.scalar(
            select(ApiKey.id).where(ApiKey.tenant_id == actor.tenant_id, ApiKey.id == principal_id)
        )
    else:
        raise InvalidInput(f"principal kind: one of {list(PRINCIPAL_KINDS)}")
    if found is None:
        raise NotFound(f"no such {'user' if principal_kind == 'user' else 'API key'}")


# --- custom roles ----------------------------------------------------------------------------


def _parse_role_permissions(values: Iterable[str]) -> frozenset[Permission]:
    try:
        parsed = parse_permissions(values)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    if not parsed:
        raise InvalidInput("a role needs at least one permission")
    return parsed


def _description(value: str) -> str:
    value = value.strip()
    if len(value) > MAX_DESCRIPTION:
        raise InvalidInput(f"description: at most {MAX_DESCRIPTION} characters")
    return value


def _role_document(row: CustomRole) -> dict[str, Any]:
    return {
        "name": row.name,
        "description": row.description,
        "permissions": sorted(row.permissions),
    }


async def create_custom_role(
    session: AsyncSession,
    actor: Principal,
    name: str,
    permissions: Iterable[str],
    description: str = "",
) -> AdminChange:
    _ensure_manager(actor)
    if not _ROLE_NAME.fullmatch(name):
        raise InvalidInput(
            "role name: 2-32 characters, lowercase letters, digits, '-' and '_', starting with"
            " a letter"
        )
    if builtin_role(name) is not None:
        raise InvalidInput(f"{name!r} is a built-in role")
    parsed = _parse_role_permissions(permissions)
    description = _description(description)
    _ensure_within(actor, parsed, TENANT_SCOPE, f"cannot create role {name!r}")
    existing = await session.scalar(
        select(CustomRole.id).where(
            CustomRole.tenant_id == actor.tenant_id, CustomRole.name == name
        )
    )
    if existing is not None:
        raise Conflict(f"role {name!r} exists")
    row = CustomRole(
        tenant_id=actor.tenant_id,
        name=name,
        description=description,
        permissions=sorted(parsed),
        created_by_id=actor.id,
    )
    session.add(row)
    try:
        await session.flush()
    except IntegrityError:  # created concurrently under the same name
        raise Conflict(f"role {name!r} exists") from None
    return AdminChange("role.create", {"kind": "role", "id": name}, None, _role_document(row))


async def update_custom_role(
    session: AsyncSession,
    actor: Principal,
    name: str,
    *,
    permissions: Iterable[str] | None = None,
    description: str | None = None,
) -> AdminChange:
    _ensure_manager(actor)
    if builtin_role(name) is not None:
        raise InvalidInput(f"{name!r} is a built-in role and cannot be changed")
    row = await access_custom_role(session, actor, name)
    refusal = f"cannot change role {name!r}"
    # Editing a role one could not grant would change what its holders may do.
    _ensure_within(actor, stored_permissions(row.permissions), TENANT_SCOPE, refusal)
    before = _role_document(row)
    if permissions is not None:
        parsed = _parse_role_permissions(permissions)
        _ensure_within(actor, parsed, TENANT_SCOPE, refusal)
        if parsed & MFA_REQUIRED:
            await _ensure_no_key_holds(session, actor.tenant_id, name)
        row.permissions = sorted(parsed)
    if description is not None:
        row.description = _description(description)
    await session.flush()
    return AdminChange("role.update", {"kind": "role", "id": name}, before, _role_document(row))


async def _ensure_no_key_holds(session: AsyncSession, tenant_id: str, role: str) -> None:
    held_by_key = await session.scalar(
        select(RoleBinding.id)
        .where(
            RoleBinding.tenant_id == tenant_id,
            RoleBinding.role == role,
            RoleBinding.principal_kind == "apikey",
        )
        .limit(1)
    )
    if held_by_key is not None:
        raise InvalidInput(
            f"API keys hold role {role!r}, and administrative permissions need an interactive"
            " session with MFA: revoke the role from those keys first"
        )


async def delete_custom_role(session: AsyncSession, actor: Principal, name: str) -> AdminChange:
    """Deletes the role and every binding of it, so nothing is left that grants it later."""
    _ensure_manager(actor)
    if builtin_role(name) is not None:
        raise InvalidInput(f"{name!r} is a built-in role and cannot be deleted")
    row = await access_custom_role(session, actor, name)
    _ensure_within(
        actor, stored_permissions(row.permissions), TENANT_SCOPE, f"cannot delete role {name!r}"
    )
    bindings = (
        await session.execute(
            select(RoleBinding.principal_kind, RoleBinding.principal_id, RoleBinding.scope)
            .where(RoleBinding.tenant_id == actor.tenant_id, RoleBinding.role == name)
            .order_by(RoleBinding.principal_kind, RoleBinding.principal_id)
        )
    ).all()
    before = {
        **_role_document(row),
        "bindings": [{"kind": kind, "id": pid, "scope": scope} for kind, pid, scope in bindings],
    }
    await session.execute(
        delete(RoleBinding).where(
            RoleBinding.tenant_id == actor.tenant_id, RoleBinding.role == name
        )
    )
    await session.delete(row)
    await session.flush()
    return AdminChange("role.delete", {"kind": "role", "id": name}, before, None)


# --- bindings --------------------------------------------------------------------------------


async def bindings_of(
    session: AsyncSession, tenant_id: str, principal_kind: str, principal_id: str
) -> list[dict[str, str]]:
    rows = await session.execute(
        select(RoleBinding.role, RoleBinding.scope)
        .where(
            RoleBinding.tenant_id == tenant_id,
            RoleBinding.principal_kind == principal_kind,
            RoleBinding.principal_id == principal_id,
        )
        .order_by(RoleBinding.role, RoleBinding.scope)
    )
    return [{"role": role, "scope": scope} for role, scope in rows.all()]


async def grant_role(
    session: AsyncSession,
    actor: Principal,
    principal_kind: str,
    principal_id: str,
    role: str,
    scope: str = TENANT_SCOPE,
) -> AdminChange:
    _ensure_manager(actor)
    scope = parse_scope(scope)
    await access_principal(session, actor, principal_kind, principal_id)
    info = await resolve_role(session, actor.tenant_id, role)
    _ensure_within(actor, info.permissions, scope, f"cannot grant role {role!r}")
    if principal_kind == "apikey":
        ensure_key_assignable(info)
    before = await bindings_of(session, actor.tenant_id, principal_kind, principal_id)
    held = next((b["scope"] for b in before if b["role"] == role), None)
    if held == scope:
        raise Conflict(f"the principal already holds role {role!r} in {scope}")
    if held is not None:
        # One binding per principal and role (the table's unique key), whatever its scope.
        raise Conflict(f"the principal holds role {role!r} in {held}: revoke it there first")
    session.add(
        RoleBinding(
            tenant_id=actor.tenant_id,
            principal_kind=principal_kind,
            principal_id=principal_id,
            role=role,
            scope=scope,
        )
    )
    try:
        await session.flush()
    except IntegrityError:  # granted concurrently
        raise Conflict(f"the principal already holds role {role!r}") from None
    after = await bindings_of(session, actor.tenant_id, principal_kind, principal_id)
    return AdminChange(
        "role.grant",
        {"kind": principal_kind, "id": principal_id},
        before,
        after,
        {"role": role, "scope": scope},
    )


async def revoke_role(
    session: AsyncSession,
    actor: Principal,
    principal_kind: str,
    principal_id: str,
    role: str,
    scope: str = TENANT_SCOPE,
) -> AdminChange:
    _ensure_manager(actor)
    scope = parse_scope(scope)
    await access_principal(session, actor, principal_kind, principal_id)
    binding = await session.scalar(
        select(RoleBinding).where(
            RoleBinding.tenant_id == actor.tenant_id,
            RoleBinding.principal_kind == principal_kind,
            RoleBinding.principal_id == principal_id,
            RoleBinding.role == role,
            RoleBinding.scope == scope,
        )
    )
    if binding is None:
        raise NotFound(f"the principal does not hold role {role!r} in {scope}")
    custom = await custom_role_permissions(session, actor.tenant_id, {role})
    # A role that no longer exists grants nothing, so anyone managing roles may clear it.
    permissions = role_permissions(role, custom) or frozenset()
    _ensure_within(actor, permissions, scope, f"cannot revoke role {role!r}")
    if role == Role.OWNER.value and scope == TENANT_SCOPE and principal_kind == "user":
        await _ensure_another_owner(session, actor.tenant_id, principal_id)
    before = await bindings_of(session, actor.tenant_id, principal_kind, principal_id)
    await session.delete(binding)
    await session.flush()
    after = await bindings_of(session, actor.tenant_id, principal_kind, principal_id)
    return AdminChange(
        "role.revoke",
        {"kind": principal_kind, "id": principal_id},
        before,
        after,
        {"role": role, "scope": scope},
    )


async def _ensure_another_owner(session: AsyncSession, tenant_id: str, leaving: str) -> None:
    # FOR UPDATE: two owners revoking each other at once must not both succeed (MariaDB; SQLite
    # transactions begin IMMEDIATE and so already run one at a time).
    owners = await session.scalars(
        select(RoleBinding.principal_id)
        .join(User, (User.id == RoleBinding.principal_id) & (User.tenant_id == tenant_id))
        .where(
            RoleBinding.tenant_id == tenant_id,
            RoleBinding.principal_kind == "user",
            RoleBinding.role == Role.OWNER.value,
            RoleBinding.scope == TENANT_SCOPE,
            User.status == "active",
        )
        .with_for_update()
    )
    if not set(owners.all()) - {leaving}:
        raise Conflict("a tenant keeps at least one active owner: grant owner to another first")
