"""SCIM 2.0 provisioning (RFC 7643/7644): tokens, filters, the Users and Groups resources and
deprovisioning. The HTTP surface is ``obsigen.web.api.scim`` (docs/scim.md)."""
