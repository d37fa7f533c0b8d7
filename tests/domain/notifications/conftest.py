from __future__ import annotations

import pytest

from domain.notifications import catalogue


@pytest.fixture
def test_template(tmp_path):
    """Register a notification template for one test, its files written to a temporary folder
    the catalogue's template engine also searches; gone from the registry afterwards.

    The shipped templates print every variable their schema does not require under an `if`,
    so a template of the test's own is the way to a context that passes its schema and still
    lacks a variable (422 missing_variable)."""
    folder = str(tmp_path)
    catalogue._engine.dirs.append(folder)
    added: list[str] = []

    def register(name: str, *, subject: str, text: str, html: str | None = None,
                 **fields) -> catalogue.NotificationTemplate:
        files = tmp_path / "notifications" / name
        files.mkdir(parents=True, exist_ok=True)
        (files / "subject.txt").write_text(subject)
        (files / "text.txt").write_text(text)
        if html is not None:
            (files / "html.html").write_text(html)
        fields.setdefault("category", "orders")
        fields.setdefault("channels", ("email", "in_app"))
        fields.setdefault("description", "A template of the tests.")
        template = catalogue.NotificationTemplate(name=name, has_html=html is not None,
                                                  **fields)
        added.append(name)
        return catalogue.register_template(template)

    yield register
    for name in added:
        catalogue._templates.pop(name, None)
    catalogue._engine.dirs.remove(folder)
    for loader in catalogue._engine.template_loaders:
        if hasattr(loader, "reset"):
            loader.reset()  # the cached loader keeps what it found (and did not find)
