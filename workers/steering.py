"""Durable queue pause in the worker: stop consuming a paused queue, start again on resume, and
keep it so across restarts, because the pause is a database row (domain/jobs/models.QueuePause)
and not only Celery's `cancel_consumer`, which a restarted worker has forgotten.

Three ways a worker learns of a pause, from the fastest:

1. The broadcast: `queue_pause` / `queue_resume` (domain/jobs/services.py) tell the listener
   installed by workers/apps.py after their commit, which broadcasts the remote-control
   command `conveyor_steer_queue` (below); every connected worker cancels or re-adds its
   consumer at once.
2. The rows: `QueueSteering`, a consumer bootstep, reads them when the worker starts (before
   its first message) and then every WORKER_HEARTBEAT_SECONDS, so a worker that was down, or
   reconnecting, when the broadcast went out catches up within seconds.
3. The claim (workers/base.py): a job message of a paused queue that still reaches a worker
   (prefetched before the pause, or on a worker that has not caught up) is given back to the
   broker unclaimed, after a short jittered pause, so no attempt is used.

The worker only ever touches the queues it was started with (`-Q`): resuming a queue never
makes a worker consume a queue of another profile. And it only re-adds a queue it cancelled
itself for a pause: a consumer an operator cancelled by hand (Flower, `celery control
cancel_consumer`) stays cancelled.

The same bootstep writes the worker's presence (workers/presence.py) from the event loop.
Pause rows are read on a thread of their own, so a database that hangs never stalls the
consumer's loop; the loop applies the latest answer each second.
"""

from __future__ import annotations

import logging
import os
import threading
import time

import redis
from celery import bootsteps, current_app
from celery.worker.consumer.tasks import Tasks
from celery.worker.control import control_command, ok
from django.conf import settings
from django.db import close_old_connections, connection

from domain.jobs.outbox import BROKER_ERRORS
from domain.jobs.selectors import queue_pauses
from workers import presence

logger = logging.getLogger(__name__)

STEER_COMMAND = "conveyor_steer_queue"
# Seconds between two looks of the event loop at the latest pause rows read.
APPLY_SECONDS = 1.0


class QueueSteering(bootsteps.StartStopStep):
    """Consumer bootstep (installed on the Celery app by config/celery.py)."""

    requires = (Tasks,)
    label = "Conveyor queue steering"

    def __init__(self, c, **kwargs):
        super().__init__(c, **kwargs)
        self.configured: frozenset[str] | None = None  # the -Q queues, fixed at first start
        self._wanted: frozenset[str] = frozenset()  # the paused queues, as last known
        self._held: set[str] = set()  # queues this step stopped consuming for a pause
        self._generation = 0  # bumped by each broadcast: a slower read is older news
        self._lock = threading.Lock()
        self._tref = None
        self._next_beat = 0.0
        self._reader: threading.Thread | None = None
        self._stopped = threading.Event()
        self._failing: dict[str, bool] = {}
        c.conveyor_steering = self

    # --- bootstep --------------------------------------------------------------------------

    def start(self, c) -> None:
        if self.configured is None:
            self.configured = frozenset(self._consuming(c))
            # Before the first message: a worker (re)started while a queue is paused never
            # takes a message of it. Read here, once, in the consumer's thread; then the
            # connection is closed so no forked pool process inherits it.
            self.read()
            connection.close()
            self._reader = threading.Thread(target=self._read_forever,
                                            name="conveyor-pause-reader", daemon=True)
            self._reader.start()
        self.apply(c)
        self._beat(c)
        self._tref = c.timer.call_repeatedly(APPLY_SECONDS, self._tick, (c,), priority=10)

    def stop(self, c) -> None:
        if self._tref is not None:
            self._tref.cancel()
            self._tref = None

    def shutdown(self, c) -> None:
        self.stop(c)
        self._stopped.set()
        try:
            presence.forget(c.hostname)
        except redis.exceptions.RedisError as exc:
            logger.warning("presence not removed at shutdown worker=%s error=%r", c.hostname, exc)

    # --- what the pause rows say -----------------------------------------------------------

    def read(self) -> None:
        """Read the paused queues from the database (any thread)."""
        with self._lock:
            generation = self._generation
        close_old_connections()  # CONN_MAX_AGE and health checks, as around a task
        try:
            paused = frozenset(queue_pauses())
        except Exception as exc:  # noqa: BLE001 - the database away: keep the last answer
            self._failed("pause rows", exc)
            return
        finally:
            close_old_connections()
        self._recovered("pause rows")
        with self._lock:
            if self._generation == generation:  # no broadcast came in meanwhile
                self._wanted = paused

    def _read_forever(self) -> None:
        while not self._stopped.wait(settings.WORKER_HEARTBEAT_SECONDS):
            self.read()

    def told(self, c, queue: str, paused: bool) -> None:
        """The broadcast (consumer thread): apply at once, and say so in the presence."""
        with self._lock:
            self._generation += 1
            self._wanted = (self._wanted | {queue}) if paused else (self._wanted - {queue})
        self.apply(c)
        self._beat(c)

    # --- the event loop's part -------------------------------------------------------------

    def apply(self, c) -> None:
        """Cancel the consumers of paused queues; re-add those this step cancelled once their
        queue is resumed. Only queues the worker was started with."""
        if c.task_consumer is None or self.configured is None:
            return
        wanted = self._wanted
        consuming = self._consuming(c)
        for queue in sorted(wanted & consuming & self.configured):
            c.cancel_task_queue(queue)
            self._held.add(queue)
            logger.info("queue paused: no longer consuming queue=%s", queue)
        for queue in sorted(self._held - wanted):
            if queue not in consuming:
                c.add_task_queue(queue)
            self._held.discard(queue)
            logger.info("queue resumed: consuming again queue=%s", queue)

    def _tick(self, c) -> None:
        try:
            self.apply(c)
        except Exception:  # the loop must go on; the next tick tries again
            logger.exception("queue steering failed")
        if time.monotonic() >= self._next_beat:
            self._beat(c)

    def _beat(self, c) -> None:
        self._next_beat = time.monotonic() + settings.WORKER_HEARTBEAT_SECONDS
        try:
            presence.heartbeat(hostname=c.hostname, pid=os.getpid(),
                               queues=self._consuming(c), configured=self.configured or ())
        except redis.exceptions.RedisError as exc:
            self._failed("presence", exc)
            return
        self._recovered("presence")

    @staticmethod
    def _consuming(c) -> set[str]:
        consumer = c.task_consumer
        return {queue.name for queue in consumer.queues} if consumer is not None else set()

    def _failed(self, what: str, exc: Exception) -> None:
        # Once per outage, not every few seconds.
        if not self._failing.get(what):
            logger.warning("queue steering: %s unavailable error=%r", what, exc)
        self._failing[what] = True

    def _recovered(self, what: str) -> None:
        if self._failing.pop(what, False):
            logger.info("queue steering: %s available again", what)


@control_command(args=[("queue", str), ("paused", bool)], signature="<queue> <paused>")
def conveyor_steer_queue(state, queue, paused, **_):
    """Stop (paused) or start again (not paused) consuming a queue, if this worker was started
    with it (Conveyor's durable pause; workers/steering.py)."""
    steering = getattr(state.consumer, "conveyor_steering", None)
    if steering is None:
        return ok("no queue steering in this worker")
    state.consumer.call_soon(steering.told, state.consumer, str(queue), bool(paused))
    return ok(f"{'pausing' if paused else 'resuming'} {queue}")


def broadcast_queue_change(queue: str, paused: bool) -> None:
    """The listener installed into domain/jobs/routing (workers/apps.py): tell every worker
    now. A broker that does not answer within one connection attempt is logged and left: the
    workers read the rows within WORKER_HEARTBEAT_SECONDS anyway."""
    app = current_app
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1)
            app.control.broadcast(STEER_COMMAND, arguments={"queue": queue, "paused": paused},
                                  connection=conn)
    except (*BROKER_ERRORS, redis.exceptions.RedisError) as exc:
        logger.warning("queue %s not broadcast, workers will read it queue=%s error=%r",
                       "pause" if paused else "resume", queue, exc)
