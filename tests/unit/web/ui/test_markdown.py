"""Model output rendered as Markdown keeps formatting and loses everything that could run."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from obsigen.web.ui.markdown import render_markdown


def test_formatting_survives() -> None:
    html = render_markdown("# Plan\n\n**bold** `x` [docs](https://example.eu/a)\n\n- a\n- b")

    assert "<h1>Plan</h1>" in html
    assert "<strong>bold</strong>" in html
    assert "<code>x</code>" in html
    assert '<a href="https://example.eu/a" rel="noopener noreferrer nofollow">docs</a>' in html
    assert html.count("<li>") == 2


def test_tables_render() -> None:
    assert "<td>1</td>" in render_markdown("| a |\n|---|\n| 1 |")


@pytest.mark.parametrize(
    "attack",
    [
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(1)>",
        "[x](javascript:alert(1))",
        "[x](data:text/html;base64,PHNjcmlwdD4=)",
        "![beacon](https://tracker.example/p.png)",
        '<a href="https://e.eu" onclick="alert(1)">x</a>',
        "<iframe src=https://e.eu></iframe>",
        '<p style="position:fixed">x</p>',
    ],
)
def test_nothing_active_gets_through(attack: str) -> None:
    elements = Elements()
    elements.feed(render_markdown(attack))

    for tag, attributes in elements.found:
        assert tag not in {"script", "img", "iframe", "style"}, tag
        for name, value in attributes:
            assert not name.startswith("on"), name
            assert name != "style", name
            if name == "href":
                assert (value or "").startswith(("https://", "http://", "mailto:")), value


class Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, attrs))


def test_raw_html_is_shown_as_text() -> None:
    assert render_markdown("<b>hi</b>") == "<p>&lt;b&gt;hi&lt;/b&gt;</p>\n"
