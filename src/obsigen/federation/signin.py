"""Signs in an identity an IdP vouched for: finds or provisions the local user, applies the
IdP's group mappings, and starts a session.

The protocol modules (OIDC, SAML) have verified the assertion before this runs; here the rules
are about accounts:

- a known (IdP, subject) pair is that user, whatever e-mail the IdP now sends;
- an unknown subject links to an existing account only when the IdP declares the e-mail's
  domain and the e-mail is verified (otherwise any IdP of the tenant could take over any
  account by asserting its address);
- otherwise a new user is made only with just-in-time provisioning on, and never over an
  existing address;
- a deactivated user (SCIM ``active=false``) cannot sign in;
- the IdP's MFA counts only when the admin trusts it for this IdP.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from obsigen.audit.events import AuditEvent
from obsigen.db.federation_models import ExternalIdentity, IdentityProvider, idp_source
from obsigen.db.models import User
from obsigen.errors import Conflict, Forbidden
from obsigen.federation.group_roles import RoleSync, mapped_roles, sync_roles
from obsigen.federation.idps import email_domain
from obsigen.identity.users import valid_email

# RFC 8176 has no value for "an external IdP authenticated the user"; ours is "fed", and "mfa"
# is added when the IdP's own context proved a second factor and the IdP is trusted for it.
SSO_METHOD = "fed"
IDP_MFA_METHOD = "mfa"


class SsoRefused(Forbidden):
    type_slug = "sso-refused"
    title = "Single sign-on refused"


@dataclass(frozen=True, slots=True)
class FederatedIdentity:
    """What a verified OIDC ID token or SAML assertion says about the user."""

    subject: str
    email: str | None
    email_verified: bool
    display_name: str | None
    groups: tuple[str, ...]
    # The IdP's authentication context proved a second factor (before trust is applied).
    idp_mfa: bool
    protocol: Literal["oidc", "saml"]


@dataclass(frozen=True, slots=True)
class SignInResult:
    user_id: str
    amr: tuple[str, ...]
    provisioned: bool
    linked: bool
    roles: RoleSync


async def _link_or_provision(
    session: AsyncSession, idp: IdentityProvider, identity: FederatedIdentity
) -> tuple[User, bool, bool]:
    email = identity.email.strip().lower() if identity.email else None
    domain_ok = email is not None and email_domain(email) in idp.domains
    existing = None
    if email is not None:
        existing = await session.scalar(
            select(User).where(User.tenant_id == idp.tenant_id, User.email == email)
        )
    if existing is not None:
        if not (domain_ok and identity.email_verified):
            raise SsoRefused(
                "an account with this e-mail exists but this identity provider may not claim it"
                " (its domain is not declared for the IdP, or the e-mail is not verified)"
            )
        return existing, False, True
    if not idp.jit_provisioning:
        raise SsoRefused("no account for this identity and just-in-time provisioning is off")
    if email is None or not valid_email(email):
        raise SsoRefused("the identity provider sent no usable e-mail address")
    user = User(tenant_id=idp.tenant_id, email=email, password_hash=None)
    session.add(user)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict("the account was created concurrently: sign in again") from None
    return user, True, False


async def resolve_user(
    session: AsyncSession, idp: IdentityProvider, identity: FederatedIdentity
) -> SignInResult:
    """Runs inside the caller's transaction; raises SsoRefused when the rules above say no."""
    if not identity.subject or len(identity.subject) > 255:
        raise SsoRefused("the identity provider sent no usable subject")
    link = await session.scalar(
        select(ExternalIdentity).where(
            ExternalIdentity.idp_id == idp.id, ExternalIdentity.subject == identity.subject
        )
    )
    provisioned = linked = False
    if link is not None:
        user = await session.scalar(
            select(User).where(User.tenant_id == idp.tenant_id, User.id == link.user_id)
        )
        if user is None:  # pragma: no cover - the foreign key cascades
            raise SsoRefused("the linked account no longer exists")
    else:
        user, provisioned, linked = await _link_or_provision(session, idp, identity)
        link = ExternalIdentity(
            tenant_id=idp.tenant_id, idp_id=idp.id, subject=identity.subject, user_id=user.id
        )
        session.add(link)
    if user.status != "active":
        raise SsoRefused("this account is deactivated")
    link.last_login_at = datetime.now(UTC)
    source = idp_source(idp.id)
    roles = await mapped_roles(session, idp.tenant_id, source, identity.groups)
    if provisioned and not roles and idp.default_role:
        roles = {idp.default_role}
    sync = await sync_roles(session, idp.tenant_id, user.id, source, roles)
    await session.flush()
    amr: tuple[str, ...] = (SSO_METHOD,)
    if idp.trust_idp_mfa and identity.idp_mfa:
        amr = (SSO_METHOD, IDP_MFA_METHOD)
    return SignInResult(
        user_id=user.id, amr=amr, provisioned=provisioned, linked=linked, roles=sync
    )


def sign_in_events(
    idp: IdentityProvider,
    identity: FederatedIdentity,
    result: SignInResult,
    session_id: str,
    source_address: str | None,
) -> list[AuditEvent]:
    """The audit of a successful sign-in: the login itself, then every role SSO granted or
    took back (actor: the IdP)."""
    actor = {"kind": "user", "id": result.user_id}
    events = [
        AuditEvent(
            type="auth.sso",
            tenant_id=idp.tenant_id,
            actor=actor,
            outcome="success",
            source_address=source_address,
            target={"kind": "idp", "id": idp.id},
            data={
                "protocol": identity.protocol,
                "idp": idp.slug,
                "session_id": session_id,
                "amr": list(result.amr),
                "provisioned": result.provisioned,
                "linked": result.linked,
                "groups": list(identity.groups)[:50],
            },
        )
    ]
    events.extend(result.roles.events(idp.tenant_id, {"kind": "idp", "id": idp.id}, source_address))
    return events


def refusal_event(
    idp: IdentityProvider, protocol: str, reason: str, source_address: str | None
) -> AuditEvent:
    return AuditEvent(
        type="auth.sso",
        tenant_id=idp.tenant_id,
        actor={"kind": "anonymous", "id": "-"},
        outcome="failure",
        source_address=source_address,
        target={"kind": "idp", "id": idp.id},
        data={"protocol": protocol, "idp": idp.slug, "reason": reason[:300]},
    )
