"""Charts from a validated description: bar, line, pie or scatter, rendered to PNG.

The description comes from a model, so everything is bounded before matplotlib sees it
(series, points, label lengths, finite values) and text is only ever text: ``$`` is escaped
so that no title or label is read as mathtext, and usetex is never on.

matplotlib's pyplot keeps global state that is not safe across threads; here a bare
``Figure`` is drawn on its own Agg canvas in a worker thread. Renders are serialised by a
lock all the same (font cache and rcParams are process-wide), and each waits at most
``RENDER_TIMEOUT_S``.
"""

from __future__ import annotations

import asyncio
import io
import math
import threading
from typing import Annotated, Literal

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from pydantic import BaseModel, ConfigDict, Field, model_validator

from obsigen.artifacts.errors import RenderTimeout

MAX_SERIES = 8
MAX_POINTS = 500
MAX_PIE_SLICES = 24
MAX_LABEL_CHARS = 80
MAX_TITLE_CHARS = 200
# Far beyond any real measurement, well inside what Agg can place on an axis.
MAX_ABS_VALUE = 1e15
RENDER_TIMEOUT_S = 20.0
WIDTH_IN, HEIGHT_IN, DPI = 8.0, 4.5, 150  # 1200 x 675 px: sharp on a 16:9 slide
CHART_MEDIA_TYPE = "image/png"

Label = Annotated[str, Field(max_length=MAX_LABEL_CHARS)]
Value = Annotated[float, Field(allow_inf_nan=False, ge=-MAX_ABS_VALUE, le=MAX_ABS_VALUE)]

_RENDER_LOCK = threading.Lock()


class Series(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Label = ""
    values: list[Value] = Field(min_length=1, max_length=MAX_POINTS)
    # Scatter only: the x coordinate of each value.
    x: list[Value] | None = Field(default=None, max_length=MAX_POINTS)


class ChartSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["bar", "line", "pie", "scatter"]
    title: str = Field(default="", max_length=MAX_TITLE_CHARS)
    # One per value: categories of a bar or pie chart, x positions of a line chart.
    labels: list[Label] = Field(default_factory=list, max_length=MAX_POINTS)
    series: list[Series] = Field(min_length=1, max_length=MAX_SERIES)
    x_label: Label = ""
    y_label: Label = ""

    @model_validator(mode="after")
    def _consistent(self) -> ChartSpec:
        if self.kind == "scatter":
            for s in self.series:
                if s.x is None or len(s.x) != len(s.values):
                    raise ValueError("a scatter series needs 'x' with one number per value")
            return self
        if any(s.x is not None for s in self.series):
            raise ValueError("'x' is for scatter charts only; use 'labels'")
        if len(self.labels) == 0:
            raise ValueError(f"a {self.kind} chart needs 'labels'")
        for s in self.series:
            if len(s.values) != len(self.labels):
                raise ValueError(
                    f"series {s.name!r} has {len(s.values)} values for {len(self.labels)} labels"
                )
        if self.kind == "pie":
            if len(self.series) != 1:
                raise ValueError("a pie chart has exactly one series")
            if len(self.labels) > MAX_PIE_SLICES:
                raise ValueError(f"a pie chart has at most {MAX_PIE_SLICES} slices")
            values = self.series[0].values
            if any(v < 0 for v in values) or not sum(values) > 0:
                raise ValueError("pie values must be non-negative with a positive sum")
        return self


def plain(text: str) -> str:
    """``text`` as matplotlib must draw it: literally, never as mathtext."""
    return text.replace("$", r"\$")


def _draw(spec: ChartSpec, figure: Figure) -> None:
    axes = figure.add_subplot()
    if spec.title:
        axes.set_title(plain(spec.title))
    labels = [plain(label) for label in spec.labels]
    named = any(s.name for s in spec.series)
    if spec.kind == "pie":
        axes.pie(spec.series[0].values, labels=labels, autopct="%1.0f%%", startangle=90)
        axes.set_aspect("equal")
        return
    positions = list(range(len(labels)))
    if spec.kind == "bar":
        width = 0.8 / len(spec.series)
        for i, s in enumerate(spec.series):
            offset = (i - (len(spec.series) - 1) / 2) * width
            axes.bar([p + offset for p in positions], s.values, width, label=plain(s.name))
    elif spec.kind == "line":
        for s in spec.series:
            axes.plot(positions, s.values, marker="o", label=plain(s.name))
    else:
        for s in spec.series:
            assert s.x is not None  # checked by the model
            axes.scatter(s.x, s.values, s=12, label=plain(s.name))
    if spec.kind != "scatter":
        # More labels than fit are thinned out; the data keeps every point.
        step = max(1, math.ceil(len(labels) / 20))
        axes.set_xticks(positions[::step], labels[::step], rotation=30 if step > 1 else 0)
    if spec.x_label:
        axes.set_xlabel(plain(spec.x_label))
    if spec.y_label:
        axes.set_ylabel(plain(spec.y_label))
    axes.grid(alpha=0.3)
    if named:
        axes.legend()


def render_png(spec: ChartSpec) -> bytes:
    """The chart as PNG bytes (blocking; see :func:`make_chart`)."""
    with _RENDER_LOCK:
        figure = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI, layout="tight")
        # Agg explicitly: no pyplot, no backend switching, nothing global.
        FigureCanvasAgg(figure)
        _draw(spec, figure)
        buffer = io.BytesIO()
        # No "Software" text chunk: the file says nothing about the server.
        figure.savefig(buffer, format="png", metadata={"Software": None})
        return buffer.getvalue()


async def make_chart(spec: ChartSpec, timeout_s: float = RENDER_TIMEOUT_S) -> bytes:
    """Render ``spec`` in a worker thread; RenderTimeout when it takes too long."""
    try:
        async with asyncio.timeout(timeout_s):
            return await asyncio.to_thread(render_png, spec)
    except TimeoutError:
        # The thread finishes on its own (bounded input); its result is dropped.
        raise RenderTimeout(f"the chart took longer than {timeout_s:.0f} s to draw") from None
