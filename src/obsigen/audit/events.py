"""Audit events: one structured, OCSF-aligned record per thing that happened.

The class/category numbers follow OCSF 1.x where a class fits (Authentication 3002,
Authorize Session 3003, API Activity 6003, Datastore Activity 6005, File Hosting Activity
6006); events specific to the assistant use the Application Activity category (6) with our
own ``type`` names, listed in docs/audit.md. Credentials in ``data`` are masked when the
event is made (audit/masking.py), so no sink, hash or signature ever sees them.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from obsigen.audit.masking import mask_data
from obsigen.authz.principal import Principal
from obsigen.db.base import utcnow

Outcome = Literal["success", "failure", "denied"]
Severity = Literal["informational", "low", "medium", "high", "critical"]

# OCSF severity_id.
SEVERITY_IDS: dict[Severity, int] = {
    "informational": 1,
    "low": 2,
    "medium": 3,
    "high": 4,
    "critical": 5,
}

# type -> (OCSF class_uid, category_uid, activity name)
EVENT_CLASSES: dict[str, tuple[int, int, str]] = {
    "chat.prompt": (6003, 6, "prompt"),
    "model.request": (6003, 6, "model_request"),
    "model.response": (6003, 6, "model_response"),
    "tool.call": (6003, 6, "tool_call"),
    "chat.response": (6003, 6, "response"),
    "chat.failed": (6003, 6, "failure"),
    "policy.decision": (6003, 6, "policy_decision"),
    "safeguard.verdict": (6003, 6, "safeguard_verdict"),
    "auth.login": (3002, 3, "logon"),
    "auth.logout": (3002, 3, "logoff"),
    "auth.mfa": (3002, 3, "mfa"),
    "auth.sso": (3002, 3, "sso_logon"),
    "authz.decision": (3003, 3, "authorize"),
    "admin.change": (6003, 6, "admin_change"),
    "key.operation": (6003, 6, "key_operation"),
    "file.upload": (6006, 6, "upload"),
    "file.download": (6006, 6, "download"),
    "file.delete": (6006, 6, "delete"),
    "artifact.create": (6006, 6, "create"),
    "retrieval.query": (6005, 6, "query"),
    "retention.purge": (6005, 6, "retention_purge"),
    "tenant.erase": (6005, 6, "tenant_erase"),
    "audit.export": (6003, 6, "audit_export"),
    "audit.verify": (6003, 6, "audit_verify"),
    "approval.requested": (6003, 6, "approval_requested"),
    "approval.decided": (6003, 6, "approval_decided"),
}


def digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


# Failures that point at an attack or at a broken control stand out in a SIEM.
_FAILURE_SEVERITY: dict[str, Severity] = {
    "auth.login": "medium",
    "auth.mfa": "medium",
    "auth.sso": "medium",
    "authz.decision": "medium",
    "safeguard.verdict": "medium",
    "audit.verify": "critical",
}
_NOTABLE_SUCCESS: frozenset[str] = frozenset(
    {
        "admin.change",
        "key.operation",
        "retention.purge",
        "tenant.erase",
        "audit.export",
        "file.delete",
    }
)


def default_severity(type_: str, outcome: Outcome) -> Severity:
    if outcome == "success":
        return "low" if type_ in _NOTABLE_SUCCESS else "informational"
    return _FAILURE_SEVERITY.get(type_, "low")


@dataclass(frozen=True, slots=True)
class AuditEvent:
    type: str
    tenant_id: str
    actor: dict[str, str]
    outcome: Outcome
    interaction_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    time: datetime = field(default_factory=utcnow)
    event_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    severity: Severity | None = None
    # Where the request came from, when there was one (OCSF src_endpoint.ip).
    source_address: str | None = None
    # What the action was done to, e.g. {"kind": "file", "id": "..."} (OCSF resources).
    target: dict[str, str] | None = None

    def __post_init__(self) -> None:
        if self.type not in EVENT_CLASSES:
            raise ValueError(f"unknown audit event type {self.type!r} (add it to EVENT_CLASSES)")
        if self.time.tzinfo is None:
            raise ValueError("audit event time must be timezone-aware")
        # Frozen: the masked copy replaces the caller's data before anyone can read it.
        object.__setattr__(self, "time", self.time.astimezone(UTC))
        object.__setattr__(self, "data", mask_data(self.data))

    @property
    def severity_name(self) -> Severity:
        return self.severity or default_severity(self.type, self.outcome)

    @property
    def source_ip(self) -> str | None:
        # The turn (and older callers) put the address in data; both count.
        if self.source_address:
            return self.source_address
        value = self.data.get("source_address")
        return value if isinstance(value, str) and value else None

    def to_json(self) -> dict[str, Any]:
        class_uid, category_uid, activity = EVENT_CLASSES[self.type]
        source_ip = self.source_ip
        return {
            "event_id": self.event_id,
            "time": self.time.isoformat(),
            "type": self.type,
            "class_uid": class_uid,
            "category_uid": category_uid,
            "activity_name": activity,
            "severity_id": SEVERITY_IDS[self.severity_name],
            "severity": self.severity_name,
            "tenant_id": self.tenant_id,
            "actor": self.actor,
            "src_endpoint": {"ip": source_ip} if source_ip else None,
            "target": self.target,
            "outcome": self.outcome,
            "interaction_id": self.interaction_id,
            "data": self.data,
        }


def actor_of(principal: Principal) -> dict[str, str]:
    return {"kind": principal.kind, "id": principal.id}
