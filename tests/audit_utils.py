"""Reading the audit log in tests: an operator action writes exactly one entry."""

from __future__ import annotations

from domain.access.models import AuditEntry


def the_audit_entry() -> AuditEntry:
    """The one entry the log holds (fails, listing them, if there are none or several)."""
    entries = list(AuditEntry.objects.all())
    assert len(entries) == 1, [str(e) for e in entries]
    return entries[0]


def summary(entry: AuditEntry) -> tuple:
    """(actor kind, action, target type, target, count): what every test checks."""
    return entry.actor_kind, entry.action, entry.target_type, entry.target, entry.count


def key_actor(client) -> str:
    """How an entry names the API key of a test client (`make_client`)."""
    return f"{client.api_key.name} ({client.api_key.prefix}…)"
