"""SAML 2.0 single sign-on: /auth/saml/{idp}/metadata, /login and /acs."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
