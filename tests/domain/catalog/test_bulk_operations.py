"""The catalog's bulk operations: catalog.reprice (money rounded half-even to cents, as
Python's Decimal does), catalog.set_status (by SKU list or category), catalog.set_prices
(CSV); each publishes catalog.bulk_updated, whose job drops the product caches, and drops them
itself before the run says `succeeded`."""

from __future__ import annotations

import random
from decimal import ROUND_HALF_EVEN, Decimal

import pytest

from domain.bulk.models import BulkRun, BulkRunStatus
from domain.catalog.cache_keys import bulk_invalidation_namespaces
from domain.catalog.models import Product, ProductStatus
from domain.catalog.selectors import product_get_cached, product_list_cached
from domain.common.errors import ValidationFailed
from domain.events.models import Event
from tests.bulk_utils import csv_bytes, make_products, prices, run_to_end, start

pytestmark = pytest.mark.django_db


def half_even(price: str, percent: float) -> Decimal:
    """The expected price: exact decimal arithmetic, ties to the even cent."""
    factor = Decimal(1) + Decimal(str(percent)) / Decimal(100)
    return (Decimal(price) * factor).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)


def _reprice(category: str, percent: float, chunk_size: int = 4):
    return run_to_end(start("catalog.reprice", {"category": category, "percent": percent},
                            chunk_size=chunk_size))


def _updated_event(run) -> Event:
    [event] = Event.objects.filter(type="catalog.bulk_updated", payload__run_id=str(run.pk))
    return event


# --- catalog.reprice ----------------------------------------------------------------------------

@pytest.mark.parametrize(("percent", "cases"), [
    # price → price * factor → rounded: the ties go to the even cent
    (-50, {"0.25": "0.12",      # 0.125
           "0.27": "0.14",      # 0.135
           "2.01": "1.00",      # 1.005
           "2.03": "1.02",      # 1.015
           "0.01": "0.00",      # 0.005
           "0.03": "0.02",      # 0.015
           "4.69": "2.34",      # 2.345
           "4.71": "2.36"}),    # 2.355
    (50, {"0.01": "0.02",       # 0.015
          "0.03": "0.04",       # 0.045
          "0.05": "0.08",       # 0.075
          "1.01": "1.52",       # 1.515
          "2.33": "3.50",       # 3.495
          "2.35": "3.52"}),     # 3.525
    (12.5, {"0.01": "0.01",     # 0.01125
            "0.04": "0.04",     # 0.045
            "0.12": "0.14",     # 0.135
            "1.00": "1.12",     # 1.125
            "10.00": "11.25"}),
    (0.5, {"1.00": "1.00",      # 1.005
           "3.00": "3.02",      # 3.015
           "0.01": "0.01"}),    # 0.01005
    (-33.3333, {"10.00": "6.67", "0.03": "0.02", "0.00": "0.00"}),
    (-99.9, {"10.00": "0.01", "0.01": "0.00"}),
    (1000, {"9.99": "109.89", "99999999.99": "1099999999.89"}),
])
def test_reprice_rounds_half_even_to_cents_as_decimal_does(percent, cases):
    # given products at these prices (one per price) in the category
    products = [make_products(1, price=price)[0] for price in cases]

    # when the category is repriced
    run = _reprice("coffee", percent)

    # then each price is the one Decimal's ROUND_HALF_EVEN gives, which the cases spell out
    found = dict(zip(cases, [str(p) for p in prices(products)], strict=True))
    assert found == cases
    assert found == {price: str(half_even(price, percent)) for price in cases}
    # and rows_changed counts only the prices that moved
    assert run.status == BulkRunStatus.SUCCEEDED
    assert run.rows_changed == sum(1 for old, new in cases.items() if old != new)
    assert run.rows_done == len(cases)


def test_reprice_agrees_with_decimal_on_many_prices_and_percents():
    # given 5 categories of 40 random prices, each repriced by a random percent with decimals
    rng = random.Random(14)
    plan = {}
    for n in range(5):
        category = f"cat-{n}"
        percent = round(rng.uniform(-95, 300), rng.choice([0, 1, 2, 3, 4]))
        olds = [f"{rng.randint(0, 999_999) / 100:.2f}" for _ in range(40)]
        plan[category] = (percent, olds, make_products(40, category=category, price="0.00"))
        for product, price in zip(plan[category][2], olds, strict=True):
            Product.objects.filter(pk=product.pk).update(price=Decimal(price))

    # when each category is repriced
    for category, (percent, _, _) in plan.items():
        _reprice(category, percent, chunk_size=16)

    # then every price agrees with Decimal
    for percent, olds, products in plan.values():
        assert [str(p) for p in prices(products)] == [str(half_even(o, percent)) for o in olds], (
            percent)


def test_reprice_changes_only_the_category_and_counts_only_the_prices_that_moved():
    # given a category where three prices move by +10% and two stay (0.00 and 0.01: 0.011
    # rounds back to 0.01), and another category
    moving = make_products(3, price="10.00")
    staying = make_products(1, price="0.00") + make_products(1, price="0.01")
    other = make_products(2, category="tea", price="10.00")
    before = {p.pk: p.updated_at for p in (*staying, *other)}

    # when the category is repriced
    run = _reprice("coffee", 10)

    # then only its moving rows changed, and only they count as changed
    assert prices(moving) == [Decimal("11.00")] * 3
    assert prices(staying) == [Decimal("0.00"), Decimal("0.01")]
    assert prices(other) == [Decimal("10.00")] * 2
    assert (run.rows_matched, run.rows_done, run.rows_changed) == (5, 5, 3)
    # and the rows left alone were not written at all
    assert {p.pk: p.updated_at for p in Product.objects.filter(pk__in=before)} == before
    assert all(p.updated_at > before[staying[0].pk]
               for p in Product.objects.filter(pk__in=[m.pk for m in moving]))


# --- catalog.set_status --------------------------------------------------------------------------

def test_set_status_by_skus_changes_those_products_only():
    # given products in two categories, one of the listed ones already discontinued
    coffee = make_products(3)
    tea = make_products(2, category="tea")
    Product.objects.filter(pk=coffee[1].pk).update(status=ProductStatus.DISCONTINUED)
    listed = [coffee[0], coffee[1], tea[0]]

    # when the listed SKUs are discontinued
    run = run_to_end(start("catalog.set_status", {
        "status": "discontinued", "skus": [p.sku for p in listed]}))

    # then exactly those are discontinued, and the one that already was is not counted
    statuses = dict(Product.objects.values_list("pk", "status"))
    assert {pk for pk, s in statuses.items() if s == "discontinued"} == {p.pk for p in listed}
    assert (run.rows_done, run.rows_changed) == (3, 2)
    # and the event names the categories of the listed products
    assert _updated_event(run).payload["categories"] == ["coffee", "tea"]


def test_set_status_by_category_changes_that_category_only():
    coffee = make_products(4)
    tea = make_products(2, category="tea")
    run = run_to_end(start("catalog.set_status", {"status": "inactive", "category": "coffee"}))
    assert set(Product.objects.filter(pk__in=[p.pk for p in coffee])
               .values_list("status", flat=True)) == {"inactive"}
    assert set(Product.objects.filter(pk__in=[p.pk for p in tea])
               .values_list("status", flat=True)) == {"active"}
    assert (run.rows_done, run.rows_changed) == (4, 4)
    assert _updated_event(run).payload["categories"] == ["coffee"]


# --- catalog.set_prices ---------------------------------------------------------------------------

def test_set_prices_sets_each_listed_price_and_counts_the_ones_that_moved():
    # given products in two categories and one not in the CSV
    coffee = make_products(3)
    tea = make_products(1, category="tea", price="4.00")
    untouched = make_products(1, category="cocoa")
    rows = [(coffee[2].sku, "0.99"), (tea[0].sku, "4.00"), (coffee[0].sku, "1234567.89"),
            (coffee[1].sku, "10")]

    # when a CSV sets their prices, in chunks of two lines
    run = run_to_end(start("catalog.set_prices", csv=csv_bytes(rows)))

    # then each listed product has its price; an equal price is not a change
    assert prices([*coffee, *tea, *untouched]) == [
        Decimal("1234567.89"), Decimal("10.00"), Decimal("0.99"), Decimal("4.00"),
        Decimal("10.00")]
    assert (run.status, run.rows_done, run.rows_changed, run.chunks_done) == (
        BulkRunStatus.SUCCEEDED, 4, 2, 2)
    # and the event names the categories of the products in the CSV
    assert _updated_event(run).payload["categories"] == ["coffee", "tea"]


# --- The event and the caches --------------------------------------------------------------------

@pytest.mark.parametrize(("operation", "args"), [
    ("catalog.reprice", {"category": "coffee", "percent": 5}),
    ("catalog.set_status", {"status": "inactive", "category": "coffee"}),
    ("catalog.set_prices", None),
])
def test_each_operation_publishes_bulk_updated_whose_job_invalidates_the_caches(operation,
                                                                                args):
    # given two products
    products = make_products(2)
    body = csv_bytes([(p.sku, "3.00") for p in products]) if args is None else None

    # when the operation runs to its end
    run = run_to_end(start(operation, args, csv=body))

    # then it published catalog.bulk_updated with what it did, by the server
    event = _updated_event(run)
    assert event.payload == {"run_id": str(run.pk), "operation": operation,
                             "categories": ["coffee"], "rows_changed": 2}
    assert run.result == {"event_type": "catalog.bulk_updated", "payload": event.payload}
    # and the event's one job is a cache invalidation of the product namespaces
    [job] = event.jobs.all()
    assert job.kind == "cache_invalidation"
    assert job.params == {"namespaces": bulk_invalidation_namespaces(["coffee"])}


def test_a_run_drops_the_product_caches_before_it_says_succeeded():
    # given a product whose detail and category listing are cached
    [product] = make_products(1)
    assert product_get_cached(product_id=product.pk)[1] is False
    assert product_get_cached(product_id=product.pk)[1] is True
    product_list_cached(category="coffee", after_sku=None, limit=10)
    assert product_list_cached(category="coffee", after_sku=None, limit=10)[1] is True

    # when a reprice runs to its end (its event's job has not run: no worker here)
    run = _reprice("coffee", 10)
    assert run.status == BulkRunStatus.SUCCEEDED

    # then neither cached copy is served: the reads go to the database, and see the new price
    detail, cached = product_get_cached(product_id=product.pk)
    assert (cached, detail["price"]) == (False, "11.00")
    page, cached = product_list_cached(category="coffee", after_sku=None, limit=10)
    assert (cached, [p["price"] for p in page["results"]]) == (False, ["11.00"])


def test_a_dry_run_publishes_nothing_and_keeps_the_caches():
    [product] = make_products(1)
    product_get_cached(product_id=product.pk)
    run = run_to_end(start("catalog.reprice", {"category": "coffee", "percent": 10},
                           dry_run=True))
    assert (run.status, run.rows_changed) == (BulkRunStatus.SUCCEEDED, 1)
    assert not Event.objects.exists()
    detail, cached = product_get_cached(product_id=product.pk)
    assert (cached, detail["price"]) == (True, "10.00")


@pytest.mark.django_db
def test_set_status_refuses_skus_that_name_no_product_and_starts_nothing():
    product = make_products(1)[0]
    with pytest.raises(ValidationFailed) as refused:
        start("catalog.set_status", {"status": "inactive",
                                     "skus": [product.sku, "NO-SUCH-1", "NO-SUCH-2"]})
    assert refused.value.code == "unknown_skus" and refused.value.status_code == 422
    assert refused.value.details == {"unknown_skus": ["NO-SUCH-1", "NO-SUCH-2"], "count": 2}
    assert not BulkRun.objects.exists()
