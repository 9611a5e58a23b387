"""`DirectRoute`: an API route whose endpoint is called with the request, without FastAPI's per-request
machinery.

FastAPI runs every request of an `APIRoute` through its request handler: two exit stacks for dependencies
with `yield`, the endpoint's context for error messages, the body read when a parameter wants it, and
`solve_dependencies` — about a fifth of what the bare endpoint costs, even for an endpoint whose only
parameter is the `Request`. The decision endpoints take nothing else (they read the token and the body
themselves, `api.decisions`), so a `DirectRoute` calls them the way Starlette calls a plain route
(`starlette.routing.request_response`: the request, the endpoint, its response, with the app's exception
handlers), while the route stays an `APIRoute` for everything else: matching, its name, and its part of
the OpenAPI document, which is built from the same attributes and so is unchanged. Only endpoints of
exactly that shape are accepted. The differential test (tests/functional/test_decision_route.py) sends
the same generated requests to both kinds of route and compares status, headers and body.
"""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRoute
from starlette.routing import request_response


class DirectRoute(APIRoute):
    """An `APIRoute` for an `async def endpoint(request: Request) -> Response`, called directly."""

    def __init__(self, path: str, endpoint: Any, **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        dep = self.dependant
        takes_more = (
            dep.path_params
            or dep.query_params
            or dep.header_params
            or dep.cookie_params
            or dep.body_params
            or dep.dependencies
            or dep.request_param_name is None
            or self.body_field is not None
        )
        if takes_more or kwargs.get("max_body_size") is not None or kwargs.get("dependencies"):
            raise TypeError(f"{path}: a DirectRoute's endpoint takes the request and nothing else")
        self.app = request_response(endpoint)
