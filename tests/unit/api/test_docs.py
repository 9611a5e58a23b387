"""The /docs page: everything it loads comes from this origin, under a Content-Security-Policy that says so."""

from __future__ import annotations

import json
import re

from fastapi import FastAPI
from fastapi.testclient import TestClient

from passgate.api import docs


def _client() -> TestClient:
    app = FastAPI(title="Passgate", docs_url=None, redoc_url=None)
    docs.install(app)
    return TestClient(app)


def _directives(policy: str) -> dict[str, list[str]]:
    parts = (directive.split() for directive in policy.split(";") if directive.strip())
    return {name: sources for name, *sources in parts}


def test_page_loads_only_from_its_own_origin() -> None:
    r = _client().get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    # Every URL the page names is relative: no scheme, no host, not even protocol-relative.
    urls = re.findall(r'(?:src|href)="([^"]*)"', r.text)
    assert sorted(urls) == [
        "docs/assets/favicon.png",
        "docs/assets/swagger-ui-bundle.js",
        "docs/assets/swagger-ui.css",
        "docs/init.js",
    ]
    assert "//" not in r.text and "<script>" not in r.text and "style=" not in r.text


def test_content_security_policy_allows_this_origin_only() -> None:
    r = _client().get("/docs")
    policy = _directives(r.headers["content-security-policy"])
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == ["'self'"] and policy["style-src"] == ["'self'"]
    assert policy["img-src"] == ["'self'", "data:"] and policy["connect-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"] and policy["base-uri"] == ["'none'"]
    assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"


def test_start_up_script_turns_the_validator_badge_off_and_keeps_no_token() -> None:
    r = _client().get("/docs/init.js")
    assert r.headers["content-type"].startswith("text/javascript")
    config = json.loads(re.search(r"var config = (\{.*\});", r.text).group(1))  # type: ignore[union-attr]
    assert config["url"] == "openapi.json"
    assert config["validatorUrl"] is None and config["persistAuthorization"] is False


def test_swagger_ui_files_are_served_from_the_package() -> None:
    http = _client()
    for name, kind in (("swagger-ui-bundle.js", "javascript"), ("swagger-ui.css", "css"), ("favicon.png", "png")):
        r = http.get(f"/docs/assets/{name}")
        assert r.status_code == 200 and kind in r.headers["content-type"], name
        assert r.content == (docs.ASSETS_DIR / name).read_bytes()


def test_stylesheet_refers_to_no_other_origin() -> None:
    css = (docs.ASSETS_DIR / "swagger-ui.css").read_text()
    assert "@import" not in css
    references = re.findall(r"url\(\s*['\"]?([^'\")]{0,16})", css)
    assert references and all(ref.startswith("data:") for ref in references), references
