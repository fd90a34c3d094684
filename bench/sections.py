"""SUMMARY.md sections of the suites that run as their own module (``python -m bench.<suite>``).

Each function turns one suite's JSON into Markdown; a key that an older result file lacks shows
as a dash instead of failing, so the summary can always be rebuilt from whatever files exist.
"""

from __future__ import annotations

from typing import Any


def _num(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}".replace(",", " ")
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _us(stats: dict[str, Any] | None) -> str:
    if not stats:
        return "–"
    return f"{_num(stats.get('median_us'), 0)} / {_num(stats.get('p99_us'), 0)}"


def ratelimit_markdown(doc: dict[str, Any]) -> str:
    r = doc.get("results", {})
    exact = r.get("exactness", {})
    verdict = "exact" if exact.get("exact") else "**NOT exact**"
    return "\n".join(
        [
            "## Rate limiting: decisions per second and exactness",
            "",
            "| measurement | result |",
            "|---|---|",
            f"| one decision over 3 scopes, in memory, median / p99 µs | "
            f"{_us(r.get('memory_decide_3_scopes'))} |",
            f"| the same in Redis (one EVALSHA), median / p99 µs | "
            f"{_us(r.get('redis_decide_3_scopes'))} |",
            f"| decisions/s: memory; Redis 1 in flight; Redis 32 in flight | "
            f"{_num(r.get('memory_decisions_per_s'))}; "
            f"{_num(r.get('redis_decisions_per_s_1_in_flight'))}; "
            f"{_num(r.get('redis_decisions_per_s_32_in_flight'))} |",
            f"| token budget reserve + settle in Redis, median / p99 µs | "
            f"{_us(r.get('redis_budget_reserve_and_settle'))} |",
            f"| exactness: {_num(exact.get('processes'))} processes, "
            f"{_num(exact.get('attempts'))} attempts on a {_num(exact.get('limit'))}/hour limit | "
            f"{_num(exact.get('allowed'))} allowed: {verdict} "
            f"({_num(exact.get('seconds'), 2)} s) |",
            "",
            f"{_num(doc.get('rounds'))} rounds per timing; Redis on 127.0.0.1:6379.",
        ]
    )


def audit_chain_markdown(doc: dict[str, Any]) -> str:
    lines = [
        "## Audit chain throughput (chained, signed checkpoints every 100 events)",
        "",
        "| database | sequential events/s | append p50 / p99 ms | concurrent events/s "
        "| verify events/s |",
        "|---|---|---|---|---|",
    ]
    for backend, label in (("sqlite", "SQLite"), ("mariadb", "MariaDB")):
        res = doc.get(backend)
        if not res:
            continue
        lines.append(
            f"| {label} | {_num(res.get('sequential_events_per_s'))} | "
            f"{_num(res.get('append_latency_ms_p50'), 2)} / "
            f"{_num(res.get('append_latency_ms_p99'), 2)} | "
            f"{_num(res.get('concurrent_events_per_s'))} | {_num(res.get('verify_events_per_s'))} |"
        )
    params = doc.get("parameters", {})
    signing = doc.get("ed25519_software", {})
    lines += [
        "",
        f"Sequential: {_num(params.get('sequential'))} appends, one transaction each; "
        f"concurrent: {_num(params.get('concurrent'))} at once (group commit). Ed25519 "
        f"(software) sign {_num(signing.get('sign_ms'), 2)} ms, verify "
        f"{_num(signing.get('verify_ms'), 2)} ms per checkpoint.",
    ]
    return "\n".join(lines)


def audit_turn_markdown(doc: dict[str, Any]) -> str:
    lines = [
        "## What the audit trail adds to a chat turn (in-process, SQLite, fake upstream)",
        "",
        "| audit sinks | turn p50 ms | p99 ms | added p50 | added p99 |",
        "|---|---|---|---|---|",
    ]
    for name, s in doc.get("variants", {}).items():
        lines.append(
            f"| {name} | {_num(s.get('p50_ms'), 2)} | {_num(s.get('p99_ms'), 2)} | "
            f"{_num(s.get('added_p50_ms'), 2)} | {_num(s.get('added_p99_ms'), 2)} |"
        )
    lines += ["", f"{_num(doc.get('turns'))} turns per variant, interleaved one by one."]
    return "\n".join(lines)


def _upload_rows(label: str, scenarios: dict[str, Any]) -> list[str]:
    return [
        f"| {label} | {name} | {_num(s.get('bytes', 0) / 1048576)} | {s.get('status')} | "
        f"{_num(s.get('mb_per_s'))} | {_num(s.get('peak_rss_mib'))} | "
        f"{_num(s.get('peak_rss_growth_mib'))} |"
        for name, s in scenarios.items()
    ]


def upload_markdown(doc: dict[str, Any]) -> str:
    indexing = doc.get("with_in_process_indexing", {})
    lines = [
        "## Streaming uploads: server memory (`obsigen serve`, one process)",
        "",
        "| server | upload | size MB | HTTP | MB/s | peak RSS MiB | growth MiB |",
        "|---|---|---|---|---|---|---|",
        *_upload_rows("upload only" if indexing else "embedded", doc.get("scenarios", {})),
        *_upload_rows("+ indexing in-process", indexing.get("scenarios", {})),
    ]
    scenarios: list[dict[str, Any]] = list(doc.get("scenarios", {}).values())
    method = scenarios[0].get("rss_method", "") if scenarios else ""
    lines += [
        "",
        f"Peak RSS large/small {_num(doc.get('large_over_small_peak_rss'), 3)}, over-limit/small "
        f"{_num(doc.get('over_limit_over_small_peak_rss'), 3)} (1.0: memory stays flat whatever "
        f"the size); limit {_num(doc.get('limit_mb'))} MB; RSS read as {method}, growth over "
        "the RSS when the upload started.",
    ]
    if indexing:
        lines.append(
            "*upload only*: indexing queued to Redis with no worker running, so the server "
            "streams and stores and nothing else. *+ indexing in-process*: the embedded default "
            "(no Redis), where the same process indexes each upload right after answering, "
            "inside the measured window: peak RSS large/small "
            f"{_num(indexing.get('large_over_small_peak_rss'), 3)}."
        )
    return "\n".join(lines)


KEY_OPS = ("sign ES256", "verify ES256", "sign RS256", "verify RS256", "wrap", "unwrap")
PROVIDER_LABELS = {"software": "software", "pkcs11": "SoftHSM2 (PKCS#11)", "awskms": "KMS (moto)"}


def keys_markdown(doc: dict[str, Any]) -> str:
    lines = [
        "## Key operations by provider (median / p99 µs)",
        "",
        "| provider | " + " | ".join(KEY_OPS) + " |",
        "|---|" + "---|" * len(KEY_OPS),
    ]
    for name, measured in doc.get("providers", {}).items():
        cells = [_us(measured.get(op)) for op in KEY_OPS]
        lines.append(f"| {PROVIDER_LABELS.get(name, name)} | " + " | ".join(cells) + " |")
    lines += ["", f"{_num(doc.get('rounds'))} rounds (a quarter for KMS and RS256 signing)."]
    return "\n".join(lines)


def _operations_markdown(title: str, doc: dict[str, Any], note: str) -> str:
    lines = [title, "", "| operation | median µs | p99 µs |", "|---|---|---|"]
    for name, s in doc.get("operations", {}).items():
        lines.append(f"| {name} | {_num(s.get('median_us'), 0)} | {_num(s.get('p99_us'), 0)} |")
    return "\n".join([*lines, "", note])


def tokens_markdown(doc: dict[str, Any]) -> str:
    return _operations_markdown(
        "## Access tokens (JWT)",
        doc,
        f"{doc.get('provider', 'software')} key provider, {_num(doc.get('rounds'))} rounds each.",
    )


def auth_step_markdown(doc: dict[str, Any]) -> str:
    return _operations_markdown(
        "## The auth step of a request (token or API key, live-session check, roles)",
        doc,
        f"{_num(doc.get('rounds'))} rounds each; Redis and MariaDB on 127.0.0.1.",
    )


def ingest_markdown(doc: dict[str, Any]) -> str:
    params, ingest = doc.get("parameters", {}), doc.get("ingest", {})
    embed, search = doc.get("embed", {}), doc.get("search", {})
    return "\n".join(
        [
            "## Retrieval: ingestion and search",
            "",
            "| measurement | result |",
            "|---|---|",
            f"| ingest {_num(params.get('files'))} files ({_num(params.get('chunks'))} chunks) | "
            f"{_num(ingest.get('seconds'), 2)} s: {_num(ingest.get('chunks_per_s'))} chunks/s, "
            f"{_num(ingest.get('files_per_s'))} files/s |",
            f"| embeddings alone | {_num(embed.get('chunks_per_s'))} chunks/s |",
            f"| search over {_num(search.get('candidate_chunks'))} chunks, median / p99 µs | "
            f"{_us(search)} |",
        ]
    )


def tenant_keys_markdown(doc: dict[str, Any]) -> str:
    lines = [
        "## Tenant encryption keys: objects and messages",
        "",
        "| operation | median | best / p99 |",
        "|---|---|---|",
    ]
    for name, s in doc.get("results", {}).items():
        if "median_mb_s" in s:
            lines.append(
                f"| {name} | {_num(s['median_mb_s'])} MB/s | {_num(s.get('best_mb_s'))} MB/s |"
            )
        else:
            lines.append(
                f"| {name} | {_num(s.get('median_us'))} µs | p99 {_num(s.get('p99_us'))} µs |"
            )
    lines += ["", f"Objects of {_num(doc.get('object_bytes', 0) / 1048576, 0)} MiB."]
    return "\n".join(lines)


def soak_markdown(doc: dict[str, Any]) -> str:
    params = doc.get("parameters", {})
    schedule = doc.get("schedule", {})
    lines = [
        "## Soak: two `obsigen serve` processes on shared MariaDB and Redis",
        "",
        f"{_num(params.get('minutes'))} minutes at {_num(params.get('rate_per_s'))} requests/s "
        f"(open loop, spread over both processes); {_num(schedule.get('sent'))} of "
        f"{_num(schedule.get('planned'))} planned requests sent, {_num(schedule.get('late'))} "
        f"started more than 1 s late, at most {_num(schedule.get('max_in_flight'))} in flight.",
        "",
        "| kind | count | errors | error rate | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for kind, s in doc.get("kinds", {}).items():
        stats = s.get("latency_ms", {})
        rate = s.get("error_rate")
        lines.append(
            f"| {kind} | {_num(s.get('count'))} | {_num(s.get('errors'))} | "
            f"{'–' if rate is None else f'{100 * rate:.2f} %'} | "
            f"{_num(stats.get('p50'))} | {_num(stats.get('p99'))} |"
        )
    lines += [
        "",
        "| process | requests | RSS at start MiB | RSS at end MiB | growth MiB | peak RSS MiB |",
        "|---|---|---|---|---|---|",
    ]
    for name, p in doc.get("processes", {}).items():
        lines.append(
            f"| {name} | {_num(p.get('requests'))} | {_num(p.get('rss_start_mib'))} | "
            f"{_num(p.get('rss_end_mib'))} | {_num(p.get('rss_growth_mib'))} | "
            f"{_num(p.get('peak_rss_mib'))} |"
        )
    verify = doc.get("audit_verify", {})
    verdict = "passed" if verify.get("intact") else "**FAILED**"
    loads = doc.get("load_average", {})
    lines += [
        "",
        f"Audit verify at the end: {verdict} (`obsigen audit verify`, exit "
        f"{verify.get('exit_code')}): {verify.get('summary', '')}",
        "",
        f"Mix (weights): {', '.join(f'{k} {v}' for k, v in params.get('mix', {}).items())}. "
        f"{params.get('setup', '')} The machine is shared: load average "
        f"{_num(loads.get('start'), 2)} at the start, {_num(loads.get('end'), 2)} at the end, "
        f"highest 1-minute value seen {_num(loads.get('max_1min'), 2)}; latencies include "
        "waiting for the CPU behind other work.",
    ]
    return "\n".join(lines)
