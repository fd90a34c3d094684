"""``obsigen safeguards scan`` and ``obsigen safeguards eval``."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from obsigen.config import SafeguardsSettings, load_settings

if TYPE_CHECKING:
    from obsigen.safeguards.evaluation import Example
    from obsigen.safeguards.pipeline import DetectionPipeline

# The detector's modules (scikit-learn) load inside the commands: every other `obsigen`
# command would otherwise pay seconds of import time for them.

app = typer.Typer(no_args_is_help=True, help="Injection and jailbreak detection.")

ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="TOML config file (else $OBSIGEN_CONFIG).")
]


def _settings(config: Path | None) -> SafeguardsSettings:
    try:
        return load_settings(config).safeguards
    except (FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: configuration error: {exc}", err=True)
        raise typer.Exit(2) from exc


def _pipeline(settings: SafeguardsSettings) -> DetectionPipeline:
    from obsigen.safeguards.pipeline import DetectionPipeline, GuardPolicy, shipped_detector

    # Always judged as in block mode: a scan reports what the detector decides, whatever the
    # deployment does with it (warn and log-only would turn every verdict into "allow").
    policy = GuardPolicy("block", settings.threshold, settings.indirect_threshold)
    return DetectionPipeline(shipped_detector(), policy)


@app.command()
def scan(
    config: ConfigOption = None,
    source: Annotated[
        str, typer.Option(help="Where the text comes from: user, retrieval, file, tool:NAME.")
    ] = "user",
) -> None:
    """Read JSONL {"text": ...} on stdin; write {"text","verdict","score","categories"}.

    A line may carry its own "source". The verdict is what the configured thresholds decide
    in block mode; a line that is not a JSON object with a string "text" is reported on
    stderr, and the exit status is then 1.
    """
    pipeline = _pipeline(_settings(config))
    failed = 0
    for number, line in enumerate(sys.stdin, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            failed += 1
            typer.echo(f"error: line {number}: not JSON ({exc.msg})", err=True)
            continue
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            failed += 1
            typer.echo(f'error: line {number}: expected an object with a string "text"', err=True)
            continue
        row_source = row["source"] if isinstance(row.get("source"), str) else source
        text: str = row["text"]
        detection = pipeline.detector.detect(text, indirect=row_source != "user")
        result = pipeline.judge(detection, source=row_source)
        out = {
            "text": text,
            "verdict": result.verdict,
            "score": result.score,
            "categories": list(result.categories),
        }
        typer.echo(json.dumps(out, ensure_ascii=False))
    if failed:
        raise typer.Exit(1)


@app.command("eval")
def evaluate(
    data: Annotated[Path, typer.Option("--data", help="Labelled JSONL: text, label (1 attack).")],
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full report as JSON.")] = False,
    threshold: Annotated[float | None, typer.Option(help="Override the prompt threshold.")] = None,
    indirect_threshold: Annotated[
        float | None, typer.Option(help="Override the threshold for indirect text.")
    ] = None,
) -> None:
    """Precision, recall, false-positive rate and F1, per language and kind; latency p50/p99."""
    from obsigen.safeguards.evaluation import evaluation_report, load_examples, percentiles
    from obsigen.safeguards.pipeline import GuardPolicy, shipped_detector

    settings = _settings(config)
    if not data.is_file():
        typer.echo(f"error: no such file: {data}", err=True)
        raise typer.Exit(2)
    try:
        examples = load_examples(data)
    except (ValueError, json.JSONDecodeError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    policy = GuardPolicy(
        "block",
        settings.threshold if threshold is None else threshold,
        settings.indirect_threshold if indirect_threshold is None else indirect_threshold,
    )
    detector = shipped_detector()
    detector.detect("warm-up")
    predicted: list[bool] = []
    timings: list[float] = []
    for example in examples:
        started = time.perf_counter()
        detection = detector.detect(example.text, indirect=example.indirect)
        timings.append((time.perf_counter() - started) * 1000)
        source = "retrieval" if example.indirect else "user"
        predicted.append(detection.score >= policy.threshold_for(source))
    report = evaluation_report(examples, predicted)
    report["latency"] = percentiles(timings)
    report["thresholds"] = {"user": policy.threshold, "indirect": policy.indirect_threshold}
    trained_on = detector.model.metadata.get("data_sha256") if detector.model else None
    report["trained_on_this_file"] = trained_on == hashlib.sha256(data.read_bytes()).hexdigest()
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    _print_report(report, examples)


def _print_report(report: dict[str, Any], examples: list[Example]) -> None:
    if report["trained_on_this_file"]:
        typer.echo(
            "note: the shipped model was trained on this file, so these numbers are not "
            "held out; scripts/train_safeguards.py measures on held-out sources."
        )
    typer.echo(f"{len(examples)} rows, thresholds {report['thresholds']}")
    header = f"{'':34} {'n':>6} {'prec':>7} {'recall':>7} {'fpr':>7} {'f1':>7}"
    for section in ("overall", "per_kind", "per_language", "hard_negatives", "per_repo"):
        typer.echo(f"\n{section.replace('_', ' ')}")
        typer.echo(header)
        table = {"all": report["overall"]} if section == "overall" else report[section]
        for name, row in table.items():
            cells = [_cell(row[key]) for key in ("precision", "recall", "fpr", "f1")]
            typer.echo(f"{name[:34]:34} {row['n']:>6} " + " ".join(f"{c:>7}" for c in cells))
    latency = report["latency"]
    typer.echo(
        f"\nlatency per prompt: p50 {latency['p50_ms']} ms, p99 {latency['p99_ms']} ms, "
        f"mean {latency['mean_ms']} ms"
    )


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


__all__ = ["app"]
