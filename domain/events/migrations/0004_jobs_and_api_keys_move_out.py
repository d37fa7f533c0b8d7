"""Jobs now belong to domain/jobs (jobs.0001) and API keys to domain/access (access.0001).
This takes Job and JobAttempt out of the events app's state and points the event's API-key
foreign key at the access app's model. Nothing changes in the database: the tables and the
foreign-key constraints stay exactly as they are (same table names, same columns)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("events", "0003_job_id_help_text"),
        ("access", "0001_initial"),
        ("jobs", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="JobAttempt"),
                migrations.DeleteModel(name="Job"),
                migrations.AlterField(
                    model_name="event",
                    name="api_key",
                    field=models.ForeignKey(
                        blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL,
                        related_name="events", to="access.apikey"),
                ),
            ],
            database_operations=[],
        ),
    ]
