"""``obsigen retention run`` also purges the audit trail's old signed segments (per tenant's
``audit_days``), and the chain still verifies afterwards."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from obsigen.audit.db_store import DatabaseAuditSink
from obsigen.audit.events import AuditEvent
from obsigen.audit.signing import software_signer, trusted_keys
from obsigen.audit.verify import verify_tenant
from obsigen.config import Settings
from obsigen.retention.cli import _run

NOW = datetime.now(UTC)


async def test_the_audit_trail_is_purged_with_the_rest(database_url: str, tmp_path: Path) -> None:
    settings = Settings.model_validate(
        {
            "paths": {"data_dir": tmp_path / "var"},
            "storage": {"database_url": database_url},
            "audit": {"sinks": ["database"], "checkpoint_every": 5},
        }
    )
    # A tenant deleted long ago: only its audit chain remains, purged by id.
    tenant = uuid.uuid4().hex
    sink = DatabaseAuditSink.from_settings(settings)
    try:
        for n in range(13):
            old = n < 11
            await sink.emit(
                AuditEvent(
                    type="chat.prompt",
                    tenant_id=tenant,
                    actor={"kind": "user", "id": "u1"},
                    outcome="success",
                    data={"n": n},
                    time=NOW - timedelta(days=500 if old else 1, minutes=-n),
                )
            )

        dry = await _run(settings, tenant, dry_run=True, skip_audit=False, audit_database_url=None)
        assert dry.tenants == []
        assert [(a["tenant_id"], a["events"]) for a in dry.audit] == [(tenant, 10)]

        done = await _run(
            settings, tenant, dry_run=False, skip_audit=False, audit_database_url=None
        )
        assert [(a["tenant_id"], a["anchor_seq"]) for a in done.audit] == [(tenant, 10)]

        keys = await trusted_keys(settings.paths.data_dir, software_signer(settings.paths.data_dir))
        report = await verify_tenant(sink.sessions, tenant, keys)
        assert report.intact, report.summary()
        assert report.first_seq == 11

        skipped = await _run(
            settings, tenant, dry_run=True, skip_audit=True, audit_database_url=None
        )
        assert skipped.audit == []
    finally:
        await sink.aclose()
