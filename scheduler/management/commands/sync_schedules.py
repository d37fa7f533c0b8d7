from django.core.management.base import BaseCommand

from scheduler.sync import schedules_sync


class Command(BaseCommand):
    help = "Copy the periodic jobs declared in scheduler/schedules.py into django-celery-beat."

    def add_arguments(self, parser):
        parser.add_argument("--reset", action="store_true",
                            help="Also overwrite operators' edits to schedule and enabled flag.")

    def handle(self, *args, reset: bool, **options):
        report = schedules_sync(reset=reset)
        self.stdout.write(
            f"schedules: created={len(report.created)} updated={len(report.updated)} "
            f"kept={len(report.kept)} disabled_stale={len(report.disabled_stale)}"
        )
