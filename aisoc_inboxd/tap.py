"""
The twistd/twist plugin's composition root: C{twistd -n aisoc-inboxd --config PATH}.

Everything that can be checked before the reactor runs is checked here, so a bad config, a bad
template or an unreachable PostgreSQL stops start-up at once with a message instead of a daemon
that runs but cannot work.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.application.service import IService
from twisted.python import usage

from aisoc_inboxd.config import ConfigError, Settings, load_settings


class Options(usage.Options):
    synopsis = "[--config PATH]"
    longdesc = ("Universal capture for AiSOC: webhooks, email, CEF over syslog and Splunk HEC into OCSF. "
                "Without --config the daemon runs on the embedded default (SQLite and an NDJSON log in "
                "./state, HTTP on 127.0.0.1:8080, metrics on 127.0.0.1:9108). AISOC_INBOX_* environment "
                "variables override the file (see the README).")
    optParameters = [["config", "c", None, "YAML config file (see etc/inboxd.yaml)"]]

    def postOptions(self) -> None:
        try:
            self["settings"] = load_settings(Path(self["config"]) if self["config"] else None)
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None


def prepare(settings: Settings) -> Any:
    """
    Load the templates and check the store can be reached; raise C{SystemExit} with the reason.
    """
    from aisoc_inboxd.catalog import TemplateCatalog
    from aisoc_inboxd.normalizer import TemplateError
    from aisoc_inboxd.store import StoreError
    from aisoc_inboxd.store.preflight import check_reachable

    try:
        check_reachable(settings)
        catalog = TemplateCatalog.load(settings.templates.directories, settings.templates.allowed)
    except (TemplateError, StoreError) as e:
        raise SystemExit(f"aisoc-inboxd: cannot start: {e}") from None
    return catalog


def makeService(options: Options, reactor: Any = None) -> IService:
    from aisoc_inboxd.service import build_daemon

    if reactor is None:
        from twisted.internet import reactor as installed

        reactor = installed
    settings: Settings = options["settings"]
    config = Path(options["config"]) if options["config"] else None
    return build_daemon(settings, prepare(settings), reactor, config=config)
