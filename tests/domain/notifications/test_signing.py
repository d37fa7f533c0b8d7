"""Standard-Webhooks signing, checked by the `standardwebhooks` library's own verifier (what
every receiver runs): the body, the three headers, one signature per secret during a rotation."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from domain.notifications.models import new_secret
from domain.notifications.signing import message_body, signed_headers


def _signed(*secrets, message_id="msg_abc", sent_at=None, body=None):
    body = body if body is not None else message_body(
        type="demo.ping", timestamp=datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
        data={"message": "hi", "n": 1})
    headers = signed_headers(message_id=message_id, sent_at=sent_at or timezone.now(),
                             body=body, secrets=secrets)
    return body, headers


def test_the_body_is_type_timestamp_and_data():
    # given a message
    # when its body is made
    body = message_body(type="demo.ping", timestamp=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
                        data={"message": "hi"})

    # then it is the Standard-Webhooks JSON shape, the timestamp in UTC with a Z
    assert json.loads(body) == {"type": "demo.ping", "timestamp": "2026-01-02T03:04:05Z",
                                "data": {"message": "hi"}}


def test_a_signed_message_verifies_with_the_library():
    # given a secret as the server makes them
    secret = new_secret()
    assert secret.startswith("whsec_")

    # when a body is signed with it
    body, headers = _signed(secret)

    # then the library's verifier accepts it and returns the body's JSON
    assert Webhook(secret).verify(body, headers) == json.loads(body)
    assert headers["webhook-id"] == "msg_abc"
    assert headers["content-type"] == "application/json"
    assert headers["webhook-signature"].startswith("v1,")


def test_another_secret_does_not_verify():
    # given a message signed with one secret
    body, headers = _signed(new_secret())

    # when a receiver holding another secret verifies it, then it is refused
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)


@pytest.mark.parametrize("tamper", ["body", "id", "timestamp"])
def test_a_changed_body_id_or_timestamp_does_not_verify(tamper):
    # given a signed message
    secret = new_secret()
    body, headers = _signed(secret)

    # when one signed part is changed on the way
    if tamper == "body":
        body = body.replace(b'"hi"', b'"ho"')
    elif tamper == "id":
        headers = {**headers, "webhook-id": "msg_other"}
    else:
        headers = {**headers,
                   "webhook-timestamp": str(int(headers["webhook-timestamp"]) - 1)}

    # then the signature no longer verifies
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, headers)


def test_during_a_rotation_each_secret_signs_and_each_verifies_alone():
    # given the new and the old secret of a rotation
    new, old = new_secret(), new_secret()

    # when a message is signed with both
    body, headers = _signed(new, old)

    # then the header carries two signatures, space-separated, and a receiver holding either
    # secret alone verifies it; a third secret does not
    assert len(headers["webhook-signature"].split()) == 2
    assert Webhook(new).verify(body, headers)
    assert Webhook(old).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)


def test_an_empty_secret_adds_no_signature():
    # given an endpoint with no previous secret (the empty string)
    secret = new_secret()

    # when it signs
    _, headers = _signed(secret, "")

    # then one signature only
    assert len(headers["webhook-signature"].split()) == 1


def test_the_timestamp_header_is_the_send_time_and_an_old_one_is_refused():
    # given a message signed now, and the same signed an hour ago (a replayed capture)
    secret = new_secret()
    now = timezone.now()
    body, fresh = _signed(secret, sent_at=now)
    _, stale = _signed(secret, sent_at=now - timedelta(hours=1), body=body)

    # then the header says the send time in whole seconds, and the verifier's tolerance
    # refuses the old one
    assert fresh["webhook-timestamp"] == str(int(now.timestamp()))
    assert Webhook(secret).verify(body, fresh)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, stale)
