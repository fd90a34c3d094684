"""``obsigen audit``: verify the chain (in the database or in an export) and export a period.

Exit codes: 0 intact, 1 tampered or events missing (the first bad event is named), 2 usage
or configuration errors. Verifying and exporting are themselves audited.
"""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from obsigen.audit.chain import VerifyReport
from obsigen.audit.events import AuditEvent, Outcome
from obsigen.audit.export import ExportError, ExportResult, export_tenant, verify_export
from obsigen.audit.recorder import AuditRecorder
from obsigen.audit.signing import (
    SigningError,
    make_signer,
    provider_public_keys,
    signing_provider,
    trusted_keys,
)
from obsigen.config import Settings, ensure_data_dir, load_settings

app = typer.Typer(
    no_args_is_help=True, help="Audit trail: verify the hash chain, export for auditors."
)

ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="TOML config file (else $OBSIGEN_CONFIG).")
]


class ExportFormatOption(StrEnum):
    jsonl = "jsonl"
    ocsf = "ocsf"


class UsageError(Exception):
    pass


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _settings(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except (FileNotFoundError, ValueError) as exc:
        _fail(f"configuration error: {exc}")


def _parse_time(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        _fail(f"{option}: not an ISO 8601 date or time: {text!r}")
    # UTC everywhere: a time without an offset is read as UTC.
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _cli_actor() -> dict[str, str]:
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = "unknown"
    return {"kind": "cli", "id": user}


@app.command()
def verify(
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Tenant name or id (default: every tenant).")
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", help="Check an export offline (its .manifest.json beside it)."),
    ] = None,
    trust_key: Annotated[
        list[str] | None,
        typer.Option("--trust-key", help="With --file: a key thumbprint to accept (repeatable)."),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Check the hash chain and signed checkpoints; name the first bad event."""
    if file is not None:
        if tenant is not None:
            _fail("--file checks an export; it takes no --tenant")
        _verify_file(file, set(trust_key) if trust_key else None)
        return
    settings = _settings(config)
    try:
        reports = asyncio.run(_verify_database(settings, tenant))
    except (UsageError, SigningError) as exc:
        _fail(str(exc))
    if not reports:
        typer.echo("OK: no audit events stored yet")
    for label, report in reports:
        typer.echo(report.summary().replace(f"tenant {report.tenant_id}", f"tenant {label}", 1))
    if any(not report.intact for _, report in reports):
        raise typer.Exit(1)


def _verify_file(path: Path, trusted: set[str] | None) -> None:
    try:
        check = verify_export(path, trusted)
    except ExportError as exc:
        _fail(str(exc))
    signed = f"; manifest signed by key {check.manifest_key_id}"
    typer.echo(check.report.summary() + (signed if check.report.intact else ""))
    if not check.report.intact:
        raise typer.Exit(1)


async def _verify_database(
    settings: Settings, tenant: str | None
) -> list[tuple[str, VerifyReport]]:
    from obsigen.audit.db_store import chain_tenants
    from obsigen.audit.verify import verify_tenant

    async def work(
        sessions: async_sessionmaker[AsyncSession], recorder: AuditRecorder
    ) -> list[tuple[str, VerifyReport]]:
        if tenant is not None:
            tenant_ids = [(await _resolve_tenant(sessions, tenant))[0]]
        else:
            tenant_ids = await chain_tenants(sessions)
        names = await _tenant_names(sessions, tenant_ids)
        provider = signing_provider(settings)
        try:
            keys = await trusted_keys(
                settings.paths.data_dir, await make_signer(settings, provider)
            )
            keys.update(await provider_public_keys(provider))
        finally:
            if provider is not None:
                await provider.aclose()
        results = []
        for tenant_id in tenant_ids:
            report = await verify_tenant(sessions, tenant_id, keys)
            await _record(
                recorder,
                "audit.verify",
                tenant_id,
                "success" if report.intact else "failure",
                scope="database",
                events=report.events,
                first_seq=report.first_seq,
                last_seq=report.last_seq,
                checkpoints=report.checkpoints,
                finding=report.finding.describe() if report.finding else None,
            )
            label = names.get(tenant_id)
            results.append((f"{label} ({tenant_id})" if label else tenant_id, report))
        return results

    return await _with_database(settings, work)


@app.command()
def export(
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant name or id.")],
    since: Annotated[
        str | None, typer.Option("--since", help="ISO 8601; from (inclusive). Default: start.")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="ISO 8601; to (exclusive). Default: now.")
    ] = None,
    fmt: Annotated[
        ExportFormatOption, typer.Option("--format", help="jsonl (our records) or ocsf.")
    ] = ExportFormatOption.jsonl,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Export file (default: in the cwd).")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Export a period of a tenant's audit trail with a signed manifest for offline checks."""
    start, end = _parse_time(since, "--since"), _parse_time(until, "--until")
    if start is not None and end is not None and start >= end:
        _fail("--since must be before --until")
    settings = _settings(config)
    try:
        result = asyncio.run(_export(settings, tenant, start, end, fmt.value, output))
    except (UsageError, SigningError, ExportError) as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot write the export: {exc}")
    span = f" (seq {result.first_seq}..{result.last_seq})" if result.count else ""
    typer.echo(f"exported {result.count} events{span} to {result.path}")
    typer.echo(f"manifest: {result.manifest} (signed by key {result.key_id})")


async def _export(
    settings: Settings,
    tenant: str,
    since: datetime | None,
    until: datetime | None,
    fmt: str,
    output: Path | None,
) -> ExportResult:
    async def work(
        sessions: async_sessionmaker[AsyncSession], recorder: AuditRecorder
    ) -> ExportResult:
        tenant_id, name = await _resolve_tenant(sessions, tenant)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        suffix = "ocsf.jsonl" if fmt == "ocsf" else "jsonl"
        path = output or Path(f"audit-{name or tenant_id}-{stamp}.{suffix}")
        provider = signing_provider(settings)
        try:
            result = await export_tenant(
                sessions,
                await make_signer(settings, provider),
                tenant_id=tenant_id,
                tenant_name=name or "",
                since=since,
                until=until,
                fmt="ocsf" if fmt == "ocsf" else "jsonl",
                path=path,
            )
        finally:
            if provider is not None:
                await provider.aclose()
        await _record(
            recorder,
            "audit.export",
            tenant_id,
            "success",
            since=since.isoformat() if since else None,
            until=until.isoformat() if until else None,
            format=fmt,
            events=result.count,
            first_seq=result.first_seq,
            last_seq=result.last_seq,
            file=result.path.name,
            sha256=result.sha256,
            key_id=result.key_id,
        )
        return result

    return await _with_database(settings, work)


T = TypeVar("T")


@app.command()
def purge(
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Tenant name or id (default: every tenant).")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would go.")] = False,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            envvar="OBSIGEN_AUDIT_RETENTION_DATABASE_URL",
            help="The retention account, which may DELETE audit rows (default: storage's).",
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Remove whole signed segments older than retention.audit_days; verify still passes."""
    settings = _settings(config)
    cutoff = datetime.now(UTC) - timedelta(days=settings.retention.audit_days)
    try:
        lines = asyncio.run(_purge(settings, tenant, cutoff, dry_run, database_url))
    except (UsageError, SigningError) as exc:
        _fail(str(exc))
    for line in lines or [f"nothing older than {cutoff.isoformat()} to purge"]:
        typer.echo(line)


async def _purge(
    settings: Settings,
    tenant: str | None,
    cutoff: datetime,
    dry_run: bool,
    database_url: str | None,
) -> list[str]:
    from obsigen.audit.db_store import chain_tenants
    from obsigen.audit.retention import plan_purge
    from obsigen.audit.retention import purge as run_purge
    from obsigen.db.engine import make_engine

    async def work(
        sessions: async_sessionmaker[AsyncSession], recorder: AuditRecorder
    ) -> list[str]:
        if tenant is not None:
            tenant_ids = [(await _resolve_tenant(sessions, tenant))[0]]
        else:
            tenant_ids = await chain_tenants(sessions)
        retention = (
            # An override URL is another database: the configured password is not its.
            make_engine(database_url)
            if database_url
            else make_engine(settings.database_url, settings.storage.database_password)
        )
        lines = []
        try:
            for tenant_id in tenant_ids:
                plan = await plan_purge(sessions, tenant_id, cutoff)
                if plan is None:
                    continue
                verb = "would remove" if dry_run else "removed"
                if not dry_run:
                    await run_purge(retention, recorder, plan)
                lines.append(
                    f"tenant {tenant_id}: {verb} {plan.events} events up to seq "
                    f"{plan.anchor_seq} (older than {cutoff.isoformat()})"
                )
        finally:
            await retention.dispose()
        return lines

    return await _with_database(settings, work)


async def _with_database(
    settings: Settings,
    work: Callable[[async_sessionmaker[AsyncSession], AuditRecorder], Awaitable[T]],
) -> T:
    # Imported here: services pulls in every component, which `verify --file` never needs.
    from obsigen.audit.sink_factory import make_audit_sinks
    from obsigen.db.engine import make_engine, make_sessionmaker

    ensure_data_dir(settings)
    engine = make_engine(settings.database_url, settings.storage.database_password)
    recorder = AuditRecorder(make_audit_sinks(settings))
    try:
        return await work(make_sessionmaker(engine), recorder)
    finally:
        await recorder.aclose()
        await engine.dispose()


async def _record(
    recorder: AuditRecorder, type_: str, tenant_id: str, outcome: Outcome, **data: Any
) -> None:
    await recorder.record(
        AuditEvent(type=type_, tenant_id=tenant_id, actor=_cli_actor(), outcome=outcome, data=data)
    )


async def _resolve_tenant(
    sessions: async_sessionmaker[AsyncSession], tenant: str
) -> tuple[str, str | None]:
    """A tenant by name or id; also an id that only the audit trail still knows."""
    from obsigen.audit.db_store import chain_tenants
    from obsigen.db.models import Tenant

    async with sessions.begin() as session:
        row = (
            await session.execute(
                select(Tenant.id, Tenant.name).where(
                    or_(Tenant.name == tenant, Tenant.id == tenant)
                )
            )
        ).first()
    if row is not None:
        return row.id, row.name
    if tenant in await chain_tenants(sessions):
        return tenant, None
    raise UsageError(f"unknown tenant {tenant!r}")


async def _tenant_names(
    sessions: async_sessionmaker[AsyncSession], tenant_ids: list[str]
) -> dict[str, str]:
    from obsigen.db.models import Tenant

    if not tenant_ids:
        return {}
    async with sessions.begin() as session:
        rows = (
            await session.execute(select(Tenant.id, Tenant.name).where(Tenant.id.in_(tenant_ids)))
        ).all()
    return {row.id: row.name for row in rows}
