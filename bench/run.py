"""``make bench``: run the benchmark suites, write bench/results/*.json and SUMMARY.md.

Run: ``.venv/bin/python -m bench [--suite proxy_latency|local_model|all] [--quick]``
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from bench import latency, local_model, report, sandbox
from bench.procs import BenchError
from bench.targets import REPO

WORK = REPO / "bench" / ".work"  # server logs and data of the latest run, for post-mortems
SUITES = (latency.SUITE, local_model.SUITE, sandbox.SUITE)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=[*SUITES, "all"], default="all")
    parser.add_argument("--quick", action="store_true", help="a tenth of the requests: smoke test")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds per scenario")
    parser.add_argument("--no-litellm", action="store_true", help="skip the LiteLLM comparison")
    parser.add_argument(
        "--budget", type=float, default=420.0, help="seconds each suite may take at most"
    )
    return parser.parse_args(argv)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Turn SIGTERM into an exception so that the suites' finally blocks stop their servers.
    raise SystemExit(128 + signum)


def _fresh_workdir(suite: str) -> Path:
    path = WORK / suite
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def run_one(suite: str, args: argparse.Namespace, machine: dict[str, Any]) -> None:
    workdir = _fresh_workdir(suite)
    started = time.monotonic()
    print(f"== {suite} (logs in {workdir})", flush=True)
    if suite == latency.SUITE:
        body = latency.run_suite(workdir, args.quick, args.rounds, not args.no_litellm, args.budget)
    elif suite == sandbox.SUITE:
        body = sandbox.run_suite(workdir, args.quick)
    else:
        body = local_model.run_suite(workdir, args.quick, args.budget)
    body["duration_s"] = round(time.monotonic() - started, 1)
    body["quick"] = args.quick
    path = report.write_suite(suite, machine, body)
    print(f"wrote {path.relative_to(REPO)} in {body['duration_s']:.0f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    machine = report.machine_info()
    suites = SUITES if args.suite == "all" else (args.suite,)
    failed = []
    for suite in suites:
        try:
            run_one(suite, args, machine)
        except BenchError as exc:
            print(f"{suite} failed: {exc}", file=sys.stderr, flush=True)
            failed.append(suite)
    print()
    print(report.write_summary())
    print(f"(also in {report.SUMMARY.relative_to(REPO)})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
