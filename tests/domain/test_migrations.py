"""Upgrade in place: a database from before API keys and jobs had apps of their own (keys in
domain/common, jobs in domain/events) migrates to the new layout with every row where it was:
no table copied, renamed or rewritten, every foreign key intact, permissions kept."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from domain.access.models import ApiKey
from domain.events.models import Event
from domain.jobs.models import Job, JobAttempt

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

# The last migrations before the split; `None`: the app did not exist yet.
OLD_LAYOUT = [("common", "0001_initial"), ("events", "0003_job_id_help_text"),
              ("jobs", None), ("access", None)]
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def _tables() -> set[str]:
    with connection.cursor() as cursor:
        return set(connection.introspection.table_names(cursor))


def _foreign_keys(table: str) -> dict[str, tuple[str, str]]:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
    return {c["columns"][0]: c["foreign_key"] for c in constraints.values() if c["foreign_key"]}


def _seed_old_layout(apps) -> dict:
    """Rows written through the old layout's models, as a deployment before the split has."""
    old_key = apps.get_model("common", "ApiKey")
    old_event = apps.get_model("events", "Event")
    old_job = apps.get_model("events", "Job")
    old_attempt = apps.get_model("events", "JobAttempt")
    keys = [old_key.objects.create(name=f"key-{n}", prefix=f"cvk_old{n}", key_hash=f"{n}" * 64,
                                   scopes=["events:publish"], created_at=T0) for n in range(2)]
    events = [old_event.objects.create(type="demo.ping", payload={"n": n}, occurred_at=T0,
                                       created_at=T0 + timedelta(seconds=n), api_key=keys[n % 2],
                                       idempotency_key=f"idem-{n}" if n == 0 else None,
                                       status="completed", correlation_id=f"corr-{n}")
              for n in range(3)]
    jobs = [old_job.objects.create(event=events[n] if n < 3 else None, kind="noop",
                                   handler="demo.noop" if n < 3 else "", params={"n": n},
                                   status="succeeded" if n < 3 else "dead", attempts=2,
                                   max_attempts=5, replays=1 if n == 3 else 0,
                                   api_key=keys[0], created_at=T0, correlation_id=f"corr-{n}")
            for n in range(4)]
    attempts = [old_attempt.objects.create(job=jobs[3], run=run, number=number,
                                           started_at=T0, finished_at=T0, outcome="failed",
                                           error_type="Boom", error_message=f"{run}.{number}")
                for run in (0, 1) for number in (1, 2)]
    attempts.append(old_attempt.objects.create(job=jobs[0], run=0, number=1, started_at=T0,
                                               finished_at=T0, outcome="succeeded"))
    return {
        "keys": {k.pk: (k.name, k.key_hash) for k in keys},
        "events": {e.pk: (e.type, e.payload, e.api_key_id, e.idempotency_key, e.status)
                   for e in events},
        "jobs": {j.pk: (j.event_id, j.kind, j.params, j.status, j.attempts, j.replays,
                        j.api_key_id) for j in jobs},
        "attempts": {a.pk: (a.job_id, a.run, a.number, a.outcome, a.error_message)
                     for a in attempts},
    }


def test_a_database_of_the_old_layout_upgrades_in_place_with_every_row():
    executor = MigrationExecutor(connection)
    tables_before = _tables()
    job_fks_before = _foreign_keys(Job._meta.db_table)
    permission = Permission.objects.get(content_type__app_label="jobs", codename="view_job")

    # given a database at the old layout, holding keys, events, jobs and attempts
    executor.migrate(OLD_LAYOUT)
    old_apps = executor.loader.project_state(
        [("common", "0001_initial"), ("events", "0003_job_id_help_text")]).apps
    assert Permission.objects.get(pk=permission.pk).content_type.app_label == "events"
    seeded = _seed_old_layout(old_apps)

    # when it migrates to the new layout
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    # then every row is there, read through the new apps' models, with its relations
    assert {k.pk: (k.name, k.key_hash) for k in ApiKey.objects.all()} == seeded["keys"]
    assert {e.pk: (e.type, e.payload, e.api_key_id, e.idempotency_key, e.status)
            for e in Event.objects.all()} == seeded["events"]
    assert {j.pk: (j.event_id, j.kind, j.params, j.status, j.attempts, j.replays, j.api_key_id)
            for j in Job.objects.all()} == seeded["jobs"]
    assert {a.pk: (a.job_id, a.run, a.number, a.outcome, a.error_message)
            for a in JobAttempt.objects.all()} == seeded["attempts"]
    # and the relations work both ways through the new models
    event = Event.objects.get(idempotency_key="idem-0")
    assert [j.params for j in event.jobs.all()] == [{"n": 0}]
    assert event.api_key.events.count() == 2
    # and nothing was copied: the same tables, the same foreign-key constraints
    assert _tables() == tables_before
    assert {"common_apikey", "events_job", "events_jobattempt"} <= _tables()
    assert not {"access_apikey", "jobs_job", "jobs_jobattempt"} & _tables()
    assert _foreign_keys(Job._meta.db_table) == job_fks_before
    # and permissions followed the moved models instead of being left behind
    assert Permission.objects.get(pk=permission.pk).content_type.app_label == "jobs"


def test_new_rows_go_to_the_kept_tables():
    # given the new layout (the test database is migrated), when rows are written
    key = ApiKey.objects.create(name="new", prefix="cvk_new", key_hash=uuid.uuid4().hex * 2)
    job = Job.objects.create(kind="noop", max_attempts=5, api_key=key)

    # then they are in the tables the old layout used
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM common_apikey WHERE id = %s", [key.pk])
        assert cursor.fetchone() == ("new",)
        cursor.execute("SELECT kind FROM events_job WHERE id = %s", [job.pk])
        assert cursor.fetchone() == ("noop",)


def test_content_types_on_both_sides_are_merged_with_their_grants_and_history(
        django_user_model):
    """A rollback and a second upgrade (or new code that created its content types before
    `migrate` ran) leave a content type under both apps: the upgrade merges them, and a group's
    grant and the admin history end on the new one instead of on a stale type."""
    executor = MigrationExecutor(connection)
    executor.migrate(OLD_LAYOUT)
    # given the old layout's content type for jobs, granted to a group and in the admin history
    old_type = ContentType.objects.get(app_label="events", model="job")
    old_perm = Permission.objects.get(content_type=old_type, codename="change_job")
    group = Group.objects.create(name="operators")
    group.permissions.add(old_perm)
    user = django_user_model.objects.create_user("op", password="pw")
    entry = LogEntry.objects.create(user=user, content_type=old_type, object_id="1",
                                    object_repr="a job", action_flag=CHANGE)
    # and the same content type already under the new app, with its own permission
    new_type = ContentType.objects.create(app_label="jobs", model="job")
    new_perm = Permission.objects.create(content_type=new_type, codename="change_job",
                                         name="Can change job")

    # when the database migrates to the new layout
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    # then one content type is left, under the new app, holding the grant and the history
    assert not ContentType.objects.filter(app_label="events", model="job").exists()
    assert list(group.permissions.all()) == [new_perm]
    entry.refresh_from_db()
    assert entry.content_type_id == new_type.pk
    assert not Permission.objects.filter(pk=old_perm.pk).exists()
