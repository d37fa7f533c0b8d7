"""The catalog API: cached reads, and writes that publish `product.updated` atomically."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.db import DataError
from django.urls import reverse

from domain.catalog import services
from domain.catalog.cache_keys import ALL_PRODUCTS_NAMESPACE, category_namespace, product_key
from domain.catalog.models import Product
from domain.common.errors import ValidationFailed
from domain.events.models import Event
from domain.jobs.models import Job
from tests.conftest import assert_error, queued_messages
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db


def detail_url(product_id) -> str:
    return reverse("product-detail", args=[product_id])


def snapshot(product: Product) -> tuple:
    row = Product.objects.get(pk=product.pk)
    return (row.name, row.price, row.stock, row.status, row.category, row.updated_at)


# --- GET /api/v1/products/{id} ----------------------------------------------------------

def test_product_detail_misses_then_hits_with_the_same_body(client_all):
    # given a product that is not cached
    product = ProductFactory(price="24.90", category="coffee")
    assert cache.get(product_key(product.pk)) is None

    # when it is read twice
    first = client_all.get(detail_url(product.pk))
    second = client_all.get(detail_url(product.pk))

    # then the first read fills the cache and the second is served from it, identically
    assert first.status_code == 200, first.content
    assert second.status_code == 200, second.content
    assert first["X-Cache"] == "miss"
    assert second["X-Cache"] == "hit"
    assert first.json() == second.json()
    body = first.json()
    assert body["id"] == str(product.pk)
    assert body["sku"] == product.sku
    assert body["price"] == "24.90"
    assert body["category"] == "coffee"
    # (stored with the product-details generation it was read under: a bulk run bumps it)
    assert cache.get(product_key(product.pk))["product"] == body


def test_unknown_product_is_404_and_not_cached(client_all):
    # when a product id that does not exist is read
    missing = uuid.uuid4()
    response = client_all.get(detail_url(missing))

    # then it is a JSON 404, and no negative entry is cached
    assert_error(response, 404, "not_found")
    assert cache.get(product_key(missing)) is None


def test_product_path_that_is_not_a_uuid_is_json_404(client_all):
    # when the path segment is not a UUID (the URL does not resolve)
    response = client_all.get("/api/v1/products/not-a-uuid")

    # then Django's 404 handler still answers in the JSON error shape
    assert_error(response, 404, "not_found")


# --- GET /api/v1/products ---------------------------------------------------------------

def test_list_by_category_is_sorted_by_sku_and_cached(client_all):
    # given products in two categories, created out of sku order
    c = ProductFactory(sku="SKU-C", category="coffee")
    a = ProductFactory(sku="SKU-A", category="coffee")
    ProductFactory(sku="SKU-B", category="kitchen")
    b = ProductFactory(sku="SKU-B2", category="coffee")
    url = reverse("product-list")

    # when the coffee listing is read twice
    first = client_all.get(url, {"category": "coffee"})
    second = client_all.get(url, {"category": "coffee"})

    # then only coffee is listed, by sku, first from the database then from the cache
    assert first.status_code == 200, first.content
    assert first["X-Cache"] == "miss"
    assert second["X-Cache"] == "hit"
    body = first.json()
    assert [p["id"] for p in body["results"]] == [str(a.pk), str(b.pk), str(c.pk)]
    assert {p["category"] for p in body["results"]} == {"coffee"}
    assert body["next_after"] is None
    assert second.json() == body


def test_list_without_category_lists_everything(client_all):
    # given products in two categories
    ProductFactory(sku="SKU-2", category="kitchen")
    ProductFactory(sku="SKU-1", category="coffee")

    # when the whole catalog is listed
    response = client_all.get(reverse("product-list"))

    # then every product is there, by sku
    assert response.status_code == 200, response.content
    assert [p["sku"] for p in response.json()["results"]] == ["SKU-1", "SKU-2"]


def test_list_pagination_with_limit_and_after(client_all):
    # given five coffee products
    skus = [f"SKU-P{i}" for i in range(5)]
    for sku in reversed(skus):
        ProductFactory(sku=sku, category="coffee")
    url = reverse("product-list")

    # when paging with limit=2, following next_after
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        params = {"category": "coffee", "limit": 2}
        if after:
            params["after"] = after
        response = client_all.get(url, params)
        assert response.status_code == 200, response.content
        body = response.json()
        assert len(body["results"]) <= 2
        seen += [p["sku"] for p in body["results"]]
        pages += 1
        after = body["next_after"]
        if after is None:
            break
        assert after == seen[-1]
        assert pages < 10

    # then every product came once, in sku order, over three pages
    assert seen == skus
    assert pages == 3


def test_pages_are_cached_separately(client_all):
    # given three products
    for sku in ("SKU-1", "SKU-2", "SKU-3"):
        ProductFactory(sku=sku, category="coffee")
    url = reverse("product-list")

    # when two different pages are read
    page1 = client_all.get(url, {"category": "coffee", "limit": 2})
    page2 = client_all.get(url, {"category": "coffee", "limit": 2, "after": "SKU-2"})

    # then both are misses with their own content, and each hits on a repeat
    assert page1["X-Cache"] == "miss" and page2["X-Cache"] == "miss"
    assert [p["sku"] for p in page1.json()["results"]] == ["SKU-1", "SKU-2"]
    assert [p["sku"] for p in page2.json()["results"]] == ["SKU-3"]
    assert client_all.get(url, {"category": "coffee", "limit": 2})["X-Cache"] == "hit"
    assert client_all.get(url, {"category": "coffee", "limit": 2,
                                "after": "SKU-2"})["X-Cache"] == "hit"


@pytest.mark.parametrize("limit", [0, 1000, -1, "many"])
def test_list_limit_out_of_range_is_422(client_all, limit):
    # when the limit is outside 1..200
    response = client_all.get(reverse("product-list"), {"limit": limit})

    # then the filter error is under details.limit
    error = assert_error(response, 422, "validation_failed")
    assert "limit" in error["details"]


@pytest.mark.parametrize("name", ["category", "after", "limit"])
def test_list_with_an_empty_filter_is_422_not_everything(client_all, name):
    # given products in two categories
    ProductFactory(category="coffee")
    ProductFactory(category="tea")

    # when a filter is given empty (before: read as not given, every product listed)
    response = client_all.get(f"{reverse('product-list')}?{name}=")

    # then it is 422, the error under that filter's name
    error = assert_error(response, 422, "validation_failed")
    assert list(error["details"]) == [name]


def test_list_with_a_filter_of_spaces_is_422(client_all):
    # when a filter is only spaces (the schema's pattern refuses it), then it is 422
    response = client_all.get(f"{reverse('product-list')}?category=%20%20")
    assert "category" in assert_error(response, 422, "validation_failed")["details"]


# --- PATCH /api/v1/products/{id} --------------------------------------------------------

def test_patch_price_writes_and_publishes_in_the_same_request(
        client_all, broker, django_capture_on_commit_callbacks):
    # given a coffee product at 10.00
    product = ProductFactory(price="10.00", category="coffee")

    # when its price changes (and the request commits)
    with django_capture_on_commit_callbacks(execute=True):
        response = client_all.patch(detail_url(product.pk), {"price": "12.50"}, format="json")

    # then the response and the row carry the new price
    assert response.status_code == 200, response.content
    assert response.json()["price"] == "12.50"
    assert response.json()["id"] == str(product.pk)
    row = Product.objects.get(pk=product.pk)
    assert row.price == Decimal("12.50")
    assert row.updated_at > product.updated_at

    # and one product.updated event describes the change
    event = Event.objects.get()
    assert event.type == "product.updated"
    assert event.api_key_id == client_all.api_key.pk
    assert event.payload["product_id"] == str(product.pk)
    assert event.payload["category"] == "coffee"
    assert event.payload["changed"] == ["price"]
    assert event.payload["previous_category"] is None

    # and one cache invalidation job drops the product key and the category listing
    job = Job.objects.get()
    assert job.event_id == event.pk
    assert job.kind == "cache_invalidation"
    assert product_key(product.pk) in job.params["keys"]
    assert category_namespace("coffee") in job.params["namespaces"]
    assert ALL_PRODUCTS_NAMESPACE in job.params["namespaces"]

    # and the job was handed to the broker on the "cache" queue
    assert [m["headers"]["id"] for m in queued_messages(broker, "cache")] == [str(job.pk)]
    assert Job.objects.get(pk=job.pk).enqueued_at is not None


def test_patch_category_invalidates_old_and_new_category(client_all):
    # given a coffee product
    product = ProductFactory(category="coffee")

    # when it moves to kitchen
    response = client_all.patch(detail_url(product.pk), {"category": "kitchen"}, format="json")

    # then both listings are invalidated
    assert response.status_code == 200, response.content
    assert response.json()["category"] == "kitchen"
    assert Product.objects.get(pk=product.pk).category == "kitchen"
    event = Event.objects.get(type="product.updated")
    assert event.payload["category"] == "kitchen"
    assert event.payload["previous_category"] == "coffee"
    assert event.payload["changed"] == ["category"]
    namespaces = Job.objects.get(event=event).params["namespaces"]
    assert category_namespace("coffee") in namespaces
    assert category_namespace("kitchen") in namespaces


def test_patch_with_the_same_values_changes_nothing(client_all):
    # given a product
    product = ProductFactory(price="10.00", stock=5, category="coffee")
    before = snapshot(product)

    # when it is patched with the values it already has
    response = client_all.patch(detail_url(product.pk), {
        "price": "10.00", "stock": 5, "category": "coffee"}, format="json")

    # then it is a 200 with the product, and nothing is written or published
    assert response.status_code == 200, response.content
    assert response.json()["price"] == "10.00"
    assert snapshot(product) == before
    assert Event.objects.count() == 0
    assert Job.objects.count() == 0


@pytest.mark.parametrize("field", ["name", "category"])
def test_patch_takes_names_as_sent_and_refuses_only_spaces(client_all, field):
    # given a product
    product = ProductFactory()

    # when a name of spaces only is sent, then it is 422; padded, it is stored as sent (before:
    # trimmed, so the schema's lengths counted other characters than the server)
    blank = client_all.patch(detail_url(product.pk), {field: "   "}, format="json")
    assert "may not be blank" in str(assert_error(blank, 422, "validation_failed")["details"])
    padded = client_all.patch(detail_url(product.pk), {field: " x" * 32}, format="json")
    assert padded.status_code == 200, padded.content
    assert padded.json()[field] == " x" * 32


@pytest.mark.parametrize("price", [
    "-1.00", "abc", "1.234", None, "",
    # forms DRF's DecimalField takes but the schema's pattern does not promise (before: 200)
    12.5, 12, "1e2", "+1.00", ".5", "5.", " 12.00", "12345678901",
])
def test_patch_invalid_price_is_422_and_changes_nothing(client_all, price):
    # given a product
    product = ProductFactory(price="10.00")
    before = snapshot(product)

    # when an invalid price is sent
    response = client_all.patch(detail_url(product.pk), {"price": price}, format="json")

    # then the price error is reported and nothing changes
    error = assert_error(response, 422, "validation_failed")
    assert "price" in error["details"]
    assert snapshot(product) == before
    assert Event.objects.count() == 0


@pytest.mark.parametrize("body", [{"sku": "SKU-NEW"}, {"foo": 1}, {"price": "11.00", "id": "x"}])
def test_patch_unknown_or_read_only_field_is_422(client_all, body):
    # given a product
    product = ProductFactory(price="10.00")
    before = snapshot(product)

    # when a field that cannot be changed is sent
    response = client_all.patch(detail_url(product.pk), body, format="json")

    # then the field is named, and nothing changes (not even the allowed fields)
    error = assert_error(response, 422, "validation_failed")
    assert error["details"]["unknown"] == sorted(set(body) - {"price"})
    assert snapshot(product) == before
    assert Product.objects.get(pk=product.pk).sku == product.sku
    assert Event.objects.count() == 0


def test_patch_empty_body_is_422(client_all):
    # given a product
    product = ProductFactory()
    before = snapshot(product)

    # when nothing is sent
    response = client_all.patch(detail_url(product.pk), {}, format="json")

    # then it is refused with the updatable fields listed
    error = assert_error(response, 422, "validation_failed")
    assert set(error["details"]["fields"]) == set(services.UPDATABLE_FIELDS)
    assert snapshot(product) == before
    assert Event.objects.count() == 0


def test_patch_unknown_product_is_404(client_all):
    # when a product that does not exist is patched
    response = client_all.patch(detail_url(uuid.uuid4()), {"price": "1.00"}, format="json")

    # then it is a JSON 404 and nothing is published
    assert_error(response, 404, "not_found")
    assert Event.objects.count() == 0
    assert Job.objects.count() == 0


def test_patch_body_that_is_a_list_is_422(client_all):
    # given a product
    product = ProductFactory()
    before = snapshot(product)

    # when the body is a JSON list
    response = client_all.patch(detail_url(product.pk), [{"price": "1.00"}], format="json")

    # then it is refused and nothing changes
    assert_error(response, 422, "validation_failed")
    assert snapshot(product) == before
    assert Event.objects.count() == 0


def test_patch_does_not_touch_the_cache_synchronously(client_all):
    # given a cached product
    product = ProductFactory(price="10.00")
    client_all.get(detail_url(product.pk))
    assert cache.get(product_key(product.pk))["product"]["price"] == "10.00"

    # when it is patched (without a worker)
    response = client_all.patch(detail_url(product.pk), {"price": "11.00"}, format="json")

    # then the write is stored and the cached copy is left for the invalidation job to drop
    assert response.status_code == 200, response.content
    assert Product.objects.get(pk=product.pk).price == Decimal("11.00")
    assert Job.objects.filter(kind="cache_invalidation").count() == 1


@pytest.mark.parametrize("price", ["0", "7", "12.5", "12.50", "9999999999.99"])
def test_patch_price_as_the_api_writes_it_is_stored(client_all, price):
    # given a product
    product = ProductFactory(price="10.00")

    # when a price of up to 10 digits and 2 decimals is sent as a string
    response = client_all.patch(detail_url(product.pk), {"price": price}, format="json")

    # then it is stored
    assert response.status_code == 200, response.content
    product.refresh_from_db()
    assert product.price == Decimal(price)


# --- Atomicity of the write and the event --------------------------------------------------

def test_product_write_rolls_back_when_the_event_is_invalid(django_capture_on_commit_callbacks):
    # given a product; an empty category is a valid column value but fails the event schema
    # (minLength 1), so the row write succeeds and the publish fails after it
    product = ProductFactory(category="coffee", price="10.00")
    before = snapshot(product)

    # when product_update is called with it
    with django_capture_on_commit_callbacks(execute=True) as callbacks, \
            pytest.raises(ValidationFailed) as excinfo:
        services.product_update(product_id=product.pk, changes={"category": ""})

    # then the publish failed and the product write was rolled back with it
    assert excinfo.value.code == "invalid_payload"
    assert snapshot(product) == before
    assert Event.objects.count() == 0
    assert Job.objects.count() == 0
    assert callbacks == []


def test_product_write_rolls_back_when_the_category_is_too_long(
        django_capture_on_commit_callbacks):
    # given a product and a 100-character category (the event schema allows 64)
    product = ProductFactory(category="coffee", price="10.00")
    before = snapshot(product)

    # when product_update is called directly (bypassing the serializer's max_length)
    # then it fails: on SQLite the publish rejects the payload; on PostgreSQL the varchar(64)
    # column already refuses the write
    with django_capture_on_commit_callbacks(execute=True) as callbacks, \
            pytest.raises((ValidationFailed, DataError)):
        services.product_update(product_id=product.pk,
                                changes={"category": "x" * 100, "price": Decimal("99.00")})

    # and neither the product nor an event was stored
    assert snapshot(product) == before
    assert Event.objects.count() == 0
    assert Job.objects.count() == 0
    assert callbacks == []


@pytest.mark.django_db
def test_reads_fall_back_to_the_database_when_the_cache_is_down(client_all, settings):
    # given a product, and a cache server that does not answer (nothing listens on port 1)
    product = ProductFactory(price="7.00", category="coffee")
    settings.CACHES = {"default": {
        **settings.CACHES["default"], "LOCATION": "redis://127.0.0.1:1/0"}}

    # when it is read, alone and in its listing
    detail = client_all.get(reverse("product-detail", args=[product.pk]))
    listing = client_all.get(reverse("product-list") + "?category=coffee")

    # then the database answers, uncached
    assert detail.status_code == 200 and detail.json()["price"] == "7.00"
    assert detail["X-Cache"] == "miss"
    assert listing.status_code == 200
    assert [p["id"] for p in listing.json()["results"]] == [str(product.pk)]


@pytest.mark.django_db
def test_reads_are_served_when_the_cache_is_full(client_all, settings, tmp_path):
    # given a product, and a cache Redis of the test's own that is full (noeviction): it
    # answers reads and refuses writes with OOM
    from tests.faults.procs import RedisServer, fill_until_refused, free_port

    server = RedisServer(free_port(), tmp_path / "redis")
    server.start()
    try:
        product = ProductFactory(price="7.00", category="coffee")
        settings.CACHES = {"default": {**settings.CACHES["default"],
                                       "LOCATION": server.url(0)}}
        fill_until_refused(server.client())

        # when it is read, alone and in its listing
        detail = client_all.get(reverse("product-detail", args=[product.pk]))
        listing = client_all.get(reverse("product-list") + "?category=coffee")
    finally:
        server.stop(kill=True)

    # then the database answers (the cache could not store the copies), never a 500
    assert detail.status_code == 200 and detail.json()["price"] == "7.00"
    assert listing.status_code == 200
    assert [p["id"] for p in listing.json()["results"]] == [str(product.pk)]
