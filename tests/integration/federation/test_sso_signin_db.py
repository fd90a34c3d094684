"""The account rules of SSO sign-in (obsigen.federation.signin) on the real databases: who is
linked, who is provisioned, who is refused, and which roles the IdP's groups give and take."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select
from tests.conftest import Platform

from obsigen.authz.permissions import Role
from obsigen.db.federation_models import GroupRoleMapping, IdentityProvider, idp_source
from obsigen.db.models import RoleBinding, Tenant, User
from obsigen.federation.signin import FederatedIdentity, SignInResult, SsoRefused, resolve_user
from obsigen.identity.tenants import tenant_by_name
from obsigen.identity.users import create_user

pytestmark = pytest.mark.asyncio


def identity(
    subject: str = "sub-1",
    email: str | None = "ana@corp.example.eu",
    *,
    verified: bool = True,
    groups: tuple[str, ...] = (),
    idp_mfa: bool = False,
) -> FederatedIdentity:
    return FederatedIdentity(
        subject=subject,
        email=email,
        email_verified=verified,
        display_name="Ana",
        groups=groups,
        idp_mfa=idp_mfa,
        protocol="oidc",
    )


async def make_idp(platform: Platform, **fields: Any) -> IdentityProvider:
    tenant_name = await platform.tenant()
    async with platform.services.sessions.begin() as session:
        tenant = await tenant_by_name(session, tenant_name)
        idp = IdentityProvider(
            tenant_id=tenant.id,
            slug="corp",
            protocol="oidc",
            display_name="Corp",
            domains=["corp.example.eu"],
            config={"issuer": "https://idp.corp.example.eu", "client_id": "obsigen"},
            **fields,
        )
        session.add(idp)
    return idp


async def sign_in(
    platform: Platform, idp: IdentityProvider, who: FederatedIdentity
) -> SignInResult:
    async with platform.services.sessions.begin() as session:
        return await resolve_user(session, idp, who)


async def map_group(platform: Platform, idp: IdentityProvider, group: str, role: str) -> None:
    async with platform.services.sessions.begin() as session:
        session.add(
            GroupRoleMapping(
                tenant_id=idp.tenant_id, source=idp_source(idp.id), group_name=group, role=role
            )
        )


async def roles_of(platform: Platform, user_id: str) -> dict[str, str]:
    async with platform.services.sessions() as session:
        rows = await session.execute(
            select(RoleBinding.role, RoleBinding.source).where(
                RoleBinding.principal_kind == "user", RoleBinding.principal_id == user_id
            )
        )
        return dict(rows.all())


async def test_unknown_subject_without_jit_is_refused(platform: Platform) -> None:
    idp = await make_idp(platform)
    with pytest.raises(SsoRefused, match="just-in-time"):
        await sign_in(platform, idp, identity())


async def test_jit_provisions_once_and_the_subject_stays_bound(platform: Platform) -> None:
    idp = await make_idp(platform, jit_provisioning=True, default_role="member")
    first = await sign_in(platform, idp, identity())
    assert first.provisioned
    assert first.amr == ("fed",)
    assert await roles_of(platform, first.user_id) == {"member": idp_source(idp.id)}
    # The IdP now sends another address: the subject, not the e-mail, names the account.
    again = await sign_in(platform, idp, identity(email="ana.new@corp.example.eu"))
    assert again.user_id == first.user_id
    assert not again.provisioned


async def test_jit_never_takes_over_an_existing_address_of_an_undeclared_domain(
    platform: Platform,
) -> None:
    idp = await make_idp(platform, jit_provisioning=True)
    email = f"boss-{uuid.uuid4().hex[:6]}@elsewhere.example.eu"
    tenant = await _tenant(platform, idp)
    async with platform.services.sessions.begin() as session:
        await create_user(session, tenant, email, Role.OWNER, "a-long-password-123")
    with pytest.raises(SsoRefused, match="may not claim"):
        await sign_in(platform, idp, identity(email=email))


async def _tenant(platform: Platform, idp: IdentityProvider) -> Tenant:
    async with platform.services.sessions() as session:
        return await session.get_one(Tenant, idp.tenant_id)


async def test_existing_account_links_only_with_a_declared_domain_and_a_verified_email(
    platform: Platform,
) -> None:
    idp = await make_idp(platform)
    tenant = await _tenant(platform, idp)
    async with platform.services.sessions.begin() as session:
        created = await create_user(
            session, tenant, "ana@corp.example.eu", Role.MEMBER, "a-long-password-123"
        )
    with pytest.raises(SsoRefused, match="may not claim"):
        await sign_in(platform, idp, identity(verified=False))
    linked = await sign_in(platform, idp, identity())
    assert linked.linked
    assert linked.user_id == created.user.id


async def test_groups_grant_and_take_back_only_what_sso_granted(platform: Platform) -> None:
    idp = await make_idp(platform, jit_provisioning=True)
    await map_group(platform, idp, "staff", "member")
    await map_group(platform, idp, "audit", "auditor")
    first = await sign_in(platform, idp, identity(groups=("staff", "audit", "unmapped")))
    assert first.roles.granted == ["auditor", "member"]
    source = idp_source(idp.id)
    assert await roles_of(platform, first.user_id) == {"auditor": source, "member": source}

    # An admin grants viewer by hand; SSO must never remove it.
    async with platform.services.sessions.begin() as session:
        session.add(
            RoleBinding(
                tenant_id=idp.tenant_id,
                principal_kind="user",
                principal_id=first.user_id,
                role="viewer",
            )
        )
    later = await sign_in(platform, idp, identity(groups=("staff",)))
    assert later.roles.revoked == ["auditor"]
    assert later.roles.granted == []
    assert await roles_of(platform, first.user_id) == {"member": source, "viewer": "local"}
    events = later.roles.events(idp.tenant_id, {"kind": "idp", "id": idp.id})
    assert [(e.data["action"], e.data["role"]) for e in events] == [("role.revoke", "auditor")]


async def test_a_deactivated_account_cannot_sign_in(platform: Platform) -> None:
    idp = await make_idp(platform, jit_provisioning=True)
    first = await sign_in(platform, idp, identity())
    async with platform.services.sessions.begin() as session:
        user = await session.get_one(User, first.user_id)
        user.status = "inactive"
    with pytest.raises(SsoRefused, match="deactivated"):
        await sign_in(platform, idp, identity())


@pytest.mark.parametrize(
    ("trusted", "idp_mfa", "amr"),
    [(False, True, ("fed",)), (True, False, ("fed",)), (True, True, ("fed", "mfa"))],
)
async def test_idp_mfa_counts_only_when_trusted(
    platform: Platform, trusted: bool, idp_mfa: bool, amr: tuple[str, ...]
) -> None:
    idp = await make_idp(platform, jit_provisioning=True, trust_idp_mfa=trusted)
    result = await sign_in(platform, idp, identity(idp_mfa=idp_mfa))
    assert result.amr == amr


async def test_sso_does_not_strip_the_last_owner(platform: Platform) -> None:
    idp = await make_idp(platform, jit_provisioning=True)
    await map_group(platform, idp, "it", "owner")
    first = await sign_in(platform, idp, identity(groups=("it",)))
    assert "owner" in await roles_of(platform, first.user_id)
    later = await sign_in(platform, idp, identity(groups=()))
    assert later.roles.kept == ["owner"]
    assert "owner" in await roles_of(platform, first.user_id)


async def test_a_missing_subject_or_email_is_refused(platform: Platform) -> None:
    idp = await make_idp(platform, jit_provisioning=True)
    with pytest.raises(SsoRefused, match="subject"):
        await sign_in(platform, idp, identity(subject=""))
    with pytest.raises(SsoRefused, match="e-mail"):
        await sign_in(platform, idp, identity(subject="s2", email=None))
