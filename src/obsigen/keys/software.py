"""The embedded default: keys in files under ``data_dir/keys``, encrypted at rest.

Layout (directory 0700, every file 0600):

- ``index.json``: key metadata (alg, created, state, retire_after) and the KDF salt, replaced
  atomically (temp file + fsync + rename) under an ``flock``, so several processes may share it.
- ``<kid>.p8``: the private key, PKCS#8 PEM with ``BestAvailableEncryption``.
- ``<kid>.pub.pem``: its public half, so a JWK is served without decrypting anything.
- ``<kid>.kek``: an AES-256 KEK, AES-GCM encrypted with the file key, bound to its kid.
- ``master.key``: only when no master key reference is configured.

The file key is scrypt(master secret, salt). The master secret comes from a secret reference
(``env:`` / ``file:``) or, when none is configured, from a generated ``master.key`` beside the
keys: then the keys are only as safe as the host's file permissions. Retiring a key deletes its
private half (or its KEK), which makes retirement irreversible for real.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import stat
import tempfile
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from obsigen.keys.common import (
    GCM_NONCE_BYTES,
    RSA_BITS,
    Clock,
    PublicKey,
    check_kid,
    check_signing_alg,
    check_transition,
    der_to_raw_ecdsa,
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
from obsigen.keys.errors import KeyConfigError, KeyNotFound, KeyProviderError, UnwrapFailed
from obsigen.keys.interfaces import DataKey, KeyInfo, KeyState, SigningAlg
from obsigen.secretref import SecretRefError, resolve_secret

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

_INDEX = "index.json"
_LOCK = ".lock"
_MASTER = "master.key"
_KEK_MAGIC = b"OBSKEK1\n"
# scrypt at n=2**15 costs ~0.1 s once per process start: cheap for us, dear for a guesser of
# a weak configured passphrase.
_SCRYPT = {"n": 2**15, "r": 8, "p": 1}


class SoftwareKeyProvider:
    name = "software"

    def __init__(self, keys_dir: Path, master_key_ref: str = "", *, clock: Clock = utcnow) -> None:
        self._dir = keys_dir
        self._master_ref = master_key_ref
        self._clock = clock
        self._open_lock = asyncio.Lock()
        self._write_lock = asyncio.Lock()
        self._file_key: bytes | None = None
        self._index: dict[str, Any] = {}
        self._index_stamp: tuple[int, int, int] | None = None
        self._private: dict[str, PrivateKey] = {}
        self._public: dict[str, PublicKey] = {}
        self._keks: dict[str, AESGCM] = {}

    # --- opening ---------------------------------------------------------------------------------

    async def _ready(self) -> bytes:
        if self._file_key is None:
            async with self._open_lock:
                if self._file_key is None:
                    self._file_key = await asyncio.to_thread(self._open)
        return self._file_key

    def _open(self) -> bytes:
        self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        # mkdir's mode is filtered by the umask and ignored for an existing directory.
        self._dir.chmod(0o700)
        secret = self._master_secret()
        with self._locked():
            index = self._read_index()
            kdf = index.get("kdf")
            if kdf is None:
                kdf = {"name": "scrypt", "salt": _b64(secrets.token_bytes(16)), **_SCRYPT}
                file_key = _derive(secret, kdf)
                kdf["check"] = _b64(_check_value(file_key))
                index = {"version": 1, "kdf": kdf, "keys": index.get("keys", {})}
                self._write_index(index)
            else:
                file_key = _derive(secret, kdf)
                if not hmac.compare_digest(_unb64(kdf["check"]), _check_value(file_key)):
                    raise KeyConfigError(
                        f"the master key does not open the keys in {self._dir} "
                        "(a different master key reference, or a replaced master.key?)"
                    )
        return file_key

    def _master_secret(self) -> bytes:
        if self._master_ref:
            try:
                value = resolve_secret(self._master_ref)
            except (SecretRefError, ValueError) as exc:
                raise KeyConfigError(f"software keys: master key: {exc}") from None
            if not value:
                raise KeyConfigError("software keys: the master key reference is empty")
            return value.encode("utf-8")
        path = self._dir / _MASTER
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            _check_private_file(path)
            return path.read_bytes().strip()
        with os.fdopen(fd, "wb") as out:
            out.write(_b64(secrets.token_bytes(32)).encode("ascii") + b"\n")
            out.flush()
            os.fsync(out.fileno())
        return path.read_bytes().strip()

    # --- index -----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self._dir / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _read_index(self) -> dict[str, Any]:
        path = self._dir / _INDEX
        try:
            st = path.stat()
        except FileNotFoundError:
            self._index, self._index_stamp = {"version": 1, "keys": {}}, None
            return self._index
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp != self._index_stamp:
            loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            self._index, self._index_stamp = loaded, stamp
        return self._index

    def _write_index(self, index: dict[str, Any]) -> None:
        _atomic_write(self._dir / _INDEX, json.dumps(index, indent=2, sort_keys=True).encode())
        self._index_stamp = None
        self._read_index()

    def _meta(self, kid: str) -> KeyInfo:
        # Another process may have changed a state: a stat per call notices, a reload follows.
        raw = self._read_index().get("keys", {}).get(check_kid(kid))
        if raw is None:
            raise KeyNotFound(f"no such key {kid}")
        return info_from_json(raw, self._clock())

    async def _update(
        self, kid: str, mutate: Callable[[dict[str, Any] | None], dict[str, Any]]
    ) -> None:
        """Read-modify-write one index entry under the file lock, so a concurrent process
        (another worker, the CLI) never loses an update."""

        def run() -> None:
            with self._locked():
                self._index_stamp = None
                index = self._read_index()
                keys = dict(index.get("keys", {}))
                keys[kid] = mutate(keys.get(kid))
                self._write_index({**index, "keys": keys})

        async with self._write_lock:
            await asyncio.to_thread(run)

    # --- signing keys ----------------------------------------------------------------------------

    async def create_signing_key(self, alg: SigningAlg) -> KeyInfo:
        file_key = await self._ready()
        alg = check_signing_alg(alg)
        kid = new_kid("sig")

        def generate() -> None:
            private: PrivateKey = (
                ec.generate_private_key(ec.SECP256R1())
                if alg == "ES256"
                else rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
            )
            pem = private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(_b64(file_key).encode("ascii")),
            )
            pub = private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            _create_private_file(self._dir / f"{kid}.p8", pem)
            _create_private_file(self._dir / f"{kid}.pub.pem", pub)
            self._private[kid] = private

        await asyncio.to_thread(generate)
        info = KeyInfo(kid, alg, "sig", self._clock(), KeyState.ACTIVE)
        await self._update(kid, lambda _: info_to_json(info))
        return info

    async def sign(self, kid: str, message: bytes) -> bytes:
        await self._ready()
        info = self._meta(kid)
        require_signing(info)
        private = await self._private_key(kid)
        if isinstance(private, ec.EllipticCurvePrivateKey):
            return der_to_raw_ecdsa(private.sign(message, ec.ECDSA(hashes.SHA256())))
        # RSA signing takes about a millisecond: keep it off the event loop.
        return await asyncio.to_thread(private.sign, message, padding.PKCS1v15(), hashes.SHA256())

    async def verify(self, kid: str, message: bytes, signature: bytes) -> bool:
        await self._ready()
        info = self._meta(kid)
        require_verifying(info)
        alg = check_signing_alg(info.alg)
        return verify_with_public_key(await self._public_key(kid), alg, message, signature)

    async def public_jwk(self, kid: str) -> dict[str, str]:
        await self._ready()
        info = self._meta(kid)
        if info.use != "sig":
            raise KeyNotFound(f"no signing key {kid}")
        return public_jwk(await self._public_key(kid), kid, check_signing_alg(info.alg))

    async def _public_key(self, kid: str) -> PublicKey:
        key = self._public.get(kid)
        if key is None:
            key = await asyncio.to_thread(self._load_public, kid)
        return key

    def _load_public(self, kid: str) -> PublicKey:
        loaded = serialization.load_pem_public_key(_read_key_file(self._dir / f"{kid}.pub.pem"))
        if not isinstance(loaded, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            raise KeyProviderError(f"key file for {kid} holds an unexpected key type")
        self._public[kid] = loaded
        return loaded

    async def _private_key(self, kid: str) -> PrivateKey:
        key = self._private.get(kid)
        if key is None:
            # PKCS#8 decryption runs a KDF: milliseconds, so not on the event loop.
            key = await asyncio.to_thread(self._load_private, kid)
        return key

    def _load_private(self, kid: str) -> PrivateKey:
        assert self._file_key is not None
        try:
            loaded = serialization.load_pem_private_key(
                _read_key_file(self._dir / f"{kid}.p8"), _b64(self._file_key).encode("ascii")
            )
        except ValueError:
            raise KeyProviderError(f"the key file for {kid} does not decrypt") from None
        if not isinstance(loaded, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise KeyProviderError(f"key file for {kid} holds an unexpected key type")
        self._private[kid] = loaded
        return loaded

    # --- key-encryption keys ---------------------------------------------------------------------

    async def create_kek(self) -> KeyInfo:
        file_key = await self._ready()
        kid = new_kid("kek")
        kek = AESGCM.generate_key(bit_length=256)
        nonce = secrets.token_bytes(GCM_NONCE_BYTES)
        sealed = AESGCM(file_key).encrypt(nonce, kek, _kek_file_aad(kid))
        await asyncio.to_thread(
            _create_private_file, self._dir / f"{kid}.kek", _KEK_MAGIC + nonce + sealed
        )
        self._keks[kid] = AESGCM(kek)
        info = KeyInfo(kid, "A256GCM", "enc", self._clock(), KeyState.ACTIVE)
        await self._update(kid, lambda _: info_to_json(info))
        return info

    async def wrap(self, kek_id: str, data_key: bytes, context: dict[str, str]) -> bytes:
        await self._ready()
        require_wrapping(self._meta(kek_id))
        aead = await self._kek(kek_id)
        nonce = secrets.token_bytes(GCM_NONCE_BYTES)
        return pack_wrapped(nonce, aead.encrypt(nonce, data_key, wrap_aad(kek_id, context)))

    async def unwrap(self, kek_id: str, wrapped: bytes, context: dict[str, str]) -> bytes:
        await self._ready()
        require_unwrapping(self._meta(kek_id))
        aead = await self._kek(kek_id)
        nonce, ciphertext = unpack_wrapped(wrapped)
        try:
            return aead.decrypt(nonce, ciphertext, wrap_aad(kek_id, context))
        except InvalidTag:
            raise UnwrapFailed(
                f"wrapped key does not open under {kek_id} in this context"
            ) from None

    async def new_data_key(self, kek_id: str, context: dict[str, str]) -> DataKey:
        plaintext = AESGCM.generate_key(bit_length=256)
        return DataKey(plaintext, await self.wrap(kek_id, plaintext, context))

    async def _kek(self, kid: str) -> AESGCM:
        aead = self._keks.get(kid)
        if aead is None:
            aead = await asyncio.to_thread(self._load_kek, kid)
        return aead

    def _load_kek(self, kid: str) -> AESGCM:
        assert self._file_key is not None
        blob = _read_key_file(self._dir / f"{kid}.kek")
        if not blob.startswith(_KEK_MAGIC):
            raise KeyProviderError(f"the KEK file for {kid} is not one of ours")
        body = blob[len(_KEK_MAGIC) :]
        try:
            kek = AESGCM(self._file_key).decrypt(
                body[:GCM_NONCE_BYTES], body[GCM_NONCE_BYTES:], _kek_file_aad(kid)
            )
        except InvalidTag:
            raise KeyProviderError(f"the KEK file for {kid} does not decrypt") from None
        self._keks[kid] = AESGCM(kek)
        return self._keks[kid]

    # --- lifecycle -------------------------------------------------------------------------------

    async def get_key(self, kid: str) -> KeyInfo:
        await self._ready()
        return self._meta(kid)

    async def list_keys(self) -> list[KeyInfo]:
        await self._ready()
        now = self._clock()
        infos = [info_from_json(raw, now) for raw in self._read_index().get("keys", {}).values()]
        return sorted(infos, key=lambda info: (info.created_at, info.kid))

    async def set_state(
        self, kid: str, state: KeyState, retire_after: datetime | None = None
    ) -> KeyInfo:
        await self._ready()
        state = KeyState(state)
        now = self._clock()

        def mutate(entry: dict[str, Any] | None) -> dict[str, Any]:
            if entry is None:
                raise KeyNotFound(f"no such key {kid}")
            check_transition(info_from_json(entry, now).state, state)
            return {
                **entry,
                "state": str(state),
                "retire_after": retire_after.isoformat() if retire_after else None,
            }

        check_kid(kid)
        await self._update(kid, mutate)
        if state is KeyState.RETIRED:
            await asyncio.to_thread(self._destroy_secret, kid)
        return self._meta(kid)

    def _destroy_secret(self, kid: str) -> None:
        self._private.pop(kid, None)
        self._keks.pop(kid, None)
        for suffix in (".p8", ".kek"):
            (self._dir / f"{kid}{suffix}").unlink(missing_ok=True)

    async def aclose(self) -> None:
        self._private.clear()
        self._keks.clear()
        self._file_key = None


# --- files ----------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text.encode("ascii"))


# Derived file keys by (digest of the secret, KDF parameters): several providers over one key
# directory in a process (tokens, KEKs, the rotation check) pay the scrypt cost once, as the
# note on _SCRYPT intends. The derived key lives in memory for as long as a provider does anyway.
_DERIVED: dict[tuple[bytes, str, int, int, int], bytes] = {}
_DERIVED_MAX = 32


def _derive(secret: bytes, kdf: dict[str, Any]) -> bytes:
    if kdf.get("name") != "scrypt":
        raise KeyConfigError(f"unknown key-file KDF {kdf.get('name')!r}")
    key = (
        hashlib.sha256(secret).digest(),
        str(kdf["salt"]),
        int(kdf["n"]),
        int(kdf["r"]),
        int(kdf["p"]),
    )
    cached = _DERIVED.get(key)
    if cached is not None:
        return cached
    derived = hashlib.scrypt(
        secret,
        salt=_unb64(kdf["salt"]),
        n=int(kdf["n"]),
        r=int(kdf["r"]),
        p=int(kdf["p"]),
        maxmem=128 * 1024 * 1024,
        dklen=32,
    )
    if len(_DERIVED) >= _DERIVED_MAX:
        _DERIVED.pop(next(iter(_DERIVED)))
    _DERIVED[key] = derived
    return derived


def _check_value(file_key: bytes) -> bytes:
    return hmac.new(file_key, b"obsigen-keys-check-v1", hashlib.sha256).digest()


def _kek_file_aad(kid: str) -> bytes:
    # Binding the sealed KEK to its kid stops a swapped file from passing as another key.
    return b"obsigen-kek-file-v1\x00" + kid.encode("ascii")


def _create_private_file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _read_key_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise KeyNotFound(f"no key material for {path.stem}") from None


def _check_private_file(path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise KeyConfigError(f"{path} is readable by others (mode {mode:o}); chmod 600 it")
