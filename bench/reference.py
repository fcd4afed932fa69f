"""
The plain CPython reference for C{bench/normalize.py}: the bench's inputs turned into the same
OCSF events written straight for exactly these inputs (no template, no checks, no fallbacks), so the
per-event figures of the normalizer can be read as a ratio to what the work costs in plain Python
on the same machine. Not a parser for anything but the bench's own lines: never used by the daemon.
"""
from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any, Callable

_EXTENSION = re.compile(r"(\w+)=(.*?)(?=\s\w+=|$)")
_SEVERITY = {"low": (2, "Low"), "medium": (3, "Medium"), "high": (4, "High"), "critical": (5, "Critical")}
_CEF_SEVERITY = {str(n): (2, "Low") if n < 4 else (3, "Medium") if n < 7 else (4, "High") if n < 9
                 else (5, "Critical") for n in range(11)}
#: act → action_id, action, disposition_id, disposition
_ACT = {"blocked": (2, "Denied", 2, "Blocked"), "allowed": (1, "Allowed", 1, "Allowed"),
        "alerted": (3, "Observed", 15, "Detected"), "dropped": (2, "Denied", 6, "Dropped")}
#: the bench's signature ids → how the cef-syslog template classes them
_AUTHENTICATION = {"class_uid": 3002, "class_name": "Authentication", "category_uid": 3,
                   "category_name": "Identity & Access Management", "activity_id": 1, "activity_name": "Logon",
                   "type_uid": 300201, "type_name": "Authentication: Logon"}
_NETWORK = {"class_uid": 4001, "class_name": "Network Activity", "category_uid": 4,
            "category_name": "Network Activity"}
_FINDING = {"class_uid": 2004, "class_name": "Detection Finding", "category_uid": 2, "category_name": "Findings",
            "activity_id": 1, "activity_name": "Create", "type_uid": 200401, "type_name": "Detection Finding: Create"}


def cef_frame(frame: bytes, now: float) -> dict[str, Any]:
    """
    An RFC 5424 frame holding one of the bench's CEF lines → its OCSF event.
    """
    text = frame.decode()
    _, timestamp, hostname, app_name, _, _, _, message = text.split(" ", 7)
    _, vendor, product, version, signature, name, severity, extension = message.split("|", 7)
    fields = dict(_EXTENSION.findall(extension))
    severity_id, severity_caption = _CEF_SEVERITY[severity]
    rt = fields.pop("rt")
    action_id, action, disposition_id, disposition = _ACT[fields["act"]]
    metadata = {"product": {"vendor_name": vendor, "name": product, "version": version},
                "log_name": "cef-syslog", "log_source": "bench", "event_code": signature, "original_time": rt,
                "reporter": {"hostname": hostname}, "log_format": "CEF", "profiles": ["security_control"]}
    src = {"ip": fields.pop("src"), "port": int(fields.pop("spt"))}
    dst = {"ip": fields.pop("dst"), "port": int(fields.pop("dpt"))}
    user = {"name": fields.pop("suser")}
    unmapped_cef = {"version": 0, "name": name, "severity": severity, "rt": rt, **fields}
    if signature == "200":
        event = {**_AUTHENTICATION, "metadata": metadata, "service": {"name": product},
                 "message": fields.pop("msg"), "action_id": action_id, "action": action,
                 "disposition_id": disposition_id, "disposition": disposition,
                 "src_endpoint": src, "dst_endpoint": dst, "user": user}
    elif signature == "400":
        metadata["profiles"].append("host")
        activity_id, activity = (5, "Refuse") if fields["act"] in ("blocked", "dropped") else (6, "Traffic")
        event = {**_NETWORK, "activity_id": activity_id, "activity_name": activity,
                 "type_uid": 400100 + activity_id, "type_name": f"Network Activity: {activity}",
                 "metadata": metadata, "message": fields.pop("msg"), "action_id": action_id, "action": action,
                 "disposition_id": disposition_id, "disposition": disposition, "src_endpoint": src,
                 "dst_endpoint": dst, "actor": {"user": user},
                 "connection_info": {"protocol_name": fields["proto"].lower(), "direction_id": 0,
                                     "direction": "Unknown"}}
    else:
        del unmapped_cef["name"]
        event = {**_FINDING, "metadata": metadata,
                 "finding_info": {"analytic": {"uid": signature, "name": name, "type_id": 1, "type": "Rule"},
                                  "title": name},
                 "message": fields.pop("msg"), "action_id": action_id, "action": action,
                 "disposition_id": disposition_id, "disposition": disposition,
                 "evidences": [{"src_endpoint": src, "dst_endpoint": dst, "actor": {"user": user}}]}
    unmapped_cef.pop("msg")
    event["severity_id"], event["severity"] = severity_id, severity_caption
    event["time"] = int(rt)
    uid = str(uuid.uuid4())
    if signature not in ("200", "400"):
        event["finding_info"]["uid"] = uid
        event.update(status_id=1, status="New", is_alert=True)
    metadata.update(version="1.8.0", uid=uid, tenant_uid="t", logged_time=int(now * 1000),
                    log_provider="aisoc-inboxd")
    event["unmapped"] = {"cef": unmapped_cef, "syslog": {"facility": 16, "severity": 6, "app_name": app_name,
                                                         "timestamp": timestamp, "format": "rfc5424"}}
    event["raw_data"] = text
    return event


def json_alert(text: str, now: float, loads: Callable[[str], Any] = json.loads) -> dict[str, Any]:
    """
    The bench's JSON alert → its 2004 Detection Finding (as the generic-json template maps it),
    decoded by C{loads} (the decoder of the row it is the floor of).
    """
    alert = loads(text)
    severity_id, severity = _SEVERITY[alert.pop("severity")]
    uid = str(uuid.uuid4())
    return {
        "class_uid": 2004, "class_name": "Detection Finding", "category_uid": 2, "category_name": "Findings",
        "activity_id": 1, "activity_name": "Create", "type_uid": 200401, "type_name": "Detection Finding: Create",
        "metadata": {"product": {"vendor_name": "Unknown", "name": "Generic JSON webhook"},
                     "log_name": "generic-json", "log_source": "bench", "log_format": "JSON",
                     "original_time": alert["timestamp"],
                     "version": "1.8.0", "uid": uid, "tenant_uid": "t", "logged_time": int(now * 1000),
                     "log_provider": "aisoc-inboxd"},
        "finding_info": {"uid": alert.pop("id"), "title": alert.pop("title"), "types": alert.pop("tags")},
        "message": alert.pop("message"), "severity_id": severity_id, "severity": severity,
        "time": _epoch_ms(alert["timestamp"]), "status_id": 1, "status": "New", "is_alert": True,
        "unmapped": {key: value for key, value in alert.items() if key != "timestamp"},
        "raw_data": text,
    }


def _epoch_ms(stamp: str) -> int:
    return int(datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp() * 1000)
