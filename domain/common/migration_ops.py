"""Operations shared by the migrations that moved models between apps (API keys to
domain/access, jobs to domain/jobs): kept here, small and stable, rather than copied into each
migration."""

from __future__ import annotations

from django.db import migrations

# The historical models a content-type move touches; a migration using move_content_types
# lists these among its dependencies so they are in its state.
CONTENT_TYPE_DEPENDENCIES = [
    ("contenttypes", "0002_remove_content_type_name"),
    ("auth", "0012_alter_user_first_name_max_length"),
    ("admin", "0003_logentry_add_action_flag_choices"),
]


def _merge(apps, old, new) -> None:
    """Move what hangs off content type `old` (permissions, with their grants to groups and
    users, and admin history) onto `new`, then delete `old`. A permission `new` already has
    (same codename) takes over the grants of the one it replaces."""
    permission = apps.get_model("auth", "Permission")
    log_entry = apps.get_model("admin", "LogEntry")
    for perm in permission.objects.filter(content_type=old):
        kept = permission.objects.filter(content_type=new, codename=perm.codename).first()
        if kept is None:
            perm.content_type = new
            perm.save(update_fields=["content_type"])
            continue
        for group in perm.group_set.all():
            group.permissions.add(kept)
        for user in perm.user_set.all():
            user.user_permissions.add(kept)
        perm.delete()
    log_entry.objects.filter(content_type=old).update(content_type=new)
    old.delete()


def move_content_types(old_app: str, new_app: str, models: list[str]) -> migrations.RunPython:
    """Relabel the moved models' content types, so the permissions and admin history attached
    to them follow the models instead of being left behind on stale types (which
    `remove_stale_contenttypes` would later delete, grants and history with them).

    When the new app already has a content type for the model (created by the new code before
    this ran, or left over from a rollback), the two are merged into it. A fresh database has
    no content types yet at this point (they are created after migrate): there is nothing to
    move, and they are created under the new app.
    """

    def move(apps, from_app: str, to_app: str) -> None:
        content_type = apps.get_model("contenttypes", "ContentType")
        for model in models:
            old = content_type.objects.filter(app_label=from_app, model=model).first()
            if old is None:
                continue
            new = content_type.objects.filter(app_label=to_app, model=model).first()
            if new is None:
                old.app_label = to_app
                old.save(update_fields=["app_label"])
            else:
                _merge(apps, old, new)

    def forward(apps, schema_editor) -> None:
        move(apps, old_app, new_app)

    def backward(apps, schema_editor) -> None:
        move(apps, new_app, old_app)

    return migrations.RunPython(forward, backward)


class AddIndexConcurrently(migrations.AddIndex):
    """`CREATE INDEX CONCURRENTLY` on PostgreSQL, a plain index elsewhere.

    A plain CREATE INDEX blocks writes to its table while it builds, and the jobs table is
    written on every publish: on a large table that is an outage. Django's own
    AddIndexConcurrently (django.contrib.postgres) runs only on PostgreSQL, and the local
    SQLite fallback migrates the same files. The migration using it must say `atomic = False`.
    """

    def database_forwards(self, app_label, schema_editor, from_state, to_state) -> None:
        model = to_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            options = {"concurrently": True} if _on_postgresql(schema_editor) else {}
            schema_editor.add_index(model, self.index, **options)

    def database_backwards(self, app_label, schema_editor, from_state, to_state) -> None:
        model = from_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            options = {"concurrently": True} if _on_postgresql(schema_editor) else {}
            schema_editor.remove_index(model, self.index, **options)


def _on_postgresql(schema_editor) -> bool:
    return schema_editor.connection.vendor == "postgresql"
