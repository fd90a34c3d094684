"""Federation: tenants' identity providers (OIDC, SAML), group-to-role mapping, sign-in of
external identities, and SCIM provisioning (docs/federation.md)."""
