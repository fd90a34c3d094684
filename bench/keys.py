"""Cost of key operations per provider: ``.venv/bin/python -m bench.keys [--quick]``.

Each provider on the same real backend as the conformance suite (files, a fresh SoftHSM2
token, moto KMS on 127.0.0.1). Operations run one after another on one event loop, as a
request handler would call them; reported is the median and p99 in microseconds, including
the provider's own work (state check, worker-thread hop, KMS HTTP round trip).
Writes ``bench/results/keys.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.fakes.key_services import moto_available, moto_server, softhsm_available, softhsm_token

from bench.report import machine_info, write_suite
from bench.timing import time_async
from obsigen.keys import KeyProvider, SigningAlg, make_key_provider

CONTEXT = {"tenant": "bench", "purpose": "file"}


async def _measure(provider: KeyProvider, rounds: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    message = b"eyJhbGciOiJFUzI1NiJ9." + b"x" * 200  # about a session token's signing input
    algs: tuple[SigningAlg, ...] = ("ES256", "RS256")
    for alg in algs:
        info = await provider.create_signing_key(alg)
        signature = await provider.sign(info.kid, message)
        n = rounds if alg == "ES256" else max(20, rounds // 4)
        results[f"sign {alg}"] = await time_async(
            lambda k=info.kid: provider.sign(k, message), n, warmup=20
        )
        results[f"verify {alg}"] = await time_async(
            lambda k=info.kid, s=signature: provider.verify(k, message, s), rounds, warmup=20
        )
    kek = await provider.create_kek()
    wrapped = await provider.wrap(kek.kid, bytes(32), CONTEXT)
    results["wrap"] = await time_async(
        lambda: provider.wrap(kek.kid, bytes(32), CONTEXT), rounds, warmup=20
    )
    results["unwrap"] = await time_async(
        lambda: provider.unwrap(kek.kid, wrapped, CONTEXT), rounds, warmup=20
    )
    return results


async def main_async(quick: bool) -> dict[str, Any]:
    rounds = 200 if quick else 1000
    out: dict[str, Any] = {
        "rounds": rounds,
        "providers": {},
    }
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        uris = {"software": "software"}
        if softhsm_available():
            uris["pkcs11"] = stack.enter_context(softhsm_token()).uri
        if moto_available():
            uris["awskms"] = stack.enter_context(moto_server()).uri
        for name, uri in uris.items():
            provider = make_key_provider(uri, Path(tmp) / name)
            try:
                # KMS round trips take milliseconds: fewer of them say as much.
                n = rounds // 4 if name == "awskms" else rounds
                out["providers"][name] = await _measure(provider, n)
            finally:
                await provider.aclose()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    machine = machine_info()
    result = asyncio.run(main_async(args.quick))
    write_suite("keys", machine, result)
    ops = ["sign ES256", "verify ES256", "sign RS256", "verify RS256", "wrap", "unwrap"]
    print("| provider | " + " | ".join(ops) + " |")
    print("|---|" + "---:|" * len(ops))
    for name, measured in result["providers"].items():
        cells = [f"{measured[op]['median_us']:.0f}" for op in ops]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("median µs per operation; p99 and counts in bench/results/keys.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
