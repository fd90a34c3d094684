"""Tables of SCIM 2.0 provisioning (RFC 7643/7644): the bearer tokens an IdP provisions with,
the SCIM view of users (the attributes the platform's ``users`` row does not hold), their
e-mail addresses (searchable), and groups with their members.

A SCIM user is a platform ``users`` row plus one ``scim_users`` row; its SCIM ``id`` is the
user's id. Attributes that are neither searched nor used by the platform live in
``attributes`` (the resource as the IdP last wrote it), so they round-trip unchanged.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from obsigen.db.base import Base, TenantScoped, UTCDateTime, utcnow


class ScimToken(TenantScoped, Base):
    """A SCIM bearer token of one tenant: ``scim_<lookup>_<secret>``, the secret stored only
    as its SHA-256 digest."""

    __tablename__ = "scim_tokens"

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    lookup: Mapped[str] = mapped_column(String(24), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class ScimUser(TenantScoped, Base):
    """The SCIM side of one platform user."""

    __tablename__ = "scim_users"
    __table_args__ = (UniqueConstraint("user_name_key", "tenant_id"),)

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    user_name: Mapped[str] = mapped_column(String(255))
    # userName is unique without regard to case (RFC 7643 caseExact false): lower-cased here.
    user_name_key: Mapped[str] = mapped_column(String(255))
    external_id: Mapped[str | None] = mapped_column(String(255), default=None)
    given_name: Mapped[str | None] = mapped_column(String(255), default=None)
    family_name: Mapped[str | None] = mapped_column(String(255), default=None)
    display_name: Mapped[str | None] = mapped_column(String(255), default=None)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # meta.version (the ETag): bumped by every write.
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ScimUserEmail(TenantScoped, Base):
    """One of a SCIM user's ``emails``, kept as rows so filters can search them."""

    __tablename__ = "scim_user_emails"

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    value: Mapped[str] = mapped_column(String(254))
    type: Mapped[str | None] = mapped_column(String(64), default=None)
    primary: Mapped[bool] = mapped_column(Boolean, default=False)


class ScimGroup(TenantScoped, Base):
    __tablename__ = "scim_groups"
    __table_args__ = (UniqueConstraint("display_name_key", "tenant_id"),)

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    display_name: Mapped[str] = mapped_column(String(255))
    display_name_key: Mapped[str] = mapped_column(String(255))
    external_id: Mapped[str | None] = mapped_column(String(255), default=None)
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ScimGroupMember(TenantScoped, Base):
    """A user in a SCIM group (groups hold users only; nested groups are refused)."""

    __tablename__ = "scim_group_members"
    __table_args__ = (UniqueConstraint("group_id", "user_id"),)

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    group_id: Mapped[str] = mapped_column(ForeignKey("scim_groups.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # members.display as the IdP sent it (shown back as sent; the user's name otherwise).
    display: Mapped[str | None] = mapped_column(String(255), default=None)


__all__ = ["ScimGroup", "ScimGroupMember", "ScimToken", "ScimUser", "ScimUserEmail"]
