"""Jobs and their attempts move here from domain/events. Their tables (`events_job`,
`events_jobattempt`) already exist — created by events.0001-0003 on a fresh database as on an
old one — so this migration only records the models in this app's state: no row is copied, no
table is rewritten or locked. events.0004 then drops them from the events app's state."""

import uuid

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

from domain.common.migration_ops import CONTENT_TYPE_DEPENDENCIES, move_content_types


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ("access", "0001_initial"),
        ("events", "0003_job_id_help_text"),
        *CONTENT_TYPE_DEPENDENCIES,
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="Job",
                    fields=[
                        ("id", models.UUIDField(
                            default=uuid.uuid4, editable=False,
                            help_text="Also the Celery task id when the job travels alone; a "
                            "micro-batch message has its own id and lists the job ids.",
                            primary_key=True, serialize=False)),
                        ("kind", models.CharField(db_index=True, max_length=64)),
                        ("handler", models.CharField(blank=True, default="", max_length=100)),
                        ("params", models.JSONField(default=dict)),
                        ("status", models.CharField(
                            choices=[("queued", "Queued"), ("running", "Running"),
                                     ("retrying", "Retrying"), ("succeeded", "Succeeded"),
                                     ("dead", "Dead"), ("cancelled", "Cancelled")],
                            default="queued", max_length=16)),
                        ("attempts", models.PositiveIntegerField(
                            default=0, help_text="Attempts in the current run.")),
                        ("max_attempts", models.PositiveIntegerField()),
                        ("replays", models.PositiveIntegerField(
                            default=0, help_text="Times an operator replayed it.")),
                        ("progress_done", models.PositiveIntegerField(default=0)),
                        ("progress_total", models.PositiveIntegerField(blank=True, null=True)),
                        ("result", models.JSONField(blank=True, null=True)),
                        ("error", models.JSONField(
                            blank=True, help_text="Last error: type and message.", null=True)),
                        ("traceback", models.TextField(blank=True, default="")),
                        ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                        ("run_at", models.DateTimeField(
                            blank=True, help_text="Not before this time.", null=True)),
                        ("enqueued_at", models.DateTimeField(
                            blank=True, help_text="Last hand-over to the broker.", null=True)),
                        ("started_at", models.DateTimeField(blank=True, null=True)),
                        ("finished_at", models.DateTimeField(blank=True, null=True)),
                        ("next_retry_at", models.DateTimeField(blank=True, null=True)),
                        ("worker", models.CharField(blank=True, default="", max_length=255)),
                        ("correlation_id", models.CharField(blank=True, default="",
                                                            max_length=64)),
                        ("api_key", models.ForeignKey(
                            blank=True, null=True,
                            on_delete=django.db.models.deletion.SET_NULL,
                            related_name="jobs", to="access.apikey")),
                        ("event", models.ForeignKey(
                            blank=True, null=True,
                            on_delete=django.db.models.deletion.CASCADE,
                            related_name="jobs", to="events.event")),
                    ],
                    options={
                        "db_table": "events_job",
                        "ordering": ["-created_at"],
                        "indexes": [
                            models.Index(fields=["status", "created_at"],
                                         name="job_status_created"),
                            models.Index(fields=["kind", "created_at"],
                                         name="job_kind_created"),
                        ],
                        "constraints": [
                            models.UniqueConstraint(
                                condition=models.Q(("event__isnull", False)),
                                fields=("event", "handler"),
                                name="job_one_per_event_handler"),
                        ],
                    },
                ),
                migrations.CreateModel(
                    name="JobAttempt",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True,
                                                   serialize=False, verbose_name="ID")),
                        ("run", models.PositiveIntegerField(
                            default=0, help_text="0, then n after n replays.")),
                        ("number", models.PositiveIntegerField(
                            help_text="Attempt number within its run.")),
                        ("started_at", models.DateTimeField()),
                        ("finished_at", models.DateTimeField()),
                        ("outcome", models.CharField(
                            choices=[("succeeded", "Succeeded"), ("retry", "Failed, will retry"),
                                     ("failed", "Failed, gave up"), ("lost", "Worker vanished")],
                            max_length=16)),
                        ("error_type", models.CharField(blank=True, default="", max_length=255)),
                        ("error_message", models.TextField(blank=True, default="")),
                        ("traceback", models.TextField(blank=True, default="")),
                        ("worker", models.CharField(blank=True, default="", max_length=255)),
                        ("job", models.ForeignKey(
                            on_delete=django.db.models.deletion.CASCADE,
                            related_name="attempt_log", to="jobs.job")),
                    ],
                    options={
                        "db_table": "events_jobattempt",
                        "ordering": ["job", "run", "number"],
                        "indexes": [
                            models.Index(fields=["job", "run", "number"],
                                         name="attempt_job_run_number"),
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
        move_content_types("events", "jobs", ["job", "jobattempt"]),
    ]
