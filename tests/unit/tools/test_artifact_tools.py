"""make_chart and make_slides: what the model sends is checked before anything is drawn."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest

from obsigen.artifacts.store import ArtifactStore
from obsigen.authz.permissions import Role
from obsigen.authz.principal import Principal
from obsigen.tools.artifact_tools import artifact_name, artifact_tools
from obsigen.tools.interfaces import ToolContext, ToolInputError, ToolResult
from obsigen.tools.make_chart import MakeChartTool
from obsigen.tools.make_slides import MakeSlidesTool

CONTEXT = ToolContext(Principal("t1", "user", "u1", frozenset({Role.MEMBER})), "c1", "i1")


class UnusedStore:
    """Refusals happen before saving: any save would be a test failure."""

    async def save(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("nothing should be saved")


STORE = cast(ArtifactStore, UnusedStore())


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({}, "kind: Field required"),
        ({"kind": "bar", "labels": ["a"], "series": [{"values": [1, 2]}]}, "2 values for 1"),
        ({"kind": "bar", "labels": ["a"], "series": [{"values": ["x"]}]}, r"series\.0\.values\.0"),
        ({"kind": "pie", "labels": ["a"], "series": [{"values": [-1]}]}, "non-negative"),
        ({"kind": "bar", "labels": ["a"], "series": [{"values": [1]}], "filename": 3}, "filename"),
    ],
)
async def test_make_chart_refuses_bad_arguments_with_a_message_for_the_model(
    arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(ToolInputError, match=message):
        await MakeChartTool(STORE).run(arguments, CONTEXT)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"title": "t"}, "slides: Field required"),
        ({"title": "t", "slides": [{"title": "s", "bullets": ["b"] * 13}]}, "at most 12"),
        ({"title": "t", "slides": [{"title": "s", "markup": "<b>"}]}, "Extra inputs"),
    ],
)
async def test_make_slides_refuses_bad_arguments_with_a_message_for_the_model(
    arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(ToolInputError, match=message):
        await MakeSlidesTool(STORE).run(arguments, CONTEXT)


def test_the_tools_are_low_sensitivity_and_describe_their_arguments() -> None:
    tools = artifact_tools(STORE)
    assert [tool.spec.name for tool in tools] == ["make_slides", "make_chart"]
    for tool in tools:
        assert tool.sensitivity == "low"
        assert "filename" in tool.spec.parameters["properties"]
        assert tool.spec.parameters["additionalProperties"] is False


@pytest.mark.parametrize(
    ("stem", "expected"),
    [
        ("Sales 2026", "Sales 2026.png"),
        ("Revenue/Costs", "Revenue-Costs.png"),
        ("../../etc/passwd", "-..-etc-passwd.png"),
        ("invoice\u202efdp.exe", "invoicefdp.exe.png"),
        ("", "chart.png"),
        ("  . ", "chart.png"),
        ("con", "_con.png"),
        ("x" * 300, "x" * 100 + ".png"),
    ],
)
def test_artifact_names_are_safe_and_keep_their_extension(stem: str, expected: str) -> None:
    assert artifact_name(stem, "chart", "png") == expected


def test_a_tool_result_carries_no_artifacts_by_default() -> None:
    assert ToolResult("text").artifacts == ()


def test_tool_parameters_are_self_contained() -> None:
    # The embedded model joins every tool's schema under one root: a "#/$defs/..." pointer
    # would resolve against that root and break the grammar (a 500 before this was inlined).
    from obsigen.artifacts.charts import ChartSpec
    from obsigen.artifacts.slides import DeckSpec
    from obsigen.tools.artifact_tools import tool_parameters

    for model in (ChartSpec, DeckSpec):
        text = json.dumps(tool_parameters(model))
        assert "$ref" not in text
        assert "$defs" not in text
