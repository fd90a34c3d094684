"""Login, token refresh, logout, MFA step-up and enrolment, own sessions, session revocation.

A password alone gives a session whose tokens carry ``amr: ["pwd"]``: enough for a member's
work, never for an administrative permission. A user who enrolled TOTP must present it (or a
recovery code) at login; any user can step up an existing session with TOTP, a recovery code
or a WebAuthn authenticator and gets a new access token with the stronger ``amr``.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from obsigen.audit.events import AuditEvent, actor_of
from obsigen.authz.permissions import Permission
from obsigen.authz.principal import Principal
from obsigen.db.models import Tenant, User
from obsigen.errors import InvalidInput, MfaRequired, NotFound, TooManyAttempts, Unauthenticated
from obsigen.identity.login import LoginFailed, LoginThrottled
from obsigen.identity.recovery import issue_recovery_codes, redeem_recovery_code
from obsigen.identity.totp import begin_totp_enrolment, confirm_totp_enrolment, verify_totp
from obsigen.sessions.records import SessionRecord
from obsigen.sessions.wiring import AuthServices
from obsigen.web.auth import public, require, services_of

router = APIRouter()


class SecondFactorNeeded(Unauthenticated):
    type_slug = "second-factor-required"
    title = "Second factor required"


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant: str = Field(min_length=1, max_length=100)
    email: str = Field(min_length=1, max_length=254)
    password: str = Field(min_length=1, max_length=1024)
    totp: str | None = Field(default=None, max_length=16)
    recovery_code: str | None = Field(default=None, max_length=64)


class TokensOut(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - the OAuth 2.0 token type name
    expires_in: int
    refresh_token: str | None = None
    mfa: bool
    session_expires_at: int


class RefreshIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: str = Field(min_length=1, max_length=512)


class SecondFactorIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    totp: str | None = Field(default=None, max_length=16)
    recovery_code: str | None = Field(default=None, max_length=64)


class CodeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=16)


class EnrolmentOut(BaseModel):
    otpauth_uri: str


class WebAuthnRegisterIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    credential: dict[str, Any]
    name: str = Field(default="security key", min_length=1, max_length=100)


class WebAuthnAssertIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    credential: dict[str, Any]


class RecoveryCodesOut(BaseModel):
    codes: list[str]


class SessionOut(BaseModel):
    session_id: str
    amr: list[str]
    auth_time: int
    created_at: int
    expires_at: int
    current: bool


class MeOut(BaseModel):
    tenant_id: str
    kind: str
    id: str
    roles: list[str]
    permissions: list[str]
    mfa: bool
    amr: list[str]


class RevokedOut(BaseModel):
    revoked: int


def _client(request: Request) -> str | None:
    return request.client.host if request.client else None


async def _record(
    request: Request,
    type_: str,
    tenant_id: str,
    actor: dict[str, str],
    outcome: Literal["success", "failure", "denied"],
    **data: Any,
) -> None:
    await services_of(request).audit.record(
        AuditEvent(
            type=type_,
            tenant_id=tenant_id,
            actor=actor,
            outcome=outcome,
            source_address=_client(request),
            data=data,
        )
    )


async def issue_tokens(
    auth: AuthServices, record: SessionRecord, refresh_token: str | None
) -> TokensOut:
    token, claims = await auth.tokens.issue(
        subject=record.user_id,
        tenant_id=record.tenant_id,
        session_id=record.session_id,
        amr=record.amr,
        auth_time=record.auth_time,
        session_expires_at=record.expires_at,
    )
    return TokensOut(
        access_token=token,
        expires_in=max(0, claims.expires_at - claims.issued_at),
        refresh_token=refresh_token,
        mfa=claims.mfa,
        session_expires_at=record.expires_at,
    )


async def _second_factor(
    auth: AuthServices,
    session: AsyncSession,
    user: User,
    body: SecondFactorIn | LoginIn,
) -> str | None:
    """The amr method proved by ``body`` ("otp"), or None when it carries none.

    Wrong codes count towards a per-user limit: a stolen password must not buy unlimited
    guesses at a six-digit code.
    """
    if body.totp is None and body.recovery_code is None:
        return None
    key = f"mfa-fail:{user.id}"
    settings = auth.password_login
    failures = await auth.ephemeral.get(key)
    if failures is not None and int(failures) >= settings.max_failures:
        # The TTL is asked only for the refusal: the common path costs one round trip.
        retry = await auth.ephemeral.ttl(key) or 1.0
        raise TooManyAttempts("too many wrong codes: wait and retry", int(retry) + 1)
    ok = False
    if body.totp is not None and user.totp_secret:
        ok = await verify_totp(auth.ephemeral, user, body.totp)
    elif body.recovery_code is not None:
        ok = await redeem_recovery_code(session, user, body.recovery_code)
    if not ok:
        await auth.ephemeral.incr(key, settings.lockout_s)
        raise Unauthenticated("the code is wrong, expired or already used")
    await auth.ephemeral.delete(key)
    return "otp"


async def _user(session: AsyncSession, principal: Principal) -> User:
    if principal.kind != "user" or principal.session_id is None:
        raise InvalidInput("this needs a user session, not an API key")
    user = await session.scalar(
        select(User).where(User.id == principal.id, User.tenant_id == principal.tenant_id)
    )
    if user is None:
        raise Unauthenticated("the account no longer exists")
    return user


def _email_digest(email: str) -> str:
    # The audit names the attempted account without storing an address that may not exist.
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:16]


@router.post("/auth/login", dependencies=[public()])
async def login(body: LoginIn, request: Request) -> TokensOut:
    services = services_of(request)
    auth = services.auth
    anonymous = {"kind": "anonymous", "id": _email_digest(body.email)}
    failure: tuple[str, str, dict[str, str], Literal["failure", "denied"]] | None = None
    error: Exception | None = None
    # Audit records are written after the transaction ends: on SQLite the audit writer
    # needs the write lock this transaction holds.
    async with services.sessions.begin() as session:
        tenant_id = await session.scalar(select(Tenant.id).where(Tenant.name == body.tenant))
        try:
            user = await auth.password_login.verify(
                session, body.tenant, body.email, body.password, _client(request)
            )
            actor = {"kind": "user", "id": user.id}
            method = await _second_factor(auth, session, user, body)
        except (LoginFailed, LoginThrottled) as exc:
            if tenant_id is not None:
                outcome: Literal["failure", "denied"] = (
                    "denied" if isinstance(exc, LoginThrottled) else "failure"
                )
                failure = ("auth.login", tenant_id, anonymous, outcome)
            error = exc
        except (Unauthenticated, TooManyAttempts) as exc:
            failure = ("auth.mfa", user.tenant_id, actor, "failure")
            error = exc
    if failure is not None:
        await _record(request, *failure)
    if error is not None:
        raise error
    amr = ["pwd"] if method is None else ["pwd", method]
    if method is None and user.totp_secret:
        raise SecondFactorNeeded("this account needs its second factor: send totp")
    record, refresh_token = await auth.manager.start(
        tenant_id=user.tenant_id, user_id=user.id, amr=amr
    )
    await _record(
        request,
        "auth.login",
        user.tenant_id,
        actor,
        "success",
        session_id=record.session_id,
        amr=amr,
    )
    return await issue_tokens(auth, record, refresh_token)


@router.post("/auth/refresh", dependencies=[public()])
async def refresh(body: RefreshIn, request: Request) -> TokensOut:
    """Spends the refresh token and returns a new pair; a reused one ends the session."""
    auth = services_of(request).auth
    record, refresh_token = await auth.manager.refresh(body.refresh_token)
    return await issue_tokens(auth, record, refresh_token)


@router.post("/auth/logout", status_code=204)
async def logout(
    request: Request, principal: Principal = require(Permission.ACCOUNT_MANAGE)
) -> Response:
    auth = services_of(request).auth
    if principal.session_id is not None:
        await auth.manager.end(principal.session_id)
        await _record(
            request,
            "auth.logout",
            principal.tenant_id,
            actor_of(principal),
            "success",
            session_id=principal.session_id,
        )
    return Response(status_code=204)


@router.get("/auth/me")
async def me(principal: Principal = require(Permission.ACCOUNT_MANAGE)) -> MeOut:
    return MeOut(
        tenant_id=principal.tenant_id,
        kind=principal.kind,
        id=principal.id,
        roles=sorted(principal.roles),
        permissions=sorted(p.value for p in principal.permissions),
        mfa=principal.mfa,
        amr=list(principal.amr),
    )


@router.post("/auth/mfa/step-up")
async def step_up(
    body: SecondFactorIn,
    request: Request,
    principal: Principal = require(Permission.ACCOUNT_MANAGE),
) -> TokensOut:
    services = services_of(request)
    auth = services.auth
    failed: Exception | None = None
    async with services.sessions.begin() as session:
        user = await _user(session, principal)
        try:
            method = await _second_factor(auth, session, user, body)
        except (Unauthenticated, TooManyAttempts) as exc:
            failed = exc
    if failed is not None:
        await _record(request, "auth.mfa", principal.tenant_id, actor_of(principal), "failure")
        raise failed
    if method is None:
        raise InvalidInput("send totp or recovery_code")
    return await _stepped_up(request, auth, principal, method)


async def _stepped_up(
    request: Request, auth: AuthServices, principal: Principal, method: str
) -> TokensOut:
    assert principal.session_id is not None
    record = await auth.manager.add_factors(principal.session_id, [method])
    await _record(
        request,
        "auth.mfa",
        principal.tenant_id,
        actor_of(principal),
        "success",
        method=method,
        session_id=record.session_id,
    )
    return await issue_tokens(auth, record, None)


async def _factor_changed(request: Request, principal: Principal, change: str) -> None:
    await _record(
        request,
        "admin.change",
        principal.tenant_id,
        actor_of(principal),
        "success",
        target="mfa",
        change=change,
        user_id=principal.id,
    )


def _factor_change_allowed(user: User, principal: Principal, has_webauthn: bool) -> None:
    # Whoever holds only the password must not be able to replace the second factor.
    if (user.totp_secret or has_webauthn) and not principal.mfa:
        raise MfaRequired("changing a second factor needs a session that proved one: step up")


async def _has_webauthn(session: AsyncSession, user: User) -> bool:
    from obsigen.db.auth_models import WebAuthnCredential

    found = await session.scalar(
        select(WebAuthnCredential.id).where(WebAuthnCredential.user_id == user.id).limit(1)
    )
    return found is not None


@router.post("/auth/mfa/totp/enroll")
async def totp_enroll(
    request: Request, principal: Principal = require(Permission.ACCOUNT_MANAGE)
) -> EnrolmentOut:
    services = services_of(request)
    auth = services.auth
    async with services.sessions() as session:
        user = await _user(session, principal)
        _factor_change_allowed(user, principal, await _has_webauthn(session, user))
        tenant = await session.get(Tenant, user.tenant_id)
        issuer = f"Obsigen ({tenant.name})" if tenant is not None else "Obsigen"
        uri = await begin_totp_enrolment(auth.ephemeral, user, issuer)
    return EnrolmentOut(otpauth_uri=uri)


@router.post("/auth/mfa/totp/confirm")
async def totp_confirm(
    body: CodeIn, request: Request, principal: Principal = require(Permission.ACCOUNT_MANAGE)
) -> TokensOut:
    services = services_of(request)
    auth = services.auth
    async with services.sessions.begin() as session:
        user = await _user(session, principal)
        if not await confirm_totp_enrolment(auth.ephemeral, user, body.code):
            raise InvalidInput("the code does not match the pending enrolment")
    await _factor_changed(request, principal, "totp-enrolled")
    # The code just proved possession of the new factor.
    return await _stepped_up(request, auth, principal, "otp")


@router.post("/auth/mfa/recovery-codes")
async def recovery_codes(
    request: Request, principal: Principal = require(Permission.ACCOUNT_MANAGE)
) -> RecoveryCodesOut:
    if not principal.mfa:
        raise MfaRequired("new recovery codes need a session that proved a second factor")
    services = services_of(request)
    async with services.sessions.begin() as session:
        user = await _user(session, principal)
        codes = await issue_recovery_codes(session, user)
    await _factor_changed(request, principal, "recovery-codes-issued")
    return RecoveryCodesOut(codes=codes)


@router.post("/auth/mfa/webauthn/register/options")
async def webauthn_register_options(
    request: Request, principal: Principal = require(Permission.ACCOUNT_MANAGE)
) -> dict[str, Any]:
    services = services_of(request)
    auth = services.auth
    async with services.sessions() as session:
        user = await _user(session, principal)
        _factor_change_allowed(user, principal, await _has_webauthn(session, user))
        return await auth.webauthn.registration_options(session, user)


@router.post("/auth/mfa/webauthn/register")
async def webauthn_register(
    body: WebAuthnRegisterIn,
    request: Request,
    principal: Principal = require(Permission.ACCOUNT_MANAGE),
) -> TokensOut:
    services = services_of(request)
    auth = services.auth
    async with services.sessions.begin() as session:
        user = await _user(session, principal)
        _factor_change_allowed(user, principal, await _has_webauthn(session, user))
        await auth.webauthn.register(session, user, body.credential, body.name)
    await _factor_changed(request, principal, "webauthn-registered")
    return await _stepped_up(request, auth, principal, "hwk")


@router.post("/auth/mfa/webauthn/options")
async def webauthn_options(
    request: Request, principal: Principal = require(Permission.ACCOUNT_MANAGE)
) -> dict[str, Any]:
    services = services_of(request)
    auth = services.auth
    async with services.sessions() as session:
        user = await _user(session, principal)
        return await auth.webauthn.authentication_options(session, user)


@router.post("/auth/mfa/webauthn/verify")
async def webauthn_verify(
    body: WebAuthnAssertIn,
    request: Request,
    principal: Principal = require(Permission.ACCOUNT_MANAGE),
) -> TokensOut:
    services = services_of(request)
    auth = services.auth
    async with services.sessions.begin() as session:
        user = await _user(session, principal)
        ok = await auth.webauthn.authenticate(session, user, body.credential)
    if not ok:
        await _record(request, "auth.mfa", principal.tenant_id, actor_of(principal), "failure")
        raise Unauthenticated("the authenticator's answer was not accepted")
    return await _stepped_up(request, auth, principal, "hwk")


def _session_out(record: SessionRecord, current: str | None) -> SessionOut:
    return SessionOut(
        session_id=record.session_id,
        amr=list(record.amr),
        auth_time=record.auth_time,
        created_at=record.created_at,
        expires_at=record.expires_at,
        current=record.session_id == current,
    )


@router.get("/auth/sessions")
async def my_sessions(
    request: Request, principal: Principal = require(Permission.ACCOUNT_MANAGE)
) -> list[SessionOut]:
    auth = services_of(request).auth
    records = await auth.manager.sessions_of(principal.tenant_id, principal.id)
    return [_session_out(r, principal.session_id) for r in records]


@router.delete("/auth/sessions")
async def end_my_sessions(
    request: Request, principal: Principal = require(Permission.ACCOUNT_MANAGE)
) -> RevokedOut:
    auth = services_of(request).auth
    if principal.kind != "user":
        raise InvalidInput("this needs a user session, not an API key")
    count = await auth.manager.end_all(principal.tenant_id, principal.id)
    await _record(
        request,
        "auth.logout",
        principal.tenant_id,
        actor_of(principal),
        "success",
        scope="all-sessions",
        count=count,
    )
    return RevokedOut(revoked=count)


@router.delete("/api/v1/users/{user_id}/sessions")
async def revoke_user_sessions(
    user_id: str,
    request: Request,
    principal: Principal = require(Permission.SESSIONS_REVOKE),
) -> RevokedOut:
    services = services_of(request)
    auth = services.auth
    async with services.sessions() as session:
        found = await session.scalar(
            select(User.id).where(User.id == user_id, User.tenant_id == principal.tenant_id)
        )
    if found is None:
        raise NotFound("no such user")
    count = await auth.manager.end_all(principal.tenant_id, user_id)
    await _record(
        request,
        "admin.change",
        principal.tenant_id,
        actor_of(principal),
        "success",
        target="sessions",
        change="revoked-all",
        user_id=user_id,
        count=count,
    )
    return RevokedOut(revoked=count)
