"""``make_chart``: the assistant draws a bar, line, pie or scatter chart as a PNG artifact."""

from __future__ import annotations

from obsigen.artifacts.charts import CHART_MEDIA_TYPE, ChartSpec, make_chart
from obsigen.inference.interfaces import ToolSpec
from obsigen.tools.artifact_tools import RenderedArtifactTool, tool_parameters

NAME = "make_chart"


class MakeChartTool(RenderedArtifactTool[ChartSpec]):
    spec = ToolSpec(
        name=NAME,
        description=(
            "Draw a chart as a PNG image the user can download. kind is bar, line, pie or "
            "scatter; labels name the categories (bar, pie) or x positions (line), one per "
            "value; each series has a name and values (scatter: also x, one per value). "
            "A pie chart has exactly one series."
        ),
        parameters=tool_parameters(ChartSpec),
    )
    model = ChartSpec
    kind = "chart"
    extension = "png"
    media_type = CHART_MEDIA_TYPE
    described_as = "chart"

    async def render(self, spec: ChartSpec) -> bytes:
        return await make_chart(spec)
