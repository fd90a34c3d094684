"""A provider key seen as the audit chain's signer: same names, signatures that verify."""

from __future__ import annotations

import pytest

from obsigen.keys import KeyNotFound, KeyProvider, KeyState
from obsigen.keys.signer import ProviderSigner


async def test_current_signer_is_the_newest_active_key(provider: KeyProvider) -> None:
    # The SoftHSM token is shared by the whole test session: earlier tests' keys may be there.
    if not any(k.use == "sig" and k.state is KeyState.ACTIVE for k in await provider.list_keys()):
        with pytest.raises(KeyNotFound):
            await ProviderSigner.current(provider)
    old = await provider.create_signing_key("ES256")
    new = await provider.create_signing_key("RS256")
    await provider.create_kek()
    signer = await ProviderSigner.current(provider)
    assert (signer.key_id, signer.algorithm) == (new.kid, "RS256")
    await provider.set_state(new.kid, KeyState.VERIFY_ONLY)
    signer = await ProviderSigner.current(provider)
    assert (signer.key_id, signer.algorithm) == (old.kid, "ES256")
    signature = await signer.sign(b"checkpoint")
    assert await signer.verify(b"checkpoint", signature)
    assert (await signer.public_jwk())["kid"] == old.kid
