"""
The C{aisoc-inboxd} command: run the daemon, and manage tokens, templates and the database.

Token commands talk to the same store the daemon uses (the SQLite file in the state directory, or
PostgreSQL), with the same code the admin API uses (L{TokenAdmin}).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence

from aisoc_inboxd.config import ConfigError, Settings, load_settings
from aisoc_inboxd.logs import FORMATS, LEVELS


class CommandError(Exception):
    """
    A command failed for a reason the operator can fix; printed without a traceback.
    """


DESCRIPTION = "The aisoc-inboxd command: run the daemon, and manage tokens, templates and the database."


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    config = Path(args.config) if args.config else None
    if args.command == "run":
        _run_daemon(config, args)
        return
    try:
        settings = load_settings(config)
        code = args.handler(settings, args)
    except (ConfigError, CommandError) as e:
        print(f"aisoc-inboxd: {e}", file=sys.stderr)
        code = 1
    sys.exit(code)


class _Parser(argparse.ArgumentParser):
    """
    Every command takes C{--config} before or after its name (C{aisoc-inboxd run --config X}).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # SUPPRESS: a command that is not given --config keeps the one given before its name
        self.add_argument("-c", "--config", default=argparse.SUPPRESS,
                          help="YAML config file (default: the embedded default)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="aisoc-inboxd", description=DESCRIPTION)
    parser.set_defaults(config=None)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the daemon in the foreground (logs to stdout)",
                              description="Run the daemon in the foreground, logging to stdout, until "
                                          "SIGTERM or Ctrl-C (exit 0); exit 1 when it cannot start.")
    run.add_argument("--log-format", choices=FORMATS, default="text",
                     help="text: one readable line per event (default); json: one JSON object per line")
    run.add_argument("--log-level", choices=LEVELS, default="info", help="the least severe events logged")

    token = commands.add_parser("token", help="mint, rotate, revoke and list inbox tokens").add_subparsers(
        dest="action", required=True)
    mint = _tenant_command(token, "mint", "mint a token; it is printed once and never stored", _token_mint)
    mint.add_argument("--template", required=True, help="template id, e.g. pagerduty or generic-json")
    mint.add_argument("--label", help="a note for operators, e.g. the vendor account")
    mint.add_argument("--signing-secret", help="require X-Signature = hex(HMAC-SHA256(secret, body))")
    mint.add_argument("--hec-acks", action="store_true",
                      help="Splunk HEC indexer acknowledgement: replies carry ackId, a channel is required")
    rotate = _tenant_command(token, "rotate", "replace a token with a new one (same template and label)",
                             _token_rotate, target=FINGERPRINT)
    rotate.add_argument("--signing-secret", help="set a new signing secret (default: keep the old one)")
    _tenant_command(token, "revoke", "stop a token resolving (within the 60 s cache TTL)", _token_revoke,
                    target=FINGERPRINT, with_json=False)
    _tenant_command(token, "list", "list a tenant's tokens (fingerprints only)", _token_list)
    _tenant_command(token, "stats", "a tenant's tokens with requests, errors and last request over 24 h",
                    _token_stats)
    deliveries = _tenant_command(token, "deliveries", "a token's recent deliveries, from the running daemon's "
                                                      "admin API", _token_deliveries, target=FINGERPRINT)
    deliveries.add_argument("--follow", "-f", action="store_true",
                            help="keep polling and print new deliveries as they arrive (Ctrl-C stops)")

    templates = commands.add_parser("templates", help="bundled and configured templates").add_subparsers(
        dest="action", required=True)
    templates.add_parser("list", help="list the templates tokens may use").set_defaults(handler=_templates_list)
    check = templates.add_parser("check", help="validate template files; exit 1 with file: key: messages")
    check.add_argument("paths", nargs="*", metavar="PATH",
                       help="template files or directories (default: the bundled and configured ones)")
    check.set_defaults(handler=_templates_check)
    render = templates.add_parser("render", help="print the OCSF a sample payload would become (dry run)")
    render.add_argument("template", metavar="ID", help="a configured template id, or a template file")
    render.add_argument("sample", metavar="SAMPLE", nargs="?",
                        help="a JSON object, array or NDJSON file; - reads stdin")
    render.add_argument("--delivery", metavar="FINGERPRINT:N",
                        help="instead of SAMPLE, the body (and headers) of a token's recent delivery N, from the "
                             "running daemon's admin API (needs --tenant)")
    render.add_argument("--tenant", help="the tenant of the --delivery token")
    render.add_argument("--header", action="append", default=[], metavar="NAME:VALUE",
                        help="a request header the template reads (header: sources), e.g. X-GitHub-Event:ping")
    render.add_argument("--validate", action="store_true", help="check every event against OCSF 1.8.0")
    render.set_defaults(handler=_templates_render)

    imap = commands.add_parser("imap", help="IMAP mailbox connectors (the Email Inbox connector)").add_subparsers(
        dest="action", required=True)
    add = _tenant_command(imap, "add", "add a mailbox to poll; its password is stored encrypted", _imap_add)
    add.add_argument("--host", required=True, help="e.g. imap.gmail.com")
    add.add_argument("--port", type=int, default=993)
    add.add_argument("--username", required=True, help="the mailbox login, e.g. aisoc-alerts@example.com")
    add.add_argument("--password-file", help="read the (app-specific) password from this file, - for stdin; "
                                             "default: $AISOC_INBOX_IMAP_PASSWORD, else a prompt")
    add.add_argument("--mailbox", default="INBOX")
    add.add_argument("--max-messages", type=int, default=50, help="messages taken per poll")
    add.add_argument("--no-ssl", dest="use_ssl", action="store_false",
                     help="plain IMAP without TLS: only on isolated networks")
    add.add_argument("--poll-interval", type=float, default=60.0, help="seconds between polls")
    add.add_argument("--template", default="email-forwarded")
    add.add_argument("--label", help="a note for operators")
    _tenant_command(imap, "list", "list a tenant's mailbox connectors (never their passwords)", _imap_list)
    _tenant_command(imap, "remove", "stop polling a mailbox and forget it", _imap_remove,
                    target=CONNECTOR, with_json=False)
    _tenant_command(imap, "test", "log in to a connector's mailbox and count its unseen messages", _imap_test,
                    target=CONNECTOR, with_json=False)

    db = commands.add_parser("db", help="database schema").add_subparsers(dest="action", required=True)
    db.add_parser("upgrade", help="apply pending migrations").set_defaults(handler=_db_upgrade)
    return parser


FINGERPRINT = ("fingerprint", "the token's fingerprint (at least 8 hex characters) or the token")
CONNECTOR = ("id", "the connector id (or a unique prefix of it)")


def _tenant_command(actions: Any, name: str, help: str, handler: Callable[..., int],
                    target: tuple[str, str] | None = None, with_json: bool = True) -> argparse.ArgumentParser:
    """
    A subcommand that works inside one tenant: C{--tenant}, the thing it acts on, C{--json}.
    """
    command: argparse.ArgumentParser = actions.add_parser(name, help=help)
    command.add_argument("--tenant", required=True)
    if target is not None:
        command.add_argument(target[0], help=target[1])
    if with_json:
        command.add_argument("--json", action="store_true", help="print JSON for scripts")
    command.set_defaults(handler=handler)
    return command


def _run_daemon(config: Path | None, args: argparse.Namespace) -> None:
    """
    Run the daemon as C{twist aisoc-inboxd} would, with readable logs unless JSON is asked for;
    a SIGTERM/SIGINT shutdown exits 0 (twist re-raises the signal), a daemon that could not start
    exits 1 after one line saying why.
    """
    from twisted.internet import reactor

    from aisoc_inboxd import logs, tap

    daemon = tap.compose(tap.settings_or_exit(config), config, reactor)
    logs.begin(sys.stdout, args.log_format, args.log_level).flush_per_turn(reactor)  # type: ignore[arg-type]
    reactor.callWhenRunning(daemon.startService)  # type: ignore[attr-defined]
    reactor.addSystemEventTrigger("before", "shutdown", daemon.stopService)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    sys.exit(1 if daemon.start_failed else 0)


def _with_store(settings: Settings, work: Callable[[Any], Awaitable[int]]) -> int:
    """
    Run C{work(store)} on a short-lived reactor with the store started and upgraded.
    """
    from twisted.internet import reactor, task
    from twisted.internet.defer import Deferred, maybeDeferred

    from aisoc_inboxd.store import UNAVAILABLE, StoreError
    from aisoc_inboxd.store.preflight import check_reachable
    from aisoc_inboxd.wiring import build_store

    try:
        check_reachable(settings)
        store = build_store(settings, reactor)
    except StoreError as e:
        raise CommandError(str(e)) from None
    outcome: dict[str, Any] = {}

    async def session() -> None:
        store.startService()
        try:
            await store.upgrade()
            outcome["code"] = await work(store)
        except (CommandError, StoreError) as e:
            outcome["error"] = e
        finally:
            await maybeDeferred(store.stopService)

    try:
        task.react(lambda _: Deferred.fromCoroutine(session()))
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            raise CommandError("the command failed; see the error above") from None
    error = outcome.get("error")
    if isinstance(error, StoreError) and error.reason in UNAVAILABLE:
        raise CommandError(f"the token store is unavailable: {error}")
    if error is not None:
        raise CommandError(str(error))
    return outcome["code"]


def _admin(settings: Settings, store: Any) -> Any:
    from twisted.internet import reactor

    from aisoc_inboxd.tokens import TokenAdmin

    catalog = _catalog(settings)
    return TokenAdmin(store, reactor, catalog.allowed), catalog


def _catalog(settings: Settings) -> Any:
    from aisoc_inboxd.catalog import TemplateCatalog
    from aisoc_inboxd.normalizer import TemplateError

    try:
        return TemplateCatalog.load(settings.templates.directories, settings.templates.allowed)
    except TemplateError as e:
        raise CommandError(str(e)) from None


def _token_mint(settings: Settings, args: argparse.Namespace) -> int:
    from aisoc_inboxd.tenants import InvalidTenant
    from aisoc_inboxd.tokens import UnknownTemplate

    async def work(store: Any) -> int:
        admin, catalog = _admin(settings, store)
        secret = args.signing_secret.encode("utf-8") if args.signing_secret else None
        try:
            minted = await admin.mint(args.tenant, args.template, args.label, secret, args.hec_acks)
        except UnknownTemplate:
            raise CommandError(f"unknown template {args.template!r}; allowed: {', '.join(catalog.ids())}") from None
        except InvalidTenant as e:
            raise CommandError(str(e)) from None
        _print_minted(minted, args.json, "Minted")
        return 0

    return _with_store(settings, work)


def _token_rotate(settings: Settings, args: argparse.Namespace) -> int:
    from aisoc_inboxd.tokens import UnknownToken

    async def work(store: Any) -> int:
        admin, _ = _admin(settings, store)
        secret = args.signing_secret.encode("utf-8") if args.signing_secret else None
        try:
            minted = await admin.rotate(args.tenant, args.fingerprint, secret)
        except UnknownToken as e:
            raise CommandError(str(e)) from None
        _print_minted(minted, args.json, "Rotated; the old token stops resolving within 60 s. New")
        return 0

    return _with_store(settings, work)


def _token_revoke(settings: Settings, args: argparse.Namespace) -> int:
    from aisoc_inboxd.tokens import UnknownToken, log_id

    async def work(store: Any) -> int:
        admin, _ = _admin(settings, store)
        try:
            old = await admin.revoke(args.tenant, args.fingerprint)
        except UnknownToken as e:
            raise CommandError(str(e)) from None
        print(f"Revoked {log_id(old.fingerprint)} ({old.template_id}); it stops resolving within 60 s.")
        return 0

    return _with_store(settings, work)


def _token_list(settings: Settings, args: argparse.Namespace) -> int:
    from aisoc_inboxd.tokens import token_row

    async def work(store: Any) -> int:
        admin, _ = _admin(settings, store)
        rows = [token_row(r) for r in await admin.list(args.tenant)]
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            print(f"{'FINGERPRINT':<18}{'TEMPLATE':<26}{'STATE':<9}{'SIGNED':<8}{'CREATED':<22}LABEL")
            for row in rows:
                print(f"{row['fingerprint'][:16]:<18}{row['template']:<26}{row['state']:<9}"
                      f"{'yes' if row['signed'] else 'no':<8}{row['created']:<22}{row['label'] or ''}")
        return 0

    return _with_store(settings, work)


def _token_stats(settings: Settings, args: argparse.Namespace) -> int:
    async def work(store: Any) -> int:
        admin, _ = _admin(settings, store)
        rows = await admin.stats(args.tenant)
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            print(f"{'FINGERPRINT':<18}{'TEMPLATE':<26}{'STATE':<9}{'REQUESTS':>9}{'ERRORS':>8}{'RATE':>8}  "
                  f"{'LAST SEEN':<22}LABEL")
            for row in rows:
                rate = "-" if row["error_rate_24h"] is None else f"{100 * row['error_rate_24h']:.1f}%"
                print(f"{row['fingerprint'][:16]:<18}{row['template']:<26}{row['state']:<9}"
                      f"{row['requests_24h']:>9}{row['errors_24h']:>8}{rate:>8}  {row['last_seen'] or 'never':<22}"
                      f"{row['label'] or ''}")
        return 0

    return _with_store(settings, work)


def _token_deliveries(settings: Settings, args: argparse.Namespace) -> int:
    from aisoc_inboxd.admin_client import AdminClient, AdminUnreachable
    from aisoc_inboxd.delivery_view import follow, key_of, print_deliveries

    try:
        client = AdminClient.of(settings)
        if args.follow:
            follow(client, args.tenant, key_of(args.fingerprint), args.json, sys.stdout)
        answer = client.deliveries(args.tenant, key_of(args.fingerprint))
    except AdminUnreachable as e:
        raise CommandError(str(e)) from None
    except KeyboardInterrupt:
        return 0
    if args.json:
        print(json.dumps(answer["deliveries"], indent=2))
    elif not answer["deliveries"]:
        print(f"no deliveries kept for {args.fingerprint} of tenant {args.tenant} (the daemon keeps the last "
              f"{answer['per_token']} per token, in memory, since it started)")
    else:
        print_deliveries(answer["deliveries"], False, sys.stdout, header=True)
    return 0


def _templates_list(settings: Settings, args: argparse.Namespace) -> int:
    catalog = _catalog(settings)
    for template_id in catalog.ids():
        template = catalog.get(template_id)
        print(f"{template_id:<28}{template.class_uid:<6}{template.vendor_name} {template.product_name}")
    return 0


def _templates_check(settings: Settings, args: argparse.Namespace) -> int:
    from aisoc_inboxd.catalog import bundled_templates_dir
    from aisoc_inboxd.normalizer.tools import check_paths

    paths = [Path(p) for p in args.paths] or [bundled_templates_dir(),
                                              *(Path(d) for d in settings.templates.directories)]
    loaded, problems = check_paths(paths)
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"{len(loaded)} template(s) ok, {len(problems)} problem(s)")
    return 1 if problems else 0


def _templates_render(settings: Settings, args: argparse.Namespace) -> int:
    from aisoc_inboxd.formats.json_body import BodyError
    from aisoc_inboxd.normalizer import TemplateError, load_template_file, validate_event
    from aisoc_inboxd.normalizer.tools import render

    if Path(args.template).suffix in (".yaml", ".yml"):
        try:
            template = load_template_file(Path(args.template))
        except TemplateError as e:
            raise CommandError(str(e)) from None
    else:
        catalog = _catalog(settings)
        template = catalog.get(args.template)
        if template is None:
            raise CommandError(f"unknown template {args.template!r}; allowed: {', '.join(catalog.ids())}")
    if (args.sample is None) == (args.delivery is None):
        raise CommandError("give one of a SAMPLE file and --delivery FINGERPRINT:N")
    source = args.sample or f"delivery {args.delivery}"
    headers: dict[str, str] = {}
    try:
        if args.delivery:
            body, headers = _recorded_delivery(settings, args.tenant, args.delivery)
        else:
            body = sys.stdin.buffer.read() if args.sample == "-" else Path(args.sample).read_bytes()
        headers.update(_header(h) for h in args.header)
        events = render(template, body, headers)
    except OSError as e:
        raise CommandError(f"{args.sample}: cannot read: {e.strerror}") from None
    except BodyError as e:
        raise CommandError(f"{source}: bad body: {e}") from None
    invalid = 0
    for index, event in enumerate(events):
        print(json.dumps(event, indent=2, ensure_ascii=False))
        for error in validate_event(event) if args.validate else ():
            print(f"event {index}: {error}", file=sys.stderr)
            invalid += 1
    if not events:
        print(f"{source}: acknowledged without publishing (0 events)", file=sys.stderr)
    return 1 if invalid else 0


def _recorded_delivery(settings: Settings, tenant: str | None, reference: str) -> tuple[bytes, dict[str, str]]:
    """
    The body and the (unredacted) headers of a token's recent delivery C{FINGERPRINT:N}.
    """
    from aisoc_inboxd.admin_client import AdminClient, AdminUnreachable
    from aisoc_inboxd.delivery_view import key_of, recorded_body

    key, colon, number = reference.rpartition(":")
    if not colon or not key or not number.isdigit():
        raise CommandError(f"--delivery {reference!r}: expected FINGERPRINT:N, e.g. 3f9a01bc:2")
    if tenant is None:
        raise CommandError("--delivery needs --tenant: deliveries are read within a tenant")
    try:
        kept = AdminClient.of(settings).deliveries(tenant, key_of(key))["deliveries"]
    except AdminUnreachable as e:
        raise CommandError(str(e)) from None
    delivery = next((d for d in kept if d["n"] == int(number)), None)
    if delivery is None:
        raise CommandError(f"delivery {number} of token {key} (tenant {tenant}) is not kept: "
                           f"aisoc-inboxd token deliveries --tenant {tenant} {key} lists those that are")
    try:
        return recorded_body(delivery)
    except ValueError as e:
        raise CommandError(f"delivery {reference}: {e}") from None


def _header(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    if not colon or not name.strip():
        raise CommandError(f"--header {text!r}: expected NAME:VALUE")
    return name.strip(), value.strip()


def _db_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    async def work(store: Any) -> int:
        print(f"schema at version {await store.upgrade()}")
        return 0

    return _with_store(settings, work)


def _imap_add(settings: Settings, args: argparse.Namespace) -> int:
    import os
    import secrets
    import time

    from aisoc_inboxd.store import ImapConnectorRecord
    from aisoc_inboxd.tenants import InvalidTenant, check_tenant_id

    try:
        check_tenant_id(args.tenant)
    except InvalidTenant as e:
        raise CommandError(str(e)) from None
    if not 1 <= args.port <= 65535 or args.max_messages < 1 or args.poll_interval <= 0:
        raise CommandError("--port must be 1-65535, --max-messages at least 1, --poll-interval above 0")
    catalog = _catalog(settings)
    if not catalog.allowed(args.template):
        raise CommandError(f"unknown template {args.template!r}; allowed: {', '.join(catalog.ids())}")
    password = _imap_password(args.password_file, os.environ.get("AISOC_INBOX_IMAP_PASSWORD"))
    record = ImapConnectorRecord(
        uid=secrets.token_hex(8), tenant_id=args.tenant, host=args.host, username=args.username,
        password=password, port=args.port, mailbox=args.mailbox, max_messages=args.max_messages,
        use_ssl=args.use_ssl, poll_interval=args.poll_interval, template_id=args.template,
        label=args.label, created_at=time.time())

    async def work(store: Any) -> int:
        await store.insert_imap_connector(record)
        if args.json:
            print(json.dumps(_imap_row(record)))
        else:
            print(f"Added IMAP connector {record.uid} for tenant {record.tenant_id}: "
                  f"{record.username}@{record.host}:{record.port}/{record.mailbox}. A running daemon "
                  f"starts polling it within {settings.imap.refresh_interval:g} s.")
        return 0

    return _with_store(settings, work)


def _imap_password(path: str | None, from_environment: str | None) -> str:
    if path == "-":
        password = sys.stdin.readline().rstrip("\r\n")
    elif path:
        try:
            password = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as e:
            raise CommandError(f"cannot read the password file {path}: {e.strerror}") from None
    elif from_environment:
        password = from_environment
    else:
        import getpass

        password = getpass.getpass("IMAP password (app-specific): ")
    if not password:
        raise CommandError("the IMAP password is empty")
    return password


def _imap_row(record: Any) -> dict[str, Any]:
    """
    A connector as C{imap list} shows it: never its password.
    """
    import time

    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created_at))
    return {"id": record.uid, "tenant": record.tenant_id, "host": record.host, "port": record.port,
            "username": record.username, "mailbox": record.mailbox, "max_messages": record.max_messages,
            "use_ssl": record.use_ssl, "poll_interval": record.poll_interval, "template": record.template_id,
            "label": record.label, "created": created}


async def _imap_find(store: Any, tenant: str, prefix: str) -> Any:
    matches = [c for c in await store.list_imap_connectors(tenant) if c.uid.startswith(prefix.lower())]
    if len(matches) != 1:
        raise CommandError(f"tenant {tenant} has {'no' if not matches else 'more than one'} IMAP connector "
                           f"matching {prefix!r}; see aisoc-inboxd imap list --tenant {tenant}")
    return matches[0]


def _imap_list(settings: Settings, args: argparse.Namespace) -> int:
    async def work(store: Any) -> int:
        rows = [_imap_row(c) for c in await store.list_imap_connectors(args.tenant)]
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            print(f"{'ID':<18}{'MAILBOX':<44}{'TLS':<5}{'MAX':<5}{'EVERY':<7}{'TEMPLATE':<26}LABEL")
            for row in rows:
                where = f"{row['username']}@{row['host']}:{row['port']}/{row['mailbox']}"
                print(f"{row['id']:<18}{where:<44}{'yes' if row['use_ssl'] else 'no':<5}"
                      f"{row['max_messages']:<5}{row['poll_interval']:<7g}{row['template']:<26}{row['label'] or ''}")
        return 0

    return _with_store(settings, work)


def _imap_remove(settings: Settings, args: argparse.Namespace) -> int:
    async def work(store: Any) -> int:
        connector = await _imap_find(store, args.tenant, args.id)
        await store.remove_imap_connector(args.tenant, connector.uid)
        print(f"Removed IMAP connector {connector.uid}; a running daemon stops polling it within "
              f"{settings.imap.refresh_interval:g} s.")
        return 0

    return _with_store(settings, work)


def _imap_test(settings: Settings, args: argparse.Namespace) -> int:
    from twisted.internet.threads import deferToThread

    from aisoc_inboxd.imap import ImapSession, error_outcome

    async def work(store: Any) -> int:
        connector = await _imap_find(store, args.tenant, args.id)
        session = ImapSession(connector, settings.imap)
        where = f"{connector.username}@{connector.host}:{connector.port}/{connector.mailbox}"
        try:
            unseen = await deferToThread(session.check)
        except Exception as e:
            print(f"FAILED ({error_outcome(e)}): {where}: {type(e).__name__}: {e}")
            return 1
        finally:
            await deferToThread(session.close)
        print(f"OK: logged in to {where}; {unseen} unseen message(s) waiting")
        return 0

    return _with_store(settings, work)


def _print_minted(minted: Any, as_json: bool, verb: str) -> None:
    if as_json:
        print(json.dumps(minted.as_dict()))
        return
    info = minted.as_dict()
    print(f"{verb} token for tenant {info['tenant']} with template {info['template']}.\n"
          f"It is shown once and never stored; keep it like a password.\n\n"
          f"  token:       {info['token']}\n"
          f"  fingerprint: {info['fingerprint']}\n"
          f"  webhook URL: https://<this host>{info['path']}")


if __name__ == "__main__":
    main()
