"""The web portal: page shells rendered with Jinja2, their scripts and styles, all served from the package.

The pages hold no data. Their scripts call the JSON API from the browser with the user's bearer token,
so the portal has no rules, no queries and no session of its own. The one portal-only endpoint is the
development sign-in, which exists only on a developer's machine (see `dev_sign_in_enabled`).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from jinja2 import Environment, PackageLoader, select_autoescape
from pydantic import Field, StrictBool, StrictStr
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles

from course_signup.api.envelope import ok
from course_signup.api.schemas import Schema
from course_signup.settings import Settings

PREFIX = "/portal"
ASSETS_URL = f"{PREFIX}/static"
DEV_SIGN_IN_URL = f"{PREFIX}/dev-sign-in"
DEV_TOKEN_SECONDS = 8 * 3600
# Scripts, styles and requests only from this origin: no inline script or style, no other host.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    )
)

# path: (template, title, script); each page is a route of its own, so metrics and logs name it.
PAGES: dict[str, tuple[str, str, str]] = {
    "/": ("catalogue.html", "Course catalogue", "catalogue.js"),
    f"{PREFIX}/sign-in": ("sign_in.html", "Sign in", "sign-in.js"),
    f"{PREFIX}/my-courses": ("my_courses.html", "My courses", "my-courses.js"),
    f"{PREFIX}/classmates": ("classmates.html", "Classmates", "classmates.js"),
    f"{PREFIX}/registrar": ("registrar.html", "Registrar", "registrar.js"),
    f"{PREFIX}/registrar/course": ("course_form.html", "Course", "course-form.js"),
    f"{PREFIX}/registrar/roster": ("roster.html", "Roster", "roster.js"),
    f"{PREFIX}/registrar/audit-trail": ("audit_trail.html", "Audit trail", "audit-trail.js"),
    f"{PREFIX}/registrar/dashboard": ("dashboard.html", "Dashboard", "dashboard.js"),
}


class DevSignInCreate(Schema):
    email: StrictStr = Field(max_length=254)
    registrar: StrictBool = False


def dev_sign_in_enabled(settings: Settings) -> bool:
    """A developer's machine: the embedded database, the generated secret, listening on loopback only.

    Anyone who can reach the sign-in can mint a registrar's token, so it never exists where tokens
    come from elsewhere (JWT_SECRET, a JWKS), on another database, or on a wider address (the
    image's prod.yml listens on 0.0.0.0).
    """
    return (
        settings.auth_mode == "jwt"
        and settings.embedded
        and settings.jwt_secret is None
        and not settings.jwt_jwks_url
        and _is_loopback(settings.host)
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def install(app: FastAPI, settings: Settings) -> None:
    """Add the portal's pages, its assets and, on a developer's machine, the development sign-in."""
    app.include_router(_router(dev_sign_in=dev_sign_in_enabled(settings)))


def _router(*, dev_sign_in: bool) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    environment = Environment(
        loader=PackageLoader("course_signup", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    assets = StaticFiles(packages=[("course_signup.api", "static/portal")])

    def page(path: str, template: str, title: str, script: str) -> Any:
        async def render(request: Request) -> Response:
            root = request.scope.get("root_path", "").rstrip("/")
            html = environment.get_template(f"portal/{template}").render(
                path=path, title=title, script=script, root=root, assets=root + ASSETS_URL, dev_sign_in=dev_sign_in
            )
            return HTMLResponse(html, headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY})

        return render

    for path, (template, title, script) in PAGES.items():
        router.add_api_route(path, page(path, template, title, script), methods=["GET"], name=f"portal:{template}")

    @router.get(ASSETS_URL + "/{path:path}")
    async def portal_asset(path: str, request: Request) -> Response:
        # StaticFiles keeps lookups inside the folder and answers If-None-Match with 304.
        return await assets.get_response(path, request.scope)

    if dev_sign_in:

        @router.post(DEV_SIGN_IN_URL)
        async def development_sign_in(body: DevSignInCreate, request: Request) -> Response:
            """Development only: a token for any e-mail, signed with the generated secret."""
            token = request.app.state.tokens.issue(body.email, admin=body.registrar, ttl_seconds=DEV_TOKEN_SECONDS)
            response = ok({"token": token})
            response.headers["Cache-Control"] = "no-store"
            return response

    return router
