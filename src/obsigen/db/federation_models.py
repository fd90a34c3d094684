"""Tables of federation: the tenants' identity providers, group-to-role mappings, and which
external subject is which local user."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from obsigen.db.base import Base, TenantScoped, UTCDateTime, utcnow


class IdentityProvider(TenantScoped, Base):
    """One OIDC or SAML identity provider of a tenant. ``config`` holds the protocol's settings
    (``obsigen.federation.idps.OidcConfig`` / ``SamlConfig``), validated on every write; a
    client secret appears there only as a reference, never as a value."""

    __tablename__ = "identity_providers"
    __table_args__ = (UniqueConstraint("tenant_id", "slug"),)

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    slug: Mapped[str] = mapped_column(String(64))
    protocol: Mapped[str] = mapped_column(String(8))  # "oidc" | "saml"
    display_name: Mapped[str] = mapped_column(String(100))
    # E-mail domains this IdP answers for: the login page discovers IdPs by them, and only an
    # IdP that declares a domain may link to an existing account of that domain.
    domains: Mapped[list[str]] = mapped_column(JSON, default=list)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Just-in-time provisioning: an unknown subject becomes a user at its first login.
    jit_provisioning: Mapped[bool] = mapped_column(Boolean, default=False)
    # Whether the IdP's authentication context (OIDC amr/acr, SAML AuthnContextClassRef)
    # may count as the second factor that administrative roles need.
    trust_idp_mfa: Mapped[bool] = mapped_column(Boolean, default=False)
    # The role a just-provisioned user gets when none of its groups maps to a role.
    default_role: Mapped[str | None] = mapped_column(String(32), default=None)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class GroupRoleMapping(TenantScoped, Base):
    """External group -> role. ``source`` is ``idp:<identity provider id>`` (an OIDC groups claim
    or a SAML attribute value) or ``scim`` (a SCIM group's displayName)."""

    __tablename__ = "group_role_mappings"
    __table_args__ = (UniqueConstraint("tenant_id", "source", "group_name", "role"),)

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(40))
    group_name: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(32))


class ExternalIdentity(TenantScoped, Base):
    """The subject an IdP asserts (OIDC ``sub``, SAML NameID) bound to one local user."""

    __tablename__ = "external_identities"
    __table_args__ = (UniqueConstraint("idp_id", "subject"),)

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    idp_id: Mapped[str] = mapped_column(ForeignKey("identity_providers.id", ondelete="CASCADE"))
    subject: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


# Where a role binding came from, so a sync can take back what it granted and nothing else.
LOCAL_SOURCE = "local"
SCIM_SOURCE = "scim"


def idp_source(idp_id: str) -> str:
    return f"idp:{idp_id}"


__all__ = [
    "LOCAL_SOURCE",
    "SCIM_SOURCE",
    "ExternalIdentity",
    "GroupRoleMapping",
    "IdentityProvider",
    "idp_source",
]
