"""Operators' view of the queues from a shell: list them, pause one, resume one.

    manage.py queues                            every queue: paused, depth, waiting jobs, consumers
    manage.py queues pause NAME [--reason R]    its workers stop consuming it (durable)
    manage.py queues resume NAME

Pause and resume are recorded in the audit log as the OS user who ran the command.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from domain.access.audit import actor_for_command
from domain.common.errors import ApplicationError
from domain.jobs import services
from workers import selectors


def _state(state: selectors.QueueState) -> str:
    if state.paused:
        head = f"PAUSED since {state.paused_at:%Y-%m-%d %H:%M:%S} by {state.paused_by}"
        if state.reason:
            head += f" ({state.reason})"
    else:
        head = "running"
    depth = "unknown (broker down)" if state.depth is None else str(state.depth)
    waiting = f"{state.waiting} job(s) waiting"
    if state.oldest_age_seconds is not None:
        waiting += f", the oldest for {state.oldest_age_seconds:.1f} s"
    if state.consumers is None:
        consumers = "consumers unknown (Redis down)"
    elif state.consumers:
        consumers = f"consumed by {', '.join(state.consumers)}"
    else:
        consumers = "no consumer"
    return f"{state.name}: {head}; depth {depth}; {waiting}; {consumers}"


class Command(BaseCommand):
    help = "List the queues (paused, depth, waiting jobs, consumers); pause or resume one."

    def add_arguments(self, parser):
        parser.add_argument("action", nargs="?", default="list",
                            choices=["list", "pause", "resume"])
        parser.add_argument("name", nargs="?")
        parser.add_argument("--reason", default="", help="why (pause): shown with the queue")

    def handle(self, *args, action: str, name: str | None, reason: str, **options):
        if action != "list" and not name:
            raise CommandError(f"`queues {action}` needs a queue name")
        if reason and action != "pause":
            raise CommandError("--reason goes with `queues pause`")
        try:
            if action == "list":
                for state in selectors.queue_list():
                    self.stdout.write(_state(state))
                return
            actor = actor_for_command(f"queues {action}")
            if action == "pause":
                services.queue_pause(queue=name, actor=actor, reason=reason)
            else:
                services.queue_resume(queue=name, actor=actor)
            self.stdout.write(_state(selectors.queue_get(name)))
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
