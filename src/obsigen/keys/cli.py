"""``obsigen keys list`` and ``obsigen keys rotate``: the configured providers' keys, by state."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

import typer

from obsigen.config import Settings, load_settings
from obsigen.errors import ObsigenError
from obsigen.keys.factory import make_key_provider
from obsigen.keys.interfaces import KeyInfo
from obsigen.keys.rotation import age, rotate

app = typer.Typer(no_args_is_help=True, help="Signing keys and key-encryption keys (KEKs).")

ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="TOML config file (else $OBSIGEN_CONFIG).")
]


def _settings(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except (FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: configuration error: {exc}", err=True)
        raise typer.Exit(2) from exc


def _row(kind: str, info: KeyInfo) -> dict[str, str | None]:
    return {
        "kind": kind,
        "kid": info.kid,
        "alg": info.alg,
        "state": info.state.value,
        "created_at": info.created_at.isoformat(),
        "age_days": str(age(info).days),
        "retire_after": info.retire_after.isoformat() if info.retire_after else None,
    }


async def _list(settings: Settings) -> list[dict[str, str | None]]:
    rows: list[dict[str, str | None]] = []
    for kind, uri in (("signing", settings.keys.signing), ("kek", settings.keys.kek)):
        provider = make_key_provider(uri, settings.paths.data_dir)
        try:
            use = "sig" if kind == "signing" else "enc"
            rows += [_row(kind, info) for info in await provider.list_keys() if info.use == use]
        finally:
            await provider.aclose()
    return rows


@app.command("list")
def list_keys(
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every signing key and KEK with its age and state (no key material, ever)."""
    try:
        rows = asyncio.run(_list(_settings(config)))
    except ObsigenError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(2) from exc
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("no keys yet: `obsigen keys rotate --kind signing` creates the first")
    for row in rows:
        retire = f", retires {row['retire_after']}" if row["retire_after"] else ""
        typer.echo(
            f"{row['kind']:<8} {row['kid']}  {row['alg']:<7} {row['state']:<12} "
            f"{row['age_days']} days{retire}"
        )


@app.command("rotate")
def rotate_key(
    kind: Annotated[Literal["signing", "kek"], typer.Option("--kind", help="signing or kek.")],
    overlap: Annotated[
        str | None,
        typer.Option(
            help="How long old signing keys still verify (default: the access-token lifetime "
            "plus the clock skew, the longest a token signed now stays valid)."
        ),
    ] = None,
    tenant: Annotated[str | None, typer.Option(help="Per-tenant KEK (not yet).")] = None,
    config: ConfigOption = None,
) -> None:
    """Add a new active key; the previous ones verify (or unwrap) only, then retire."""
    from obsigen.identity.apikeys import parse_duration

    if tenant is not None:
        typer.echo("error: per-tenant KEKs arrive with envelope encryption (issue #9)", err=True)
        raise typer.Exit(2)
    settings = _settings(config)

    longest_token = timedelta(seconds=settings.auth.access_ttl_s + settings.auth.clock_skew_s)
    try:
        keep = parse_duration(overlap) if overlap is not None else longest_token
    except ObsigenError as exc:
        typer.echo(f"error: --overlap: {exc.detail}", err=True)
        raise typer.Exit(2) from exc
    if kind == "signing" and keep < longest_token:
        typer.echo(
            f"error: --overlap {overlap} is shorter than an access token lives ({longest_token}):"
            " tokens already issued would stop verifying early",
            err=True,
        )
        raise typer.Exit(2)

    async def run() -> None:
        uri = settings.keys.signing if kind == "signing" else settings.keys.kek
        provider = make_key_provider(uri, settings.paths.data_dir)
        try:
            done = await rotate(provider, kind, overlap=keep, alg=settings.auth.signing_alg)
        finally:
            await provider.aclose()
        typer.echo(f"created {kind} key {done.created.kid} ({done.created.alg})")
        for info in done.demoted:
            typer.echo(f"  {info.kid} is now {info.state.value}, retires {info.retire_after}")
        if kind == "kek" and settings.keys.tenant_encryption:
            from sqlalchemy.exc import SQLAlchemyError

            from obsigen.errors import DatabaseUnavailable

            try:
                await _rewrap(settings)
            except (SQLAlchemyError, DatabaseUnavailable) as exc:
                # The new KEK stands; the old one still unwraps, so nothing is unreadable.
                typer.echo(
                    f"warning: tenant data keys not re-wrapped ({type(exc).__name__}): "
                    "run `obsigen keys rewrap` once the database is migrated and reachable",
                    err=True,
                )

    try:
        asyncio.run(run())
    except ObsigenError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(2) from exc


async def _rewrap(settings: Settings) -> None:
    from obsigen.tenantkeys.cli import run_rewrap

    done = await run_rewrap(settings)
    typer.echo(
        f"tenant data keys: {done.rewrapped} re-wrapped under {done.kek_id}, "
        f"{done.unchanged} already were (no data re-encrypted)"
    )
    for line in done.failed:
        typer.echo(f"error: not re-wrapped: {line}", err=True)
    if done.failed:
        raise typer.Exit(1)


@app.command("rewrap")
def rewrap(config: ConfigOption = None) -> None:
    """Re-wrap every tenant data key under the newest active KEK; data stays as it is."""
    settings = _settings(config)
    try:
        asyncio.run(_rewrap(settings))
    except ObsigenError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(2) from exc
