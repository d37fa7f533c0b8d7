"""Running jobs hold a lease their worker renews; the orphan rescue reads it every few seconds
through a partial index. The column is nullable (instant on PostgreSQL: no table rewrite), and
the index is built CONCURRENTLY there, so publishing goes on while it builds."""

from django.db import migrations, models

from domain.common.migration_ops import AddIndexConcurrently


class Migration(migrations.Migration):

    atomic = False  # CREATE INDEX CONCURRENTLY cannot run inside a transaction

    dependencies = [
        ("jobs", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="job",
            name="lease_expires_at",
            field=models.DateTimeField(
                blank=True, null=True,
                help_text="While running: the worker renews this; once it has lapsed, the "
                "worker is taken for dead and the job runs again."),
        ),
        AddIndexConcurrently(
            model_name="job",
            index=models.Index(condition=models.Q(("status", "running")),
                               fields=["lease_expires_at"], name="job_running_lease"),
        ),
    ]
