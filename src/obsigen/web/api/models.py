"""``GET /v1/models``: the models this deployment serves."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from obsigen.authz.permissions import Permission
from obsigen.authz.principal import Principal
from obsigen.web.auth import require

router = APIRouter(tags=["openai"])


@router.get("/v1/models")
async def list_models(
    request: Request, principal: Principal = require(Permission.MODELS_READ)
) -> dict[str, Any]:
    names = await request.app.state.catalog.models()
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": "obsigen"} for name in names
        ],
    }
