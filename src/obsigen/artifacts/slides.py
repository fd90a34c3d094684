"""Slide decks (PPTX) from a validated outline, with python-pptx.

The outline comes from a model, so it is bounded (slides, bullets, characters, charts) and
its strings are plain text: python-pptx writes them as text runs, so ``<b>`` or ``**x**``
appear as typed, never as formatting. Characters XML cannot hold (C0 controls but tab and
newline) are dropped before python-pptx sees them, instead of failing the whole deck.
"""

from __future__ import annotations

import asyncio
import io
import re
from typing import Annotated

from pptx import Presentation
from pptx.presentation import Presentation as PresentationType
from pptx.slide import Slide
from pptx.util import Emu, Inches, Pt
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from obsigen.artifacts.charts import ChartSpec, make_chart
from obsigen.artifacts.errors import RenderTimeout

MAX_SLIDES = 30
MAX_BULLETS = 12
MAX_CHARTS = 8
MAX_TITLE_CHARS = 200
MAX_BULLET_CHARS = 500
MAX_NOTES_CHARS = 4000
BUILD_TIMEOUT_S = 20.0
SLIDES_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.presentationml.presentation"

_XML_UNSAFE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")

# Layouts of python-pptx's default template.
_TITLE_LAYOUT, _CONTENT_LAYOUT, _TITLE_ONLY_LAYOUT = 0, 1, 5


def _xml_safe(text: str) -> str:
    return _XML_UNSAFE.sub("", text)


_SAFE = AfterValidator(_xml_safe)


class SlideSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: Annotated[str, Field(min_length=1, max_length=MAX_TITLE_CHARS), _SAFE]
    bullets: list[Annotated[str, Field(max_length=MAX_BULLET_CHARS), _SAFE]] = Field(
        default_factory=list, max_length=MAX_BULLETS
    )
    notes: Annotated[str, Field(max_length=MAX_NOTES_CHARS), _SAFE] | None = None
    chart: ChartSpec | None = None


class DeckSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: Annotated[str, Field(min_length=1, max_length=MAX_TITLE_CHARS), _SAFE]
    subtitle: Annotated[str, Field(max_length=MAX_TITLE_CHARS), _SAFE] = ""
    slides: list[SlideSpec] = Field(min_length=1, max_length=MAX_SLIDES)

    @model_validator(mode="after")
    def _few_charts(self) -> DeckSpec:
        charts = sum(1 for slide in self.slides if slide.chart is not None)
        if charts > MAX_CHARTS:
            raise ValueError(f"a deck holds at most {MAX_CHARTS} charts, not {charts}")
        return self


def _title_slide(deck: PresentationType, spec: DeckSpec) -> None:
    slide = deck.slides.add_slide(deck.slide_layouts[_TITLE_LAYOUT])
    title, subtitle = slide.placeholders[0], slide.placeholders[1]
    title.text_frame.text = spec.title
    if spec.subtitle:
        subtitle.text_frame.text = spec.subtitle
    else:
        # An empty placeholder shows "Click to add subtitle" in an editor.
        subtitle.element.getparent().remove(subtitle.element)


def _bullets(slide: Slide, bullets: list[str], width: Emu) -> None:
    body = slide.placeholders[1]
    body.width = width
    frame = body.text_frame
    for i, bullet in enumerate(bullets):
        paragraph = frame.paragraphs[0] if i == 0 else frame.add_paragraph()
        paragraph.text = bullet
        if len(bullets) > 6:
            paragraph.font.size = Pt(18)


def _content_slide(deck: PresentationType, spec: SlideSpec, chart_png: bytes | None) -> None:
    # The template's own size (4:3): its layouts' placeholders are placed for it.
    slide_width, slide_height = int(deck.slide_width or 0), int(deck.slide_height or 0)
    layout = _CONTENT_LAYOUT if spec.bullets else _TITLE_ONLY_LAYOUT
    slide = deck.slides.add_slide(deck.slide_layouts[layout])
    assert slide.shapes.title is not None  # both layouts have one
    slide.shapes.title.text_frame.text = spec.title
    margin = Inches(0.5)
    top = Inches(1.6)
    if spec.bullets:
        # With a chart, the text takes the left part and the chart the right.
        text_width = Emu(int(slide_width * 0.42) if chart_png else slide_width - 2 * margin)
        _bullets(slide, spec.bullets, text_width)
    if chart_png is not None:
        left = Emu(int(slide_width * 0.46)) if spec.bullets else margin
        width = slide_width - left - margin
        picture = slide.shapes.add_picture(io.BytesIO(chart_png), left, top, width=width)
        room = slide_height - top - margin
        if picture.height > room:
            # Keep the aspect ratio while fitting the height.
            picture.width = Emu(int(picture.width * room / picture.height))
            picture.height = room
    if spec.notes:
        slide.notes_slide.notes_text_frame.text = spec.notes


def build_pptx(spec: DeckSpec, charts: dict[int, bytes]) -> bytes:
    """The deck as PPTX bytes (blocking); ``charts`` maps slide index to a rendered chart."""
    deck = Presentation()
    deck.core_properties.title = spec.title
    # python-pptx's template names its own author and dates; the deck should say neither.
    deck.core_properties.author = ""
    deck.core_properties.last_modified_by = ""
    _title_slide(deck, spec)
    for index, slide in enumerate(spec.slides):
        _content_slide(deck, slide, charts.get(index))
    buffer = io.BytesIO()
    deck.save(buffer)
    return buffer.getvalue()


async def make_slides(spec: DeckSpec, timeout_s: float = BUILD_TIMEOUT_S) -> bytes:
    """Render the deck's charts, then build the PPTX in a worker thread, within ``timeout_s``."""
    try:
        async with asyncio.timeout(timeout_s):
            charts = {
                index: await make_chart(slide.chart)
                for index, slide in enumerate(spec.slides)
                if slide.chart is not None
            }
            return await asyncio.to_thread(build_pptx, spec, charts)
    except TimeoutError:
        raise RenderTimeout(f"the slides took longer than {timeout_s:.0f} s to build") from None
