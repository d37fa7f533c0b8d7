"""Operators' view of the schedules from a shell: list, last runs, pause, resume, run now.

    manage.py schedules                      every schedule: enabled, expression, last and next run
    manage.py schedules runs NAME [--limit N] [--outcome O]
    manage.py schedules pause NAME | resume NAME | run NAME
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from domain.access.audit import actor_for_command, audit_record
from domain.access.models import AuditAction
from domain.common.errors import ApplicationError
from scheduler import selectors, services
from scheduler.models import RunOutcome


def _when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _outcome(run) -> str:
    if run is None:
        return "never ran"
    label = f"{run.outcome}: {run.reason}" if run.reason else str(run.outcome)
    took = f" in {run.duration_ms} ms" if run.duration_ms is not None else ""
    return f"{_when(run.slot)} {label}{took}"


class Command(BaseCommand):
    help = "List schedules and their last runs; pause, resume or run one now."

    def add_arguments(self, parser):
        parser.add_argument("action", nargs="?", default="list",
                            choices=["list", "runs", "pause", "resume", "run"])
        parser.add_argument("name", nargs="?")
        parser.add_argument("--limit", type=int, default=20)
        parser.add_argument("--outcome", choices=list(RunOutcome.values))

    def handle(self, *args, action: str, name: str | None, limit: int,
               outcome: str | None, **options):
        if action != "list" and not name:
            raise CommandError(f"`schedules {action}` needs a schedule name")
        try:
            getattr(self, f"_{action}")(name, limit=limit, outcome=outcome)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        except services.BrokerUnavailable as exc:
            raise CommandError(f"the broker is unavailable, nothing was sent: {exc}") from exc

    def _list(self, name, **_):
        for state in selectors.schedule_list():
            flag = "enabled" if state.enabled else "PAUSED"
            edited = " (edited in the admin)" if state.edited else ""
            zone = f" {state.timezone}" if state.kind == "cron" else ""
            self.stdout.write(
                f"{state.name}: {flag}, {state.expression}{zone}{edited}; "
                f"last {_outcome(state.last_run)}; next {_when(state.next_run)}")

    def _runs(self, name, *, limit, outcome):
        for run in selectors.schedule_runs(name, outcome=outcome).order_by("-slot")[:limit]:
            error = f" — {run.error.splitlines()[0]}" if run.error else ""
            self.stdout.write(f"{_outcome(run)} [{run.trigger}] {run.worker}{error}")

    def _pause(self, name, **_):
        services.schedule_pause(name=name)
        _audit(AuditAction.PAUSE, name)
        self.stdout.write(f"{name}: paused")

    def _resume(self, name, **_):
        state = services.schedule_resume(name=name)
        _audit(AuditAction.RESUME, name)
        self.stdout.write(f"{name}: enabled; next {_when(state.next_run)}")

    def _run(self, name, **_):
        sent = services.schedule_run_now(name=name)
        _audit(AuditAction.RUN, name, slot=sent.slot.isoformat(), task_id=sent.task_id)
        self.stdout.write(f"{name}: sent, slot {_when(sent.slot)} (task {sent.task_id})")


def _audit(action: str, name: str, **detail) -> None:
    audit_record(actor=actor_for_command(f"schedules {action}"), action=action,
                 target_type="schedule", target=name, detail=detail)
