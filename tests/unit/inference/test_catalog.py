"""The model catalog when the upstream is down: the last list it had, or a clear 502/504."""

from __future__ import annotations

import pytest

from obsigen.errors import UpstreamFailed, UpstreamTimeout
from obsigen.inference import catalog as catalog_module
from obsigen.inference.catalog import ModelCatalog
from obsigen.inference.errors import InferenceError, InferenceTimeout, InferenceUnavailable


class Upstream:
    name = "openai"
    region = "de"

    def __init__(self) -> None:
        self.models = ["m1"]
        self.error: InferenceError | None = None
        self.calls = 0

    async def list_models(self) -> list[str]:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return list(self.models)


def catalog(upstream: Upstream) -> ModelCatalog:
    return ModelCatalog(upstream)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (InferenceUnavailable("refused"), UpstreamFailed),
        (InferenceTimeout("slow"), UpstreamTimeout),
    ],
)
async def test_no_list_yet_and_the_upstream_down_is_a_clear_error(
    error: InferenceError, expected: type[Exception]
) -> None:
    upstream = Upstream()
    upstream.error = error
    with pytest.raises(expected):
        await catalog(upstream).has("m1")


async def test_the_last_list_is_served_while_the_upstream_is_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    upstream = Upstream()
    models = catalog(upstream)
    assert await models.has("m1")
    now = [1000.0]
    monkeypatch.setattr(catalog_module.time, "monotonic", lambda: now[0])
    models._fetched_at = now[0] - catalog_module.CACHE_S  # expired
    upstream.error = InferenceUnavailable("refused")
    assert await models.models() == ["m1"]
    # Not asked again at every request while it is down, but again after STALE_RETRY_S.
    calls = upstream.calls
    assert await models.models() == ["m1"]
    assert upstream.calls == calls
    now[0] += catalog_module.STALE_RETRY_S
    upstream.error, upstream.models = None, ["m2"]
    assert await models.models() == ["m2"]
