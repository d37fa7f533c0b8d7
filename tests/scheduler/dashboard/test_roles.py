"""The viewer and operator roles: groups synced after migrate, with their permissions."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command

from scheduler.dashboard.roles import (
    OPERATE_PERMISSION,
    OPERATORS,
    ROLES,
    VIEW_PERMISSION,
    VIEWERS,
    roles_sync,
)
from tests.scheduler.dashboard.conftest import staff_user

pytestmark = pytest.mark.django_db


def _names(group: Group) -> set[str]:
    return {f"{p.content_type.app_label}.{p.codename}"
            for p in group.permissions.select_related("content_type")}


def test_the_migrated_database_has_both_groups_with_their_permissions():
    for name, permissions in ROLES.items():
        assert _names(Group.objects.get(name=name)) == set(permissions)


def test_a_viewer_may_view_and_not_operate_an_operator_may_both(django_user_model):
    viewer = staff_user(django_user_model, "v", VIEWERS)
    operator = staff_user(django_user_model, "o", OPERATORS)
    assert viewer.has_perm(VIEW_PERMISSION) and not viewer.has_perm(OPERATE_PERMISSION)
    assert operator.has_perm(VIEW_PERMISSION) and operator.has_perm(OPERATE_PERMISSION)
    # a viewer browses the rows the panels link to, and may change none of them
    assert viewer.has_perm("jobs.view_job") and not viewer.has_perm("jobs.change_job")
    assert operator.has_perm("jobs.change_job")


@pytest.mark.parametrize(("role", "offered"), [
    (VIEWERS, set()),
    (OPERATORS, {"replay_jobs", "cancel_jobs"}),
])
def test_the_job_lists_actions_are_offered_to_operators_only(django_user_model, client, role,
                                                              offered):
    # given a staff user of the role (every custom action asks for the change permission)
    client.force_login(staff_user(django_user_model, "u", role))

    # when they open the jobs list
    response = client.get("/admin/jobs/job/")

    # then the list is shown, with the custom actions only for an operator
    assert response.status_code == 200
    form = response.context["action_form"]  # None when no action is offered
    actions = set() if form is None else {
        name for name, _ in form.fields["action"].choices if name}
    assert actions - {"delete_selected"} == offered


def test_the_sync_restores_what_is_missing_and_keeps_what_an_administrator_added():
    # given an administrator who removed a declared permission and added one of their own
    viewers = Group.objects.get(name=VIEWERS)
    viewers.permissions.remove(Permission.objects.get(codename="view_dashboard"))
    extra = Permission.objects.get(content_type__app_label="jobs", codename="change_job")
    viewers.permissions.add(extra)
    Group.objects.filter(name=OPERATORS).delete()

    # when migrate runs (its post_migrate signal syncs the roles)
    call_command("migrate", "scheduler", verbosity=0)

    # then both groups are whole again, and the addition stays
    assert _names(Group.objects.get(name=VIEWERS)) == {*ROLES[VIEWERS], "jobs.change_job"}
    assert _names(Group.objects.get(name=OPERATORS)) == set(ROLES[OPERATORS])
    # and syncing twice changes nothing
    assert roles_sync() == {VIEWERS: len(ROLES[VIEWERS]) + 1, OPERATORS: len(ROLES[OPERATORS])}
