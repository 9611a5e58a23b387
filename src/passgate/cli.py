"""The `passgate` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from passgate.config import Settings
from passgate.runtime import run_event_loop, tune_gc

EPILOG = """\
environment: PASSGATE_DATABASE_URL (default sqlite:///./passgate.db), PASSGATE_PUBLIC_URL, PASSGATE_SMTP_URL,
PASSGATE_SMS_PROVIDER, PASSGATE_REDIS_URL, PASSGATE_SECRET_KEYS, ... (see README.md, "Configuration").
"""


def _settings() -> Settings:
    try:
        return Settings()
    except Exception as exc:  # pydantic's message names the variable at fault
        raise SystemExit(f"passgate: invalid configuration: {exc}") from None


def _out(args: argparse.Namespace, data: dict[str, Any], human: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps(data))
    else:
        print(human)


def _engine_migrated(settings: Settings) -> Any:
    from passgate.db import make_engine
    from passgate.migrate import upgrade

    engine = make_engine(settings.database_url)
    upgrade(engine)
    return engine


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = _settings()
    engine = _engine_migrated(settings)
    engine.dispose()
    _out(args, {"status": "ok"}, f"database is up to date ({_redact(settings.database_url)})")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from passgate.httpserver import limited_protocol
    from passgate.main import create_app
    from passgate.observability import configure_logging

    settings = _settings()
    configure_logging(settings.log_level)
    _engine_migrated(settings).dispose()
    settings.secret_key_list  # noqa: B018  (fail now, not on the first request, when secrets are missing)
    try:
        app = create_app(settings)
    except ValueError as exc:  # a provider's settings (bootstrap): say which, without a trace
        raise SystemExit(f"passgate: invalid configuration: {exc}") from None
    print(
        f"Passgate serving on http://{args.host}:{args.port}  (API docs: /docs"
        + (", dev inbox: /dev/inbox" if settings.dev_inbox_enabled else "")
        + f"; database: {_redact(settings.database_url)})",
        file=sys.stderr,
        flush=True,
    )
    tune_gc()
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        http=limited_protocol(http_limits(settings)),
        timeout_keep_alive=settings.http_keepalive_seconds,
    )
    return 0


def http_limits(settings: Settings) -> Any:
    from passgate.httpserver import HttpLimits

    return HttpLimits(
        max_header_bytes=settings.http_max_header_bytes,
        header_timeout=settings.http_header_timeout_seconds,
        body_timeout=settings.http_body_timeout_seconds,
    )


def cmd_worker(args: argparse.Namespace) -> int:
    import asyncio
    import signal

    from passgate.bootstrap import build_registry
    from passgate.observability import configure_logging
    from passgate.worker import Worker

    settings = _settings()
    configure_logging(settings.log_level)
    _engine_migrated(settings).dispose()
    try:
        registry = build_registry(settings)
    except ValueError as exc:
        raise SystemExit(f"passgate: invalid configuration: {exc}") from None
    worker = Worker(registry, poll_interval=args.poll)
    tune_gc()
    print(
        f"Passgate worker {registry.dispatcher.worker_id} running (Ctrl-C to stop)",
        file=sys.stderr,
        flush=True,
    )

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, worker.stop)
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


def cmd_demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from passgate.demo import run_demo

    if args.json:
        result = run_demo(Path(args.data_dir) if args.data_dir else None, say=lambda _: None)
        print(json.dumps(result))
    else:
        result = run_demo(Path(args.data_dir) if args.data_dir else None)
    return 0 if result["status"] == "VERIFIED" else 1


def cmd_client_create(args: argparse.Namespace) -> int:
    from passgate.auth.services import create_client
    from passgate.clock import SystemClock
    from passgate.db import make_sessionmaker, transaction

    country = args.country.upper()
    if len(country) != 2 or not country.isalpha():
        raise SystemExit("passgate: --country takes a two-letter ISO 3166 code, e.g. US")
    settings = _settings()
    engine = _engine_migrated(settings)
    with transaction(make_sessionmaker(engine)) as session:
        client = create_client(session, args.name, country, args.sandbox, SystemClock().now())
        cid = client.id
    engine.dispose()
    _out(
        args,
        {"clientId": cid, "name": args.name, "country": country, "sandbox": args.sandbox},
        f"Created client {args.name!r}: clientId {cid}\n"
        f"Next: passgate apikey create --client {cid} [--scope admin]",
    )
    return 0


def cmd_apikey_create(args: argparse.Namespace) -> int:
    from passgate.auth.exceptions import NotFound, TooManyKeys
    from passgate.auth.services import create_api_key
    from passgate.clock import SystemClock
    from passgate.db import make_sessionmaker, transaction

    settings = _settings()
    engine = _engine_migrated(settings)
    scopes = ["admin"] if args.scope == "admin" else []
    try:
        with transaction(make_sessionmaker(engine)) as session:
            created = create_api_key(session, args.client, scopes, SystemClock().now(), name=args.name)
            secret, key_id, granted = created.secret, created.key.id, created.key.scopes.split()
    except NotFound:
        raise SystemExit(
            f"passgate: no client {args.client!r} (create one with: passgate client create)"
        ) from None
    except TooManyKeys as exc:
        raise SystemExit(f"passgate: {exc}") from None
    finally:
        engine.dispose()
    _out(
        args,
        {"apiKey": secret, "keyId": key_id, "clientId": args.client, "scopes": granted},
        f"API key (shown once, store it now): {secret}\nkey id: {key_id}; scopes: {' '.join(granted)}",
    )
    return 0


def cmd_webhooks_rotate_key(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from passgate.auth.models import Client
    from passgate.bootstrap import build_registry
    from passgate.db import transaction
    from passgate.webhooks.services import WebhookService, public_key_view

    if args.overlap is not None and not 0 <= args.overlap <= 7 * 86400:
        raise SystemExit("passgate: --overlap takes 0 to 604800 seconds")
    settings = _settings()
    _engine_migrated(settings).dispose()
    registry = build_registry(settings)
    service = registry.extras["webhooks"]
    assert isinstance(service, WebhookService)
    overlap = None if args.overlap is None else timedelta(seconds=args.overlap)
    try:
        with transaction(registry.sessions) as session:
            if session.get(Client, args.client) is None:
                raise SystemExit(
                    f"passgate: no client {args.client!r} (create one with: passgate client create)"
                )
            keys, used = service.rotate_key(session, args.client, overlap)
    finally:
        registry.close()
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


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        # One line; a trailing newline from `echo` or a file is not part of the password.
        return sys.stdin.readline().rstrip("\r\n")
    import getpass

    if not sys.stdin.isatty():
        raise SystemExit("passgate: no terminal to ask for the password; use --password-stdin")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Password again: "):
        raise SystemExit("passgate: the passwords differ")
    return first


def cmd_user_create(args: argparse.Namespace) -> int:
    from passgate.bootstrap import build_registry
    from passgate.console.exceptions import InvalidUser, UserExists
    from passgate.console.routes.common import auth_service
    from passgate.db import transaction

    password = _read_password(args)
    settings = _settings()
    _engine_migrated(settings).dispose()
    registry = build_registry(settings)
    try:
        with transaction(registry.sessions) as session:
            user = auth_service(registry).create_user(
                session, args.client, args.email, password, args.role, registry.clock.now()
            )
            user_id, email = user.id, user.email
    except (InvalidUser, UserExists) as exc:
        raise SystemExit(f"passgate: {exc}") from None
    finally:
        registry.close()
    _out(
        args,
        {"userId": user_id, "email": email, "clientId": args.client, "role": args.role},
        f"Created console user {email} ({args.role}) for client {args.client}: userId {user_id}\n"
        f"Sign in at {settings.public_url}/console",
    )
    return 0


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="passgate",
        description="Passgate: login and account-opening decisions with email/SMS verification.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def add(
        name: str, fn: Callable[[argparse.Namespace], int], help_: str, desc: str, json_flag: bool = True
    ) -> Any:
        p = sub.add_parser(
            name,
            help=help_,
            description=desc,
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if json_flag:
            p.add_argument("--json", action="store_true", help="print the result as one JSON object")
        p.set_defaults(func=fn)
        return p

    p = add(
        "serve",
        cmd_serve,
        "run the API (and, by default, the workers) in one process",
        "Apply migrations, then serve the API. With PASSGATE_WORKERS_IN_PROCESS=true (the default) the\n"
        "message and webhook workers run inside this process too.",
        json_flag=False,
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")

    p = add(
        "demo",
        cmd_demo,
        "run a whole challenge end to end against the dev inbox",
        "On a fresh data folder: create a client, post a login that is challenged, read the email in the\n"
        "dev inbox, open and confirm its link, and print each step until the session is VERIFIED.",
    )
    p.add_argument(
        "--data-dir", default=None, help="folder for the demo's database (default: a new temp folder)"
    )

    p = add(
        "worker",
        cmd_worker,
        "run only the delivery workers (any number of them, on any machine)",
        "Send queued messages and webhook events, and expire sessions on time. Run as many as you like\n"
        "against PostgreSQL; they share the work (FOR UPDATE SKIP LOCKED). SIGTERM stops it cleanly.",
        json_flag=False,
    )
    p.add_argument(
        "--poll", type=float, default=0.25, help="seconds between looks for new work (default 0.25)"
    )

    add(
        "migrate",
        cmd_migrate,
        "create or upgrade the database schema",
        "Apply every pending migration to PASSGATE_DATABASE_URL.",
    )

    client = sub.add_parser(
        "client", help="manage clients (tenants)", description="Manage clients (tenants)."
    )
    csub = client.add_subparsers(dest="client_command", metavar="ACTION")
    csub.required = True
    p = csub.add_parser(
        "create",
        help="create a client with the default policy sets",
        description="Create a client (a business using Passgate) with published default policy\n"
        "sets: allow known devices, challenge new ones.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: passgate client create --name 'Acme Shop' --country GB --json",
    )
    p.add_argument("--name", required=True, help="the business's name, shown in messages by default")
    p.add_argument(
        "--country", default="US", help="home country (ISO 3166 alpha-2); SMS goes only there by default"
    )
    p.add_argument(
        "--sandbox", action="store_true", help="test client: magic destinations, nothing sent outside"
    )
    p.add_argument("--json", action="store_true", help='print {"clientId": …}')
    p.set_defaults(func=cmd_client_create)

    apikey = sub.add_parser("apikey", help="manage API keys", description="Manage API keys.")
    asub = apikey.add_subparsers(dest="apikey_command", metavar="ACTION")
    asub.required = True
    p = asub.add_parser(
        "create",
        help="create an API key (shown once)",
        description="Create an API key for a client. A client has at most 2 active keys.",
        epilog="example: passgate apikey create --client cl_0123abcd --scope admin --json",
    )
    p.add_argument("--client", required=True, help="the client id (from `passgate client create`)")
    p.add_argument(
        "--scope",
        choices=["k1_integration_api", "admin"],
        default="k1_integration_api",
        help="admin also allows the management API (default k1_integration_api)",
    )
    p.add_argument("--name", default=None, help="a label to recognise the key by")
    p.add_argument("--json", action="store_true", help='print {"apiKey": …}')
    p.set_defaults(func=cmd_apikey_create)

    user = sub.add_parser("user", help="manage console users", description="Manage console users.")
    usub = user.add_subparsers(dest="user_command", metavar="ACTION")
    usub.required = True
    p = usub.add_parser(
        "create",
        help="create a console user (sign-in at /console)",
        description="Create a person who signs in to the web console for one client. Roles: viewer reads;\n"
        "analyst also edits policies, lists and templates; owner also manages keys, webhooks, settings\n"
        "and branding. The password (12 characters or more) is read from a prompt or from standard input.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='example: echo "$PASSWORD" | passgate user create --client cl_0123abcd '
        "--email ana@acme.example --role owner --password-stdin --json",
    )
    p.add_argument("--client", required=True, help="the client id (from `passgate client create`)")
    p.add_argument("--email", required=True, help="the person's email address (unique across clients)")
    p.add_argument("--role", required=True, choices=["owner", "analyst", "viewer"], help="what they may do")
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    p.add_argument("--json", action="store_true", help='print {"userId": …}')
    p.set_defaults(func=cmd_user_create)

    webhooks = sub.add_parser("webhooks", help="manage webhooks", description="Manage webhooks.")
    wsub = webhooks.add_subparsers(dest="webhooks_command", metavar="ACTION")
    wsub.required = True
    p = wsub.add_parser(
        "rotate-key",
        help="sign kount-rsa-pss webhooks with a new RSA key",
        description="Make a new RSA key sign the client's kount-rsa-pss webhooks from now on. The previous\n"
        "key stays published and valid for the overlap, so receivers can fetch the new one meanwhile.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: passgate webhooks rotate-key --client cl_0123abcd --overlap 86400 --json",
    )
    p.add_argument("--client", required=True, help="the client id")
    p.add_argument(
        "--overlap",
        type=int,
        default=None,
        help="seconds the previous key stays valid (default PASSGATE_WEBHOOK_KEY_OVERLAP_SECONDS, 86400)",
    )
    p.add_argument("--json", action="store_true", help='print {"publicKey", "previous", "overlapSeconds"}')
    p.set_defaults(func=cmd_webhooks_rotate_key)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
