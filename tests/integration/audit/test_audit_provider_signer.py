"""Audit checkpoints signed by the HSM or KMS that signs session tokens, across a rotation.

With ``keys.signing`` pointing at a provider, the checkpoint signature comes from the
provider's newest active key (its private half never leaves the SoftHSM2 token or KMS), and
``obsigen audit verify`` trusts every signing key the provider holds, so checkpoints made
before a rotation still verify after it.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from tests.fakes.key_fixtures import hsm_token, kms_server
from tests.fakes.key_services import MotoServer, SoftHsmToken

from obsigen.audit.db_store import DatabaseAuditSink
from obsigen.audit.events import AuditEvent
from obsigen.audit.signing import (
    SigningError,
    make_signer,
    provider_public_keys,
    signing_provider,
)
from obsigen.audit.verify import verify_tenant
from obsigen.config import Settings
from obsigen.db.models import AuditCheckpoint
from obsigen.keys import make_key_provider
from obsigen.keys.interfaces import KeyState
from obsigen.keys.rotation import rotate

__all__ = ["hsm_token", "kms_server"]


@pytest.fixture(params=["pkcs11", "awskms"])
def signing_uri(request: pytest.FixtureRequest) -> str:
    if request.param == "pkcs11":
        token: SoftHsmToken = request.getfixturevalue("hsm_token")
        return token.uri
    server: MotoServer = request.getfixturevalue("kms_server")
    server.reset()
    return server.uri


def settings_for(database_url: str, data_dir: Path, signing: str) -> Settings:
    return Settings.model_validate(
        {
            "paths": {"data_dir": data_dir},
            "storage": {"database_url": database_url},
            "keys": {"signing": signing},
            "audit": {"checkpoint_every": 3},
        }
    )


def event(tenant_id: str, n: int) -> AuditEvent:
    return AuditEvent(
        type="chat.prompt",
        tenant_id=tenant_id,
        actor={"kind": "user", "id": "u1"},
        outcome="success",
        data={"n": n},
    )


async def checkpoint_kids(sink: DatabaseAuditSink, tenant_id: str) -> set[str]:
    async with sink.sessions() as session:
        rows = await session.scalars(
            select(AuditCheckpoint.key_id).where(AuditCheckpoint.tenant_id == tenant_id)
        )
        return set(rows)


async def test_checkpoints_are_signed_in_the_provider_and_survive_rotation(
    database_url: str, tmp_path: Path, signing_uri: str
) -> None:
    settings = settings_for(database_url, tmp_path, signing_uri)
    provider = make_key_provider(signing_uri, tmp_path)
    first = await provider.create_signing_key("ES256")
    sink = DatabaseAuditSink.from_settings(settings)
    tenant = uuid.uuid4().hex
    try:
        for n in range(4):
            await sink.emit(event(tenant, n))
        assert await checkpoint_kids(sink, tenant) == {first.kid}

        rotated = await rotate(provider, "signing", overlap=timedelta(minutes=20))
        for n in range(4, 8):
            await sink.emit(event(tenant, n))
        # Followed without a restart: new checkpoints come from the new key.
        assert await checkpoint_kids(sink, tenant) == {first.kid, rotated.created.kid}

        keys = await provider_public_keys(provider)
        assert {first.kid, rotated.created.kid} <= set(keys)
        assert all("d" not in jwk for jwk in keys.values())
        report = await verify_tenant(sink.sessions, tenant, keys)
        assert report.intact, report.summary()
        assert report.events == 8

        # Without the old key's public half the early checkpoints are a finding.
        only_new = {rotated.created.kid: keys[rotated.created.kid]}
        assert not (await verify_tenant(sink.sessions, tenant, only_new)).intact
    finally:
        await sink.aclose()
        await provider.aclose()


async def test_a_provider_without_an_active_key_says_so(tmp_path: Path, signing_uri: str) -> None:
    settings = settings_for("sqlite+aiosqlite:///:memory:", tmp_path / "empty", signing_uri)
    provider = make_key_provider(signing_uri, tmp_path / "empty")
    try:
        for info in await provider.list_keys():
            if info.use == "sig":
                await provider.set_state(info.kid, KeyState.RETIRED)
        own = signing_provider(settings)
        assert own is not None
        try:
            with pytest.raises(SigningError, match="no audit signing key"):
                await make_signer(settings, own)
        finally:
            await own.aclose()
    finally:
        await provider.aclose()
