"""`GET /metrics`: the Prometheus exposition, for a scraper holding the token or coming from an
allowed network (README "Metrics").

A plain Django view, as the health probes are: its answer is Prometheus text, not the API's
JSON, and its caller is a scraper with a token of its own, not an API key with scopes. Its
refusals are the API's JSON error shape.

Who may scrape (config/settings: METRICS_TOKEN, METRICS_ALLOWED_NETWORKS):
- a request with `Authorization: Bearer <METRICS_TOKEN>` (compared in constant time), or
- a request whose TCP peer (REMOTE_ADDR) is in METRICS_ALLOWED_NETWORKS. X-Forwarded-For is
  never read: anyone can write it. Behind a reverse proxy every request's peer is the proxy,
  so the proxy's network must not be listed; Prometheus scrapes the containers directly.
Anything else is 403. With neither setting, nothing may scrape and the endpoint answers 404,
as for a URL that does not exist (production's default until it is configured; the local
settings allow loopback).
"""

from __future__ import annotations

import hmac
import ipaddress
from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from domain.common.errors import error_body, json_not_found
from domain.common.metrics import render

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _networks(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def _from_allowed_network(address: str | None, cidrs: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:  # ::ffff:10.0.0.5
        ip = ip.ipv4_mapped
    return any(ip in network for network in _networks(cidrs) if network.version == ip.version)


def _has_token(request: HttpRequest, token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                              token.encode())


def _refusal(request: HttpRequest) -> HttpResponse | None:
    token = settings.METRICS_TOKEN
    cidrs = tuple(settings.METRICS_ALLOWED_NETWORKS)
    if not token and not cidrs:
        return json_not_found(request)
    if token and _has_token(request, token):
        return None
    if cidrs and _from_allowed_network(request.META.get("REMOTE_ADDR"), cidrs):
        return None
    return JsonResponse(error_body(
        "metrics_forbidden",
        "Scraping /metrics needs the scrape token (Authorization: Bearer …) or a peer address "
        "in METRICS_ALLOWED_NETWORKS."), status=403)


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    refusal = _refusal(request)
    if refusal is not None:
        return refusal
    body, content_type = render(request.headers.get("Accept", ""))
    response = HttpResponse(body, content_type=content_type)
    response["Cache-Control"] = "no-store"
    return response
