"""SCIM 2.0 provisioning at /scim/v2 (RFC 7643/7644).

Callers are identity providers holding a tenant's SCIM token (``obsigen scim token create``),
not users: ``scim_client`` authenticates the token and scopes everything to its tenant. It
carries the ``public()`` marker (``obsigen_public``) because no user principal or permission
applies, and ``obsigen_guard = "scim-token"`` to say what guards the route instead; a user's
JWT or API key gets 401 here (tests/security/test_scim_routes.py).

Errors leave as SCIM Error messages (``application/scim+json``, with ``scimType``), not as
problem+json: ``ScimRoute`` converts every exception raised under this router.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from datetime import timedelta
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import ValidationError
from scim2_models import (
    Context,
    Error,
    Group,
    InvalidFilterException,
    InvalidSyntaxException,
    ListResponse,
    NotFoundException,
    PayloadTooLargeException,
    ResponseParameters,
    SCIMException,
    SearchRequest,
    UnauthorizedException,
)
from sqlalchemy.ext.asyncio import AsyncSession

from obsigen.ephemeral.interfaces import StoreUnavailable
from obsigen.errors import ObsigenError
from obsigen.ratelimit.errors import RateLimited
from obsigen.ratelimit.middleware import enforce_rate_limits
from obsigen.scim import discovery, groups, users
from obsigen.scim.resources import Effects, ScimContext, etag, from_validation_error, page_of
from obsigen.scim.resources import not_modified as matches_none
from obsigen.scim.resources import search_request as parse_search
from obsigen.scim.tokens import ScimCaller, verify_token
from obsigen.services import Services
from obsigen.web.auth import services_of

log = logging.getLogger(__name__)

PREFIX = "/scim/v2"
MEDIA_TYPE = "application/scim+json"
LIST_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
MAX_BODY = 1024 * 1024
T = TypeVar("T")


def scim_error(
    status: int, detail: str, scim_type: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = Error(status=status, scim_type=scim_type or None, detail=detail).model_dump(
        scim_ctx=Context.RESOURCE_QUERY_RESPONSE
    )
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def _error_for(exc: Exception) -> JSONResponse:
    if isinstance(exc, SCIMException):
        headers = {"WWW-Authenticate": 'Bearer realm="scim"'} if exc.status == 401 else None
        return scim_error(exc.status, exc.detail, exc.scim_type or None, headers)
    if isinstance(exc, ValidationError):
        return _error_for(from_validation_error(exc))
    if isinstance(exc, RequestValidationError):
        return scim_error(400, "the request is not valid", "invalidValue")
    if isinstance(exc, RateLimited):
        return scim_error(429, exc.detail, headers=exc.headers())
    if isinstance(exc, StoreUnavailable):
        return scim_error(503, exc.detail, headers={"Retry-After": "5"})
    if isinstance(exc, ObsigenError):
        return scim_error(exc.status, exc.detail)
    log.exception("unhandled error under /scim/v2")
    return scim_error(500, "an unexpected error occurred")


class ScimRoute(APIRoute):
    """Answers every error under this router as a SCIM Error message."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def scim_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:  # noqa: BLE001 - each kind is mapped in _error_for
                return _error_for(exc)

        return scim_handler


class ScimJSONResponse(JSONResponse):
    """What every SCIM answer is; named so that the OpenAPI document says so."""

    media_type = MEDIA_TYPE


_SCIM_MESSAGE: dict[str, Any] = {"content": {MEDIA_TYPE: {"schema": {"type": "object"}}}}

router = APIRouter(
    prefix=PREFIX,
    route_class=ScimRoute,
    tags=["scim"],
    default_response_class=ScimJSONResponse,
    # Declared here for every SCIM operation: errors are SCIM Error messages, not problem+json
    # (obsigen.web.openapi adds problem responses only where a route declares none).
    responses={
        201: {"description": "Created", **_SCIM_MESSAGE},
        204: {"description": "Deleted"},
        304: {"description": "Not modified (If-None-Match)"},
        "4XX": {"description": "SCIM Error message", **_SCIM_MESSAGE},
        "5XX": {"description": "SCIM Error message", **_SCIM_MESSAGE},
    },
)


# --- who is calling --------------------------------------------------------------------------


async def scim_client(request: Request) -> ScimCaller:
    """The tenant's SCIM token from ``Authorization: Bearer``; 401 for anything else."""
    await enforce_rate_limits(request, None)
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise UnauthorizedException(detail="send Authorization: Bearer <SCIM token>")
    services = services_of(request)
    max_age = timedelta(days=services.settings.secrets.max_age_days.scim_token)
    async with services.sessions.begin() as session:
        caller = await verify_token(session, token, max_age=max_age)
    if caller is None:
        raise UnauthorizedException(detail="invalid, expired or revoked SCIM token")
    return caller


scim_client.obsigen_public = True  # type: ignore[attr-defined]
scim_client.obsigen_guard = "scim-token"  # type: ignore[attr-defined]
Caller = Annotated[ScimCaller, Depends(scim_client)]


def _context(request: Request, caller: ScimCaller) -> ScimContext:
    base = str(request.base_url).rstrip("/") + PREFIX
    address = request.client.host if request.client else None
    return ScimContext(caller=caller, base_url=base, source_address=address)


# --- plumbing --------------------------------------------------------------------------------


def _respond(
    body: Any, status: int = 200, version: int | None = None, location: str | None = None
) -> JSONResponse:
    headers: dict[str, str] = {}
    if version is not None:
        headers["ETag"] = etag(version)
    if location is not None:
        headers["Location"] = location
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


async def _payload(request: Request) -> Any:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise PayloadTooLargeException(detail=f"at most {MAX_BODY} bytes")
    try:
        return json.loads(raw)
    except ValueError:
        raise InvalidSyntaxException(detail="the body is not JSON") from None


def _params(request: Request) -> dict[str, str]:
    return dict(request.query_params)


def _response_parameters(request: Request) -> ResponseParameters[Any]:
    try:
        return ResponseParameters.model_validate(_params(request))
    except ValidationError as exc:
        raise from_validation_error(exc) from None


def _version_of(resource: Any) -> int | None:
    meta = getattr(resource, "meta", None)
    tag = getattr(meta, "version", None)
    if not tag:
        return None
    return int(str(tag).removeprefix("W/").strip('"'))


async def _read(request: Request, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    async with services_of(request).sessions() as session:
        return await work(session)


async def _end_sessions(services: Services, tenant_id: str, user_ids: set[str]) -> None:
    for user_id in sorted(user_ids):
        await services.auth.manager.end_all(tenant_id, user_id)


async def _write(
    request: Request,
    context: ScimContext,
    work: Callable[[AsyncSession, Effects], Awaitable[T]],
) -> T:
    """Runs ``work`` in one transaction. Sessions of deactivated users end before the commit
    (nothing they do can land after it) and again after it (a login that slipped in between,
    while the user still read as active, ends too); audit events follow the commit."""
    services = services_of(request)
    effects = Effects()
    async with services.sessions.begin() as session:
        result = await work(session, effects)
        await _end_sessions(services, context.tenant_id, effects.end_sessions)
    await _end_sessions(services, context.tenant_id, effects.end_sessions)
    for event in effects.events:
        await services.audit.record(event)
    return result


def _dump(resource: Any, scim_ctx: Context, params: ResponseParameters[Any] | None = None) -> Any:
    return resource.model_dump(scim_ctx=scim_ctx, response_parameters=params)


def _list_body(
    total: int, search: SearchRequest[Any], resources: list[Any], model: Any
) -> dict[str, Any]:
    listing = ListResponse[model](
        total_results=total,
        start_index=max(search.start_index or 1, 1),
        items_per_page=len(resources),
        resources=resources,
    )
    body: dict[str, Any] = listing.model_dump(
        scim_ctx=Context.SEARCH_RESPONSE, response_parameters=search
    )
    return body


def _static_list(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "schemas": [LIST_RESPONSE],
        "totalResults": len(items),
        "itemsPerPage": len(items),
        "startIndex": 1,
        "Resources": items,
    }


# --- discovery -------------------------------------------------------------------------------


@router.get("/ServiceProviderConfig")
async def service_provider_config(request: Request, caller: Caller) -> Response:
    return _respond(discovery.service_provider_config(_context(request, caller).base_url))


@router.get("/ResourceTypes")
async def resource_types(request: Request, caller: Caller) -> Response:
    return _respond(_static_list(discovery.resource_types(_context(request, caller).base_url)))


@router.get("/ResourceTypes/{type_id}")
async def resource_type(type_id: str, request: Request, caller: Caller) -> Response:
    for item in discovery.resource_types(_context(request, caller).base_url):
        if item.get("id") == type_id:
            return _respond(item)
    raise NotFoundException(detail=f"no resource type {type_id!r}")


@router.get("/Schemas")
async def schemas(request: Request, caller: Caller) -> Response:
    return _respond(_static_list(discovery.schemas(_context(request, caller).base_url)))


@router.get("/Schemas/{schema_id}")
async def schema(schema_id: str, request: Request, caller: Caller) -> Response:
    for item in discovery.schemas(_context(request, caller).base_url):
        if item.get("id") == schema_id:
            return _respond(item)
    raise NotFoundException(detail=f"no schema {schema_id!r}")


# --- Users -----------------------------------------------------------------------------------


async def _search_body(request: Request) -> dict[str, Any]:
    payload = await _payload(request)
    if not isinstance(payload, dict):
        raise InvalidSyntaxException(detail="a SearchRequest is a JSON object")
    return payload


async def _list_users(request: Request, caller: ScimCaller, params: dict[str, Any]) -> Response:
    context = _context(request, caller)
    search = parse_search(params)
    total, found = await _read(request, lambda session: users.list_users(session, context, search))
    return _respond(_list_body(total, search, found, discovery.UserResource))


@router.get("/Users")
async def users_list(request: Request, caller: Caller) -> Response:
    return await _list_users(request, caller, _params(request))


@router.post("/Users/.search")
async def users_search(request: Request, caller: Caller) -> Response:
    return await _list_users(request, caller, await _search_body(request))


Make = Callable[[AsyncSession, ScimContext, Any, Effects], Awaitable[Any]]
Alter = Callable[[AsyncSession, ScimContext, str, Any, str | None, Effects], Awaitable[Any]]
Remove = Callable[[AsyncSession, ScimContext, str, str | None, Effects], Awaitable[Any]]


async def _create(request: Request, caller: ScimCaller, collection: str, make: Make) -> Response:
    """POST to a collection: ``make(session, context, payload, effects)``."""
    context = _context(request, caller)
    payload = await _payload(request)
    created = await _write(
        request, context, lambda session, fx: make(session, context, payload, fx)
    )
    return _respond(
        _dump(created, Context.RESOURCE_CREATION_RESPONSE, _response_parameters(request)),
        201,
        _version_of(created),
        f"{context.base_url}/{collection}/{created.id}",
    )


async def _show(
    request: Request,
    caller: ScimCaller,
    read: Callable[[AsyncSession, ScimContext], Awaitable[Any]],
) -> Response:
    """GET one resource, answering 304 when the client's If-None-Match still holds."""
    context = _context(request, caller)
    params = _response_parameters(request)
    found = await _read(request, lambda session: read(session, context))
    version = _version_of(found)
    if version is not None and matches_none(request.headers.get("if-none-match"), version):
        return Response(status_code=304, headers={"ETag": etag(version)})
    return _respond(_dump(found, Context.RESOURCE_QUERY_RESPONSE, params), 200, version)


async def _change(
    request: Request, caller: ScimCaller, resource_id: str, change: Alter, response: Context
) -> Response:
    """PUT or PATCH: ``change(session, context, id, payload, if_match, effects)``."""
    context = _context(request, caller)
    payload = await _payload(request)
    if_match = request.headers.get("if-match")
    changed = await _write(
        request,
        context,
        lambda session, fx: change(session, context, resource_id, payload, if_match, fx),
    )
    params = _response_parameters(request)
    return _respond(_dump(changed, response, params), 200, _version_of(changed))


async def _delete(
    request: Request, caller: ScimCaller, resource_id: str, delete: Remove
) -> Response:
    context = _context(request, caller)
    if_match = request.headers.get("if-match")
    await _write(
        request, context, lambda session, fx: delete(session, context, resource_id, if_match, fx)
    )
    return Response(status_code=204)


@router.post("/Users")
async def users_create(request: Request, caller: Caller) -> Response:
    return await _create(request, caller, "Users", users.create_user)


@router.get("/Users/{user_id}")
async def users_get(user_id: str, request: Request, caller: Caller) -> Response:
    return await _show(
        request, caller, lambda session, context: users.get_user(session, context, user_id)
    )


@router.put("/Users/{user_id}")
async def users_replace(user_id: str, request: Request, caller: Caller) -> Response:
    return await _change(
        request, caller, user_id, users.replace_user, Context.RESOURCE_REPLACEMENT_RESPONSE
    )


@router.patch("/Users/{user_id}")
async def users_patch(user_id: str, request: Request, caller: Caller) -> Response:
    return await _change(
        request, caller, user_id, users.patch_user, Context.RESOURCE_PATCH_RESPONSE
    )


@router.delete("/Users/{user_id}")
async def users_delete(user_id: str, request: Request, caller: Caller) -> Response:
    return await _delete(request, caller, user_id, users.delete_user)


# --- Groups ----------------------------------------------------------------------------------


def _wants_members(params: ResponseParameters[Any]) -> bool:
    """Whether the response shows members: loading a large group's members is the cost an
    IdP avoids with ``excludedAttributes=members``."""
    excluded = {str(a).lower().rsplit(":", 1)[-1] for a in params.excluded_attributes or []}
    if "members" in excluded:
        return False
    wanted = {str(a).lower().rsplit(":", 1)[-1].split(".")[0] for a in params.attributes or []}
    return not wanted or "members" in wanted


@router.get("/Groups")
async def groups_list(request: Request, caller: Caller) -> Response:
    return await _list_groups(request, caller, _params(request))


@router.post("/Groups/.search")
async def groups_search(request: Request, caller: Caller) -> Response:
    return await _list_groups(request, caller, await _search_body(request))


async def _list_groups(request: Request, caller: ScimCaller, params: dict[str, Any]) -> Response:
    context = _context(request, caller)
    search = parse_search(params)
    with_members = _wants_members(search)
    total, found = await _read(
        request,
        lambda session: groups.list_groups(session, context, search, with_members=with_members),
    )
    return _respond(_list_body(total, search, found, Group))


@router.post("/Groups")
async def groups_create(request: Request, caller: Caller) -> Response:
    return await _create(request, caller, "Groups", groups.create_group)


@router.get("/Groups/{group_id}")
async def groups_get(group_id: str, request: Request, caller: Caller) -> Response:
    with_members = _wants_members(_response_parameters(request))
    return await _show(
        request,
        caller,
        lambda session, context: groups.get_group(
            session, context, group_id, with_members=with_members
        ),
    )


@router.put("/Groups/{group_id}")
async def groups_replace(group_id: str, request: Request, caller: Caller) -> Response:
    return await _change(
        request, caller, group_id, groups.replace_group, Context.RESOURCE_REPLACEMENT_RESPONSE
    )


@router.patch("/Groups/{group_id}")
async def groups_patch(group_id: str, request: Request, caller: Caller) -> Response:
    return await _change(
        request, caller, group_id, groups.patch_group, Context.RESOURCE_PATCH_RESPONSE
    )


@router.delete("/Groups/{group_id}")
async def groups_delete(group_id: str, request: Request, caller: Caller) -> Response:
    return await _delete(request, caller, group_id, groups.delete_group)


# --- search across resource types (RFC 7644 §3.4.3) ------------------------------------------


async def _count_or_none(work: Awaitable[tuple[int, list[Any]]]) -> tuple[int, list[Any]] | None:
    try:
        return await work
    except InvalidFilterException:
        return None


@router.post("/.search")
async def search_all(request: Request, caller: Caller) -> Response:
    """Users, then Groups. A filter naming an attribute only one type has matches nothing of
    the other type; one neither type knows is refused."""
    context = _context(request, caller)
    search = parse_search(await _search_body(request))
    page = page_of(search)
    head = search.model_copy(update={"start_index": 1, "count": 0})
    async with services_of(request).sessions() as session:
        user_total = await _count_or_none(users.list_users(session, context, head))
        group_total = await _count_or_none(groups.list_groups(session, context, head))
        if user_total is None and group_total is None:
            raise InvalidFilterException(detail="no resource type can be filtered like this")
        n_users = user_total[0] if user_total else 0
        n_groups = group_total[0] if group_total else 0
        found: list[Any] = []
        first = page.start_index - 1
        if page.count and first < n_users:
            part = search.model_copy(update={"start_index": first + 1, "count": page.count})
            found += (await users.list_users(session, context, part))[1]
        remaining = page.count - len(found)
        if remaining > 0 and n_groups:
            start = max(first - n_users, 0)
            part = search.model_copy(update={"start_index": start + 1, "count": remaining})
            found += (
                await groups.list_groups(
                    session, context, part, with_members=_wants_members(search)
                )
            )[1]
    return _respond(_list_body(n_users + n_groups, search, found, discovery.UserResource | Group))


# --- everything else -------------------------------------------------------------------------

_ENDPOINTS = {"serviceproviderconfig", "resourcetypes", "schemas", "users", "groups"}


# Not an operation of the API (it answers what is not one), so not in the OpenAPI document,
# where its five methods would also collide on one operation id.
@router.api_route(
    "/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False
)
async def elsewhere(rest: str, request: Request, caller: Caller) -> Response:
    # A known endpoint reached with a method it does not take is 405, anything else 404;
    # both as SCIM errors (RFC 7644 §3.12).
    first = rest.split("/", 1)[0].lower()
    if first in _ENDPOINTS:
        return scim_error(405, f"{request.method} is not supported here")
    raise NotFoundException(detail=f"no SCIM endpoint {rest!r}")
