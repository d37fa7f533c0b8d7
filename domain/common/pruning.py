"""Deleting the old rows of one table in batches, by ranges of its primary key.

Every name in the SQL below comes from the models (quoted), every value is a parameter.

A table of ten million rows is pruned without loading a row into Python and without a long
lock: the walk goes along the primary key's index, `batch_size` keys at a time, and each batch
is one short transaction over one key range `(lo, hi]`:

1. `hi` is found on the index alone: `SELECT pk … WHERE pk > lo ORDER BY pk LIMIT 1 OFFSET
   batch_size - 1` (no row but a key comes back; none at all means the rest is the last batch).
2. `DELETE FROM t WHERE pk > lo AND pk <= hi AND <predicate>`: an index range scan of at most
   `batch_size` rows, each judged by the caller's predicate (an ORM condition compiled to SQL).
3. In the same transaction, the rows of other tables that pointed at the deleted ones: those
   declared as children are deleted (and their own children first), foreign keys declared
   `SET_NULL` are set to NULL, as Django's `on_delete` would have done. They are found as the
   range's orphans: `child.fk > lo AND child.fk <= hi AND NOT EXISTS (the parent)`, an index
   range scan of the child's foreign-key index.

The parent's DELETE runs before its children's, so the predicate is judged once, by the
statement that deletes, under its row locks: with the children deleted first, a row whose
predicate stopped holding between the two statements (a dead job replayed meanwhile) would keep
its row and lose its children. Django creates every foreign key `DEFERRABLE INITIALLY DEFERRED`
on PostgreSQL and SQLite, so the constraint is checked at the batch's commit, when parent and
children are gone together (tests/domain/common/test_pruning.py checks the constraints are so).

A foreign key into the pruned table that is neither a declared child nor `SET_NULL` must be
named in `keep_if_referenced`: a row still referenced through it is kept (`NOT EXISTS` is added
to the predicate). Anything else is refused before the first batch (ImproperlyConfigured), so a
foreign key added later can never make the pruner delete rows it was not told about, nor fail
in the middle of a run.

**Stopping and resuming.** Before each batch the `deadline` (a `clock()` reading) is checked:
past it, the run stops between two batches and says `complete=False`. After every committed
batch the last key done is written to Redis (`<prefix>prune:<name>`); the next run starts after
it, walks to the end of the key space, wraps around to the first key and stops where it began,
so a table too large for one run is still covered in full over several, never just its first
keys. Re-running is always safe: rows deleted are gone and the predicate is judged again; a
lost checkpoint (Redis flushed or down) only means the walk starts at the first key.

Keys are compared in the database's own representation: a key read back from the walk goes
straight into the next statement, never through Python's types. SQLite stores a UUIDField as
32 hex digits without dashes (char(32)); their text order is the UUIDs' order, so the same
ranges hold there. A checkpoint is stored as text (or an integer) and compared by the database
in the column's type.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import redis
from django.conf import settings
from django.core.exceptions import EmptyResultSet, FullResultSet, ImproperlyConfigured
from django.db import OperationalError, connection, models, transaction
from django.db.models import Exists, OuterRef, Q

from domain.common.redis import redis_client, redis_key

logger = logging.getLogger(__name__)

CHECKPOINT_TTL_SECONDS = 30 * 86_400
# A batch waits at most this long for a row another transaction holds (PostgreSQL); then the
# run stops, its checkpoint at the last committed batch, and the next run tries that range.
LOCK_TIMEOUT = "5s"
LOCK_NOT_AVAILABLE = "55P03"


@dataclass(frozen=True)
class Child:
    """Rows of `model` whose foreign key `field` points at the pruned rows (on_delete CASCADE):
    they go with them, in the same batch; `children` are their own such rows, which go first."""

    model: type[models.Model]
    field: str
    children: tuple[Child, ...] = ()

    @property
    def fk(self) -> models.ForeignKey:
        return self.model._meta.get_field(self.field)


@dataclass
class PruneReport:
    table: str
    deleted: dict[str, int] = field(default_factory=dict)  # table -> rows deleted
    nulled: dict[str, int] = field(default_factory=dict)  # "table.column" -> rows set to NULL
    also: dict[str, int] = field(default_factory=dict)  # other work on the way, counted
    batches: int = 0
    seconds: float = 0.0
    complete: bool = False  # the whole key space was walked in this run

    @property
    def rows(self) -> int:
        return sum(self.deleted.values())

    def add(self, other: PruneReport) -> PruneReport:
        """Fold another table's report into this one (a family that prunes several)."""
        for mine, theirs in ((self.deleted, other.deleted), (self.nulled, other.nulled),
                             (self.also, other.also)):
            for key, count in theirs.items():
                mine[key] = mine.get(key, 0) + count
        self.batches += other.batches
        self.seconds += other.seconds
        self.complete = self.complete and other.complete
        return self

    def as_dict(self) -> dict:
        return {**asdict(self), "seconds": round(self.seconds, 3)}


# --- The statements of one batch ------------------------------------------------------------

def _q(name: str) -> str:
    return connection.ops.quote_name(name)


def _col(model: type[models.Model], column: str) -> str:
    return f"{_q(model._meta.db_table)}.{_q(column)}"


@dataclass(frozen=True)
class _Range:
    """A batch's key range, `(lo, hi]`; None leaves that side open."""

    lo: Any
    hi: Any

    def on(self, column: str) -> tuple[str, list]:
        parts, params = [], []
        if self.lo is not None:
            parts.append(f"{column} > %s")
            params.append(self.lo)
        if self.hi is not None:
            parts.append(f"{column} <= %s")
            params.append(self.hi)
        return " AND ".join(parts) or "1 = 1", params


def _reverse_foreign_keys(model: type[models.Model]) -> list[models.ForeignKey]:
    """Every foreign key (or one-to-one) of any installed model that points at `model`; read
    from the app registry, so this module imports no app."""
    return [rel.field for rel in model._meta.get_fields(include_hidden=True)
            if rel.auto_created and not rel.concrete and (rel.one_to_many or rel.one_to_one)]


def _same(a: models.Field, b: models.Field) -> bool:
    return a.model._meta.label == b.model._meta.label and a.name == b.name


def _check_target(fk: models.ForeignKey, model: type[models.Model]) -> None:
    if fk.target_field != model._meta.pk or fk.model is model:
        raise ImproperlyConfigured(
            f"pruning {model._meta.label}: {fk.model._meta.label}.{fk.name} must point at its "
            "primary key from another table")


class _Plan:
    """The statements of a batch, built and checked once before the first batch."""

    def __init__(self, model: type[models.Model], where: Q, children: Sequence[Child],
                 keep_if_referenced: Sequence[models.ForeignKey]) -> None:
        self.model = model
        self.pk = _col(model, model._meta.pk.column)
        declared = list(children)
        keep = list(keep_if_referenced)
        guards = Q()
        self.set_null: list[models.ForeignKey] = []
        for fk in _reverse_foreign_keys(model):
            if any(_same(fk, k) for k in keep):
                guards &= ~Exists(fk.model._base_manager.filter(
                    **{fk.attname: OuterRef(fk.target_field.attname)}))
            elif any(_same(fk, c.fk) for c in declared):
                pass
            elif fk.remote_field.on_delete is models.SET_NULL:
                _check_target(fk, model)
                self.set_null.append(fk)
            else:
                raise ImproperlyConfigured(
                    f"pruning {model._meta.label}: {fk.model._meta.label}.{fk.name} points at "
                    f"it (on_delete={fk.remote_field.on_delete.__name__}); declare it a Child "
                    "or name it in keep_if_referenced")
        self.children = declared
        for child in declared:
            self._check_child(child, model)
        self.where_sql, self.where_params = self._compile(where & guards)

    def _check_child(self, child: Child, parent: type[models.Model]) -> None:
        fk = child.fk
        _check_target(fk, parent)
        if fk.related_model is not parent or fk.remote_field.on_delete is not models.CASCADE:
            raise ImproperlyConfigured(
                f"pruning {self.model._meta.label}: the child {child.model._meta.label}."
                f"{child.field} must be a CASCADE foreign key to {parent._meta.label}")
        for below in _reverse_foreign_keys(child.model):
            if any(_same(below, c.fk) for c in child.children):
                continue
            if below.remote_field.on_delete is not models.SET_NULL:
                raise ImproperlyConfigured(
                    f"pruning {self.model._meta.label}: {below.model._meta.label}.{below.name} "
                    f"points at the child {child.model._meta.label}; declare it a Child of it")
        for grandchild in child.children:
            self._check_child(grandchild, child.model)

    def _compile(self, where: Q) -> tuple[str | None, list]:
        """The predicate as SQL over the table's own name (columns `"table"."column"`), the
        way Django's own DELETE compiler writes it. None: nothing can match."""
        query = self.model._base_manager.filter(where).query
        compiler = query.get_compiler(connection=connection)
        try:
            sql, params = compiler.compile(query.where)
        except FullResultSet:
            return "1 = 1", []
        except EmptyResultSet:
            return None, []
        return sql or "1 = 1", list(params)

    @property
    def tables(self) -> list[str]:
        found = [self.model._meta.db_table]

        def walk(children: Sequence[Child]) -> None:
            for child in children:
                found.append(child.model._meta.db_table)
                walk(child.children)

        walk(self.children)
        return found

    def run(self, cursor: Any, rng: _Range, report: PruneReport) -> None:
        table = self.model._meta.db_table
        bounds, params = rng.on(self.pk)
        cursor.execute(f"DELETE FROM {_q(table)} WHERE {bounds} AND ({self.where_sql})",  # noqa: S608
                       [*params, *self.where_params])
        report.deleted[table] += cursor.rowcount
        # The rows that pointed at this range's deleted rows: the range's orphans now.
        for fk in self.set_null:
            cond, cparams = self._orphans_of_range(fk, rng)
            self._null(cursor, fk, cond, cparams, report)
        for child in self.children:
            cond, cparams = self._orphans_of_range(child.fk, rng)
            self._delete_child(cursor, child, cond, cparams, report)

    def _orphans_of_range(self, fk: models.ForeignKey, rng: _Range) -> tuple[str, list]:
        column = _col(fk.model, fk.column)
        bounds, params = rng.on(column)
        parent = _q(self.model._meta.db_table)
        exists = f"SELECT 1 FROM {parent} WHERE {self.pk} = {column}"  # noqa: S608
        return f"{bounds} AND NOT EXISTS ({exists})", params

    def _null(self, cursor: Any, fk: models.ForeignKey, cond: str, params: list,
              report: PruneReport) -> None:
        table = fk.model._meta.db_table
        cursor.execute(f"UPDATE {_q(table)} SET {_q(fk.column)} = NULL WHERE {cond}",  # noqa: S608
                       params)
        key = f"{table}.{fk.column}"
        report.nulled[key] = report.nulled.get(key, 0) + cursor.rowcount

    def _delete_child(self, cursor: Any, child: Child, cond: str, params: list,
                      report: PruneReport) -> None:
        """Delete the child rows matching `cond` (SQL over the child's table), their own
        children and SET_NULL references first, while `cond` can still find them."""
        model = child.model
        table = model._meta.db_table
        keys = f"SELECT {_col(model, model._meta.pk.column)} FROM {_q(table)} WHERE {cond}"  # noqa: S608
        for below in _reverse_foreign_keys(model):
            nested = next((c for c in child.children if _same(below, c.fk)), None)
            below_cond = f"{_col(below.model, below.column)} IN ({keys})"
            if nested is not None:
                self._delete_child(cursor, nested, below_cond, params, report)
            else:  # SET_NULL (checked when the plan was made)
                self._null(cursor, below, below_cond, params, report)
        cursor.execute(f"DELETE FROM {_q(table)} WHERE {cond}", params)  # noqa: S608
        report.deleted[table] += cursor.rowcount


# --- The walk -------------------------------------------------------------------------------

def _upper_key(cursor: Any, plan: _Plan, lo: Any, stop: Any, batch_size: int) -> Any:
    """The key `batch_size` keys after `lo` (not past `stop`), read from the index; None if
    fewer are left."""
    table = _q(plan.model._meta.db_table)
    bounds, params = _Range(lo, stop).on(plan.pk)
    sql = f"SELECT {plan.pk} FROM {table} WHERE {bounds} ORDER BY {plan.pk} LIMIT 1 OFFSET %s"  # noqa: S608
    cursor.execute(sql, [*params, batch_size - 1])
    row = cursor.fetchone()
    return None if row is None else row[0]


def _checkpoint_get(name: str) -> Any:
    try:
        raw = redis_client().get(redis_key("prune", name))
    except redis.exceptions.RedisError as exc:
        logger.warning("prune checkpoint unreadable, starting at the first key name=%s "
                       "error=%r", name, exc)
        return None
    return None if raw is None else json.loads(raw)


def _checkpoint_set(name: str, key: Any) -> None:
    try:
        if key is None:
            redis_client().delete(redis_key("prune", name))
        else:
            value = key if isinstance(key, int) else str(key)
            redis_client().set(redis_key("prune", name), json.dumps(value),
                               ex=CHECKPOINT_TTL_SECONDS)
    except redis.exceptions.RedisError as exc:
        # The run goes on; the next one may walk again what this one did (harmless).
        logger.warning("prune checkpoint not saved name=%s error=%r", name, exc)


def _lock_timeout(exc: OperationalError) -> bool:
    return getattr(exc.__cause__, "pgcode", None) == LOCK_NOT_AVAILABLE


def prune_table(*, model: type[models.Model], where: Q, children: Sequence[Child] = (),
                keep_if_referenced: Sequence[models.ForeignKey] = (),
                deadline: float | None = None, batch_size: int | None = None,
                pause: float | None = None, name: str | None = None,
                clock: Callable[[], float] = time.monotonic) -> PruneReport:
    """Delete `model`'s rows matching `where`, with their children, in batches of
    PRUNE_BATCH_SIZE keys with PRUNE_PAUSE_SECONDS between them, until done or `deadline`
    (a `clock()` reading) has passed. Resumes where the last run stopped (see the module's
    docstring). `name` keys the checkpoint (default: the table's name)."""
    batch_size = batch_size or settings.PRUNE_BATCH_SIZE
    pause = settings.PRUNE_PAUSE_SECONDS if pause is None else pause
    plan = _Plan(model, where, children, keep_if_referenced)
    name = name or model._meta.db_table
    report = PruneReport(table=model._meta.db_table, deleted=dict.fromkeys(plan.tables, 0))
    started = clock()
    if plan.where_sql is None:
        report.complete = True
        return report
    start = _checkpoint_get(name)
    # From the checkpoint to the last key, then from the first key back to the checkpoint.
    legs = ((start, None), (None, start)) if start is not None else ((None, None),)
    stopped = False
    for lo, stop in legs:
        while not stopped:
            if deadline is not None and clock() >= deadline:
                stopped = True
                break
            try:
                with transaction.atomic(), connection.cursor() as cursor:
                    if connection.vendor == "postgresql":
                        cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                    hi = _upper_key(cursor, plan, lo, stop, batch_size)
                    plan.run(cursor, _Range(lo, stop if hi is None else hi), report)
            except OperationalError as exc:
                if not _lock_timeout(exc):
                    raise
                logger.warning("prune batch waited too long for a lock; stopping table=%s "
                               "after=%r", report.table, lo)
                stopped = True
                break
            report.batches += 1
            if hi is None:  # this leg is done; the first leg ends at the last key
                _checkpoint_set(name, stop)
                break
            lo = hi
            _checkpoint_set(name, hi)
            if pause:
                time.sleep(pause if deadline is None else max(0.0, min(pause,
                                                                        deadline - clock())))
        if stopped:
            break
    report.complete = not stopped
    if report.complete:
        _checkpoint_set(name, None)
    report.seconds = clock() - started
    logger.info("pruned table=%s deleted=%s nulled=%s batches=%d seconds=%.1f complete=%s",
                report.table, report.deleted, report.nulled, report.batches, report.seconds,
                report.complete)
    return report
