"""RBAC on SQLite and MariaDB, through the library: principals from bindings, custom roles,
escalation refused, the last owner kept, workspace scopes, and the API key rules."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import pytest
from sqlalchemy import event, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from obsigen.authz.permissions import MFA_REQUIRED, ROLE_PERMISSIONS, Permission, Role
from obsigen.authz.principal import Principal
from obsigen.authz.roles import (
    create_custom_role,
    delete_custom_role,
    grant_role,
    list_roles,
    revoke_role,
    update_custom_role,
)
from obsigen.db.base import utcnow
from obsigen.db.models import ApiKey, RoleBinding, Tenant, User
from obsigen.errors import Conflict, Forbidden, InvalidInput, MfaRequired, NotFound
from obsigen.identity.apikeys import CreatedApiKey, authenticate_api_key, create_api_key
from obsigen.identity.principals import load_principal
from obsigen.identity.tenants import create_tenant
from obsigen.identity.users import create_user, list_users

T = TypeVar("T")
Sessions = async_sessionmaker[AsyncSession]


@dataclass
class Tenancy:
    """One fresh tenant and shortcuts to make its users and act as them."""

    sessions: Sessions
    tenant: Tenant

    @property
    def id(self) -> str:
        return self.tenant.id

    async def run(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        async with self.sessions.begin() as session:
            return await work(session)

    async def user(self, role: Role = Role.MEMBER) -> str:
        email = f"u-{uuid.uuid4().hex[:10]}@example.eu"
        created = await self.run(lambda s: create_user(s, self.tenant, email, role, None))
        return created.user.id

    async def principal(self, user_id: str, *, mfa: bool = True) -> Principal:
        return await self.run(lambda s: load_principal(s, self.id, "user", user_id, mfa=mfa))

    async def actor(self, role: Role, *, mfa: bool = True) -> Principal:
        return await self.principal(await self.user(role), mfa=mfa)

    async def key(self, role: str) -> CreatedApiKey:
        return await self.run(lambda s: create_api_key(s, self.tenant, "svc", role, None))


async def _tenancy(sessions: Sessions) -> Tenancy:
    async with sessions.begin() as session:
        tenant = await create_tenant(session, f"rbac-{uuid.uuid4().hex[:10]}")
    return Tenancy(sessions, tenant)


@pytest.fixture
async def acme(sessions: Sessions) -> Tenancy:
    return await _tenancy(sessions)


@pytest.fixture
async def globex(sessions: Sessions) -> Tenancy:
    return await _tenancy(sessions)


@contextmanager
def counting_selects(sessions: Sessions) -> Iterator[list[str]]:
    engine = sessions.kw["bind"].sync_engine
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


# --- principals from bindings ----------------------------------------------------------------


async def test_builtin_roles_load_with_one_query(acme: Tenancy) -> None:
    user_id = await acme.user(Role.AUDITOR)
    with counting_selects(acme.sessions) as selects:
        principal = await acme.principal(user_id, mfa=True)
    assert len(selects) == 1
    assert principal.roles == {"auditor"}
    assert principal.permissions == ROLE_PERMISSIONS[Role.AUDITOR]
    assert principal.mfa is True


async def test_custom_and_workspace_roles_load_with_two_queries(acme: Tenancy) -> None:
    owner = await acme.actor(Role.OWNER)
    user_id = await acme.user(Role.VIEWER)
    await acme.run(
        lambda s: create_custom_role(s, owner, "auditing", ["tenant:audit:read"], "read audit")
    )
    await acme.run(lambda s: create_custom_role(s, owner, "coder", ["tenant:code:run"]))
    await acme.run(lambda s: grant_role(s, owner, "user", user_id, "auditing"))
    await acme.run(lambda s: grant_role(s, owner, "user", user_id, "coder", "workspace:w1"))
    await acme.run(lambda s: grant_role(s, owner, "user", user_id, "member", "workspace:w2"))

    with counting_selects(acme.sessions) as selects:
        principal = await acme.run(
            lambda s: load_principal(
                s, acme.id, "user", user_id, mfa=True, session_id="sid", amr=["pwd", "otp"]
            )
        )

    assert len(selects) == 2
    assert principal.roles == {"viewer", "auditing"}
    assert principal.permissions == ROLE_PERMISSIONS[Role.VIEWER] | {Permission.AUDIT_READ}
    assert principal.workspace_grants == {
        "w1": {Permission.CODE_RUN},
        "w2": ROLE_PERMISSIONS[Role.MEMBER],
    }
    assert (principal.session_id, principal.amr) == ("sid", ("pwd", "otp"))
    assert principal.can(Permission.CODE_RUN, workspace="w1")
    assert principal.can(Permission.CHAT_COMPLETIONS_CREATE, workspace="w2")
    assert not principal.can(Permission.CODE_RUN, workspace="w3")
    assert not principal.can(Permission.CODE_RUN)
    assert not principal.can(Permission.CHAT_COMPLETIONS_CREATE, workspace="w1")


async def test_a_binding_to_a_role_that_no_longer_exists_grants_nothing(acme: Tenancy) -> None:
    user_id = await acme.user(Role.VIEWER)
    async with acme.sessions.begin() as session:
        session.add(
            RoleBinding(tenant_id=acme.id, principal_kind="user", principal_id=user_id, role="gone")
        )
        session.add(
            RoleBinding(
                tenant_id=acme.id,
                principal_kind="user",
                principal_id=user_id,
                role="admin",
                scope="galaxy:far-away",
            )
        )
    principal = await acme.principal(user_id)
    assert principal.roles == {"viewer"}
    assert principal.permissions == ROLE_PERMISSIONS[Role.VIEWER]
    assert principal.workspace_grants == {}


async def test_another_tenants_custom_role_of_the_same_name_grants_nothing(
    acme: Tenancy, globex: Tenancy
) -> None:
    foreign_owner = await globex.actor(Role.OWNER)
    await globex.run(lambda s: create_custom_role(s, foreign_owner, "ops", ["tenant:audit:read"]))
    user_id = await acme.user(Role.VIEWER)
    async with acme.sessions.begin() as session:
        session.add(
            RoleBinding(tenant_id=acme.id, principal_kind="user", principal_id=user_id, role="ops")
        )
    assert Permission.AUDIT_READ not in (await acme.principal(user_id)).permissions


async def test_an_unknown_principal_kind_is_refused(acme: Tenancy) -> None:
    with pytest.raises(ValueError, match="principal kind"):
        await acme.run(lambda s: load_principal(s, acme.id, "robot", "x"))


# --- custom roles ----------------------------------------------------------------------------


async def test_custom_role_lifecycle(acme: Tenancy) -> None:
    admin = await acme.actor(Role.ADMIN)
    user_id = await acme.user(Role.VIEWER)

    created = await acme.run(
        lambda s: create_custom_role(
            s, admin, "support", ["tenant:users:read", "tenant:chat:create"], "helpdesk"
        )
    )
    assert created.action == "role.create"
    assert created.before is None
    assert created.after == {
        "name": "support",
        "description": "helpdesk",
        "permissions": ["tenant:chat:create", "tenant:users:read"],
    }
    listed = {role.name: role for role in await acme.run(lambda s: list_roles(s, acme.id))}
    assert set(listed) == {"owner", "admin", "auditor", "member", "viewer", "support"}
    assert listed["support"].builtin is False
    assert listed["support"].needs_mfa is True  # users:read is administrative

    await acme.run(lambda s: grant_role(s, admin, "user", user_id, "support"))
    assert Permission.USERS_READ in (await acme.principal(user_id)).permissions

    updated = await acme.run(
        lambda s: update_custom_role(s, admin, "support", permissions=["tenant:chat:create"])
    )
    assert updated.before["permissions"] == ["tenant:chat:create", "tenant:users:read"]
    assert updated.after["permissions"] == ["tenant:chat:create"]
    assert updated.after["description"] == "helpdesk"
    principal = await acme.principal(user_id)
    assert Permission.USERS_READ not in principal.permissions
    assert Permission.CHAT_COMPLETIONS_CREATE in principal.permissions

    deleted = await acme.run(lambda s: delete_custom_role(s, admin, "support"))
    assert deleted.after is None
    assert deleted.before["bindings"] == [{"kind": "user", "id": user_id, "scope": "tenant"}]
    principal = await acme.principal(user_id)
    assert principal.roles == {"viewer"}
    async with acme.sessions() as session:
        left = await session.scalar(
            select(RoleBinding.id).where(
                RoleBinding.tenant_id == acme.id, RoleBinding.role == "support"
            )
        )
    assert left is None


@pytest.mark.parametrize(
    ("name", "permissions", "error", "message"),
    [
        ("admin", ["tenant:chat:create"], InvalidInput, "built-in"),
        ("Support Team", ["tenant:chat:create"], InvalidInput, "role name"),
        ("x", ["tenant:chat:create"], InvalidInput, "role name"),
        ("support", ["tenant:chat:destroy"], InvalidInput, "unknown permission"),
        ("support", [], InvalidInput, "at least one"),
    ],
)
async def test_custom_role_definitions_are_validated(
    acme: Tenancy, name: str, permissions: list[str], error: type[Exception], message: str
) -> None:
    admin = await acme.actor(Role.ADMIN)
    with pytest.raises(error, match=message):
        await acme.run(lambda s: create_custom_role(s, admin, name, permissions))


async def test_custom_role_names_are_unique_per_tenant(acme: Tenancy, globex: Tenancy) -> None:
    admin = await acme.actor(Role.ADMIN)
    await acme.run(lambda s: create_custom_role(s, admin, "ops", ["tenant:models:read"]))
    with pytest.raises(Conflict):
        await acme.run(lambda s: create_custom_role(s, admin, "ops", ["tenant:models:read"]))
    other = await globex.actor(Role.ADMIN)
    await globex.run(lambda s: create_custom_role(s, other, "ops", ["tenant:models:read"]))


async def test_builtin_roles_cannot_be_changed_or_deleted(acme: Tenancy) -> None:
    owner = await acme.actor(Role.OWNER)
    with pytest.raises(InvalidInput, match="built-in"):
        await acme.run(lambda s: update_custom_role(s, owner, "member", permissions=[]))
    with pytest.raises(InvalidInput, match="built-in"):
        await acme.run(lambda s: delete_custom_role(s, owner, "viewer"))


async def test_another_tenants_custom_role_is_not_found(acme: Tenancy, globex: Tenancy) -> None:
    foreign = await globex.actor(Role.ADMIN)
    await globex.run(lambda s: create_custom_role(s, foreign, "theirs", ["tenant:models:read"]))
    admin = await acme.actor(Role.ADMIN)
    with pytest.raises(NotFound):
        await acme.run(lambda s: update_custom_role(s, admin, "theirs", description="mine"))
    with pytest.raises(NotFound):
        await acme.run(lambda s: delete_custom_role(s, admin, "theirs"))
    user_id = await acme.user()
    with pytest.raises(NotFound):
        await acme.run(lambda s: grant_role(s, admin, "user", user_id, "theirs"))


# --- escalation ------------------------------------------------------------------------------


async def test_admin_cannot_create_a_role_with_permissions_it_lacks(acme: Tenancy) -> None:
    admin = await acme.actor(Role.ADMIN)
    with pytest.raises(Forbidden, match="tenant:keys:manage"):
        await acme.run(lambda s: create_custom_role(s, admin, "keyholder", ["tenant:keys:manage"]))
    owner = await acme.actor(Role.OWNER)
    await acme.run(lambda s: create_custom_role(s, owner, "keyholder", ["tenant:keys:manage"]))
    with pytest.raises(Forbidden):
        await acme.run(
            lambda s: update_custom_role(s, admin, "keyholder", permissions=["tenant:chat:create"])
        )
    with pytest.raises(Forbidden):
        await acme.run(lambda s: delete_custom_role(s, admin, "keyholder"))
    # Nor may an admin widen a role it could grant into one it could not.
    await acme.run(lambda s: create_custom_role(s, admin, "helper", ["tenant:chat:create"]))
    with pytest.raises(Forbidden, match="tenant:settings:manage"):
        await acme.run(
            lambda s: update_custom_role(s, admin, "helper", permissions=["tenant:settings:manage"])
        )


async def test_only_an_owner_grants_or_revokes_owner(acme: Tenancy) -> None:
    admin = await acme.actor(Role.ADMIN)
    owner = await acme.actor(Role.OWNER)
    user_id = await acme.user()
    with pytest.raises(Forbidden, match="cannot grant role 'owner'"):
        await acme.run(lambda s: grant_role(s, admin, "user", user_id, "owner"))
    with pytest.raises(Forbidden, match="cannot grant role 'owner'"):
        await acme.run(lambda s: grant_role(s, admin, "user", admin.id, "owner"))
    await acme.run(lambda s: grant_role(s, owner, "user", user_id, "owner"))
    with pytest.raises(Forbidden, match="cannot revoke role 'owner'"):
        await acme.run(lambda s: revoke_role(s, admin, "user", user_id, "owner"))
    # An admin still manages what it holds itself, also on an owner.
    await acme.run(lambda s: revoke_role(s, admin, "user", user_id, "member"))


@pytest.mark.parametrize("role", [Role.MEMBER, Role.AUDITOR, Role.VIEWER])
async def test_roles_without_roles_manage_change_nothing(acme: Tenancy, role: Role) -> None:
    actor = await acme.actor(role)
    user_id = await acme.user()
    with pytest.raises(Forbidden, match="tenant:roles:manage"):
        await acme.run(lambda s: grant_role(s, actor, "user", user_id, "viewer"))
    with pytest.raises(Forbidden, match="tenant:roles:manage"):
        await acme.run(lambda s: create_custom_role(s, actor, "mine", ["tenant:models:read"]))


async def test_role_management_needs_a_second_factor(acme: Tenancy) -> None:
    admin = await acme.actor(Role.ADMIN, mfa=False)
    user_id = await acme.user()
    with pytest.raises(MfaRequired):
        await acme.run(lambda s: grant_role(s, admin, "user", user_id, "viewer"))


async def test_workspace_grants_are_within_the_actors_reach(acme: Tenancy) -> None:
    admin = await acme.actor(Role.ADMIN)
    user_id = await acme.user(Role.VIEWER)
    change = await acme.run(
        lambda s: grant_role(s, admin, "user", user_id, "member", "workspace:w1")
    )
    assert change.details == {"role": "member", "scope": "workspace:w1"}
    assert change.after == [
        {"role": "member", "scope": "workspace:w1"},
        {"role": "viewer", "scope": "tenant"},
    ]
    with pytest.raises(Forbidden):
        await acme.run(lambda s: grant_role(s, admin, "user", user_id, "owner", "workspace:w1"))
    with pytest.raises(InvalidInput, match="scope"):
        await acme.run(lambda s: grant_role(s, admin, "user", user_id, "auditor", "everywhere"))
    # One binding per principal and role: the same role in another scope is a conflict.
    with pytest.raises(Conflict, match="workspace:w1"):
        await acme.run(lambda s: grant_role(s, admin, "user", user_id, "member"))
    with pytest.raises(NotFound):
        await acme.run(lambda s: revoke_role(s, admin, "user", user_id, "member", "workspace:w2"))
    await acme.run(lambda s: revoke_role(s, admin, "user", user_id, "member", "workspace:w1"))
    assert (await acme.principal(user_id)).workspace_grants == {}


async def test_grants_only_reach_principals_of_the_actors_tenant(
    acme: Tenancy, globex: Tenancy
) -> None:
    admin = await acme.actor(Role.ADMIN)
    stranger = await globex.user()
    with pytest.raises(NotFound):
        await acme.run(lambda s: grant_role(s, admin, "user", stranger, "viewer"))
    with pytest.raises(NotFound):
        await acme.run(lambda s: revoke_role(s, admin, "user", stranger, "member"))
    with pytest.raises(NotFound):
        await acme.run(lambda s: grant_role(s, admin, "user", uuid.uuid4().hex, "viewer"))
    user_id = await acme.user()
    with pytest.raises(NotFound, match="no role named"):
        await acme.run(lambda s: grant_role(s, admin, "user", user_id, "superuser"))
    with pytest.raises(Conflict, match="already holds"):
        await acme.run(lambda s: grant_role(s, admin, "user", user_id, "member"))


# --- the last owner --------------------------------------------------------------------------


async def test_the_last_owner_cannot_be_removed(acme: Tenancy) -> None:
    first = await acme.actor(Role.OWNER)
    with pytest.raises(Conflict, match="at least one active owner"):
        await acme.run(lambda s: revoke_role(s, first, "user", first.id, "owner"))

    second = await acme.actor(Role.OWNER)
    await acme.run(lambda s: revoke_role(s, second, "user", first.id, "owner"))
    with pytest.raises(Conflict, match="at least one active owner"):
        await acme.run(lambda s: revoke_role(s, second, "user", second.id, "owner"))


async def test_a_disabled_owner_does_not_count(acme: Tenancy) -> None:
    owner = await acme.actor(Role.OWNER)
    disabled = await acme.user(Role.OWNER)
    async with acme.sessions.begin() as session:
        await session.execute(update(User).where(User.id == disabled).values(status="disabled"))
    with pytest.raises(Conflict):
        await acme.run(lambda s: revoke_role(s, owner, "user", owner.id, "owner"))
    # Removing the disabled one's role leaves the active owner in place.
    await acme.run(lambda s: revoke_role(s, owner, "user", disabled, "owner"))


# --- API keys --------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [r for r in Role if ROLE_PERMISSIONS[r] & MFA_REQUIRED])
async def test_api_keys_refuse_administrative_roles(acme: Tenancy, role: Role) -> None:
    with pytest.raises(InvalidInput, match="interactive session with MFA"):
        await acme.key(role.value)
    async with acme.sessions() as session:
        assert await session.scalar(select(ApiKey.id).where(ApiKey.tenant_id == acme.id)) is None


async def test_api_keys_take_custom_roles_without_admin_permissions(acme: Tenancy) -> None:
    admin = await acme.actor(Role.ADMIN)
    await acme.run(
        lambda s: create_custom_role(
            s, admin, "batch", ["tenant:chat:create", "tenant:models:read"]
        )
    )
    await acme.run(lambda s: create_custom_role(s, admin, "peek", ["tenant:audit:read"]))
    created = await acme.key("batch")
    async with acme.sessions() as session:
        principal = await authenticate_api_key(session, created.key)
    assert principal is not None
    assert principal.kind == "apikey"
    assert principal.permissions == {Permission.CHAT_COMPLETIONS_CREATE, Permission.MODELS_READ}
    with pytest.raises(InvalidInput, match="tenant:audit:read"):
        await acme.key("peek")
    with pytest.raises(InvalidInput, match="unknown role 'nope'"):
        await acme.key("nope")

    key_id = created.api_key.id
    # Later changes cannot sneak administrative permissions onto the key either.
    with pytest.raises(InvalidInput, match="API keys hold role 'batch'"):
        await acme.run(
            lambda s: update_custom_role(s, admin, "batch", permissions=["tenant:audit:read"])
        )
    with pytest.raises(InvalidInput, match="MFA"):
        await acme.run(lambda s: grant_role(s, admin, "apikey", key_id, "admin"))
    with pytest.raises(InvalidInput, match="MFA"):
        await acme.run(lambda s: grant_role(s, admin, "apikey", key_id, "peek"))
    await acme.run(lambda s: grant_role(s, admin, "apikey", key_id, "viewer"))


async def test_api_keys_always_expire_within_the_maximum(acme: Tenancy) -> None:
    before = utcnow()
    default = await acme.run(
        lambda s: create_api_key(s, acme.tenant, "svc", "member", None, max_age=timedelta(days=30))
    )
    assert default.api_key.expires_at is not None
    assert before + timedelta(days=30) <= default.api_key.expires_at
    assert default.api_key.expires_at <= utcnow() + timedelta(days=30)
    with pytest.raises(InvalidInput, match="at most 30 days"):
        await acme.run(
            lambda s: create_api_key(
                s, acme.tenant, "svc", "member", timedelta(days=31), max_age=timedelta(days=30)
            )
        )
    short = await acme.run(
        lambda s: create_api_key(s, acme.tenant, "svc", Role.VIEWER, timedelta(hours=1))
    )
    async with acme.sessions() as session:
        assert await authenticate_api_key(session, short.key) is not None
        later = utcnow() + timedelta(hours=2)
        assert await authenticate_api_key(session, short.key, now=later) is None


async def test_a_key_without_expiry_ends_at_the_maximum_age(acme: Tenancy) -> None:
    created = await acme.key("member")
    async with acme.sessions.begin() as session:
        await session.execute(
            update(ApiKey)
            .where(ApiKey.id == created.api_key.id)
            .values(expires_at=None, created_at=utcnow() - timedelta(days=400))
        )
    async with acme.sessions() as session:
        assert await authenticate_api_key(session, created.key) is None
        assert (
            await authenticate_api_key(session, created.key, max_age=timedelta(days=500))
            is not None
        )


# --- users -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "enrolled"),
    [
        (Role.OWNER, True),
        (Role.ADMIN, True),
        (Role.AUDITOR, True),
        (Role.MEMBER, False),
        (Role.VIEWER, False),
    ],
)
async def test_users_whose_role_needs_mfa_get_totp(
    acme: Tenancy, role: Role, enrolled: bool
) -> None:
    email = f"{role.value}-{uuid.uuid4().hex[:6]}@example.eu"
    created = await acme.run(lambda s: create_user(s, acme.tenant, email, role, None))
    assert (created.otpauth_uri is not None) is enrolled
    assert (created.user.totp_secret is not None) is enrolled


async def test_users_are_listed_with_their_bindings(acme: Tenancy, globex: Tenancy) -> None:
    admin = await acme.actor(Role.ADMIN)
    user_id = await acme.user(Role.VIEWER)
    await acme.run(lambda s: grant_role(s, admin, "user", user_id, "member", "workspace:w9"))
    await globex.user()
    listed = await acme.run(lambda s: list_users(s, acme.id))
    assert {item.user.id for item in listed} == {admin.id, user_id}
    by_id = {item.user.id: item for item in listed}
    assert by_id[user_id].bindings == (("member", "workspace:w9"), ("viewer", "tenant"))
    first = await acme.run(lambda s: list_users(s, acme.id, limit=1))
    rest = await acme.run(lambda s: list_users(s, acme.id, after=first[0].user.email))
    assert [item.user.id for item in first + rest] == [item.user.id for item in listed]
