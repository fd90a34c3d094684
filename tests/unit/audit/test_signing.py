"""The checkpoint signer: RFC 8032 Ed25519, the key file, JWKs, and OpenSSL agreeing with us."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from obsigen.audit import ed25519
from obsigen.audit.jwk import b64url, b64url_decode, jwk_thumbprint, verify_with_jwk
from obsigen.audit.signing import (
    SIGNING_KEY_FILE,
    Signer,
    SigningError,
    SoftwareEd25519Signer,
    software_signer,
    trusted_keys,
)

# RFC 8032 section 7.1, TEST 1-3 and TEST SHA(abc).
RFC8032_VECTORS = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
        "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
        "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
]


@pytest.mark.parametrize(("seed", "public", "message", "signature"), RFC8032_VECTORS)
def test_rfc8032_vectors(seed: str, public: str, message: str, signature: str) -> None:
    seed_b, message_b = bytes.fromhex(seed), bytes.fromhex(message)
    assert ed25519.public_key(seed_b).hex() == public
    assert ed25519.sign(seed_b, message_b).hex() == signature
    assert ed25519.verify(bytes.fromhex(public), message_b, bytes.fromhex(signature))


def test_verify_rejects_changed_message_signature_or_key() -> None:
    _, public, _, signature = (bytes.fromhex(v) for v in RFC8032_VECTORS[1])
    message = b"\x72"
    assert not ed25519.verify(public, b"\x73", signature)
    flipped = bytes([signature[0] ^ 1]) + signature[1:]
    assert not ed25519.verify(public, message, flipped)
    other = ed25519.public_key(bytes(32))
    assert not ed25519.verify(other, message, signature)
    assert not ed25519.verify(public, message, signature[:63])
    # s >= group order is malleable and must be refused.
    big_s = signature[:32] + (2**253).to_bytes(32, "little")
    assert not ed25519.verify(public, message, big_s)


def test_jwk_thumbprint_of_rfc8037() -> None:
    # RFC 8037 appendix A.3: the thumbprint of the RFC 8032 TEST 1 public key.
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    assert jwk_thumbprint(jwk) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_key_file_is_created_once_owner_only(tmp_path: Path) -> None:
    signer = software_signer(tmp_path)
    path = tmp_path / "keys" / SIGNING_KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.read_text().startswith("-----BEGIN PRIVATE KEY-----\n")
    assert software_signer(tmp_path).key_id == signer.key_id
    assert isinstance(signer, Signer)


def test_processes_racing_to_create_the_key_agree(tmp_path: Path) -> None:
    with ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(lambda _: software_signer(tmp_path).key_id, range(16)))
    assert len(ids) == 1
    assert [p.name for p in (tmp_path / "keys").iterdir()] == [SIGNING_KEY_FILE]


def test_a_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    software_signer(tmp_path)
    path = tmp_path / "keys" / SIGNING_KEY_FILE
    path.chmod(0o644)
    with pytest.raises(SigningError, match="chmod 600"):
        software_signer(tmp_path)


def test_a_corrupt_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / SIGNING_KEY_FILE
    path.parent.mkdir(mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    os.close(fd)
    with pytest.raises(SigningError):
        software_signer(tmp_path)


async def test_sign_and_verify_with_the_public_jwk(tmp_path: Path) -> None:
    signer = software_signer(tmp_path)
    signature = await signer.sign(b"checkpoint")
    jwk = await signer.public_jwk()
    assert jwk["kid"] == signer.key_id == jwk_thumbprint(jwk)
    assert "d" not in jwk
    assert await signer.verify(b"checkpoint", signature)
    assert not await signer.verify(b"checkpoint!", signature)
    assert verify_with_jwk(jwk, b"checkpoint", signature)
    assert not verify_with_jwk(jwk, b"checkpoint!", signature)
    assert not verify_with_jwk({**jwk, "crv": "X25519"}, b"checkpoint", signature)
    assert not verify_with_jwk({**jwk, "x": "!!"}, b"checkpoint", signature)


async def test_trusted_keys_include_ours_and_dropped_in_jwks(tmp_path: Path) -> None:
    ours = software_signer(tmp_path)
    other = SoftwareEd25519Signer(bytes(range(32)))
    trusted = tmp_path / "keys" / "audit-trusted"
    trusted.mkdir()
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": other.jwk["x"], "kid": "hsm-2025"}
    (trusted / "old.json").write_text(json.dumps(jwk))
    assert set(await trusted_keys(tmp_path, ours)) == {ours.key_id, other.key_id, "hsm-2025"}
    (trusted / "broken.json").write_text("{not json")
    with pytest.raises(SigningError, match=r"broken\.json"):
        await trusted_keys(tmp_path, ours)


def test_b64url_round_trip() -> None:
    for data in (b"", b"\x00", b"\xff" * 31, bytes(range(64))):
        assert b64url_decode(b64url(data)) == data
    with pytest.raises(ValueError):
        b64url_decode("a")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_openssl_reads_our_key_and_we_verify_its_signature(tmp_path: Path) -> None:
    signer = software_signer(tmp_path)
    key = tmp_path / "keys" / SIGNING_KEY_FILE
    message = tmp_path / "message"
    message.write_bytes(b"an audit checkpoint")
    signature = tmp_path / "signature"
    subprocess.run(
        ["openssl", "pkeyutl", "-sign", "-inkey", str(key), "-rawin", "-in", str(message),
         "-out", str(signature)],
        check=True,
    )  # fmt: skip
    # Ed25519 is deterministic: OpenSSL and we produce the same bytes.
    assert signature.read_bytes() == signer.sign_now(b"an audit checkpoint")
    public = subprocess.run(
        ["openssl", "pkey", "-in", str(key), "-pubout"], check=True, capture_output=True, text=True
    ).stdout
    assert public == signer.public_pem()


def test_thumbprints_cover_only_the_required_members() -> None:
    okp = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    assert jwk_thumbprint({**okp, "kid": "anything", "use": "sig"}) == jwk_thumbprint(okp)
    ec = {"kty": "EC", "crv": "P-256", "x": "a", "y": "b"}
    assert jwk_thumbprint(ec) != jwk_thumbprint({**ec, "y": "c"})
    with pytest.raises(ValueError):
        jwk_thumbprint({"kty": "oct", "k": "secret"})
    with pytest.raises(ValueError):
        jwk_thumbprint({"kty": "EC", "crv": "P-256", "x": "a"})


def test_provider_signatures_verify_with_their_jwks() -> None:
    """ES256 and RS256: what HSM and KMS keys (the keys issue) sign checkpoints with."""
    pytest.importorskip("cryptography")
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    message = b"checkpoint payload"
    ec_key = ec.generate_private_key(ec.SECP256R1())
    r, s = decode_dss_signature(ec_key.sign(message, ec.ECDSA(hashes.SHA256())))
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    numbers = ec_key.public_key().public_numbers()
    ec_jwk = {"kty": "EC", "crv": "P-256", "x": b64url(numbers.x.to_bytes(32, "big")),
              "y": b64url(numbers.y.to_bytes(32, "big"))}  # fmt: skip
    assert verify_with_jwk(ec_jwk, message, raw)
    assert not verify_with_jwk(ec_jwk, message + b"!", raw)
    assert not verify_with_jwk(ec_jwk, message, raw[:63])
    assert not verify_with_jwk({**ec_jwk, "x": ec_jwk["y"]}, message, raw)  # not on the curve

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signature = rsa_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    public = rsa_key.public_key().public_numbers()
    rsa_jwk = {"kty": "RSA", "e": b64url(public.e.to_bytes(3, "big")),
               "n": b64url(public.n.to_bytes(256, "big"))}  # fmt: skip
    assert verify_with_jwk(rsa_jwk, message, signature)
    assert not verify_with_jwk(rsa_jwk, message, signature[::-1])
    assert not verify_with_jwk({**rsa_jwk, "d": "private"}, message, signature)
    assert not verify_with_jwk({"kty": "oct", "k": "c2VjcmV0"}, message, signature)
