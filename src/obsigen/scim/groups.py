"""The SCIM Groups resource: groups of SCIM users, whose displayNames map to roles.

Members are users of the same tenant known to SCIM; a member naming anything else (another
tenant's user, a group: nesting is not supported) is refused with ``invalidValue``. Every
change of membership, name or existence re-syncs the roles of the users it touches.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from scim2_models import (
    Context,
    Group,
    GroupMember,
    InvalidValueException,
    Meta,
    NotFoundException,
    PatchOp,
    SearchRequest,
    UniquenessException,
)
from sqlalchemy import Select, and_, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from obsigen.db.base import utcnow
from obsigen.db.scim_models import ScimGroup, ScimGroupMember, ScimUser
from obsigen.scim.filters import FilterSchema, MultiValued, Scalar, translate
from obsigen.scim.provisioning import sync_group_roles
from obsigen.scim.resources import (
    Effects,
    ScimContext,
    check_precondition,
    etag,
    from_validation_error,
    page_of,
)
from obsigen.scim.users import sort_key

GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:Group"
MAX_MEMBERS_PER_WRITE = 10_000

FILTERS = FilterSchema(
    attributes={
        "id": Scalar(ScimGroup.id, case_exact=True),
        "displayname": Scalar(ScimGroup.display_name),
        "externalid": Scalar(ScimGroup.external_id, case_exact=True),
        "meta.created": Scalar(ScimGroup.created_at, "datetime"),
        "meta.lastmodified": Scalar(ScimGroup.updated_at, "datetime"),
        "members": MultiValued(
            link=lambda: and_(
                ScimGroupMember.tenant_id == ScimGroup.tenant_id,
                ScimGroupMember.group_id == ScimGroup.id,
            ),
            sub={"value": Scalar(ScimGroupMember.user_id, case_exact=True)},
        ),
    },
    urns=frozenset({GROUP_URN.lower()}),
)

SORTS: dict[str, Any] = {
    "id": ScimGroup.id,
    "displayname": func.lower(ScimGroup.display_name),
    "externalid": ScimGroup.external_id,
    "meta.created": ScimGroup.created_at,
    "meta.lastmodified": ScimGroup.updated_at,
}


async def _load(session: AsyncSession, tenant_id: str, group_id: str) -> ScimGroup:
    row = await session.scalar(
        select(ScimGroup).where(ScimGroup.tenant_id == tenant_id, ScimGroup.id == group_id)
    )
    if row is None:
        raise NotFoundException(detail=f"no group {group_id!r}")
    return row


async def _members_of(
    session: AsyncSession, tenant_id: str, group_ids: Sequence[str]
) -> dict[str, list[tuple[str, str]]]:
    """group id -> [(user id, display)], display being the user's displayName or userName."""
    found: dict[str, list[tuple[str, str]]] = defaultdict(list)
    if not group_ids:
        return found
    rows = await session.execute(
        select(
            ScimGroupMember.group_id,
            ScimUser.user_id,
            func.coalesce(ScimGroupMember.display, ScimUser.display_name, ScimUser.user_name),
        )
        .join(
            ScimUser,
            and_(
                ScimUser.user_id == ScimGroupMember.user_id,
                ScimUser.tenant_id == ScimGroupMember.tenant_id,
            ),
        )
        .where(
            ScimGroupMember.tenant_id == tenant_id,
            ScimGroupMember.group_id.in_(list(group_ids)),
        )
        .order_by(ScimUser.user_id)
    )
    for group_id, user_id, display in rows:
        found[group_id].append((user_id, display))
    return found


def render(
    context: ScimContext,
    row: ScimGroup,
    members: Sequence[tuple[str, str]] | None,
) -> Group:
    group = Group(
        id=row.id,
        external_id=row.external_id,
        display_name=row.display_name,
        meta=Meta(
            resource_type="Group",
            created=row.created_at,
            last_modified=row.updated_at,
            version=etag(row.version),
            location=f"{context.base_url}/Groups/{row.id}",
        ),
    )
    if members:
        group.members = [
            GroupMember(
                value=user_id,
                display=display,
                ref=f"{context.base_url}/Users/{user_id}",
                type="User",
            )
            for user_id, display in members
        ]
    return group


async def get_group(
    session: AsyncSession, context: ScimContext, group_id: str, *, with_members: bool = True
) -> Group:
    row = await _load(session, context.tenant_id, group_id)
    members = await _members_of(session, context.tenant_id, [row.id]) if with_members else {}
    return render(context, row, members.get(row.id))


async def list_groups(
    session: AsyncSession,
    context: ScimContext,
    request: SearchRequest[Any],
    *,
    with_members: bool = True,
) -> tuple[int, list[Group]]:
    query: Select[ScimGroup] = select(ScimGroup).where(ScimGroup.tenant_id == context.tenant_id)
    if request.filter:
        query = query.where(translate(str(request.filter), FILTERS))
    total = int(await session.scalar(select(func.count()).select_from(query.subquery())) or 0)
    page = page_of(request)
    if page.count == 0:
        return total, []
    order: list[Any] = []
    if request.sort_by:
        column = sort_key(str(request.sort_by), SORTS, GROUP_URN)
        descending = str(getattr(request.sort_order, "value", "")) == "descending"
        order.append(column.desc() if descending else column.asc())
    order += [ScimGroup.created_at, ScimGroup.id]
    rows = (
        await session.scalars(query.order_by(*order).offset(page.start_index - 1).limit(page.count))
    ).all()
    members = (
        await _members_of(session, context.tenant_id, [row.id for row in rows])
        if with_members
        else {}
    )
    return total, [render(context, row, members.get(row.id)) for row in rows]


# --- writing ---------------------------------------------------------------------------------


def parse_group(payload: Any, scim_ctx: Context) -> Group:
    try:
        return Group.model_validate(payload, scim_ctx=scim_ctx)
    except ValidationError as exc:
        raise from_validation_error(exc) from None


async def _member_ids(session: AsyncSession, tenant_id: str, group: Group) -> dict[str, str | None]:
    """user id -> the display the client sent, for every member of ``group``."""
    wanted: dict[str, str | None] = {}
    for member in group.members or []:
        if member.type is not None and str(member.type) not in {"User", "user"}:
            raise InvalidValueException(detail="groups hold users only (no nested groups)")
        if not member.value:
            raise InvalidValueException(detail="members.value is required")
        display = member.display[:255] if member.display else None
        wanted[member.value] = display
    if len(wanted) > MAX_MEMBERS_PER_WRITE:
        raise InvalidValueException(detail=f"at most {MAX_MEMBERS_PER_WRITE} members per write")
    if not wanted:
        return wanted
    known: set[str] = set()
    listed = sorted(wanted)
    for start in range(0, len(listed), 500):
        rows = await session.scalars(
            select(ScimUser.user_id).where(
                ScimUser.tenant_id == tenant_id, ScimUser.user_id.in_(listed[start : start + 500])
            )
        )
        known.update(rows.all())
    unknown = set(wanted) - known
    if unknown:
        raise InvalidValueException(
            detail=f"members name unknown users: {', '.join(sorted(unknown)[:5])}"
        )
    return wanted


def _name(group: Group) -> str:
    name = (group.display_name or "").strip()
    if not name:
        raise InvalidValueException(detail="displayName is required")
    if len(name) > 255:
        raise InvalidValueException(detail="displayName: at most 255 characters")
    return name


async def _ensure_unique(
    session: AsyncSession, tenant_id: str, name_key: str, group_id: str | None
) -> None:
    query = select(ScimGroup.id).where(
        ScimGroup.tenant_id == tenant_id, ScimGroup.display_name_key == name_key
    )
    if group_id is not None:
        query = query.where(ScimGroup.id != group_id)
    if await session.scalar(query) is not None:
        raise UniquenessException(detail="a group with this displayName exists")


async def _current_members(
    session: AsyncSession, tenant_id: str, group_id: str
) -> dict[str, str | None]:
    rows = await session.execute(
        select(ScimGroupMember.user_id, ScimGroupMember.display).where(
            ScimGroupMember.tenant_id == tenant_id, ScimGroupMember.group_id == group_id
        )
    )
    return {str(user_id): display for user_id, display in rows}


async def _write(
    session: AsyncSession,
    context: ScimContext,
    row: ScimGroup,
    group: Group,
    before: dict[str, str | None],
    effects: Effects,
    action: str,
) -> Group:
    name = _name(group)
    external_id = group.external_id
    if external_id is not None and len(external_id) > 255:
        raise InvalidValueException(detail="externalId: at most 255 characters")
    await _ensure_unique(session, context.tenant_id, name.lower(), row.id)
    after = await _member_ids(session, context.tenant_id, group)
    renamed = row.display_name is not None and row.display_name != name
    row.display_name = name
    row.display_name_key = name.lower()
    row.external_id = external_id
    row.updated_at = utcnow()
    await session.flush()
    removed, added = set(before) - set(after), set(after) - set(before)
    if removed:
        await session.execute(
            delete(ScimGroupMember).where(
                ScimGroupMember.tenant_id == context.tenant_id,
                ScimGroupMember.group_id == row.id,
                ScimGroupMember.user_id.in_(sorted(removed)),
            )
        )
    for user_id in sorted(added):
        session.add(
            ScimGroupMember(
                tenant_id=context.tenant_id,
                group_id=row.id,
                user_id=user_id,
                display=after[user_id],
            )
        )
    for user_id in sorted(set(after) & set(before)):
        if after[user_id] != before[user_id]:
            await session.execute(
                update(ScimGroupMember)
                .where(
                    ScimGroupMember.tenant_id == context.tenant_id,
                    ScimGroupMember.group_id == row.id,
                    ScimGroupMember.user_id == user_id,
                )
                .values(display=after[user_id])
            )
    await session.flush()
    effects.change(
        context,
        action,
        "group",
        row.id,
        display_name=name,
        members_added=sorted(added),
        members_removed=sorted(removed),
    )
    # A rename changes what every member's groups map to.
    affected = (set(before) | set(after)) if renamed else (added | removed)
    await sync_group_roles(session, context, affected, effects)
    members = await _members_of(session, context.tenant_id, [row.id])
    return render(context, row, members.get(row.id))


async def create_group(
    session: AsyncSession, context: ScimContext, payload: Any, effects: Effects
) -> Group:
    group = parse_group(payload, Context.RESOURCE_CREATION_REQUEST)
    name = _name(group)
    await _ensure_unique(session, context.tenant_id, name.lower(), None)
    now = utcnow()
    # Members point at the group: it needs its row (and id) before _write adds them.
    row = ScimGroup(
        tenant_id=context.tenant_id,
        display_name=name,
        display_name_key=name.lower(),
        version=1,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    await session.flush()
    return await _write(session, context, row, group, {}, effects, "scim.group.create")


async def replace_group(
    session: AsyncSession,
    context: ScimContext,
    group_id: str,
    payload: Any,
    if_match: str | None,
    effects: Effects,
) -> Group:
    row = await _load(session, context.tenant_id, group_id)
    check_precondition(if_match, row.version)
    group = parse_group(payload, Context.RESOURCE_REPLACEMENT_REQUEST)
    before = await _current_members(session, context.tenant_id, row.id)
    row.version += 1
    return await _write(session, context, row, group, before, effects, "scim.group.replace")


async def patch_group(
    session: AsyncSession,
    context: ScimContext,
    group_id: str,
    payload: Any,
    if_match: str | None,
    effects: Effects,
) -> Group:
    row = await _load(session, context.tenant_id, group_id)
    check_precondition(if_match, row.version)
    try:
        patch = PatchOp[Group].model_validate(payload, scim_ctx=Context.RESOURCE_PATCH_REQUEST)
    except ValidationError as exc:
        raise from_validation_error(exc) from None
    before = await _current_members(session, context.tenant_id, row.id)
    members = await _members_of(session, context.tenant_id, [row.id])
    group = render(context, row, members.get(row.id))
    if not patch.patch(group):
        return group
    row.version += 1
    return await _write(session, context, row, group, before, effects, "scim.group.patch")


async def delete_group(
    session: AsyncSession,
    context: ScimContext,
    group_id: str,
    if_match: str | None,
    effects: Effects,
) -> None:
    row = await _load(session, context.tenant_id, group_id)
    check_precondition(if_match, row.version)
    members = await _current_members(session, context.tenant_id, row.id)
    await session.delete(row)
    await session.flush()
    effects.change(context, "scim.group.delete", "group", group_id, display_name=row.display_name)
    await sync_group_roles(session, context, members, effects)
