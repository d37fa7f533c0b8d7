"""Management commands: create_api_key, revoke_api_key."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
from django.core.management import CommandError
from django.db import connection
from django.urls import reverse

from domain.access.models import ApiKey
from domain.access.services import api_key_create
from domain.events.models import Event
from tests.conftest import bearer, run_command

pytestmark = pytest.mark.django_db

PING = {"type": "demo.ping", "payload": {"message": "hi"}}


def every_stored_value() -> list[str]:
    """Every column of every api-key row, as text, read straight from the table."""
    table = connection.ops.quote_name(ApiKey._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table}")  # noqa: S608 - a fixed table name
        return [str(value) for row in cursor.fetchall() for value in row]


# --- create_api_key ----------------------------------------------------------------------

def test_create_api_key_prints_the_raw_key_once_and_stores_only_its_hash():
    # given no keys
    assert ApiKey.objects.count() == 0

    # when an operator creates one
    out, err = run_command("create_api_key", "ci-publisher", scopes="events:publish,jobs:read")

    # then stdout holds exactly the raw key, once; stderr holds the notes and not the key
    raw = out.strip()
    assert out == raw + "\n"
    assert raw.startswith("cvk_") and len(raw) > 40
    assert out.count(raw) == 1
    assert raw not in err
    assert "ci-publisher" in err and "not shown again" in err

    # and the database holds its sha256 hash, its scopes, and never the raw key
    key = ApiKey.objects.get()
    assert key.name == "ci-publisher"
    assert key.key_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert key.scopes == ["events:publish", "jobs:read"]
    assert key.prefix == raw[:12]
    assert key.expires_at is None and key.revoked_at is None
    assert not any(raw in value for value in every_stored_value())


def test_created_key_authenticates_with_exactly_its_scopes():
    # given a key created by the command
    out, _ = run_command("create_api_key", "ci", scopes="events:publish, jobs:read")
    client = bearer(out.strip())

    # when it calls endpoints it has and lacks scopes for
    published = client.post(reverse("event-publish"), PING, format="json")
    listed = client.get(reverse("job-list"))
    products = client.get(reverse("product-list"))

    # then its scopes are enforced, and its event is owned by it
    assert published.status_code == 202, published.content
    assert listed.status_code == 200
    assert products.status_code == 403
    assert Event.objects.get().api_key == ApiKey.objects.get()
    assert ApiKey.objects.get().last_used_at is not None


def test_create_api_key_with_a_future_expiry():
    # given an ISO 8601 expiry in the future
    # when a key is created with it
    out, _ = run_command("create_api_key", "temp", scopes="jobs:read",
                 expires_at="2099-01-01T00:00:00Z")

    # then it is stored and the key works
    assert ApiKey.objects.get().expires_at == datetime(2099, 1, 1, tzinfo=UTC)
    assert bearer(out.strip()).get(reverse("job-list")).status_code == 200


def test_create_api_key_with_a_past_expiry_makes_a_key_that_fails():
    # given an expiry in the past
    # when a key is created with it
    out, _ = run_command("create_api_key", "old", scopes="jobs:read",
                         expires_at="2000-01-01T00:00:00Z")

    # then the key exists but is refused
    response = bearer(out.strip()).get(reverse("job-list"))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"
    assert ApiKey.objects.count() == 1


@pytest.mark.parametrize("scopes", ["events:publish,events:delete", "root", "EVENTS:PUBLISH"])
def test_create_api_key_with_an_unknown_scope_fails(scopes):
    # given a scope list with a scope that does not exist
    # when a key is created with it
    with pytest.raises(CommandError, match="Unknown scope") as excinfo:
        run_command("create_api_key", "bad", scopes=scopes)

    # then the error names the unknown scope, and no key is created
    unknown = [s for s in scopes.split(",") if s not in ("events:publish",)]
    assert all(s in str(excinfo.value) for s in unknown)
    assert ApiKey.objects.count() == 0


@pytest.mark.parametrize("expires_at", ["tomorrow", "2025-01-01 noon", "01/02/2030", "x"])
def test_create_api_key_with_a_bad_expiry_fails(expires_at):
    # given an expiry that is not an ISO 8601 date-time
    # when a key is created with it
    with pytest.raises(CommandError, match="ISO 8601"):
        run_command("create_api_key", "bad", scopes="jobs:read", expires_at=expires_at)

    # then no key is created
    assert ApiKey.objects.count() == 0


def test_create_api_key_with_an_impossible_date_fails_cleanly():
    # given an expiry that looks like ISO 8601 but is not a real date
    # when a key is created with it, then it is a CommandError and no key is created
    with pytest.raises(CommandError, match="ISO 8601"):
        run_command("create_api_key", "bad", scopes="jobs:read", expires_at="2025-13-45T00:00:00")
    assert ApiKey.objects.count() == 0


def test_create_api_key_requires_scopes():
    # given no --scopes
    # when the command runs, then argparse refuses it
    with pytest.raises(CommandError, match="--scopes"):
        run_command("create_api_key", "no-scopes")
    assert ApiKey.objects.count() == 0


def test_create_api_key_via_argv_style_options():
    # given options spelled as on the command line
    # when the command runs
    out, _ = run_command("create_api_key", "argv", "--scopes=products:read",
                 "--expires-at=2099-06-01T12:00:00+00:00")

    # then they are parsed the same way
    key = ApiKey.objects.get()
    assert key.scopes == ["products:read"]
    assert key.expires_at == datetime(2099, 6, 1, 12, tzinfo=UTC)
    assert bearer(out.strip()).get(reverse("product-list")).status_code == 200


# --- revoke_api_key ----------------------------------------------------------------------

def test_revoke_api_key_by_name_makes_the_key_401():
    # given a working key
    key, raw = api_key_create(name="to-revoke", scopes=["jobs:read"])
    client = bearer(raw)
    assert client.get(reverse("job-list")).status_code == 200

    # when it is revoked by name
    out, _ = run_command("revoke_api_key", "to-revoke")

    # then it is marked revoked and refused from then on
    assert "Revoked" in out and "to-revoke" in out
    assert ApiKey.objects.get(pk=key.pk).revoked_at is not None
    response = client.get(reverse("job-list"))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"


@pytest.mark.parametrize("by", ["prefix", "id"])
def test_revoke_api_key_by_prefix_or_id(by):
    # given a key and a bystander
    key, raw = api_key_create(name="target", scopes=["jobs:read"])
    other, other_raw = api_key_create(name="bystander", scopes=["jobs:read"])

    # when it is revoked by its prefix or its id
    run_command("revoke_api_key", key.prefix if by == "prefix" else str(key.pk))

    # then only it is revoked
    assert ApiKey.objects.get(pk=key.pk).revoked_at is not None
    assert ApiKey.objects.get(pk=other.pk).revoked_at is None
    assert bearer(raw).get(reverse("job-list")).status_code == 401
    assert bearer(other_raw).get(reverse("job-list")).status_code == 200


def test_revoking_twice_keeps_the_first_revocation_time():
    # given a revoked key
    key, _ = api_key_create(name="twice", scopes=["jobs:read"])
    run_command("revoke_api_key", "twice")
    first = ApiKey.objects.get(pk=key.pk).revoked_at

    # when it is revoked again
    run_command("revoke_api_key", "twice")

    # then the original time stands
    assert ApiKey.objects.get(pk=key.pk).revoked_at == first


def test_revoke_api_key_with_an_ambiguous_name_fails_and_revokes_nothing():
    # given two keys with the same name
    api_key_create(name="shared", scopes=["jobs:read"])
    api_key_create(name="shared", scopes=["jobs:read"])

    # when one is revoked by that name
    with pytest.raises(CommandError, match="2 keys match"):
        run_command("revoke_api_key", "shared")

    # then neither is revoked
    assert ApiKey.objects.filter(revoked_at__isnull=False).count() == 0


@pytest.mark.parametrize("name", ["nobody", "00000000-0000-4000-8000-000000000000", "cvk_zzzz"])
def test_revoke_api_key_with_an_unknown_name_fails(name):
    # given a key that does not match
    api_key_create(name="somebody", scopes=["jobs:read"])

    # when an unknown name, id or prefix is revoked
    with pytest.raises(CommandError, match="0 keys match"):
        run_command("revoke_api_key", name)

    # then nothing is revoked
    assert ApiKey.objects.filter(revoked_at__isnull=False).count() == 0
