"""Notification categories and templates, registered in code like event types.

A **category** groups templates for preferences ("orders", "comments"); a `required` one
(security notices) is sent whatever the recipient's preferences say, and its email carries no
List-Unsubscribe header.

A **template** names its category, the channels it supports, a JSON schema for its context,
and three Django templates found by the app directories loader under
`templates/notifications/<name>/`: `subject.txt` (the email's subject and the in-app item's
title), `text.txt` (the plain-text part and the in-app body) and, optionally, `html.html`.
A template with a `digest` rule collects its email deliveries per recipient (and digest key)
for a window and sends them as one email; its files then render a list of `items`.

Rendering is strict: a variable the context does not have is an error (`MissingVariable`),
never an empty string in a customer's email. Django's engine has no strict mode; its
`string_if_invalid` hook is where an undefined variable is resolved, so a string that raises
when formatted makes it one (the `{% if %}` and `{% for %}` tags still treat a missing
variable as false or empty, which is what optional parts of a template need).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from django.template import Context, Engine
from jsonschema import Draft202012Validator

from domain.common.errors import ValidationFailed
from domain.common.schemas import compile_schema, schema_errors


class MissingVariable(Exception):
    """A template used a variable its context does not have: a permanent error."""

    def __init__(self, template: str, part: str, variable: str) -> None:
        super().__init__(f"template {template!r} ({part}) uses {{{{ {variable} }}}}, which "
                         "its context does not have")
        self.template, self.part, self.variable = template, part, variable


class _Undefined(str):
    """`string_if_invalid` that raises: Django formats it with the variable's name."""

    def __contains__(self, item: object) -> bool:
        return item == "%s"

    def __mod__(self, variable: object) -> str:
        raise _Missing(str(variable))


class _Missing(Exception):
    pass


_engine = Engine(app_dirs=True, string_if_invalid=_Undefined("undefined"))


@dataclass(frozen=True)
class Category:
    name: str
    description: str
    required: bool = False


@dataclass(frozen=True)
class DigestRule:
    """Collect a recipient's emails of this template for `window_seconds` from the first one,
    then send one email listing them all. `key`: a context field whose value separates
    digests (one per thread, say); empty: one digest per recipient."""

    window_seconds: int
    key: str = ""

    def key_for(self, context: dict) -> str:
        return str(context.get(self.key, "")) if self.key else ""


@dataclass(frozen=True)
class RenderedMessage:
    subject: str
    text: str
    html: str | None


@dataclass(frozen=True)
class NotificationTemplate:
    name: str
    category: str
    channels: tuple[str, ...]
    description: str
    schema: dict
    example: dict
    digest: DigestRule | None = None
    has_html: bool = field(default=True)
    validator: Draft202012Validator = field(init=False, repr=False, compare=False)
    # Whether a part names its recipient (or their unsubscribe link): if not, every
    # recipient's rendering is the same and a sender may render it once per notification.
    personal: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        from domain.notifications.models import PEOPLE_CHANNELS

        object.__setattr__(self, "validator", compile_schema(self.schema))
        unknown = set(self.channels) - {str(c) for c in PEOPLE_CHANNELS}
        if not self.channels or unknown:
            raise ValueError(f"template {self.name!r}: channels must be some of "
                             f"{[str(c) for c in PEOPLE_CHANNELS]}, not {list(self.channels)}")
        if errors := self.validate_context(self.example):
            raise ValueError(f"template {self.name!r}: its example fails its schema: {errors}")
        sources = [_engine.get_template(self._path(part)).source
                   for part in self.parts]  # a missing or broken file fails at import
        object.__setattr__(self, "personal", any(
            re.search(r"\b(recipient|unsubscribe_url)\b", source) for source in sources))
        self.render(self.example, recipient={"id": "example", "email": "a@example.com"})

    @property
    def parts(self) -> tuple[str, ...]:
        return ("subject.txt", "text.txt", "html.html") if self.has_html else (
            "subject.txt", "text.txt")

    def _path(self, part: str) -> str:
        return f"notifications/{self.name}/{part}"

    def validate_context(self, context: Any) -> list[dict[str, str]]:
        return schema_errors(self.validator, context)

    def render(self, context: dict, *, recipient: dict, items: list[dict] | None = None,
               extra: dict | None = None) -> RenderedMessage:
        """The three parts for one recipient. A digest template renders `items` (each a
        context; one item when not collected), with `count`, besides the first context."""
        values = {**context, **(extra or {}), "recipient": recipient}
        if self.digest is not None:
            listed = items if items is not None else [context]
            values.update(items=listed, count=len(listed))
        subject = " ".join(self._render("subject.txt", values, autoescape=False).split())
        text = self._render("text.txt", values, autoescape=False)
        html = self._render("html.html", values, autoescape=True) if self.has_html else None
        return RenderedMessage(subject=subject[:500], text=text, html=html)

    def _render(self, part: str, values: dict, *, autoescape: bool) -> str:
        try:
            return _engine.get_template(self._path(part)).render(
                Context(values, autoescape=autoescape))
        except _Missing as exc:
            raise MissingVariable(self.name, part, exc.args[0]) from None


_categories: dict[str, Category] = {}
_templates: dict[str, NotificationTemplate] = {}


def register_category(category: Category) -> Category:
    if category.name in _categories and _categories[category.name] != category:
        raise ValueError(f"category {category.name!r} is already registered")
    _categories[category.name] = category
    return category


def register_template(template: NotificationTemplate) -> NotificationTemplate:
    if template.category not in _categories:
        raise ValueError(f"template {template.name!r}: unknown category {template.category!r}")
    if template.name in _templates and _templates[template.name] != template:
        raise ValueError(f"template {template.name!r} is already registered")
    _templates[template.name] = template
    return template


def categories() -> list[Category]:
    return sorted(_categories.values(), key=lambda c: c.name)


def get_category(name: str) -> Category:
    """A registered category; one no longer in the code (a notification stored before it was
    removed) reads as an optional one of that name."""
    return _categories.get(name) or Category(name=name, description="(no longer registered)")


def notification_templates() -> list[NotificationTemplate]:
    return sorted(_templates.values(), key=lambda t: t.name)


class UnknownTemplate(ValidationFailed):
    code = "unknown_template"


def get_template(name: str) -> NotificationTemplate:
    try:
        return _templates[name]
    except KeyError:
        raise UnknownTemplate(f"Unknown notification template {name!r}.",
                              code="unknown_template",
                              details={"known": sorted(_templates)}) from None
