"""
What refusing a hostile body costs on the reactor thread: bodies of up to C{http.max_body_bytes}
(10 MiB) holding far more tiny events than C{http.max_events_per_request} (10,000), decoded the way
each intake decodes them until it refuses (413 too many events, or the HEC and CEF refusals).
Prints the CPU milliseconds of one decode, best of runs; then, for bodies within the limit (which
must not pay for the count), the CPU microseconds of one decode. C{--once NAME} decodes one hostile
body once, for C{valgrind --tool=callgrind}, whose instruction counts hold under a neighbour's load.

Run it against two trees (C{PYTHONPATH} naming the one measured), alternating.

Run: C{.venv/bin/python bench/hostile_bodies.py [--runs R] [--once NAME]}
"""
from __future__ import annotations

import argparse
import json
import random
import time
from typing import Callable

import aisoc_inboxd
from aisoc_inboxd.formats.cef import cef_lines
from aisoc_inboxd.formats.email.relays import decode_email_body
from aisoc_inboxd.formats.hec import HecError, parse_event_body, parse_raw_body
from aisoc_inboxd.formats.json_body import BodyError, TooManyEvents, check_event_count
from aisoc_inboxd.web.webhook import webhook_records

from inputs import _alert  # noqa: E402  (bench/ is this script's directory)

MAX_BODY = 10 * 1024 * 1024
MAX_EVENTS = 10_000


def _filled(head: bytes, item: bytes, separator: bytes, tail: bytes) -> bytes:
    count = (MAX_BODY - len(head) - len(tail)) // (len(item) + len(separator))
    return head + separator.join([item] * count) + tail


def _cef(body: bytes) -> object:
    """
    As the CEF route counts the lines of a body (before robust-nits: all of them, then the count).
    """
    try:
        from aisoc_inboxd.formats.json_body import within_event_limit
    except ImportError:
        return check_event_count(len(list(cef_lines(body))), MAX_EVENTS)
    else:
        return within_event_limit(cef_lines(body, MAX_EVENTS), MAX_EVENTS)


def _email(body: bytes) -> object:
    """
    As the e-mail route decodes a JSON body (before robust-nits: with no limit on the e-mails).
    """
    try:
        return decode_email_body("application/json", "application/json", body, max_events=MAX_EVENTS)
    except TypeError:
        return decode_email_body("application/json", "application/json", body)


CASES: dict[str, tuple[bytes, Callable[[bytes], object]]] = {
    "webhook array [{},{},…]": (_filled(b"[", b"{}", b",", b"]"),
                                lambda body: webhook_records("application/json", body, MAX_EVENTS)),
    "webhook NDJSON {}\\n{}…": (_filled(b"", b"{}", b"\n", b""),
                                lambda body: webhook_records("application/json", body, MAX_EVENTS)),
    "HEC array [{\"event\":1},…]": (_filled(b"[", b'{"event":1}', b",", b"]"),
                                    lambda body: parse_event_body(body, MAX_EVENTS)),
    "HEC concatenated {\"event\":1}…": (_filled(b"", b'{"event":1}', b"", b""),
                                        lambda body: parse_event_body(body, MAX_EVENTS)),
    "HEC raw lines ab\\n…": (_filled(b"", b"ab", b"\n", b""),
                            lambda body: parse_raw_body(body, {}, False, 0.0, MAX_EVENTS)),
    "CEF lines ab\\n…": (_filled(b"", b"ab", b"\n", b""), _cef),
    "email JSON [{},{},…]": (_filled(b"[", b"{}", b",", b"]"),
                             _email),
}


_RNG = random.Random(1)
_ALERTS = [_alert(_RNG, n) for n in range(100)]
_CEF_LINE = b"CEF:0|Vendor|Product|1.0|100|User login failed|3|src=10.0.0.1 suser=alice"
#: bodies within the limit: the bench's alerts, and an array with more commas than the limit
WITHIN: dict[str, tuple[bytes, Callable[[bytes], object]]] = {
    "webhook array, 100 alerts": (json.dumps(_ALERTS).encode(),
                                  lambda body: webhook_records("application/json", body, MAX_EVENTS)),
    "webhook NDJSON, 100 alerts": (b"\n".join(json.dumps(alert).encode() for alert in _ALERTS),
                                   lambda body: webhook_records("application/json", body, MAX_EVENTS)),
    "webhook array, 9,000 x 2 keys": (json.dumps([{"a": n, "b": n} for n in range(9000)]).encode(),
                                      lambda body: webhook_records("application/json", body, MAX_EVENTS)),
    "CEF lines, 1,000": (b"\n".join([_CEF_LINE] * 1000), _cef),
}


def refuse(name: str) -> str:
    body, decode = CASES[name]
    try:
        decode(body)
    except TooManyEvents:
        return "413 too many events"
    except (BodyError, HecError) as e:
        return f"refused: {type(e).__name__}"
    except Exception as e:  # the email relays refuse with their own errors
        return f"refused: {type(e).__name__}"
    return "accepted"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--once", choices=sorted(CASES))
    args = parser.parse_args()
    if args.once:
        refuse(args.once)
        return
    print(f"tree: {aisoc_inboxd.__file__}")
    print(f"{'body (10 MiB)':34} {'outcome':28} {'CPU ms (best)':>14}")
    for name in CASES:
        best, outcome = float("inf"), ""
        for _ in range(args.runs):
            start = time.process_time()
            outcome = refuse(name)
            best = min(best, time.process_time() - start)
        print(f"{name:34} {outcome:28} {best * 1000:14.1f}")
    print(f"\n{'body within the limit':34} {'CPU µs (best of 20)':>43}")
    for name, (body, decode) in WITHIN.items():
        best = float("inf")
        for _ in range(20):
            start = time.process_time()
            decode(body)
            best = min(best, time.process_time() - start)
        print(f"{name:34} {best * 1e6:43.0f}")


if __name__ == "__main__":
    main()
