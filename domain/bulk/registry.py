"""Bulk operations, registered in code by the app whose rows they change.

The API can start only what is registered here: each operation declares its arguments' JSON
schema, the rows it holds while it runs (its target: two runs on one target never
interleave), and the domain event it publishes when it is done. There are no arbitrary field
writes: what a chunk does is the operation's code.

Two shapes:

- `SetBasedOperation`: the rows are a queryset (`scope`), visited in keyset chunks by primary
  key; each chunk is one set-based UPDATE of the rows in its key range (`apply`).
- `CsvOperation`: per-row values arrive as CSV, are streamed into a per-run input table (COPY
  on PostgreSQL) and validated before the run may start; each chunk is one
  `UPDATE … FROM` that input table over a range of its line numbers (`apply_lines`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jsonschema import Draft202012Validator

from domain.common.errors import ValidationFailed
from domain.common.schemas import compile_schema, schema_errors

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from domain.bulk.models import BulkRun


@dataclass(frozen=True)
class CsvColumn:
    name: str
    description: str


@dataclass(frozen=True)
class BadRow:
    """A CSV row the run refused: its line number in the file (the header is line 1)."""

    line: int
    error: str
    column: str = ""
    value: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "column": self.column or None, "value": self.value,
                "error": self.error}


@dataclass(frozen=True, kw_only=True)
class BulkOperation:
    name: str
    description: str
    args_schema: dict
    # The domain event published (in the same transaction as `succeeded`) when a real run
    # ends; its handlers drop what the run made stale.
    event_type: str
    example_args: dict = field(default_factory=dict)
    validator: Draft202012Validator = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "validator", compile_schema(self.args_schema))
        if errors := schema_errors(self.validator, self.example_args):
            raise ValueError(f"bulk operation {self.name!r}: example args fail: {errors}")

    # --- declared by each operation ----------------------------------------------------------
    def validate_args(self, args: Any) -> None:
        errors = schema_errors(self.validator, args)
        if errors:
            raise ValidationFailed(
                f"args do not match the schema of bulk operation {self.name!r}.",
                code="invalid_args", details={"args": errors})

    def plan(self, args: dict) -> dict:
        """The args resolved once, when the run is made (a cutoff instant, a factor): every
        chunk, and every resume after a crash, uses the same plan. JSON only."""
        return dict(args)

    def target(self, plan: dict) -> str:
        """The rows a run holds while it is queued, running or paused."""
        raise NotImplementedError

    def finished(self, run: BulkRun) -> dict:
        """A real run has changed its last chunk: drop what it made stale that readers would
        otherwise see (before the run says `succeeded`), and answer the event's payload."""
        raise NotImplementedError

    @property
    def accepts_csv(self) -> bool:
        return False


@dataclass(frozen=True, kw_only=True)
class SetBasedOperation(BulkOperation):
    def scope(self, plan: dict) -> QuerySet:
        """Every row the run visits (it is visited once, in primary-key order)."""
        raise NotImplementedError

    def apply(self, window: QuerySet, plan: dict) -> int:
        """Write the rows of one chunk's key range (`window`, a subset of `scope`) in one
        set-based statement; answer how many rows changed."""
        raise NotImplementedError

    def would_change(self, window: QuerySet, plan: dict) -> int:
        """A dry run's chunk: how many of these rows `apply` would change."""
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class CsvOperation(BulkOperation):
    columns: tuple[CsvColumn, ...]

    @property
    def accepts_csv(self) -> bool:
        return True

    @property
    def header(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def check_rows(self, table: str, limit: int) -> tuple[int, list[BadRow]]:
        """After the rows are in `table` (columns `line` and one text column per CSV column):
        how many rows are invalid, and the first `limit` of them by line."""
        raise NotImplementedError

    def check_row(self, values: dict[str, str]) -> tuple[str, str] | None:
        """The portable path's per-row check (column, error), or None when the row is valid;
        the PostgreSQL path checks the same rules in one statement (`check_rows`)."""
        raise NotImplementedError

    def apply_lines(self, table: str, first: int, last: int, plan: dict, *,
                    dry_run: bool) -> int:
        """Write the rows of input lines `first`..`last` (inclusive, by position in the file)
        in one statement; answer how many rows changed (would change, for a dry run)."""
        raise NotImplementedError


_operations: dict[str, BulkOperation] = {}


def register_bulk_operation(operation: BulkOperation) -> BulkOperation:
    if operation.name in _operations and _operations[operation.name] is not operation:
        raise ValueError(f"bulk operation {operation.name!r} is already registered")
    _operations[operation.name] = operation
    return operation


def bulk_operations() -> list[BulkOperation]:
    return sorted(_operations.values(), key=lambda o: o.name)


def get_bulk_operation(name: str) -> BulkOperation:
    operation = _operations.get(name)
    if operation is None:
        raise ValidationFailed(
            f"Unknown bulk operation {name!r}.", code="unknown_operation",
            details={"operation": name, "known": [o.name for o in bulk_operations()]})
    return operation
