"""The settings of one SAML 2.0 identity provider, as an admin stores them (``/api/v1/idps``)."""

from __future__ import annotations

import re

from cryptography import x509
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from obsigen.federation.saml_metadata import read_idp_metadata
from obsigen.secretref import check_reference

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class SamlConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # The IdP's metadata document (EntityDescriptor), imported once; its signing certificates
    # must match a pin below.
    idp_metadata_xml: str = Field(min_length=1, max_length=512 * 1024)
    # SHA-256 (hex) of the DER certificates the IdP may sign with: a metadata swap alone cannot
    # introduce a new signer.
    pinned_certificates_sha256: list[str] = Field(min_length=1, max_length=10)
    groups_attribute: str = Field(default="groups", max_length=200)
    email_attribute: str = Field(default="email", max_length=200)
    name_attribute: str = Field(default="displayName", max_length=200)
    # Unsolicited responses (no AuthnRequest of ours) are refused unless this is on.
    allow_idp_initiated: bool = False
    want_encrypted_assertions: bool = False
    # Our SP key pair (decrypts encrypted assertions, signs AuthnRequests): the key as a secret
    # reference, the certificate as PEM.
    sp_private_key: str = Field(default="", max_length=500)
    sp_certificate: str = Field(default="", max_length=16 * 1024)
    # AuthnContextClassRef values that prove a second factor (counted only with trust_idp_mfa).
    mfa_authn_contexts: list[str] = Field(default_factory=list, max_length=20)

    @field_validator("pinned_certificates_sha256")
    @classmethod
    def _pins(cls, value: list[str]) -> list[str]:
        pins = [pin.replace(":", "").lower() for pin in value]
        if not all(_SHA256_HEX.fullmatch(pin) for pin in pins):
            raise ValueError("pinned_certificates_sha256: hex SHA-256 fingerprints")
        return pins

    @field_validator("sp_private_key")
    @classmethod
    def _key(cls, value: str) -> str:
        check_reference("sp_private_key", value)
        return value

    @field_validator("sp_certificate")
    @classmethod
    def _certificate(cls, value: str) -> str:
        if value:
            try:
                x509.load_pem_x509_certificate(value.encode("ascii"))
            except (ValueError, UnicodeEncodeError):
                raise ValueError("sp_certificate: one PEM X.509 certificate") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SamlConfig:
        read_idp_metadata(self.idp_metadata_xml, self.pinned_certificates_sha256)
        if bool(self.sp_private_key) != bool(self.sp_certificate):
            raise ValueError("sp_private_key and sp_certificate go together")
        if self.want_encrypted_assertions and not self.sp_private_key:
            raise ValueError("want_encrypted_assertions needs sp_private_key and sp_certificate")
        return self
