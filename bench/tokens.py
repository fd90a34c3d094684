"""Cost of access tokens: ``.venv/bin/python -m bench.tokens [--quick] [--rounds N]``.

``TokenService.issue`` and ``TokenService.verify`` for ES256 and RS256 over the software key
provider (the embedded default), one after another on one event loop as a request handler
calls them. Issue includes the provider's signature (a worker-thread hop); verify is local:
strict parsing, cached public key, signature, claims. Reported: median and p99 in
microseconds. Writes ``bench/results/tokens.json`` (``bench.report`` layout).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.report import machine_info, write_suite
from bench.timing import time_async
from obsigen.keys.interfaces import SigningAlg
from obsigen.keys.software import SoftwareKeyProvider
from obsigen.tokens.access import TokenService
from obsigen.tokens.keyring import KeyRing

ALGS: tuple[SigningAlg, ...] = ("ES256", "RS256")


async def _measure(directory: Path, alg: SigningAlg, rounds: int) -> dict[str, dict[str, float]]:
    provider = SoftwareKeyProvider(directory / alg)
    try:
        service = TokenService(
            KeyRing(provider, alg=alg),
            issuer="https://obsigen.bench",
            audience="obsigen-api",
            access_ttl_s=900,
            clock_skew_s=30,
        )
        now = int(time.time())

        async def issue() -> str:
            token, _ = await service.issue(
                subject="0f6c2b8e4b2a4c4f9a4e3f2d1c0b9a88",
                tenant_id="5d1e6c7b8a9f4e3d2c1b0a9f8e7d6c5b",
                session_id="b3b0c4f2a1e94d8c9f7e6d5c4b3a2910",
                amr=["pwd", "otp"],
                auth_time=now,
                session_expires_at=now + 8 * 3600,
            )
            return token

        token = await issue()
        return {
            f"issue {alg}": await time_async(issue, rounds),
            f"verify {alg}": await time_async(lambda: service.verify(token), rounds),
        }
    finally:
        await provider.aclose()


async def main_async(rounds: int) -> dict[str, Any]:
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for alg in ALGS:
            results.update(await _measure(Path(tmp), alg, rounds))
    return {"provider": "software", "rounds": rounds, "operations": results}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="200 rounds instead of 2000")
    parser.add_argument("--rounds", type=int, default=0)
    args = parser.parse_args()
    rounds = args.rounds or (200 if args.quick else 2000)
    machine = machine_info()
    body = asyncio.run(main_async(rounds))
    path = write_suite("tokens", machine, body)
    ops = [f"{op} {alg}" for alg in ALGS for op in ("issue", "verify")]
    print("| operation | median µs | p99 µs |")
    print("|---|---:|---:|")
    for op in ops:
        measured = body["operations"][op]
        print(f"| {op} | {measured['median_us']:.0f} | {measured['p99_us']:.0f} |")
    print(f"software key provider, {rounds} rounds each; written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
