"""``obsigen retention run``: the whole retention job, by hand or from cron.

It purges expired conversations, uploads and artifacts (as the server's scheduled run does)
and then the audit trail's old signed segments (as ``obsigen audit purge``), each tenant by
its own periods. The audit part runs here and not in the server: deleting audit rows takes
the separate retention database account (docs/audit.md, grants), which the server never
holds. Exit codes: 0 done, 1 some objects could not be deleted or another run holds the
lock, 2 usage or configuration errors.
"""

from __future__ import annotations

import asyncio
import getpass
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from obsigen.config import Settings, ensure_data_dir, load_settings

if TYPE_CHECKING:
    from obsigen.audit.recorder import AuditRecorder

app = typer.Typer(
    no_args_is_help=True, help="Retention: delete expired conversations, files and audit events."
)


class LockHeld(Exception):
    pass


@dataclass(slots=True)
class RunReport:
    dry_run: bool
    tenants: list[dict[str, Any]] = field(default_factory=list)
    audit: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(entry["failed"] for entry in self.tenants)

    def as_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "tenants": self.tenants, "audit": self.audit}


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _cli_actor() -> dict[str, str]:
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = "unknown"
    return {"kind": "cli", "id": user}


@app.command()
def run(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would go; delete nothing.")
    ] = False,
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Tenant name or id (default: every tenant).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    skip_audit: Annotated[
        bool, typer.Option("--skip-audit", help="Leave the audit trail alone.")
    ] = False,
    audit_database_url: Annotated[
        str | None,
        typer.Option(
            "--audit-database-url",
            envvar="OBSIGEN_AUDIT_RETENTION_DATABASE_URL",
            help="The retention account, which may DELETE audit rows (default: storage's).",
        ),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="TOML config file (else $OBSIGEN_CONFIG).")
    ] = None,
) -> None:
    """Delete what is past its retention period, per tenant; every purge is audited."""
    try:
        settings = load_settings(config)
    except (FileNotFoundError, ValueError) as exc:
        _fail(f"configuration error: {exc}")
    from obsigen.retention.purge import UnknownTenant

    try:
        report = asyncio.run(_run(settings, tenant, dry_run, skip_audit, audit_database_url))
    except UnknownTenant as exc:
        _fail(str(exc))
    except LockHeld:
        _fail("another retention run is in progress; try again later", 1)
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
    else:
        for line in _lines(report):
            typer.echo(line)
    if report.failed:
        raise typer.Exit(1)


def _lines(report: RunReport) -> list[str]:
    verb = "would remove" if report.dry_run else "removed"
    lines = []
    for entry in report.tenants:
        counts = ", ".join(f"{n} {kind}" for kind, n in entry["removed"].items() if n)
        line = f"tenant {entry['tenant']} ({entry['tenant_id']}): {verb} {counts or 'nothing'}"
        if entry["failed"]:
            kept = ", ".join(f"{n} {kind}" for kind, n in entry["failed"].items())
            line += f"; kept after object-store errors (next run retries): {kept}"
        lines.append(line)
    for entry in report.audit:
        lines.append(
            f"tenant {entry['tenant_id']}: audit trail: {verb} {entry['events']} events up to "
            f"seq {entry['anchor_seq']} (older than {entry['cutoff']})"
        )
    return lines or ["no tenants"]


async def _run(
    settings: Settings,
    tenant: str | None,
    dry_run: bool,
    skip_audit: bool,
    audit_database_url: str | None,
) -> RunReport:
    # Imported here: `--help` should not load every component.
    from obsigen.audit.recorder import AuditRecorder
    from obsigen.audit.sink_factory import make_audit_sinks
    from obsigen.db.engine import make_engine, make_sessionmaker
    from obsigen.files.factory import make_object_store
    from obsigen.retention.lock import retention_lock
    from obsigen.retention.purge import Purger

    ensure_data_dir(settings)
    engine = make_engine(settings.database_url, settings.storage.database_password)
    sessions = make_sessionmaker(engine)
    recorder = AuditRecorder(make_audit_sinks(settings))
    store = make_object_store(settings)
    report = RunReport(dry_run=dry_run)
    try:
        async with retention_lock(engine) as acquired:
            # A dry run deletes nothing, so it need not wait for (or block) a real one.
            if not acquired and not dry_run:
                raise LockHeld
            tenant_ids, audit_only = await _select_tenants(sessions, tenant, skip_audit)
            if not audit_only:
                purger = Purger(sessions, store, recorder, settings.retention, _cli_actor())
                results = await purger.run(tenant=tenant, dry_run=dry_run)
                report.tenants = [result.as_dict() for result in results]
            if not skip_audit:
                report.audit = await _purge_audit(
                    settings, sessions, recorder, tenant_ids, dry_run, audit_database_url
                )
    finally:
        await store.aclose()
        await recorder.aclose()
        await engine.dispose()
    return report


async def _select_tenants(
    sessions: async_sessionmaker[AsyncSession], tenant: str | None, skip_audit: bool
) -> tuple[list[str], bool]:
    """Tenant ids whose audit chains to consider, and whether only the chain is left.

    A deleted tenant's audit trail outlives it (no foreign key), so its chain is still
    purged by id although there is no other data to purge.
    """
    from obsigen.audit.db_store import chain_tenants
    from obsigen.db.models import Tenant
    from obsigen.retention.purge import UnknownTenant

    if tenant is None:
        return ([] if skip_audit else await chain_tenants(sessions)), False
    chains = await chain_tenants(sessions)
    async with sessions.begin() as session:
        found = await session.scalar(
            select(Tenant.id).where(or_(Tenant.id == tenant, Tenant.name == tenant))
        )
    if found is not None:
        return ([found] if found in chains and not skip_audit else []), False
    if tenant in chains:
        return ([] if skip_audit else [tenant]), True
    raise UnknownTenant(f"unknown tenant {tenant!r}")


async def _purge_audit(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    recorder: AuditRecorder,
    tenant_ids: list[str],
    dry_run: bool,
    database_url: str | None,
) -> list[dict[str, Any]]:
    from obsigen.audit.retention import plan_purge, purge
    from obsigen.db.engine import make_engine
    from obsigen.db.models import Tenant
    from obsigen.retention.policy import RetentionPolicy

    if not tenant_ids:
        return []
    policy = await RetentionPolicy.load(settings.retention, sessions)
    async with sessions.begin() as session:
        rows = (
            await session.execute(select(Tenant.id, Tenant.name).where(Tenant.id.in_(tenant_ids)))
        ).all()
    names = {row.id: row.name for row in rows}
    now = datetime.now(UTC)
    retention = (
        # An override URL is another database: the configured password is not its.
        make_engine(database_url)
        if database_url
        else make_engine(settings.database_url, settings.storage.database_password)
    )
    done = []
    try:
        for tenant_id in tenant_ids:
            days = policy.for_tenant(tenant_id, names.get(tenant_id)).audit_days
            cutoff = now - timedelta(days=days)
            plan = await plan_purge(sessions, tenant_id, cutoff)
            if plan is None:
                continue
            if not dry_run:
                await purge(retention, recorder, plan)
            done.append(
                {
                    "tenant_id": tenant_id,
                    "cutoff": cutoff.isoformat(),
                    "events": plan.events,
                    "anchor_seq": plan.anchor_seq,
                }
            )
    finally:
        await retention.dispose()
    return done
