from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from domain.access.audit import actor_for_command, audit_record
from domain.access.models import ApiKey, AuditAction
from domain.access.services import api_key_revoke


class Command(BaseCommand):
    help = "Revoke an API key by id, name or prefix; requests with it get 401 from then on."

    def add_arguments(self, parser):
        parser.add_argument("key", help="The key's id, its name, or its prefix (cvk_...)")

    def handle(self, *args, key: str, **options):
        matches = list(ApiKey.objects.filter(name=key)) or list(ApiKey.objects.filter(prefix=key))
        if not matches:
            try:
                matches = list(ApiKey.objects.filter(pk=key))
            except ValidationError:  # not a UUID: simply no match
                matches = []
        if len(matches) != 1:
            raise CommandError(f"{len(matches)} keys match {key!r}; give the id.")
        api_key = matches[0]
        api_key_revoke(api_key=api_key)
        audit_record(actor=actor_for_command("revoke_api_key"), action=AuditAction.REVOKE,
                     target_type="api_key", target=api_key.pk,
                     detail={"name": api_key.name, "prefix": api_key.prefix})
        self.stdout.write(f"Revoked {api_key}")
