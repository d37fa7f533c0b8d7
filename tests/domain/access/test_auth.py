"""Bearer API-key authentication, per-endpoint scopes, and per-key visibility of rows."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from domain.access.auth import LAST_USED_RESOLUTION
from domain.access.models import ApiKey, Scopes
from domain.access.services import api_key_create, api_key_revoke
from domain.catalog.models import Product
from domain.events.models import Event
from domain.jobs.models import Job
from tests.conftest import assert_error, bearer
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db

PING = {"type": "demo.ping", "payload": {"message": "hi"}}


# --- 401: who are you? -----------------------------------------------------------------

def test_no_authorization_header_is_401_not_authenticated_with_challenge():
    # given a client without any credentials
    client = APIClient()

    # when it publishes an event
    response = client.post(reverse("event-publish"), PING, format="json")

    # then it is told to authenticate, with a Bearer challenge, and nothing is stored
    error = assert_error(response, 401, "not_authenticated")
    assert "API key" in error["message"]
    assert response["WWW-Authenticate"] == "Bearer"
    assert Event.objects.count() == 0
    assert Job.objects.count() == 0


@pytest.mark.parametrize("header", [
    "Token cvk_whatever",
    "Basic dXNlcjpwYXNz",
    "Bearer",
    "Bearer ",
    "Bearer    ",
    "cvk_no_scheme_at_all",
])
def test_malformed_authorization_header_is_401_authentication_failed(make_client, header):
    # given an existing key (so a failure is about the header, not about the database)
    make_client()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)

    # when a request carries a header that is not "Bearer <key>"
    response = client.post(reverse("event-publish"), PING, format="json")

    # then it is refused as malformed and nothing is stored
    error = assert_error(response, 401, "authentication_failed")
    assert "Bearer" in error["message"]
    assert response["WWW-Authenticate"] == "Bearer"
    assert Event.objects.count() == 0


def test_a_token_scheme_carrying_a_valid_key_is_still_refused(make_client):
    # given a valid key sent under the wrong scheme
    valid = make_client()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {valid.raw_key}")

    # when it publishes
    response = client.post(reverse("event-publish"), PING, format="json")

    # then the scheme is what fails, and the key is not marked as used
    assert_error(response, 401, "authentication_failed")
    assert ApiKey.objects.get(pk=valid.api_key.pk).last_used_at is None
    assert Event.objects.count() == 0


def test_scheme_is_case_insensitive(make_client):
    # given a valid key sent as "bearer <key>"
    valid = make_client()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"bearer {valid.raw_key}")

    # when it publishes
    response = client.post(reverse("event-publish"), PING, format="json")

    # then it is accepted
    assert response.status_code == 202, response.content
    assert Event.objects.get().api_key_id == valid.api_key.pk


def test_unknown_key_is_401(make_client):
    # given a key that was never issued (another one exists)
    make_client()
    client = bearer("cvk_" + "x" * 43)

    # when it publishes
    response = client.post(reverse("event-publish"), PING, format="json")

    # then it is refused and nothing is stored
    error = assert_error(response, 401, "authentication_failed")
    assert error["message"] == "Invalid API key."
    assert response["WWW-Authenticate"] == "Bearer"
    assert Event.objects.count() == 0


def test_revoked_key_is_401(make_client):
    # given a key that worked and was then revoked
    client = make_client()
    assert client.get(reverse("job-list")).status_code == 200
    api_key_revoke(api_key=client.api_key)

    # when it is used again
    response = client.post(reverse("event-publish"), PING, format="json")

    # then it is refused and nothing is stored
    error = assert_error(response, 401, "authentication_failed")
    assert "revoked or expired" in error["message"]
    assert ApiKey.objects.get(pk=client.api_key.pk).revoked_at is not None
    assert Event.objects.count() == 0


def test_expired_key_is_401(make_client):
    # given a key whose expiry has passed
    client = make_client()
    ApiKey.objects.filter(pk=client.api_key.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1))

    # when it is used
    response = client.post(reverse("event-publish"), PING, format="json")

    # then it is refused, nothing is stored and it is not marked as used
    assert_error(response, 401, "authentication_failed")
    assert Event.objects.count() == 0
    assert ApiKey.objects.get(pk=client.api_key.pk).last_used_at is None


def test_key_with_future_expiry_works():
    # given a key that expires tomorrow
    _, raw = api_key_create(name="soon", scopes=[Scopes.EVENTS_PUBLISH],
                            expires_at=timezone.now() + timedelta(days=1))

    # when it publishes
    response = bearer(raw).post(reverse("event-publish"), PING, format="json")

    # then it is accepted
    assert response.status_code == 202, response.content
    assert Event.objects.count() == 1


# --- last_used_at ------------------------------------------------------------------------

def test_last_used_at_is_set_on_first_use(make_client):
    # given a fresh key that was never used
    client = make_client()
    assert client.api_key.last_used_at is None
    before = timezone.now()

    # when it makes a request
    response = client.get(reverse("job-list"))

    # then the key records the time it was used
    assert response.status_code == 200
    used = ApiKey.objects.get(pk=client.api_key.pk).last_used_at
    assert used is not None
    assert before <= used <= timezone.now()


def test_last_used_at_is_written_at_most_once_per_resolution(make_client, settings):
    # given a key used a moment ago (read on every request: the test edits the row with
    # .update(), which the process's key cache does not hear of)
    settings.API_KEY_CACHE_SECONDS = 0
    client = make_client()
    recent = timezone.now() - LAST_USED_RESOLUTION / 2
    ApiKey.objects.filter(pk=client.api_key.pk).update(last_used_at=recent)

    # when it is used again within the resolution
    assert client.get(reverse("job-list")).status_code == 200

    # then the timestamp is left alone (no write per request)
    assert ApiKey.objects.get(pk=client.api_key.pk).last_used_at == recent

    # and when the last use is older than the resolution, it is refreshed
    stale = timezone.now() - LAST_USED_RESOLUTION * 2
    ApiKey.objects.filter(pk=client.api_key.pk).update(last_used_at=stale)
    assert client.get(reverse("job-list")).status_code == 200
    assert ApiKey.objects.get(pk=client.api_key.pk).last_used_at > stale + LAST_USED_RESOLUTION


# --- 403: scopes -------------------------------------------------------------------------

def _request(client: APIClient, endpoint: str, product: Product):
    if endpoint == "event-publish":
        return client.post(reverse("event-publish"), PING, format="json")
    if endpoint == "event-types":
        return client.get(reverse("event-type-list"))
    if endpoint == "jobs-list":
        return client.get(reverse("job-list"))
    if endpoint == "jobs-create":
        return client.post(reverse("job-list"), {"kind": "noop", "params": {}}, format="json")
    if endpoint == "products-list":
        return client.get(reverse("product-list"))
    if endpoint == "product-get":
        return client.get(reverse("product-detail", args=[product.pk]))
    if endpoint == "product-patch":
        return client.patch(reverse("product-detail", args=[product.pk]), {"price": "99.00"},
                            format="json")
    raise AssertionError(endpoint)


# (endpoint, the scope it needs, a scope that is not enough, the status with the right scope)
SCOPE_MATRIX = [
    ("event-publish", Scopes.EVENTS_PUBLISH, Scopes.EVENTS_READ, 202),
    ("event-types", Scopes.EVENTS_READ, Scopes.JOBS_READ, 200),
    ("jobs-list", Scopes.JOBS_READ, Scopes.JOBS_WRITE, 200),
    ("jobs-create", Scopes.JOBS_WRITE, Scopes.JOBS_READ, 202),
    ("products-list", Scopes.PRODUCTS_READ, Scopes.PRODUCTS_WRITE, 200),
    ("product-get", Scopes.PRODUCTS_READ, Scopes.EVENTS_PUBLISH, 200),
    ("product-patch", Scopes.PRODUCTS_WRITE, Scopes.PRODUCTS_READ, 200),
]


def _db_state(product: Product) -> tuple:
    product.refresh_from_db()
    return Event.objects.count(), Job.objects.count(), str(product.price)


@pytest.mark.parametrize(("endpoint", "needed", "other", "ok_status"), SCOPE_MATRIX,
                         ids=[row[0] for row in SCOPE_MATRIX])
def test_key_without_needed_scope_is_403(make_client, endpoint, needed, other, ok_status):
    # given a valid key holding some other scope
    client = make_client([other])
    product = ProductFactory(price="10.00")
    before = _db_state(product)

    # when it calls an endpoint that needs a scope it lacks
    response = _request(client, endpoint, product)

    # then it is forbidden (authenticated, so not 401), told which scope, and nothing changed
    error = assert_error(response, 403, "permission_denied")
    assert needed.value in error["message"]
    assert not response.has_header("WWW-Authenticate")
    assert _db_state(product) == before


@pytest.mark.parametrize(("endpoint", "needed", "other", "ok_status"), SCOPE_MATRIX,
                         ids=[row[0] for row in SCOPE_MATRIX])
def test_key_with_only_the_needed_scope_is_allowed(make_client, endpoint, needed, other,
                                                   ok_status):
    # given a key holding exactly the scope the endpoint needs
    client = make_client([needed])
    product = ProductFactory(price="10.00")

    # when it calls the endpoint
    response = _request(client, endpoint, product)

    # then it succeeds, and a write endpoint really wrote
    assert response.status_code == ok_status, response.content
    if endpoint == "event-publish":
        assert Event.objects.get().api_key_id == client.api_key.pk
    elif endpoint == "jobs-create":
        assert Job.objects.get().api_key_id == client.api_key.pk
    elif endpoint == "product-patch":
        product.refresh_from_db()
        assert str(product.price) == "99.00"
    else:
        assert Event.objects.count() == 0 and Job.objects.count() == 0


@pytest.mark.parametrize(("endpoint", "needed", "other", "ok_status"), SCOPE_MATRIX,
                         ids=[row[0] for row in SCOPE_MATRIX])
def test_admin_scope_implies_every_scope(make_client, endpoint, needed, other, ok_status):
    # given a key holding only the admin scope
    client = make_client([Scopes.ADMIN])
    product = ProductFactory(price="10.00")

    # when it calls any endpoint
    response = _request(client, endpoint, product)

    # then it is allowed
    assert response.status_code == ok_status, response.content


def test_key_without_any_scope_is_403_everywhere(make_client):
    # given a key with no scope at all
    client = make_client([])
    product = ProductFactory(price="10.00")

    # when it calls each endpoint family, then every call is 403 and nothing changes
    for endpoint, _, _, _ in SCOPE_MATRIX:
        response = _request(client, endpoint, product)
        assert_error(response, 403, "permission_denied")
    assert _db_state(product) == (0, 0, "10.00")


# --- Visibility: a key sees its own rows -------------------------------------------------

@pytest.fixture
def published(make_client):
    """An event (and its job) published by one key."""
    owner = make_client([Scopes.EVENTS_PUBLISH, Scopes.JOBS_READ], name="owner")
    response = owner.post(reverse("event-publish"), PING, format="json")
    assert response.status_code == 202, response.content
    event = Event.objects.get(pk=response.json()["id"])
    return owner, event, event.jobs.get()


def test_owner_sees_its_event_and_job(published):
    # given a key that published an event
    owner, event, job = published

    # when it reads them back
    event_response = owner.get(reverse("event-detail", args=[event.pk]))
    job_response = owner.get(reverse("job-detail", args=[job.pk]))

    # then both are visible
    assert event_response.status_code == 200
    assert event_response.json()["id"] == str(event.pk)
    assert [j["id"] for j in event_response.json()["jobs"]] == [str(job.pk)]
    assert job_response.status_code == 200
    assert job_response.json()["event"] == str(event.pk)


@pytest.mark.parametrize("url_name", ["event-detail", "job-detail", "job-attempts"])
def test_another_key_gets_404_not_403_for_someone_elses_rows(make_client, published, url_name):
    # given an event and job published by one key, and a second key with every read scope
    _, event, job = published
    other = make_client([Scopes.EVENTS_READ, Scopes.EVENTS_PUBLISH, Scopes.JOBS_READ],
                        name="other")
    pk = event.pk if url_name == "event-detail" else job.pk

    # when the second key asks for them
    response = other.get(reverse(url_name, args=[pk]))

    # then they do not exist for it (no id leak), and the rows are untouched
    assert_error(response, 404, "not_found")
    assert Event.objects.filter(pk=event.pk, api_key=event.api_key).exists()
    assert Job.objects.filter(pk=job.pk, api_key=event.api_key).exists()


def test_another_key_does_not_list_someone_elses_jobs(make_client, published):
    # given a job of one key and a job of another
    _, _, job = published
    other = make_client([Scopes.JOBS_READ, Scopes.JOBS_WRITE], name="other")
    own = other.post(reverse("job-list"), {"kind": "noop", "params": {}}, format="json")
    assert own.status_code == 202

    # when the second key lists jobs
    response = other.get(reverse("job-list"))

    # then it sees only its own, not the first key's
    assert response.status_code == 200
    listed = [j["id"] for j in response.json()["results"]]
    assert listed == [own.json()["id"]]
    assert str(job.pk) not in listed
    assert Job.objects.count() == 2


@pytest.mark.parametrize("url_name", ["event-detail", "job-detail", "job-attempts"])
def test_admin_key_sees_every_keys_rows(make_client, published, url_name):
    # given an event published by one key, and an admin key
    _, event, job = published
    admin = make_client([Scopes.ADMIN], name="admin")
    pk = event.pk if url_name == "event-detail" else job.pk

    # when the admin key reads them
    response = admin.get(reverse(url_name, args=[pk]))

    # then it can
    assert response.status_code == 200, response.content
    if url_name == "event-detail":
        assert response.json()["id"] == str(event.pk)
    elif url_name == "job-detail":
        assert response.json()["id"] == str(job.pk)
    else:
        assert response.json() == []


def test_admin_key_lists_every_keys_jobs(make_client, published):
    # given a job published by one key
    _, _, job = published
    admin = make_client([Scopes.ADMIN], name="admin")

    # when the admin lists jobs
    response = admin.get(reverse("job-list"))

    # then the other key's job is there
    assert response.status_code == 200
    assert str(job.pk) in [j["id"] for j in response.json()["results"]]


# --- Public endpoints ----------------------------------------------------------------------

def test_healthz_needs_no_key():
    # given no credentials, when the liveness probe is called
    response = APIClient().get("/healthz")

    # then it answers ok
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert ApiKey.objects.count() == 0


@pytest.mark.parametrize("authorization", [None, "Bearer not-a-real-key", "Token nonsense"])
def test_schema_needs_no_key_and_ignores_bad_credentials(authorization):
    # given a client with no or bogus credentials
    client = APIClient()
    if authorization:
        client.credentials(HTTP_AUTHORIZATION=authorization)

    # when it fetches the OpenAPI schema
    response = client.get("/api/schema", {"format": "json"})

    # then it gets the schema, which documents the bearer scheme and the event endpoint
    assert response.status_code == 200, response.content[:500]
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert "/api/v1/events" in schema["paths"]
    assert schema["components"]["securitySchemes"]["ApiKeyAuth"]["scheme"] == "bearer"
    assert ApiKey.objects.count() == 0


# --- Methods a view does not implement -------------------------------------------------------

@pytest.mark.parametrize(("method", "url_name"), [("get", "event-publish"),
                                                  ("delete", "job-list"),
                                                  ("put", "event-batch-publish")])
def test_unimplemented_method_is_405_not_403(make_client, method, url_name):
    # given a key that may do everything
    client = make_client([Scopes.ADMIN])

    # when it uses a method the endpoint does not implement
    response = getattr(client, method)(reverse(url_name))

    # then it is told the method is not allowed (no key could ever make it work)
    assert_error(response, 405, "method_not_allowed")
    assert Event.objects.count() == 0 and Job.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("url_name", ["event-publish", "event-batch-publish", "job-bulk-retry"])
def test_options_describes_a_post_only_endpoint(make_client, url_name):
    # given any valid key, when it asks what a POST-only endpoint accepts
    response = make_client(["jobs:read"]).options(reverse(url_name))
    # then it gets the description, not a scope error
    assert response.status_code == 200
    assert "POST" in response["Allow"]


# --- the key cache (API_KEY_CACHE_SECONDS) -----------------------------------------------

def _key_lookups(queries) -> int:
    return sum('FROM "common_apikey"' in q["sql"] and "SELECT" in q["sql"] for q in queries)


def test_a_key_is_looked_up_once_per_cache_period_not_per_request(make_client, settings):
    # given a key, and a cache period longer than this test
    settings.API_KEY_CACHE_SECONDS = 60
    client = make_client(["jobs:read"])

    # when it makes three requests
    with CaptureQueriesContext(connection) as queries:
        for _ in range(3):
            assert client.get(reverse("job-list")).status_code == 200

    # then the key was read from the database once
    assert _key_lookups(queries.captured_queries) == 1


def test_a_key_revoked_elsewhere_stops_working_within_the_cache_period(make_client, settings):
    # given a key in use, cached for 0.3 s
    settings.API_KEY_CACHE_SECONDS = 0.3
    client = make_client(["jobs:read"])
    assert client.get(reverse("job-list")).status_code == 200

    # when another process revokes it (a row update this process does not hear of)
    ApiKey.objects.filter(pk=client.api_key.pk).update(revoked_at=timezone.now())

    # then it still works at most until its entry is 0.3 s old, and is refused after that
    time.sleep(0.35)
    assert_error(client.get(reverse("job-list")), 401, "authentication_failed")


def test_a_key_revoked_in_this_process_stops_working_at_once(make_client, settings):
    # given a key in use and cached for a minute
    settings.API_KEY_CACHE_SECONDS = 60
    client = make_client(["jobs:read"])
    assert client.get(reverse("job-list")).status_code == 200

    # when this process revokes it (the admin, the revoke command)
    api_key_revoke(api_key=ApiKey.objects.get(pk=client.api_key.pk))

    # then the next request is refused
    assert_error(client.get(reverse("job-list")), 401, "authentication_failed")


def test_a_scope_removed_in_this_process_applies_to_the_next_request(make_client, settings):
    settings.API_KEY_CACHE_SECONDS = 60
    client = make_client(["jobs:read"])
    assert client.get(reverse("job-list")).status_code == 200
    key = ApiKey.objects.get(pk=client.api_key.pk)
    key.scopes = ["events:read"]
    key.save()
    assert_error(client.get(reverse("job-list")), 403)
