from django.core.management.base import BaseCommand

from domain.catalog.services import DEMO_CATALOG, demo_catalog_load


class Command(BaseCommand):
    help = "Create the demo products that are missing (idempotent)."

    def handle(self, *args, **options):
        created = demo_catalog_load()
        self.stdout.write(f"demo catalog: {created} created, {len(DEMO_CATALOG)} total")
