"""Keys in AWS KMS (or a KMS-compatible endpoint), through boto3.

URI: ``awskms:region=eu-central-1[;endpoint_url=https://...][;access_key_id=env:X;
secret_access_key=env:Y][;cache_ttl=30]``. Without the credential references boto3's default
chain applies (instance role, environment, profile). The kid is the KMS key id (a UUID).

Keys are created in KMS (``ECC_NIST_P256`` / ``RSA_2048`` for ``SIGN_VERIFY``,
``SYMMETRIC_DEFAULT`` for KEKs) and KMS never exports a private or symmetric key. Our metadata
rides on the key as tags (``obsigen:managed``, ``obsigen:alg``, ``obsigen:state``,
``obsigen:retire_after``); only keys tagged ``obsigen:managed=true`` are used or listed.
Retiring a key also disables it in KMS, so KMS itself refuses it from then on.

Signing sends the message (``MessageType=RAW``) and converts KMS's DER ECDSA signature to the
JWS r||s form. Verification runs on the host from the public key (GetPublicKey, cached):
public keys need no protection, and a KMS round trip per token check would cost latency and
money. Wrapping is KMS Encrypt/Decrypt with the context as ``EncryptionContext``.

boto3 blocks: every call runs in a worker thread (boto3 clients are thread-safe).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import boto3  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import (  # type: ignore[import-untyped]
    BotoCoreError,
    ClientError,
    NoCredentialsError,
)
from cryptography.hazmat.primitives.serialization import load_der_public_key

from obsigen.keys.common import (
    Clock,
    MetaCache,
    PublicKey,
    check_kid,
    check_signing_alg,
    check_transition,
    der_to_raw_ecdsa,
    info_from_json,
    public_jwk,
    require_signing,
    require_unwrapping,
    require_verifying,
    require_wrapping,
    utcnow,
    verify_with_public_key,
    wrap_aad,
)
from obsigen.keys.errors import (
    KeyConfigError,
    KeyNotFound,
    KeyProviderError,
    KeyProviderUnavailable,
    KeyStateError,
    UnsupportedAlgorithm,
    UnwrapFailed,
)
from obsigen.keys.interfaces import DataKey, KeyInfo, KeyState, SigningAlg
from obsigen.secretref import SecretRefError, resolve_secret

T = TypeVar("T")

_TAG = "obsigen:"
_KEY_SPEC = {"ES256": "ECC_NIST_P256", "RS256": "RSA_2048"}
_SIGNING_ALG = {"ES256": "ECDSA_SHA_256", "RS256": "RSASSA_PKCS1_V1_5_SHA_256"}
# KMS takes at most 4096 bytes with MessageType=RAW.
_RAW_LIMIT = 4096

_NOT_FOUND = {"NotFoundException", "InvalidArnException", "InvalidKeyUsageException"}
_STATE = {"DisabledException", "KMSInvalidStateException"}
# A blob made under another key comes back as IncorrectKeyException from AWS and as
# AccessDeniedException from moto (and from AWS when the blob names a key we may not use).
_UNWRAP = {"InvalidCiphertextException", "IncorrectKeyException", "AccessDeniedException"}
_CONFIG = {"AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException"}


class AwsKmsKeyProvider:
    name = "awskms"

    def __init__(
        self,
        region: str,
        endpoint_url: str = "",
        access_key_ref: str = "",
        secret_key_ref: str = "",
        *,
        cache_ttl_s: float = 30.0,
        clock: Clock = utcnow,
    ) -> None:
        if not region:
            raise KeyConfigError("awskms: region= is required (an EEA region, e.g. eu-central-1)")
        if bool(access_key_ref) != bool(secret_key_ref):
            raise KeyConfigError("awskms: give both access_key_id and secret_access_key, or none")
        self._region = region
        self._endpoint_url = endpoint_url or None
        self._access_key_ref = access_key_ref
        self._secret_key_ref = secret_key_ref
        self._clock = clock
        self._client: Any = None
        self._client_lock = asyncio.Lock()
        self._public: dict[str, PublicKey] = {}
        self._meta_cache = MetaCache(cache_ttl_s)

    # --- the client ------------------------------------------------------------------------------

    async def _kms(self) -> Any:
        if self._client is None:
            async with self._client_lock:
                if self._client is None:
                    self._client = await asyncio.to_thread(self._make_client)
        return self._client

    def _make_client(self) -> Any:
        credentials: dict[str, str] = {}
        if self._access_key_ref:
            try:
                credentials = {
                    "aws_access_key_id": resolve_secret(self._access_key_ref),
                    "aws_secret_access_key": resolve_secret(self._secret_key_ref),
                }
            except (SecretRefError, ValueError) as exc:
                raise KeyConfigError(f"awskms: credentials: {exc}") from None
        return boto3.session.Session().client(
            "kms",
            region_name=self._region,
            endpoint_url=self._endpoint_url,
            config=Config(
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=5,
                read_timeout=10,
            ),
            **credentials,
        )

    async def _call(self, fn: Callable[[Any], T], *, unwrapping: bool = False) -> T:
        client = await self._kms()
        try:
            return await asyncio.to_thread(fn, client)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if unwrapping and code in _UNWRAP:
                raise UnwrapFailed(
                    f"wrapped key does not open under this KEK in this context ({code})"
                ) from None
            if code in _NOT_FOUND:
                raise KeyNotFound("no such key in KMS") from None
            if code in _STATE:
                raise KeyStateError(f"KMS refused: the key is not usable ({code})") from None
            if code in _CONFIG:
                raise KeyConfigError(f"KMS refused the credentials ({code})") from None
            raise KeyProviderUnavailable(f"KMS error {code or 'unknown'}") from None
        except NoCredentialsError:
            raise KeyConfigError("awskms: no AWS credentials found") from None
        except BotoCoreError as exc:
            raise KeyProviderUnavailable(f"KMS unreachable: {type(exc).__name__}") from None

    # --- metadata in tags ------------------------------------------------------------------------

    def _read_meta(self, client: Any, kid: str) -> dict[str, Any]:
        described = client.describe_key(KeyId=kid)["KeyMetadata"]
        tags = _tags(client, kid)
        if tags.get(_TAG + "managed") != "true":
            raise KeyNotFound(f"KMS key {kid} is not managed by obsigen")
        state = tags.get(_TAG + "state", "active")
        if described.get("KeyState") != "Enabled":
            # Disabled or pending deletion in KMS: nothing works, whatever our tag says.
            state = str(KeyState.RETIRED)
        raw = {
            "kid": kid,
            "alg": tags.get(_TAG + "alg", ""),
            "created_at": _as_utc(described["CreationDate"]).isoformat(),
            "state": state,
            "retire_after": tags.get(_TAG + "retire_after") or None,
        }
        self._meta_cache.put(kid, raw)
        return raw

    async def _meta(self, kid: str) -> KeyInfo:
        check_kid(kid)
        raw = self._meta_cache.get(kid)
        if raw is None:
            raw = await self._call(lambda client: self._read_meta(client, kid))
        return info_from_json(raw, self._clock())

    # --- signing keys ----------------------------------------------------------------------------

    async def create_signing_key(self, alg: SigningAlg) -> KeyInfo:
        alg = check_signing_alg(alg)
        return await self._create(
            alg,
            {"KeySpec": _KEY_SPEC[alg], "KeyUsage": "SIGN_VERIFY"},
        )

    async def sign(self, kid: str, message: bytes) -> bytes:
        info = await self._meta(kid)
        require_signing(info)
        alg = check_signing_alg(info.alg)

        def run(client: Any) -> bytes:
            if len(message) <= _RAW_LIMIT:
                request = {"Message": message, "MessageType": "RAW"}
            else:
                # Longer messages must be hashed here. (moto mis-handles DIGEST, so tests only
                # exercise RAW; real KMS implements DIGEST as documented.)
                request = {"Message": hashlib.sha256(message).digest(), "MessageType": "DIGEST"}
            answer = client.sign(KeyId=kid, SigningAlgorithm=_SIGNING_ALG[alg], **request)
            return bytes(answer["Signature"])

        signature = await self._call(run)
        return der_to_raw_ecdsa(signature) if alg == "ES256" else signature

    async def verify(self, kid: str, message: bytes, signature: bytes) -> bool:
        info = await self._meta(kid)
        require_verifying(info)
        alg = check_signing_alg(info.alg)
        return verify_with_public_key(await self._public_key(kid), alg, message, signature)

    async def public_jwk(self, kid: str) -> dict[str, str]:
        info = await self._meta(kid)
        if info.use != "sig":
            raise KeyNotFound(f"no signing key {kid}")
        return public_jwk(await self._public_key(kid), kid, check_signing_alg(info.alg))

    async def _public_key(self, kid: str) -> PublicKey:
        key = self._public.get(kid)
        if key is None:
            der = await self._call(
                lambda client: bytes(client.get_public_key(KeyId=kid)["PublicKey"])
            )
            loaded = load_der_public_key(der)
            if not isinstance(loaded, PublicKey):
                raise UnsupportedAlgorithm(f"KMS key {kid} has an unusable public key")
            key = self._public[kid] = loaded
        return key

    # --- key-encryption keys ---------------------------------------------------------------------

    async def create_kek(self) -> KeyInfo:
        return await self._create(
            "A256GCM", {"KeySpec": "SYMMETRIC_DEFAULT", "KeyUsage": "ENCRYPT_DECRYPT"}
        )

    async def wrap(self, kek_id: str, data_key: bytes, context: dict[str, str]) -> bytes:
        require_wrapping(await self._meta(kek_id))
        wrap_aad(kek_id, context)  # validates the context the same way as the other providers
        return await self._call(
            lambda client: bytes(
                client.encrypt(KeyId=kek_id, Plaintext=data_key, EncryptionContext=context)[
                    "CiphertextBlob"
                ]
            )
        )

    async def unwrap(self, kek_id: str, wrapped: bytes, context: dict[str, str]) -> bytes:
        require_unwrapping(await self._meta(kek_id))
        wrap_aad(kek_id, context)
        return await self._call(
            lambda client: bytes(
                client.decrypt(CiphertextBlob=wrapped, KeyId=kek_id, EncryptionContext=context)[
                    "Plaintext"
                ]
            ),
            unwrapping=True,
        )

    async def new_data_key(self, kek_id: str, context: dict[str, str]) -> DataKey:
        require_wrapping(await self._meta(kek_id))
        wrap_aad(kek_id, context)

        def run(client: Any) -> DataKey:
            answer = client.generate_data_key(
                KeyId=kek_id, KeySpec="AES_256", EncryptionContext=context
            )
            return DataKey(bytes(answer["Plaintext"]), bytes(answer["CiphertextBlob"]))

        return await self._call(run)

    # --- lifecycle -------------------------------------------------------------------------------

    async def _create(self, alg: str, spec: dict[str, str]) -> KeyInfo:
        def run(client: Any) -> dict[str, Any]:
            created = client.create_key(
                Description=f"obsigen {alg} key",
                Tags=[
                    {"TagKey": _TAG + "managed", "TagValue": "true"},
                    {"TagKey": _TAG + "alg", "TagValue": alg},
                    {"TagKey": _TAG + "state", "TagValue": str(KeyState.ACTIVE)},
                ],
                **spec,
            )["KeyMetadata"]
            kid = str(created["KeyId"])
            raw: dict[str, Any] = {
                "kid": kid,
                "alg": alg,
                "created_at": _as_utc(created["CreationDate"]).isoformat(),
                "state": str(KeyState.ACTIVE),
                "retire_after": None,
            }
            self._meta_cache.put(kid, raw)
            return raw

        return info_from_json(await self._call(run), self._clock())

    async def get_key(self, kid: str) -> KeyInfo:
        check_kid(kid)
        raw = await self._call(lambda client: self._read_meta(client, kid))
        return info_from_json(raw, self._clock())

    async def list_keys(self) -> list[KeyInfo]:
        def run(client: Any) -> list[dict[str, Any]]:
            found = []
            for page in client.get_paginator("list_keys").paginate():
                for entry in page["Keys"]:
                    kid = str(entry["KeyId"])
                    if _tags(client, kid).get(_TAG + "managed") == "true":
                        found.append(self._read_meta(client, kid))
            return found

        now = self._clock()
        infos = [info_from_json(raw, now) for raw in await self._call(run)]
        return sorted(infos, key=lambda info: (info.created_at, info.kid))

    async def set_state(
        self, kid: str, state: KeyState, retire_after: datetime | None = None
    ) -> KeyInfo:
        check_kid(kid)
        state = KeyState(state)
        now = self._clock()
        if state is KeyState.RETIRED and (await self.get_key(kid)).use == "sig":
            # AWS refuses GetPublicKey on a disabled key: fetch the public half first, so
            # this process can still hand out the retired key's JWK to auditors.
            await self._public_key(kid)

        def run(client: Any) -> dict[str, Any]:
            raw = self._read_meta(client, kid)
            check_transition(info_from_json(raw, now).state, state)
            tags = [{"TagKey": _TAG + "state", "TagValue": str(state)}]
            if retire_after is not None:
                tags.append({"TagKey": _TAG + "retire_after", "TagValue": retire_after.isoformat()})
            client.tag_resource(KeyId=kid, Tags=tags)
            if retire_after is None:
                client.untag_resource(KeyId=kid, TagKeys=[_TAG + "retire_after"])
            if state is KeyState.RETIRED:
                # Disabled keys are refused by KMS itself (and re-enabling is an audited KMS
                # action outside obsigen). Not scheduled for deletion: that is the operator's call.
                client.disable_key(KeyId=kid)
            return self._read_meta(client, kid)

        return info_from_json(await self._call(run), self._clock())

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await asyncio.to_thread(client.close)


def _tags(client: Any, kid: str) -> dict[str, str]:
    answer = client.list_resource_tags(KeyId=kid)
    return {str(tag["TagKey"]): str(tag["TagValue"]) for tag in answer.get("Tags", [])}


def _as_utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    raise KeyProviderError("KMS returned a key without a creation date")
