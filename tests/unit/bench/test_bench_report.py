"""The benchmark harness's own logic: summary and plots from result files, suite selection,
saturation throughput, and the soak's schedule and per-kind statistics."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest
from bench import latency, report, run, soak

RESULTS = Path(__file__).resolve().parents[3] / "bench" / "results"


def test_every_committed_result_renders_with_its_machine_and_plot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for path in RESULTS.glob("*.json"):
        shutil.copy(path, tmp_path / path.name)
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    monkeypatch.setattr(report, "SUMMARY", tmp_path / "SUMMARY.md")

    text = report.write_summary(replot=True)

    suites = [json.loads(p.read_text())["suite"] for p in RESULTS.glob("*.json")]
    assert suites
    for suite in suites:
        assert (tmp_path / f"{suite}.png").read_bytes().startswith(b"\x89PNG")
        assert f"![{suite}]({suite}.png)" in text
    # One machine line per section, right under its heading.
    assert text.count("\n## ") == len(suites)
    assert text.count("*Ran ") + text.count("*Machine not recorded") == len(suites)


def test_a_result_without_optional_keys_still_renders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    monkeypatch.setattr(report, "SUMMARY", tmp_path / "SUMMARY.md")
    for suite in report.RENDERERS:
        (tmp_path / f"{suite}.json").write_text(json.dumps({"suite": suite}))

    text = report.write_summary()

    assert text.count("*Machine not recorded") == len(report.RENDERERS)


def test_suites_are_chosen_by_name_and_unknown_ones_refused() -> None:
    assert run.parse_args(["--suite", "proxy_latency", "--quick"]).suite == ("proxy_latency",)
    assert run.parse_args(["--suite", "detector,ratelimit"]).suite == ("detector", "ratelimit")
    assert run.parse_args([]).suite == run.SUITES
    assert run.parse_args(["--suite", "all"]).suite == run.SUITES
    with pytest.raises(argparse.ArgumentTypeError):
        run._suite_list("proxy_latency,nope")


def test_max_rps_is_the_best_non_streamed_throughput() -> None:
    def res(rps: float) -> dict[str, object]:
        return {"ok": 10, "errors": {}, "throughput_rps": rps}

    results = {
        "plain_c1": {"obsigen": res(10.0)},
        "plain_c64": {"obsigen": res(30.0)},
        "stream_c64": {"obsigen": res(99.0)},
    }
    assert latency.max_rps(results)["obsigen"] == {
        "rps": 30.0,
        "scenario": "plain_c64",
        "errors": 0,
    }


def test_the_soak_schedule_keeps_the_rate_the_mix_and_alternates_processes() -> None:
    plan = soak.schedule(minutes=1, rate=4, seed=3)

    assert len(plan) == 240
    assert [offset for offset, _, _ in plan[:3]] == [0.0, 0.25, 0.5]
    assert [process for _, _, process in plan[:4]] == ["A", "B", "A", "B"]
    counts = {kind: sum(1 for _, k, _ in plan if k == kind) for kind in soak.MIX}
    block = sum(soak.MIX.values())
    for kind, weight in soak.MIX.items():
        # Whole shuffled blocks: each kind within one block's share of its weight.
        assert abs(counts[kind] - 240 * weight / block) <= weight


def test_soak_statistics_count_errors_per_kind() -> None:
    outcomes = [
        soak.Outcome(1.0, "chat", "A", True, "200", 10.0),
        soak.Outcome(2.0, "chat", "B", False, "http_500", 50.0),
        soak.Outcome(3.0, "code", "A", True, "200", 30.0),
    ]
    kinds = soak.per_kind(outcomes)

    assert kinds["chat"]["count"] == 2
    assert kinds["chat"]["error_rate"] == 0.5
    assert kinds["chat"]["errors_by_status"] == {"http_500": 1}
    assert kinds["chat"]["latency_ms"]["p50"] == 10.0  # failures are not timed
    assert kinds["upload"]["count"] == 0
    assert kinds["upload"]["error_rate"] is None
    timeline = soak.latency_timeline(outcomes, window_s=2.0)
    assert timeline["chat"] == [[2.0, 10.0], [4.0, None]]
