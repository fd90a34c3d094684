"""Charts: every kind renders to a PNG Pillow can read; bad descriptions are refused."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image
from pydantic import ValidationError

from obsigen.artifacts.charts import (
    DPI,
    HEIGHT_IN,
    MAX_POINTS,
    MAX_SERIES,
    WIDTH_IN,
    ChartSpec,
    make_chart,
    plain,
    render_png,
)
from obsigen.artifacts.errors import RenderTimeout

SIZE = (int(WIDTH_IN * DPI), int(HEIGHT_IN * DPI))


def spec(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "bar",
        "title": "Revenue by quarter",
        "labels": ["Q1", "Q2", "Q3", "Q4"],
        "series": [{"name": "2025", "values": [1.5, 2, 2.5, 3]}],
        "x_label": "quarter",
        "y_label": "EUR m",
    }
    body.update(overrides)
    return body


def decoded(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


@pytest.mark.parametrize(
    "body",
    [
        spec(),
        spec(series=[{"name": "a", "values": [1, 2, 3, 4]}, {"name": "b", "values": [4, 3, 2, 1]}]),
        spec(kind="line"),
        spec(kind="pie", series=[{"values": [10, 20, 30, 40]}]),
        spec(
            kind="scatter", labels=[], series=[{"name": "s", "values": [1, 4, 9], "x": [1, 2, 3]}]
        ),
        spec(labels=[f"d{i}" for i in range(MAX_POINTS)], series=[{"values": [1] * MAX_POINTS}]),
    ],
    ids=["bar", "grouped-bar", "line", "pie", "scatter", "max-points"],
)
async def test_each_kind_renders_a_png_pillow_decodes(body: dict[str, Any]) -> None:
    png = await make_chart(ChartSpec.model_validate(body))

    image = decoded(png)
    assert image.format == "PNG"
    assert image.size == SIZE
    assert image.mode == "RGBA"
    # Not a blank canvas: the chart drew something.
    assert len(image.convert("L").getcolors(maxcolors=1_000_000) or []) > 10


def test_the_png_says_nothing_about_the_server() -> None:
    png = render_png(ChartSpec.model_validate(spec()))
    assert b"matplotlib" not in png.lower()
    assert "Software" not in decoded(png).info


def test_text_is_never_read_as_mathtext() -> None:
    # As mathtext this is a parse error (unknown command); as text it is just drawn.
    hostile = r"$\undefinedcommand{x}$ costs $5"
    body = spec(title=hostile, x_label=hostile, labels=[hostile, "b", "c", "d"])
    body["series"][0]["name"] = hostile

    image = decoded(render_png(ChartSpec.model_validate(body)))

    assert image.size == SIZE
    assert plain("a $b$") == r"a \$b\$"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (spec(kind="area"), "kind"),
        (spec(series=[{"values": [1, 2, 3]}]), "3 values for 4 labels"),
        (spec(labels=[]), "needs 'labels'"),
        (spec(series=[]), "at least 1"),
        (spec(series=[{"values": [1, 2, 3, 4]}] * (MAX_SERIES + 1)), "at most 8"),
        (spec(series=[{"values": [1, float("nan"), 3, 4]}]), "finite"),
        (spec(series=[{"values": [1, float("inf"), 3, 4]}]), "finite"),
        (spec(series=[{"values": [1, 1e300, 3, 4]}]), "less than or equal"),
        (spec(series=[{"values": ["1", "x", 3, 4]}]), "valid number"),
        (spec(kind="pie", series=[{"values": [1, -2, 3, 4]}]), "non-negative"),
        (spec(kind="pie", series=[{"values": [0, 0, 0, 0]}]), "positive sum"),
        (spec(kind="pie", series=[{"values": [1, 2, 3, 4]}] * 2), "exactly one series"),
        (spec(kind="scatter", labels=[], series=[{"values": [1, 2]}]), "needs 'x'"),
        (spec(series=[{"values": [1, 2, 3, 4], "x": [1, 2, 3, 4]}]), "scatter charts only"),
        (spec(labels=["x" * 81, "b", "c", "d"]), "at most 80"),
        (spec(title="t" * 201), "at most 200"),
        (spec(colour="red"), "Extra inputs"),
        (
            spec(labels=[str(i) for i in range(MAX_POINTS + 1)], series=[{"values": [1] * 501}]),
            "at most 500",
        ),
    ],
)
def test_bad_descriptions_are_refused_with_a_clear_message(
    body: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        ChartSpec.model_validate(body)


async def test_a_render_past_its_time_limit_is_refused() -> None:
    with pytest.raises(RenderTimeout, match="longer than"):
        await make_chart(ChartSpec.model_validate(spec()), timeout_s=0)
