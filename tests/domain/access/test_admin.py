"""The API-key admin: keys listed and searched, revoked by an action, never created there."""

import pytest
from django.urls import reverse

from domain.access.models import ApiKey
from domain.access.services import api_key_create
from tests.conftest import assert_changelist_loads

pytestmark = pytest.mark.django_db


def test_the_key_list_loads_with_a_search(operator):
    api_key_create(name="listed", scopes=["jobs:read"])
    assert_changelist_loads(operator, "access/apikey")


def test_keys_are_revoked_by_the_action_and_not_added_in_the_admin(operator):
    key, _ = api_key_create(name="to-revoke", scopes=["jobs:read"])
    url = reverse("admin:access_apikey_changelist")
    response = operator.post(url, {"action": "revoke", "_selected_action": [str(key.pk)]})
    assert response.status_code == 302
    assert ApiKey.objects.get(pk=key.pk).revoked_at is not None
    assert operator.get(reverse("admin:access_apikey_add")).status_code == 403
