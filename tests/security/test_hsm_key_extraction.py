"""Private keys stay where they were made.

On a SoftHSM2 token: keys made by the provider are on the token, generated there, and every
way of getting the private half out (read it, make it extractable, make it non-sensitive, wrap
it under a key of our own) is refused by the token itself; tokens they sign verify with PyJWT
against the public JWK. In the software provider: key files are 0600 in a 0700 directory and
hold no plaintext private key.
"""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest
from tests.fakes.key_services import SoftHsmToken

from obsigen.keys import KeyState, SigningAlg, make_key_provider


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def _make_keys(hsm_token: SoftHsmToken, tmp_path: Path) -> dict[str, str]:
    provider = make_key_provider(hsm_token.uri, tmp_path)
    try:
        return {
            "ES256": (await provider.create_signing_key("ES256")).kid,
            "RS256": (await provider.create_signing_key("RS256")).kid,
            "kek": (await provider.create_kek()).kid,
        }
    finally:
        # Close before the attacker's session logs in: PKCS#11 allows one login per process.
        await provider.aclose()


async def test_hsm_private_keys_cannot_be_extracted(
    hsm_token: SoftHsmToken, tmp_path: Path
) -> None:
    import pkcs11
    from pkcs11 import Attribute, KeyType, ObjectClass
    from pkcs11 import exceptions as p11e

    kids = await _make_keys(hsm_token, tmp_path)
    lib = pkcs11.lib("/usr/lib/softhsm/libsofthsm2.so")
    with lib.get_token(token_label=hsm_token.label).open(rw=True, user_pin=hsm_token.pin) as s:
        wrapping_key = s.generate_key(
            KeyType.AES, 256, label="attacker-wrapping-key", template={Attribute.WRAP: True}
        )
        secrets_on_token = [
            (s.get_key(object_class=ObjectClass.PRIVATE_KEY, label=kids["ES256"]), Attribute.VALUE),
            (
                s.get_key(object_class=ObjectClass.PRIVATE_KEY, label=kids["RS256"]),
                Attribute.PRIVATE_EXPONENT,
            ),
            (s.get_key(object_class=ObjectClass.SECRET_KEY, label=kids["kek"]), Attribute.VALUE),
        ]
        for key, secret_attribute in secrets_on_token:
            # Made on the token, and sensitive and unextractable since birth.
            assert key[Attribute.TOKEN] is True
            assert key[Attribute.LOCAL] is True
            assert key[Attribute.SENSITIVE] is True
            assert key[Attribute.ALWAYS_SENSITIVE] is True
            assert key[Attribute.EXTRACTABLE] is False
            assert key[Attribute.NEVER_EXTRACTABLE] is True
            with pytest.raises(p11e.AttributeSensitive):
                key[secret_attribute]
            with pytest.raises(p11e.AttributeReadOnly):
                key[Attribute.EXTRACTABLE] = True
            with pytest.raises(p11e.AttributeReadOnly):
                key[Attribute.SENSITIVE] = False
            with pytest.raises(p11e.KeyUnextractable):
                wrapping_key.wrap_key(key)
        # The public half is public, and nothing else about the key is.
        public = s.get_key(object_class=ObjectClass.PUBLIC_KEY, label=kids["ES256"])
        assert public[Attribute.EC_POINT]


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
async def test_hsm_signed_tokens_verify_with_pyjwt_against_the_jwk(
    hsm_token: SoftHsmToken, tmp_path: Path, alg: SigningAlg
) -> None:
    jwt = pytest.importorskip("jwt")
    provider = make_key_provider(hsm_token.uri, tmp_path)
    try:
        info = await provider.create_signing_key(alg)
        header = _b64url(json.dumps({"alg": alg, "typ": "JWT", "kid": info.kid}).encode())
        payload = _b64url(json.dumps({"sub": "u-1", "iss": "obsigen"}).encode())
        signature = await provider.sign(info.kid, f"{header}.{payload}".encode())
        jwks = {"keys": [await provider.public_jwk(info.kid)]}
    finally:
        await provider.aclose()
    # Only PyJWT and the published JWKS from here on: no obsigen code verifies.
    key = jwt.PyJWKSet.from_dict(json.loads(json.dumps(jwks)))[info.kid]
    token = f"{header}.{payload}.{_b64url(signature)}"
    assert jwt.decode(token, key=key, algorithms=[alg], issuer="obsigen")["sub"] == "u-1"


async def test_retiring_destroys_the_private_key_on_the_token(
    hsm_token: SoftHsmToken, tmp_path: Path
) -> None:
    import pkcs11
    from pkcs11 import Attribute, ObjectClass

    provider = make_key_provider(hsm_token.uri, tmp_path)
    try:
        info = await provider.create_signing_key("ES256")
        await provider.set_state(info.kid, KeyState.RETIRED)
    finally:
        await provider.aclose()
    lib = pkcs11.lib("/usr/lib/softhsm/libsofthsm2.so")
    with lib.get_token(token_label=hsm_token.label).open(user_pin=hsm_token.pin) as s:
        by_label = {Attribute.LABEL: info.kid}
        assert not list(s.get_objects({**by_label, Attribute.CLASS: ObjectClass.PRIVATE_KEY}))
        assert list(s.get_objects({**by_label, Attribute.CLASS: ObjectClass.PUBLIC_KEY}))


async def test_software_key_files_are_private_and_encrypted(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    provider = make_key_provider("software", tmp_path)
    es = await provider.create_signing_key("ES256")
    rs = await provider.create_signing_key("RS256")
    kek = await provider.create_kek()
    data_key = await provider.new_data_key(kek.kid, {"tenant": "t"})
    await provider.aclose()

    keys_dir = tmp_path / "keys"
    assert stat.S_IMODE(keys_dir.stat().st_mode) == 0o700
    files = [path for path in keys_dir.iterdir() if path.is_file()]
    assert {f"{es.kid}.p8", f"{rs.kid}.p8", f"{kek.kid}.kek", "master.key", "index.json"} <= {
        path.name for path in files
    }
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
    for kid in (es.kid, rs.kid):
        pem = (keys_dir / f"{kid}.p8").read_bytes()
        assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
        assert b"BEGIN PRIVATE KEY" not in pem
        assert b"BEGIN EC PRIVATE KEY" not in pem
        with pytest.raises(TypeError, match="encrypted"):
            load_pem_private_key(pem, password=None)
        with pytest.raises(ValueError):
            load_pem_private_key(pem, password=b"guess")
    everything = b"".join(path.read_bytes() for path in files)
    assert data_key.plaintext not in everything
    index = json.loads((keys_dir / "index.json").read_text())
    assert set(index["keys"]) == {es.kid, rs.kid, kek.kid}
    assert "PRIVATE" not in json.dumps(index)
