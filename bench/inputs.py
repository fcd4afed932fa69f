"""
The bench's input files, written once per run: request bodies for wrk and pre-framed syslog streams.

Every intake gets the same kind of event (a firewall/IDS alert with addresses, ports, users and a
message, 300-400 bytes), so rows differ by intake and sink, not by payload. The content is seeded,
so two runs send the same bytes.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

#: events per HTTP batch (NDJSON, HEC, CEF over HTTPS)
BATCH = 100
#: distinct CEF lines the syslog streams cycle through
DISTINCT_LINES = 1000

_ACTIONS = ("blocked", "allowed", "alerted", "dropped")
_SIGNATURES = (("100", "Port scan detected", 5), ("200", "Brute force login", 7),
               ("300", "Malware callback", 9), ("400", "Policy violation", 3))
_USERS = ("alice", "bob", "carol", "dave", "svc-backup", "administrator")


@dataclass(frozen=True)
class Inputs:
    """
    Paths of the generated files.

    @ivar single: one JSON alert (the single-event webhook body)
    @ivar ndjson: L{BATCH} alerts as NDJSON
    @ivar hec: L{BATCH} concatenated Splunk HEC envelopes
    @ivar cef_batch: L{BATCH} CEF lines (the body of C{POST /v1/inbox/cef})
    @ivar cef_lines: L{DISTINCT_LINES} RFC 5424 syslog messages carrying CEF, one per line (UDP)
    @ivar tcp_frames: by number of connections, the file each connection sends: the same messages
        octet-counted (RFC 6587), repeated so that all connections together send C{tcp_events}
    """

    single: Path
    ndjson: Path
    hec: Path
    cef_batch: Path
    cef_lines: Path
    tcp_frames: dict[int, Path]
    tcp_events: int


def _compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def _alert(rng: random.Random, n: int) -> dict[str, object]:
    sig_id, name, severity = rng.choice(_SIGNATURES)
    return {
        "id": f"alert-{n:08d}",
        "title": f"{name} from 10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
        "severity": rng.choice(("low", "medium", "high", "critical")),
        "timestamp": f"2026-05-08T09:{rng.randrange(60):02d}:{rng.randrange(60):02d}Z",
        "message": f"{name}: {rng.choice(_ACTIONS)} by rule {sig_id}",
        "source": {"ip": f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                   "port": rng.randrange(1024, 65535)},
        "destination": {"ip": f"192.168.{rng.randrange(256)}.{rng.randrange(1, 255)}", "port": 443},
        "user": rng.choice(_USERS),
        "sensor": "fw-edge-01",
        "tags": ["bench", name.split()[0].lower()],
    }


def _cef(rng: random.Random, n: int) -> str:
    sig_id, name, severity = rng.choice(_SIGNATURES)
    src = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    dst = f"192.168.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    return (f"CEF:0|Acme|EdgeFirewall|7.2.1|{sig_id}|{name}|{severity}|"
            f"rt={1778230800000 + n * 17} src={src} spt={rng.randrange(1024, 65535)} dst={dst} dpt=443 "
            f"proto=TCP act={rng.choice(_ACTIONS)} suser={rng.choice(_USERS)} "
            f"deviceExternalId=fw-edge-01 cs1Label=Rule Name cs1=inbound-{sig_id} "
            f"msg={name} matched on session {n} with = in the text")


def _syslog(cef: str, n: int) -> str:
    return f"<134>1 2026-05-08T09:00:{n % 60:02d}.000Z fw-edge-01 CEF - - - {cef}"


def write_inputs(directory: Path, tcp_events: int, tcp_connections: tuple[int, ...]) -> Inputs:
    rng = random.Random(8)
    single = directory / "single.json"
    single.write_text(_compact(_alert(rng, 0)))
    ndjson = directory / "batch.ndjson"
    ndjson.write_text("".join(_compact(_alert(rng, n)) + "\n" for n in range(BATCH)))
    hec = directory / "batch.hec"
    hec.write_text("".join(_compact({"time": 1778230800 + n, "host": "fw-edge-01", "source": "bench",
                                     "sourcetype": "acme:alert", "event": _alert(rng, n)})
                           for n in range(BATCH)))
    cef_batch = directory / "batch.cef"
    cef_batch.write_text("".join(_cef(rng, n) + "\n" for n in range(BATCH)))

    messages = [_syslog(_cef(rng, n), n).encode() for n in range(DISTINCT_LINES)]
    cef_lines = directory / "syslog.txt"
    cef_lines.write_bytes(b"".join(m + b"\n" for m in messages))
    frames = [b"%d %s" % (len(m), m) for m in messages]
    tcp_frames = {}
    for connections in tcp_connections:
        each = tcp_events // connections
        tcp_frames[connections] = path = directory / f"syslog-{connections}.octet-counted"
        with path.open("wb") as out:
            for start in range(0, each, DISTINCT_LINES):
                out.write(b"".join(frames[:min(DISTINCT_LINES, each - start)]))
    return Inputs(single, ndjson, hec, cef_batch, cef_lines, tcp_frames, tcp_events)
