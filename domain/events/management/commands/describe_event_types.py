from django.core.management.base import BaseCommand

from domain.events.docs import event_types_markdown


class Command(BaseCommand):
    help = ("Print every registered event type's payload (fields, rules, an example) as the "
            "Markdown the README's \"Event types\" section holds.")

    def handle(self, *args, **options):
        self.stdout.write(event_types_markdown(), ending="")
