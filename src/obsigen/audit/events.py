"""Audit events: one structured, OCSF-aligned record per thing that happened.

The class/category numbers follow OCSF 1.x where a class fits (Authentication 3002,
API Activity 6003); events specific to the assistant use the Application Activity
category (6) with our own ``type`` names, listed in docs/audit.md.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from obsigen.authz.principal import Principal
from obsigen.db.base import utcnow

Outcome = Literal["success", "failure", "denied"]

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
    "admin.change": (6003, 6, "admin_change"),
}


def digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


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

    def to_json(self) -> dict[str, Any]:
        class_uid, category_uid, activity = EVENT_CLASSES[self.type]
        return {
            "event_id": self.event_id,
            "time": self.time.isoformat(),
            "type": self.type,
            "class_uid": class_uid,
            "category_uid": category_uid,
            "activity_name": activity,
            "tenant_id": self.tenant_id,
            "actor": self.actor,
            "outcome": self.outcome,
            "interaction_id": self.interaction_id,
            "data": self.data,
        }


def actor_of(principal: Principal) -> dict[str, str]:
    return {"kind": principal.kind, "id": principal.id}
