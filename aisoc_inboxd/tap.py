"""
The twistd/twist plugin's composition root: C{twistd -n aisoc-inboxd --config PATH}, and the same
composition for C{aisoc-inboxd run}.

Everything that can be checked before the reactor runs is checked here, so a bad config, a bad
template, a Kafka setting librdkafka refuses or an unreachable PostgreSQL stops start-up at once
with one line (C{aisoc-inboxd: cannot start: …}) instead of a traceback or a daemon that runs but
cannot work. What can only fail once the reactor runs (a port in use) is logged as one line by the
daemon, which then stops the reactor.
"""
from __future__ import annotations

import atexit
import os
import sys
from pathlib import Path
from typing import Any

from twisted.application.service import IService
from twisted.python import usage

from aisoc_inboxd.config import ConfigError, Settings, load_settings
from aisoc_inboxd.logs import FORMATS, OBSERVERS


class Options(usage.Options):
    synopsis = "[--config PATH]"
    longdesc = ("Universal capture for AiSOC: webhooks, email, CEF over syslog and Splunk HEC into OCSF. "
                "Without --config the daemon runs on the embedded default (SQLite and an NDJSON log in "
                "./state, HTTP on 127.0.0.1:8080, metrics on 127.0.0.1:9108). AISOC_INBOX_* environment "
                "variables override the file (see the README).")
    optParameters = [["config", "c", None, "YAML config file (see etc/inboxd.yaml)"],
                     ["log-format", None, "text", "text: one readable line per event (default, also when "
                                                  "stdout is no terminal); json: one JSON object per line"]]

    def postOptions(self) -> None:
        if self["log-format"] not in FORMATS:
            raise usage.UsageError(f"--log-format: {self['log-format']!r} is none of {', '.join(FORMATS)}")
        self["settings"] = settings_or_exit(Path(self["config"]) if self["config"] else None)
        log_as(getattr(self, "parent", None), self["log-format"])


def log_as(runner: usage.Options | None, format: str) -> None:
    """
    Make the runner whose command line named the plugin log in C{format}, as C{aisoc-inboxd run}
    does. twist would write Twisted's own serialisation (record separators, "unpersistable"
    stand-ins, format strings) whenever stdout is no terminal: its observer factory is replaced, so
    this option decides (twist's own C{--log-format}, before the plugin name, no longer does).
    twistd writes text lines already, and JSON through its C{--logger} hook, on stdout (C{-n}).
    """
    if runner is None:
        return
    if "fileLogObserverFactory" in runner:  # twist: read once the plugin's service is made
        runner["fileLogObserverFactory"] = OBSERVERS[format]
    elif format == "json" and "logger" in runner:  # twistd: resolved by its own postOptions, after ours
        if not runner.get("nodaemon"):
            raise usage.UsageError("--log-format json writes to stdout: run twistd with -n (or use twist)")
        runner["logger"] = "aisoc_inboxd.logs.json_to_stdout"


def cannot_start(reason: object) -> SystemExit:
    return SystemExit(f"aisoc-inboxd: cannot start: {reason}")


def settings_or_exit(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as e:
        raise cannot_start(e) from None


def prepare(settings: Settings) -> Any:
    """
    Check the store can be reached, load the templates and check what the config asks of them and
    of librdkafka; raise C{SystemExit} with the reason.
    """
    from aisoc_inboxd.catalog import TemplateCatalog
    from aisoc_inboxd.normalizer import TemplateError
    from aisoc_inboxd.store import StoreError
    from aisoc_inboxd.store.preflight import check_reachable

    try:
        check_reachable(settings)
        catalog = TemplateCatalog.load_to_serve(settings.templates.directories, settings.templates.allowed)
        catalog.check_in_use(settings)
        if settings.sink.type == "kafka":
            from aisoc_inboxd.sinks.kafka import check_producer_config

            try:
                check_producer_config(settings.sink.kafka.config)
            except ValueError as e:
                raise ConfigError(f"sink.kafka.config: {e}") from None
    except (TemplateError, ConfigError, StoreError) as e:
        raise cannot_start(e) from None
    return catalog


def compose(settings: Settings, config: Path | None, reactor: Any) -> Any:
    """
    The daemon for C{settings} (read from C{config}), ready to start; raise C{SystemExit} with the
    reason when it cannot be built (an unreadable certificate or key file, a state directory that
    cannot be created).
    """
    from aisoc_inboxd.gc_pauses import freeze_startup_heap
    from aisoc_inboxd.keyfiles import KeyFileError
    from aisoc_inboxd.memory import bound_malloc_heap
    from aisoc_inboxd.wiring import build_daemon
    from aisoc_inboxd.store import StoreError

    bound_malloc_heap()
    catalog = prepare(settings)
    try:
        daemon = build_daemon(settings, catalog, reactor, config=config)
    except (ConfigError, StoreError, KeyFileError, OSError, ValueError) as e:
        raise cannot_start(e) from None
    # a start that fails is logged (one line) by the daemon, which stops the reactor: the process
    # exits with that line, and no "Unhandled error in Deferred" after it
    daemon.started.addCallbacks(lambda _: freeze_startup_heap(), lambda failure: None)
    return daemon


def makeService(options: Options, reactor: Any = None) -> IService:
    if reactor is None:
        from twisted.internet import reactor as installed

        reactor = installed
    daemon = compose(options["settings"], Path(options["config"]) if options["config"] else None, reactor)
    atexit.register(_exit_1_if_failed, daemon)
    return daemon


def _exit_1_if_failed(daemon: Any) -> None:
    """
    End a twistd/twist process whose daemon could not start with status 1: those runners exit 0
    once the reactor stops and give a service no way to say otherwise. Runs at interpreter exit,
    after twistd has removed its pid file and closed its log.
    """
    if daemon.start_failed:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
