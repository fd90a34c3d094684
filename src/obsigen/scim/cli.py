"""``obsigen scim token create|list|revoke``: the bearer tokens identity providers provision
with. A token is printed once; only its digest is stored."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy.ext.asyncio import AsyncSession

app = typer.Typer(no_args_is_help=True, help="SCIM provisioning.")
token_app = typer.Typer(no_args_is_help=True, help="SCIM bearer tokens.")
app.add_typer(token_app, name="token")

ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="TOML config file (else $OBSIGEN_CONFIG).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
TenantOption = Annotated[str, typer.Option(help="Tenant name.")]


@token_app.command("create")
def token_create(
    tenant: TenantOption,
    name: Annotated[str, typer.Option(help="What the token is for, e.g. entra-id.")] = "scim",
    expires_in: Annotated[
        str | None,
        typer.Option(
            "--expires-in",
            help="e.g. 90d, 12h; default 90d, at most secrets.max_age_days.scim_token.",
        ),
    ] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a SCIM bearer token for a tenant; the token is printed once."""
    from obsigen.cli import _emit, _settings, _with_session
    from obsigen.identity.apikeys import parse_duration
    from obsigen.identity.tenants import tenant_by_name
    from obsigen.scim.tokens import create_token

    settings = _settings(config)
    max_age = timedelta(days=settings.secrets.max_age_days.scim_token)

    async def work(session: AsyncSession) -> dict[str, Any]:
        # Without --expires-in: 90 days, or less where the configured maximum is shorter.
        lifetime = parse_duration(expires_in) if expires_in else min(timedelta(days=90), max_age)
        created = await create_token(
            session, await tenant_by_name(session, tenant), name, lifetime, max_age=max_age
        )
        return {
            "id": created.token.id,
            "token": created.secret,
            "name": created.token.name,
            "expires_at": created.token.expires_at.isoformat(),
        }

    created = _with_session(settings, work)
    lines = [
        f"SCIM token {created['id']} ({created['name']}) created, expires {created['expires_at']}",
        "the token (shown once):",
    ]
    _emit(as_json, created, lines, created["token"])


@token_app.command("list")
def token_list(
    tenant: TenantOption, config: ConfigOption = None, as_json: JsonOption = False
) -> None:
    """The tenant's SCIM tokens (never the secrets)."""
    import json

    from obsigen.cli import _settings, _with_session
    from obsigen.identity.tenants import tenant_by_name
    from obsigen.scim.tokens import list_tokens

    settings = _settings(config)

    async def work(session: AsyncSession) -> list[dict[str, str | None]]:
        rows = await list_tokens(session, await tenant_by_name(session, tenant))
        return [
            {
                "id": row.id,
                "name": row.name,
                "created_at": row.created_at.isoformat(),
                "expires_at": row.expires_at.isoformat(),
                "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
                "last_used_at": row.last_used_at.isoformat() if row.last_used_at else None,
            }
            for row in rows
        ]

    for row in _with_session(settings, work):
        if as_json:
            typer.echo(json.dumps(row))
        else:
            state = "revoked" if row["revoked_at"] else f"expires {row['expires_at']}"
            typer.echo(f"{row['id']}  {row['name']}  {state}  last used {row['last_used_at']}")


@token_app.command("revoke")
def token_revoke(
    tenant: TenantOption,
    token_id: Annotated[str, typer.Argument(help="The token's id (from `list`).")],
    config: ConfigOption = None,
) -> None:
    """Revoke a SCIM token: it stops working at once."""
    from obsigen.cli import _settings, _with_session
    from obsigen.identity.tenants import tenant_by_name
    from obsigen.scim.tokens import revoke_token

    settings = _settings(config)

    async def work(session: AsyncSession) -> str:
        row = await revoke_token(session, await tenant_by_name(session, tenant), token_id)
        return row.id

    typer.echo(f"SCIM token {_with_session(settings, work)} revoked")
