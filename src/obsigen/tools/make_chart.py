"""``make_chart``: the assistant draws a bar, line, pie or scatter chart as a PNG artifact."""

from __future__ import annotations

from typing import Any

from obsigen.artifacts.charts import CHART_MEDIA_TYPE, ChartSpec, make_chart
from obsigen.artifacts.errors import RenderTimeout
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

NAME = "make_chart"


class MakeChartTool:
    # Draws from numbers the model already has; reads nothing, sends nothing anywhere.
    sensitivity: Sensitivity = "low"
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

    def __init__(self, store: ArtifactStore) -> None:
        self._store = store

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        spec, filename = parse_arguments(ChartSpec, arguments)
        try:
            png = await make_chart(spec)
        except RenderTimeout as exc:
            raise ToolInputError(str(exc)) from exc
        row = await save_artifact(
            self._store,
            context,
            tool=NAME,
            kind="chart",
            name=artifact_name(filename or spec.title, "chart", "png"),
            content_type=CHART_MEDIA_TYPE,
            data=png,
        )
        return ToolResult(content=describe_artifact(row, "chart"), artifacts=(row.id,))
