"""``make_slides``: the assistant builds a PowerPoint deck (PPTX) as an artifact."""

from __future__ import annotations

from obsigen.artifacts.slides import MAX_BULLETS, SLIDES_MEDIA_TYPE, DeckSpec, make_slides
from obsigen.inference.interfaces import ToolSpec
from obsigen.tools.artifact_tools import RenderedArtifactTool, tool_parameters

NAME = "make_slides"


class MakeSlidesTool(RenderedArtifactTool[DeckSpec]):
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
    model = DeckSpec
    kind = "slides"
    extension = "pptx"
    media_type = SLIDES_MEDIA_TYPE
    described_as = "slide deck"

    async def render(self, spec: DeckSpec) -> bytes:
        return await make_slides(spec)
