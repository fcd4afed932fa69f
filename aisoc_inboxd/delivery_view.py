"""
Recent deliveries as the CLI prints them: one line each (C{token deliveries}), and the polling
loop of C{--follow}, which prints each new one as it arrives, like C{tail -f}.
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any, Callable, TextIO

from aisoc_inboxd.admin_client import AdminClient
from aisoc_inboxd.deliveries import REDACTED, body_of
from aisoc_inboxd.tokens import fingerprint, looks_like_token

#: seconds between two polls of C{--follow}
FOLLOW_INTERVAL = 1.0
HEADER = f"{'N':>5}  {'RECEIVED (UTC)':<20}{'CLIENT':<17}{'ROUTE':<9}{'STATUS':>6}  {'OUTCOME':<20}{'EVENTS':>6}  ERROR"


def key_of(fingerprint_or_token: str) -> str:
    """
    The fingerprint (or prefix) to ask for: a token given by mistake is hashed here, never sent.
    """
    return fingerprint(fingerprint_or_token) if looks_like_token(fingerprint_or_token) else fingerprint_or_token


def delivery_line(delivery: dict[str, Any]) -> str:
    received = datetime.fromtimestamp(delivery["received_at"], timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    return (f"{delivery['n']:>5}  {received:<20}{delivery['client'] or '-':<17}{delivery['route']:<9}"
            f"{delivery['status']:>6}  {delivery['outcome']:<20}{delivery['events']:>6}  {delivery['error'] or ''}")


def print_deliveries(deliveries: list[dict[str, Any]], as_json: bool, out: TextIO, header: bool) -> None:
    """
    C{deliveries} oldest first: one JSON object per line with C{as_json}, else one table row.
    """
    if header and not as_json:
        print(HEADER, file=out)
    for delivery in sorted(deliveries, key=lambda d: (d["received_at"], d["n"])):
        print(json.dumps(delivery) if as_json else delivery_line(delivery), file=out, flush=True)


def follow(client: AdminClient, tenant: str, key: str, as_json: bool, out: TextIO,
           sleep: Callable[[float], None] = time.sleep) -> None:
    """
    Print the deliveries kept now, then each new one as it arrives, until interrupted. With
    workers each process numbers its own, so what is new is what was not printed yet.
    """
    printed: set[int] = set()  # of those still kept: one no longer kept never comes back
    headed = False
    while True:
        kept = client.deliveries(tenant, key)["deliveries"]
        new = [d for d in kept if d["n"] not in printed]
        print_deliveries(new, as_json, out, header=bool(new) and not headed)
        headed = headed or bool(new)
        printed = {d["n"] for d in kept}
        sleep(FOLLOW_INTERVAL)


def recorded_body(delivery: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """
    The body of a delivery as the admin API gives it, and its headers that were not redacted;
    C{ValueError} when the body was not kept whole.
    """
    return body_of(delivery), {name: value for name, value in delivery["request"]["headers"] if value != REDACTED}
