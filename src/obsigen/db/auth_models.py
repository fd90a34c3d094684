"""Tables of authentication and authorisation: second factors and the tenants' custom roles."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from obsigen.db.base import Base, IdColumn, TenantScoped, UTCDateTime


class WebAuthnCredential(TenantScoped, Base):
    """A registered authenticator (security key or platform passkey) of one user."""

    __tablename__ = "webauthn_credentials"
    # MariaDB cannot index a 1400-character column: the unique key is over its SHA-256.
    __table_args__ = (UniqueConstraint("credential_hash"),)

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # base64url of the authenticator's credential id (at most 1023 bytes raw).
    credential_id: Mapped[str] = mapped_column(Text)
    credential_hash: Mapped[str] = mapped_column(String(64))
    # base64url COSE public key.
    public_key: Mapped[str] = mapped_column(Text)
    sign_count: Mapped[int] = mapped_column(Integer, default=0)
    transports: Mapped[list[str]] = mapped_column(JSON, default=list)
    name: Mapped[str] = mapped_column(String(100), default="")
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class RecoveryCode(TenantScoped, Base):
    """One single-use recovery code, stored hashed; ``used_at`` set when redeemed."""

    __tablename__ = "recovery_codes"

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(200))
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class CustomRole(TenantScoped, Base):
    """A tenant-defined role: a name and a set of permission strings (``scope:resource:action``)."""

    __tablename__ = "custom_roles"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(String(200), default="")
    permissions: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_by_id: Mapped[str] = mapped_column(IdColumn, default="")
