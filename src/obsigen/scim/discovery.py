"""What the SCIM service publishes about itself (RFC 7644 §4): ServiceProviderConfig,
ResourceTypes and Schemas, all built from scim2-models' own definitions."""

from __future__ import annotations

from typing import Any

from scim2_models import (
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    Context,
    EnterpriseUser,
    ETag,
    Filter,
    Group,
    Patch,
    ResourceType,
    Schema,
    ServiceProviderConfig,
    Sort,
    User,
)

from obsigen.scim.resources import MAX_PAGE

# The resource model served at /Users: the core schema with the enterprise extension.
UserResource = User[EnterpriseUser]

DOCS = "https://obsigen.dev/docs/scim"
# Attributes of the published schemas this service does not take: a SCIM user signs in
# through the IdP, so it has no password here (one sent anyway is dropped, never stored).
UNPUBLISHED = {User.__name__: {"password"}}


def service_provider_config(base_url: str) -> dict[str, Any]:
    config = ServiceProviderConfig(
        documentation_uri=DOCS,
        patch=Patch(supported=True),
        bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
        filter=Filter(supported=True, max_results=MAX_PAGE),
        change_password=ChangePassword(supported=False),
        sort=Sort(supported=True),
        etag=ETag(supported=True),
        authentication_schemes=[
            AuthenticationScheme(
                type=AuthenticationScheme.Type.oauthbearertoken,
                name="Bearer token",
                description="A SCIM token from `obsigen scim token create`",
                primary=True,
            )
        ],
    )
    config.meta = _meta("ServiceProviderConfig", f"{base_url}/ServiceProviderConfig")
    return config.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)


def _meta(resource_type: str, location: str) -> Any:
    from scim2_models import Meta

    return Meta(resource_type=resource_type, location=location)


def resource_types(base_url: str) -> list[dict[str, Any]]:
    found = []
    for model in (UserResource, Group):
        resource_type = ResourceType.from_resource(model)
        resource_type.meta = _meta("ResourceType", f"{base_url}/ResourceTypes/{resource_type.id}")
        found.append(resource_type.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE))
    return found


def schemas(base_url: str) -> list[dict[str, Any]]:
    found = []
    for model in (User, EnterpriseUser, Group):
        schema: Schema = model.to_schema()
        hidden = UNPUBLISHED.get(model.__name__, set())
        schema.attributes = [a for a in schema.attributes or [] if a.name not in hidden]
        schema.meta = _meta("Schema", f"{base_url}/Schemas/{schema.id}")
        found.append(schema.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE))
    return found
