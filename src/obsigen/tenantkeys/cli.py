"""The commands of tenant encryption: ``obsigen tenant erase`` and ``obsigen keys rewrap``."""

from __future__ import annotations

import getpass

from obsigen.config import Settings, ensure_data_dir
from obsigen.tenantkeys.erase import EraseReport, erase_tenant
from obsigen.tenantkeys.keyring import RewrapReport, TenantKeyring


def cli_actor() -> dict[str, str]:
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = "unknown"
    return {"kind": "cli", "id": user}


async def run_erase(settings: Settings, tenant: str) -> EraseReport:
    # Imported here: `--help` should not load every component.
    from obsigen.audit.recorder import AuditRecorder
    from obsigen.audit.sink_factory import make_audit_sinks
    from obsigen.db.engine import make_engine, make_sessionmaker
    from obsigen.files.factory import make_object_store
    from obsigen.keys.factory import make_key_provider

    ensure_data_dir(settings)
    engine = make_engine(settings.database_url, settings.storage.database_password)
    sessions = make_sessionmaker(engine)
    provider = make_key_provider(settings.keys.kek, settings.paths.data_dir)
    recorder = AuditRecorder(make_audit_sinks(settings))
    # Deleting needs no key: the store is opened without the encryption hook.
    store = make_object_store(settings)
    try:
        return await erase_tenant(
            sessions=sessions,
            keyring=TenantKeyring(provider, sessions, ttl_s=0),
            store=store,
            audit=recorder,
            tenant=tenant,
            actor=cli_actor(),
        )
    finally:
        await store.aclose()
        await recorder.aclose()
        await provider.aclose()
        await engine.dispose()


async def run_rewrap(settings: Settings) -> RewrapReport:
    from obsigen.db.engine import make_engine, make_sessionmaker
    from obsigen.keys.factory import make_key_provider

    ensure_data_dir(settings)
    engine = make_engine(settings.database_url, settings.storage.database_password)
    provider = make_key_provider(settings.keys.kek, settings.paths.data_dir)
    try:
        keyring = TenantKeyring(provider, make_sessionmaker(engine), ttl_s=0)
        return await keyring.rewrap_all()
    finally:
        await provider.aclose()
        await engine.dispose()
