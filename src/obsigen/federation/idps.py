"""A tenant's identity providers and group-to-role mappings: validation, storage, discovery.

Only principals holding ``tenant:federation:manage`` in a session with a second factor change
them (checked at the edge and again here); every change returns an ``AdminChange`` the route
records once its transaction has committed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from obsigen.authz.permissions import Permission
from obsigen.authz.principal import Principal
from obsigen.authz.roles import AdminChange, resolve_role
from obsigen.db.federation_models import SCIM_SOURCE, GroupRoleMapping, IdentityProvider, idp_source
from obsigen.db.models import Tenant
from obsigen.errors import Conflict, Forbidden, InvalidInput, MfaRequired, NotFound
from obsigen.federation.oidc_config import OidcConfig
from obsigen.federation.saml_config import SamlConfig

Protocol = Literal["oidc", "saml"]
PROTOCOL_CONFIGS: dict[str, type[BaseModel]] = {"oidc": OidcConfig, "saml": SamlConfig}

_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
# A registrable-looking domain name, lowercase; no wildcards.
_DOMAIN = re.compile(r"(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")


def validate_config(protocol: str, config: dict[str, Any]) -> dict[str, Any]:
    model = PROTOCOL_CONFIGS.get(protocol)
    if model is None:
        raise InvalidInput(f"protocol: one of {sorted(PROTOCOL_CONFIGS)}")
    try:
        return model.model_validate(config).model_dump()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}"
            for err in exc.errors(include_input=False)
        )
        raise InvalidInput(f"config: {problems}") from None


def oidc_config(idp: IdentityProvider) -> OidcConfig:
    return OidcConfig.model_validate(idp.config)


def saml_config(idp: IdentityProvider) -> SamlConfig:
    return SamlConfig.model_validate(idp.config)


def normalise_domains(values: list[str]) -> list[str]:
    domains = sorted({value.strip().lower().rstrip(".") for value in values})
    bad = [d for d in domains if not _DOMAIN.fullmatch(d)]
    if bad:
        raise InvalidInput(f"domains: not domain names: {bad[:3]}")
    return domains


def email_domain(email: str) -> str:
    return email.rsplit("@", 1)[-1].strip().lower().rstrip(".")


def ensure_federation_manager(actor: Principal) -> None:
    # The web edge checks the same; repeated so that no other caller can skip it.
    if not actor.can(Permission.FEDERATION_MANAGE):
        raise Forbidden(f"requires {Permission.FEDERATION_MANAGE.value}")
    if not actor.mfa:
        raise MfaRequired(
            f"{Permission.FEDERATION_MANAGE.value} needs a session with a second factor"
        )


@dataclass(frozen=True, slots=True)
class IdpInput:
    slug: str
    protocol: str
    display_name: str
    domains: list[str]
    config: dict[str, Any]
    enabled: bool = True
    jit_provisioning: bool = False
    trust_idp_mfa: bool = False
    default_role: str | None = None


def describe(idp: IdentityProvider) -> dict[str, Any]:
    """The stored IdP as the API and the audit show it (the client secret is a reference)."""
    return {
        "id": idp.id,
        "slug": idp.slug,
        "protocol": idp.protocol,
        "display_name": idp.display_name,
        "domains": list(idp.domains),
        "enabled": idp.enabled,
        "jit_provisioning": idp.jit_provisioning,
        "trust_idp_mfa": idp.trust_idp_mfa,
        "default_role": idp.default_role,
        "config": dict(idp.config),
    }


def _audit_view(idp: IdentityProvider) -> dict[str, Any]:
    view = describe(idp)
    config = dict(view["config"])
    # Metadata documents are large; the audit keeps what identifies the signer.
    if "idp_metadata_xml" in config:
        config["idp_metadata_xml"] = f"<{len(config['idp_metadata_xml'])} characters>"
    view["config"] = config
    return view


async def _check_default_role(session: AsyncSession, actor: Principal, role: str | None) -> None:
    if role is None:
        return
    info = await resolve_role(session, actor.tenant_id, role)
    missing = sorted(info.permissions - actor.permissions)
    if missing:
        raise Forbidden(f"default_role {role!r} carries permissions you do not hold")


async def create_idp(
    session: AsyncSession, actor: Principal, data: IdpInput
) -> tuple[IdentityProvider, AdminChange]:
    ensure_federation_manager(actor)
    if not _SLUG.fullmatch(data.slug):
        raise InvalidInput("slug: lowercase letters, digits and '-', at most 63")
    config = validate_config(data.protocol, data.config)
    await _check_default_role(session, actor, data.default_role)
    idp = IdentityProvider(
        tenant_id=actor.tenant_id,
        slug=data.slug,
        protocol=data.protocol,
        display_name=data.display_name,
        domains=normalise_domains(data.domains),
        config=config,
        enabled=data.enabled,
        jit_provisioning=data.jit_provisioning,
        trust_idp_mfa=data.trust_idp_mfa,
        default_role=data.default_role,
    )
    session.add(idp)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(f"an identity provider with slug {data.slug!r} exists") from None
    change = AdminChange("idp.create", {"kind": "idp", "id": idp.id}, None, _audit_view(idp))
    return idp, change


async def get_idp(session: AsyncSession, tenant_id: str, idp_id: str) -> IdentityProvider:
    idp = await session.scalar(
        select(IdentityProvider).where(
            IdentityProvider.tenant_id == tenant_id, IdentityProvider.id == idp_id
        )
    )
    if idp is None:
        raise NotFound("no such identity provider")
    return idp


async def enabled_idp(session: AsyncSession, idp_id: str, protocol: Protocol) -> IdentityProvider:
    """The IdP a sign-in route names; the same 404 for unknown, disabled and wrong protocol."""
    idp = await session.scalar(select(IdentityProvider).where(IdentityProvider.id == idp_id))
    if idp is None or not idp.enabled or idp.protocol != protocol:
        raise NotFound("no such identity provider")
    return idp


async def list_idps(session: AsyncSession, tenant_id: str) -> list[IdentityProvider]:
    rows = await session.scalars(
        select(IdentityProvider)
        .where(IdentityProvider.tenant_id == tenant_id)
        .order_by(IdentityProvider.slug)
    )
    return list(rows.all())


async def update_idp(
    session: AsyncSession, actor: Principal, idp_id: str, changes: dict[str, Any]
) -> tuple[IdentityProvider, AdminChange]:
    """Applies ``changes`` (any IdpInput field but slug and protocol; ``config`` replaces the
    whole configuration and is validated again)."""
    ensure_federation_manager(actor)
    idp = await get_idp(session, actor.tenant_id, idp_id)
    before = _audit_view(idp)
    if "config" in changes:
        idp.config = validate_config(idp.protocol, changes["config"])
    if "domains" in changes:
        idp.domains = normalise_domains(changes["domains"])
    if "default_role" in changes:
        await _check_default_role(session, actor, changes["default_role"])
        idp.default_role = changes["default_role"]
    for name in ("display_name", "enabled", "jit_provisioning", "trust_idp_mfa"):
        if name in changes:
            setattr(idp, name, changes[name])
    await session.flush()
    return idp, AdminChange("idp.update", {"kind": "idp", "id": idp.id}, before, _audit_view(idp))


async def delete_idp(session: AsyncSession, actor: Principal, idp_id: str) -> AdminChange:
    ensure_federation_manager(actor)
    idp = await get_idp(session, actor.tenant_id, idp_id)
    before = _audit_view(idp)
    await session.execute(
        delete(GroupRoleMapping).where(
            GroupRoleMapping.tenant_id == actor.tenant_id,
            GroupRoleMapping.source == idp_source(idp.id),
        )
    )
    await session.delete(idp)
    await session.flush()
    return AdminChange("idp.delete", {"kind": "idp", "id": idp_id}, before, None)


async def discover(session: AsyncSession, tenant_name: str, email: str) -> list[IdentityProvider]:
    """The enabled IdPs of ``tenant_name`` that declare the domain of ``email`` (the login page
    shows their buttons). Unknown tenants and domains give an empty list, not an error."""
    domain = email_domain(email)
    rows = await session.scalars(
        select(IdentityProvider)
        .join(Tenant, Tenant.id == IdentityProvider.tenant_id)
        .where(Tenant.name == tenant_name, IdentityProvider.enabled.is_(True))
        .order_by(IdentityProvider.slug)
    )
    return [idp for idp in rows.all() if domain in idp.domains]


# --- group -> role mappings -------------------------------------------------------------------


def check_source(value: str) -> str:
    if value == SCIM_SOURCE or re.fullmatch(r"idp:[0-9a-f]{32}", value):
        return value
    raise InvalidInput("source: 'scim' or 'idp:<identity provider id>'")


async def list_mappings(
    session: AsyncSession, tenant_id: str, source: str | None = None
) -> list[GroupRoleMapping]:
    query = select(GroupRoleMapping).where(GroupRoleMapping.tenant_id == tenant_id)
    if source is not None:
        query = query.where(GroupRoleMapping.source == source)
    rows = await session.scalars(
        query.order_by(GroupRoleMapping.source, GroupRoleMapping.group_name, GroupRoleMapping.role)
    )
    return list(rows.all())


def _mapping_view(row: GroupRoleMapping) -> dict[str, str]:
    return {"id": row.id, "source": row.source, "group": row.group_name, "role": row.role}


async def create_mapping(
    session: AsyncSession, actor: Principal, source: str, group: str, role: str
) -> tuple[GroupRoleMapping, AdminChange]:
    """Maps ``group`` from ``source`` to ``role``. An actor can map only to roles within its own
    permissions: a mapping is a grant made in advance."""
    ensure_federation_manager(actor)
    source = check_source(source)
    if source != SCIM_SOURCE:
        await get_idp(session, actor.tenant_id, source.removeprefix("idp:"))
    group = group.strip()
    if not group or len(group) > 255:
        raise InvalidInput("group: 1 to 255 characters")
    info = await resolve_role(session, actor.tenant_id, role)
    missing = sorted(info.permissions - actor.permissions)
    if missing:
        raise Forbidden(f"cannot map to role {role!r}: it carries permissions you do not hold")
    row = GroupRoleMapping(tenant_id=actor.tenant_id, source=source, group_name=group, role=role)
    session.add(row)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict("this mapping exists") from None
    return row, AdminChange(
        "group_mapping.create", {"kind": "group_mapping", "id": row.id}, None, _mapping_view(row)
    )


async def delete_mapping(session: AsyncSession, actor: Principal, mapping_id: str) -> AdminChange:
    ensure_federation_manager(actor)
    row = await session.scalar(
        select(GroupRoleMapping).where(
            GroupRoleMapping.tenant_id == actor.tenant_id, GroupRoleMapping.id == mapping_id
        )
    )
    if row is None:
        raise NotFound("no such group mapping")
    before = _mapping_view(row)
    await session.delete(row)
    await session.flush()
    return AdminChange(
        "group_mapping.delete", {"kind": "group_mapping", "id": mapping_id}, before, None
    )
