"""The OpenAPI schema as clients read it, and the Swagger UI and ReDoc pages, served from packaged assets."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.staticfiles import StaticFiles

OPENAPI_URL = "/openapi.json"
ASSETS_URL = "/docs/assets"  # api/static/, see its README.md for the versions
_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")
_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")


def truthful(schema: dict[str, Any]) -> dict[str, Any]:
    """Fix, in place, what FastAPI generates but the service does not do; doing it twice changes nothing.

    FastAPI declares a 422 on every operation with input, but validation failures are answered 400
    (api/errors.py), which each operation declares itself. A query or header parameter is present or
    absent, never JSON null, so an optional one is described by its non-null schema alone. FastAPI's
    models write every bound as a float (`"maximum": 1000.0` on an integer); they are whole numbers again.
    """
    for node in _objects(schema):
        for keyword in _BOUNDS:
            if isinstance(node.get(keyword), float) and node[keyword].is_integer():
                node[keyword] = int(node[keyword])
    for operation in _operations(schema):
        operation.get("responses", {}).pop("422", None)
        for parameter in operation.get("parameters", []):
            parameter["schema"] = _without_null(parameter.get("schema", {}))
    components = schema.get("components", {}).get("schemas", {})
    candidates = [name for name in _VALIDATION_SCHEMAS if name in components]
    rest = json.dumps([schema.get("paths"), {k: v for k, v in components.items() if k not in candidates}])
    for name in candidates:
        if f'"#/components/schemas/{name}"' not in rest:
            del components[name]
    return schema


def _operations(schema: dict[str, Any]) -> list[dict[str, Any]]:
    methods = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
    return [op for item in schema.get("paths", {}).values() for method, op in item.items() if method in methods]


def _objects(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _objects(value)
    elif isinstance(node, list):
        for value in node:
            yield from _objects(value)


def _without_null(parameter_schema: dict[str, Any]) -> dict[str, Any]:
    branches = parameter_schema.get("anyOf")
    if not branches:
        return parameter_schema
    kept = [branch for branch in branches if branch != {"type": "null"}]
    if len(kept) != 1:
        return parameter_schema
    rest = {key: value for key, value in parameter_schema.items() if key != "anyOf"}
    return {**kept[0], **rest}


def install(app: FastAPI) -> None:
    """Serve /openapi.json (made truthful), /docs and /redoc, and the pages' assets, all from this process.

    Each is a route of its own, so the metrics and the log line name it (not `unmatched`).
    """
    generate: Callable[[], dict[str, Any]] = app.openapi
    fixed: list[dict[str, Any]] = []

    def openapi() -> dict[str, Any]:
        schema = generate()  # FastAPI keeps it until the routes change
        if not fixed or fixed[0] is not schema:
            fixed[:] = [truthful(schema)]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    assets = StaticFiles(packages=[("course_signup.api", "static")])

    @app.get(OPENAPI_URL, include_in_schema=False)
    async def openapi_json() -> Response:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + OPENAPI_URL,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/swagger-ui/favicon-32x32.png",
            # No badge that would send the schema's address to the public validator.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_redoc_html(
            openapi_url=root + OPENAPI_URL,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/swagger-ui/favicon-32x32.png",
            with_google_fonts=False,
        )

    @app.get(ASSETS_URL + "/{path:path}", include_in_schema=False)
    async def docs_asset(path: str, request: Request) -> Response:
        # StaticFiles keeps lookups inside the folder and answers If-None-Match with 304.
        return await assets.get_response(path, request.scope)
