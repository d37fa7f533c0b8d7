"""API keys move here from domain/common. The table `common_apikey` already exists (created by
common.0001, on a fresh database as on an old one): this migration only records the model in
this app's state, so no row is copied and nothing is locked."""

import uuid

import django.utils.timezone
from django.db import migrations, models

from domain.common.migration_ops import CONTENT_TYPE_DEPENDENCIES, move_content_types


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ("common", "0001_initial"),
        *CONTENT_TYPE_DEPENDENCIES,
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="ApiKey",
                    fields=[
                        ("id", models.UUIDField(default=uuid.uuid4, editable=False,
                                                primary_key=True, serialize=False)),
                        ("name", models.CharField(max_length=100)),
                        ("prefix", models.CharField(
                            help_text="The first characters, to recognise a key.",
                            max_length=16)),
                        ("key_hash", models.CharField(editable=False, max_length=64,
                                                      unique=True)),
                        ("scopes", models.JSONField(default=list)),
                        ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                        ("expires_at", models.DateTimeField(blank=True, null=True)),
                        ("revoked_at", models.DateTimeField(blank=True, null=True)),
                        ("last_used_at", models.DateTimeField(blank=True, null=True)),
                    ],
                    options={
                        "verbose_name": "API key",
                        "db_table": "common_apikey",
                        "ordering": ["-created_at"],
                    },
                ),
            ],
            database_operations=[],
        ),
        move_content_types("common", "access", ["apikey"]),
    ]
