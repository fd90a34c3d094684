"""Making artifacts for the callers of a running platform, and reading its audit trail."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import Platform

from obsigen.artifacts.store import ArtifactStore
from obsigen.authz.principal import Principal
from obsigen.identity.apikeys import authenticate_api_key
from obsigen.tools.interfaces import ToolContext
from obsigen.tools.make_chart import MakeChartTool

CHART_ARGS: dict[str, Any] = {
    "kind": "bar",
    "title": "Revenue",
    "labels": ["Q1", "Q2"],
    "series": [{"name": "2026", "values": [1, 2]}],
}


def artifact_store(platform: Platform) -> ArtifactStore:
    services = platform.services
    return ArtifactStore(services.sessions, services.objects, services.audit)


async def principal_of(platform: Platform, key: str) -> Principal:
    async with platform.services.sessions() as session:
        principal = await authenticate_api_key(session, key)
    assert principal is not None
    return principal


async def chart_for(platform: Platform, key: str, title: str = "Revenue") -> str:
    """A chart artifact owned by ``key``'s principal, made by the tool; its id."""
    context = ToolContext(await principal_of(platform, key), "", "")
    result = await MakeChartTool(artifact_store(platform)).run(
        {**CHART_ARGS, "title": title}, context
    )
    (artifact_id,) = result.artifacts
    return artifact_id


def audit_events(platform: Platform) -> list[dict[str, Any]]:
    directory = platform.settings.paths.data_dir / "audit"
    return [
        json.loads(line)
        for path in sorted(directory.glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]
