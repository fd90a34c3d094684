"""``make_slides``: the assistant builds a PowerPoint deck (PPTX) as an artifact."""

from __future__ import annotations

from typing import Any

from obsigen.artifacts.errors import RenderTimeout
from obsigen.artifacts.slides import MAX_BULLETS, SLIDES_MEDIA_TYPE, DeckSpec, make_slides
from obsigen.artifacts.store import ArtifactStore
from obsigen.inference.interfaces import ToolSpec
from obsigen.tools.artifact_tools import (
    artifact_name,
    describe_artifact,
    parse_arguments,
    save_artifact,
    tool_parameters,
)
from obsigen.tools.interfaces import Sensitivity, ToolContext, ToolInputError, ToolResult

NAME = "make_slides"


class MakeSlidesTool:
    # Lays out text the model already has; reads nothing, sends nothing anywhere.
    sensitivity: Sensitivity = "low"
    spec = ToolSpec(
        name=NAME,
        description=(
            "Create a PowerPoint deck (PPTX) the user can download: a title slide (title, "
            f"subtitle), then slides each with a title, up to {MAX_BULLETS} bullet points, "
            "optional speaker notes and an optional chart (same shape as make_chart's "
            "arguments). Text is plain: no HTML or Markdown."
        ),
        parameters=tool_parameters(DeckSpec),
    )

    def __init__(self, store: ArtifactStore) -> None:
        self._store = store

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        spec, filename = parse_arguments(DeckSpec, arguments)
        try:
            pptx = await make_slides(spec)
        except RenderTimeout as exc:
            raise ToolInputError(str(exc)) from exc
        row = await save_artifact(
            self._store,
            context,
            tool=NAME,
            kind="slides",
            name=artifact_name(filename or spec.title, "slides", "pptx"),
            content_type=SLIDES_MEDIA_TYPE,
            data=pptx,
        )
        return ToolResult(content=describe_artifact(row, "slide deck"), artifacts=(row.id,))
