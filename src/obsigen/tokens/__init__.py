"""Access tokens: JWTs signed through the key provider, verified locally, published as a JWKS."""

from obsigen.tokens.access import (
    ACR_MFA,
    ACR_PWD,
    MFA_METHODS,
    AccessClaims,
    InvalidToken,
    TokenService,
)
from obsigen.tokens.jws import MalformedToken, Verifier
from obsigen.tokens.keyring import KeyRing

__all__ = [
    "ACR_MFA",
    "ACR_PWD",
    "MFA_METHODS",
    "AccessClaims",
    "InvalidToken",
    "KeyRing",
    "MalformedToken",
    "TokenService",
    "Verifier",
]
