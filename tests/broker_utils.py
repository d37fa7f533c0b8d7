"""Point the Celery app at another broker URL for a while (e.g. a closed port = Redis down)."""

from contextlib import contextmanager

import kombu.pools

from config.celery import app


def _reset_pools() -> None:
    # The app and kombu cache connection and producer pools built from broker_url; drop them
    # so the next publish connects to the URL in force.
    kombu.pools.reset()
    app._pool = None
    app.amqp._producer_pool = None
    # The control mailbox too (a cached property): after a broadcast through one broker (the
    # queue health check's `inspect`) it kept answering pings through that broker, and a
    # worker on the new one was never seen ready.
    app.__dict__.pop("control", None)


@contextmanager
def broker_at(url: str):
    original = app.conf.broker_url
    app.conf.broker_url = url
    _reset_pools()
    try:
        yield
    finally:
        app.conf.broker_url = original
        _reset_pools()


UNREACHABLE_BROKER = "redis://127.0.0.1:1/0"
