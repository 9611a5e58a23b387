#!/usr/bin/env python3
"""The floor the decision benchmark is measured against: Passgate's stack with no Passgate work.

A FastAPI app assembled like `passgate.main.create_app` assembles Passgate's — the same
`RequestContextMiddleware` (correlation id, Prometheus counters and histogram, access log check) with a
`Metrics()` of its own, the same exception handlers (`passgate.api.errors.install`) — with one route,
`POST /bare`, that reads the body and parses it as JSON with pydantic-core straight from the bytes (as the
decision routes do) and answers a constant JSON document of about the size of a decision, built and serialised
per request like a decision response. `GET /healthz` answers like Passgate's.

What it leaves out is exactly what the benchmark wants to see the cost of: bearer-token verification,
request validation, the database transaction, the policy evaluation and the decision row.

Run it like `passgate serve` runs Passgate (one process, uvicorn with uvloop and httptools, no access
log, Passgate's JSON logging at WARNING):

    python bench/bare_app.py --port 8001
"""

from __future__ import annotations

import argparse
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter

from passgate.api import errors
from passgate.api.middleware import RequestContextMiddleware
from passgate.observability import Metrics

_BODY: TypeAdapter[dict[str, Any]] = TypeAdapter(dict[str, Any])

# The size and shape of an ALLOW decision (about 250 bytes serialised).
RESPONSE: dict[str, Any] = {
    "decision": "ALLOW",
    "guidance": "ALLOW",
    "inquiryId": "inq000000000",
    "deviceSessionId": "benchdev1",
    "deviceId": "5f1c0d2e9b7a4c3d8e6f1a2b3c4d5e6f",
    "tags": [],
    "userSegment": "default",
    "set": {"name": "login", "versionName": "v3"},
    "tagWeights": [],
}


def create_app() -> FastAPI:
    app = FastAPI(title="Passgate bench: bare endpoint", docs_url=None, redoc_url=None, openapi_url=None)
    errors.install(app)

    @app.post("/bare")
    async def bare(request: Request) -> JSONResponse:
        # Read and parse the body the way the decision routes do (pydantic-core straight from the bytes,
        # after a look at the content type), then answer a copy of the constant so the serialisation
        # work matches a decision's.
        if "json" not in request.headers.get("content-type", "application/json"):
            return JSONResponse({"detail": "not JSON"}, status_code=400)
        _BODY.validate_json(await request.body())
        return JSONResponse(dict(RESPONSE))

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    app.add_middleware(RequestContextMiddleware, metrics=Metrics())
    return app


app = create_app()


def main() -> int:
    import uvicorn

    from passgate.observability import configure_logging
    from passgate.runtime import tune_gc

    parser = argparse.ArgumentParser(description="Serve the bare benchmark endpoint (POST /bare).")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8001, help="port to listen on (default 8001)")
    parser.add_argument("--log-level", default="WARNING", help="Passgate JSON log level (default WARNING)")
    parser.add_argument(
        "--limited",
        action="store_true",
        help="serve with `passgate serve`'s HTTP limits (passgate.httpserver) instead of plain httptools",
    )
    args = parser.parse_args()
    configure_logging(args.log_level)
    tune_gc()  # as `passgate serve` does
    from passgate.httpserver import HttpLimits, limited_protocol

    # The options `passgate serve` passes, with its "auto" loop/http choices spelled out.
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http=limited_protocol(HttpLimits()) if args.limited else "httptools",
        log_config=None,
        access_log=False,
        proxy_headers=True,
        log_level=args.log_level.lower(),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
