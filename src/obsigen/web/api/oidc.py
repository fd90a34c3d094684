"""OIDC single sign-on: /auth/oidc/{idp}/login and /auth/oidc/{idp}/callback."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
