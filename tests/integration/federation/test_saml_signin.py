"""SAML 2.0 sign-in end to end against a real pysaml2 IdP: SP-initiated login to our JWT with
roles from the groups attribute, encrypted assertions, IdP-initiated responses, metadata."""

from __future__ import annotations

import jwt
import pytest
from lxml import etree
from sqlalchemy import select
from tests.conftest import Platform
from tests.integration.federation.saml_idp import (
    MFA_CONTEXT,
    SamlKeys,
    TestIdp,
    inflate_redirect,
    register_idp,
    saml_keys,
)

from obsigen.authz.permissions import Role
from obsigen.db.federation_models import ExternalIdentity
from obsigen.db.models import AuditEventRecord, RoleBinding

pytestmark = pytest.mark.asyncio
__all__ = ["saml_keys"]


def claims(token: str) -> dict[str, object]:
    decoded: dict[str, object] = jwt.decode(token, options={"verify_signature": False})
    return decoded


async def roles_of(platform: Platform, user_id: str) -> list[tuple[str, str]]:
    async with platform.services.sessions() as session:
        rows = await session.scalars(
            select(RoleBinding).where(
                RoleBinding.principal_kind == "user", RoleBinding.principal_id == user_id
            )
        )
        return sorted((row.role, row.source) for row in rows)


async def test_sp_initiated_login_gives_our_jwt_with_mapped_roles(
    platform: Platform, saml_keys: SamlKeys
) -> None:
    setup = await register_idp(platform, TestIdp(saml_keys.idp), [saml_keys.idp.sha256])
    request_id = await setup.start_login(relay_state="/chat/123")
    response = await setup.post(setup.response(request_id))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["relay_state"] == "/chat/123"
    token = body["access_token"]
    assert "fed" in claims(token)["amr"]  # type: ignore[operator]
    async with platform.services.sessions() as session:
        link = await session.scalar(
            select(ExternalIdentity).where(ExternalIdentity.idp_id == setup.idp_id)
        )
        assert link is not None
        assert link.subject == "alice-0001"
        events = [
            row.record
            for row in await session.scalars(
                select(AuditEventRecord).where(AuditEventRecord.event_type == "auth.sso")
            )
        ]
    assert any(setup.idp_id in event and '"success"' in event for event in events)
    # The groups attribute mapped "engineering" to member: the token works for member routes.
    assert await roles_of(platform, str(claims(token)["sub"])) == [
        ("member", f"idp:{setup.idp_id}")
    ]
    models = await platform.client.get("/v1/models", headers=platform.auth(token))
    assert models.status_code == 200, models.text

    # Another user whose groups map to nothing gets an account but no role.
    request_id = await setup.start_login()
    other = await setup.post(
        setup.response(
            request_id, name_id="bob-0002", email="bob@corp.example.eu", groups=("sales",)
        )
    )
    assert other.status_code == 200, other.text
    bob = other.json()["access_token"]
    assert await roles_of(platform, str(claims(bob)["sub"])) == []
    denied = await platform.client.get("/v1/models", headers=platform.auth(bob))
    assert denied.status_code == 403, denied.text


async def test_mfa_context_counts_only_when_trusted(
    platform: Platform, saml_keys: SamlKeys
) -> None:
    setup = await register_idp(
        platform,
        TestIdp(saml_keys.idp),
        [saml_keys.idp.sha256],
        mfa_authn_contexts=[MFA_CONTEXT],
    )
    request_id = await setup.start_login()
    response = await setup.post(setup.response(request_id, authn_context=MFA_CONTEXT))
    assert response.status_code == 200, response.text
    # trust_idp_mfa is off for this IdP: the IdP's MFA does not make our session MFA.
    assert response.json()["mfa"] is False
    patched = await platform.client.patch(
        f"/api/v1/idps/{setup.idp_id}",
        json={"trust_idp_mfa": True},
        headers=platform.auth(setup.admin.token),
    )
    assert patched.status_code == 200, patched.text
    request_id = await setup.start_login()
    response = await setup.post(setup.response(request_id, authn_context=MFA_CONTEXT))
    assert response.status_code == 200, response.text
    assert response.json()["mfa"] is True


async def test_encrypted_assertion_is_accepted_and_can_be_required(
    platform: Platform, saml_keys: SamlKeys
) -> None:
    setup = await register_idp(
        platform,
        TestIdp(saml_keys.idp),
        [saml_keys.idp.sha256],
        sp_private_key=f"file:{saml_keys.sp.key_path}",
        sp_certificate=saml_keys.sp.cert_pem,
        want_encrypted_assertions=True,
    )
    # Our metadata offers the encryption certificate to the IdP.
    assert "".join(saml_keys.sp.cert_pem.strip().splitlines()[1:-1]) in setup.sp_metadata
    request_id = await setup.start_login()
    encrypted = setup.response(request_id, encrypt_cert=saml_keys.sp.cert_pem)
    assert "EncryptedAssertion" in encrypted
    assert "alice-0001" not in encrypted
    response = await setup.post(encrypted)
    assert response.status_code == 200, response.text

    request_id = await setup.start_login()
    plain = await setup.post(setup.response(request_id))
    assert plain.status_code == 401
    assert plain.json()["type"].endswith("saml-refused")
    assert "encrypt" in plain.json()["detail"]


async def test_idp_initiated_is_refused_by_default_and_accepted_when_enabled(
    platform: Platform, saml_keys: SamlKeys
) -> None:
    idp = TestIdp(saml_keys.idp)
    setup = await register_idp(platform, idp, [saml_keys.idp.sha256])
    refused = await setup.post(setup.response(None))
    assert refused.status_code == 401
    assert "unsolicited" in refused.json()["detail"]

    patched = await platform.client.patch(
        f"/api/v1/idps/{setup.idp_id}",
        json={
            "config": {
                "idp_metadata_xml": idp.metadata(),
                "pinned_certificates_sha256": [saml_keys.idp.sha256],
                "allow_idp_initiated": True,
            }
        },
        headers=platform.auth(setup.admin.token),
    )
    assert patched.status_code == 200, patched.text
    accepted = await setup.post(setup.response(None))
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["relay_state"] is None


async def test_idp_initiated_response_for_one_tenant_is_refused_at_another(
    platform: Platform, saml_keys: SamlKeys
) -> None:
    """Both tenants trust the same IdP and allow IdP-initiated sign-in; a response made for
    tenant A's SP does not sign anyone in at tenant B."""
    a = await register_idp(
        platform, TestIdp(saml_keys.idp), [saml_keys.idp.sha256], allow_idp_initiated=True
    )
    b = await register_idp(
        platform, TestIdp(saml_keys.idp), [saml_keys.idp.sha256], allow_idp_initiated=True
    )
    crossed = await b.post(a.response(None))
    assert crossed.status_code == 401, crossed.text


async def test_metadata_and_login_redirect(platform: Platform, saml_keys: SamlKeys) -> None:
    setup = await register_idp(platform, TestIdp(saml_keys.idp), [saml_keys.idp.sha256])
    metadata = await platform.client.get(f"/auth/saml/{setup.idp_id}/metadata")
    assert metadata.headers["content-type"].startswith("application/samlmetadata+xml")
    root = etree.fromstring(metadata.content)
    assert root.get("entityID") == setup.sp_entity_id
    assert setup.acs_url in metadata.text
    login = await platform.client.get(f"/auth/saml/{setup.idp_id}/login")
    assert login.status_code == 302
    request = inflate_redirect(login.headers["location"])
    assert setup.acs_url in request
    assert setup.sp_entity_id in request
    for bad in ("https://evil.example/x", "//evil.example/x", "javascript:alert(1)"):
        refused = await platform.client.get(
            f"/auth/saml/{setup.idp_id}/login", params={"relay_state": bad}
        )
        assert refused.status_code == 401, (bad, refused.text)
    unknown = await platform.client.get("/auth/saml/" + "0" * 32 + "/metadata")
    assert unknown.status_code == 404


async def test_config_time_validation(platform: Platform, saml_keys: SamlKeys) -> None:
    from tests.integration.federation.saml_idp import saml_idp_body

    admin = await platform.login(role=Role.ADMIN)
    headers = platform.auth(admin.token)
    idp = TestIdp(saml_keys.idp)
    # Metadata whose signing certificate is not pinned: refused when stored.
    unpinned = await platform.client.post(
        "/api/v1/idps", json=saml_idp_body(idp, [saml_keys.other.sha256]), headers=headers
    )
    assert unpinned.status_code == 422, unpinned.text
    assert "pinned" in unpinned.text
    body = saml_idp_body(idp, [saml_keys.idp.sha256])
    body["config"]["idp_metadata_xml"] = "<!DOCTYPE x [<!ENTITY e 'x'>]><x>&e;</x>"
    hostile = await platform.client.post("/api/v1/idps", json=body, headers=headers)
    assert hostile.status_code == 422, hostile.text
    body = saml_idp_body(idp, [saml_keys.idp.sha256], want_encrypted_assertions=True)
    keyless = await platform.client.post("/api/v1/idps", json=body, headers=headers)
    assert keyless.status_code == 422, keyless.text
