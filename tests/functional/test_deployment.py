"""docs/deployment.md's layout, run: nginx (Debian's package) terminating TLS in front of
`passgate serve --workers 2` on PostgreSQL and Redis, with the documented nginx file itself
(docs/examples/nginx/passgate.conf, its names, ports and certificate paths replaced). A challenge goes
through it from the decision to the emailed link, which starts with the proxy's public URL, to the
confirmation."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from passgate.config import Settings
from tests.conftest import TEST_SECRET
from tests.factories import Tenant, login_body
from tests.functional.mfa.conftest import session_of
from tests.servers import SmtpSink, free_port, self_signed

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "docs" / "examples" / "nginx" / "passgate.conf"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/140.0 Safari/537.36", "Accept": "text/html"}


@pytest.fixture
def settings(settings: Settings, smtp: SmtpSink) -> Settings:
    return settings.model_copy(update={"smtp_url": smtp.url})


def _wait(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def _nginx_conf(tmp: Path, api_port: int, https_port: int, http_port: int) -> Path:
    cert, key = self_signed("127.0.0.1")
    (tmp / "cert.pem").write_bytes(cert)
    (tmp / "key.pem").write_bytes(key)
    site = SITE.read_text()
    for documented, here in [
        ("server 127.0.0.1:8000;", f"server 127.0.0.1:{api_port};"),
        ("listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;"),
        ("listen 80;", f"listen 127.0.0.1:{http_port};"),
        ("/etc/ssl/passgate/fullchain.pem", str(tmp / "cert.pem")),
        ("/etc/ssl/passgate/privkey.pem", str(tmp / "key.pem")),
    ]:
        assert documented in site, f"docs/examples/nginx/passgate.conf no longer has {documented!r}"
        site = site.replace(documented, here)
    (tmp / "passgate.conf").write_text(site)
    temps = "\n".join(
        f"    {kind}_temp_path {tmp / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    main = f"""
{"user root;" if os.geteuid() == 0 else ""}
worker_processes 1;
daemon off;
pid {tmp / "nginx.pid"};
error_log {tmp / "error.log"} warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
{temps}
    include {tmp / "passgate.conf"};
}}
"""
    conf = tmp / "nginx.conf"
    conf.write_text(main)
    return conf


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def test_a_challenge_through_nginx_in_front_of_two_api_processes(
    database_url: str, http: TestClient, tenant: Tenant, smtp: SmtpSink, tmp_path: Path
) -> None:
    redis_url = os.environ.get("PASSGATE_TEST_REDIS_URL")
    if not database_url.startswith("postgresql"):
        pytest.skip("the documented layout needs PostgreSQL: the postgresql variant runs this test")
    if not redis_url:
        pytest.skip("the documented layout needs Redis (PASSGATE_TEST_REDIS_URL is unset)")
    if NGINX is None:
        pytest.skip("nginx is not installed (apt install nginx-light; .ci/run installs it)")
    api_port, https_port, http_port = free_port(), free_port(), free_port()
    public = f"https://127.0.0.1:{https_port}"
    conf = _nginx_conf(tmp_path, api_port, https_port, http_port)
    checked = subprocess.run(
        [NGINX, "-t", "-p", str(tmp_path), "-c", str(conf)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr
    env = {
        **os.environ,
        "PASSGATE_DATABASE_URL": database_url,
        "PASSGATE_REDIS_URL": redis_url,
        "PASSGATE_SECRET_KEYS": TEST_SECRET,
        "PASSGATE_SMTP_URL": smtp.url,
        "PASSGATE_DATA_DIR": str(tmp_path / "data"),
        "PASSGATE_PUBLIC_URL": public,
        "PASSGATE_LOG_LEVEL": "WARNING",
    }
    api = subprocess.Popen(
        [sys.executable, "-m", "passgate.cli", "serve", "--port", str(api_port), "--workers", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    proxy = subprocess.Popen(
        [NGINX, "-p", str(tmp_path), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    tls = ssl.create_default_context(cadata=(tmp_path / "cert.pem").read_text())
    try:
        client = httpx.Client(base_url=public, verify=tls, timeout=30)

        def up() -> bool:
            try:
                return client.get("/healthz").status_code == 200
            except httpx.HTTPError:
                return False

        assert _wait(up, 120), (tmp_path / "error.log").read_text()[-2000:]
        # Plain http is sent to https.
        plain = httpx.get(f"http://127.0.0.1:{http_port}/healthz", follow_redirects=False)
        assert plain.status_code == 301 and plain.headers["location"].startswith("https://")

        body = login_body(
            strategy={"mfaTemplateName": "email-link"},
            person={"emailAddress": f"ng-{secrets.token_hex(4)}@example.com"},
        )
        r = client.post("/login/v2", json=body, headers=tenant.headers)
        assert r.status_code == 200, r.text
        mfa = r.json()["mfa"]
        assert (r.json()["decision"], mfa["error"]) == ("CHALLENGE", None)

        [mail] = smtp.wait_for(1, timeout=60)
        found = re.findall(re.escape(public) + r"(/v/[A-Za-z0-9_-]{43})", mail.part("text/plain"))
        assert found, "the emailed link does not start with the proxy's public URL"
        page = client.get(found[0], headers=BROWSER)
        assert page.status_code == 200 and "Confirm" in page.text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        done = client.post(f"{found[0]}/confirm", data={"csrf": csrf}, follow_redirects=False)
        assert done.status_code in (200, 303), done.text
        assert session_of(http, tenant, mfa["ID"])["status"] == "VERIFIED"
        client.close()
    finally:
        _stop(proxy, signal.SIGQUIT)
        _stop(api)
