"""Roles on every state-changing console route: each POST declares a permission, and the matrix holds for
viewer, analyst and owner alike (a refused action changes nothing)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.routing import APIRoute
from sqlalchemy import func, select

from passgate.auth.models import ApiKey
from passgate.bootstrap import Registry
from passgate.console.permissions import MATRIX, Permission, Role, allows, permissions_of

# The values routes get for their path parameters; real ids are not needed to reach the role check.
PATH_VALUES = {
    "name": "some-template",
    "event_type": "LOGIN",
    "version": "v1",
    "endpoint_id": "00000000-0000-4000-8000-000000000000",
    "key_id": "key_0000000000000000",
}
# Forms anyone may post before signing in (they carry their own CSRF token, bound to a cookie).
PUBLIC = {"/console/sign-in", "/console/sign-in/resend"}


def _permission(route: APIRoute) -> Permission | None:
    def walk(dependant: Any) -> Permission | None:
        for dep in dependant.dependencies:
            found = getattr(dep.call, "permission", None)
            if found is not None:
                return Permission(found)
            inner = walk(dep)
            if inner is not None:
                return inner
        return None

    return walk(route.dependant)


def console_posts(app: Any) -> list[tuple[str, Permission]]:
    """Every POST route of the console's area routers (each mounted under /console)."""
    from passgate.console.routes import admin, auth, messaging, monitor, policies

    out = []
    for module in (auth, monitor, messaging, policies, admin):
        for route in module.router.routes:
            assert isinstance(route, APIRoute)
            path = "/console" + route.path
            if "POST" not in route.methods or path in PUBLIC:
                continue
            permission = _permission(route)
            assert permission is not None, f"{path} checks no permission"
            out.append((re.sub(r"{(\w+)}", lambda m: PATH_VALUES[m.group(1)], path), permission))
    # Signing out ends the session the other posts use: last.
    return sorted(out, key=lambda item: item[0] == "/console/sign-out")


def test_the_matrix() -> None:
    assert permissions_of("viewer") == {Permission.READ, Permission.PREVIEW, Permission.OWN_ACCOUNT}
    analyst = permissions_of("analyst")
    assert {
        Permission.TEMPLATES_EDIT,
        Permission.POLICIES_PUBLISH,
        Permission.POLICIES_SIMULATE,
        Permission.LISTS_EDIT,
    } <= analyst
    assert not analyst & {
        Permission.KEYS_MANAGE,
        Permission.WEBHOOKS_MANAGE,
        Permission.SETTINGS_EDIT,
        Permission.BRANDING_EDIT,
    }
    assert permissions_of("owner") == set(Permission)
    assert not permissions_of("admin")  # an unknown role may do nothing
    assert set(MATRIX) == set(Permission)


def test_every_state_changing_route_declares_a_permission(app: Any) -> None:
    posts = console_posts(app)
    assert len(posts) >= 25
    assert {p for _, p in posts} >= set(Permission) - {Permission.READ}


@pytest.mark.parametrize("role", ["viewer", "analyst", "owner"])
def test_the_role_matrix_holds_on_every_mutating_route(people: Any, app: Any, role: str) -> None:
    person = people(role)
    for path, permission in console_posts(app):
        r = person.post(path)
        if allows(role, permission):
            assert r.status_code != 403 or "Not allowed" not in r.text, (role, path)
            assert r.status_code < 500, (role, path, r.status_code)
        else:
            assert r.status_code == 403 and "Not allowed" in r.text, (role, path, r.status_code)
            assert f"needs the {MATRIX[permission].value} role" in r.text
    # The last post, sign-out, is allowed to everyone: the session is over.
    assert person.get("/console/overview", follow_redirects=False).status_code == 303


def test_a_refused_action_changes_nothing(people: Any, registry: Registry) -> None:
    viewer = people("viewer")
    analyst = people("analyst")

    def keys() -> int:
        with registry.sessions() as session:
            return int(
                session.scalar(
                    select(func.count()).select_from(ApiKey).where(ApiKey.client_id == viewer.client_id)
                )
                or 0
            )

    before = keys()
    for who in (viewer, analyst):
        assert who.post("/console/keys", {"name": "sneaky"}).status_code == 403
        assert who.post("/console/settings", {"otpLength": "4"}).status_code == 403
    assert viewer.post("/console/policies/LOGIN/publish").status_code == 403
    assert keys() == before
    assert "v2" not in viewer.get("/console/policies/LOGIN").text


def test_pages_hide_what_the_role_cannot_do(people: Any) -> None:
    viewer, analyst, owner = people("viewer"), people("analyst"), people("owner")
    assert "Create key" not in viewer.get("/console/keys").text
    assert "Create key" not in analyst.get("/console/keys").text
    assert "Create key" in owner.get("/console/keys").text
    assert "Publish draft" not in viewer.get("/console/policies/LOGIN").text
    assert "Publish draft" in analyst.get("/console/policies/LOGIN").text
    assert "Add endpoint" not in analyst.get("/console/webhooks").text
    assert Role.OWNER.value in owner.get("/console/account").text
