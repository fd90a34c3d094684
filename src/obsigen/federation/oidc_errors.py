"""How the OIDC relying party says no: one stable problem type for every refusal of an IdP's
answer, one for an IdP that could not be reached."""

from __future__ import annotations

from obsigen.errors import Unauthenticated, UpstreamFailed


class OidcRefused(Unauthenticated):
    """The sign-in cannot complete: the IdP's answer failed a check, the flow is unknown, spent
    or expired, or the IdP reported an error. ``detail`` says which check, never a secret."""

    type_slug = "oidc-refused"
    title = "OIDC sign-in refused"


class IdpUnreachable(UpstreamFailed):
    """The IdP did not answer, or answered something that is not a usable document."""

    status = 502
    type_slug = "idp-unreachable"
    title = "The identity provider could not be reached"
