"""The one conformance suite every key provider passes (software, PKCS#11 on SoftHSM2, KMS on
moto). Signatures are also checked without our code: from the public JWK alone, with
``cryptography`` and with PyJWT."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from obsigen.keys import (
    KeyInfo,
    KeyNotFound,
    KeyProvider,
    KeyState,
    KeyStateError,
    SigningAlg,
    UnsupportedAlgorithm,
    UnwrapFailed,
    make_key_provider,
)

ALGS: list[SigningAlg] = ["ES256", "RS256"]
CONTEXT = {"tenant": "t-1", "purpose": "file", "object": "f-42"}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _public_key_from_jwk(jwk: dict[str, str]) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
    """Build the key from the JWK fields by hand: nothing of obsigen's is involved."""
    if jwk["kty"] == "EC":
        assert jwk["crv"] == "P-256"
        return ec.EllipticCurvePublicNumbers(
            int.from_bytes(_unb64url(jwk["x"]), "big"),
            int.from_bytes(_unb64url(jwk["y"]), "big"),
            ec.SECP256R1(),
        ).public_key()
    assert jwk["kty"] == "RSA"
    return rsa.RSAPublicNumbers(
        int.from_bytes(_unb64url(jwk["e"]), "big"), int.from_bytes(_unb64url(jwk["n"]), "big")
    ).public_key()


def _independent_verify(jwk: dict[str, str], message: bytes, signature: bytes) -> bool:
    key = _public_key_from_jwk(jwk)
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            assert len(signature) == 64  # JWS ES256: raw r||s, not DER
            r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
            key.verify(encode_dss_signature(r, s), message, ec.ECDSA(hashes.SHA256()))
        else:
            key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


async def _jwt(provider: KeyProvider, kid: str, alg: str, claims: dict[str, object]) -> str:
    header = _b64url(json.dumps({"alg": alg, "typ": "JWT", "kid": kid}).encode())
    payload = _b64url(json.dumps(claims).encode())
    signing_input = f"{header}.{payload}".encode()
    return f"{header}.{payload}.{_b64url(await provider.sign(kid, signing_input))}"


# --- signing ----------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ALGS)
async def test_sign_verify_round_trip(provider: KeyProvider, alg: SigningAlg) -> None:
    info = await provider.create_signing_key(alg)
    assert (info.alg, info.use, info.state) == (alg, "sig", KeyState.ACTIVE)
    message = b"header.payload"
    signature = await provider.sign(info.kid, message)
    assert len(signature) == (64 if alg == "ES256" else 256)
    assert await provider.verify(info.kid, message, signature)


@pytest.mark.parametrize("alg", ALGS)
async def test_public_jwk_verifies_signatures_independently(
    provider: KeyProvider, alg: SigningAlg
) -> None:
    info = await provider.create_signing_key(alg)
    jwk = await provider.public_jwk(info.kid)
    assert jwk["kid"] == info.kid
    assert jwk["alg"] == alg
    assert jwk["use"] == "sig"
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(jwk), "a private JWK member leaked"
    message = b"an audit checkpoint, or a token's signing input"
    signature = await provider.sign(info.kid, message)
    assert _independent_verify(jwk, message, signature)
    assert not _independent_verify(jwk, message + b"!", signature)


@pytest.mark.parametrize("alg", ALGS)
async def test_tokens_verify_with_pyjwt_against_the_jwk(
    provider: KeyProvider, alg: SigningAlg
) -> None:
    jwt = pytest.importorskip("jwt")
    info = await provider.create_signing_key(alg)
    jwk = await provider.public_jwk(info.kid)
    token = await _jwt(provider, info.kid, alg, {"sub": "u-1", "aud": "obsigen"})
    claims = jwt.decode(token, key=jwt.PyJWK(jwk), algorithms=[alg], audience="obsigen")
    assert claims["sub"] == "u-1"
    header, _payload, signature = token.split(".")
    forged = _b64url(json.dumps({"sub": "admin", "aud": "obsigen"}).encode())
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(
            f"{header}.{forged}.{signature}",
            key=jwt.PyJWK(jwk),
            algorithms=[alg],
            audience="obsigen",
        )


@pytest.mark.parametrize("alg", ALGS)
async def test_tampered_message_or_signature_fails(provider: KeyProvider, alg: SigningAlg) -> None:
    info = await provider.create_signing_key(alg)
    signature = await provider.sign(info.kid, b"original")
    assert not await provider.verify(info.kid, b"originaL", signature)
    flipped = bytes([signature[0] ^ 1]) + signature[1:]
    assert not await provider.verify(info.kid, b"original", flipped)
    assert not await provider.verify(info.kid, b"original", signature[:-1])
    assert not await provider.verify(info.kid, b"original", b"")
    # r = s = 0 verifies anything in a broken ECDSA verifier (CVE-2022-21449).
    assert not await provider.verify(info.kid, b"original", bytes(len(signature)))


async def test_signature_of_another_key_fails(provider: KeyProvider) -> None:
    first = await provider.create_signing_key("ES256")
    second = await provider.create_signing_key("ES256")
    signature = await provider.sign(first.kid, b"m")
    assert not await provider.verify(second.kid, b"m", signature)


@pytest.mark.parametrize(
    "kid",
    [
        "sig-0000000000000000",
        "8e0a5b52-1c1e-4a5e-9d5e-000000000000",
        "../../etc/passwd",
        "sig-1;lib=/tmp/x",
        "",
        "a" * 200,
    ],
)
async def test_unknown_or_malformed_kid_fails_cleanly(provider: KeyProvider, kid: str) -> None:
    with pytest.raises(KeyNotFound):
        await provider.sign(kid, b"m")
    with pytest.raises(KeyNotFound):
        await provider.verify(kid, b"m", bytes(64))
    with pytest.raises(KeyNotFound):
        await provider.public_jwk(kid)
    with pytest.raises(KeyNotFound):
        await provider.wrap(kid, bytes(32), CONTEXT)
    with pytest.raises(KeyNotFound):
        await provider.set_state(kid, KeyState.RETIRED)


async def test_keys_are_used_only_for_their_purpose(provider: KeyProvider) -> None:
    signing = await provider.create_signing_key("ES256")
    kek = await provider.create_kek()
    with pytest.raises(KeyNotFound):
        await provider.sign(kek.kid, b"m")
    with pytest.raises(KeyNotFound):
        await provider.public_jwk(kek.kid)
    with pytest.raises(KeyNotFound):
        await provider.wrap(signing.kid, bytes(32), CONTEXT)
    with pytest.raises(KeyNotFound):
        await provider.unwrap(signing.kid, bytes(64), CONTEXT)


@pytest.mark.parametrize("alg", ["HS256", "none", "es256", "PS256", "EdDSA"])
async def test_only_allowed_algorithms(provider: KeyProvider, alg: str) -> None:
    with pytest.raises(UnsupportedAlgorithm):
        await provider.create_signing_key(alg)  # type: ignore[arg-type]


# --- wrapping ---------------------------------------------------------------------------------


async def test_wrap_unwrap_round_trip(provider: KeyProvider) -> None:
    kek = await provider.create_kek()
    assert (kek.alg, kek.use, kek.state) == ("A256GCM", "enc", KeyState.ACTIVE)
    data_key = bytes(range(32))
    wrapped = await provider.wrap(kek.kid, data_key, CONTEXT)
    assert data_key not in wrapped
    assert await provider.unwrap(kek.kid, wrapped, CONTEXT) == data_key
    # The context is canonical: the order its entries were added in does not matter.
    reordered = dict(reversed(list(CONTEXT.items())))
    assert await provider.unwrap(kek.kid, wrapped, reordered) == data_key


async def test_new_data_key_round_trip(provider: KeyProvider) -> None:
    kek = await provider.create_kek()
    first = await provider.new_data_key(kek.kid, CONTEXT)
    second = await provider.new_data_key(kek.kid, CONTEXT)
    assert len(first.plaintext) == 32
    assert first.plaintext != second.plaintext
    assert await provider.unwrap(kek.kid, first.wrapped, CONTEXT) == first.plaintext


@pytest.mark.parametrize(
    "context",
    [
        {**CONTEXT, "tenant": "t-2"},
        {**CONTEXT, "extra": "x"},
        {k: v for k, v in CONTEXT.items() if k != "object"},
        {},
    ],
)
async def test_unwrap_with_another_context_fails(
    provider: KeyProvider, context: dict[str, str]
) -> None:
    kek = await provider.create_kek()
    wrapped = await provider.wrap(kek.kid, bytes(32), CONTEXT)
    with pytest.raises(UnwrapFailed):
        await provider.unwrap(kek.kid, wrapped, context)


async def test_unwrap_of_tampered_bytes_or_under_another_kek_fails(provider: KeyProvider) -> None:
    kek = await provider.create_kek()
    other = await provider.create_kek()
    wrapped = await provider.wrap(kek.kid, bytes(32), CONTEXT)
    tampered = wrapped[:-1] + bytes([wrapped[-1] ^ 1])
    with pytest.raises(UnwrapFailed):
        await provider.unwrap(kek.kid, tampered, CONTEXT)
    with pytest.raises(UnwrapFailed):
        await provider.unwrap(other.kid, wrapped, CONTEXT)
    with pytest.raises(UnwrapFailed):
        await provider.unwrap(kek.kid, b"short", CONTEXT)


# --- states and listing -------------------------------------------------------------------------


async def test_signing_key_states(provider: KeyProvider) -> None:
    info = await provider.create_signing_key("ES256")
    signature = await provider.sign(info.kid, b"m")

    overlap_end = datetime.now(UTC) + timedelta(hours=1)
    changed = await provider.set_state(info.kid, KeyState.VERIFY_ONLY, retire_after=overlap_end)
    assert changed.state is KeyState.VERIFY_ONLY
    assert changed.retire_after is not None
    assert abs(changed.retire_after - overlap_end) < timedelta(seconds=1)
    with pytest.raises(KeyStateError):
        await provider.sign(info.kid, b"m")
    assert await provider.verify(info.kid, b"m", signature)

    retired = await provider.set_state(info.kid, KeyState.RETIRED)
    assert retired.state is KeyState.RETIRED
    with pytest.raises(KeyStateError):
        await provider.sign(info.kid, b"m")
    with pytest.raises(KeyStateError):
        await provider.verify(info.kid, b"m", signature)
    with pytest.raises(KeyStateError):
        await provider.set_state(info.kid, KeyState.ACTIVE)
    # Auditors still get the public half to check old signatures offline.
    assert _independent_verify(await provider.public_jwk(info.kid), b"m", signature)


async def test_a_passed_retire_after_retires_without_any_job(provider: KeyProvider) -> None:
    info = await provider.create_signing_key("ES256")
    signature = await provider.sign(info.kid, b"m")
    past = datetime.now(UTC) - timedelta(seconds=1)
    changed = await provider.set_state(info.kid, KeyState.VERIFY_ONLY, retire_after=past)
    assert changed.state is KeyState.RETIRED
    with pytest.raises(KeyStateError):
        await provider.verify(info.kid, b"m", signature)
    with pytest.raises(KeyStateError):
        await provider.set_state(info.kid, KeyState.VERIFY_ONLY)


async def test_kek_states(provider: KeyProvider) -> None:
    kek = await provider.create_kek()
    wrapped = await provider.wrap(kek.kid, bytes(32), CONTEXT)
    await provider.set_state(kek.kid, KeyState.VERIFY_ONLY)
    with pytest.raises(KeyStateError):
        await provider.wrap(kek.kid, bytes(32), CONTEXT)
    with pytest.raises(KeyStateError):
        await provider.new_data_key(kek.kid, CONTEXT)
    assert await provider.unwrap(kek.kid, wrapped, CONTEXT) == bytes(32)
    await provider.set_state(kek.kid, KeyState.RETIRED)
    with pytest.raises(KeyStateError):
        await provider.unwrap(kek.kid, wrapped, CONTEXT)


async def test_list_shows_created_at_and_state(provider: KeyProvider) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    es = await provider.create_signing_key("ES256")
    rs = await provider.create_signing_key("RS256")
    kek = await provider.create_kek()
    await provider.set_state(rs.kid, KeyState.VERIFY_ONLY)
    listed = {info.kid: info for info in await provider.list_keys()}
    assert {es.kid, rs.kid, kek.kid} <= set(listed)
    for created in (es, rs, kek):
        shown = listed[created.kid]
        assert isinstance(shown, KeyInfo)
        assert shown.created_at.tzinfo is not None
        assert before <= shown.created_at <= datetime.now(UTC) + timedelta(seconds=5)
        assert shown.alg == created.alg
        assert shown.use == created.use
    assert listed[es.kid].state is KeyState.ACTIVE
    assert listed[rs.kid].state is KeyState.VERIFY_ONLY
    assert (await provider.get_key(kek.kid)).state is KeyState.ACTIVE


async def test_state_is_shared_with_another_instance(
    provider: KeyProvider, provider_uri: str, tmp_path: Path
) -> None:
    """Two processes (API replicas, the CLI) on one backend see the same states."""
    info = await provider.create_signing_key("ES256")
    other = make_key_provider(provider_uri, tmp_path)
    try:
        signature = await other.sign(info.kid, b"m")
        assert await provider.verify(info.kid, b"m", signature)
        await other.set_state(info.kid, KeyState.VERIFY_ONLY)
        assert (await provider.get_key(info.kid)).state is KeyState.VERIFY_ONLY
    finally:
        await other.aclose()


async def test_provider_satisfies_the_protocol(provider: KeyProvider) -> None:
    assert isinstance(provider, KeyProvider)
    assert provider.name in {"software", "pkcs11", "awskms"}


async def test_concurrent_calls_do_not_interfere(provider: KeyProvider) -> None:
    """Request handlers call concurrently; a PKCS#11 session must still see one at a time."""
    info = await provider.create_signing_key("ES256")
    kek = await provider.create_kek()
    messages = [f"m{i}".encode() for i in range(16)]
    signatures, wrapped = await asyncio.gather(
        asyncio.gather(*(provider.sign(info.kid, m) for m in messages)),
        asyncio.gather(*(provider.wrap(kek.kid, m.ljust(32, b"\0"), CONTEXT) for m in messages)),
    )
    checks = await asyncio.gather(
        *(provider.verify(info.kid, m, s) for m, s in zip(messages, signatures, strict=True))
    )
    assert all(checks)
    opened = await asyncio.gather(*(provider.unwrap(kek.kid, w, CONTEXT) for w in wrapped))
    assert [o.rstrip(b"\0") for o in opened] == messages
