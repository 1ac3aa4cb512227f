"""The OpenAPI schema tells clients the truth (API.md §7), and /docs and /redoc work with no network."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from course_signup.domain import rules
from course_signup.domain.errors import InvalidInputError

METHODS = ("get", "put", "post", "delete", "patch")

# operationId: (method, path, every status it answers). Pinned so that a new answer is declared with it.
OPERATIONS: dict[str, tuple[str, str, set[str]]] = {
    "health": ("get", "/health", {"200"}),
    "ready": ("get", "/ready", {"200", "503"}),
    "metrics": ("get", "/metrics", {"200"}),
    "listCourses": ("get", "/courses", {"200", "304", "400", "429", "503"}),
    "getCourse": ("get", "/courses/{courseId}", {"200", "304", "400", "404", "429", "503"}),
    "createCourse": ("post", "/courses", {"201", "400", "401", "403", "409", "413", "415", "503"}),
    "changeCourse": ("patch", "/courses/{courseId}", {"200", "400", "401", "403", "404", "409", "413", "415", "503"}),
    "deleteCourse": ("delete", "/courses/{courseId}", {"200", "400", "401", "403", "404", "409", "503"}),
    "courseRoster": ("get", "/courses/{courseId}/students", {"200", "400", "401", "403", "404", "503"}),
    "courseEvents": ("get", "/courses/{courseId}/events", {"200", "400", "401", "403", "503"}),
    "signUp": (
        "post",
        "/students/{studentEmail}/courses",
        {"200", "202", "400", "401", "403", "404", "409", "413", "415", "429", "503"},
    ),
    "myCourses": ("get", "/students/{studentEmail}/courses", {"200", "400", "401", "403", "503"}),
    "dropCourse": (
        "delete",
        "/students/{studentEmail}/courses/{courseId}",
        {"200", "400", "401", "403", "404", "429", "503"},
    ),
    "classmates": (
        "get",
        "/students/{studentEmail}/courses/{courseId}/classmates",
        {"200", "400", "401", "403", "404", "503"},
    ),
    "importCourses": ("post", "/course-imports", {"200", "400", "401", "403", "409", "413", "415", "503"}),
    "dashboard": ("get", "/dashboard", {"200", "401", "403", "503"}),
}
NO_DATABASE = {"health", "metrics"}


@pytest.fixture
async def schema(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


def operations(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        op["operationId"]: op for item in schema["paths"].values() for method, op in item.items() if method in METHODS
    }


def resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return node


def json_schema_of(schema: dict[str, Any], operation: dict[str, Any], status: str) -> dict[str, Any]:
    return resolve(schema, operation["responses"][status]["content"]["application/json"]["schema"])


def walk(node: Any) -> Any:
    """Every dict in a JSON document."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


async def test_operation_ids_are_short_camel_case_names(schema):
    found = {op["operationId"]: (method, path) for path, item in schema["paths"].items() for method, op in item.items()}
    assert found == {op_id: (method, path) for op_id, (method, path, _) in OPERATIONS.items()}
    assert all(re.fullmatch(r"[a-z][a-zA-Z]*", op_id) for op_id in found)


async def test_each_operation_declares_exactly_the_statuses_it_answers(schema):
    declared = {op_id: set(op["responses"]) for op_id, op in operations(schema).items()}
    assert declared == {op_id: statuses for op_id, (_, _, statuses) in OPERATIONS.items()}


async def test_no_operation_declares_422_and_validation_is_400_where_there_is_input(schema):
    assert not [node for node in walk(schema["paths"]) if "422" in node]
    assert not {"HTTPValidationError", "ValidationError"} & set(schema["components"]["schemas"])
    for op_id, op in operations(schema).items():
        takes_input = bool(op.get("parameters") or op.get("requestBody"))
        assert ("400" in op["responses"]) == takes_input, op_id


async def test_every_operation_that_touches_the_database_declares_503_with_retry_after(schema):
    for op_id, op in operations(schema).items():
        if op_id in NO_DATABASE:
            assert "503" not in op["responses"], op_id
            continue
        answer = op["responses"]["503"]
        assert answer["headers"]["Retry-After"]["required"] is True, op_id
        assert answer["headers"]["Retry-After"]["schema"]["type"] == "integer"


async def test_error_answers_use_the_envelope_schema_with_their_headers(schema):
    envelope = schema["components"]["schemas"]["ErrorEnvelope"]
    assert set(envelope["required"]) == {"code", "message", "data"}
    assert envelope["properties"]["data"]["type"] == "string"
    assert envelope["properties"]["code"]["minimum"] == 400
    for op_id, op in operations(schema).items():
        for status, answer in op["responses"].items():
            if int(status) < 400:
                continue
            content = answer["content"]["application/json"]
            assert content["schema"] == {"$ref": "#/components/schemas/ErrorEnvelope"}, (op_id, status)
            assert content["example"]["code"] == int(status)
            assert isinstance(content["example"]["data"], str)
            if status == "401":
                assert answer["headers"]["WWW-Authenticate"]["required"] is True
            if status == "429":
                assert answer["headers"]["Retry-After"]["required"] is True


async def test_bounds_are_json_schema_minimum_and_maximum(schema):
    components = schema["components"]["schemas"]
    for model in ("CourseCreate", "CoursePatch"):
        properties = components[model]["properties"]
        capacity = next(branch for branch in properties["capacity"]["anyOf"] if branch.get("type") == "integer")
        assert (capacity["minimum"], capacity["maximum"]) == (0, 10_000_000), model
        assert (properties["lessons"]["minimum"], properties["lessons"]["maximum"]) == (0, 100_000), model
        assert type(properties["lessons"]["maximum"]) is int
    limit = next(p for p in operations(schema)["listCourses"]["parameters"] if p["name"] == "limit")
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 1000)
    # pydantic's own names for bounds are no JSON Schema keyword: no client reads them
    assert not [node for node in walk(schema) if {"ge", "le", "gt", "lt"} & set(node) and "type" in node]


async def test_optional_parameters_are_never_null(schema):
    for op_id, op in operations(schema).items():
        for parameter in op.get("parameters", []):
            assert "anyOf" not in parameter["schema"], (op_id, parameter["name"])
            assert parameter["schema"].get("type") != "null"


async def test_ready_and_delete_answer_typed_models(schema):
    ops = operations(schema)
    ready = resolve(schema, json_schema_of(schema, ops["ready"], "200")["properties"]["data"])
    assert ready["required"] == ["database"]
    assert {name: ready["properties"][name].get("const") for name in ("database", "redis", "broker")} == {
        "database": "ok",
        "redis": "ok",
        "broker": "ok",
    }
    deleted = resolve(schema, json_schema_of(schema, ops["deleteCourse"], "200")["properties"]["data"])
    assert set(deleted["properties"]) == {"courseId", "status"}
    assert deleted["properties"]["status"]["const"] == "deleted"
    assert set(deleted["required"]) == {"courseId", "status"}
    success = json_schema_of(schema, ops["deleteCourse"], "200")
    assert (success["properties"]["code"]["const"], success["properties"]["message"]["const"]) == (0, "ok")
    assert set(success["required"]) == {"code", "message", "data"}


async def test_typed_answers_match_what_the_service_sends(client: httpx.AsyncClient, admin_headers):
    ready = (await client.get("/ready")).json()["data"]
    assert ready == {"database": "ok"}
    created = await client.post("/courses", json={"courseId": "gone1", "name": "Gone"}, headers=admin_headers)
    assert created.status_code == 201
    deleted = await client.delete("/courses/gone1", headers=admin_headers)
    assert deleted.json() == {"code": 0, "message": "ok", "data": {"courseId": "GONE1", "status": "deleted"}}


async def test_rules_json_schema_cannot_express_are_said_in_words(schema):
    components = schema["components"]["schemas"]
    for model in ("CourseCreate", "CoursePatch"):
        assert "`registrationClosesAt` must be later than `registrationOpensAt`" in components[model]["description"]
    for op_id in ("listCourses", "courseRoster", "courseEvents", "myCourses", "classmates"):
        cursor = next(p for p in operations(schema)[op_id]["parameters"] if p["name"] == "cursor")
        assert "Opaque" in cursor["description"], op_id
    assert "kept after the course is deleted" in operations(schema)["courseEvents"]["description"]


async def test_sign_up_documents_the_replay_header(schema):
    answers = operations(schema)["signUp"]["responses"]
    for status in ("200", "202", "404", "409"):
        assert "Idempotent-Replayed" in answers[status]["headers"], status


@pytest.mark.parametrize(
    "raw",
    [
        "a@b",
        "  Alice@Example.COM ",
        "\x85a@b\x1c",
        "a\x85b@c",
        "\ufeffa@b",
        "a\u2028b@c",
        "a\xa0b@c",
        "a\tb@c",
        "a@b@c",
        "@b",
        "a@",
        "a\x7f@b",
        "é@ü",
    ],
)
def test_the_e_mail_pattern_accepts_what_the_service_accepts(raw: str):
    # The pattern holds no \s, so Python's re reads it as a JSON Schema (ECMA-262) validator does.
    try:
        rules.normalize_email(raw)
        accepted = True
    except InvalidInputError:
        accepted = False
    assert bool(re.fullmatch(rules.EMAIL_PATTERN, raw)) == accepted
    assert "\\s" not in rules.EMAIL_PATTERN


# --- /docs and /redoc with no network ---------------------------------------------------------------

ASSET_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}


def referenced_urls(html: str) -> list[str]:
    """What the page loads: src, href and spec-url attributes, and Swagger UI's `url:`."""
    attributes = re.findall(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']""", html)
    return attributes + re.findall(r"""\burl\s*:\s*["']([^"']+)["']""", html)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_pages_load_only_same_origin_assets_that_answer(client: httpx.AsyncClient, page: str):
    response = await client.get(page)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "://" not in html  # no CDN, no web fonts: nothing but this origin
    urls = referenced_urls(html)
    assert "/openapi.json" in urls
    assets = [url for url in urls if url != "/openapi.json"]
    assert {url.rsplit(".", 1)[1] for url in assets} >= ({"js", "css", "png"} if page == "/docs" else {"js", "png"})
    for url in assets:
        assert url.startswith("/docs/assets/") and not url.startswith("//"), url
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert ASSET_TYPES["." + url.rsplit(".", 1)[1]] in asset.headers["content-type"], url
        assert len(asset.content) > 100


async def test_docs_assets_are_revalidated_and_stay_inside_their_folder(client: httpx.AsyncClient):
    bundle = await client.get("/docs/assets/redoc/redoc.standalone.js")
    again = await client.get(
        "/docs/assets/redoc/redoc.standalone.js", headers={"If-None-Match": bundle.headers["etag"]}
    )
    assert again.status_code == 304
    assert (await client.get("/docs/assets/swagger-ui/LICENSE")).status_code == 200  # the licences ship too
    for path in ("/docs/assets/nothing.js", "/docs/assets/%2e%2e/docs.py", "/docs/assets/..%2fdocs.py"):
        missing = await client.get(path)
        assert missing.status_code == 404, path
        assert missing.json()["code"] == 404


async def test_docs_pages_and_schema_have_their_own_metrics_routes(client: httpx.AsyncClient):
    for path in ("/docs", "/redoc", "/openapi.json", "/docs/assets/swagger-ui/swagger-ui.css"):
        assert (await client.get(path)).status_code == 200
    text = (await client.get("/metrics")).text
    for route in ("/docs", "/redoc", "/openapi.json", "/docs/assets/{path:path}"):
        assert f'route="{route}",status="200"' in text, route
