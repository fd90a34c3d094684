"""Who signs audit checkpoints and export manifests, and how anyone checks a signature.

A ``Signer`` holds a private key it never hands out. With ``keys.signing = "software"`` it is an
Ed25519 key in ``data_dir/keys/audit-signing.pem`` (0600); with an HSM (``pkcs11:``) or a KMS
(``awskms:``) it is the provider's newest active signing key (``ProviderSigner``), so the
private key that signs checkpoints never leaves the HSM or KMS either. Verification needs only
the public JWK, so an auditor checks an export offline.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
import stat
import uuid
from pathlib import Path
from typing import Protocol, runtime_checkable

from obsigen.audit import ed25519
from obsigen.audit.jwk import b64url, jwk_thumbprint
from obsigen.config import Settings
from obsigen.keys.interfaces import KeyProvider

SIGNING_KEY_FILE = "audit-signing.pem"
TRUSTED_KEYS_DIR = "audit-trusted"

# PKCS#8 / SubjectPublicKeyInfo prefixes for Ed25519 (RFC 8410): the key bytes follow them.
_PKCS8_PREFIX = bytes.fromhex("302e020100300506032b657004220420")
_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")


class SigningError(Exception):
    """The signing key cannot be loaded or used."""


@runtime_checkable
class Signer(Protocol):
    """What signs checkpoints; ``obsigen.keys.signer.ProviderSigner`` has this shape too.

    Coroutines, because an HSM or KMS call must not block the event loop.
    """

    @property
    def key_id(self) -> str: ...

    @property
    def algorithm(self) -> str:
        """The JOSE ``alg`` of the signatures: ``EdDSA``, ``ES256`` or ``RS256``."""
        ...

    async def sign(self, data: bytes) -> bytes: ...

    async def verify(self, data: bytes, signature: bytes) -> bool: ...

    async def public_jwk(self) -> dict[str, str]: ...


class SoftwareEd25519Signer:
    """An Ed25519 key in a PKCS#8 PEM file that only its owner can read."""

    algorithm = "EdDSA"

    def __init__(self, seed: bytes) -> None:
        self._seed = seed
        self._public = ed25519.public_key(seed)
        self._jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64url(self._public)}
        self._key_id = jwk_thumbprint(self._jwk)

    @classmethod
    def load_or_create(cls, path: Path) -> SoftwareEd25519Signer:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            _create_key_file(path)
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise SigningError(f"{path} is readable by others (mode {mode:o}); chmod 600 it")
        return cls(_seed_from_pem(path.read_text(encoding="ascii")))

    @property
    def key_id(self) -> str:
        return self._key_id

    @property
    def jwk(self) -> dict[str, str]:
        return {**self._jwk, "kid": self._key_id, "alg": self.algorithm, "use": "sig"}

    def sign_now(self, data: bytes) -> bytes:
        return ed25519.sign(self._seed, data, self._public)

    async def sign(self, data: bytes) -> bytes:
        # A few milliseconds of CPU: not worth a thread hop.
        return self.sign_now(data)

    async def verify(self, data: bytes, signature: bytes) -> bool:
        return ed25519.verify(self._public, data, signature)

    async def public_jwk(self) -> dict[str, str]:
        return self.jwk

    def public_pem(self) -> str:
        return _pem("PUBLIC KEY", _SPKI_PREFIX + self._public)


def _create_key_file(path: Path) -> None:
    # Several processes may start at once: each writes its own temporary file and links it
    # into place; link() fails when another won, and everyone then reads the winner's key.
    seed = secrets.token_bytes(32)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, _pem("PRIVATE KEY", _PKCS8_PREFIX + seed).encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        temporary.unlink()


def _pem(label: str, der: bytes) -> str:
    body = base64.b64encode(der).decode("ascii")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n"


def _seed_from_pem(text: str) -> bytes:
    begin, end = "-----BEGIN PRIVATE KEY-----", "-----END PRIVATE KEY-----"
    if begin not in text or end not in text:
        raise SigningError("the audit signing key is not a PKCS#8 PEM private key")
    body = text.split(begin, 1)[1].split(end, 1)[0]
    try:
        der = base64.b64decode("".join(body.split()), validate=True)
    except binascii.Error as exc:
        raise SigningError("the audit signing key PEM is corrupt") from exc
    if len(der) != len(_PKCS8_PREFIX) + 32 or not der.startswith(_PKCS8_PREFIX):
        raise SigningError("the audit signing key is not an Ed25519 key")
    return der[len(_PKCS8_PREFIX) :]


def software_signer(data_dir: Path) -> SoftwareEd25519Signer:
    keys = data_dir / "keys"
    keys.mkdir(parents=True, exist_ok=True, mode=0o700)
    keys.chmod(0o700)
    return SoftwareEd25519Signer.load_or_create(keys / SIGNING_KEY_FILE)


async def make_signer(settings: Settings, provider: KeyProvider | None = None) -> Signer:
    """The signer for new checkpoints and export manifests, resolved now.

    For a provider (``provider``: the one built from ``keys.signing``, see
    ``signing_provider``) this is its newest active signing key at the time of the call:
    callers resolve it per checkpoint, so a rotation (``obsigen keys rotate``) takes effect
    without a restart and a demoted key is never asked to sign.
    """
    if settings.keys.signing == "software":
        return software_signer(settings.paths.data_dir)
    if provider is None:
        raise SigningError(f"keys.signing = {settings.keys.signing!r} needs its key provider")
    from obsigen.keys.errors import KeyProviderError
    from obsigen.keys.signer import ProviderSigner

    try:
        return await ProviderSigner.current(provider)
    except KeyProviderError as exc:
        raise SigningError(f"no audit signing key in {provider.name}: {exc}") from exc


def signing_provider(settings: Settings) -> KeyProvider | None:
    """The key provider behind ``keys.signing`` (None for the software Ed25519 key); the caller
    owns it and closes it (an HSM session must not outlive its user)."""
    if settings.keys.signing == "software":
        return None
    from obsigen.keys.factory import make_key_provider

    return make_key_provider(settings.keys.signing, settings.paths.data_dir)


async def provider_public_keys(provider: KeyProvider | None) -> dict[str, dict[str, str]]:
    """Public JWKs of every signing key the provider holds, retired ones included: checkpoints
    signed before a rotation stay verifiable."""
    if provider is None:
        return {}
    return {
        info.kid: await provider.public_jwk(info.kid)
        for info in await provider.list_keys()
        if info.use == "sig"
    }


async def trusted_keys(data_dir: Path, signer: Signer | None) -> dict[str, dict[str, str]]:
    """Public keys, by key id, whose signatures count: ours and any in keys/audit-trusted/.

    Earlier keys (after a rotation) and the keys of other hosts writing the same database are
    dropped there as JWK files, so a checkpoint signed by an unknown key is a finding.
    """
    keys: dict[str, dict[str, str]] = {}
    if signer is not None:
        keys[signer.key_id] = await signer.public_jwk()
    directory = data_dir / "keys" / TRUSTED_KEYS_DIR
    if directory.is_dir():
        for path in sorted(directory.glob("*.json")):
            try:
                jwk = json.loads(path.read_text(encoding="utf-8"))
                keys[jwk_thumbprint(jwk)] = jwk
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                raise SigningError(f"{path} is not a public JWK") from exc
            if isinstance(jwk.get("kid"), str):
                # A provider key is named by its kid; the file is the operator's own word.
                keys[jwk["kid"]] = jwk
    return keys
