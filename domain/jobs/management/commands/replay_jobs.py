from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_datetime

from domain.access.audit import actor_for_command, audit_filter
from domain.access.models import AuditAction
from domain.common.errors import ValidationFailed
from domain.jobs.models import JobStatus
from domain.jobs.selectors import jobs_matching_replay
from domain.jobs.services import jobs_replay


def _when(value: str | None, flag: str):
    if value is None:
        return None
    try:
        parsed = parse_datetime(value)
    except ValueError:
        parsed = None
    if parsed is None:
        raise CommandError(f"{flag} is not an ISO 8601 date-time: {value!r}")
    return parsed


class Command(BaseCommand):
    help = "Replay dead (or cancelled) jobs matching a filter, with fresh attempts."

    def add_arguments(self, parser):
        parser.add_argument("--status", default=JobStatus.DEAD,
                            choices=[JobStatus.DEAD, JobStatus.CANCELLED])
        parser.add_argument("--kind")
        parser.add_argument("--event-type")
        parser.add_argument("--error-type", help="the class name of the last error, as in a "
                            "job's error.type (e.g. ConnectionError)")
        parser.add_argument("--since", help="finished at or after (ISO 8601)")
        parser.add_argument("--until", help="finished before (ISO 8601)")
        parser.add_argument("--limit", type=int, default=10_000)
        parser.add_argument("--dry-run", action="store_true", help="count, replay nothing")

    def handle(self, *args, status, kind, event_type, error_type, since, until, limit, dry_run,
               **options):
        filters = {"status": status, "kind": kind, "event_type": event_type,
                   "error_type": error_type,
                   "since": _when(since, "--since"), "until": _when(until, "--until")}
        if dry_run:
            jobs = jobs_matching_replay(api_key=None, **filters)
            self.stdout.write(f"would replay {min(jobs.count(), limit)} job(s)")
            return
        try:
            count = jobs_replay(api_key=None, limit=limit, **filters)
        except ValidationFailed as exc:
            raise CommandError(exc.message) from exc
        audit_filter(actor=actor_for_command("replay_jobs"), action=AuditAction.REPLAY,
                     target_type="jobs", filters={**filters, "limit": limit}, count=count)
        self.stdout.write(f"replayed {count} job(s)")
