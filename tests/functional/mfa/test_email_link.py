from __future__ import annotations

import re
from html import unescape

import httpx
from fastapi.testclient import TestClient

from passgate.bootstrap import Registry
from passgate.keyring import KeyRing
from tests.factories import Tenant
from tests.functional.mfa.conftest import challenge, drain, session_of, timeline
from tests.servers import HttpReceiver, SmtpSink

LINK = re.compile(r"http://127\.0\.0\.1:8000/v/[A-Za-z0-9_-]{43}")
BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/140.0 Safari/537.36", "Accept": "text/html"}


def link_from(mail_text: str) -> str:
    found = LINK.findall(mail_text)
    assert found, mail_text
    return found[0]


def test_email_link_end_to_end(
    http: TestClient, tenant: Tenant, registry: Registry, smtp: SmtpSink, gateway: HttpReceiver
) -> None:
    target = f"{gateway.url}/welcome"
    out = challenge(
        http,
        tenant,
        "email-link",
        event="NEW_ACCOUNT_OPENING",
        person={"emailAddress": "jo@example.com", "name": {"first": "Jo"}},
        strategy={"verificationTargetUrl": target},
    )
    v = out["verification"]
    assert out["decision"] == "CHALLENGE"
    assert (v["type"], v["channel"], v["status"], v["error"]) == ("NONCE_OTH", "EMAIL", "UNKNOWN", None)
    assert out["person"] == {"emailAddress": "jo@example.com"}
    assert out["strategy"] == {"verificationTemplateName": "email-link"}
    assert "mfa" not in out

    assert drain(registry) == 1
    [mail] = smtp.wait_for(1)
    assert mail.rcpt_tos == ["jo@example.com"]
    msg = mail.message
    assert msg["Message-ID"].startswith("<") and "@acme.example>" in msg["Message-ID"]
    assert msg.get_content_type() == "multipart/alternative"
    text, html = mail.part("text/plain"), mail.part("text/html")
    url = link_from(text)
    assert url in html
    assert "Acme Shop" in html
    assert session_of(http, tenant, v["ID"])["status"] == "MESSAGE_SENT"

    path = url.removeprefix("http://127.0.0.1:8000")
    for _ in range(3):
        page = http.get(path, headers=BROWSER)
        assert page.status_code == 200
        assert "Confirm" in page.text and "This wasn't me" in unescape(page.text)
    assert http.head(path).status_code == 200
    assert session_of(http, tenant, v["ID"])["status"] == "MESSAGE_SENT"
    opens = [e for e in timeline(http, tenant, v["ID"]) if e["type"] == "LINK_OPENED"]
    assert len(opens) == 4
    assert opens[-1]["data"]["prefetch"] is True  # the HEAD

    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    done = http.post(f"{path}/confirm", data={"csrf": csrf}, follow_redirects=False)
    assert done.status_code == 303
    assert done.headers["location"] == target
    assert httpx.get(done.headers["location"]).status_code == 200  # the redirect leads somewhere real
    assert gateway.requests[-1].path == "/welcome"
    after = session_of(http, tenant, v["ID"])
    assert after["status"] == "VERIFIED"
    assert after["verifiedAt"]

    # The link is spent: the same neutral page as an unknown token.
    used = http.get(path, headers=BROWSER)
    unknown = http.get("/v/" + "A" * 43, headers=BROWSER)
    assert used.status_code == unknown.status_code == 200
    assert "can't be used" in unescape(used.text) and used.text == unknown.text


def test_confirm_needs_the_pages_csrf_token(
    http: TestClient, tenant: Tenant, registry: Registry, smtp: SmtpSink
) -> None:
    v = challenge(http, tenant, "email-link", person={"emailAddress": "c@example.com"})["mfa"]
    drain(registry)
    path = link_from(smtp.wait_for(1)[0].part("text/plain")).removeprefix("http://127.0.0.1:8000")
    fresh = TestClient(http.app)  # no cookie from the page
    r = fresh.post(f"{path}/confirm", data={"csrf": "forged"})
    assert r.status_code == 403
    http.get(path, headers=BROWSER)
    r = http.post(f"{path}/confirm", data={"csrf": "forged"})
    assert r.status_code == 403
    assert session_of(http, tenant, v["ID"])["status"] == "MESSAGE_SENT"


def test_this_wasnt_me_terminates(
    http: TestClient, tenant: Tenant, registry: Registry, smtp: SmtpSink
) -> None:
    v = challenge(http, tenant, "email-link", person={"emailAddress": "d@example.com"})["mfa"]
    drain(registry)
    path = link_from(smtp.wait_for(1)[0].part("text/plain")).removeprefix("http://127.0.0.1:8000")
    page = http.get(path, headers=BROWSER)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    r = http.post(f"{path}/deny", data={"csrf": csrf})
    assert r.status_code == 200 and "Thanks for telling us" in r.text
    s = session_of(http, tenant, v["ID"])
    assert (s["status"], s["terminationReason"]) == ("TERMINATED", "NOT_ME")


def test_bind_to_device_number_matching(
    http: TestClient, tenant: Tenant, registry: Registry, smtp: SmtpSink
) -> None:
    v = challenge(
        http, tenant, "email-link", person={"emailAddress": "m@example.com"}, strategy={"bindToDevice": True}
    )["mfa"]
    number = v["matchNumber"]
    assert re.fullmatch(r"[1-9][0-9]", number)
    drain(registry)
    path = link_from(smtp.wait_for(1)[0].part("text/plain")).removeprefix("http://127.0.0.1:8000")
    page = http.get(path, headers=BROWSER)
    choices = re.findall(r'name="number" id="n\d" value="(\d\d)"', page.text)
    assert number in choices and len(choices) == 3
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    # (A wrong pick ends the session: tests/functional/mfa/test_number_matching.py.)
    r = http.post(f"{path}/confirm", data={"csrf": csrf, "number": number})
    assert r.status_code == 200 and "confirmed" in r.text
    assert session_of(http, tenant, v["ID"])["status"] == "VERIFIED"


def test_page_follows_accept_language_and_rtl(
    http: TestClient, tenant: Tenant, registry: Registry, smtp: SmtpSink
) -> None:
    challenge(http, tenant, "email-link", person={"emailAddress": "l@example.com"})
    drain(registry)
    path = link_from(smtp.wait_for(1)[0].part("text/plain")).removeprefix("http://127.0.0.1:8000")
    fr = http.get(path, headers={**BROWSER, "Accept-Language": "fr-CA,fr;q=0.9,en;q=0.5"})
    assert 'lang="fr"' in fr.text and "Confirmer" in fr.text
    ar = http.get(path, headers={**BROWSER, "Accept-Language": "ar"})
    assert 'dir="rtl"' in ar.text and "تأكيد" in ar.text


def test_only_keyed_hashes_are_stored(
    http: TestClient, tenant: Tenant, registry: Registry, smtp: SmtpSink
) -> None:
    from datetime import UTC, datetime

    from sqlalchemy import select, update

    from passgate.messaging.models import Message
    from passgate.mfa.models import MfaSecret

    v = challenge(http, tenant, "email-link", person={"emailAddress": "h@example.com"})["mfa"]
    with registry.sessions() as s:
        sealed = s.scalars(select(Message.sealed_secret).where(Message.session_id == v["ID"])).one()
        made = s.scalars(select(MfaSecret).where(MfaSecret.session_id == v["ID"])).all()
    assert sealed is None and made == []  # the request makes no secret: the worker's claim does
    claimed = registry.dispatcher.claim(limit=10)
    assert [c.secret for c in claimed if c.secret]
    with registry.sessions() as s:
        sealed = s.scalars(select(Message.sealed_secret).where(Message.session_id == v["ID"])).one()
        pending = s.scalars(select(MfaSecret).where(MfaSecret.session_id == v["ID"])).one()
    assert sealed and not pending.active  # encrypted until sent; not valid before the provider took it
    # Taken over as a worker that died after claiming would leave it: the same value goes out.
    with registry.sessions() as s, s.begin():
        s.execute(update(Message).where(Message.session_id == v["ID"]).values(locked_until=datetime(2000, 1, 1, tzinfo=UTC)))
    drain(registry)
    token = link_from(smtp.wait_for(1)[0].part("text/plain")).rsplit("/", 1)[1]
    with registry.sessions() as s:
        secret = s.scalars(select(MfaSecret).where(MfaSecret.session_id == v["ID"])).one()
        sealed = s.scalars(select(Message.sealed_secret).where(Message.session_id == v["ID"])).one()
    assert sealed is None  # erased once the provider accepted the message
    assert token == claimed[0].secret  # the value made at the first claim, sent at the second
    assert token not in secret.secret_hash
    assert secret.secret_hash == KeyRing(
        [b"test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"]
    ).keyed_hash("mfa-link", token)


def test_link_opens_past_the_first_twenty_are_counted_not_listed(
    http: TestClient, tenant: Tenant, registry: Registry, smtp: SmtpSink
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from sqlalchemy import func, select

    from passgate.mfa.models import MfaEvent

    v = challenge(http, tenant, "email-link", person={"emailAddress": "opens@example.com"})["mfa"]
    drain(registry)
    path = link_from(smtp.wait_for(1)[0].part("text/plain")).removeprefix("http://127.0.0.1:8000")

    def open_(i: int) -> int:
        return (http.head(path) if i % 3 == 0 else http.get(path, headers=BROWSER)).status_code

    with ThreadPoolExecutor(6) as pool:  # concurrent opens are each counted once
        assert set(pool.map(open_, range(45))) == {200}
    with registry.sessions() as s:
        rows = s.scalar(
            select(func.count()).where(MfaEvent.session_id == v["ID"], MfaEvent.type == "LINK_OPENED")
        )
    assert rows == 20
    assert session_of(http, tenant, v["ID"])["linkOpens"] == 45
    items = timeline(http, tenant, v["ID"])
    opened = [i for i, e in enumerate(items) if e["type"] == "LINK_OPENED"]
    assert len(opened) == 20
    assert items[opened[-1] + 1]["type"] == "LINK_OPENS_UNLISTED"
    assert items[opened[-1] + 1]["data"] == {"count": 25}
    assert session_of(http, tenant, v["ID"])["status"] == "MESSAGE_SENT"
