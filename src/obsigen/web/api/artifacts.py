"""Generated artifacts: GET /api/v1/artifacts/{id} for their owner."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
