"""``POST /api/v1/code/run``: run Python in a fresh sandbox, under the tool policy, audited."""

from __future__ import annotations

import base64
import binascii
import time
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from obsigen.artifacts.outputs import SavedOutputs, save_outputs
from obsigen.artifacts.store import ArtifactOrigin, ArtifactStore
from obsigen.audit.events import AuditEvent, Outcome, actor_of, digest
from obsigen.authz.permissions import Permission
from obsigen.authz.principal import Principal
from obsigen.errors import Forbidden
from obsigen.sandbox.interfaces import (
    MAX_CODE_BYTES,
    MAX_INPUT_FILES,
    RunRequest,
    RunResult,
    SandboxBusy,
    SandboxFailed,
    SandboxInputError,
    SandboxUnavailable,
)
from obsigen.services import Services
from obsigen.web.auth import require, services_of
from obsigen.web.problems import problem

router = APIRouter(prefix="/api/v1/code", tags=["code"])

TOOL = "run_python"


class FileIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=128)
    content_base64: str = Field(max_length=48 * 1024 * 1024)


class CodeRunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    language: Literal["python"]
    code: str = Field(min_length=1, max_length=MAX_CODE_BYTES)
    # Copied in read-only under /input/<name>.
    files: list[FileIn] = Field(default_factory=list, max_length=MAX_INPUT_FILES)


class ArtifactOut(BaseModel):
    name: str  # relative to /output
    media_type: str
    size: int
    sha256: str
    content_base64: str
    # The stored artifact (GET /api/v1/artifacts/{id}); None when the upload rules refused
    # to keep the file, and then ``not_saved`` says why.
    id: str | None = None
    not_saved: str | None = None


class CodeRunOut(BaseModel):
    stdout: str
    stderr: str
    exit_code: int
    artifacts: list[ArtifactOut]
    duration_ms: int
    timed_out: bool
    killed_reason: str | None
    stdout_truncated: bool
    stderr_truncated: bool
    rejected_artifacts: list[str]
    backend: str


def _files(items: list[FileIn]) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for item in items:
        if item.name in files:
            raise SandboxInputError(f"file {item.name!r} is given twice")
        try:
            files[item.name] = base64.b64decode(item.content_base64, validate=True)
        except (binascii.Error, ValueError):
            raise SandboxInputError(f"file {item.name!r}: content_base64 is not base64") from None
    return files


def _out(result: RunResult, outputs: SavedOutputs) -> CodeRunOut:
    return CodeRunOut(
        stdout=result.stdout,
        stderr=result.stderr,
        exit_code=result.exit_code,
        artifacts=[
            ArtifactOut(
                name=out.file.name,
                media_type=out.file.media_type,
                size=out.file.size,
                sha256=out.file.sha256,
                content_base64=base64.b64encode(out.file.data).decode(),
                id=out.artifact.id if out.artifact else None,
                not_saved=None if out.artifact else out.refused,
            )
            for out in outputs.files
        ],
        duration_ms=result.duration_ms,
        timed_out=result.timed_out,
        killed_reason=result.killed_reason,
        stdout_truncated=result.stdout_truncated,
        stderr_truncated=result.stderr_truncated,
        rejected_artifacts=list(result.rejected_artifacts),
        backend=result.backend,
    )


async def _save_outputs(
    services: Services, request: Request, principal: Principal, result: RunResult
) -> SavedOutputs:
    """Keep what the run left in /output as the caller's artifacts (upload rules apply)."""
    origin = ArtifactOrigin(
        source="api:code.run", source_address=request.client.host if request.client else None
    )
    store = ArtifactStore(services.sessions, services.objects, services.audit)
    return await save_outputs(
        store,
        principal,
        result.artifacts,
        origin=origin,
        scratch_dir=services.settings.paths.data_dir / "tmp",
    )


async def _audit(
    services: Services,
    request: Request,
    principal: Principal,
    type_: str,
    outcome: Outcome,
    **data: object,
) -> None:
    source = request.client.host if request.client else None
    await services.audit.record(
        AuditEvent(
            type=type_,
            tenant_id=principal.tenant_id,
            actor=actor_of(principal),
            outcome=outcome,
            data={"tool": TOOL, "executed_by": "api", "source_address": source, **data},
        )
    )


@router.post("/run", response_model=CodeRunOut)
async def run_code(
    body: CodeRunIn,
    request: Request,
    principal: Principal = require(Permission.CODE_RUN),
) -> CodeRunOut | JSONResponse:
    services = services_of(request)
    if services.sandbox is None:
        raise SandboxUnavailable("no sandbox backend runs on this server; see `obsigen doctor`")
    files = _files(body.files)
    code_digest = digest(body.code)
    decision = await services.hooks.tool_policy.decide(
        principal, TOOL, {"code": body.code}, server_side=True
    )
    allowed = decision.decision == "allow"
    await _audit(
        services, request, principal, "policy.decision", "success" if allowed else "denied",
        decision=decision.decision, rule=decision.rule, reason=decision.reason,
        code_digest=code_digest,
    )  # fmt: skip
    if not allowed:
        # No approval queue for direct runs: "approval" refuses like "deny", and says so.
        raise Forbidden(f"the tool policy does not allow {TOOL} here ({decision.decision})")
    started = time.perf_counter()
    try:
        result = await services.sandbox.run(RunRequest(code=body.code, files=files))
    except (SandboxBusy, SandboxFailed, SandboxUnavailable, SandboxInputError) as exc:
        await _audit(
            services, request, principal, "tool.call", "failure",
            status=exc.type_slug, code_digest=code_digest,
            duration_ms=int((time.perf_counter() - started) * 1000),
        )  # fmt: skip
        if isinstance(exc, SandboxBusy):
            return problem(
                exc.status, exc.type_slug, exc.title, exc.detail,
                headers={"Retry-After": str(exc.retry_after_s)},
            )  # fmt: skip
        raise
    outputs = await _save_outputs(services, request, principal, result)
    clean = result.exit_code == 0 and result.killed_reason is None
    await _audit(
        services, request, principal, "tool.call", "success" if clean else "failure",
        status="ok" if clean else "error", code_digest=code_digest,
        files=sorted(files), exit_code=result.exit_code, killed_reason=result.killed_reason,
        duration_ms=result.duration_ms, backend=result.backend,
        artifacts=[
            {
                "name": out.file.name,
                "sha256": out.file.sha256,
                "size": out.file.size,
                "artifact_id": out.artifact.id if out.artifact else None,
            }
            for out in outputs.files
        ],
        stdout_digest=digest(result.stdout), stderr_digest=digest(result.stderr),
    )  # fmt: skip
    return _out(result, outputs)
