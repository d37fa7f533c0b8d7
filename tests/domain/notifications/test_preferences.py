"""Recipients' preferences per category and channel: yes unless they said no, required
categories always yes, every choice checked before any is written, the one-click unsubscribe
and its signed token."""

from __future__ import annotations

import pytest
from django.core import signing

from domain.common.errors import ValidationFailed
from domain.notifications.models import RecipientPreference
from domain.notifications.preferences import (
    opted_out,
    preference_set,
    preferences_get,
    preferences_put,
    unsubscribe_read,
    unsubscribe_token,
)

pytestmark = pytest.mark.django_db


def _channels(answer: dict) -> dict[str, dict[str, bool]]:
    return {c["name"]: c["channels"] for c in answer["categories"]}


def test_without_choices_everything_is_yes_and_required_categories_say_so():
    answer = preferences_get(recipient_id="r-1")
    assert answer["recipient_id"] == "r-1"
    assert _channels(answer) == {name: {"email": True, "in_app": True}
                                 for name in ("comments", "orders", "security")}
    required = {c["name"]: c["required"] for c in answer["categories"]}
    assert required == {"comments": False, "orders": False, "security": True}
    assert all(c["description"] for c in answer["categories"])


def test_put_replaces_the_choices_and_what_is_not_named_is_yes():
    # when a recipient turns off comments by email
    answer = preferences_put(recipient_id="r-1", choices={"comments": {"email": False}})
    assert _channels(answer)["comments"] == {"email": False, "in_app": True}
    assert _channels(answer)["orders"] == {"email": True, "in_app": True}

    # when they then send only an orders choice, the comments choice is gone (yes again)
    answer = preferences_put(recipient_id="r-1", choices={"orders": {"in_app": False}})
    assert _channels(answer)["comments"] == {"email": True, "in_app": True}
    assert _channels(answer)["orders"] == {"email": True, "in_app": False}
    assert _channels(preferences_get(recipient_id="r-1")) == _channels(answer)
    # and another recipient is untouched
    assert _channels(preferences_get(recipient_id="r-2"))["orders"]["in_app"] is True


def test_a_required_category_can_be_said_yes_to_but_not_no():
    answer = preferences_put(recipient_id="r-1", choices={"security": {"email": True}})
    assert _channels(answer)["security"] == {"email": True, "in_app": True}

    preferences_put(recipient_id="r-1", choices={"comments": {"email": False}})
    with pytest.raises(ValidationFailed) as refused:
        preferences_put(recipient_id="r-1", choices={"comments": {"in_app": False},
                                                     "security": {"in_app": False}})
    assert refused.value.code == "required_category"
    assert refused.value.details == {"preferences": {
        "security.in_app": "a required category: it cannot be turned off"}}
    # nothing changed: the earlier choice stands, the new one was not written
    assert _channels(preferences_get(recipient_id="r-1"))["comments"] == {
        "email": False, "in_app": True}


@pytest.mark.parametrize("choices, key", [
    ({"marketing": {"email": False}}, "marketing"),
    ({"comments": {"sms": False}}, "comments.sms"),
    ({"comments": {"webhook": False}}, "comments.webhook"),
    ({"comments": {"email": "no"}}, "comments.email"),
    ({"comments": {"email": None}}, "comments.email"),
    ({"comments": False}, "comments"),
    ({"comments": ["email"]}, "comments"),
])
def test_an_unknown_category_or_channel_or_a_choice_that_is_not_yes_or_no_is_refused(
        choices, key):
    preferences_put(recipient_id="r-1", choices={"orders": {"email": False}})
    with pytest.raises(ValidationFailed) as refused:
        preferences_put(recipient_id="r-1", choices=choices)
    assert refused.value.code == "invalid_preferences"
    assert key in refused.value.details["preferences"]
    # and nothing was written: the earlier choice stands
    assert list(RecipientPreference.objects.values_list("category", "channel", "enabled")) == [
        ("orders", "email", False)]


@pytest.mark.parametrize("choices", [["comments"], None, "comments"])
def test_choices_that_are_not_an_object_are_refused(choices):
    with pytest.raises(ValidationFailed) as refused:
        preferences_put(recipient_id="r-1", choices=choices)
    assert refused.value.code == "invalid_preferences"


def test_a_required_and_an_unknown_together_are_invalid_preferences_naming_both():
    with pytest.raises(ValidationFailed) as refused:
        preferences_put(recipient_id="r-1", choices={"security": {"email": False},
                                                     "marketing": {"email": False}})
    assert refused.value.code == "invalid_preferences"
    assert set(refused.value.details["preferences"]) == {"security.email", "marketing"}


def test_one_choice_changes_only_itself():
    preferences_put(recipient_id="r-1", choices={"orders": {"in_app": False}})
    preference_set(recipient_id="r-1", category="comments", channel="email", enabled=False)
    channels = _channels(preferences_get(recipient_id="r-1"))
    assert channels["comments"] == {"email": False, "in_app": True}
    assert channels["orders"] == {"email": True, "in_app": False}
    # and again (the same link clicked twice) is the same
    preference_set(recipient_id="r-1", category="comments", channel="email", enabled=False)
    assert RecipientPreference.objects.filter(recipient_id="r-1").count() == 2
    with pytest.raises(ValidationFailed) as refused:
        preference_set(recipient_id="r-1", category="security", channel="email", enabled=False)
    assert refused.value.code == "required_category"


def test_opted_out_answers_in_one_query_and_never_for_a_required_category(
        django_assert_num_queries):
    preferences_put(recipient_id="r-1", choices={"comments": {"email": False}})
    preferences_put(recipient_id="r-2", choices={"orders": {"in_app": False}})
    RecipientPreference.objects.create(recipient_id="r-1", category="security",
                                       channel="email", enabled=False)  # written directly
    wanted = [("r-1", "comments", "email"), ("r-1", "comments", "in_app"),
              ("r-1", "security", "email"), ("r-2", "orders", "in_app"),
              ("r-2", "comments", "email"), ("r-3", "orders", "email")]
    with django_assert_num_queries(1):
        refused = opted_out(wanted)
    assert refused == {("r-1", "comments", "email"), ("r-2", "orders", "in_app")}
    with django_assert_num_queries(0):
        assert opted_out([("r-1", "security", "email")]) == set()


def test_the_unsubscribe_token_names_one_recipient_and_category_and_cannot_be_forged():
    token = unsubscribe_token(recipient_id="r-1", category="comments")
    assert unsubscribe_read(token) == ("r-1", "comments")

    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    other_salt = signing.dumps({"r": "r-1", "c": "comments"}, salt="another purpose")
    for bad in (tampered, other_salt, "not-a-token", ""):
        with pytest.raises(ValidationFailed) as refused:
            unsubscribe_read(bad)
        assert refused.value.code == "invalid_unsubscribe_token"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_puts_of_one_recipient_are_one_after_the_other(private_broker):
    from tests.conftest import simultaneously

    # given six PUTs of the same recipient's preferences, each naming one choice, at once
    choices = iter([{"comments": {"email": n % 2 == 0}} if n < 3 else
                    {"orders": {"in_app": n % 2 == 0}} for n in range(6)])

    def put():
        return preferences_put(recipient_id="racer", choices=next(choices))

    # when they run together, then none fails (both deleted nothing and the second insert
    # hit the unique constraint: a 500), and one of them is what is stored, whole
    results = simultaneously(6, put)
    assert all(isinstance(r, dict) for r in results), results
    stored = list(RecipientPreference.objects.filter(recipient_id="racer").values_list(
        "category", "channel"))
    assert len(stored) == 1
