"""API keys now belong to domain/access. The table stays where it is (`common_apikey`) and no
row is copied: this only takes the model out of this app's migration state, after access has
taken it in (access.0001) and every foreign key points there (events.0004, jobs.0001)."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("common", "0001_initial"),
        ("access", "0001_initial"),
        ("events", "0004_jobs_and_api_keys_move_out"),
        ("jobs", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="ApiKey")],
            database_operations=[],
        ),
    ]
