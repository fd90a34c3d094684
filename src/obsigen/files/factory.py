"""Builds the configured object store from ``storage.object_store``."""

from __future__ import annotations

from obsigen.config import Settings
from obsigen.files.local_store import LocalObjectStore
from obsigen.files.stores import AnyEncryptionHook, ObjectStore


def make_object_store(
    settings: Settings, encryption: AnyEncryptionHook | None = None
) -> ObjectStore:
    spec = settings.storage.object_store.strip()
    if spec == "local":
        return LocalObjectStore(settings.paths.data_dir / "objects", encryption)
    if spec.startswith("s3://"):
        # Imported here so that a deployment with the local store never loads boto3.
        from obsigen.files.s3_store import S3ObjectStore, S3StoreConfig

        return S3ObjectStore(S3StoreConfig.from_uri(spec), encryption)
    raise ValueError(f'storage.object_store must be "local" or "s3://BUCKET?...", not {spec!r}')
