"""Why an artifact could not be made; tools turn these into text for the model."""

from __future__ import annotations


class RenderTimeout(RuntimeError):
    """Drawing a chart or building a deck took too long; nothing was saved."""
