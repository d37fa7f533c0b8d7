"""Every answer a publish can give (single or batch; new or replayed; full or minimal) matches
the OpenAPI schema the API serves. The fuzz tests (tests/fuzz) reach a successful batch only
now and then; this checks each shape on purpose, with schemathesis' own response validation,
through Django's real WSGI handler."""

from __future__ import annotations

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application

from domain.access.models import Scopes
from domain.access.services import api_key_create

SCHEMA = schemathesis.openapi.from_wsgi("/api/schema?format=json", get_wsgi_application())
PING = {"type": "demo.ping", "payload": {"message": "hi"}}


@pytest.mark.django_db(transaction=True)  # the WSGI handler closes connections per request
@pytest.mark.parametrize(("path", "body"), [
    pytest.param("/api/v1/events", PING, id="single"),
    pytest.param("/api/v1/events/batch", {"events": [PING, PING]}, id="batch"),
])
@pytest.mark.parametrize("prefer", [None, "return=representation", "return=minimal"])
def test_every_publish_answer_matches_the_schema(path, body, prefer):
    # given a key and a publish with an Idempotency-Key, with or without a preference
    _key, raw = api_key_create(name="schema", scopes=[Scopes.EVENTS_PUBLISH])
    headers = {"Authorization": f"Bearer {raw}", "Idempotency-Key": "schema-1"}
    if prefer:
        headers["Prefer"] = prefer
    operation = SCHEMA[path]["POST"]
    case = operation.Case(body=body, headers=headers, media_type="application/json")

    # when it is sent, then sent again
    first, replay = case.call(), case.call()

    # then both answers (202, then the 200 replay) match the documented schema
    assert (first.status_code, replay.status_code) == (202, 200), first.text
    for response in (first, replay):
        operation.validate_response(response)
        minimal = response.headers.get("preference-applied") == ["return=minimal"]
        assert minimal is (prefer == "return=minimal")
