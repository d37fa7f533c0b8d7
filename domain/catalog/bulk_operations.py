"""The catalog's bulk operations: reprice a category, set a status, set prices from CSV.

Every one holds the whole product table while it runs (`catalog.product`): a reprice and a
CSV of prices touching the same rows must not interleave, and a target per category would
let a run by SKU list overlap a run by category unseen. When one succeeds it drops the
product caches it made stale (before the run says `succeeded`) and publishes
`catalog.bulk_updated`, whose handler drops them again.
"""

from __future__ import annotations

import logging
import re
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from django.db import connection
from django.db.models import DecimalField, F, Func, QuerySet, Value
from django.db.models.functions import Now
from django.utils import timezone

from domain.bulk.models import BulkRun
from domain.bulk.registry import (
    BadRow,
    CsvColumn,
    CsvOperation,
    SetBasedOperation,
    register_bulk_operation,
)
from domain.catalog.cache_keys import bulk_invalidation_namespaces
from domain.catalog.models import Product, ProductStatus
from domain.common.cache import CACHE_ERRORS, cache_invalidate
from domain.common.errors import ValidationFailed
from domain.common.fastpaths import on_postgresql, table

logger = logging.getLogger(__name__)

PRODUCTS_TARGET = "catalog.product"
BULK_UPDATED = "catalog.bulk_updated"
CENT = Decimal("0.01")
PRICE_PATTERN = r"^[0-9]{1,10}(\.[0-9]{1,2})?$"  # numeric(12, 2), not negative


class RoundHalfEven(Func):
    """Round to cents, ties to even, as Decimal's ROUND_HALF_EVEN does (PostgreSQL's round()
    sends ties away from zero: 0.125 → 0.13, where half-even gives 0.12). Exact: numeric
    arithmetic, no binary floats. For amounts of zero or more, which prices are."""

    output_field = DecimalField(max_digits=12, decimal_places=2)

    def as_sql(self, compiler, connection, **extra):
        inner, params = compiler.compile(self.source_expressions[0])
        cents = "(({x}) * 100)"
        template = (f"(CASE WHEN {cents} - floor({cents}) = 0.5 "
                    f"THEN (floor({cents}) + mod(floor({cents}), 2)) / 100 "
                    "ELSE round(({x}), 2) END)::numeric(12, 2)")
        uses = template.count("{x}")
        return template.format(x=inner), list(params) * uses


def round_half_even(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_EVEN)


def _drop_caches(categories: list[str]) -> list[str]:
    """Bump the namespaces a bulk change made stale, now; a Redis that does not answer is
    left to the event's handler (a job that retries), while readers, meanwhile, read through
    to the database (they store nothing while the cache is down)."""
    namespaces = bulk_invalidation_namespaces(categories)
    try:
        cache_invalidate(namespaces=namespaces)
    except CACHE_ERRORS as exc:
        logger.warning("bulk cache drop left to the event handler error=%r", exc)
    return namespaces


# The event names at most this many categories (its handler's job takes up to 1000
# namespaces); the caches of every touched category are dropped before that, whatever their
# number, and a longer list is cut with `categories_truncated`.
EVENT_CATEGORIES = 998


def _payload(run: BulkRun, categories: list[str]) -> dict:
    _drop_caches(categories)
    payload = {"run_id": str(run.pk), "operation": run.operation,
               "categories": categories[:EVENT_CATEGORIES], "rows_changed": run.rows_changed}
    if len(categories) > EVENT_CATEGORIES:
        payload["categories_truncated"] = True
    return payload


def _categories(products: QuerySet) -> list[str]:
    return sorted(set(products.order_by().values_list("category", flat=True).distinct()))


# --- catalog.reprice --------------------------------------------------------------------------

class Reprice(SetBasedOperation):
    def plan(self, args: dict) -> dict:
        factor = 1 + Decimal(str(args["percent"])) / 100
        return {"category": args["category"], "factor": str(factor)}

    def target(self, plan: dict) -> str:
        return PRODUCTS_TARGET

    def scope(self, plan: dict) -> QuerySet:
        return Product.objects.filter(category=plan["category"])

    @staticmethod
    def _new_price(plan: dict) -> RoundHalfEven:
        factor = Value(Decimal(plan["factor"]), output_field=DecimalField())
        return RoundHalfEven(F("price") * factor)

    def _changes_in_python(self, window: QuerySet, plan: dict) -> list[tuple[Any, Decimal]]:
        # The portable path (SQLite stores decimals as binary floats, so the rounding is done
        # here, with Decimal): read the chunk's prices, compute, write the changed ones.
        factor = Decimal(plan["factor"])
        return [(pk, new) for pk, price in window.values_list("pk", "price")
                if (new := round_half_even(Decimal(price) * factor)) != price]

    def apply(self, window: QuerySet, plan: dict) -> int:
        if on_postgresql():
            new_price = self._new_price(plan)
            return window.exclude(price=new_price).update(price=new_price, updated_at=Now())
        changes = self._changes_in_python(window, plan)
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        with connection.cursor() as cursor:
            cursor.executemany(
                f"UPDATE {table(Product)} SET price = %s, updated_at = %s WHERE id = %s",  # noqa: S608
                [(str(new), now, pk.hex) for pk, new in changes])
        return len(changes)

    def would_change(self, window: QuerySet, plan: dict) -> int:
        if on_postgresql():
            return window.exclude(price=self._new_price(plan)).count()
        return len(self._changes_in_python(window, plan))

    def finished(self, run: BulkRun) -> dict:
        return _payload(run, [run.plan["category"]])


REPRICE = register_bulk_operation(Reprice(
    name="catalog.reprice",
    description="Change the price of every product in a category by a percentage (money "
    "rounded half-even to cents).",
    args_schema={
        "type": "object",
        "properties": {
            "category": {"type": "string", "minLength": 1, "maxLength": 64},
            "percent": {"type": "number", "minimum": -99.99, "maximum": 1000,
                        "description": "10 raises prices by 10%; -15 lowers them by 15%."},
        },
        "required": ["category", "percent"],
        "additionalProperties": False,
    },
    event_type=BULK_UPDATED,
    example_args={"category": "coffee", "percent": 10},
))


# --- catalog.set_status -----------------------------------------------------------------------

class SetStatus(SetBasedOperation):
    def plan(self, args: dict) -> dict:
        """A SKU that names no product refuses the run (as a CSV row does): a typo must not
        pass for a product that was set."""
        if "skus" in args:
            known = set(Product.objects.filter(sku__in=args["skus"])
                        .values_list("sku", flat=True))
            unknown = [sku for sku in args["skus"] if sku not in known]
            if unknown:
                raise ValidationFailed(
                    f"{len(unknown)} of the {len(args['skus'])} SKUs name no product; nothing "
                    "was started.", code="unknown_skus",
                    details={"unknown_skus": unknown[:100], "count": len(unknown)})
        return dict(args)

    def target(self, plan: dict) -> str:
        return PRODUCTS_TARGET

    def scope(self, plan: dict) -> QuerySet:
        if "skus" in plan:
            return Product.objects.filter(sku__in=plan["skus"])
        return Product.objects.filter(category=plan["category"])

    def apply(self, window: QuerySet, plan: dict) -> int:
        return window.exclude(status=plan["status"]).update(status=plan["status"],
                                                            updated_at=Now())

    def would_change(self, window: QuerySet, plan: dict) -> int:
        return window.exclude(status=plan["status"]).count()

    def finished(self, run: BulkRun) -> dict:
        categories = ([run.plan["category"]] if "category" in run.plan
                      else _categories(self.scope(run.plan)))
        return _payload(run, categories)


SET_STATUS = register_bulk_operation(SetStatus(
    name="catalog.set_status",
    description="Set the status of the products listed by SKU (each must name a product: "
    "otherwise 422 unknown_skus, and nothing starts), or of every product in a category.",
    args_schema={
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": list(ProductStatus.values)},
            "skus": {"type": "array", "minItems": 1, "maxItems": 10_000, "uniqueItems": True,
                     "items": {"type": "string", "minLength": 1, "maxLength": 64}},
            "category": {"type": "string", "minLength": 1, "maxLength": 64},
        },
        "required": ["status"],
        "oneOf": [{"required": ["skus"]}, {"required": ["category"]}],
        "additionalProperties": False,
    },
    event_type=BULK_UPDATED,
    example_args={"status": "discontinued", "category": "coffee"},
))


# --- catalog.set_prices (CSV) -----------------------------------------------------------------

# One CASE a row, evaluated once: the problem's code (the column, value and message are
# derived from it in Python for the few bad rows). Three CASEs deriving each from the same
# conditions ran the price's regular expression three times a row: on 1,000,000 rows, 3.6 to
# 4.6 s against 2.1 to 3.0 s this way, in alternating runs (the check is inside the upload's
# request).
_CHECKS = """
SELECT line, problem, sku, price, count(*) OVER () AS invalid FROM (
  SELECT i.line + 1 AS line, i.sku, i.price,
    CASE WHEN coalesce(trim(i.sku), '') = '' THEN 'sku_empty'
         WHEN length(i.sku) > 64 THEN 'sku_long'
         {price_check}
         WHEN p.id IS NULL THEN 'sku_unknown'
         WHEN row_number() OVER (PARTITION BY i.sku ORDER BY i.line) > 1 THEN 'sku_repeated'
    END AS problem
  FROM {input} i LEFT JOIN {products} p ON p.sku = i.sku
) checked WHERE problem IS NOT NULL ORDER BY line LIMIT %s
"""
PRICE_ERROR = "the price is not an amount of 0 or more with at most 2 decimals"
_PROBLEMS = {
    "sku_empty": "the sku is empty",
    "sku_long": "the sku is longer than 64 characters",
    "price": PRICE_ERROR,
    "sku_unknown": "no product has this sku",
    "sku_repeated": "this sku is on an earlier line too",
}
_PRICE_BAD = f"(i.price IS NULL OR i.price !~ '{PRICE_PATTERN}')"
_PRICE = re.compile(PRICE_PATTERN)


class SetPrices(CsvOperation):
    def target(self, plan: dict) -> str:
        return PRODUCTS_TARGET

    def check_row(self, values: dict[str, str]) -> tuple[str, str] | None:
        # The rule PostgreSQL checks (PRICE_PATTERN): ASCII digits only. Decimal() also reads
        # "1.", ".5" and other scripts' digits ("١٢" is 12), which SQLite's CAST then stored
        # as 0.
        if _PRICE.fullmatch(values["price"]) is None:
            return "price", PRICE_ERROR
        return None

    def check_rows(self, table_name: str, limit: int, *,
                   formats_checked: bool) -> tuple[int, list[BadRow]]:
        """Every rule in one statement over the input: sku present, known and not repeated;
        price an amount (PostgreSQL; the portable path checked it per row while loading)."""
        sql = _CHECKS.format(input=connection.ops.quote_name(table_name),
                             products=table(Product),
                             price_check="" if formats_checked
                             else f"WHEN {_PRICE_BAD} THEN 'price'")
        with connection.cursor() as cursor:
            cursor.execute(sql, [limit])
            rows = cursor.fetchall()
        invalid = rows[0][4] if rows else 0
        return invalid, [
            BadRow(line=line, error=_PROBLEMS[problem],
                   column="price" if problem == "price" else "sku",
                   value=price if problem == "price" else sku)
            for line, problem, sku, price, _ in rows]

    def apply_lines(self, table_name: str, first: int, last: int, plan: dict, *,
                    dry_run: bool) -> int:
        """One `UPDATE … FROM` the input's lines `first`..`last` (PostgreSQL reads the range
        from the input's primary key and joins products by their unique sku)."""
        source = connection.ops.quote_name(table_name)
        price = ("i.price::numeric(12, 2)" if on_postgresql() else "CAST(i.price AS NUMERIC)")
        where = (f"i.line BETWEEN %s AND %s AND p.sku = i.sku AND p.price <> {price}")
        with connection.cursor() as cursor:
            if dry_run:
                cursor.execute(f"SELECT count(*) FROM {source} i JOIN {table(Product)} p "  # noqa: S608
                               f"ON p.sku = i.sku WHERE {where}", [first, last])
                return cursor.fetchone()[0]
            now = connection.ops.adapt_datetimefield_value(timezone.now())
            cursor.execute(f"UPDATE {table(Product)} AS p SET price = {price}, updated_at = %s "  # noqa: S608
                           f"FROM {source} i WHERE {where}", [now, first, last])
            return cursor.rowcount

    def finished(self, run: BulkRun) -> dict:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT DISTINCT p.category FROM {table(Product)} p "  # noqa: S608
                           f"JOIN {connection.ops.quote_name(run.input_table)} i "
                           "ON p.sku = i.sku ORDER BY 1")
            categories = [row[0] for row in cursor.fetchall()]
        return _payload(run, categories)


SET_PRICES = register_bulk_operation(SetPrices(
    name="catalog.set_prices",
    description="Set each listed product's price from a CSV (columns sku,price), validated "
    "row by row before anything changes.",
    args_schema={"type": "object", "additionalProperties": False},
    columns=(CsvColumn("sku", "the product's SKU (it must exist; once per file)"),
             CsvColumn("price", "the new price: 0 or more, at most 2 decimals, e.g. 24.90")),
    event_type=BULK_UPDATED,
))
