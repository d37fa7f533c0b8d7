from django.core.management.base import BaseCommand

from domain.jobs.outbox import outbox_relay
from domain.jobs.rescue import jobs_rescue_orphans


class Command(BaseCommand):
    help = "Send now what the outbox relay would send on its next tick (and rescue orphans)."

    def add_arguments(self, parser):
        parser.add_argument("--rescue-orphans", action="store_true",
                            help="Also run again the jobs whose worker vanished (their lease "
                            "lapsed more than ORPHAN_GRACE_SECONDS ago).")

    def handle(self, *args, rescue_orphans: bool, **options):
        if rescue_orphans:
            rescued = jobs_rescue_orphans(judge_now=True)
            self.stdout.write(f"orphans: requeued={rescued['requeued']} dead={rescued['dead']}")
        self.stdout.write(f"relay: sent={outbox_relay()}")
