"""The ``obsigen`` command."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from obsigen.audit import cli as audit_cli
from obsigen.config import Settings, ensure_data_dir, load_settings
from obsigen.db.engine import make_engine, make_sessionmaker
from obsigen.db.migrate import upgrade_to_head
from obsigen.errors import ObsigenError
from obsigen.keys import cli as keys_cli
from obsigen.retention import cli as retention_cli
from obsigen.safeguards import cli as safeguards_cli
from obsigen.scim import cli as scim_cli

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Obsigen platform CLI.")
tenant_app = typer.Typer(no_args_is_help=True, help="Tenants.")
user_app = typer.Typer(no_args_is_help=True, help="Users.")
apikey_app = typer.Typer(no_args_is_help=True, help="Service API keys.")
app.add_typer(tenant_app, name="tenant")
app.add_typer(user_app, name="user")
app.add_typer(apikey_app, name="apikey")
app.add_typer(audit_cli.app, name="audit")
app.add_typer(safeguards_cli.app, name="safeguards")
app.add_typer(keys_cli.app, name="keys")
app.add_typer(retention_cli.app, name="retention")
app.add_typer(scim_cli.app, name="scim")

T = TypeVar("T")

ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="TOML config file (else $OBSIGEN_CONFIG).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def _settings(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except (FileNotFoundError, ValueError) as exc:
        _fail(f"configuration error: {exc}")


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _with_session(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    async def run() -> T:
        ensure_data_dir(settings)
        engine = make_engine(settings.database_url, settings.storage.database_password)
        try:
            async with make_sessionmaker(engine).begin() as session:
                return await work(session)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except ObsigenError as exc:
        _fail(exc.detail)


def _emit(as_json: bool, payload: dict[str, Any], lines: list[str], secret: str | None) -> None:
    if as_json:
        typer.echo(json.dumps(payload))
        return
    for line in lines:
        typer.echo(line)
    if secret is not None:
        # Shown once: the credential stands alone on the last line for scripts to pick up.
        typer.echo(secret)


@app.command()
def serve(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
) -> None:
    """Start the HTTP(S) server."""
    from obsigen.residency_policy import ResidencyRefused, enforce_residency
    from obsigen.web.serve import serve as run_server
    from obsigen.web.tls import TlsConfigError

    settings = _settings(config)
    try:
        enforce_residency(settings)
    except ResidencyRefused as exc:
        _fail(str(exc))
    # The app checks again at start-up; here the refusal is one clear line and exit 2 instead
    # of a traceback from inside the server's lifespan.
    from obsigen.doctor import rotation
    from obsigen.secrets.rotation import RotationExpired, enforce_rotation

    try:
        enforce_rotation(asyncio.run(rotation(settings)))
    except RotationExpired as exc:
        _fail(str(exc))
    if host is not None:
        settings.server.host = host
    if port is not None:
        settings.server.port = port
    try:
        run_server(settings)
    except TlsConfigError as exc:
        _fail(f"configuration error: {exc}")


@app.command()
def worker(config: ConfigOption = None) -> None:
    """Run background tasks (ingestion, retention) from the task queue until SIGTERM."""
    import logging

    from obsigen.tasks.worker import WorkerNotRunnable, run_worker

    settings = _settings(config)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        asyncio.run(run_worker(settings))
    except WorkerNotRunnable as exc:
        _fail(str(exc))


@app.command()
def migrate(config: ConfigOption = None) -> None:
    """Bring the database schema up to date (never deletes data)."""
    settings = _settings(config)
    ensure_data_dir(settings)

    async def run() -> None:
        engine = make_engine(settings.database_url, settings.storage.database_password)
        try:
            await upgrade_to_head(engine)
        finally:
            await engine.dispose()

    asyncio.run(run())
    typer.echo("database schema is up to date")


@app.command()
def doctor(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Components, their backends, reachability and the region of every store and endpoint."""
    from obsigen.doctor import diagnose, format_rotation, rotation
    from obsigen.doctor_data import data_map, format_data_map, residency_problems

    settings = _settings(config)
    reports = asyncio.run(diagnose(settings))
    rows = data_map(settings)
    problems = residency_problems(settings)
    if as_json:
        typer.echo(json.dumps([r.as_dict() for r in reports], indent=2))
    else:
        _print_reports(reports)
        # Where each kind of data lives, and under what protection (docs/residency.md).
        for line in format_data_map(rows):
            typer.echo(line)
        # Credential ages against their maximum (docs/secrets.md).
        for line in format_rotation(asyncio.run(rotation(settings))):
            typer.echo(line)
    for problem in problems:
        typer.echo(f"error: residency: {problem}", err=True)
    if problems or any(r.reachable.startswith("no") for r in reports):
        raise typer.Exit(1)


def _print_reports(reports: list[Any]) -> None:
    width = max(len(r.component) for r in reports)
    for r in reports:
        typer.echo(f"{r.component:<{width}}  {r.backend}")
        typer.echo(f"{'':<{width}}    location:  {r.location}")
        typer.echo(f"{'':<{width}}    reachable: {r.reachable}")
        typer.echo(f"{'':<{width}}    region:    {r.region}")
        typer.echo(f"{'':<{width}}    holds:     {r.holds}")


@tenant_app.command("create")
def tenant_create(
    name: str,
    region: Annotated[str, typer.Option(help="Region of the tenant's data.")] = "eea",
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a tenant."""
    from obsigen.identity.tenants import create_tenant

    settings = _settings(config)

    async def work(session: AsyncSession) -> dict[str, str]:
        tenant = await create_tenant(session, name, region)
        return {"id": tenant.id, "name": tenant.name, "region": tenant.region}

    created = _with_session(settings, work)
    _emit(as_json, created, [f"tenant {created['name']} created", created["id"]], None)


@tenant_app.command("erase")
def tenant_erase(
    tenant: str,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: this cannot be undone.")] = False,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Erase a tenant: destroy its data keys (crypto-shredding), delete its rows and objects."""
    from obsigen.tenantkeys.cli import run_erase

    if not yes:
        _fail("erasing a tenant cannot be undone: add --yes to confirm")
    settings = _settings(config)
    try:
        report = asyncio.run(run_erase(settings, tenant))
    except ObsigenError as exc:
        _fail(exc.detail)
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
    else:
        typer.echo(
            f"tenant {report.tenant_name} ({report.tenant_id}) erased: "
            f"{report.keys_destroyed} data keys destroyed, {report.objects_deleted} objects deleted"
        )
        for name in report.objects_failed:
            typer.echo(f"  could not delete {name} (unreadable: its key is destroyed)")
    if report.objects_failed:
        raise typer.Exit(1)


@user_app.command("create")
def user_create(
    tenant: Annotated[str, typer.Option(help="Tenant name.")],
    email: Annotated[str, typer.Option(help="E-mail address.")],
    role: Annotated[str, typer.Option(help="owner, admin, auditor, member or viewer.")] = "member",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a user; owners, admins and auditors get a TOTP enrolment URI, printed once."""
    from obsigen.identity.tenants import tenant_by_name
    from obsigen.identity.users import create_user, parse_role

    settings = _settings(config)
    password = sys.stdin.readline().rstrip("\n") if password_stdin else None

    async def work(session: AsyncSession) -> dict[str, str | None]:
        created = await create_user(
            session, await tenant_by_name(session, tenant), email, parse_role(role), password
        )
        return {"id": created.user.id, "email": created.user.email, "role": role,
                "otpauth_uri": created.otpauth_uri}  # fmt: skip

    created = _with_session(settings, work)
    lines = [f"user {created['email']} ({role}) created", f"id: {created['id']}"]
    if created["otpauth_uri"]:
        lines.append(f"{role}: enrol this TOTP secret in an authenticator app (shown once):")
    _emit(as_json, created, lines, created["otpauth_uri"])


@apikey_app.command("create")
def apikey_create(
    tenant: Annotated[str, typer.Option(help="Tenant name.")],
    name: Annotated[str, typer.Option(help="What the key is for.")],
    role: Annotated[
        str, typer.Option(help="member, viewer or a custom role without admin permissions.")
    ] = "member",
    expires_in: Annotated[
        str | None,
        typer.Option(
            "--expires-in", help="e.g. 90d, 12h; default 90d, at most auth.apikey_max_days."
        ),
    ] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a service API key; the key is printed once."""
    from datetime import timedelta

    from obsigen.identity.apikeys import create_api_key, parse_duration
    from obsigen.identity.tenants import tenant_by_name

    settings = _settings(config)
    max_age = timedelta(days=settings.auth.apikey_max_days)

    async def work(session: AsyncSession) -> dict[str, str | None]:
        # Without --expires-in: 90 days, or less where the configured maximum is shorter.
        lifetime = parse_duration(expires_in) if expires_in else min(timedelta(days=90), max_age)
        created = await create_api_key(
            session,
            await tenant_by_name(session, tenant),
            name,
            role,
            lifetime,
            max_age=max_age,
        )
        expires = created.api_key.expires_at
        return {"id": created.api_key.id, "key": created.key, "role": role,
                "expires_at": expires.isoformat() if expires else None}  # fmt: skip

    created = _with_session(settings, work)
    lines = [
        f"API key {created['id']} ({role}) created, expires {created['expires_at']}",
        "the key (shown once):",
    ]
    _emit(as_json, created, lines, created["key"])


@app.command()
def bootstrap(config: ConfigOption = None) -> None:
    """On an empty database: create the first tenant and admin, and print their credentials once."""
    import secrets

    from sqlalchemy import select

    from obsigen.authz.permissions import Role
    from obsigen.db.models import Tenant
    from obsigen.identity.tenants import create_tenant
    from obsigen.identity.users import create_user

    settings = _settings(config)
    password = secrets.token_urlsafe(18)

    async def work(session: AsyncSession) -> dict[str, str | None] | None:
        if await session.scalar(select(Tenant.id).limit(1)) is not None:
            return None
        tenant = await create_tenant(session, "default", settings.residency.region)
        # The first user owns the tenant: only an owner can make owners and manage keys.
        created = await create_user(session, tenant, "admin@obsigen.local", Role.OWNER, password)
        return {"tenant": tenant.name, "email": created.user.email,
                "otpauth_uri": created.otpauth_uri}  # fmt: skip

    created = _with_session(settings, work)
    url = f"http://{settings.server.host}:{settings.server.port}/"
    if created is None:
        typer.echo(f"Obsigen: existing installation; serving on {url}")
        return
    typer.echo(
        f"""
Obsigen is set up. Serving on {url}

First user, the tenant's owner (shown once; store it now):
  tenant:   {created["tenant"]}
  e-mail:   {created["email"]}
  password: {password}
  TOTP:     {created["otpauth_uri"]}

An API key for the OpenAI-compatible API (base URL {url}v1):
  obsigen apikey create --tenant {created["tenant"]} --name my-app --role member
"""
    )
