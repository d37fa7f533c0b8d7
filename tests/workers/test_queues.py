"""The declared queues say what really happens: tasks go through the default (nameless)
exchange straight to the Redis list named by the routing key, with no binding keys to lose."""

import uuid

import pytest

from config.celery import app
from tests.conftest import PrivateKeys, broker_key
from workers.queues import Queues, queue_for_task

TASK_QUEUES = {q.value for q in Queues}
# One name per routed family (not every family has a registered task yet), and Celery's own
# tasks, which have no route and go to the default queue.
PROBES = {f"{prefix}probe" for prefix in ("conveyor.events.", "conveyor.demo.",
                                         "conveyor.notifications.", "conveyor.bulk.",
                                         "conveyor.cache.", "conveyor.maintenance.")}
CELERY_TASKS = {"celery.backend_cleanup": Queues.MAINTENANCE.value,
                "celery.chord_unlock": Queues.MAINTENANCE.value}


@pytest.fixture
def keys(private_broker: PrivateKeys) -> PrivateKeys:
    return private_broker


@pytest.fixture(scope="module")
def task_destinations() -> dict[str, str]:
    """Every task name the project sends, with the queue it must land on."""
    app.loader.import_default_modules()
    names = {name for name in app.tasks if name.startswith("conveyor.")} | PROBES
    return {name: queue_for_task(name) for name in names} | CELERY_TASKS


def send(name: str) -> str:
    """Publish as domain/jobs/outbox.py does: by name, over the app's producer pool."""
    task_id = str(uuid.uuid4())
    with app.producer_or_acquire() as producer:
        app.send_task(name, args=[task_id], task_id=task_id, producer=producer)
    return task_id


def test_declared_queues_name_the_exchange_tasks_really_go_through(keys):
    # given the queues as the configured Celery app holds them (what the worker banner prints)
    declared = app.amqp.queues
    assert set(declared) == TASK_QUEUES

    for queue in TASK_QUEUES:
        # when a task is sent to the queue
        task_id = send(f"conveyor.{queue}.probe")

        # then the declaration names the default (nameless, direct) exchange with the queue's
        # name as key, and the broker recorded that same exchange on the message
        exchange = declared[queue].exchange
        assert (exchange.name, exchange.type, declared[queue].routing_key) == ("", "direct", queue)
        [message] = keys.messages(queue)
        assert message["headers"]["id"] == task_id
        assert message["properties"]["delivery_info"] == {
            "exchange": exchange.name, "routing_key": queue}
    # and declaring the queues (each publish does, once per connection) bound none of them
    assert not keys.bound_queues() & TASK_QUEUES


def test_every_task_sent_by_name_lands_in_the_list_of_its_queue(keys, task_destinations):
    # given every conveyor task name, one per routed family, and Celery's own tasks
    assert set(task_destinations.values()) == TASK_QUEUES

    # when each is sent by name
    sent = {name: send(name) for name in task_destinations}

    # then each message waits in the Redis list of its queue, and only there
    for queue in TASK_QUEUES:
        expected = {sent[name] for name, dest in task_destinations.items() if dest == queue}
        assert {m["headers"]["id"] for m in keys.messages(queue)} == expected, queue


def test_a_publish_lands_in_its_queue_after_the_broker_lost_its_binding_keys(keys, broker):
    # given a publisher that has sent once (kombu now takes the queue as declared on this
    # connection and will not declare it again)
    send("conveyor.bulk.probe")

    # when the broker Redis loses every key of this test, binding keys included, as one that
    # restarted empty would
    lost = list(broker.scan_iter(broker_key(keys.sub + "*"), count=1000))
    broker.delete(*lost)
    # and the same publisher sends again
    task_id = send("conveyor.bulk.probe")

    # then the message lands in the queue, with no binding behind it
    assert [m["headers"]["id"] for m in keys.messages(Queues.BULK.value)] == [task_id]
    assert not keys.bound_queues() & TASK_QUEUES
