"""Model output as safe HTML: Markdown rendered by markdown-it-py, then sanitised by nh3.

Model output is untrusted (a prompt, a file or a tool result can steer it), so the HTML is
reduced to an allow-list of formatting tags with no attributes that run code or load content:
no ``img`` (a remote image is a beacon), links only to http(s)/mailto and marked
``rel="noopener noreferrer nofollow"``. Raw HTML in the Markdown is not rendered at all.
"""

from __future__ import annotations

import nh3
from markdown_it import MarkdownIt

ALLOWED_TAGS = frozenset(
    {
        "p", "br", "hr", "strong", "em", "del", "code", "pre", "blockquote",
        "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6",
        "table", "thead", "tbody", "tr", "th", "td", "a",
    }
)  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}, "th": {"align"}, "td": {"align"}}
URL_SCHEMES = frozenset({"http", "https", "mailto"})

# "html": False escapes raw HTML in the source instead of passing it through.
_md = (
    MarkdownIt("commonmark", {"html": False, "linkify": False})
    .enable("table")
    .enable("strikethrough")
)


def render_markdown(text: str) -> str:
    return nh3.clean(
        _md.render(text),
        tags=set(ALLOWED_TAGS),
        attributes={tag: set(attrs) for tag, attrs in ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(URL_SCHEMES),
        link_rel="noopener noreferrer nofollow",
    )
