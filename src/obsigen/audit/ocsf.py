"""Our event records in OCSF 1.x shape, for SIEMs that ingest OCSF natively."""

from __future__ import annotations

from datetime import datetime
from typing import Any

OCSF_VERSION = "1.3.0"
_STATUS = {"success": (1, "Success"), "failure": (2, "Failure"), "denied": (2, "Failure")}
_OTHER_ACTIVITY = 99


def to_ocsf(record: dict[str, Any]) -> dict[str, Any]:
    class_uid = int(record["class_uid"])
    status_id, status = _STATUS.get(str(record.get("outcome")), (0, "Unknown"))
    actor = record.get("actor") or {}
    event: dict[str, Any] = {
        "class_uid": class_uid,
        "category_uid": record["category_uid"],
        # Our activities are named, not numbered: OCSF's "Other" with the name kept.
        "activity_id": _OTHER_ACTIVITY,
        "activity_name": record["activity_name"],
        "type_uid": class_uid * 100 + _OTHER_ACTIVITY,
        "time": int(datetime.fromisoformat(record["time"]).timestamp() * 1000),
        "severity_id": record.get("severity_id", 0),
        "severity": str(record.get("severity", "unknown")).capitalize(),
        "status_id": status_id,
        "status": status,
        "metadata": {
            "uid": record["event_id"],
            "version": OCSF_VERSION,
            "product": {"name": "Obsigen", "vendor_name": "Obsigen"},
            "log_name": record["type"],
            "sequence": record.get("seq"),
            "correlation_uid": record.get("interaction_id"),
            "tenant_uid": record["tenant_id"],
        },
        "actor": {"user": {"uid": actor.get("id"), "type": actor.get("kind")}},
        "unmapped": {"data": record.get("data", {})},
    }
    if record.get("outcome") == "denied":
        event["status_detail"] = "denied"
    if record.get("src_endpoint"):
        event["src_endpoint"] = record["src_endpoint"]
    if record.get("target"):
        event["resources"] = [record["target"]]
    return event
