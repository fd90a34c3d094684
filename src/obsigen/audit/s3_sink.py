"""Audit events as JSON Lines objects in S3 (or an S3-compatible store), optionally WORM.

Each delivered batch becomes one object per (tenant, day):
``<prefix><tenant_id>/<YYYY-MM-DD>/<uuid>.jsonl``, one event per line as the other sinks
write it. The uuid is derived from the batch's event ids, so a batch sent again after a failure
overwrites (or, in a versioned bucket, re-versions) the same key instead of adding a copy.

With ``object_lock_days`` set, every object is written with an Object Lock retention
(``GOVERNANCE`` by default, or ``COMPLIANCE``) of that many days, so not even the bucket owner
can change or delete the copy before then. The bucket must have Object Lock enabled; a put
to one without it fails and stays spooled, with the store's error in the log.
"""

from __future__ import annotations

import json
import re
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import boto3  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from obsigen.audit.spool import DeliveryError, run_blocking
from obsigen.secretref import SecretRefError, resolve_secret

ObjectLockMode = Literal["GOVERNANCE", "COMPLIANCE"]
# Keys derived from a batch's event ids: a retried batch lands on the same key.
_KEY_NAMESPACE = uuid.UUID("4d1a3c52-8b0e-4f4e-9a57-6a0b7f3c2e19")
_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True, slots=True)
class S3Config:
    bucket: str
    prefix: str = ""
    region: str = ""
    endpoint_url: str = ""
    object_lock_days: int = 0
    object_lock_mode: ObjectLockMode = "GOVERNANCE"
    # Secret references (env:NAME, file:/path); empty: boto3's default credential chain.
    access_key_id: str = ""
    secret_access_key: str = ""
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if not self.bucket:
            raise ValueError("s3 audit sink: the URI names no bucket (s3://BUCKET?...)")
        if self.object_lock_days < 0:
            raise ValueError("s3 audit sink: object_lock_days must not be negative")
        if self.object_lock_mode not in ("GOVERNANCE", "COMPLIANCE"):
            raise ValueError("s3 audit sink: object_lock_mode must be GOVERNANCE or COMPLIANCE")
        if bool(self.access_key_id) != bool(self.secret_access_key):
            raise ValueError("s3 audit sink: access_key_id and secret_access_key go together")

    @property
    def target(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def _day(value: object) -> str:
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return "unknown-date"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).date().isoformat()


def object_key(prefix: str, tenant_id: str, day: str, event_ids: Sequence[str]) -> str:
    name = uuid.uuid5(_KEY_NAMESPACE, "\n".join(event_ids))
    tenant = _UNSAFE_KEY_CHARS.sub("_", tenant_id) or "_"
    return f"{prefix}{tenant}/{day}/{name}.jsonl"


def group_objects(
    prefix: str, records: Sequence[Mapping[str, Any]]
) -> dict[str, list[Mapping[str, Any]]]:
    """The objects one batch becomes: key -> events, one object per tenant and day."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for record in records:
        groups[(str(record.get("tenant_id", "")), _day(record.get("time")))].append(record)
    return {
        object_key(prefix, tenant, day, [str(r.get("event_id", "")) for r in events]): events
        for (tenant, day), events in groups.items()
    }


def jsonl(records: Sequence[Mapping[str, Any]]) -> bytes:
    return "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records).encode()


class S3Sender:
    def __init__(self, config: S3Config) -> None:
        self._config = config
        self._client: Any = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="audit-s3")

    @property
    def target(self) -> str:
        return self._config.target

    def _s3(self) -> Any:
        if self._client is None:
            credentials: dict[str, str] = {}
            if self._config.access_key_id:
                try:
                    credentials = {
                        "aws_access_key_id": resolve_secret(self._config.access_key_id),
                        "aws_secret_access_key": resolve_secret(self._config.secret_access_key),
                    }
                except (SecretRefError, ValueError) as exc:
                    raise DeliveryError(f"s3 audit sink credentials: {exc}") from None
            self._client = boto3.session.Session().client(
                "s3",
                region_name=self._config.region or None,
                endpoint_url=self._config.endpoint_url or None,
                config=Config(
                    # The spool retries, with its own backoff; one attempt per delivery here.
                    retries={"max_attempts": 1, "mode": "standard"},
                    connect_timeout=self._config.timeout_s,
                    read_timeout=self._config.timeout_s,
                ),
                **credentials,
            )
        return self._client

    async def send(self, records: Sequence[Mapping[str, Any]]) -> None:
        await run_blocking(self._executor, self._put_all, records)

    def _put_all(self, records: Sequence[Mapping[str, Any]]) -> None:
        client = self._s3()
        for key, events in group_objects(self._config.prefix, records).items():
            extra: dict[str, Any] = {}
            if self._config.object_lock_days:
                extra = {
                    "ObjectLockMode": self._config.object_lock_mode,
                    "ObjectLockRetainUntilDate": datetime.now(UTC)
                    + timedelta(days=self._config.object_lock_days),
                }
            try:
                client.put_object(
                    Bucket=self._config.bucket,
                    Key=key,
                    Body=jsonl(events),
                    ContentType="application/x-ndjson",
                    Metadata={"events": str(len(events))},
                    **extra,
                )
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "unknown")
                raise DeliveryError(f"s3 put {self.target}{key} refused: {code}") from None
            except BotoCoreError as exc:
                raise DeliveryError(f"s3 put to {self.target}: {exc}") from None

    async def aclose(self) -> None:
        self._executor.shutdown(wait=False)
