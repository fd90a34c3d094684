"""Compact JWS parsing and local verification: every malformed shape is refused, and each
refusal happens at the step that is meant to catch it."""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from obsigen.tokens.jws import (
    MAX_TOKEN_CHARS,
    P256_ORDER,
    MalformedToken,
    Verifier,
    b64url_decode,
    b64url_encode,
    ecdsa_raw_to_der,
    parse_compact,
    parse_json_object,
)

HEADER = {"alg": "ES256", "typ": "at+jwt", "kid": "sig-0123456789abcdef"}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def seg(value: Any) -> str:
    return b64(json.dumps(value).encode())


def token(header: Any = None, payload: Any = None, signature: bytes = b"\x01" * 64) -> str:
    return ".".join(
        [seg(HEADER if header is None else header), seg(payload or {"sub": "u"}), b64(signature)]
    )


def reason(text: str) -> str:
    with pytest.raises(MalformedToken) as caught:
        parse_compact(text, expected_typ="at+jwt")
    return str(caught.value)


# --- well-formed ---------------------------------------------------------------------------------


def test_a_well_formed_token_parses() -> None:
    parsed = parse_compact(token(), expected_typ="at+jwt")
    assert parsed.alg == "ES256"
    assert parsed.kid == "sig-0123456789abcdef"
    assert json.loads(parsed.payload) == {"sub": "u"}
    assert parsed.signature == b"\x01" * 64
    assert parsed.signing_input == ".".join(token().split(".")[:2]).encode()


@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "application/at+jwt"])
def test_typ_compares_as_a_media_type(typ: str) -> None:
    assert parse_compact(token({**HEADER, "typ": typ}), expected_typ="at+jwt").kid


# --- structure -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "abc",
        "a.b",
        token() + ".x",  # four parts: a JWE is five, anything else is not ours
        token() + ".",
        "..",
    ],
)
def test_exactly_three_parts(text: str) -> None:
    with pytest.raises(MalformedToken):
        parse_compact(text)


def test_size_limit_is_checked_before_decoding() -> None:
    padded = token({**HEADER}, {"sub": "u" * MAX_TOKEN_CHARS})
    assert reason(padded) == "too long"
    # Just under the limit still parses: the limit is the size, not some other property.
    payload_room = MAX_TOKEN_CHARS - len(token(payload={"sub": ""}))
    fits = token(payload={"sub": "u" * (payload_room * 3 // 4 - 2)})
    assert len(fits) <= MAX_TOKEN_CHARS
    assert parse_compact(fits).kid


def test_non_ascii_is_refused() -> None:
    assert reason(token() + "é") == "not ASCII"


def test_empty_signature_is_refused() -> None:
    head, body, _ = token().split(".")
    assert reason(f"{head}.{body}.") == "no signature"


# --- base64url -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "YQ==",  # padding
        "YQ=",
        "a+b/",  # standard alphabet, not url-safe
        "YWJj ",
        "Y",  # a length no encoding produces
        "YR",  # 'R' leaves non-zero unused bits: decodes to b"a" like "YQ"
    ],
)
def test_base64url_is_strict_and_canonical(text: str) -> None:
    with pytest.raises(MalformedToken):
        b64url_decode(text)


def test_base64url_round_trip() -> None:
    for data in (b"", b"a", b"ab", b"abc", bytes(range(256))):
        assert b64url_decode(b64url_encode(data)) == data


def test_non_canonical_signature_spelling_is_refused() -> None:
    head, body, signature = token(signature=b"\x01" * 64 + b"\x00").split(".")
    # The last character of a 65-byte signature carries 4 unused bits.
    assert signature[-1] == "A"
    respelled = f"{head}.{body}.{signature[:-1]}B"
    assert "non-canonical" in reason(respelled)


# --- JSON ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"[1, 2]",
        b'"a string"',
        b"null",
        b"{",
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b"\xff\xfe{}",
        b"[" * 5000 + b"]" * 5000,
        b'{"exp": ' + b"9" * 5000 + b"}",
    ],
)
def test_json_must_be_a_plain_object(raw: bytes) -> None:
    with pytest.raises(MalformedToken):
        parse_json_object(raw)


def test_duplicate_json_members_are_refused() -> None:
    # A parser that keeps the last duplicate and one that keeps the first would see two
    # different tokens in the same bytes.
    with pytest.raises(MalformedToken, match="duplicate"):
        parse_json_object(b'{"sub": "alice", "sub": "admin"}')
    raw_header = b'{"alg":"ES256","typ":"at+jwt","kid":"sig-1","kid":"../x"}'
    text = f"{b64(raw_header)}.{seg({'sub': 'u'})}.{b64(bytes(64))}"
    assert "duplicate" in reason(text)


def test_header_must_be_an_object() -> None:
    assert reason(token(header=["ES256"])) == "JSON is not an object"


# --- header rules --------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "HS256", "RS512", "ES256K", "PS256", "", None, 1])
def test_alg_outside_the_allow_list(alg: Any) -> None:
    assert reason(token({**HEADER, "alg": alg})) == "alg not allowed"


def test_missing_alg_is_refused() -> None:
    header = {k: v for k, v in HEADER.items() if k != "alg"}
    assert reason(token(header)) == "alg not allowed"


def test_alg_is_checked_before_any_other_header_field() -> None:
    # With a forbidden header, a bad kid and a wrong typ as well, the refusal names alg: the
    # allow-list ran first.
    header = {"alg": "HS256", "jku": "https://evil.test/jwks", "kid": "../../x", "typ": "JWT"}
    assert reason(token(header)) == "alg not allowed"


@pytest.mark.parametrize("name", ["jwk", "jku", "x5u", "x5c", "crit"])
def test_key_carrying_headers_and_crit_are_refused(name: str) -> None:
    assert reason(token({**HEADER, name: "x"})) == f"header {name} is refused"


@pytest.mark.parametrize("name", ["x5t", "cty", "b64", "zip", "enc", "nonce"])
def test_header_fields_we_do_not_issue_are_refused(name: str) -> None:
    assert reason(token({**HEADER, name: "x"})) == "unknown header field"


@pytest.mark.parametrize("typ", ["JWT", "jwt", "at+jwt2", None, 7, "application/jwt"])
def test_typ_must_be_an_access_token(typ: Any) -> None:
    assert reason(token({**HEADER, "typ": typ})) == "wrong typ"


def test_typ_is_not_required_when_not_asked_for() -> None:
    header = {"alg": "ES256", "kid": "k1"}
    assert parse_compact(token(header)).kid == "k1"


@pytest.mark.parametrize(
    "kid",
    [
        "../../keys/x",
        "' OR 1=1 --",
        "/etc/passwd",
        "k\x00",
        "-leading-dash",
        "",
        "k" * 129,
        None,
        42,
        ["k"],
    ],
)
def test_kid_shape_is_strict(kid: Any) -> None:
    assert reason(token({**HEADER, "kid": kid})) == "kid missing or malformed"


# --- ECDSA range ---------------------------------------------------------------------------------


def _n(value: int) -> bytes:
    return value.to_bytes(32, "big")


@pytest.mark.parametrize(
    ("r", "s"),
    [
        (0, 0),
        (0, 1),
        (1, 0),
        (P256_ORDER, P256_ORDER),
        (P256_ORDER, 1),
        (1, P256_ORDER),
        (P256_ORDER + 1, 1),
        (2**256 - 1, 2**256 - 1),
    ],
)
def test_ecdsa_r_and_s_outside_1_to_n_minus_1_are_refused(r: int, s: int) -> None:
    assert ecdsa_raw_to_der(_n(r) + _n(s)) is None


def test_ecdsa_in_range_converts_to_der() -> None:
    assert ecdsa_raw_to_der(_n(1) + _n(P256_ORDER - 1)) is not None
    assert ecdsa_raw_to_der(bytes(63)) is None
    assert ecdsa_raw_to_der(bytes(65)) is None


class _SpyKey:
    """Stands in for the public key to show the range check runs before the library."""

    def __init__(self, real: ec.EllipticCurvePublicKey) -> None:
        self.real = real
        self.calls = 0

    def verify(self, signature: bytes, data: bytes, algorithm: Any) -> None:
        self.calls += 1
        self.real.verify(signature, data, algorithm)


def _ec_verifier() -> tuple[ec.EllipticCurvePrivateKey, Verifier]:
    private = ec.generate_private_key(ec.SECP256R1())
    numbers = private.public_key().public_numbers()
    jwk = {
        "kty": "EC",
        "crv": "P-256",
        "x": b64(numbers.x.to_bytes(32, "big")),
        "y": b64(numbers.y.to_bytes(32, "big")),
    }
    return private, Verifier.from_jwk(jwk, kid="k1", alg="ES256")


def test_psychic_signatures_never_reach_the_library(monkeypatch: pytest.MonkeyPatch) -> None:
    private, verifier = _ec_verifier()
    spy = _SpyKey(private.public_key())
    monkeypatch.setattr(verifier, "_key", spy)
    # jws's own view of the ec module, so its isinstance check accepts the spy.
    monkeypatch.setattr(
        "obsigen.tokens.jws.ec", SimpleNamespace(EllipticCurvePublicKey=_SpyKey, ECDSA=ec.ECDSA)
    )
    for r, s in [(0, 0), (P256_ORDER, P256_ORDER), (1, P256_ORDER)]:
        assert not verifier.verify(b"msg", _n(r) + _n(s))
    assert spy.calls == 0
    der = private.sign(b"msg", ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    assert verifier.verify(b"msg", _n(r) + _n(s))
    assert spy.calls == 1


def test_es256_signature_must_be_raw_64_bytes() -> None:
    private, verifier = _ec_verifier()
    der = private.sign(b"msg", ec.ECDSA(hashes.SHA256()))
    assert not verifier.verify(b"msg", der)  # DER is what OpenSSL gives; JWS wants r||s
    r, s = decode_dss_signature(der)
    assert verifier.verify(b"msg", _n(r) + _n(s))
    assert not verifier.verify(b"msh", _n(r) + _n(s))


# --- verifiers from JWKs -------------------------------------------------------------------------


def _rsa_jwk(bits: int = 2048) -> tuple[rsa.RSAPrivateKey, dict[str, str]]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    numbers = private.public_key().public_numbers()
    return private, {
        "kty": "RSA",
        "n": b64(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
        "e": b64(numbers.e.to_bytes(3, "big")),
    }


def test_rs256_verifier() -> None:
    private, jwk = _rsa_jwk()
    verifier = Verifier.from_jwk(jwk, kid="r1", alg="RS256")
    signature = private.sign(b"msg", padding.PKCS1v15(), hashes.SHA256())
    assert verifier.verify(b"msg", signature)
    assert not verifier.verify(b"msg", signature[:-1])
    assert not verifier.verify(b"msg", b"\x00" + signature)
    assert not verifier.verify(b"other", signature)


@pytest.mark.parametrize(
    "change",
    [
        {"kty": "RSA"},
        {"crv": "P-384"},
        {"x": b64(bytes(31))},
        {"y": b64(b"\x01" * 32)},  # a point not on the curve
        {"kid": "other"},
        {"alg": "RS256"},
        {"use": "enc"},
    ],
)
def test_ec_jwk_must_match_the_key_list_and_the_curve(change: dict[str, str]) -> None:
    private, _ = _ec_verifier()
    numbers = private.public_key().public_numbers()
    jwk = {
        "kty": "EC",
        "crv": "P-256",
        "x": b64(numbers.x.to_bytes(32, "big")),
        "y": b64(numbers.y.to_bytes(32, "big")),
        "kid": "k1",
        "alg": "ES256",
    }
    Verifier.from_jwk(jwk, kid="k1", alg="ES256")
    with pytest.raises(MalformedToken):
        Verifier.from_jwk({**jwk, **change}, kid="k1", alg="ES256")


def test_short_rsa_keys_are_refused() -> None:
    _, jwk = _rsa_jwk(1024)
    with pytest.raises(MalformedToken, match="too short"):
        Verifier.from_jwk(jwk, kid="r1", alg="RS256")


def test_published_jwk_holds_public_fields_only() -> None:
    _, jwk = _rsa_jwk()
    leaky = {**jwk, "d": "c2VjcmV0", "p": "cA", "q": "cQ", "kid": "r1", "x5c": "AAAA"}
    verifier = Verifier.from_jwk(leaky, kid="r1", alg="RS256")
    assert set(verifier.public_jwk) == {"kty", "n", "e", "kid", "alg", "use"}
