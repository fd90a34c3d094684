"""SCIM 2.0 provisioning at /scim/v2 (RFC 7643/7644)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
