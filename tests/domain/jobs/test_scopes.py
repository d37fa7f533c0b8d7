"""Scopes: each job operation needs `jobs:write`."""

import uuid

import pytest
from django.urls import reverse

from domain.access.models import Scopes

pytestmark = pytest.mark.django_db

@pytest.mark.parametrize(("method", "name", "needs_id"), [
    ("post", "job-retry", True),
    ("post", "job-cancel", True),
    ("post", "job-bulk-retry", False),
])
def test_job_operations_need_jobs_write(make_client, method, name, needs_id):
    reader = make_client([Scopes.JOBS_READ, Scopes.EVENTS_PUBLISH])
    url = reverse(name, args=[uuid.uuid4()]) if needs_id else reverse(name)
    response = getattr(reader, method)(url, {}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
