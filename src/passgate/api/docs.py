"""The interactive API reference at /docs, served whole by Passgate: no CDN, no third-party origin.

FastAPI's own /docs page loads Swagger UI from a CDN: blank on a network without internet, and a third-party
script running on the origin that holds the API's tokens. Here the page, its start-up script and Swagger UI's
files (shipped by the `fastapi-offline` package, which follows Swagger UI's releases) all come from
Passgate, and a Content-Security-Policy lets the page load nothing from anywhere else.

The page's URLs are relative to /docs, so it also loads when a proxy serves Passgate under a path prefix.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles

DOCS_PATH = "/docs"
ASSETS_PATH = "/docs/assets"
INIT_PATH = "/docs/init.js"
# Swagger UI's swagger-ui-bundle.js, swagger-ui.css and favicon.png.
ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"

# Why each source is allowed (nothing else is: default-src 'none'):
# - script-src 'self': the bundle and the start-up script are files of this origin; the page has no inline
#   script (the start-up code is /docs/init.js for that reason).
# - style-src 'self': Swagger UI's stylesheet. Its components set styles through the DOM, which the policy
#   does not govern, so no 'unsafe-inline' is needed (tests/browser/test_api_reference.py records every
#   violation while the page is used).
# - img-src 'self' data:: the favicon, and the icons (arrows, locks, the copy button) that the stylesheet
#   draws as data: SVGs.
# - connect-src 'self': the OpenAPI document, "Try it out" and the token request of the Authorize dialog go
#   to this origin only.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} API reference</title>
<link rel="stylesheet" href="docs/assets/swagger-ui.css">
<link rel="icon" type="image/png" href="docs/assets/favicon.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/assets/swagger-ui-bundle.js"></script>
<script src="docs/init.js"></script>
</body>
</html>
"""

# validatorUrl null: Swagger UI would otherwise show a badge image fetched from validator.swagger.io.
# persistAuthorization stays off: a pasted token is not kept in the browser's storage.
INIT = """"use strict";
window.addEventListener("load", function () {{
  var config = {config};
  config.presets = [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset];
  window.ui = SwaggerUIBundle(config);
}});
"""


def swagger_config(openapi_url: str) -> dict[str, object]:
    """Swagger UI's settings; the document's URL is made relative to /docs (see the module's docstring)."""
    return {
        "url": openapi_url.lstrip("/"),
        "dom_id": "#swagger-ui",
        "layout": "BaseLayout",
        "deepLinking": True,
        "showExtensions": True,
        "showCommonExtensions": True,
        "validatorUrl": None,
        "persistAuthorization": False,
        "tryItOutEnabled": False,
    }


def install(app: FastAPI) -> None:
    """/docs, its start-up script and Swagger UI's files. The app must be made with docs_url=None."""
    openapi_url = app.openapi_url or "/openapi.json"
    page = PAGE.format(title=html.escape(app.title))
    init = INIT.format(config=json.dumps(swagger_config(openapi_url)))

    @app.get(DOCS_PATH, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(page, headers=HEADERS)

    @app.get(INIT_PATH, include_in_schema=False)
    async def docs_init() -> Response:
        return Response(init, media_type="text/javascript", headers={"X-Content-Type-Options": "nosniff"})

    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS_DIR), name="docs-assets")
