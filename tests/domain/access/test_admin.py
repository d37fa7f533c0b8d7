"""The API-key admin: keys listed and searched, revoked by an action (after a confirmation
page), never created there."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from pytest_django.asserts import assertContains
from rest_framework.test import APIClient

from domain.access.models import ApiKey
from domain.access.services import api_key_create
from tests.conftest import assert_changelist_loads

pytestmark = pytest.mark.django_db


def test_the_key_list_loads_with_a_search(operator):
    api_key_create(name="listed", scopes=["jobs:read"])
    assert_changelist_loads(operator, "access/apikey")


def test_keys_are_revoked_by_the_action_and_not_added_in_the_admin(operator, settings):
    # given a key in use, cached by this process for a minute
    settings.API_KEY_CACHE_SECONDS = 60
    key, raw = api_key_create(name="to-revoke", scopes=["jobs:read"])
    user = APIClient()
    user.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert user.get(reverse("job-list")).status_code == 200
    url = reverse("admin:access_apikey_changelist")
    response = operator.post(url, {"action": "revoke", "_selected_action": [str(key.pk)],
                                   "post": "yes"})
    assert response.status_code == 302
    assert ApiKey.objects.get(pk=key.pk).revoked_at is not None
    assert operator.get(reverse("admin:access_apikey_add")).status_code == 403
    # and the revoked key is refused at once, cached or not
    assert user.get(reverse("job-list")).status_code == 401


# --- "Revoke selected": a confirmation page first ---------------------------------------------

CHANGELIST = "admin:access_apikey_changelist"


def _revoke(operator, keys: list[ApiKey], *, confirm: bool, query: str = "",
            select_across: bool = False):
    """POST the action from the key list, as the list's form (or the confirmation's) does."""
    data = {"action": "revoke", "_selected_action": [str(key.pk) for key in keys],
            "select_across": "1" if select_across else "0"}
    data.update({"post": "yes"} if confirm else {"index": "0"})
    return operator.post(reverse(CHANGELIST) + query, data)


def _keys(count: int, prefix: str = "key") -> list[ApiKey]:
    return [api_key_create(name=f"{prefix}-{i:04d}", scopes=["jobs:read"])[0]
            for i in range(count)]


def test_revoke_asks_first_with_the_count_and_the_names(operator):
    # given two active keys and one revoked already
    active = _keys(2)
    revoked = _keys(1, "old")[0]
    ApiKey.objects.filter(pk=revoked.pk).update(revoked_at=timezone.now())

    # when the operator runs "Revoke selected" on the three (before: revoked at once)
    response = _revoke(operator, [*active, revoked], confirm=False)

    # then a page says what will happen, names the keys, posts the selection back
    assert response.status_code == 200
    assertContains(response, "<title>Revoke 2 API key(s)? | Django site admin</title>",
                   html=True)
    assertContains(response, "<li>key-0000</li>", html=True)
    assertContains(response, "The other 1, revoked already, stay as they are.")
    assertContains(response, '<input type="hidden" name="post" value="yes">', html=True)
    # and no key is revoked yet
    assert ApiKey.objects.filter(revoked_at__isnull=True).count() == 2


def test_confirmed_revoke_revokes_the_active_keys(operator):
    # given two active keys
    keys = _keys(2)

    # when the operator confirms
    response = _revoke(operator, keys, confirm=True)

    # then both are revoked
    assert response.status_code == 302
    assert ApiKey.objects.filter(revoked_at__isnull=True).count() == 0


def test_revoking_revoked_keys_says_so_without_a_page(operator):
    # given a revoked key
    key = _keys(1)[0]
    ApiKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())

    # when the operator asks to revoke it, then it is back to the list with a warning
    response = _revoke(operator, [key], confirm=False)
    assert response.status_code == 302
    assert "Nothing to revoke" in operator.get(response["Location"]).content.decode()


def test_select_across_pages_asks_and_revokes_in_queries_that_do_not_grow_with_the_rows(
        operator, django_assert_max_num_queries):
    # given few and many active keys matching a search, and one outside it
    outside = _keys(1, "other")[0]
    queries = {}
    for rows in (3, 150):
        keys = _keys(rows, f"batch{rows}")
        query = f"?q=batch{rows}"

        # when the operator selects all across pages, sees the page, and confirms
        with CaptureQueriesContext(connection) as asked:
            page = _revoke(operator, keys[:1], confirm=False, query=query, select_across=True)
        with django_assert_max_num_queries(8), CaptureQueriesContext(connection) as done:
            _revoke(operator, keys[:1], confirm=True, query=query, select_across=True)
        queries[rows] = (len(asked), len(done))

        # then the page counted every key the search matches, and all of them were revoked,
        # and no other
        assertContains(page, f"<strong>{rows}</strong>", html=True)
        assertContains(page, "every key matching the current filters, on all pages")
        assert not ApiKey.objects.filter(pk__in=[k.pk for k in keys],
                                         revoked_at__isnull=True).exists()
        outside.refresh_from_db()
        assert outside.revoked_at is None

    # and the page and the action took as many queries for 150 keys as for 3
    assert queries[150] == queries[3], queries
