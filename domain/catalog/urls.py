from django.urls import path

from domain.catalog import apis

urlpatterns = [
    path("products", apis.ProductListApi.as_view(), name="product-list"),
    path("products/<uuid:product_id>", apis.ProductDetailApi.as_view(), name="product-detail"),
]
