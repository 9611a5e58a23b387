"""The `passgate` command line.

Every command reads and checks the settings first (`load_settings`): a mistake ends the command before it
touches anything, with one line per mistake on stderr and exit status 2. `--json` prints one JSON object;
a reader that goes away (`| head -c1`) ends the command quietly.
"""

from __future__ import annotations

import argparse
import errno
import getpass
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from passgate.config import (
    MIN_SECRET_KEY_LENGTH,
    InvalidConfiguration,
    Settings,
    generate_secret_key,
    load_settings,
    redact_url,
)
from passgate.runtime import run_event_loop, tune_gc

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from passgate.bootstrap import Registry
    from passgate.webhooks.services import WebhookService

EPILOG = """\
environment: PASSGATE_DATABASE_URL (default sqlite:///./passgate.db), PASSGATE_PUBLIC_URL, PASSGATE_SMTP_URL,
PASSGATE_SMS_PROVIDER, PASSGATE_REDIS_URL, PASSGATE_SECRET_KEYS, ... (see README.md, "Configuration").
"""


class CommandError(Exception):
    """A refusal worth one line on stderr (`passgate: …`), exit status 1."""


# -- settings, database, output ------------------------------------------------------------------------


def _settings() -> Settings:
    return load_settings()


def _engine_migrated(settings: Settings) -> Any:
    from sqlalchemy.exc import OperationalError

    from passgate.db import make_engine
    from passgate.migrate import upgrade

    engine = make_engine(settings.database_url)
    try:
        upgrade(engine)
    except OperationalError as exc:
        engine.dispose()
        # The driver's first line says why (refused, unknown host, bad password, no such folder).
        why = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
        raise CommandError(
            f"cannot use the database {redact_url(settings.database_url)}: {why} (passgate check tells more)"
        ) from None
    return engine


@contextmanager
def _database(settings: Settings) -> Iterator[Any]:
    """A session factory on the migrated database, for commands that only read and write rows."""
    from passgate.db import make_sessionmaker

    engine = _engine_migrated(settings)
    try:
        yield make_sessionmaker(engine)
    finally:
        engine.dispose()


@contextmanager
def _registry(settings: Settings) -> Iterator[Registry]:
    """Everything `passgate serve` builds, for commands that go through the services (hashing, audit)."""
    from passgate.bootstrap import build_registry

    _engine_migrated(settings).dispose()
    registry = build_registry(settings)
    try:
        yield registry
    finally:
        registry.close()


@contextmanager
def _unit(factory: Any) -> Iterator[Session]:
    from passgate.auth.exceptions import NotFound
    from passgate.console.exceptions import InvalidUser
    from passgate.db import transaction

    try:
        with transaction(factory) as session:
            yield session
    except NotFound as exc:
        hint = " (passgate client list shows them)" if exc.what == "client" else ""
        raise CommandError(f"no {exc.what} {exc.ident!r}{hint}") from None
    except InvalidUser as exc:
        raise CommandError(exc.message if exc.field == "email" else str(exc)) from None


def _actor() -> str:
    """How the audit log names a change made from the command line."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _out(args: argparse.Namespace, data: dict[str, Any], human: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps(data))
    else:
        print(human)


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, str]], empty: str) -> str:
    """Rows as aligned columns under a header; `columns` are (key, header)."""
    if not rows:
        return empty

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, list):
            return " ".join(map(str, value)) or "-"
        return str(value).replace("\n", " ")

    table = [[header.upper() for _, header in columns]] + [[cell(r.get(k)) for k, _ in columns] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in table
    )


# -- serve, worker, migrate, demo, keys, check ------------------------------------------------------------


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything else starts, so a taken port is said in one line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            why = f"port {port} is in use on {host}; choose another with --port"
        elif exc.errno == errno.EACCES:
            why = f"port {port} on {host} needs privileges this user lacks; choose one above 1023 with --port"
        elif exc.errno == errno.EADDRNOTAVAIL or isinstance(exc, socket.gaierror):
            why = f"cannot listen on {host}: not an address of this machine; choose another with --host"
        else:
            why = f"cannot listen on {host}:{port}: {exc.strerror or exc}"
        raise CommandError(why, 2) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def default_public_url(host: str, port: int) -> str:
    """The base of emailed links when PASSGATE_PUBLIC_URL is unset: where `serve` listens (loopback when it
    listens on every address, since no one name is known for the machine)."""
    if host in ("0.0.0.0", "::", ""):  # noqa: S104  (a comparison, not a bind)
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def api_processes_refusal(settings: Settings, processes: int) -> str | None:
    """Why `passgate serve` may not run this many API processes with these settings (None: it may)."""
    if processes <= 1:
        return None
    if settings.database_url.startswith("sqlite"):
        return (
            f"--workers {processes} needs PostgreSQL: SQLite has one writer, and more API processes "
            "only wait for its lock (run one, with `passgate worker` beside it)"
        )
    if not settings.redis_url:
        return (
            f"--workers {processes} needs PASSGATE_REDIS_URL: without Redis each process keeps its own "
            f"rate limits, so every limit would allow {processes} times what it says"
        )
    return None


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings()
    processes = args.workers if args.workers is not None else settings.api_workers
    refusal = api_processes_refusal(settings, processes)
    if refusal:
        raise CommandError(refusal, 2)
    if "public_url" not in settings.model_fields_set:
        settings = settings.model_copy(update={"public_url": default_public_url(args.host, args.port)})
    sock = _listen(args.host, args.port)
    # Imported once the settings and the port are known good: a refusal comes at once.
    from passgate.main import create_app
    from passgate.observability import configure_logging

    configure_logging(settings.log_level)
    _engine_migrated(settings).dispose()
    app = create_app(settings)
    delivery = None
    if settings.workers_in_process == "process":
        from passgate.supervisor import WorkerProcess

        # The delivery workers in a child process this one supervises; links in messages as served here.
        # Started once the app is built: on a busy machine the two starting side by side delayed the API.
        delivery = WorkerProcess({**os.environ, "PASSGATE_PUBLIC_URL": settings.public_url})
        delivery.start()
        if processes == 1:
            app.state.registry.notifier.callbacks.append(delivery.wake)

            # Stopped with the app: uvicorn re-raises the SIGTERM it caught once it has shut down, which
            # ends this process before the `finally` below could run.
            async def stop_delivery(_app: Any, worker: WorkerProcess = delivery) -> None:
                import asyncio

                await asyncio.to_thread(worker.stop)

            app.state.registry.shutdown.append(stop_delivery)
    try:
        return _serve(args, settings, app, sock, processes)
    finally:
        if delivery is not None:
            delivery.stop()


def _serve(args: argparse.Namespace, settings: Settings, app: Any, sock: Any, processes: int) -> int:
    import uvicorn

    from passgate.httpserver import limited_protocol

    served = f"http://[{args.host}]:{args.port}" if ":" in args.host else f"http://{args.host}:{args.port}"
    print(
        f"Passgate serving on {served}  (API docs: /docs"
        + (", dev inbox: /dev/inbox" if settings.dev_inbox_enabled else "")
        + f"; database: {redact_url(settings.database_url)}"
        + (f"; links in messages: {settings.public_url}" if settings.public_url != served else "")
        + ")",
        file=sys.stderr,
        flush=True,
    )
    tune_gc()
    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "log_config": None,
        "access_log": False,
        "proxy_headers": True,
        "timeout_keep_alive": settings.http_keepalive_seconds,
    }
    if processes == 1:
        config = uvicorn.Config(app, http=limited_protocol(http_limits(settings)), **options)
        uvicorn.Server(config).run(sockets=[sock])
        return 0
    # N processes on the one socket bound above, each building its own app from the same environment
    # (links included: the public URL chosen here is handed down). SIGHUP replaces them one by one, each
    # new process serving before its old one stops; SIGTERM stops them all, each finishing its requests.
    os.environ["PASSGATE_PUBLIC_URL"] = settings.public_url
    config = uvicorn.Config(
        "passgate.main:create_app_in_worker_process",
        factory=True,
        workers=processes,
        http="passgate.httpserver:SettingsLimitedProtocol",
        **options,
    )
    from uvicorn.supervisors import Multiprocess

    Multiprocess(config, sockets=[sock]).run()
    return 0


def http_limits(settings: Settings) -> Any:
    from passgate.httpserver import HttpLimits

    return HttpLimits(
        max_header_bytes=settings.http_max_header_bytes,
        header_timeout=settings.http_header_timeout_seconds,
        body_timeout=settings.http_body_timeout_seconds,
    )


def cmd_worker(args: argparse.Namespace) -> int:
    settings = _settings()
    import asyncio
    import signal

    from passgate.bootstrap import build_registry
    from passgate.observability import configure_logging
    from passgate.worker import Worker

    configure_logging(settings.log_level)
    _engine_migrated(settings).dispose()
    try:
        registry = build_registry(settings)
    except ValueError as exc:
        raise SystemExit(f"passgate: invalid configuration: {exc}") from None
    worker = Worker(registry, poll_interval=args.poll)
    checkpointer = registry.committer.checkpointer
    if args.wake_fd is not None and checkpointer is not None:
        # `passgate serve`'s child: serve checkpoints the SQLite log for as long as this process runs.
        checkpointer.interval = 0
    tune_gc()
    unset = "public_url" not in settings.model_fields_set
    print(
        f"Passgate worker {registry.dispatcher.worker_id} running (Ctrl-C to stop); links in messages: "
        f"{settings.public_url}" + (" (PASSGATE_PUBLIC_URL is unset)" if unset else ""),
        file=sys.stderr,
        flush=True,
    )

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, worker.stop)
        if args.wake_fd is not None:
            # `passgate serve`'s child (passgate.supervisor): a byte on the pipe is a nudge; its end closed
            # means serve is gone, and so the worker stops.
            def nudged() -> None:
                try:
                    data = os.read(args.wake_fd, 4096)
                except BlockingIOError:
                    return
                if data:
                    worker.wake()
                    return
                loop.remove_reader(args.wake_fd)
                worker.stop()

            os.set_blocking(args.wake_fd, False)
            loop.add_reader(args.wake_fd, nudged)
        # The worker's writes go through the group committer too: on SQLite, no thread takes turns
        # with the loop at the GIL and at the write lock.
        registry.committer.start()
        try:
            await worker.run()
        finally:
            registry.committer.stop()

    try:
        run_event_loop(main())
    finally:
        registry.close()
    return 0


def cmd_bounces(args: argparse.Namespace) -> int:
    settings = _settings()
    import signal
    import threading

    from passgate.bootstrap import build_bounce_intake, build_registry
    from passgate.messaging.bounce_listener import BounceListener
    from passgate.observability import configure_logging

    configure_logging(settings.log_level)
    _engine_migrated(settings).dispose()
    try:
        registry = build_registry(settings)
    except ValueError as exc:
        raise SystemExit(f"passgate: invalid configuration: {exc}") from None
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        listener = BounceListener(build_bounce_intake(registry), args.host, args.port).start()
    except OSError as exc:
        registry.close()
        raise CommandError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    domain = (
        settings.bounce_domain or "(PASSGATE_BOUNCE_DOMAIN is unset: no mail is sent with a bounce address)"
    )
    print(
        f"Passgate bounces listening on {args.host}:{args.port} (SMTP) for "
        f"{settings.bounce_local_part}+…@{domain} (Ctrl-C to stop)",
        file=sys.stderr,
        flush=True,
    )
    try:
        stop.wait()
    finally:
        listener.stop()
        registry.close()
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = _settings()
    engine = _engine_migrated(settings)
    engine.dispose()
    _out(args, {"status": "ok"}, f"database is up to date ({redact_url(settings.database_url)})")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from passgate.demo import DemoFailed, run_demo

    settings = _settings()
    data_dir = Path(args.data_dir) if args.data_dir else None
    try:
        result = run_demo(
            settings,
            data_dir,
            say=(lambda _: None) if args.json else print,
            own_server=args.own_server,
        )
    except DemoFailed as exc:
        raise CommandError(f"demo: {exc}") from None
    if args.json:
        print(json.dumps(result))
    return 0 if result["status"] == "VERIFIED" else 1


def cmd_keys_generate(args: argparse.Namespace) -> int:
    key = generate_secret_key()
    _out(args, {"secretKey": key}, key)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from passgate.doctor import FAIL, run_checks

    settings = _settings()
    checks = run_checks(settings, timeout=args.timeout)
    failed = [c for c in checks if c.status == FAIL]
    human = _table(
        [c.view() for c in checks], [("name", "check"), ("status", "status"), ("detail", "detail")], ""
    )
    summary = (
        f"{len(failed)} check{'s' if len(failed) != 1 else ''} failed" if failed else "all checks passed"
    )
    _out(args, {"ok": not failed, "checks": [c.view() for c in checks]}, f"{human}\n{summary}")
    return 1 if failed else 0


# -- clients ---------------------------------------------------------------------------------------------

CLIENT_COLUMNS = [
    ("clientId", "client id"),
    ("name", "name"),
    ("country", "country"),
    ("sandbox", "sandbox"),
    ("activeKeys", "keys"),
    ("consoleUsers", "users"),
    ("disabledAt", "disabled"),
    ("createdAt", "created"),
]
KEY_COLUMNS = [
    ("keyId", "key id"),
    ("clientId", "client id"),
    ("name", "name"),
    ("prefix", "prefix"),
    ("scopes", "scopes"),
    ("lastUsedAt", "last used"),
    ("revokedAt", "revoked"),
]
USER_COLUMNS = [
    ("email", "email"),
    ("clientId", "client id"),
    ("role", "role"),
    ("lastSignInAt", "last sign-in"),
    ("disabledAt", "disabled"),
    ("userId", "user id"),
]


def cmd_client_create(args: argparse.Namespace) -> int:
    from passgate.auth.services import create_client
    from passgate.clock import SystemClock

    country = args.country.upper()
    if len(country) != 2 or not country.isalpha():
        raise CommandError("--country takes a two-letter ISO 3166 code, e.g. US")
    settings = _settings()
    with _database(settings) as sessions, _unit(sessions) as session:
        client = create_client(session, args.name, country, args.sandbox, SystemClock().now())
        cid = client.id
    _out(
        args,
        {"clientId": cid, "name": args.name, "country": country, "sandbox": args.sandbox},
        f"Created client {args.name!r}: clientId {cid}\n"
        f"Next: passgate apikey create --client {cid} [--scope admin]",
    )
    return 0


def cmd_client_list(args: argparse.Namespace) -> int:
    from passgate.operator import list_clients

    with _database(_settings()) as sessions, _unit(sessions) as session:
        items = list_clients(session)
    _out(args, {"items": items}, _table(items, CLIENT_COLUMNS, "no clients yet (passgate client create)"))
    return 0


def cmd_client_show(args: argparse.Namespace) -> int:
    from passgate.operator import show_client

    with _database(_settings()) as sessions, _unit(sessions) as session:
        view = show_client(session, args.client)
    state = f"disabled since {view['disabledAt']}" if view["disabledAt"] else "active"
    human = "\n".join(
        [
            f"{view['name']} ({view['clientId']}): {state}; country {view['country']}"
            + (", sandbox" if view["sandbox"] else "")
            + f"; created {view['createdAt']}",
            "",
            "API keys:",
            _table(view["apiKeys"], KEY_COLUMNS, "  none"),
            "",
            "Console users:",
            _table(view["users"], USER_COLUMNS, "  none"),
            "",
            "Webhook endpoints:",
            _table(
                view["webhookEndpoints"],
                [
                    ("id", "endpoint id"),
                    ("url", "url"),
                    ("enabled", "enabled"),
                    ("signatureScheme", "scheme"),
                ],
                "  none",
            ),
            "",
            "Messages: " + ", ".join(f"{n} {s}" for s, n in view["messages"].items()),
        ]
    )
    _out(args, view, human)
    return 0


def _client_disabled(args: argparse.Namespace, disabled: bool) -> int:
    from passgate.audit.services import record as audit
    from passgate.clock import SystemClock
    from passgate.operator import set_client_disabled

    with _database(_settings()) as sessions, _unit(sessions) as session:
        now = SystemClock().now()
        view = set_client_disabled(session, args.client, disabled, now)
        action = "client.disabled" if disabled else "client.enabled"
        audit(session, args.client, _actor(), action, args.client, now)
    if disabled:
        human = (
            f"Client {args.client} disabled: no new tokens, tokens already issued refused within "
            "PASSGATE_KEY_CACHE_SECONDS, no console sign-in. Undo with: passgate client enable "
            f"{args.client}"
        )
    else:
        human = f"Client {args.client} enabled again."
    _out(args, view, human)
    return 0


def cmd_client_disable(args: argparse.Namespace) -> int:
    return _client_disabled(args, True)


def cmd_client_enable(args: argparse.Namespace) -> int:
    return _client_disabled(args, False)


# -- API keys --------------------------------------------------------------------------------------------


def cmd_apikey_create(args: argparse.Namespace) -> int:
    from passgate.auth.exceptions import TooManyKeys
    from passgate.auth.services import create_api_key
    from passgate.clock import SystemClock

    settings = _settings()
    scopes = ["admin"] if args.scope == "admin" else []
    try:
        with _database(settings) as sessions, _unit(sessions) as session:
            created = create_api_key(session, args.client, scopes, SystemClock().now(), name=args.name)
            secret, key_id, granted = created.secret, created.key.id, created.key.scopes.split()
    except TooManyKeys as exc:
        raise CommandError(f"{exc} (revoke one with: passgate apikey revoke KEY_ID)") from None
    _out(
        args,
        {"apiKey": secret, "keyId": key_id, "clientId": args.client, "scopes": granted},
        f"API key (shown once, store it now): {secret}\nkey id: {key_id}; scopes: {' '.join(granted)}",
    )
    return 0


def cmd_apikey_list(args: argparse.Namespace) -> int:
    from passgate.operator import list_keys

    with _database(_settings()) as sessions, _unit(sessions) as session:
        items = list_keys(session, args.client)
    _out(args, {"items": items}, _table(items, KEY_COLUMNS, "no API keys"))
    return 0


def cmd_apikey_revoke(args: argparse.Namespace) -> int:
    from passgate.audit.services import record as audit
    from passgate.auth.services import revoke_api_key
    from passgate.clock import SystemClock
    from passgate.operator import get_key, key_view

    with _database(_settings()) as sessions, _unit(sessions) as session:
        key = get_key(session, args.key_id)
        now = SystemClock().now()
        was_active = key.revoked_at is None
        revoke_api_key(session, key.client_id, key.id, now)
        if was_active:
            audit(session, key.client_id, _actor(), "apikey.revoked", key.id, now)
        view = key_view(key)
    human = (
        f"Key {view['keyId']} of client {view['clientId']} revoked: its tokens stop working within "
        "PASSGATE_KEY_CACHE_SECONDS."
        if was_active
        else f"Key {view['keyId']} was already revoked ({view['revokedAt']})."
    )
    _out(args, view, human)
    return 0


# -- console users ---------------------------------------------------------------------------------------


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        # One line; a trailing newline from `echo` or a file is not part of the password.
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise CommandError("no terminal to ask for the password; use --password-stdin")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Password again: "):
        raise CommandError("the passwords differ")
    return first


def cmd_user_create(args: argparse.Namespace) -> int:
    from passgate.console.exceptions import InvalidUser, UserExists
    from passgate.console.routes.common import auth_service
    from passgate.db import transaction

    settings = _settings()
    password = _read_password(args)
    with _registry(settings) as registry:
        try:
            with transaction(registry.sessions) as session:
                user = auth_service(registry).create_user(
                    session, args.client, args.email, password, args.role, registry.clock.now()
                )
                user_id, email = user.id, user.email
        except (InvalidUser, UserExists) as exc:
            raise CommandError(str(exc)) from None
    _out(
        args,
        {"userId": user_id, "email": email, "clientId": args.client, "role": args.role},
        f"Created console user {email} ({args.role}) for client {args.client}: userId {user_id}\n"
        f"Sign in at {settings.public_url}/console",
    )
    return 0


def cmd_user_list(args: argparse.Namespace) -> int:
    from passgate.operator import list_users

    with _database(_settings()) as sessions, _unit(sessions) as session:
        items = list_users(session, args.client)
    _out(args, {"items": items}, _table(items, USER_COLUMNS, "no console users (passgate user create)"))
    return 0


def _change_user(
    args: argparse.Namespace, change: Callable[[Any, Session, Any, Any], str], action: str
) -> dict[str, Any]:
    """Find the user by email, apply `change` (which returns the audit details' note), record it."""
    from passgate.audit.services import record as audit
    from passgate.console.routes.common import auth_service
    from passgate.operator import user_view

    settings = _settings()
    password = _read_password(args) if action == "console_user.password_reset" else None
    with _registry(settings) as registry, _unit(registry.sessions) as session:
        auth = auth_service(registry)
        user = auth.user_by_email(session, args.email)
        now = registry.clock.now()
        note = change(auth, session, user, password)
        audit(session, user.client_id, _actor(), action, user.email, now, {"note": note} if note else None)
        return {**user_view(user), "note": note}


def cmd_user_disable(args: argparse.Namespace) -> int:
    def change(auth: Any, session: Session, user: Any, _: Any) -> str:
        ended = auth.set_disabled(session, user, True, auth.clock.now())
        return f"{ended} signed-in session{'s' if ended != 1 else ''} ended"

    view = _change_user(args, change, "console_user.disabled")
    _out(args, view, f"Console user {view['email']} disabled; {view['note']}.")
    return 0


def cmd_user_enable(args: argparse.Namespace) -> int:
    def change(auth: Any, session: Session, user: Any, _: Any) -> str:
        auth.set_disabled(session, user, False, auth.clock.now())
        return ""

    view = _change_user(args, change, "console_user.enabled")
    _out(args, view, f"Console user {view['email']} enabled again.")
    return 0


def cmd_user_reset_password(args: argparse.Namespace) -> int:
    def change(auth: Any, session: Session, user: Any, password: Any) -> str:
        ended = auth.set_password(session, user, password, auth.clock.now())
        return f"{ended} signed-in session{'s' if ended != 1 else ''} ended"

    view = _change_user(args, change, "console_user.password_reset")
    _out(args, view, f"New password set for {view['email']}; {view['note']}.")
    return 0


def cmd_user_role(args: argparse.Namespace) -> int:
    def change(auth: Any, session: Session, user: Any, _: Any) -> str:
        before = user.role
        auth.set_role(session, user, args.role, auth.clock.now())
        return f"{before} -> {args.role}"

    view = _change_user(args, change, "console_user.role_changed")
    _out(args, view, f"{view['email']} is now {view['role']} ({view['note']}).")
    return 0


# -- destinations, messages, webhooks --------------------------------------------------------------------


def cmd_destination_unlock(args: argparse.Namespace) -> int:
    from passgate.audit.services import record as audit
    from passgate.mfa.exceptions import InvalidDestination
    from passgate.operator import get_client

    channel, value = ("EMAIL", args.email) if args.email is not None else ("SMS", args.phone)
    with _registry(_settings()) as registry, _unit(registry.sessions) as session:
        get_client(session, args.client)
        try:
            result = registry.mfa.unlock_destination(session, args.client, channel, value)
        except InvalidDestination as exc:
            raise CommandError(f"--{'email' if channel == 'EMAIL' else 'phone'}: {exc}") from None
        audit(
            session,
            args.client,
            _actor(),
            "destination.unlocked",
            result.masked,
            registry.clock.now(),
            {"channel": result.channel, "failures": result.failures, "locked": result.locked},
        )
    from passgate.api.views import unlock_view

    view = {**unlock_view(result), "clientId": args.client}
    if view["cleared"]:
        human = (
            f"{result.masked} unlocked for client {args.client}: {result.failures} consecutive failures"
            + (" and the lock cleared." if result.locked else " cleared.")
        )
    else:
        human = f"{result.masked} had no failures to clear for client {args.client}."
    _out(args, view, human)
    return 0


def cmd_messages_list(args: argparse.Namespace) -> int:
    from passgate.operator import list_messages

    with _database(_settings()) as sessions, _unit(sessions) as session:
        items = list_messages(session, args.client, args.status, args.limit)
    columns = [
        ("messageId", "message id"),
        ("clientId", "client id"),
        ("channel", "channel"),
        ("destination", "to"),
        ("template", "template"),
        ("status", "status"),
        ("attempts", "tries"),
        ("lastError", "last error"),
        ("createdAt", "created"),
    ]
    _out(args, {"items": items}, _table(items, columns, "no messages"))
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from passgate.retention.services import BatchDone, configured_defaults, purge_once

    settings = _settings()
    last = [time.monotonic()]

    def progress(done: BatchDone) -> None:
        # A line a second at most on stderr, so a long first purge shows it is moving.
        if time.monotonic() - last[0] >= 1.0:
            last[0] = time.monotonic()
            total = sum(done.report.removed.values())
            print(
                f"passgate purge: {done.report.batches} batches, {total} rows so far "
                f"({done.step.kind.value} of client {done.step.client_id})",
                file=sys.stderr,
                flush=True,
            )

    with _database(settings) as sessions:
        report = purge_once(
            sessions,
            datetime.now(UTC),
            args.batch_size,
            defaults=configured_defaults(settings),
            dry_run=args.dry_run,
            pause=args.pause,
            on_batch=progress,
        )
    rows = [{"table": t, "rows": n} for t, n in sorted(report.removed.items())]
    verb = "would remove" if args.dry_run else "removed"
    total = sum(report.removed.values())
    human = _table(rows, [("table", "table"), ("rows", verb)], "nothing") + (
        f"\n{total} rows {verb} for {report.clients} clients in {report.batches} batches, "
        f"{report.seconds:.1f} s"
    )
    _out(args, report.as_dict(), human)
    return 0


def _webhooks_service(registry: Registry) -> WebhookService:
    return registry.webhooks


def cmd_webhooks_rotate_key(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from passgate.webhooks.services import public_key_view

    if args.overlap is not None and not 0 <= args.overlap <= 7 * 86400:
        raise CommandError("--overlap takes 0 to 604800 seconds")
    from passgate.operator import get_client

    with _registry(_settings()) as registry:
        service = _webhooks_service(registry)
        overlap = None if args.overlap is None else timedelta(seconds=args.overlap)
        with _unit(registry.sessions) as session:
            get_client(session, args.client)
            keys, used = service.rotate_key(session, args.client, overlap)
    view = {**public_key_view(keys), "overlapSeconds": int(used.total_seconds()), "clientId": args.client}
    old = ", ".join(f"{k['keyId']} until {k['validUntil']}" for k in view["previous"]) or "none"
    _out(
        args,
        view,
        f"New webhook signing key {view['keyId']} for client {args.client}; it signs from now on.\n"
        f"Previous keys stay valid for the overlap ({view['overlapSeconds']} s): {old}.\n"
        "Receivers: fetch GET /manage/v1/webhooks/public-key and accept every key listed.",
    )
    return 0


def cmd_webhooks_deliveries(args: argparse.Namespace) -> int:
    from passgate.operator import get_client
    from passgate.webhooks.exceptions import EndpointNotFound
    from passgate.webhooks.services import delivery_view

    with _registry(_settings()) as registry:
        service = _webhooks_service(registry)
        with _unit(registry.sessions) as session:
            get_client(session, args.client)
            endpoints = (
                [args.endpoint]
                if args.endpoint
                else [e.id for e in service.list_endpoints(session, args.client)]
            )
            items: list[dict[str, Any]] = []
            for endpoint_id in endpoints:
                try:
                    rows = service.deliveries(
                        session, args.client, endpoint_id, status=args.status, limit=args.limit
                    )
                except EndpointNotFound:
                    raise CommandError(
                        f"no webhook endpoint {endpoint_id!r} for client {args.client} "
                        f"(passgate client show {args.client} lists them)"
                    ) from None
                items += [{**delivery_view(d, e, a), "endpointId": endpoint_id} for d, e, a in rows]
    items.sort(key=lambda d: d["createdAt"] or "", reverse=True)
    items = items[: args.limit]
    columns = [
        ("id", "delivery id"),
        ("endpointId", "endpoint id"),
        ("eventType", "event"),
        ("eventId", "event id"),
        ("status", "status"),
        ("attemptCount", "tries"),
        ("lastStatusCode", "last code"),
        ("lastError", "last error"),
        ("createdAt", "created"),
    ]
    _out(args, {"items": items}, _table(items, columns, "no deliveries"))
    return 0


def cmd_webhooks_replay(args: argparse.Namespace) -> int:
    from passgate.audit.services import record as audit
    from passgate.operator import get_client
    from passgate.webhooks.exceptions import EndpointDisabled, EndpointNotFound, EventNotFound

    with _registry(_settings()) as registry:
        service = _webhooks_service(registry)
        try:
            with _unit(registry.sessions) as session:
                get_client(session, args.client)
                count = service.replay(session, args.client, args.endpoint, args.event)
                audit(
                    session,
                    args.client,
                    _actor(),
                    "webhook.replayed",
                    args.endpoint,
                    registry.clock.now(),
                    {"eventId": args.event, "count": count},
                )
        except EndpointNotFound:
            raise CommandError(f"no webhook endpoint {args.endpoint!r} for client {args.client}") from None
        except EventNotFound:
            raise CommandError(f"no event {args.event!r} was sent to endpoint {args.endpoint}") from None
        except EndpointDisabled:
            raise CommandError(f"endpoint {args.endpoint} is disabled; enable it first") from None
    what = f"event {args.event}" if args.event else "every FAILED delivery"
    _out(
        args,
        {"replayed": count, "endpointId": args.endpoint, "clientId": args.client},
        f"{count} deliver{'y' if count == 1 else 'ies'} queued again ({what}); the workers send "
        f"{'it' if count == 1 else 'them'} with the usual retries.",
    )
    return 0


# -- the parser ------------------------------------------------------------------------------------------


def _bounded(
    convert: Callable[[str], Any], low: float, high: float, noun: str, out_of_range: str
) -> Callable[[str], Any]:
    """An argparse `type=`: `convert` the text, then keep it within [low, high], with errors a person reads."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(out_of_range.format(value=value))
        return value

    return parse


_port = _bounded(int, 1, 65535, "a port number", "{value} is not a port number (1 to 65535)")
_processes = _bounded(int, 1, 64, "a number of processes", "{value} processes: choose 1 to 64")
_positive = _bounded(int, 1, 10_000, "a whole number", "must be 1 to 10000")
_timeout = _bounded(float, 0.1, 120, "a number of seconds", "must be 0.1 to 120 seconds")


class _Commands:
    """Adds commands (and groups of them) with the description, example and `--json` each one has."""

    def __init__(self, sub: Any) -> None:
        self.sub = sub

    def add(
        self,
        name: str,
        fn: Callable[[argparse.Namespace], int],
        help_: str,
        desc: str,
        example: str,
        json_flag: bool = True,
        aliases: Sequence[str] = (),
    ) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = self.sub.add_parser(
            name,
            help=help_,
            description=desc,
            epilog=f"example:\n  {example}\n\n{EPILOG}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
            aliases=list(aliases),
        )
        if json_flag:
            p.add_argument("--json", action="store_true", help="print the result as one JSON object")
        p.set_defaults(func=fn)
        return p

    def group(self, name: str, help_: str, desc: str) -> _Commands:
        p = self.sub.add_parser(
            name, help=help_, description=desc, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        inner = p.add_subparsers(dest=f"{name}_command", metavar="ACTION")
        inner.required = True
        return _Commands(inner)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="passgate",
        description="Passgate: login and account-opening decisions with email/SMS verification.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    top = _Commands(sub)

    p = top.add(
        "serve",
        cmd_serve,
        "run the API (and, by default, the workers) in one process",
        "Check the settings, take the port, apply migrations, then serve the API. With\n"
        "PASSGATE_WORKERS_IN_PROCESS=process (the default) the message and webhook workers run in a child\n"
        "process that serve restarts if it dies and stops with itself; =thread runs them on a thread of\n"
        "the API process (what true meant before), =off (false) leaves them to passgate worker. Links in\n"
        "messages start with PASSGATE_PUBLIC_URL, or, when it is unset, with the address served here.",
        "passgate serve --host 127.0.0.1 --port 8031",
        json_flag=False,
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8000, help="port to listen on (default 8000)")
    p.add_argument(
        "--workers",
        type=_processes,
        default=None,
        metavar="N",
        help="API processes on the one port (default PASSGATE_API_WORKERS, 1); more than one needs "
        "PostgreSQL and PASSGATE_REDIS_URL. `kill -HUP` replaces them one by one",
    )

    p = top.add(
        "worker",
        cmd_worker,
        "run only the delivery workers (any number of them, on any machine)",
        "Send queued messages and webhook events, and expire sessions on time. Run as many as you like\n"
        "against PostgreSQL; they share the work (FOR UPDATE SKIP LOCKED). SIGTERM stops it cleanly.\n"
        "Set PASSGATE_PUBLIC_URL: the worker writes the links in messages.",
        "PASSGATE_WORKERS_IN_PROCESS=off passgate serve & PASSGATE_PUBLIC_URL=http://127.0.0.1:8000 "
        "passgate worker",
        json_flag=False,
    )
    p.add_argument(
        "--poll", type=float, default=0.25, help="seconds between looks for new work (default 0.25)"
    )
    # Set by `passgate serve` for its child (passgate.supervisor): the read end of its nudge pipe.
    p.add_argument("--wake-fd", type=int, default=None, help=argparse.SUPPRESS)

    p = top.add(
        "bounces",
        cmd_bounces,
        "take bounces (delivery status notifications) over SMTP",
        "Run an SMTP server that takes the bounces of Passgate's emails: mail to a bounce address\n"
        "(PASSGATE_BOUNCE_LOCAL_PART+token@…, the envelope sender of each email when PASSGATE_BOUNCE_DOMAIN\n"
        "is set) is read as a delivery status notification; any other recipient is refused. A hard bounce\n"
        "(5.x.x) makes the message BOUNCED and its session INVALID (reason BOUNCED), with a webhook; a soft\n"
        "one (4.x.x) is put on the session's timeline. Point the bounce domain's MX (or your relay's\n"
        "transport for it) here; relays that post instead use POST /providers/bounces. SIGTERM stops it.\n"
        'See docs/operations.md, "Bounces".',
        "PASSGATE_BOUNCE_DOMAIN=bounces.example.com passgate bounces --host 0.0.0.0 --port 25",
        json_flag=False,
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=2525, help="port to listen on (default 2525)")

    top.add(
        "migrate",
        cmd_migrate,
        "create or upgrade the database schema",
        "Apply every pending migration to PASSGATE_DATABASE_URL (serve and worker do it on start too).",
        "PASSGATE_DATABASE_URL=postgresql://passgate@db/passgate passgate migrate",
    )

    p = top.add(
        "demo",
        cmd_demo,
        "run a whole challenge end to end against the dev inbox",
        "Create a client, post a login that is challenged, read the email in the dev inbox, open and\n"
        "confirm its link, and print each step until the session is VERIFIED. When a Passgate with a dev\n"
        "inbox answers at PASSGATE_PUBLIC_URL (e.g. `make run` in another terminal) the demo uses it and\n"
        "its database; otherwise it starts its own on a free port, in a temporary folder removed at the end.",
        "passgate demo --json",
    )
    p.add_argument(
        "--data-dir", default=None, help="keep the demo's own server's database here (default: a temp folder)"
    )
    p.add_argument(
        "--own-server", action="store_true", help="start a server of its own even when one answers"
    )

    p = top.add(
        "check",
        cmd_check,
        "check the database, Redis, SMTP, SMS providers and the public URL",
        "Check what the settings name, without sending anything: the database answers and its migrations\n"
        "are current; Redis answers PING; the SMTP relay accepts a connection, EHLO, STARTTLS and AUTH\n"
        "(no mail is sent); the SMS providers' settings make sense and an HTTP gateway accepts a\n"
        "connection (no message is sent); the public URL is well-formed and, on this machine, answers\n"
        "/healthz. Prints a table; exits 1 when a check fails, 2 when a setting is invalid.",
        "passgate check --json",
        aliases=("doctor",),
    )
    p.add_argument("--timeout", type=_timeout, default=5.0, help="seconds each check may take (default 5)")

    keys = top.group("keys", "secret keys", "Secret keys for PASSGATE_SECRET_KEYS.")
    keys.add(
        "generate",
        cmd_keys_generate,
        "print a new random secret key",
        "Print a new secret key for PASSGATE_SECRET_KEYS: 64 URL-safe characters (384 random bits);\n"
        f"the minimum is {MIN_SECRET_KEY_LENGTH} characters. To rotate, put the new key first and keep the old ones after it,\n"
        "comma-separated, until what they signed has expired.",
        'export PASSGATE_SECRET_KEYS="$(passgate keys generate),$PASSGATE_SECRET_KEYS"',
    )

    client = top.group("client", "manage clients (tenants)", "Manage clients (tenants).")
    p = client.add(
        "create",
        cmd_client_create,
        "create a client with the default policy sets",
        "Create a client (a business using Passgate) with published default policy\n"
        "sets: allow known devices, challenge new ones.",
        "passgate client create --name 'Acme Shop' --country GB --json",
    )
    p.add_argument("--name", required=True, help="the business's name, shown in messages by default")
    p.add_argument(
        "--country", default="US", help="home country (ISO 3166 alpha-2); SMS goes only there by default"
    )
    p.add_argument(
        "--sandbox", action="store_true", help="test client: magic destinations, nothing sent outside"
    )
    client.add(
        "list",
        cmd_client_list,
        "list every client",
        "List every client with its active API keys, console users and state.",
        "passgate client list --json",
    )
    p = client.add(
        "show",
        cmd_client_show,
        "show one client: keys, console users, webhook endpoints, messages",
        "Show one client with its API keys (never their secrets), console users, webhook endpoints and\n"
        "its messages counted by status.",
        "passgate client show cl_0123abcd",
    )
    p.add_argument("client", metavar="CLIENT_ID", help="the client id (passgate client list)")
    p = client.add(
        "disable",
        cmd_client_disable,
        "stop a client: no tokens, no console",
        "Disable a client: its API keys get no new tokens, tokens already issued are refused within\n"
        "PASSGATE_KEY_CACHE_SECONDS, and its console users cannot sign in. Nothing is deleted; challenges\n"
        "already started finish. Recorded in the client's audit log.",
        "passgate client disable cl_0123abcd",
    )
    p.add_argument("client", metavar="CLIENT_ID", help="the client id")
    p = client.add(
        "enable",
        cmd_client_enable,
        "undo client disable",
        "Enable a disabled client again.",
        "passgate client enable cl_0123abcd",
    )
    p.add_argument("client", metavar="CLIENT_ID", help="the client id")

    apikey = top.group("apikey", "manage API keys", "Manage API keys.")
    p = apikey.add(
        "create",
        cmd_apikey_create,
        "create an API key (shown once)",
        "Create an API key for a client. A client has at most 2 active keys.",
        "passgate apikey create --client cl_0123abcd --scope admin --json",
    )
    p.add_argument("--client", required=True, help="the client id (from `passgate client create`)")
    p.add_argument(
        "--scope",
        choices=["k1_integration_api", "admin"],
        default="k1_integration_api",
        help="admin also allows the management API (default k1_integration_api)",
    )
    p.add_argument("--name", default=None, help="a label to recognise the key by")
    p = apikey.add(
        "list",
        cmd_apikey_list,
        "list API keys (never their secrets)",
        "List API keys, active and revoked, of one client or of all: id, name, first characters, scopes,\n"
        "last use.",
        "passgate apikey list --client cl_0123abcd",
    )
    p.add_argument("--client", default=None, help="only this client's keys")
    p = apikey.add(
        "revoke",
        cmd_apikey_revoke,
        "revoke an API key",
        "Revoke an API key: no new tokens; its tokens stop working within PASSGATE_KEY_CACHE_SECONDS.\n"
        "Recorded in the client's audit log.",
        "passgate apikey revoke key_0123456789abcdef",
    )
    p.add_argument("key_id", metavar="KEY_ID", help="the key id (passgate apikey list)")

    user = top.group("user", "manage console users", "Manage console users (people who sign in at /console).")
    p = user.add(
        "create",
        cmd_user_create,
        "create a console user (sign-in at /console)",
        "Create a person who signs in to the web console for one client. Roles: viewer reads;\n"
        "analyst also edits policies, lists and templates; owner also manages keys, webhooks, settings\n"
        "and branding. The password (12 characters or more) is read from a prompt or from standard input.",
        'echo "$PASSWORD" | passgate user create --client cl_0123abcd '
        "--email ana@acme.example --role owner --password-stdin --json",
    )
    p.add_argument("--client", required=True, help="the client id (from `passgate client create`)")
    p.add_argument("--email", required=True, help="the person's email address (unique across clients)")
    p.add_argument("--role", required=True, choices=["owner", "analyst", "viewer"], help="what they may do")
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    p = user.add(
        "list",
        cmd_user_list,
        "list console users",
        "List console users of one client or of all, with role, last sign-in and state.",
        "passgate user list --client cl_0123abcd",
    )
    p.add_argument("--client", default=None, help="only this client's users")
    for name, fn, help_, desc in (
        (
            "disable",
            cmd_user_disable,
            "stop a console user from signing in",
            "Disable a console user and sign out every browser signed in as them. Recorded in the audit log.",
        ),
        ("enable", cmd_user_enable, "undo user disable", "Let a disabled console user sign in again."),
    ):
        p = user.add(name, fn, help_, desc, f"passgate user {name} ana@acme.example")
        p.add_argument("email", metavar="EMAIL", help="the user's email address")
    p = user.add(
        "reset-password",
        cmd_user_reset_password,
        "set a new password for a console user",
        "Set a new password (12 characters or more, from a prompt or standard input) and sign out every\n"
        "browser signed in as the user. Recorded in the audit log.",
        "printf '%s\\n' \"$NEW_PASSWORD\" | passgate user reset-password ana@acme.example --password-stdin",
    )
    p.add_argument("email", metavar="EMAIL", help="the user's email address")
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    p = user.add(
        "role",
        cmd_user_role,
        "change a console user's role",
        "Change what a console user may do: viewer reads; analyst also edits policies, lists and\n"
        "templates; owner also manages keys, webhooks, settings and branding. Takes effect on their next\n"
        "page. Recorded in the audit log.",
        "passgate user role ana@acme.example analyst",
    )
    p.add_argument("email", metavar="EMAIL", help="the user's email address")
    p.add_argument("role", choices=["owner", "analyst", "viewer"], help="the new role")

    destination = top.group(
        "destination", "act on one email address or phone number", "Act on one destination of a client."
    )
    p = destination.add(
        "unlock",
        cmd_destination_unlock,
        "clear a destination's failure counter and lock",
        "After 10 consecutive failed verifications of one email address or phone number the next try\n"
        "waits (30 s, doubling up to 1 h); after 100 the destination is locked and new challenges to it\n"
        "answer RATE_LIMITED. This clears the failures, the wait and the lock for one client (the value is\n"
        "normalised and hashed as challenges do), and records it in the client's audit log. The API has\n"
        "the same: POST /manage/v1/destinations/unlock; the console has it on its MFA settings page.",
        "passgate destination unlock --client cl_0123abcd --email jo@example.com",
    )
    p.add_argument("--client", required=True, help="the client id")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--email", help="the email address")
    which.add_argument("--phone", help="the phone number, E.164 (+15551234567)")

    p = top.add(
        "purge",
        cmd_purge,
        "delete records older than each client's retention periods",
        'Delete what each client keeps no longer (docs/operations.md, "Retention and erasure"): sessions\n'
        "with their messages and timelines (90 days by default), decisions (365), finished webhook\n"
        "deliveries (30) and audit log entries (730). The workers do this on their own every\n"
        "PASSGATE_PURGE_INTERVAL_SECONDS; this runs it now, to the end, in batches of short transactions.\n"
        "--dry-run only counts what would go. Progress goes to stderr once a second.",
        "passgate purge --dry-run",
    )
    p.add_argument("--dry-run", action="store_true", help="count what would be deleted; delete nothing")
    p.add_argument("--batch-size", type=_positive, default=1000, help="rows per transaction (default 1000)")
    p.add_argument(
        "--pause",
        type=float,
        default=1.0,
        help="after each batch, wait this many times as long as it took (default 1: half the time)",
    )

    messages = top.group("messages", "look at the outbox", "Look at the outbox of emails and SMS.")
    p = messages.add(
        "list",
        cmd_messages_list,
        "list outbox messages, newest first",
        "List emails and SMS in the outbox, newest first, with their status, tries and last error;\n"
        "destinations are masked. QUEUED waits for a worker (or a retry), SENDING is being sent, SENT was\n"
        "accepted by the provider, FAILED was given up.",
        "passgate messages list --status FAILED --limit 20",
    )
    p.add_argument("--client", default=None, help="only this client's messages")
    p.add_argument("--status", choices=["QUEUED", "SENDING", "SENT", "FAILED"], type=str.upper, default=None)
    p.add_argument("--limit", type=_positive, default=50, help="at most this many (default 50)")

    webhooks = top.group("webhooks", "manage webhooks", "Manage webhooks.")
    p = webhooks.add(
        "rotate-key",
        cmd_webhooks_rotate_key,
        "sign kount-rsa-pss webhooks with a new RSA key",
        "Make a new RSA key sign the client's kount-rsa-pss webhooks from now on. The previous\n"
        "key stays published and valid for the overlap, so receivers can fetch the new one meanwhile.",
        "passgate webhooks rotate-key --client cl_0123abcd --overlap 86400 --json",
    )
    p.add_argument("--client", required=True, help="the client id")
    p.add_argument(
        "--overlap",
        type=int,
        default=None,
        help="seconds the previous key stays valid (default PASSGATE_WEBHOOK_KEY_OVERLAP_SECONDS, 86400)",
    )
    p = webhooks.add(
        "deliveries",
        cmd_webhooks_deliveries,
        "list webhook deliveries with their tries",
        "List a client's webhook deliveries, newest first, of one endpoint or all: event, status, tries,\n"
        "last HTTP status and error. --json adds every try and the payload.",
        "passgate webhooks deliveries --client cl_0123abcd --status FAILED",
    )
    p.add_argument("--client", required=True, help="the client id")
    p.add_argument("--endpoint", default=None, help="only this endpoint (passgate client show lists them)")
    p.add_argument("--status", choices=["PENDING", "SENDING", "DELIVERED", "FAILED"], type=str.upper)
    p.add_argument("--limit", type=_positive, default=50, help="at most this many (default 50)")
    p = webhooks.add(
        "replay",
        cmd_webhooks_replay,
        "send webhook events again",
        "Queue one event again for an endpoint (--event), whatever its state, or every FAILED delivery of\n"
        "the endpoint. The workers send them with the usual retries. Recorded in the audit log.",
        "passgate webhooks replay --client cl_0123abcd --endpoint 0190… --event 0190…",
    )
    p.add_argument("--client", required=True, help="the client id")
    p.add_argument("--endpoint", required=True, help="the endpoint id")
    p.add_argument("--event", default=None, help="only this event (default: every FAILED delivery)")
    return parser


def _quiet_stdout() -> None:
    # Whatever is still buffered for the reader that left must not fail again at exit.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = int(args.func(args))
        sys.stdout.flush()
        return code
    except InvalidConfiguration as exc:
        print("\n".join(exc.lines()), file=sys.stderr)
        return 2
    except CommandError as exc:
        print(f"passgate: {exc.args[0]}", file=sys.stderr)
        return int(exc.args[1]) if len(exc.args) > 1 else 1
    except BrokenPipeError:
        # The reader went away (`passgate client list --json | head -c1`): nothing more to say to it.
        _quiet_stdout()
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
