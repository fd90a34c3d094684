"""Slides: a deck re-opens with python-pptx with its text intact, converts with LibreOffice,
and what a model might send that does not fit is refused or made harmless."""

from __future__ import annotations

import asyncio
import io
import shutil
from pathlib import Path
from typing import Any

import pytest
from pptx import Presentation
from pptx.enum.shapes import MSO_SHAPE_TYPE
from pydantic import ValidationError
from tests.conftest import require_service

from obsigen.artifacts.errors import RenderTimeout
from obsigen.artifacts.slides import MAX_BULLETS, MAX_CHARTS, MAX_SLIDES, DeckSpec, make_slides

CHART = {"kind": "bar", "labels": ["a", "b"], "series": [{"name": "n", "values": [1, 2]}]}


def deck(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": "Quarterly review",
        "subtitle": "Finance, Q3 2026",
        "slides": [
            {
                "title": "Highlights",
                "bullets": ["Revenue up 12%", "Costs flat", "Two new markets"],
                "notes": "Start with the good news.",
            },
            {"title": "Revenue", "bullets": ["Growth in DE and FR"], "chart": CHART},
            {"title": "Mix", "chart": {**CHART, "kind": "pie", "series": [{"values": [3, 1]}]}},
        ],
    }
    body.update(overrides)
    return body


async def build(body: dict[str, Any]) -> bytes:
    return await make_slides(DeckSpec.model_validate(body))


def texts(slide: Any) -> list[str]:
    return [shape.text_frame.text for shape in slide.shapes if shape.has_text_frame]


async def test_the_deck_reopens_with_its_titles_bullets_notes_and_charts() -> None:
    presentation = Presentation(io.BytesIO(await build(deck())))

    slides = list(presentation.slides)
    assert len(slides) == 4
    assert texts(slides[0]) == ["Quarterly review", "Finance, Q3 2026"]
    assert texts(slides[1]) == ["Highlights", "Revenue up 12%\nCosts flat\nTwo new markets"]
    assert slides[1].notes_slide.notes_text_frame.text == "Start with the good news."
    pictures = [
        [s for s in slide.shapes if s.shape_type == MSO_SHAPE_TYPE.PICTURE] for slide in slides
    ]
    assert [len(p) for p in pictures] == [0, 0, 1, 1]
    assert pictures[2][0].image.content_type == "image/png"
    assert presentation.core_properties.title == "Quarterly review"
    assert presentation.core_properties.author == ""


async def test_markup_is_kept_as_text_and_xml_breaking_characters_are_dropped() -> None:
    body = deck(
        title="<b>Bold</b> **claim**",
        slides=[{"title": "a\x00b\x1bc", "bullets": ["<script>alert(1)</script>", "&amp; x"]}],
    )

    slides = list(Presentation(io.BytesIO(await build(body))).slides)

    assert texts(slides[0])[0] == "<b>Bold</b> **claim**"
    assert texts(slides[1]) == ["abc", "<script>alert(1)</script>\n&amp; x"]


async def test_the_deck_converts_to_pdf_with_libreoffice(tmp_path: Path) -> None:
    soffice = shutil.which("libreoffice") or shutil.which("soffice")
    require_service("LibreOffice (Debian libreoffice-impress-nogui)", soffice is not None)
    assert soffice is not None
    source = tmp_path / "deck.pptx"
    source.write_bytes(await build(deck()))

    process = await asyncio.create_subprocess_exec(
        soffice,
        f"-env:UserInstallation=file://{tmp_path}/lo",
        "--headless",
        "--convert-to",
        "pdf",
        "--outdir",
        str(tmp_path),
        str(source),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    pdf = tmp_path / "deck.pdf"
    assert process.returncode == 0, stderr
    assert pdf.read_bytes().startswith(b"%PDF")
    assert pdf.stat().st_size > 10_000  # four pages with two charts, not an empty shell


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (deck(slides=[]), "at least 1"),
        (deck(slides=[{"title": "t"}] * (MAX_SLIDES + 1)), "at most 30"),
        (deck(slides=[{"title": "t", "bullets": ["b"] * (MAX_BULLETS + 1)}]), "at most 12"),
        (deck(slides=[{"title": "t", "bullets": ["b" * 501]}]), "at most 500"),
        (deck(slides=[{"title": ""}]), "at least 1 character"),
        (deck(slides=[{"title": "t", "chart": CHART}] * (MAX_CHARTS + 1)), "at most 8 charts"),
        (deck(slides=[{"title": "t", "chart": {**CHART, "kind": "radar"}}]), "kind"),
        (deck(slides=[{"title": "t", "html": "<p>x</p>"}]), "Extra inputs"),
        (deck(title=None), "valid string"),
        (deck(slides="one slide"), "valid list"),
    ],
)
def test_bad_outlines_are_refused_with_a_clear_message(body: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        DeckSpec.model_validate(body)


async def test_a_build_past_its_time_limit_is_refused() -> None:
    with pytest.raises(RenderTimeout, match="longer than"):
        await make_slides(DeckSpec.model_validate(deck()), timeout_s=0)
