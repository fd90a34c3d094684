"""Keys on a PKCS#11 token (an HSM; SoftHSM2 in tests), through python-pkcs11.

URI: ``pkcs11:token=LABEL;pin=env:HSM_PIN[;lib=/usr/lib/softhsm/libsofthsm2.so][;cache_ttl=30]``.

Every key is generated on the token with ``SENSITIVE`` set and ``EXTRACTABLE`` cleared, so the
token refuses to reveal it, in the clear or wrapped. The kid is the key's label. Metadata
(alg, created, state, retire_after) lives on the token too, as a private data object per key
(``obsigen-meta:<kid>``), so every process that logs in to the token sees the same states.

Signing runs on the token: ES256 hashes on the host and signs with ``CKM_ECDSA`` (SoftHSM
2.6.1 has no ``CKM_ECDSA_SHA256``); the token's raw r||s is already the JWS form. RS256 uses
``CKM_SHA256_RSA_PKCS``. Verification needs no secret and runs on the host from the cached
public key. KEKs are AES-256 keys on the token used with ``CKM_AES_GCM`` (host-drawn nonce,
context as associated data).

A PKCS#11 session must not be used by two threads at once: one session, one lock, and every
token call runs in a worker thread so the event loop never waits on the token.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import pkcs11
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11 import exceptions as p11e
from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters

from obsigen.keys.common import (
    GCM_NONCE_BYTES,
    RSA_BITS,
    Clock,
    MetaCache,
    PublicKey,
    check_kid,
    check_signing_alg,
    check_transition,
    info_from_json,
    info_to_json,
    new_kid,
    pack_wrapped,
    public_jwk,
    require_signing,
    require_unwrapping,
    require_verifying,
    require_wrapping,
    unpack_wrapped,
    utcnow,
    verify_with_public_key,
    wrap_aad,
)
from obsigen.keys.errors import (
    KeyConfigError,
    KeyNotFound,
    KeyProviderError,
    KeyProviderUnavailable,
    UnwrapFailed,
)
from obsigen.keys.interfaces import DataKey, KeyInfo, KeyState, SigningAlg
from obsigen.secretref import SecretRefError, resolve_secret

T = TypeVar("T")

DEFAULT_LIB = "/usr/lib/softhsm/libsofthsm2.so"
_META_PREFIX = "obsigen-meta:"
_APPLICATION = "obsigen"

_SECRET_TEMPLATE: dict[Attribute, Any] = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
}
_PUBLIC_TEMPLATE: dict[Attribute, Any] = {Attribute.TOKEN: True, Attribute.PRIVATE: False}

_LOGIN_ERRORS = (
    p11e.PinIncorrect,
    p11e.PinInvalid,
    p11e.PinLenRange,
    p11e.PinExpired,
    p11e.PinLocked,
)
# After these the session is gone: drop it and log in again on the next call.
_SESSION_ERRORS = (
    p11e.SessionClosed,
    p11e.SessionHandleInvalid,
    p11e.DeviceRemoved,
    p11e.DeviceError,
    p11e.TokenNotPresent,
    p11e.UserNotLoggedIn,
)


class _SharedToken:
    """One logged-in session per token and process, shared by every provider on that token.

    PKCS#11 logs in per process, not per session (a second C_Login answers
    CKR_USER_ALREADY_LOGGED_IN), and the signing and KEK providers often sit on one token:
    they share this session and its lock. ``generation`` changes whenever the session is
    replaced, telling each provider to drop key handles bound to the old one.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.session: pkcs11.Session | None = None
        self.generation = 0
        self.users = 0

    def drop(self) -> None:
        session, self.session = self.session, None
        self.generation += 1
        if session is not None:
            # Already gone after a device error: closing is only tidying up.
            with contextlib.suppress(p11e.PKCS11Error):
                session.close()


_TOKENS: dict[tuple[str, str], _SharedToken] = {}
_TOKENS_LOCK = threading.Lock()


class Pkcs11KeyProvider:
    name = "pkcs11"

    def __init__(
        self,
        token_label: str,
        pin_ref: str,
        lib_path: str = DEFAULT_LIB,
        *,
        cache_ttl_s: float = 30.0,
        clock: Clock = utcnow,
    ) -> None:
        if not token_label:
            raise KeyConfigError("pkcs11: token= is required")
        if not pin_ref:
            raise KeyConfigError("pkcs11: pin= is required (a reference: env:NAME or file:/path)")
        self._token_label = token_label
        self._pin_ref = pin_ref
        self._lib_path = lib_path
        self._clock = clock
        with _TOKENS_LOCK:
            self._shared = _TOKENS.setdefault((lib_path, token_label), _SharedToken())
            self._shared.users += 1
        self._closed = False
        self._generation = -1
        self._private: dict[str, pkcs11.SignMixin] = {}
        self._secret: dict[str, pkcs11.SecretKey] = {}
        self._public: dict[str, PublicKey] = {}
        # States change rarely and a token search costs ~0.2 ms: verification reads them here.
        self._meta_cache = MetaCache(cache_ttl_s)

    # --- the session -----------------------------------------------------------------------------

    async def _call(self, fn: Callable[[pkcs11.Session], T]) -> T:
        if self._closed:
            raise KeyProviderError("pkcs11 provider is closed")
        return await asyncio.to_thread(self._locked_call, fn)

    def _locked_call(self, fn: Callable[[pkcs11.Session], T]) -> T:
        shared = self._shared
        with shared.lock:
            session = shared.session or self._open(shared)
            if self._generation != shared.generation:
                self._private.clear()
                self._secret.clear()
                self._generation = shared.generation
            try:
                return fn(session)
            except p11e.NoSuchKey:
                raise KeyNotFound("no such key on the token") from None
            except _SESSION_ERRORS as exc:
                shared.drop()
                raise KeyProviderUnavailable(
                    f"PKCS#11 session lost: {type(exc).__name__}"
                ) from None
            except p11e.PKCS11Error as exc:
                raise KeyProviderError(f"PKCS#11 error: {type(exc).__name__}") from None

    def _open(self, shared: _SharedToken) -> pkcs11.Session:
        try:
            pin = resolve_secret(self._pin_ref)
        except (SecretRefError, ValueError) as exc:
            raise KeyConfigError(f"pkcs11: pin: {exc}") from None
        if not pin:
            raise KeyConfigError("pkcs11: the PIN reference is empty")
        try:
            lib = pkcs11.lib(self._lib_path)
            token = lib.get_token(token_label=self._token_label)
            session = token.open(rw=True, user_pin=pin)
        except p11e.NoSuchToken:
            raise KeyConfigError(f"pkcs11: no token labelled {self._token_label!r}") from None
        except _LOGIN_ERRORS as exc:
            raise KeyConfigError(f"pkcs11: login refused ({type(exc).__name__})") from None
        except p11e.PKCS11Error as exc:
            raise KeyProviderUnavailable(f"pkcs11: cannot open ({type(exc).__name__})") from None
        except (OSError, RuntimeError) as exc:
            raise KeyConfigError(f"pkcs11: cannot load {self._lib_path}: {exc}") from None
        shared.session = session
        shared.generation += 1
        return session

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True

        def close() -> None:
            # Both locks, so a provider created meanwhile never logs in while the old
            # session still holds the login.
            with _TOKENS_LOCK:
                self._shared.users -= 1
                if self._shared.users == 0:
                    _TOKENS.pop((self._lib_path, self._token_label), None)
                    with self._shared.lock:
                        self._shared.drop()

        self._private.clear()
        self._secret.clear()
        await asyncio.to_thread(close)

    # --- metadata on the token -------------------------------------------------------------------

    @staticmethod
    def _meta_objects(session: pkcs11.Session, kid: str | None) -> list[tuple[dict[str, Any], Any]]:
        attrs: dict[Attribute, Any] = {
            Attribute.CLASS: ObjectClass.DATA,
            Attribute.APPLICATION: _APPLICATION,
        }
        if kid is not None:
            attrs[Attribute.LABEL] = _META_PREFIX + kid
        found = []
        for obj in session.get_objects(attrs):
            try:
                found.append((json.loads(obj[Attribute.VALUE]), obj))
            except (ValueError, TypeError):
                continue  # not ours after all: skip rather than fail every listing
        return found

    def _read_meta(self, session: pkcs11.Session, kid: str) -> dict[str, Any]:
        found = self._meta_objects(session, kid)
        if not found:
            self._meta_cache.drop(kid)
            raise KeyNotFound(f"no such key {kid}")
        raw = max(found, key=lambda item: int(item[0].get("rev", 0)))[0]
        self._meta_cache.put(kid, raw)
        return raw

    def _write_meta(self, session: pkcs11.Session, raw: dict[str, Any]) -> None:
        # SoftHSM makes a data object's value read-only: write a new revision first, then
        # remove the old ones, so a crash in between leaves the newest state readable.
        kid = raw["kid"]
        old = self._meta_objects(session, kid)
        rev = max((int(item[0].get("rev", 0)) for item in old), default=0) + 1
        raw = {**raw, "rev": rev}
        session.create_object(
            {
                Attribute.CLASS: ObjectClass.DATA,
                Attribute.TOKEN: True,
                Attribute.PRIVATE: True,
                Attribute.APPLICATION: _APPLICATION,
                Attribute.LABEL: _META_PREFIX + kid,
                Attribute.VALUE: json.dumps(raw, sort_keys=True).encode(),
            }
        )
        for _, obj in old:
            obj.destroy()
        self._meta_cache.put(kid, raw)

    async def _meta(self, kid: str) -> KeyInfo:
        check_kid(kid)
        raw = self._meta_cache.get(kid)
        if raw is None:
            raw = await self._call(lambda session: self._read_meta(session, kid))
        return info_from_json(raw, self._clock())

    # --- signing keys ----------------------------------------------------------------------------

    async def create_signing_key(self, alg: SigningAlg) -> KeyInfo:
        alg = check_signing_alg(alg)
        kid = new_kid("sig")
        info = KeyInfo(kid, alg, "sig", self._clock(), KeyState.ACTIVE)

        def generate(session: pkcs11.Session) -> None:
            common: dict[str, Any] = {
                "store": True,
                "label": kid,
                "id": kid.encode("ascii"),
                "capabilities": MechanismFlag.SIGN | MechanismFlag.VERIFY,
                "private_template": {**_SECRET_TEMPLATE, Attribute.SIGN: True},
                "public_template": {**_PUBLIC_TEMPLATE, Attribute.VERIFY: True},
            }
            if alg == "ES256":
                params = session.create_domain_parameters(
                    KeyType.EC,
                    {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
                    local=True,
                )
                public, private = params.generate_keypair(**common)
            else:
                public, private = session.generate_keypair(KeyType.RSA, RSA_BITS, **common)
            self._write_meta(session, info_to_json(info))
            assert isinstance(private, pkcs11.SignMixin)
            self._private[kid] = private
            self._public[kid] = _to_cryptography(public)

        await self._call(generate)
        return info

    async def sign(self, kid: str, message: bytes) -> bytes:
        info = await self._meta(kid)
        require_signing(info)

        def run(session: pkcs11.Session) -> bytes:
            private = self._private_key(session, kid)
            if info.alg == "ES256":
                return private.sign(hashlib.sha256(message).digest(), mechanism=Mechanism.ECDSA)
            return private.sign(message, mechanism=Mechanism.SHA256_RSA_PKCS)

        return await self._call(run)

    async def verify(self, kid: str, message: bytes, signature: bytes) -> bool:
        info = await self._meta(kid)
        require_verifying(info)
        key = await self._public_key(kid)
        return verify_with_public_key(key, check_signing_alg(info.alg), message, signature)

    async def public_jwk(self, kid: str) -> dict[str, str]:
        info = await self._meta(kid)
        if info.use != "sig":
            raise KeyNotFound(f"no signing key {kid}")
        return public_jwk(await self._public_key(kid), kid, check_signing_alg(info.alg))

    async def _public_key(self, kid: str) -> PublicKey:
        key = self._public.get(kid)
        if key is None:

            def fetch(session: pkcs11.Session) -> PublicKey:
                obj = session.get_key(object_class=ObjectClass.PUBLIC_KEY, label=kid)
                self._public[kid] = _to_cryptography(obj)
                return self._public[kid]

            key = await self._call(fetch)
        return key

    def _private_key(self, session: pkcs11.Session, kid: str) -> pkcs11.SignMixin:
        key = self._private.get(kid)
        if key is None:
            found = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=kid)
            assert isinstance(found, pkcs11.SignMixin)
            key = self._private[kid] = found
        return key

    # --- key-encryption keys ---------------------------------------------------------------------

    async def create_kek(self) -> KeyInfo:
        kid = new_kid("kek")
        info = KeyInfo(kid, "A256GCM", "enc", self._clock(), KeyState.ACTIVE)

        def generate(session: pkcs11.Session) -> None:
            key = session.generate_key(
                KeyType.AES,
                256,
                store=True,
                label=kid,
                id=kid.encode("ascii"),
                capabilities=MechanismFlag.ENCRYPT | MechanismFlag.DECRYPT,
                template=dict(_SECRET_TEMPLATE),
            )
            self._write_meta(session, info_to_json(info))
            self._secret[kid] = key

        await self._call(generate)
        return info

    async def wrap(self, kek_id: str, data_key: bytes, context: dict[str, str]) -> bytes:
        require_wrapping(await self._meta(kek_id))
        aad = wrap_aad(kek_id, context)
        nonce = secrets.token_bytes(GCM_NONCE_BYTES)

        def run(session: pkcs11.Session) -> bytes:
            kek = self._kek(session, kek_id)
            assert isinstance(kek, pkcs11.EncryptMixin)
            sealed = kek.encrypt(
                data_key, mechanism=Mechanism.AES_GCM, mechanism_param=pkcs11.GCMParams(nonce, aad)
            )
            assert isinstance(sealed, bytes)
            return sealed

        return pack_wrapped(nonce, await self._call(run))

    async def unwrap(self, kek_id: str, wrapped: bytes, context: dict[str, str]) -> bytes:
        require_unwrapping(await self._meta(kek_id))
        aad = wrap_aad(kek_id, context)
        nonce, ciphertext = unpack_wrapped(wrapped)

        def run(session: pkcs11.Session) -> bytes | None:
            kek = self._kek(session, kek_id)
            assert isinstance(kek, pkcs11.DecryptMixin)
            try:
                opened = kek.decrypt(
                    ciphertext,
                    mechanism=Mechanism.AES_GCM,
                    mechanism_param=pkcs11.GCMParams(nonce, aad),
                )
            except _SESSION_ERRORS:
                raise
            except p11e.PKCS11Error:
                # SoftHSM reports a failed GCM tag as CKR_GENERAL_ERROR, others as
                # CKR_ENCRYPTED_DATA_INVALID: either way the bytes or the context are wrong.
                return None
            assert isinstance(opened, bytes)
            return opened

        plaintext = await self._call(run)
        if plaintext is None:
            raise UnwrapFailed(f"wrapped key does not open under {kek_id} in this context")
        return plaintext

    async def new_data_key(self, kek_id: str, context: dict[str, str]) -> DataKey:
        plaintext = secrets.token_bytes(32)
        return DataKey(plaintext, await self.wrap(kek_id, plaintext, context))

    def _kek(self, session: pkcs11.Session, kid: str) -> pkcs11.SecretKey:
        key = self._secret.get(kid)
        if key is None:
            found = session.get_key(object_class=ObjectClass.SECRET_KEY, label=kid)
            assert isinstance(found, pkcs11.SecretKey)
            key = self._secret[kid] = found
        return key

    # --- lifecycle -------------------------------------------------------------------------------

    async def get_key(self, kid: str) -> KeyInfo:
        check_kid(kid)
        raw = await self._call(lambda session: self._read_meta(session, kid))
        return info_from_json(raw, self._clock())

    async def list_keys(self) -> list[KeyInfo]:
        def run(session: pkcs11.Session) -> list[dict[str, Any]]:
            newest: dict[str, dict[str, Any]] = {}
            for raw, _ in self._meta_objects(session, None):
                kid = str(raw.get("kid"))
                if kid not in newest or int(raw.get("rev", 0)) > int(newest[kid].get("rev", 0)):
                    newest[kid] = raw
            for kid, raw in newest.items():
                self._meta_cache.put(kid, raw)
            return list(newest.values())

        now = self._clock()
        infos = [info_from_json(raw, now) for raw in await self._call(run)]
        return sorted(infos, key=lambda info: (info.created_at, info.kid))

    async def set_state(
        self, kid: str, state: KeyState, retire_after: datetime | None = None
    ) -> KeyInfo:
        check_kid(kid)
        state = KeyState(state)
        now = self._clock()

        def run(session: pkcs11.Session) -> dict[str, Any]:
            raw = self._read_meta(session, kid)
            check_transition(info_from_json(raw, now).state, state)
            raw = {
                **raw,
                "state": str(state),
                "retire_after": retire_after.isoformat() if retire_after else None,
            }
            self._write_meta(session, raw)
            if state is KeyState.RETIRED:
                # Retirement is terminal: destroy the secret half on the token so no one
                # holding the PIN can use it again. The public key stays for auditors.
                cls = ObjectClass.PRIVATE_KEY if raw["alg"] != "A256GCM" else ObjectClass.SECRET_KEY
                for obj in session.get_objects({Attribute.CLASS: cls, Attribute.LABEL: kid}):
                    obj.destroy()
                self._private.pop(kid, None)
                self._secret.pop(kid, None)
            return raw

        return info_from_json(await self._call(run), self._clock())


def _to_cryptography(key: Any) -> PublicKey:
    if key.key_type == KeyType.EC:
        loaded = load_der_public_key(encode_ec_public_key(key))
        if not isinstance(loaded, PublicKey):
            raise KeyProviderError("token returned an unusable EC public key")
        return loaded
    modulus = int.from_bytes(key[Attribute.MODULUS], "big")
    exponent = int.from_bytes(key[Attribute.PUBLIC_EXPONENT], "big")
    return rsa.RSAPublicNumbers(exponent, modulus).public_key()
