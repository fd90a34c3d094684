"""The S3 object store (moto_server) SIGKILLed in the middle of a multipart upload and of
downloads, then started again: uploads and downloads fail with 503
``object-store-unavailable``, no failed upload leaves a file behind, and every stored file
downloads intact from the same server once the store is back."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from obsigen.db.engine import make_engine
from tests.conftest import require_service
from tests.fakes.audit_receivers import S3_REGION, MotoS3Receiver, aws_test_env
from tests.fakes.key_services import moto_available
from tests.fakes.openai_upstream import FakeUpstream
from tests.faults.conftest import (
    Deployment,
    Outcome,
    Traffic,
    assert_clear_errors,
    base_config,
    deployed,
    statuses,
    until,
)

BUCKET = "obsigen-files"
PART_MB = 5
BIG = (PART_MB + 1) * 1024 * 1024  # two parts: one before the kill, one after
SMALL = 64 * 1024
# botocore's three attempts of at most timeout_s each, with its backoff, then slack.
STORE_TIMEOUT_S = 2
BOUND_S = 3 * STORE_TIMEOUT_S + 6 + 6
DOWN = {503: {"object-store-unavailable"}}
BOUNDARY = "obsigen-faults-boundary"


def png(size: int) -> bytes:
    """Random bytes behind a PNG header: accepted as an image, and nothing to index."""
    head = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR"
    return head + os.urandom(size - len(head))


def framing(name: str) -> tuple[bytes, bytes, str]:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    return head, f"\r\n--{BOUNDARY}--\r\n".encode(), f"multipart/form-data; boundary={BOUNDARY}"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def moto() -> Iterator[MotoS3Receiver]:
    require_service("moto (boto3, flask) for a local S3", moto_available())
    with aws_test_env():
        receiver = MotoS3Receiver(BUCKET)
        receiver.start()
        try:
            yield receiver
        finally:
            receiver.stop()


async def upload(
    client: httpx.AsyncClient, d: Deployment, n: int, data: bytes, hold: asyncio.Event | None
) -> Outcome:
    """POST the file; with ``hold``, the end of the body waits for it."""
    head, tail, content_type = framing(f"fault-{n}.png")

    async def body() -> AsyncIterator[bytes]:
        yield head
        for at in range(0, len(data), 1024 * 1024):
            yield data[at : at + 1024 * 1024]
        if hold is not None:
            # The first part is in the store by now; the last one goes at the end.
            await hold.wait()
        yield tail

    started = time.monotonic()
    outcome = Outcome("upload", n, sha(data), started, 0.0)
    try:
        response = await client.post(
            f"{d.server.base_url}/api/v1/files",
            content=body(),
            headers={**d.headers, "Content-Type": content_type},
        )
        outcome.status = response.status_code
        outcome.media_type = response.headers.get("content-type", "").split(";")[0]
        outcome.body = response.json()
    except httpx.TimeoutException as exc:
        outcome.error = f"hung: {type(exc).__name__}"
    except httpx.TransportError as exc:
        outcome.error = f"transport: {type(exc).__name__}: {exc}"
    outcome.elapsed = time.monotonic() - started
    return outcome


async def download(client: httpx.AsyncClient, d: Deployment, n: int, file_id: str) -> Outcome:
    started = time.monotonic()
    outcome = Outcome("download", n, file_id, started, 0.0)
    try:
        response = await client.get(
            f"{d.server.base_url}/api/v1/files/{file_id}/content", headers=d.headers
        )
        outcome.status = response.status_code
        outcome.media_type = response.headers.get("content-type", "").split(";")[0]
        if response.status_code == 200:
            outcome.body = {"sha256": sha(response.content)}
        else:
            outcome.body = response.json()
    except httpx.TimeoutException as exc:
        outcome.error = f"hung: {type(exc).__name__}"
    except httpx.TransportError as exc:
        outcome.error = f"transport: {type(exc).__name__}: {exc}"
    outcome.elapsed = time.monotonic() - started
    return outcome


async def multipart_uploads(moto: MotoS3Receiver) -> int:
    answer = await asyncio.to_thread(moto.client().list_multipart_uploads, Bucket=BUCKET)
    return len(answer.get("Uploads", []))


async def test_object_store_killed_during_uploads_and_downloads(
    tmp_path: Path, moto: MotoS3Receiver, upstream_server: tuple[FakeUpstream, str]
) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'obsigen.db'}"
    config = base_config(tmp_path / "var", database_url, upstream_server[1])
    config["storage"]["object_store"] = (
        f"s3://{BUCKET}?region={S3_REGION}&endpoint_url={moto.endpoint_url}"
        f"&part_size_mb={PART_MB}&timeout_s={STORE_TIMEOUT_S}"
    )
    gate = asyncio.Event()  # the lanes pause while the fake store restarts empty
    gate.set()
    traffic = Traffic(gate=gate)
    stored: dict[str, str] = {}  # file id -> sha256 of what was uploaded

    async with deployed(tmp_path, config) as d:
        async with httpx.AsyncClient(timeout=BOUND_S + 10) as client:
            for n, size in enumerate([SMALL, SMALL, SMALL, BIG]):
                data = png(size)
                before = await upload(client, d, n, data, None)
                assert before.status == 201, before.describe()
                stored[before.body["id"]] = sha(data)
        # What the store holds before the kill: a real store keeps it on disk, the fake in
        # memory only, so the test puts it back after the restart.
        snapshot = await asyncio.to_thread(moto.objects)
        ids = sorted(stored)

        async def next_download(client: httpx.AsyncClient, n: int) -> Outcome:
            return await download(client, d, n, ids[n % len(ids)])

        async def next_upload(client: httpx.AsyncClient, n: int) -> Outcome:
            return await upload(client, d, 1000 + n, png(SMALL), None)

        uploads = Traffic(outcomes=traffic.outcomes, stop=traffic.stop, gate=gate)
        hold = asyncio.Event()
        lanes = [asyncio.create_task(traffic.lanes(2, next_download, timeout_s=BOUND_S + 10))]
        try:
            async with httpx.AsyncClient(timeout=BOUND_S + 10) as client:
                big = asyncio.create_task(upload(client, d, 999, png(BIG), hold))
                # Kill once the first part is in the store: the upload is half written.
                deadline = time.monotonic() + 30
                while await multipart_uploads(moto) == 0:
                    assert time.monotonic() < deadline, "the multipart upload never started"
                    await asyncio.sleep(0.05)
                killed = time.monotonic()
                await asyncio.to_thread(moto.kill)
                hold.set()
                lanes.append(
                    asyncio.create_task(uploads.lanes(1, next_upload, timeout_s=BOUND_S + 10))
                )
                half_written = await big
            await until(
                lambda: (
                    any(o.status == 503 and o.kind == "upload" for o in uploads.outcomes)
                    and any(o.status == 503 and o.kind == "download" for o in traffic.outcomes)
                ),
                BOUND_S * 2,
                "no 503 for uploads and downloads while the store was gone",
            )
            gate.clear()
            # Requests under way finish against the dead store before it comes back.
            await until(lambda: traffic.in_flight + uploads.in_flight == 0, BOUND_S, "hung")
            await asyncio.to_thread(moto.start)
            client_s3 = moto.client()
            for key, body in snapshot.items():
                await asyncio.to_thread(client_s3.put_object, Bucket=BUCKET, Key=key, Body=body)
            restarted = time.monotonic()
            gate.set()
            await until(
                lambda: (
                    sum(o.status in (200, 201) for o in traffic.outcomes if o.started >= restarted)
                    >= 6
                ),
                60,
                "no uploads or downloads after the store came back",
            )
        finally:
            gate.set()
            hold.set()
            traffic.stop.set()
            await asyncio.gather(*lanes)

        d.server.assert_recovered_in_place()
        print(f"\nobject store fault: {statuses(traffic.outcomes)}")
        print(f"object store fault: slowest {max(o.elapsed for o in traffic.outcomes):.1f} s")
        assert_clear_errors([half_written], DOWN, bound_s=BOUND_S + 10)
        # A download under way when the store died can only be cut short: its 200 and
        # Content-Length were sent. The client sees the body end early, never a wrong one.
        cut = [
            o
            for o in traffic.outcomes
            if o.kind == "download"
            and o.started < killed < o.started + o.elapsed
            and (o.error or "").startswith("transport: RemoteProtocolError")
        ]
        rest = [o for o in traffic.outcomes if o not in cut]
        assert_clear_errors(rest, DOWN, bound_s=BOUND_S, ok_statuses=frozenset({200, 201}))
        bad = [o.describe() for o in rest if o.status == 200 and o.body["sha256"] != stored[o.sent]]
        assert not bad, bad

        created = {o.body["id"]: o.sent for o in traffic.outcomes if o.status == 201}
        assert created, "no upload succeeded after the store came back"
        assert not [o for o in traffic.between(killed, restarted) if o.status == 201]
        stored.update(created)
        async with httpx.AsyncClient(timeout=30) as client:
            listed = await client.get(
                f"{d.server.base_url}/api/v1/files", params={"limit": 200}, headers=d.headers
            )
            assert listed.status_code == 200, listed.text
            # Only uploads that were answered 201 are files; a failed one left nothing.
            assert {row["id"] for row in listed.json()} == set(stored)
            for n, file_id in enumerate(sorted(stored)):
                after = await download(client, d, n, file_id)
                assert after.status == 200, after.describe()
                assert after.body["sha256"] == stored[file_id], after.describe()
        engine = make_engine(database_url)
        try:
            async with engine.connect() as conn:
                rows = (await conn.execute(text("SELECT id, status FROM files"))).all()
        finally:
            await engine.dispose()
        assert {row.id for row in rows} == set(stored)
        assert {row.status for row in rows} == {"ready"}
    d.server.audit_verify()
