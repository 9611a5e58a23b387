"""`passgate demo`: a whole challenge, end to end, against the dev inbox — no account anywhere needed.

It uses the Passgate that answers at PASSGATE_PUBLIC_URL when that one has a dev inbox (`make run` in
another terminal), creating its client in the same database; otherwise it starts one of its own on a free
port, in a temporary folder it removes afterwards.
"""

from __future__ import annotations

import re
import secrets
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from passgate.config import Settings, redact_url

BROWSER = {"User-Agent": "Mozilla/5.0 (passgate demo) Chrome/140.0 Safari/537.36", "Accept": "text/html"}
JSON = {"Accept": "application/json"}


class DemoFailed(Exception):
    """The demo could not go on; the message says why, in one line."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def running_server(base: str, say: Callable[[str], None]) -> bool:
    """Whether a Passgate with a dev inbox answers at `base`."""
    try:
        with httpx.Client(base_url=base, timeout=2) as http:
            health = http.get("/healthz")
            if health.status_code != 200 or health.json() != {"status": "ok"}:
                return False
            if http.get("/dev/inbox?limit=1", headers=JSON).status_code != 200:
                say(f"A Passgate answers at {base} but has no dev inbox; the demo starts one of its own.")
                return False
    except (httpx.HTTPError, ValueError):
        return False
    return True


def run_demo(
    settings: Settings,
    data_dir: Path | None = None,
    say: Callable[[str], None] = print,
    own_server: bool = False,
) -> dict[str, Any]:
    if not own_server and data_dir is None and running_server(settings.public_url, say):
        say(
            f"1. Using the Passgate at {settings.public_url} (its database: {redact_url(settings.database_url)})"
        )
        result = _walk_through(settings, settings.public_url, say)
        return {**result, "server": settings.public_url, "ownServer": False}
    with _own_server(data_dir, say) as (demo_settings, base):
        result = _walk_through(demo_settings, base, say)
    return {
        **result,
        "server": base,
        "ownServer": True,
        **({"dataDir": str(data_dir)} if data_dir else {}),
    }


@contextmanager
def _own_server(data_dir: Path | None, say: Callable[[str], None]) -> Iterator[tuple[Settings, str]]:
    import uvicorn

    from passgate.bootstrap import build_registry
    from passgate.main import create_app
    from passgate.migrate import upgrade

    temporary = None if data_dir else tempfile.TemporaryDirectory(prefix="passgate-demo-")
    folder = data_dir or Path(temporary.name)  # type: ignore[union-attr]
    folder.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    settings = Settings(
        database_url=f"sqlite:///{folder / 'demo.db'}",
        data_dir=folder,
        public_url=base,
        secret_keys=secrets.token_urlsafe(48),
        smtp_url=None,
        sms_provider=None,
        environment="development",
        workers_in_process="thread",
        log_level="WARNING",
    )
    registry = build_registry(settings)
    try:
        upgrade(registry.engine)
        kept = "" if data_dir else ", removed at the end"
        say(f"1. Fresh data folder {folder} (SQLite, dev inbox{kept}); Passgate starting on {base}")
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(registry=registry),
                host="127.0.0.1",
                port=port,
                log_config=None,
                access_log=False,
                lifespan="on",
            )
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            with httpx.Client(base_url=base, timeout=10) as http:
                _wait_healthy(http)
            yield settings, base
        finally:
            server.should_exit = True
            thread.join(10)
    finally:
        registry.close()
        if temporary is not None:
            temporary.cleanup()


def _walk_through(settings: Settings, base: str, say: Callable[[str], None]) -> dict[str, Any]:
    from passgate.auth.services import create_api_key, create_client
    from passgate.clock import SystemClock
    from passgate.db import make_engine, make_sessionmaker, transaction
    from passgate.migrate import upgrade

    engine = make_engine(settings.database_url)
    try:
        upgrade(engine)
        now = SystemClock().now()
        with transaction(make_sessionmaker(engine)) as session:
            client = create_client(session, "Demo Shop", "US", False, now)
            key = create_api_key(session, client.id, [], now)
            client_id, api_key = client.id, key.secret
    finally:
        engine.dispose()
    say(f"2. Created client {client_id} and an API key")
    with httpx.Client(base_url=base, timeout=10) as http:
        answer = http.post(
            "/oauth2/token", data={"grant_type": "client_credentials"}, auth=(client_id, api_key)
        )
        if answer.status_code != 200:
            raise DemoFailed(
                f"the Passgate at {base} refused the demo's new key ({answer.status_code}): it does not use "
                f"the database {redact_url(settings.database_url)}; run the demo with its PASSGATE_DATABASE_URL"
            )
        token = answer.json()["access_token"]
        say("3. Got a bearer token from POST /oauth2/token")
        body = {
            "inquiryId": "demo0001",
            "deviceSessionId": "demodevice1",
            "person": {"name": {"first": "Jo"}, "emailAddress": "jo@example.com"},
            "account": {"id": "demo-account", "username": "jo"},
            "strategy": {"mfaTemplateName": "email-link"},
        }
        auth = {"Authorization": f"Bearer {token}"}
        decision = http.post("/login/v2", json=body, headers=auth).json()
        mfa = decision.get("mfa") or {}
        if not mfa.get("ID"):
            raise DemoFailed(f"the login was not challenged as expected: {decision}")
        say(
            f"4. POST /login/v2 -> decision {decision['decision']} (tags {decision['tags']}); "
            f"mfa {mfa['ID']} status {mfa['status']}"
        )
        mail = _wait_for_mail(http, client_id, "jo@example.com")
        say(f'5. The worker sent the email; dev inbox shows: "{mail["subject"]}" to {mail["destination"]}')
        link = mail["link"]
        # The dev inbox has the mail as soon as it is handed over; the send is recorded (MESSAGE_SENT) in
        # the worker's next commit, a few milliseconds later. A person opens the link after that; so does
        # the demo.
        _wait_for_status(http, f"/mfa/v2/{mfa['ID']}", auth, "UNKNOWN")
        say(f"   link: {link[: len(base) + 8]}… (opening it changes nothing)")
        page = http.get(link.removeprefix(base), headers=BROWSER)
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        status = http.get(f"/mfa/v2/{mfa['ID']}", headers=auth).json()["status"]
        say(f"6. GET the link -> confirm page ({page.status_code}); session still {status}")
        if csrf is None:
            raise DemoFailed(f"the link's page ({page.status_code}) has no Confirm form")
        done = http.post(link.removeprefix(base) + "/confirm", data={"csrf": csrf.group(1)})
        say(f"7. POST Confirm -> {done.status_code}")
        final = http.get(f"/mfa/v2/{mfa['ID']}", headers=auth).json()
        again = http.post("/login/v2", json={**body, "inquiryId": "demo0002"}, headers=auth).json()
        say(
            f"8. Session {final['ID']} is {final['status']}; the next login from this device: {again['decision']}"
        )
        return {"status": final["status"], "nextDecision": again["decision"], "clientId": client_id}


def _wait_healthy(http: httpx.Client) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if http.get("/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise DemoFailed("the demo's own server did not start within 15 s")


def _wait_for_status(http: httpx.Client, path: str, auth: dict[str, str], leaving: str) -> None:
    """Until the session's status is no longer `leaving` (at most 15 s: the next step says what it found)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if http.get(path, headers=auth).json().get("status") != leaving:
            return
        time.sleep(0.02)


def _wait_for_mail(http: httpx.Client, client_id: str, to: str) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        items = http.get("/dev/inbox", headers=JSON).json()["items"]
        for item in items:
            if item["destination"] == to and item.get("clientId") == client_id:
                return dict(item)
        time.sleep(0.05)
    raise DemoFailed(
        "the email did not reach the dev inbox within 15 s (is a worker running? "
        "PASSGATE_WORKERS_IN_PROCESS=off needs passgate worker beside the server)"
    )
