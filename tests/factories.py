import factory
from django.utils import timezone

from domain.catalog.models import Product, ProductStatus
from domain.customers.models import Customer
from domain.events.models import Event
from domain.jobs.models import Job
from domain.orders.models import Order, OrderStatus


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product

    sku = factory.Sequence(lambda n: f"SKU-T{n:05d}")
    name = factory.Faker("sentence", nb_words=3)
    price = "10.00"
    stock = 5
    status = ProductStatus.ACTIVE
    category = "coffee"


class EventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Event

    type = "demo.ping"
    payload = factory.LazyFunction(dict)
    occurred_at = factory.LazyFunction(timezone.now)


class JobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Job

    kind = "noop"
    params = factory.LazyFunction(dict)
    max_attempts = 5


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Customer

    name = factory.Faker("name")
    email = factory.Sequence(lambda n: f"customer{n}@example.com")


class OrderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Order

    number = factory.Sequence(lambda n: f"ORD-T{n:05d}")
    customer = factory.SubFactory(CustomerFactory)
    status = OrderStatus.PLACED
    total = "49.80"
    currency = "EUR"
