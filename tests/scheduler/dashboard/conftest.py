"""Admin users in the dashboard's roles."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from scheduler.dashboard.roles import OPERATORS, VIEWERS

PASSWORD = "dashboard-pw-1"


def staff_user(django_user_model, username: str, group: str | None):
    user = django_user_model.objects.create_user(username, password=PASSWORD, is_staff=True)
    if group:
        user.groups.add(Group.objects.get(name=group))
    return user


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def viewer(db, django_user_model) -> Client:
    return _client(staff_user(django_user_model, "vera", VIEWERS))


@pytest.fixture
def operator_client(db, django_user_model) -> Client:
    return _client(staff_user(django_user_model, "otto", OPERATORS))
