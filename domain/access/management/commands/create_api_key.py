from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_datetime

from domain.access.services import api_key_create
from domain.common.errors import ValidationFailed


class Command(BaseCommand):
    help = "Create an API key and print it once (only its hash is stored)."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--scopes", required=True,
                            help="Comma-separated, e.g. events:publish,jobs:read,jobs:write")
        parser.add_argument("--expires-at", help="ISO 8601 date-time after which the key fails")

    def handle(self, *args, name: str, scopes: str, expires_at: str | None, **options):
        expires = None
        if expires_at:
            try:
                expires = parse_datetime(expires_at)
            except ValueError:  # well-formed but impossible, e.g. month 13
                expires = None
            if expires is None:
                raise CommandError(f"--expires-at is not an ISO 8601 date-time: {expires_at!r}")
        try:
            key, raw_key = api_key_create(name=name, scopes=scopes, expires_at=expires)
        except ValidationFailed as exc:
            raise CommandError(f"{exc.message} {exc.details}") from exc
        self.stderr.write(f"Created API key {key.name!r} id={key.id} scopes={','.join(key.scopes)}")
        self.stderr.write("Store it now: it is not shown again.")
        self.stdout.write(raw_key)
