"""The customers' bulk operation: deactivate those inactive for N days (the scheduler runs
it nightly). An inactive customer is sent no notifications."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Q, QuerySet
from django.db.models.functions import Now
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from domain.bulk.models import BulkRun
from domain.bulk.registry import SetBasedOperation, register_bulk_operation
from domain.customers.models import Customer

DEACTIVATED = "customers.deactivated"


class DeactivateInactive(SetBasedOperation):
    def plan(self, args: dict) -> dict:
        # The cutoff is fixed when the run is made: every chunk, and a resume days later,
        # uses the same one.
        cutoff = timezone.now() - timedelta(days=args["days"])
        return {"days": args["days"], "cutoff": cutoff.isoformat()}

    def target(self, plan: dict) -> str:
        return "customers.customer"

    def scope(self, plan: dict) -> QuerySet:
        cutoff = parse_datetime(plan["cutoff"])
        # Never active: their sign-up is their last activity.
        return Customer.objects.filter(is_active=True).filter(
            Q(last_active_at__lt=cutoff) | Q(last_active_at__isnull=True, created_at__lt=cutoff))

    def apply(self, window: QuerySet, plan: dict) -> int:
        # The scope is read again inside the chunk: a customer active since the run began
        # (after the cutoff) is no longer in it and keeps their account active.
        return window.update(is_active=False, updated_at=Now())

    def would_change(self, window: QuerySet, plan: dict) -> int:
        return window.count()

    def finished(self, run: BulkRun) -> dict:
        return {"run_id": str(run.pk), "cutoff": run.plan["cutoff"], "days": run.plan["days"],
                "rows_changed": run.rows_changed}


DEACTIVATE_INACTIVE = register_bulk_operation(DeactivateInactive(
    name="customers.deactivate_inactive",
    description="Mark customers inactive whose last activity (or, if they never had any, "
    "their sign-up) is older than `days` days.",
    args_schema={
        "type": "object",
        "properties": {"days": {"type": "integer", "minimum": 1, "maximum": 36_500}},
        "required": ["days"],
        "additionalProperties": False,
    },
    event_type=DEACTIVATED,
    example_args={"days": 365},
))
