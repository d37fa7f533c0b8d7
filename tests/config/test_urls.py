"""The URLs config/urls.py serves besides the API views: the OpenAPI document and its UI,
and the JSON shape of framework-level errors (unknown URL, wrong method)."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from domain.catalog.apis import PRICE_PATTERN
from domain.events.registry import event_types
from domain.jobs.apis import openapi_schema
from domain.jobs.registry import job_kinds
from tests.conftest import assert_error

pytestmark = pytest.mark.django_db


# --- The OpenAPI document and its UI -----------------------------------------------------

@pytest.mark.parametrize("request_kwargs", [
    pytest.param({"path": "/api/schema?format=json"}, id="format-query"),
    pytest.param({"path": "/api/schema", "HTTP_ACCEPT": "application/vnd.oai.openapi+json"},
                 id="accept-header"),
])
def test_schema_is_an_openapi_3_document_with_the_api_paths(request_kwargs):
    # when the schema is fetched as JSON, anonymously
    response = Client().get(**request_kwargs)

    # then it is an OpenAPI 3 document describing the public endpoints
    assert response.status_code == 200, response.content
    document = json.loads(response.content)
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"] == "Conveyor API"
    paths = document["paths"]
    for path in ("/api/v1/events", "/api/v1/events/batch", "/api/v1/jobs",
                 "/api/v1/jobs/{job_id}", "/api/v1/products",
                 "/api/v1/products/{product_id}"):
        assert path in paths, sorted(paths)
    assert "post" in paths["/api/v1/events"]
    assert {"get", "post"} <= set(paths["/api/v1/jobs"])
    assert {"get", "patch"} <= set(paths["/api/v1/products/{product_id}"])
    assert "ApiKeyAuth" in document["components"]["securitySchemes"]
    operation_ids = [op["operationId"] for item in paths.values() for op in item.values()
                     if isinstance(op, dict) and "operationId" in op]
    assert len(operation_ids) == len(set(operation_ids)), sorted(operation_ids)


def test_schema_default_is_yaml():
    import yaml

    # when the schema is fetched without asking for a format
    response = Client().get("/api/schema")

    # then it is YAML that parses to the same OpenAPI document
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("application/vnd.oai.openapi")
    assert "json" not in response["Content-Type"]
    document = yaml.safe_load(response.content)
    assert document["openapi"].startswith("3.")
    assert "/api/v1/jobs" in document["paths"]


def _schema() -> dict:
    response = Client().get("/api/schema?format=json")
    assert response.status_code == 200, response.content
    return json.loads(response.content)


def _resolve(document: dict, schema: dict) -> dict:
    """Follow a local $ref (and an array's items) down to the object schema."""
    if schema.get("type") == "array":
        schema = schema["items"]
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = document["components"]["schemas"][name]
    return schema


def _request_schema(document: dict, path: str, method: str) -> dict:
    body = document["paths"][path][method]["requestBody"]["content"]["application/json"]
    return _resolve(document, body["schema"])


def _request_properties(document: dict, path: str, method: str) -> set[str]:
    """The body's properties; a body that is one of several branches (an event per type, a
    job per kind) has them in every branch."""
    schema = _request_schema(document, path, method)
    if "oneOf" in schema:
        branches = [set(_resolve(document, b)["properties"]) for b in schema["oneOf"]]
        assert all(b == branches[0] for b in branches), branches
        return branches[0]
    return set(schema["properties"])


def _response_properties(document: dict, path: str, method: str, code: str = "200") -> set[str]:
    content = document["paths"][path][method]["responses"][code]["content"]
    return set(_resolve(document, content["application/json"]["schema"])["properties"])


def test_schema_documents_the_event_and_product_bodies():
    # given the schema
    document = _schema()

    # then the bodies whose serializers have unique names are documented as they are
    assert {"type", "payload", "occurred_at"} <= _request_properties(
        document, "/api/v1/events", "post")
    assert _request_properties(document, "/api/v1/events/batch", "post") == {"events"}
    assert {"name", "price", "stock", "status", "category"} == _request_properties(
        document, "/api/v1/products/{product_id}", "patch")
    assert {"id", "kind", "status", "progress"} <= _response_properties(
        document, "/api/v1/jobs/{job_id}", "get")


def test_schema_documents_the_job_create_body():
    # given the schema (regression: the job and batch InputSerializers once shared one
    # component name, so POST /api/v1/jobs was documented with the batch body)
    document = _schema()

    # then POST /api/v1/jobs takes kind, params and run_at
    assert _request_properties(document, "/api/v1/jobs", "post") == {"kind", "params", "run_at"}


@pytest.mark.parametrize(("path", "field", "registered", "schema_of"), [
    # what clients may send: not the server's own event types, nor job kinds an app starts
    # itself (both 422 at the server, so not in the schema either)
    ("/api/v1/events", "type", lambda: event_types(publishable=True), lambda t: t.schema),
    ("/api/v1/jobs", "kind", lambda: job_kinds(triggerable=True), lambda k: k.params_schema),
])
def test_schema_has_one_body_per_event_type_and_job_kind(path, field, registered, schema_of):
    # given the schema (before: any string as the type or kind, any JSON as the payload or
    # params, so schema-valid bodies were refused with 422)
    document = _schema()
    body = _request_schema(document, path, "post")

    # then the body is one of a branch per registered name, whose own field is that name and
    # whose payload or params follow its schema, and the body is required
    branches = {}
    for ref in body["oneOf"]:
        branch = _resolve(document, ref)
        names = _resolve(document, branch["properties"][field])["enum"]
        assert len(names) == 1
        branches[names[0]] = branch
    assert set(branches) == {r.name for r in registered()}
    for item in registered():
        data = "payload" if field == "type" else "params"
        assert branches[item.name]["properties"][data] == openapi_schema(schema_of(item))
    assert document["paths"][path]["post"]["requestBody"]["required"] is True


def test_schema_states_what_the_product_patch_refuses():
    # given the schema (before: `{}` and an empty price were valid there, 422 at the server)
    document = _schema()
    patch = document["paths"]["/api/v1/products/{product_id}"]["patch"]
    body = _request_schema(document, "/api/v1/products/{product_id}", "patch")

    # then the body is required, names at least one known field, and a price is written
    # as the API writes it
    assert patch["requestBody"]["required"] is True
    assert body["minProperties"] == 1 and body["additionalProperties"] is False
    assert body["properties"]["price"] == {"type": "string", "pattern": PRICE_PATTERN}


def test_schema_states_the_batch_size_bounds(settings):
    # given a batch limit
    settings.API_MAX_BATCH_EVENTS = 7

    # then the schema made now states it (before: an empty batch was valid there)
    events = _request_schema(_schema(), "/api/v1/events/batch", "post")["properties"]["events"]
    assert (events["minItems"], events["maxItems"]) == (1, 7)


def test_schema_documents_the_product_list_and_attempt_responses():
    # given the schema (regression: three OutputSerializers once shared one component name)
    document = _schema()

    # then the product page and the attempt rows have their own shapes
    assert _response_properties(document, "/api/v1/products", "get") == {
        "results", "next_after"}
    assert {"number", "outcome", "started_at", "finished_at"} <= _response_properties(
        document, "/api/v1/jobs/{job_id}/attempts", "get")
    assert {"name", "description", "schema", "example", "handlers"} == _response_properties(
        document, "/api/v1/event-types", "get")


def test_docs_page_is_html():
    # when the Swagger UI is fetched
    response = Client().get("/api/docs")

    # then it is an HTML page pointing at the schema
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    content = response.content.decode()
    assert "<html" in content.lower()
    assert "/api/schema" in content


# --- Framework-level errors keep the JSON shape -------------------------------------------

def test_unknown_url_is_json_404(client_all):
    # when a URL that no route matches is requested
    response = client_all.get("/api/v1/nope")

    # then the error shape is the JSON one, not Django's HTML page
    assert_error(response, 404, "not_found")


def test_unknown_url_is_json_404_without_a_key():
    # when an anonymous caller requests an unknown URL
    response = Client().get("/api/v1/nope")

    # then it is the same JSON 404
    assert_error(response, 404, "not_found")


def test_wrong_method_is_405(make_client):
    # given a key holding every scope (admin included)
    client = make_client()

    # when a method the endpoint does not support is used
    response = client.delete("/api/v1/events")

    # then it is a 405 with the JSON error shape
    error = assert_error(response, 405, "method_not_allowed")
    assert "DELETE" in error["message"]


def test_wrong_method_without_a_key_is_401():
    # when an anonymous caller uses an unsupported method on an API endpoint
    response = Client().delete("/api/v1/events")

    # then authentication is asked for first, in the JSON error shape
    assert_error(response, 401, "not_authenticated")
