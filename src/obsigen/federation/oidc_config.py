"""The settings of one OIDC identity provider, as an admin stores them (``/api/v1/idps``)."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from obsigen.secretref import check_reference

_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def check_idp_url(field: str, value: str) -> str:
    """An IdP URL must be https; plain http is accepted only on loopback (tests, a local IdP)."""
    parts = urlsplit(value)
    if parts.scheme == "https" and parts.hostname:
        return value
    if parts.scheme == "http" and parts.hostname in _LOOPBACK:
        return value
    raise ValueError(f"{field} must be an https URL (http only on loopback)")


class OidcConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    issuer: str = Field(max_length=500)
    client_id: str = Field(min_length=1, max_length=255)
    # A secret reference (env:, file:, awssm:); empty for a public client (PKCE alone).
    client_secret: str = Field(default="", max_length=500)
    scopes: list[str] = Field(default_factory=lambda: ["openid", "email", "profile"], max_length=20)
    groups_claim: str = Field(default="groups", max_length=100)
    email_claim: str = Field(default="email", max_length=100)
    name_claim: str = Field(default="name", max_length=100)
    # The IdP's amr or acr values that prove a second factor (counted only when the IdP row
    # has trust_idp_mfa).
    mfa_amr_values: list[str] = Field(
        default_factory=lambda: ["mfa", "otp", "hwk", "swk", "fido"], max_length=20
    )
    mfa_acr_values: list[str] = Field(default_factory=list, max_length=20)

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, value: str) -> str:
        return check_idp_url("issuer", value.rstrip("/") if value.endswith("/") else value)

    @field_validator("client_secret")
    @classmethod
    def _secret(cls, value: str) -> str:
        check_reference("client_secret", value)
        return value

    @field_validator("scopes")
    @classmethod
    def _openid(cls, value: list[str]) -> list[str]:
        if "openid" not in value:
            raise ValueError("scopes must include openid")
        return value
