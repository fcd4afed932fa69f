"""
The benchmark: aisoc-inboxd beside syslog-ng on one machine, in one run, one table.

Starts a tansu broker, the daemon twice per C{--workers} count (embedded file sink; Kafka sink;
each with that C{workers:} setting) and syslog-ng once, drives them with load generators that are
not the daemon's code (wrk with bench/post.lua for HTTP, socat blasting a pre-framed octet-counted
file over TCP, syslog-ng's loggen pacing UDP datagrams), and prints intake x sink -> durable
events/s, daemon CPU-us per event, HTTP p50/p99, peak RSS and UDP loss, with our ratio to syslog-ng
on the syslog rows, and in their notes the daemon's accounting of the listener over the row (frames
read = durable + in flight + dropped by reason) and, on the UDP rows, the datagrams the kernel
dropped unread, so a shortfall is explained. CPU and peak RSS
cover the measured process and its live descendants (the daemon's worker processes): CPU summed,
and peak RSS the sum of each process's own peak. Loopback only; every process and the temp
directory are removed at the end, on an error or on Ctrl-C.

C{--soak SECONDS} (issue 8 asks 600) adds, per sink and workers count, a fresh daemon overloaded that
long by every intake at once, its process tree's RSS sampled every 10 s: flat, or grows.

Run: C{.venv/bin/python bench/run.py [--seconds S] [--workers N...] [--only ROW...] [--soak S] [--interleave]
[--markdown FILE]}
"""
from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from inputs import BATCH, Inputs, write_inputs
from procs import Processes, cpu_seconds, peak_rss_mib, reset_peak_rss, rss_mib, wait_until
from targets import PROJECT, Daemon, DurableCount, Receiver, SyslogNg, Tansu

#: Debian packages the bench drives the daemon with, by the command it runs
TOOLS = {"wrk": "wrk", "socat": "socat", "loggen": "syslog-ng-core", "syslog-ng": "syslog-ng-core"}
UDP_RATES = (20_000, 40_000, 60_000)
TCP_CONNECTIONS = (1, 4)
_LOGGEN_SENT = re.compile(rb"average rate = [\d.]+ msg/sec, count=(\d+), time=([\d.]+)")
#: the rows C{--only} names besides C{soak}
ROW_KINDS = ("webhook", "ndjson", "hec", "cef-https", "tcp", "udp")
#: the overload soak: seconds between RSS samples, the load, and how much the end RSS may exceed
#: the 1-minute RSS and still be flat
SOAK_SAMPLE = 10.0
SOAK_WEBHOOK_CONNECTIONS = 32
SOAK_TCP_CONNECTIONS = 4
SOAK_UDP_RATE = 40_000
SOAK_GROWTH = 0.2


@dataclass
class Row:
    intake: str
    sink: str
    events: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    peak_rss_mib: float | None = None
    udp_loss: float | None = None
    note: str = ""
    #: a soak's samples every L{SOAK_SAMPLE} seconds: the tree's RSS, and durable events/s
    rss_samples: list[float] = field(default_factory=list)
    rate_samples: list[float | None] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    @property
    def cpu_us_per_event(self) -> float | None:
        return self.cpu_seconds / self.events * 1e6 if self.events else None


class Window:
    """
    One measured window on one process tree: CPU time, peak RSS and durable events from start to stop.
    """

    def __init__(self, pid: int, durable: DurableCount) -> None:
        self._pid = pid
        self._durable = durable

    def __enter__(self) -> Window:
        reset_peak_rss(self._pid)
        self.events_before = self._durable()
        self._cpu = cpu_seconds(self._pid)
        self.started = time.monotonic()
        return self

    def settle(self, expected: int | None = None, quiet: float = 1.0, limit: float = 60.0) -> float:
        """
        Wait until C{expected} events are durable, or none became durable for C{quiet} seconds (at
        least a second more than the counter may lag); return the time the last one did.
        """
        quiet = max(quiet, self._durable.lag + 1.0)
        last_count, last_change = self._durable(), time.monotonic()
        deadline = last_change + limit
        while time.monotonic() < deadline:
            if expected is not None and last_count - self.events_before >= expected:
                break
            time.sleep(0.05)
            count = self._durable()
            if count != last_count:
                last_count, last_change = count, time.monotonic()
            elif time.monotonic() - last_change > quiet:
                break
        return last_change

    def finish(self, row: Row, seconds: float) -> Row:
        row.events = self._durable() - self.events_before
        row.seconds = seconds
        row.cpu_seconds = cpu_seconds(self._pid) - self._cpu
        row.peak_rss_mib = peak_rss_mib(self._pid)
        return row

    def __exit__(self, *exc: object) -> None:
        pass


def wrk(url: str, body: Path, content_type: str, authorization: str | None, connections: int,
        seconds: float, delay_ms: int | None = None) -> dict[str, float]:
    out = subprocess.run(wrk_argv(url, body, content_type, authorization, connections, seconds, delay_ms),
                         check=True, capture_output=True).stdout
    return wrk_result(out)


def wrk_argv(url: str, body: Path, content_type: str, authorization: str | None, connections: int,
             seconds: float, delay_ms: int | None = None) -> list[str]:
    args = [str(body), content_type, authorization or "", *([str(delay_ms)] if delay_ms else [])]
    return ["wrk", "--threads", "1", "--connections", str(connections), "--duration", f"{round(seconds)}s",
            "--timeout", "10s", "--script", str(PROJECT / "bench" / "post.lua"), url, "--", *args]


def wrk_result(out: bytes) -> dict[str, float]:
    """
    The C{bench-result} line bench/post.lua prints at the end of wrk's output.
    """
    line = next(line for line in out.splitlines() if line.startswith(b"bench-result "))
    result: dict[str, float] = json.loads(line.split(b" ", 1)[1])
    return result


#: where py-spy profiles go (C{--profile}); None: no profiling
PROFILES: Path | None = None


@contextlib.contextmanager
def profiled(pid: int, label: str, intake: str, seconds: float | None = None) -> Iterator[None]:
    """
    With C{--profile DIR}, record the daemon (C{pid}) and its workers with py-spy while the row runs
    (raw collapsed stacks, one file per row and sink; C{flamegraph.pl} or speedscope read them): for
    C{seconds}, or until the row ends when None (py-spy writes its file on SIGINT).
    """
    if PROFILES is None:
        yield
        return
    name = re.sub(r"[^a-z0-9]+", "-", f"{label} {intake}".lower()).strip("-")
    duration = ["--duration", str(round(seconds))] if seconds is not None else []
    spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid),
                            "--subprocesses", "--rate", "250", *duration, "--format", "raw",
                            "--output", str(PROFILES / f"{name}.txt")],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        if seconds is None:
            spy.send_signal(signal.SIGINT)
        spy.wait()


def http_row(daemon: Daemon, durable: DurableCount, intake: str, path: str, body: Path, content_type: str,
             authorization: str | None, per_request: int, seconds: float, connections: int,
             delay_ms: int | None = None) -> tuple[Row, dict[str, float]]:
    row = Row(intake, daemon.label)
    with Window(daemon.pid, durable) as window, profiled(daemon.pid, daemon.label, intake, seconds):
        result = wrk(daemon.url(path), body, content_type, authorization, connections, seconds, delay_ms)
        window.settle(quiet=0.5)
        window.finish(row, result["duration_us"] / 1e6)
    row.p50_ms, row.p99_ms = result["p50_us"] / 1000, result["p99_us"] / 1000
    accepted = (result["requests"] - result["non_2xx"]) * per_request
    row.note = f"{result['requests'] / row.seconds:,.0f} req/s"
    if result["non_2xx"] or result["socket_errors"]:
        row.note += f"; {result['non_2xx']:.0f} non-2xx, {result['socket_errors']:.0f} socket errors"
    if row.events < accepted:
        row.note += f"; only {row.events} of {accepted:.0f} acknowledged events found durable!"
    return row, result


def paced_delay_ms(rate: float, connections: int, p50_ms: float) -> int:
    """
    How long each of C{connections} waits after a reply so that together they offer C{rate} requests/s.
    """
    return max(1, round(connections / rate * 1000 - p50_ms))


def http_rows(daemon: Daemon, inputs: Inputs, seconds: float, wanted: Callable[[str], bool]) -> list[Row]:
    rows: list[Row] = []
    durable = daemon.durable_counter()
    webhook = f"/v1/inbox/{daemon.tokens['generic-json']}"
    if wanted("webhook"):
        row, result = http_row(daemon, durable, "webhook, 1 event/request", webhook, inputs.single,
                               "application/json", None, 1, seconds, connections=32)
        rows.append(row)
        # p99 at 80 % of the saturated rate: each of 50 connections waits between requests
        rate = 0.8 * result["requests"] / (result["duration_us"] / 1e6)
        delay = paced_delay_ms(rate, 50, result["p50_us"] / 1000)
        paced, _ = http_row(daemon, durable, "webhook, 1 event/request, ~80 % rate", webhook, inputs.single,
                            "application/json", None, 1, seconds, connections=50, delay_ms=delay)
        rows.append(paced)
    if wanted("ndjson"):
        rows.append(http_row(daemon, durable, f"webhook, {BATCH}-event NDJSON", webhook, inputs.ndjson,
                             "application/x-ndjson", None, BATCH, seconds, connections=8)[0])
    if wanted("hec"):
        rows.append(http_row(daemon, durable, f"HEC /services/collector/event, {BATCH} envelopes",
                             "/services/collector/event", inputs.hec, "application/json",
                             f"Splunk {daemon.tokens['splunk-hec']}", BATCH, seconds, connections=8)[0])
    return rows


def cef_https_row(daemon: Daemon, inputs: Inputs, seconds: float) -> Row:
    return http_row(daemon, daemon.durable_counter(), f"CEF over HTTPS, {BATCH} lines/request", "/v1/inbox/cef",
                    inputs.cef_batch, "text/plain", None, BATCH, seconds, connections=8)[0]


def tcp_row(receiver: Receiver, durable: DurableCount, inputs: Inputs, connections: int, logs: Path) -> Row:
    row = Row(f"syslog TCP octet-counted, {connections} conn", receiver.sink)
    expected = inputs.tcp_events // connections * connections
    accounting = receiver.accounting("tcp") if receiver.accounting else None
    before = accounting() if accounting else {}
    # syslog-ng is no Python process: only the daemon (which has accounting) is profiled
    profile = profiled(receiver.pid, receiver.sink, row.intake) if accounting else contextlib.nullcontext()
    with Processes(logs) as senders, Window(receiver.pid, durable) as window, profile:
        for n in range(connections):
            senders.start(f"socat-{receiver.name}-{n}", ["socat", "-u", f"FILE:{inputs.tcp_frames[connections]}",
                                                         f"TCP:127.0.0.1:{receiver.tcp_port}"])
        last = window.settle(expected=expected, quiet=3.0)
        window.finish(row, last - window.started)
    if row.events < expected:
        row.note = f"{row.events} of {expected} sent events durable"
    if accounting:
        row.note = "; ".join(filter(None, [row.note, accounting.note(before)]))
    if durable.lag:
        row.note = "; ".join(filter(None, [row.note, f"time includes up to {durable.lag:.0f} s of counter lag"]))
    return row


def udp_row(receiver: Receiver, durable: DurableCount, inputs: Inputs, rate: int, seconds: float,
            logs: Path) -> Row:
    row = Row(f"syslog UDP, {rate // 1000} k/s offered", receiver.sink)
    accounting = receiver.accounting("udp") if receiver.accounting else None
    before = accounting() if accounting else {}
    profile = profiled(receiver.pid, receiver.sink, row.intake) if accounting else contextlib.nullcontext()
    kernel_drops = udp_drops(receiver.udp_port)
    with Window(receiver.pid, durable) as window, profile:
        out = subprocess.run(loggen_argv(inputs, receiver.udp_port, rate, seconds), capture_output=True).stderr
        (logs / f"loggen-{receiver.name}-{rate}.log").write_bytes(out)
        sent_match = _LOGGEN_SENT.search(out)
        window.settle(quiet=1.0)
        window.finish(row, float(sent_match.group(2)) if sent_match else seconds)
    kernel_drops = udp_drops(receiver.udp_port) - kernel_drops
    sent = int(sent_match.group(1)) if sent_match else 0
    row.udp_loss = 1 - row.events / sent if sent else None
    sent_rate = f"{sent / row.seconds:,.0f}/s sent"
    dropped = f"{kernel_drops:,} dropped by the kernel (receive buffer full)"
    row.note = "; ".join(filter(None, [sent_rate, dropped, accounting and accounting.note(before)]))
    return row


def udp_drops(port: int) -> int:
    """
    Datagrams the kernel dropped on the UDP sockets bound to C{port} (its receive buffer full: never
    read, so in no count of the receiver's), from the C{drops} column of /proc/net/udp and udp6.
    """
    drops = 0
    for table in (Path("/proc/net/udp"), Path("/proc/net/udp6")):
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                drops += int(fields[-1])
    return drops


def loggen_argv(inputs: Inputs, udp_port: int, rate: int, seconds: float) -> list[str]:
    """
    loggen pacing the CEF syslog lines as UDP datagrams at C{rate}/s for C{seconds}.
    """
    return ["loggen", "--inet", "--dgram", "--read-file", str(inputs.cef_lines), "--dont-parse", "--loop-reading",
            "--rate", str(rate), "--interval", str(int(seconds)), "127.0.0.1", str(udp_port)]


def syslog_rows(receivers: list[Receiver], inputs: Inputs, seconds: float, wanted: Callable[[str], bool],
                logs: Path) -> list[Row]:
    """
    The TCP and UDP rows of each receiver, row by row: with the daemon and syslog-ng (C{--interleave})
    each of syslog-ng's rows runs right after the daemon's same row, under the same neighbours' load.
    """
    rows: list[Row] = []
    if wanted("tcp"):
        durables = [receiver.durable("tcp") for receiver in receivers]
        rows += [tcp_row(receiver, durable, inputs, connections, logs) for connections in TCP_CONNECTIONS
                 for receiver, durable in zip(receivers, durables)]
    if wanted("udp"):
        durables = [receiver.durable("udp") for receiver in receivers]
        rows += [udp_row(receiver, durable, inputs, rate, seconds * 2, logs) for rate in UDP_RATES
                 for receiver, durable in zip(receivers, durables)]
    return rows


def soak_intake(seconds: float) -> str:
    return f"overload soak, {seconds:.0f} s"


def soak_row(daemon: Daemon, inputs: Inputs, seconds: float, logs: Path) -> Row:
    """
    Overload the daemon for C{seconds} with every intake at once: single-event webhooks (wrk),
    octet-counted syslog over TCP (each connection sends its file over and over, on a new connection
    if the daemon closes it) and UDP syslog (loggen); sample the process tree's RSS (VmRSS summed)
    and the durable rate every L{SOAK_SAMPLE} seconds. Issue 8: RSS flat under a 10-minute overload.
    """
    row = Row(soak_intake(seconds), daemon.label)
    durable = daemon.durable_counter()
    name = f"soak-{daemon.name}"
    frames, tcp = inputs.tcp_frames[SOAK_TCP_CONNECTIONS], f"TCP:127.0.0.1:{daemon.tcp_port}"
    resend = 'while :; do while :; do cat "$0"; done | socat -u STDIN "$1"; sleep 0.2; done'
    with Processes(logs) as senders, Window(daemon.pid, durable) as window:
        load = [senders.start(f"{name}-wrk", wrk_argv(daemon.url(f"/v1/inbox/{daemon.tokens['generic-json']}"),
                                                      inputs.single, "application/json", None,
                                                      SOAK_WEBHOOK_CONNECTIONS, seconds)),
                senders.start(f"{name}-loggen", loggen_argv(inputs, daemon.udp_port, SOAK_UDP_RATE, seconds))]
        # timeout signals its whole process group: the shell, cat and socat
        load += [senders.start(f"{name}-socat-{n}", ["timeout", str(round(seconds)), "sh", "-c", resend,
                                                     str(frames), tcp]) for n in range(SOAK_TCP_CONNECTIONS)]
        counted, counted_at = window.events_before, window.started
        for k in range(1, int(seconds // SOAK_SAMPLE) + 1):
            time.sleep(max(0.0, window.started + k * SOAK_SAMPLE - time.monotonic()))
            row.rss_samples.append(rss_mib(daemon.pid))
            try:
                count, now = durable(), time.monotonic()
            except OSError:  # /metrics slow under the overload: this interval joins the next
                row.rate_samples.append(None)
                continue
            row.rate_samples.append((count - counted) / (now - counted_at))
            counted, counted_at = count, now
        wait_until(lambda: all(process.poll() is not None for process in load), timeout=30, interval=0.2)
        loaded, at_loaded = time.monotonic(), durable()
        last = window.settle(quiet=1.0)
        window.finish(row, last - window.started)
    drained = window.events_before + row.events - at_loaded
    result = wrk_result((logs / f"{name}-wrk.log").read_bytes())
    sent = _LOGGEN_SENT.search((logs / f"{name}-loggen.log").read_bytes())
    rss = row.rss_samples
    at_1min = rss[min(len(rss), round(60 / SOAK_SAMPLE)) - 1]
    notes = [f"RSS 1 min {at_1min:.0f}, end {rss[-1]:.0f}, max {max(rss):.0f} MiB: "
             f"{'grows' if rss[-1] > at_1min * (1 + SOAK_GROWTH) else 'flat'}",
             f"webhooks {result['requests'] / (result['duration_us'] / 1e6):,.0f} req/s, "
             f"{result['non_2xx']:.0f} non-2xx, {result['socket_errors']:.0f} socket errors",
             f"UDP {int(sent.group(1)) / float(sent.group(2)):,.0f}/s sent" if sent else "UDP: no loggen count"]
    if drained and last > loaded:
        notes.append(f"{drained} events durable in the {last - loaded:.0f} s after the load")
    row.note = "; ".join(notes)
    return row


def ratio_notes(rows: list[Row]) -> None:
    """
    Put each of our syslog rows' ratio to syslog-ng's same row in its note (the nearest in the run,
    the one right after it with C{--interleave}).
    """
    peers = [(k, row) for k, row in enumerate(rows) if row.sink.startswith("syslog-ng") and row.rate]
    for n, row in enumerate(rows):
        # the nearest; of two as near, the one after it (--interleave runs syslog-ng's row right after)
        nearest = sorted((abs(k - n), k < n, k) for k, peer in peers if peer.intake == row.intake and k != n)
        if row.sink.startswith("syslog-ng") or not nearest:
            continue
        peer = rows[nearest[0][2]]
        if row.udp_loss is not None and peer.udp_loss is not None:
            ratio = f"loss {row.udp_loss:.1%} vs syslog-ng {peer.udp_loss:.1%}"
        else:
            ratio = f"{row.rate / peer.rate:.2f}x syslog-ng"
        row.note = f"{ratio}; {row.note}" if row.note else ratio


def table(rows: list[Row]) -> str:
    def num(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    lines = ["| intake | sink | events/s | CPU-µs/event | p50 ms | p99 ms | peak RSS MiB | UDP loss | notes |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r.intake} | {r.sink} | {num(r.rate or None, ',.0f')} | {num(r.cpu_us_per_event, '.1f')} "
                     f"| {num(r.p50_ms, '.1f')} | {num(r.p99_ms, '.1f')} | {num(r.peak_rss_mib, '.0f')} "
                     f"| {num(r.udp_loss, '.1%')} | {r.note} |")
    lines.append("\nCPU-µs/event and peak RSS cover the process and its worker processes: CPU summed, peak RSS the "
                 "sum of each process's own peak.")
    soaks = [r for r in rows if r.rss_samples]
    if soaks:
        lines += [f"\nThe soaks' load, all at once: single-event webhooks (wrk, {SOAK_WEBHOOK_CONNECTIONS} "
                  f"connections), octet-counted syslog over TCP (socat, {SOAK_TCP_CONNECTIONS} connections, unpaced) "
                  f"and UDP syslog (loggen, {SOAK_UDP_RATE // 1000} k/s). Every {SOAK_SAMPLE:.0f} s: RSS of the "
                  "process tree (VmRSS summed, MiB) and durable k events/s (- where /metrics did not answer).\n",
                  "| intake | sink | RSS MiB | durable k events/s |", "|---|---|---|---|"]
        lines += [f"| {r.intake} | {r.sink} | {' '.join(f'{v:.0f}' for v in r.rss_samples)} "
                  f"| {' '.join('-' if v is None else f'{v / 1000:.1f}' for v in r.rate_samples)} |" for r in soaks]
    return "\n".join(lines)


def start_daemon(daemon: Daemon, processes: Processes) -> None:
    daemon.write_config()
    for template in ("generic-json", "splunk-hec"):
        daemon.mint(template)
    daemon.start(processes)
    print(f"bench: daemon ({daemon.label}) up, pid {daemon.pid}", file=sys.stderr)


def check_tools(tools: dict[str, str] = TOOLS) -> None:
    """
    Exit naming the Debian packages to install when a tool the bench runs (name -> package) is missing,
    before anything starts rather than at the first row.
    """
    missing = sorted({package for tool, package in tools.items() if shutil.which(tool) is None})
    if missing:
        sys.exit(f"bench: missing load generators or peers; install them with\n"
                 f"  sudo apt-get install {' '.join(missing)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each HTTP row (UDP rows: twice)")
    parser.add_argument("--tcp-events", type=int, default=60_000,
                        help="events per TCP row, split over its connections")
    parser.add_argument("--only", nargs="*", default=[],
                        help="run only these rows: webhook ndjson hec cef-https tcp udp soak, and/or sinks file kafka")
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2], metavar="N",
                        help="run the daemon's rows once per count, with this workers: setting (default: 1 2)")
    parser.add_argument("--soak", type=float, default=0.0, metavar="SECONDS",
                        help="also overload a fresh daemon per sink and workers count this long, sampling its RSS "
                             "(issue 8: 600; default 0: no soak)")
    parser.add_argument("--interleave", action="store_true",
                        help="run each of syslog-ng's syslog rows right after the daemon's same row (syslog-ng "
                             "running beside each daemon), rather than all of them after the daemons")
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, outputs)")
    parser.add_argument("--profile", type=Path, help="record each HTTP, TCP and UDP row of the daemon with py-spy into this directory")
    args = parser.parse_args()
    if min(args.workers) < 1:
        parser.error("--workers: counts are 1 or more")
    if 0 < args.soak < 60:
        parser.error("--soak: 60 seconds or more (the RSS at 1 minute is what the end is compared with)")
    if "soak" in args.only and not args.soak:
        parser.error("--only soak: give the soak's length with --soak SECONDS")
    if args.profile and not (Path(sys.executable).parent / "py-spy").exists():
        parser.error(f"--profile: py-spy is not installed beside {sys.executable}; "
                     f"install it with {Path(sys.executable).parent / 'pip'} install py-spy")
    check_tools()
    global PROFILES
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        PROFILES = args.profile.resolve()
    only = set(args.only)
    sinks = [s for s in ("file", "kafka") if not only & {"file", "kafka"} or s in only]
    row_kinds = only - {"file", "kafka"}

    def wanted(kind: str) -> bool:
        return not row_kinds or kind in row_kinds

    soak = args.soak > 0 and wanted("soak")

    work = Path(tempfile.mkdtemp(prefix="aisoc-bench-"))
    logs = work / "logs"
    logs.mkdir()
    rows: list[Row] = []
    started = time.monotonic()
    try:
        with Processes(logs) as processes:
            inputs = write_inputs(work, args.tcp_events, TCP_CONNECTIONS)
            tansu: Tansu | None = None
            if "kafka" in sinks:
                tansu = Tansu(work)
                tansu.start()
            runs = [(w, s) for w in dict.fromkeys(args.workers) for s in sinks]
            syslog_ng: SyslogNg | None = None
            if wanted("tcp") or wanted("udp"):
                syslog_ng = SyslogNg(work / "syslog-ng")
            beside = [syslog_ng.receiver] if args.interleave and syslog_ng else []
            if beside and runs:
                syslog_ng.start(processes)
            for workers, sink in (runs if any(map(wanted, ROW_KINDS)) else []):
                daemon = Daemon(work / f"inboxd-{sink}-w{workers}", sink, tansu.bootstrap if tansu else None,
                                workers=workers)
                start_daemon(daemon, processes)
                rows += http_rows(daemon, inputs, args.seconds, wanted)
                rows += syslog_rows([daemon.receiver(), *(receiver() for receiver in beside)], inputs, args.seconds,
                                    wanted, logs)
                processes.stop(daemon.pid)
                if wanted("cef-https"):
                    tls = Daemon(work / f"{daemon.name}-tls", sink, daemon.bootstrap, tls=True, workers=workers)
                    tls.write_config()
                    tls.start(processes)
                    rows.append(cef_https_row(tls, inputs, args.seconds))
                    processes.stop(tls.pid)
            if syslog_ng and not (beside and runs):
                syslog_ng.start(processes)
                rows += syslog_rows([syslog_ng.receiver()], inputs, args.seconds, wanted, logs)
            for workers, sink in (runs if soak else []):
                if tansu is not None and sink == "kafka":  # a fresh in-memory broker holds one soak's events
                    tansu.stop()
                    tansu = Tansu(work)
                    tansu.start()
                daemon = Daemon(work / f"inboxd-{sink}-w{workers}-soak", sink, tansu.bootstrap if tansu else None,
                                workers=workers)
                start_daemon(daemon, processes)
                rows.append(soak_row(daemon, inputs, args.soak, logs))
                processes.stop(daemon.pid)
            if tansu is not None:
                tansu.stop()
    except KeyboardInterrupt:
        print("bench: interrupted; processes stopped", file=sys.stderr)
    finally:
        if args.keep:
            print(f"bench: kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    ratio_notes(rows)
    text = table(rows)
    print(text)
    print(f"\n{len(rows)} rows in {time.monotonic() - started:.0f} s", file=sys.stderr)
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
