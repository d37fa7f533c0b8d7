"""Operations shared by the migrations that moved models between apps (API keys to
domain/access, jobs to domain/jobs): kept here, small and stable, rather than copied into each
migration."""

from __future__ import annotations

from django.db import migrations


def move_content_types(old_app: str, new_app: str, models: list[str]) -> migrations.RunPython:
    """Relabel the moved models' content types, so the permissions and admin history attached
    to them follow the models instead of being left behind as stale types.

    A fresh database has no content types yet at this point (they are created after migrate):
    then there is nothing to move, and after migrate they are created under the new app.
    """

    def relabel(apps, from_app: str, to_app: str) -> None:
        content_type = apps.get_model("contenttypes", "ContentType")
        for model in models:
            if not content_type.objects.filter(app_label=to_app, model=model).exists():
                content_type.objects.filter(app_label=from_app, model=model).update(
                    app_label=to_app)

    def forward(apps, schema_editor) -> None:
        relabel(apps, old_app, new_app)

    def backward(apps, schema_editor) -> None:
        relabel(apps, new_app, old_app)

    return migrations.RunPython(forward, backward)
