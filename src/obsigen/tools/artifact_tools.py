"""What the artifact-making tools share: argument checking, naming, saving, the reply.

``artifact_tools`` is the factory the registry calls; every tool here needs the artifact
store (object store + database + audit), so they exist only where one is configured.
"""

from __future__ import annotations

import logging
import re
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from obsigen.artifacts.errors import RenderTimeout
from obsigen.artifacts.store import ArtifactKind, ArtifactOrigin, ArtifactStore
from obsigen.db.artifacts_models import StoredArtifact
from obsigen.files.names import sanitise_filename
from obsigen.inference.interfaces import ToolSpec
from obsigen.tools.interfaces import Sensitivity, Tool, ToolContext, ToolInputError, ToolResult

logger = logging.getLogger(__name__)

MAX_STEM_CHARS = 100
_SEPARATORS = re.compile(r"[/\\]+")
Spec = TypeVar("Spec", bound=BaseModel)

FILENAME_SCHEMA: dict[str, Any] = {
    "type": "string",
    "maxLength": MAX_STEM_CHARS,
    "description": "Optional file name without extension; the title is used when omitted.",
}


def parse_arguments(model: type[Spec], arguments: dict[str, Any]) -> tuple[Spec, str]:
    """The validated spec and the requested file name; ToolInputError says what is wrong."""
    arguments = dict(arguments)
    filename = arguments.pop("filename", "")
    if not isinstance(filename, str) or len(filename) > MAX_STEM_CHARS:
        raise ToolInputError(f"'filename' must be a string of at most {MAX_STEM_CHARS} characters")
    try:
        return model.model_validate(arguments), filename
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(part) for part in error['loc']) or 'arguments'}: {error['msg']}"
            for error in exc.errors(include_url=False)[:8]
        ]
        raise ToolInputError("invalid arguments: " + "; ".join(problems)) from None


def artifact_name(stem: str, fallback: str, extension: str) -> str:
    """A safe file name ending in ``.extension`` from a title or a requested name."""
    # A "/" in a title is punctuation, not a directory: keep both sides.
    cleaned = _SEPARATORS.sub("-", stem).strip()[:MAX_STEM_CHARS] or fallback
    name = sanitise_filename(f"{cleaned}.{extension}")
    return name if name.endswith(f".{extension}") else f"{fallback}.{extension}"


def tool_parameters(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with every ``$ref`` inlined: a tool's parameters are embedded in
    larger documents (the embedded model's grammar joins every tool's schema under one root,
    and OpenAI-compatible servers vary in ``$defs`` support), where a ``#/$defs/...`` pointer
    would resolve against the wrong root."""
    schema = model.model_json_schema()
    definitions: dict[str, Any] = schema.pop("$defs", {})
    inlined: dict[str, Any] = _inline_refs(schema, definitions, ())
    inlined["properties"]["filename"] = FILENAME_SCHEMA
    return inlined


def _inline_refs(node: Any, definitions: dict[str, Any], seen: tuple[str, ...]) -> Any:
    if isinstance(node, list):
        return [_inline_refs(item, definitions, seen) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        name = ref.removeprefix("#/$defs/")
        if name in seen:  # pragma: no cover - our tool models are not recursive
            raise ValueError(f"recursive schema {name!r} cannot be inlined")
        return _inline_refs(definitions[name], definitions, (*seen, name))
    return {key: _inline_refs(value, definitions, seen) for key, value in node.items()}


async def save_artifact(
    store: ArtifactStore,
    context: ToolContext,
    *,
    tool: str,
    kind: ArtifactKind,
    name: str,
    content_type: str,
    data: bytes,
) -> StoredArtifact:
    origin = ArtifactOrigin(
        conversation_id=context.conversation_id or None,
        interaction_id=context.interaction_id or None,
        source=f"tool:{tool}",
    )
    try:
        return await store.save(
            context.principal,
            kind=kind,
            name=name,
            content_type=content_type,
            data=data,
            origin=origin,
        )
    except Exception as exc:
        # The store's own error may name hosts or buckets: the model gets a plain sentence,
        # the log the cause.
        logger.exception("tool %s could not save its artifact", tool)
        raise ToolInputError("the file was made but could not be stored; try again later") from exc


def describe_artifact(row: StoredArtifact, what: str) -> str:
    return (
        f"Created {what} {row.name!r} ({row.content_type}, {row.size} bytes) as artifact "
        f"{row.id}. The user can download it at /api/v1/artifacts/{row.id}; refer to it by "
        "that name, do not paste its content."
    )


class RenderedArtifactTool(Generic[Spec]):
    """A tool that renders a validated spec into one file and saves it as the user's artifact.

    Subclasses declare the spec model, the renderer and how the file is named and described;
    the run (validate, render within its time limit, save, reply) is the same for all.
    """

    # Renders from what the model already has; reads nothing, sends nothing anywhere.
    sensitivity: Sensitivity = "low"
    spec: ClassVar[ToolSpec]
    model: ClassVar[type[BaseModel]]
    kind: ClassVar[ArtifactKind]
    extension: ClassVar[str]
    media_type: ClassVar[str]
    described_as: ClassVar[str]

    def __init__(self, store: ArtifactStore) -> None:
        self._store = store

    async def render(self, spec: Spec) -> bytes:
        raise NotImplementedError

    def title_of(self, spec: Spec) -> str:
        title: str = getattr(spec, "title", "")
        return title

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        spec, filename = parse_arguments(self.model, arguments)
        typed: Spec = spec  # type: ignore[assignment]
        try:
            data = await self.render(typed)
        except RenderTimeout as exc:
            raise ToolInputError(str(exc)) from exc
        row = await save_artifact(
            self._store,
            context,
            tool=self.spec.name,
            kind=self.kind,
            name=artifact_name(filename or self.title_of(typed), self.kind, self.extension),
            content_type=self.media_type,
            data=data,
        )
        return ToolResult(content=describe_artifact(row, self.described_as), artifacts=(row.id,))


def artifact_tools(store: ArtifactStore) -> list[Tool]:
    # Imported here: the tool modules import this one for the shared helpers.
    from obsigen.tools.make_chart import MakeChartTool
    from obsigen.tools.make_slides import MakeSlidesTool

    return [MakeSlidesTool(store), MakeChartTool(store)]
