"""What the Users and Groups resources share: the request's context, the effects a write leaves
for after its commit (audit events, sessions to end), versions and ETags, list pages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from scim2_models import (
    Context,
    InvalidValueException,
    PreconditionFailedException,
    SearchRequest,
)

from obsigen.audit.events import AuditEvent
from obsigen.scim.tokens import ScimCaller

DEFAULT_PAGE = 100
MAX_PAGE = 200


@dataclass(frozen=True, slots=True)
class ScimContext:
    caller: ScimCaller
    base_url: str  # ".../scim/v2", for meta.location and $ref
    source_address: str | None = None

    @property
    def tenant_id(self) -> str:
        return self.caller.tenant_id


@dataclass(slots=True)
class Effects:
    """What a write must do once its transaction commits (and, for sessions, also before)."""

    events: list[AuditEvent] = field(default_factory=list)
    end_sessions: set[str] = field(default_factory=set)

    def change(
        self, context: ScimContext, action: str, kind: str, target_id: str, **data: Any
    ) -> None:
        self.events.append(
            AuditEvent(
                type="admin.change",
                tenant_id=context.tenant_id,
                actor=context.caller.actor,
                outcome="success",
                source_address=context.source_address,
                target={"kind": kind, "id": target_id},
                data={"action": action, "via": "scim", **data},
            )
        )


def etag(version: int) -> str:
    return f'W/"{version}"'


def check_precondition(if_match: str | None, version: int) -> None:
    """If-Match (RFC 7232): ``*`` or a list of tags, one of which must be the current one."""
    if if_match is None:
        return
    wanted = {tag.strip() for tag in if_match.split(",")}
    current = etag(version)
    # A strong form of our weak tag names the same version.
    if "*" in wanted or current in wanted or current.removeprefix("W/") in wanted:
        return
    raise PreconditionFailedException(detail="the resource changed: fetch it again")


def not_modified(if_none_match: str | None, version: int) -> bool:
    if if_none_match is None:
        return False
    wanted = {tag.strip() for tag in if_none_match.split(",")}
    current = etag(version)
    return "*" in wanted or current in wanted or current.removeprefix("W/") in wanted


@dataclass(frozen=True, slots=True)
class Page:
    start_index: int  # 1-based
    count: int


def search_request(params: dict[str, Any]) -> SearchRequest[Any]:
    """The list parameters of a GET, validated by scim2-models (startIndex < 1 counts as 1,
    a negative count as 0)."""
    try:
        return SearchRequest.model_validate(params, scim_ctx=Context.SEARCH_REQUEST)
    except ValidationError as exc:
        raise from_validation_error(exc) from None


def page_of(request: SearchRequest[Any]) -> Page:
    count = DEFAULT_PAGE if request.count is None else min(max(request.count, 0), MAX_PAGE)
    return Page(start_index=max(request.start_index or 1, 1), count=count)


def from_validation_error(exc: ValidationError) -> Exception:
    """A pydantic error from scim2-models as the SCIM error it describes."""
    from scim2_models import SCIMException

    for error in exc.errors():
        kind = str(error.get("type", ""))
        if kind.startswith("scim_") and kind != "scim_error":
            scim_type = kind.removeprefix("scim_")
            detail = str(error.get("msg", ""))
            found = _SCIM_TYPES.get(scim_type)
            if found is not None:
                built: SCIMException = found(detail=detail)
                return built
    errors = exc.errors()
    if not errors:
        return InvalidValueException(detail="invalid value")
    first = errors[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    message = str(first.get("msg", "invalid value"))
    return InvalidValueException(detail=f"{where}: {message}" if where else message)


def _scim_types() -> dict[str, type[Any]]:
    import scim2_models as models

    found: dict[str, type[Any]] = {}
    for name in dir(models):
        candidate = getattr(models, name)
        if (
            isinstance(candidate, type)
            and issubclass(candidate, models.SCIMException)
            and candidate.scim_type
        ):
            found.setdefault(candidate.scim_type, candidate)
    return found


_SCIM_TYPES = _scim_types()
