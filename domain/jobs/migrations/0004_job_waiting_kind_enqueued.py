"""An index for "the jobs ahead of this one in its queue" (GET /api/v1/jobs/{id}/explain).

The jobs table is the largest there is: on PostgreSQL the index is built CONCURRENTLY, so
publishing and claiming go on while it builds (hence a migration outside a transaction);
SQLite builds it as usual.
"""

from django.db import migrations, models
from django.db.models import Q

INDEX = models.Index(fields=["kind", "enqueued_at"],
                     condition=Q(status__in=["queued", "retrying"]),
                     name="job_waiting_kind_enqueued")


def _add(apps, schema_editor):
    job = apps.get_model("jobs", "Job")
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.add_index(job, INDEX, concurrently=True)
    else:
        schema_editor.add_index(job, INDEX)


def _remove(apps, schema_editor):
    job = apps.get_model("jobs", "Job")
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.remove_index(job, INDEX, concurrently=True)
    else:
        schema_editor.remove_index(job, INDEX)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("jobs", "0003_queue_pause")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AddIndex(model_name="job", index=INDEX)],
            database_operations=[migrations.RunPython(_add, _remove)],
        ),
    ]
