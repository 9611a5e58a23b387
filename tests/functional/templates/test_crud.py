"""Templates through /manage/v1/templates: create, read, list, replace, delete; isolation; built-ins."""

from __future__ import annotations

from fastapi.testclient import TestClient

from passgate.bootstrap import Registry
from tests.factories import Tenant, make_tenant
from tests.functional.mfa.conftest import challenge
from tests.functional.templates.conftest import (
    create,
    created,
    email_locale,
    email_template,
    errors_of,
    sms_template,
)

BUILTINS = {"email-code", "email-link", "sms-code", "sms-link"}


def test_create_read_list_replace_delete(http: TestClient, tenant: Tenant) -> None:
    body = email_template("acme-login", en=email_locale("Hello"), fr=email_locale("Bonjour"))
    out = created(http, tenant, body)
    assert out["name"] == "acme-login"
    assert (out["channel"], out["kind"], out["defaultLocale"]) == ("EMAIL", "OTH", "en")
    assert out["locales"]["fr"] == body["locales"]["fr"]
    assert out["availableLocales"] == ["en", "fr"]
    assert (out["builtIn"], out["overridesBuiltIn"]) == (False, False)
    assert out["createdAt"] and out["updatedAt"]

    got = http.get("/manage/v1/templates/acme-login", headers=tenant.admin_headers)
    assert got.status_code == 200 and got.json() == out

    listed = http.get("/manage/v1/templates", headers=tenant.admin_headers).json()["items"]
    by_name = {t["name"]: t for t in listed}
    assert set(by_name) == BUILTINS | {"acme-login"}
    assert [t["name"] for t in listed] == sorted(by_name)
    assert by_name["acme-login"]["builtIn"] is False
    assert all(by_name[n]["builtIn"] is True for n in BUILTINS)
    assert by_name["email-link"]["availableLocales"] == ["ar", "de", "en", "es", "fr"]
    assert "locales" not in by_name["acme-login"]  # the list is a summary

    # PUT replaces the whole template (French dropped, German added, default changed).
    replacement = email_template("acme-login", de=email_locale("Hallo"), en=email_locale("Hi"))
    replacement.pop("name")
    r = http.put("/manage/v1/templates/acme-login", json=replacement, headers=tenant.admin_headers)
    assert r.status_code == 200, r.text
    assert r.json()["availableLocales"] == ["de", "en"] and r.json()["defaultLocale"] == "de"
    assert r.json()["createdAt"] == out["createdAt"]

    r = http.delete("/manage/v1/templates/acme-login", headers=tenant.admin_headers)
    assert r.status_code == 204 and r.headers["x-builtin-restored"] == "false"
    assert http.get("/manage/v1/templates/acme-login", headers=tenant.admin_headers).status_code == 404
    r = http.delete("/manage/v1/templates/acme-login", headers=tenant.admin_headers)
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"


def test_put_creates_when_missing_and_checks_the_name(http: TestClient, tenant: Tenant) -> None:
    body = sms_template("acme-sms")
    r = http.put("/manage/v1/templates/acme-sms", json=body, headers=tenant.admin_headers)
    assert r.status_code == 201, r.text
    r = http.put("/manage/v1/templates/acme-sms", json=body, headers=tenant.admin_headers)
    assert r.status_code == 200
    r = http.put("/manage/v1/templates/other-name", json=body, headers=tenant.admin_headers)
    assert r.status_code == 422 and "name" in errors_of(r)


def test_names_are_unique_per_client_not_globally(
    http: TestClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    created(http, tenant, email_template("welcome"))
    r = create(http, tenant, email_template("welcome"))
    assert r.status_code == 409 and errors_of(r)["name"]
    created(http, other_tenant, email_template("welcome"))


def test_clients_never_see_each_others_templates(
    http: TestClient, tenant: Tenant, other_tenant: Tenant, registry: Registry
) -> None:
    created(http, tenant, email_template("private-one", en=email_locale("Secret words")))
    h = other_tenant.admin_headers
    assert http.get("/manage/v1/templates/private-one", headers=h).status_code == 404
    assert "private-one" not in {
        t["name"] for t in http.get("/manage/v1/templates", headers=h).json()["items"]
    }
    assert http.post("/manage/v1/templates/private-one/preview", headers=h).status_code == 404
    r = http.post("/manage/v1/templates/private-one/test-send", json={"to": "x@example.com"}, headers=h)
    assert r.status_code == 404
    assert http.delete("/manage/v1/templates/private-one", headers=h).status_code == 404
    # A PUT by the other client creates its own template; the first client's is untouched.
    mine = email_template("private-one", en=email_locale("Other words"))
    assert http.put("/manage/v1/templates/private-one", json=mine, headers=h).status_code == 201
    first = http.get("/manage/v1/templates/private-one", headers=tenant.admin_headers).json()
    assert "Secret words" in first["locales"]["en"]["html"]
    # And a login of a third client naming it finds nothing.
    third = make_tenant(http, registry, name="Third")
    out = challenge(http, third, "private-one", person={"emailAddress": "t@example.com"})
    assert out["mfa"]["error"] == "TEMPLATE_NOT_FOUND"


def test_client_template_overrides_the_builtin_of_the_same_name(
    http: TestClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    builtin = http.get("/manage/v1/templates/email-link", headers=tenant.admin_headers).json()
    assert builtin["builtIn"] is True and builtin["createdAt"] is None
    body = email_template("email-link", en=email_locale("Howdy"))
    r = http.put("/manage/v1/templates/email-link", json=body, headers=tenant.admin_headers)
    assert r.status_code == 201
    mine = http.get("/manage/v1/templates/email-link", headers=tenant.admin_headers).json()
    assert (mine["builtIn"], mine["overridesBuiltIn"]) == (False, True)
    assert mine["availableLocales"] == ["en"]
    listed = [t for t in http.get("/manage/v1/templates", headers=tenant.admin_headers).json()["items"]]
    assert [t["builtIn"] for t in listed if t["name"] == "email-link"] == [False]  # one entry, the override

    preview = http.post("/manage/v1/templates/email-link/preview", headers=tenant.admin_headers).json()
    assert "Howdy" in preview["html"]
    # The other client still gets the built-in.
    theirs = http.post("/manage/v1/templates/email-link/preview", headers=other_tenant.admin_headers).json()
    assert "Howdy" not in theirs["html"] and "Yes, it" in theirs["html"]

    # Deleting the override brings the built-in back; built-ins themselves cannot be deleted.
    r = http.delete("/manage/v1/templates/email-link", headers=tenant.admin_headers)
    assert r.status_code == 204 and r.headers["x-builtin-restored"] == "true"
    assert http.get("/manage/v1/templates/email-link", headers=tenant.admin_headers).json()["builtIn"] is True
    r = http.delete("/manage/v1/templates/email-link", headers=tenant.admin_headers)
    assert r.status_code == 409 and r.json()["type"] == "urn:passgate:problem:builtin-template"


def test_email_otp_is_allowed(http: TestClient, tenant: Tenant) -> None:
    out = created(http, tenant, email_template("email-passcode", kind="OTP"))
    assert (out["channel"], out["kind"]) == ("EMAIL", "OTP")


def test_management_needs_the_admin_scope(http: TestClient, tenant: Tenant) -> None:
    assert http.get("/manage/v1/templates", headers=tenant.headers).status_code == 403
    assert http.get("/manage/v1/templates").status_code == 401
    r = http.post("/manage/v1/templates", json=email_template("x"), headers=tenant.headers)
    assert r.status_code == 403
    assert http.get("/manage/v1/branding", headers=tenant.headers).status_code == 403
