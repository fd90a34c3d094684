"""``make bench``: run the benchmark suites, write bench/results/*.json, *.png and SUMMARY.md.

Run: ``.venv/bin/python -m bench [--suite NAME[,NAME...]|all] [--quick]``; ``--list`` names the
suites. The gateway suite alone, fast: ``.venv/bin/python -m bench --suite proxy_latency --quick``.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from bench import detector, latency, local_model, report, sandbox
from bench.procs import BenchError
from bench.targets import REPO

WORK = REPO / "bench" / ".work"  # server logs and data of the latest run, for post-mortems
MARIADB = "mysql+asyncmy://root@127.0.0.1:3306/"
MODULE_TIMEOUT_S = 900

# Suites run in this process (they start their own servers and stop them).
IN_PROCESS = (latency.SUITE, local_model.SUITE, sandbox.SUITE, detector.SUITE)
# Suites that are their own module (``python -m bench.<name>``): arguments for a full run and
# for --quick. Each writes its own JSON and plot.
MODULES: dict[str, tuple[list[str], list[str]]] = {
    "ratelimit": ([], ["--quick"]),
    "audit_chain": (["--mariadb", MARIADB], ["--mariadb", MARIADB, "--quick"]),
    "audit_turn": ([], ["--quick"]),
    "upload": ([], ["--mb", "50", "--rounds", "1"]),
    "keys": ([], ["--quick"]),
    "tokens": ([], ["--quick"]),
    "auth_step": ([], ["--quick"]),
    "ingest": ([], ["--quick"]),
    "tenant_keys": ([], ["--quick"]),
}
SUITES = (*IN_PROCESS, *MODULES)


def _suite_list(text: str) -> tuple[str, ...]:
    if text == "all":
        return SUITES
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in SUITES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown suite {', '.join(unknown) or '(none)'}; choose from {', '.join(SUITES)}"
        )
    return names


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--suite",
        type=_suite_list,
        default=SUITES,
        help=f"one suite, several separated by commas, or all (default): {', '.join(SUITES)}",
    )
    parser.add_argument("--list", action="store_true", help="print the suites and exit")
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


def run_in_process(suite: str, args: argparse.Namespace) -> None:
    machine = report.machine_info()  # per suite: the load average is the one it started under
    workdir = _fresh_workdir(suite)
    started = time.monotonic()
    print(f"== {suite} (logs in {workdir})", flush=True)
    if suite == latency.SUITE:
        body = latency.run_suite(workdir, args.quick, args.rounds, not args.no_litellm, args.budget)
    elif suite == sandbox.SUITE:
        body = sandbox.run_suite(workdir, args.quick)
    elif suite == detector.SUITE:
        body = detector.run_suite(workdir, args.quick)
    else:
        body = local_model.run_suite(workdir, args.quick, args.budget)
    body["duration_s"] = round(time.monotonic() - started, 1)
    body["quick"] = args.quick
    path = report.write_suite(suite, machine, body)
    print(f"wrote {path.relative_to(REPO)} in {body['duration_s']:.0f} s", flush=True)


def run_module(suite: str, quick: bool) -> None:
    """``python -m bench.<suite>`` in a child process; its output goes straight through."""
    full, quick_args = MODULES[suite]
    command = [sys.executable, "-m", f"bench.{suite}", *(quick_args if quick else full)]
    print(f"== {suite}: {' '.join(command[1:])}", flush=True)
    started = time.monotonic()
    try:
        done = subprocess.run(command, cwd=REPO, timeout=MODULE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"took more than {MODULE_TIMEOUT_S} s") from exc
    if done.returncode != 0:
        raise BenchError(f"exited with {done.returncode}")
    print(f"{suite} done in {time.monotonic() - started:.0f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        print("\n".join(SUITES))
        return 0
    signal.signal(signal.SIGTERM, _on_sigterm)
    failed = []
    for suite in args.suite:
        try:
            if suite in MODULES:
                run_module(suite, args.quick)
            else:
                run_in_process(suite, args)
        except BenchError as exc:
            print(f"{suite} failed: {exc}", file=sys.stderr, flush=True)
            failed.append(suite)
    print()
    print(report.write_summary())
    print(f"(also in {report.SUMMARY.relative_to(REPO)})")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
