"""The catalogue: strict rendering (a missing variable is an error, `if` on one is not), HTML
escaped and text not, and what registering a template or a category refuses."""

from __future__ import annotations

import pytest
from django.template import TemplateDoesNotExist

from domain.common.errors import ValidationFailed
from domain.notifications.catalogue import (
    Category,
    DigestRule,
    MissingVariable,
    NotificationTemplate,
    categories,
    get_category,
    get_template,
    notification_templates,
    register_category,
    register_template,
)
from tests.notification_utils import comment_context, security_context

RECIPIENT = {"id": "r-1", "email": "r@example.com"}


def _render(name: str, context: dict, **options):
    return get_template(name).render(context, recipient=RECIPIENT, **options)


# --- Strict rendering ------------------------------------------------------------------------

@pytest.mark.parametrize("missing, part", [("title", "subject.txt"),
                                           ("message", "text.txt"),
                                           ("occurred_at", "text.txt")])
def test_a_variable_the_context_lacks_raises_naming_it_and_the_part(missing, part):
    context = security_context()
    del context[missing]
    with pytest.raises(MissingVariable) as raised:
        _render("security_alert", context)
    assert (raised.value.template, raised.value.part, raised.value.variable) == (
        "security_alert", part, missing)
    assert f"{{{{ {missing} }}}}" in str(raised.value)


def test_an_if_on_a_missing_variable_is_false_not_an_error():
    context = security_context()
    del context["ip_address"]
    rendered = _render("security_alert", context)
    assert "From:" not in rendered.text
    assert "<br>From:" not in rendered.html
    assert "From: 203.0.113.7" in _render("security_alert", security_context()).text


def test_a_missing_field_of_a_digest_item_raises():
    item = comment_context()
    del item["excerpt"]
    with pytest.raises(MissingVariable) as raised:
        _render("comment_added", comment_context(), items=[comment_context(), item])
    assert raised.value.variable == "item.excerpt"


def test_html_is_escaped_and_text_and_subject_are_not():
    context = security_context(title="Fish & <Chips>",
                               message='<script>alert("x")</script> & more')
    rendered = _render("security_alert", context)
    assert rendered.subject == "Fish & <Chips>"
    assert '<script>alert("x")</script> & more' in rendered.text
    assert "<h1>Fish &amp; &lt;Chips&gt;</h1>" in rendered.html
    assert ("<p>&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; more</p>"
            in rendered.html)
    assert "<script>" not in rendered.html


def test_the_subject_is_one_line():
    rendered = _render("security_alert", security_context(title="New\nsign-in\t  here"))
    assert rendered.subject == "New sign-in here"


def test_a_digest_template_renders_its_items_and_count():
    items = [comment_context(author="Ada", excerpt="one"),
             comment_context(author="Bob", excerpt="two")]
    rendered = _render("comment_added", items[0], items=items)
    assert rendered.subject == "2 new comments on Launch plan"
    assert rendered.text.startswith("Ada: one\nBob: two\n")
    # and without items, the context is the one item
    assert _render("comment_added", items[0]).subject == "Ada commented on Launch plan"


def test_a_filter_does_not_rescue_a_missing_variable(test_template):
    # strict means strict: `default` never sees the variable (Django resolves a missing one to
    # the engine's `string_if_invalid` before any filter), so an optional part needs `if`
    test_template("tests_filtered", subject="Hi", text='{{ note|default:"none" }}',
                  schema={"type": "object"}, example={"note": "x"})
    with pytest.raises(MissingVariable):
        _render("tests_filtered", {})
    test_template("tests_guarded", subject="Hi",
                  text="{% if note %}{{ note }}{% else %}none{% endif %}",
                  schema={"type": "object"}, example={})
    assert _render("tests_guarded", {}).text == "none"


# --- Registering -----------------------------------------------------------------------------

def test_the_registry_lists_templates_and_categories_sorted():
    names = [t.name for t in notification_templates()]
    assert names == sorted(names) and {"comment_added", "security_alert"} <= set(names)
    assert [c.name for c in categories()] == sorted(c.name for c in categories())
    assert get_template("comment_added").digest == DigestRule(window_seconds=600,
                                                              key="thread_id")


def test_an_unknown_template_is_a_422_naming_the_known_ones():
    with pytest.raises(ValidationFailed) as refused:
        get_template("nope")
    assert refused.value.code == "unknown_template"
    assert refused.value.status_code == 422
    assert "security_alert" in refused.value.details["known"]


def _template(**changes) -> NotificationTemplate:
    fields = {"name": "tests_never_registered", "category": "orders", "channels": ("email",),
              "description": "d", "schema": {"type": "object", "required": ["a"]},
              "example": {"a": 1}}
    return NotificationTemplate(**{**fields, **changes})


def test_a_template_whose_example_fails_its_schema_is_refused():
    with pytest.raises(ValueError, match="its example fails its schema"):
        _template(example={})


@pytest.mark.parametrize("channels", [(), ("sms",), ("email", "webhook")])
def test_a_template_with_channels_that_are_not_email_or_in_app_is_refused(channels):
    with pytest.raises(ValueError, match="channels must be some of"):
        _template(channels=channels)


def test_a_template_whose_files_are_missing_is_refused():
    with pytest.raises(TemplateDoesNotExist):
        _template()


def test_registering_refuses_an_unknown_category_and_a_second_definition(test_template):
    registered = test_template("tests_once", subject="Hi", text="Hello",
                               schema={"type": "object"}, example={})
    assert register_template(registered) is registered  # the same one again: fine
    with pytest.raises(ValueError, match="already registered"):
        test_template("tests_once", subject="Hi", text="Hello again",
                      schema={"type": "object"}, example={}, description="another")
    with pytest.raises(ValueError, match="unknown category"):
        test_template("tests_nowhere", subject="Hi", text="Hello", category="nowhere",
                      schema={"type": "object"}, example={})


def test_a_category_is_registered_once():
    security = get_category("security")
    assert register_category(security) is security
    with pytest.raises(ValueError, match="already registered"):
        register_category(Category(name="security", description="optional now",
                                   required=False))


def test_a_template_is_personal_when_a_part_names_its_recipient_or_unsubscribe_link():
    # (a sender renders a template that is not personal once per notification)
    from domain.notifications.catalogue import get_template

    assert get_template("security_alert").personal is False
    assert get_template("comment_added").personal is True  # its unsubscribe link
    assert get_template("order_shipped").personal is True
