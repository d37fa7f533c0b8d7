"""The events admin: events listed, filtered and searched, each with its jobs inline."""

import pytest
from django.urls import reverse

from tests.conftest import assert_changelist_loads
from tests.factories import EventFactory, JobFactory

pytestmark = pytest.mark.django_db


def test_the_event_list_loads_with_a_search(operator):
    JobFactory(event=EventFactory(), status="dead")
    assert_changelist_loads(operator, "events/event")


def test_an_event_page_lists_its_jobs(operator):
    event = EventFactory()
    job = JobFactory(event=event, handler="demo.noop")
    response = operator.get(reverse("admin:events_event_change", args=[event.pk]))
    assert response.status_code == 200
    assert str(job.pk) in response.content.decode()
