"""The OpenAPI document says what the API really answers: errors are problem+json.

FastAPI documents only the success response and a 422 with its own validation-error shape.
Every route of ours can also refuse a request (401, 403, 404, 413, 429 ...) and every such
answer, 422 included, is an RFC 9457 problem document (``obsigen.web.problems``). Clients
generated from the document, and the schema fuzzer in ``tests/fuzz``, must see that.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from obsigen.web.problems import MEDIA_TYPE

PROBLEM_REF = "#/components/schemas/Problem"

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details; `type` is stable per kind of error.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
    },
    # Some problems carry more (validation ``errors``, ``retry_after`` ...).
    "additionalProperties": True,
}

# Any route may refuse (4XX); any route may meet an unavailable shared store or key service (503).
_ERRORS = {
    "4XX": "The request was refused",
    "503": "A store or service the request needs is unavailable; retry later",
}


def _problem_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {MEDIA_TYPE: {"schema": {"$ref": PROBLEM_REF}}}}


def add_problem_responses(document: dict[str, Any]) -> dict[str, Any]:
    """Declare problem+json error answers on every operation of ``document`` (in place)."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    # FastAPI's own validation-error shape is never sent: our handler answers 422 as a problem.
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses: dict[str, Any] = operation["responses"]
            if "4XX" in responses:
                # The route documents its own errors (SCIM's are SCIM Error messages).
                if "422" in responses:
                    responses["422"] = responses["4XX"]
                continue
            if "422" in responses:
                responses["422"] = _problem_response("The request is not valid")
            for status, description in _ERRORS.items():
                responses.setdefault(status, _problem_response(description))
    return document


def install_openapi(app: FastAPI) -> None:
    """Serve (and cache) the document with the problem responses added."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                openapi_version=app.openapi_version,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = add_problem_responses(document)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
