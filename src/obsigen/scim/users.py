"""The SCIM Users resource over the platform's users.

A SCIM user is a ``users`` row (e-mail, status) plus a ``scim_users`` row (the searchable SCIM
attributes and the resource as last written). Its platform e-mail is the primary entry of
``emails`` (else the first), or ``userName`` when that is an address; with neither, a
placeholder ``<id>@scim.invalid`` that no mail reaches and no IdP domain matches, replaced by
the first real address a later write brings. SCIM users have no password.

An existing user with the same address is adopted (linked) only when it has no password and no
SCIM link yet: an SSO account made just in time. A local password account is never taken over
(``uniqueness``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from scim2_models import (
    Context,
    GroupMembership,
    InvalidValueException,
    Meta,
    NotFoundException,
    PatchOp,
    SearchRequest,
    UniquenessException,
)
from sqlalchemy import Select, and_, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from obsigen.db.base import new_id, utcnow
from obsigen.db.models import User
from obsigen.db.scim_models import ScimGroup, ScimGroupMember, ScimUser, ScimUserEmail
from obsigen.identity.users import valid_email
from obsigen.scim import provisioning
from obsigen.scim.discovery import UserResource
from obsigen.scim.filters import FilterSchema, MultiValued, Scalar, translate
from obsigen.scim.resources import (
    Effects,
    ScimContext,
    check_precondition,
    etag,
    from_validation_error,
    page_of,
)

USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
PLACEHOLDER_DOMAIN = "scim.invalid"
_MAX_TEXT = 255

FILTERS = FilterSchema(
    attributes={
        "id": Scalar(ScimUser.user_id, case_exact=True),
        "username": Scalar(ScimUser.user_name),
        "externalid": Scalar(ScimUser.external_id, case_exact=True),
        "displayname": Scalar(ScimUser.display_name),
        "name.givenname": Scalar(ScimUser.given_name),
        "name.familyname": Scalar(ScimUser.family_name),
        "active": Scalar(ScimUser.active, "boolean"),
        "meta.created": Scalar(ScimUser.created_at, "datetime"),
        "meta.lastmodified": Scalar(ScimUser.updated_at, "datetime"),
        "emails": MultiValued(
            link=lambda: and_(
                ScimUserEmail.tenant_id == ScimUser.tenant_id,
                ScimUserEmail.user_id == ScimUser.user_id,
            ),
            sub={
                "value": Scalar(ScimUserEmail.value),
                "type": Scalar(ScimUserEmail.type),
                "primary": Scalar(ScimUserEmail.primary, "boolean"),
            },
        ),
        "groups": MultiValued(
            link=lambda: and_(
                ScimGroupMember.tenant_id == ScimUser.tenant_id,
                ScimGroupMember.user_id == ScimUser.user_id,
            ),
            sub={"value": Scalar(ScimGroupMember.group_id, case_exact=True)},
        ),
    },
    urns=frozenset({USER_URN.lower()}),
)

SORTS: dict[str, Any] = {
    "id": ScimUser.user_id,
    "username": func.lower(ScimUser.user_name),
    "externalid": ScimUser.external_id,
    "displayname": func.lower(ScimUser.display_name),
    "name.givenname": func.lower(ScimUser.given_name),
    "name.familyname": func.lower(ScimUser.family_name),
    "active": ScimUser.active,
    "meta.created": ScimUser.created_at,
    "meta.lastmodified": ScimUser.updated_at,
}


def sort_key(name: str, sorts: dict[str, Any], urn: str) -> Any:
    key = name.strip().lower().removeprefix(urn.lower() + ":")
    column = sorts.get(key)
    if column is None:
        raise InvalidValueException(detail=f"sorting by {name!r} is not supported")
    return column


# --- reading ---------------------------------------------------------------------------------


async def _load(session: AsyncSession, tenant_id: str, user_id: str) -> tuple[ScimUser, User]:
    row = (
        await session.execute(
            select(ScimUser, User)
            .join(User, and_(User.id == ScimUser.user_id, User.tenant_id == ScimUser.tenant_id))
            .where(ScimUser.tenant_id == tenant_id, ScimUser.user_id == user_id)
        )
    ).first()
    if row is None:
        # The same answer for another tenant's id as for a missing one.
        raise NotFoundException(detail=f"no user {user_id!r}")
    return row[0], row[1]


async def _groups_of(
    session: AsyncSession, tenant_id: str, user_ids: Sequence[str]
) -> dict[str, list[tuple[str, str]]]:
    found: dict[str, list[tuple[str, str]]] = defaultdict(list)
    if not user_ids:
        return found
    rows = await session.execute(
        select(ScimGroupMember.user_id, ScimGroup.id, ScimGroup.display_name)
        .join(ScimGroup, ScimGroup.id == ScimGroupMember.group_id)
        .where(
            ScimGroupMember.tenant_id == tenant_id,
            ScimGroup.tenant_id == tenant_id,
            ScimGroupMember.user_id.in_(list(user_ids)),
        )
        .order_by(ScimGroup.display_name)
    )
    for user_id, group_id, name in rows:
        found[user_id].append((group_id, name))
    return found


def render(context: ScimContext, row: ScimUser, groups: Sequence[tuple[str, str]]) -> UserResource:
    resource = UserResource.model_validate(row.attributes, scim_ctx=None)
    resource.id = row.user_id
    resource.meta = Meta(
        resource_type="User",
        created=row.created_at,
        last_modified=row.updated_at,
        version=etag(row.version),
        location=f"{context.base_url}/Users/{row.user_id}",
    )
    resource.groups = [
        GroupMembership(
            value=group_id,
            display=name,
            ref=f"{context.base_url}/Groups/{group_id}",
            type="direct",
        )
        for group_id, name in groups
    ] or None
    return resource


async def get_user(session: AsyncSession, context: ScimContext, user_id: str) -> UserResource:
    row, _ = await _load(session, context.tenant_id, user_id)
    groups = await _groups_of(session, context.tenant_id, [row.user_id])
    return render(context, row, groups.get(row.user_id, []))


async def list_users(
    session: AsyncSession, context: ScimContext, request: SearchRequest[Any]
) -> tuple[int, list[UserResource]]:
    query: Select[ScimUser] = select(ScimUser).where(ScimUser.tenant_id == context.tenant_id)
    if request.filter:
        query = query.where(translate(str(request.filter), FILTERS))
    total = int(await session.scalar(select(func.count()).select_from(query.subquery())) or 0)
    page = page_of(request)
    if page.count == 0:
        return total, []
    order: list[Any] = []
    if request.sort_by:
        column = sort_key(str(request.sort_by), SORTS, USER_URN)
        descending = str(getattr(request.sort_order, "value", "")) == "descending"
        order.append(column.desc() if descending else column.asc())
    order += [ScimUser.created_at, ScimUser.user_id]
    rows = (
        await session.scalars(query.order_by(*order).offset(page.start_index - 1).limit(page.count))
    ).all()
    groups = await _groups_of(session, context.tenant_id, [row.user_id for row in rows])
    return total, [render(context, row, groups.get(row.user_id, [])) for row in rows]


# --- writing ---------------------------------------------------------------------------------


def parse_user(payload: Any, scim_ctx: Context) -> UserResource:
    try:
        return UserResource.model_validate(payload, scim_ctx=scim_ctx)
    except ValidationError as exc:
        raise from_validation_error(exc) from None


def _text(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    if len(value) > _MAX_TEXT:
        raise InvalidValueException(detail=f"{what}: at most {_MAX_TEXT} characters")
    return value


def _stored(resource: UserResource) -> dict[str, Any]:
    # The resource as written, without what the server owns (id, meta, groups) and without
    # a password, which a SCIM user never has here.
    stored: dict[str, Any] = resource.model_dump(
        scim_ctx=None,
        mode="json",
        exclude_none=True,
        by_alias=True,
        exclude={"id", "meta", "groups", "password"},
    )
    return stored


def _emails(resource: UserResource) -> list[tuple[str, str | None, bool]]:
    found = []
    for email in resource.emails or []:
        if not email.value:
            continue
        value = email.value.strip()
        if len(value) > 254:
            raise InvalidValueException(detail="emails.value: at most 254 characters")
        kind = None if email.type is None else str(getattr(email.type, "value", email.type))[:64]
        found.append((value, kind, bool(email.primary)))
    return found


def platform_email(resource: UserResource, user_id: str) -> str:
    emails = _emails(resource)
    ordered = [e for e in emails if e[2]] + [e for e in emails if not e[2]]
    candidates = [value for value, _, _ in ordered]
    if resource.user_name:
        candidates.append(resource.user_name)
    for candidate in candidates:
        address = candidate.strip().lower()
        if valid_email(address):
            return address
    # No address given: a unique one under the reserved .invalid TLD (RFC 2606) that no
    # mail reaches and no IdP's domain matches; the IdP's first real address replaces it.
    return f"{user_id}@{PLACEHOLDER_DOMAIN}"


async def _ensure_unique(
    session: AsyncSession, tenant_id: str, user_name_key: str, user_id: str | None
) -> None:
    query = select(ScimUser.user_id).where(
        ScimUser.tenant_id == tenant_id, ScimUser.user_name_key == user_name_key
    )
    if user_id is not None:
        query = query.where(ScimUser.user_id != user_id)
    if await session.scalar(query) is not None:
        raise UniquenessException(detail="a user with this userName exists")


async def _email_owner(
    session: AsyncSession, tenant_id: str, email: str, user_id: str | None
) -> User | None:
    query = select(User).where(User.tenant_id == tenant_id, User.email == email)
    if user_id is not None:
        query = query.where(User.id != user_id)
    return await session.scalar(query)


async def _write(
    session: AsyncSession,
    context: ScimContext,
    resource: UserResource,
    row: ScimUser,
    user: User,
    effects: Effects,
    *,
    was_active: bool,
) -> None:
    """Copies ``resource`` into the rows; deactivation when ``active`` turns false."""
    if not resource.user_name or not resource.user_name.strip():
        raise InvalidValueException(detail="userName is required")
    row.user_name = _text(resource.user_name, "userName") or ""
    row.user_name_key = row.user_name.lower()
    row.external_id = _text(resource.external_id, "externalId")
    row.given_name = _text(resource.name.given_name if resource.name else None, "givenName")
    row.family_name = _text(resource.name.family_name if resource.name else None, "familyName")
    row.display_name = _text(resource.display_name, "displayName")
    row.active = resource.active is not False
    row.attributes = _stored(resource)
    row.updated_at = utcnow()
    await session.execute(
        delete(ScimUserEmail).where(
            ScimUserEmail.tenant_id == context.tenant_id, ScimUserEmail.user_id == user.id
        )
    )
    for value, kind, primary in _emails(resource):
        session.add(
            ScimUserEmail(
                tenant_id=context.tenant_id,
                user_id=user.id,
                value=value,
                type=kind,
                primary=primary,
            )
        )
    if not row.active and (was_active or user.status == provisioning.ACTIVE):
        await provisioning.deactivate(session, context, user, effects)
    elif row.active and not was_active:
        user.status = provisioning.ACTIVE
        effects.change(context, "scim.user.reactivate", "user", user.id)
    await session.flush()


async def create_user(
    session: AsyncSession, context: ScimContext, payload: Any, effects: Effects
) -> UserResource:
    resource = parse_user(payload, Context.RESOURCE_CREATION_REQUEST)
    tenant_id = context.tenant_id
    new_user_id = new_id()
    email = platform_email(resource, new_user_id)
    await _ensure_unique(session, tenant_id, (resource.user_name or "").lower(), None)
    user = await _email_owner(session, tenant_id, email, None)
    if user is not None:
        linked = await session.scalar(select(ScimUser.id).where(ScimUser.user_id == user.id))
        if linked is not None or user.password_hash is not None:
            raise UniquenessException(detail="a user with this e-mail address exists")
        action = "scim.user.adopt"
    else:
        user = User(id=new_user_id, tenant_id=tenant_id, email=email, password_hash=None)
        session.add(user)
        await session.flush()
        action = "scim.user.create"
    row = ScimUser(tenant_id=tenant_id, user_id=user.id, version=1, created_at=utcnow())
    await _write(
        session,
        context,
        resource,
        row,
        user,
        effects,
        was_active=user.status == provisioning.ACTIVE,
    )
    session.add(row)
    await session.flush()
    effects.change(context, action, "user", user.id, user_name=row.user_name)
    return render(context, row, [])


async def _update(
    session: AsyncSession,
    context: ScimContext,
    row: ScimUser,
    user: User,
    resource: UserResource,
    effects: Effects,
    action: str,
) -> UserResource:
    email = platform_email(resource, user.id)
    await _ensure_unique(session, context.tenant_id, (resource.user_name or "").lower(), user.id)
    if email != user.email:
        if await _email_owner(session, context.tenant_id, email, user.id) is not None:
            raise UniquenessException(detail="a user with this e-mail address exists")
        user.email = email
    await _write(session, context, resource, row, user, effects, was_active=row.active)
    row.version += 1
    await session.flush()
    effects.change(context, action, "user", user.id, version=row.version)
    groups = await _groups_of(session, context.tenant_id, [user.id])
    return render(context, row, groups.get(user.id, []))


async def replace_user(
    session: AsyncSession,
    context: ScimContext,
    user_id: str,
    payload: Any,
    if_match: str | None,
    effects: Effects,
) -> UserResource:
    row, user = await _load(session, context.tenant_id, user_id)
    check_precondition(if_match, row.version)
    resource = parse_user(payload, Context.RESOURCE_REPLACEMENT_REQUEST)
    return await _update(session, context, row, user, resource, effects, "scim.user.replace")


async def patch_user(
    session: AsyncSession,
    context: ScimContext,
    user_id: str,
    payload: Any,
    if_match: str | None,
    effects: Effects,
) -> UserResource:
    row, user = await _load(session, context.tenant_id, user_id)
    check_precondition(if_match, row.version)
    try:
        patch = PatchOp[UserResource].model_validate(
            payload, scim_ctx=Context.RESOURCE_PATCH_REQUEST
        )
    except ValidationError as exc:
        raise from_validation_error(exc) from None
    groups = await _groups_of(session, context.tenant_id, [user.id])
    resource = render(context, row, groups.get(user.id, []))
    if not patch.patch(resource):
        return resource
    return await _update(session, context, row, user, resource, effects, "scim.user.patch")


async def delete_user(
    session: AsyncSession,
    context: ScimContext,
    user_id: str,
    if_match: str | None,
    effects: Effects,
) -> None:
    row, user = await _load(session, context.tenant_id, user_id)
    check_precondition(if_match, row.version)
    await provisioning.remove_user(session, context, user, effects)
