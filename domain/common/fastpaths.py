"""PostgreSQL fast paths: the one vendor check, the one way of quoting names, and the row
INSERT every app shares.

Each app keeps its own set-based statements in its own `fastpaths.py` (domain/jobs,
domain/events), each beside the portable ORM version it replaces and tested equal to it. They
all decide with `on_postgresql()` and name tables with `table()`, both defined here.

`insert_rows` exists because Django's bulk_create sends one placeholder per value (12 columns
x 500 events plus 23 x 500 jobs) and prepares each value through its field; for a 500-event
batch publish that was 45% of the request's time (cProfile, bench/). Here each column travels
as one array that PostgreSQL unnests, and values are converted by a small table of field
types. Anything this cannot convert exactly goes through bulk_create instead: every other
database (SQLite, local only), a field type not in the table, and a field that computes its
value when saved (`pre_save`: auto_now, auto_now_add, file fields), which bulk_create calls
and a plain INSERT would skip. tests/domain/common/test_fastpaths.py holds the stored rows
equal to bulk_create's.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from django.db import connection, models


def on_postgresql() -> bool:
    """The vendor check every fast path makes (one place, so a test or a new backend has one
    switch to look at)."""
    return connection.vendor == "postgresql"


def table(model: type[models.Model]) -> str:
    """The model's table name, quoted for SQL: names come from the models, never from input."""
    return connection.ops.quote_name(model._meta.db_table)


def _as_is(value: Any) -> Any:
    return value


def _uuid(value: Any) -> str | None:
    return None if value is None else str(value)


def _json(value: Any) -> str | None:
    # A null=True JSONField stores Python None as SQL NULL, as Django does.
    return None if value is None else orjson.dumps(value).decode()


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "UUIDField": _uuid,
    "JSONField": _json,
    "CharField": _as_is,
    "TextField": _as_is,
    "DateTimeField": _as_is,
    "IntegerField": _as_is,
    "PositiveIntegerField": _as_is,
    "PositiveSmallIntegerField": _as_is,
    "SmallIntegerField": _as_is,
    "BigIntegerField": _as_is,
    "BigAutoField": _as_is,
    "AutoField": _as_is,
    "BooleanField": _as_is,
}
# pre_save implementations that return the attribute unchanged unless auto_now/auto_now_add
# is set (checked separately); any other override computes a value at save time.
_PLAIN_PRE_SAVE = {models.Field.pre_save, models.DateField.pre_save,
                   models.DateTimeField.pre_save, models.TimeField.pre_save}


def needs_pre_save(field: models.Field) -> bool:
    """True if saving the field computes its value (so a plain INSERT would store the wrong
    one, or none)."""
    if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        return True
    return type(field).pre_save not in _PLAIN_PRE_SAVE


def _converter(field: models.Field) -> Callable[[Any], Any] | None:
    if needs_pre_save(field):
        return None
    target = field.target_field if field.is_relation else field
    return _CONVERTERS.get(target.get_internal_type())


@dataclass(frozen=True)
class _InsertPlan:
    attnames: tuple[str, ...]
    converters: tuple[Callable[[Any], Any], ...]
    sql: str


@functools.cache
def _insert_plan(model: type[models.Model], numbered: bool = False) -> _InsertPlan | None:
    """The statement and the converters for a model, built once per process: building them
    (field types, quoted names) took 0.2 ms for the jobs table, on every publish. None: the
    model goes through bulk_create. `numbered`: the primary key is left out, for the
    database to number (an auto-incremented key)."""
    fields = [f for f in model._meta.concrete_fields if not (numbered and f.primary_key)]
    converters = tuple(_converter(f) for f in fields)
    if None in converters:
        return None
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    arrays = ", ".join(f"%s::{_array_type(f)}[]" for f in fields)
    return _InsertPlan(
        attnames=tuple(f.attname for f in fields), converters=converters,
        sql=f"INSERT INTO {table(model)} ({columns}) SELECT * FROM unnest({arrays})")  # noqa: S608 - names from the model's own fields


def _array_type(field: models.Field) -> str:
    """The type an array of the field's values is cast to: the column's, but a varchar
    without its length. An explicit cast to varchar(n) cuts a longer value to n characters
    without a word, where the INSERT's own cast into the column refuses it ("value too long"),
    as bulk_create's INSERT does."""
    return re.sub(r"^varchar\(\d+\)$", "varchar", field.db_type(connection))


def _values(plan: _InsertPlan, objs: Sequence[models.Model]) -> list[list[Any]]:
    return [[convert(getattr(obj, attname)) for obj in objs]
            for attname, convert in zip(plan.attnames, plan.converters, strict=True)]


def _mark_saved(objs: Sequence[models.Model]) -> None:
    for obj in objs:
        obj._state.adding = False
        obj._state.db = connection.alias


def insert_rows(model: type[models.Model], objs: Sequence[models.Model]) -> None:
    """INSERT every object. Primary keys and defaults must already be on the objects (true of
    models whose primary key has a Python default, such as uuid4)."""
    if not objs:
        return
    plan = _insert_plan(model) if on_postgresql() else None
    if plan is None:
        model.objects.bulk_create(objs)
        return
    with connection.cursor() as cursor:
        cursor.execute(plan.sql, _values(plan, objs))
    _mark_saved(objs)


def insert_numbered_sql(model: type[models.Model], objs: Sequence[models.Model],
                        ) -> tuple[str, list[list[Any]]] | None:
    """The INSERT of `objs` (unnest arrays) with the primary key left to the database (an
    auto-incremented one: the objects' pk stays None), and its parameters, for a caller that
    runs it inside a statement of its own (a data-modifying WITH). None where `insert_rows`
    would fall back to bulk_create."""
    plan = _insert_plan(model, numbered=True) if on_postgresql() else None
    if plan is None:
        return None
    return plan.sql, _values(plan, objs)


def insert_rows_together(groups: Sequence[tuple[type[models.Model], Sequence[models.Model]]],
                         ) -> bool:
    """INSERT the rows of several models in one statement, parents first (data-modifying CTEs;
    a foreign key is checked at the end of the statement, so a child may name a parent of the
    same statement). Outside a transaction that statement is its own transaction: one round
    trip where BEGIN, one INSERT per model and COMMIT were 3 + n. Returns False, having done
    nothing, where `insert_rows` would fall back to bulk_create (the caller then writes its
    rows the portable way)."""
    groups = [(model, objs) for model, objs in groups if objs]
    if not groups or not on_postgresql():
        return False
    plans = [_insert_plan(model) for model, _ in groups]
    if any(plan is None for plan in plans):
        return False
    parts = [plan.sql for plan in plans]
    sql = "".join(f"{'WITH' if i == 0 else ','} w{i} AS ({part}) "
                  for i, part in enumerate(parts[:-1])) + parts[-1]
    params = [values for plan, (_, objs) in zip(plans, groups, strict=True)
              for values in _values(plan, objs)]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
    for _, objs in groups:
        _mark_saved(objs)
    return True
