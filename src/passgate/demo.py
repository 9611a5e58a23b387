"""`passgate demo`: a whole challenge, end to end, against the dev inbox — no account anywhere needed."""

from __future__ import annotations

import re
import secrets
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

BROWSER = {"User-Agent": "Mozilla/5.0 (passgate demo) Chrome/140.0 Safari/537.36", "Accept": "text/html"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_demo(data_dir: Path | None = None, say: Callable[[str], None] = print) -> dict[str, Any]:
    import uvicorn

    from passgate.auth.services import create_api_key, create_client
    from passgate.bootstrap import build_registry
    from passgate.config import Settings
    from passgate.db import transaction
    from passgate.main import create_app
    from passgate.migrate import upgrade

    folder = data_dir or Path(tempfile.mkdtemp(prefix="passgate-demo-"))
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
        workers_in_process=True,
        log_level="WARNING",
    )
    registry = build_registry(settings)
    upgrade(registry.engine)
    say(f"1. Fresh data folder {folder} (SQLite, dev inbox); Passgate starting on {base}")
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
            now = registry.clock.now()
            with transaction(registry.sessions) as session:
                client = create_client(session, "Demo Shop", "US", False, now)
                key = create_api_key(session, client.id, [], now)
                client_id, api_key = client.id, key.secret
            say(f"2. Created client {client_id} and an API key")
            token = http.post(
                "/oauth2/token", data={"grant_type": "client_credentials"}, auth=(client_id, api_key)
            ).json()["access_token"]
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
            mfa = decision["mfa"]
            say(
                f"4. POST /login/v2 -> decision {decision['decision']} (tags {decision['tags']}); "
                f"mfa {mfa['ID']} status {mfa['status']}"
            )
            mail = _wait_for_mail(http, "jo@example.com")
            say(
                f'5. The worker sent the email; dev inbox shows: "{mail["subject"]}" to {mail["destination"]}'
            )
            link = mail["link"]
            say(f"   link: {link[: len(base) + 8]}… (opening it changes nothing)")
            page = http.get(link.removeprefix(base), headers=BROWSER)
            csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
            status = http.get(f"/mfa/v2/{mfa['ID']}", headers=auth).json()["status"]
            say(f"6. GET the link -> confirm page ({page.status_code}); session still {status}")
            assert csrf is not None
            done = http.post(link.removeprefix(base) + "/confirm", data={"csrf": csrf.group(1)})
            say(f"7. POST Confirm -> {done.status_code}")
            final = http.get(f"/mfa/v2/{mfa['ID']}", headers=auth).json()
            again = http.post("/login/v2", json={**body, "inquiryId": "demo0002"}, headers=auth).json()
            say(
                f"8. Session {final['ID']} is {final['status']}; the next login from this device: "
                f"{again['decision']}"
            )
            return {"status": final["status"], "nextDecision": again["decision"], "dataDir": str(folder)}
    finally:
        server.should_exit = True
        thread.join(10)
        registry.close()


def _wait_healthy(http: httpx.Client) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if http.get("/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError("Passgate did not start")


def _wait_for_mail(http: httpx.Client, to: str) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        items = http.get("/dev/inbox", headers={"Accept": "application/json"}).json()["items"]
        for item in items:
            if item["destination"] == to:
                return dict(item)
        time.sleep(0.05)
    raise RuntimeError("the email never reached the dev inbox")
