"""`GET /metrics`: the Prometheus exposition, for a scraper holding the token or coming from an
allowed network (README "Metrics").

A plain Django view, as the health probes are: its answer is Prometheus text, not the API's
JSON, and its caller is a scraper with a token of its own, not an API key with scopes. Its
refusals are the API's JSON error shape. What it shows: every counter and histogram summed in
Redis (domain/common/metrics.py), every gauge set (domain/common/gauges.py), and whether each
source answered (`conveyor_metrics_source_up`), rendered by prometheus_client's exposition.

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
import logging
from collections.abc import Iterator
from functools import lru_cache

import redis
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from domain.common.errors import error_body, json_not_found
from domain.common.gauges import REDIS_DOWN, Scrape, current_scrape, gauge_sets
from domain.common.metrics import families, family_key, try_flush
from domain.common.redis import redis_client

logger = logging.getLogger(__name__)
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


SOURCE_UP = "conveyor_metrics_source_up"


class _RedisCollector(Collector):
    """What the endpoint shows: the summed counters and histograms, every gauge set, and
    whether each source answered."""

    def describe(self) -> list[Metric]:
        return []  # unknown until collected; keeps the registry from collecting on register

    def collect(self) -> Iterator[Metric]:
        scrape = current_scrape.get() or Scrape()
        up = GaugeMetricFamily(SOURCE_UP, "1 if this source answered the scrape, 0 if not "
                               "(its metrics are missing from this scrape).", labels=["source"])
        declared = families()
        stored = self._counters(scrape, sorted(declared))
        up.add_metric(["counters"], 0 if stored is None else 1)
        for name, values in (stored or {}).items():
            yield declared[name].family(values)
        token = current_scrape.set(scrape)
        try:
            for source, gauges in sorted(gauge_sets().items()):
                try:
                    values = gauges.current()
                except Exception as exc:  # noqa: BLE001 - any failure: this source is down
                    logger.warning("metrics: gauges %s failed error=%r", source, exc)
                    up.add_metric([source], 0)
                    continue
                up.add_metric([source], 1)
                yield from gauges.families(values)
        finally:
            current_scrape.reset(token)
        yield up

    @staticmethod
    def _counters(scrape: Scrape, names: list[str]) -> dict[str, dict[bytes, bytes]] | None:
        """Every counter's and histogram's hash (one pipeline); None if Redis did not answer."""
        if "redis" in scrape.down:
            return None
        try:
            pipe = redis_client().pipeline(transaction=False)
            for name in names:
                pipe.hgetall(family_key(name))
            return dict(zip(names, pipe.execute(), strict=True))
        except redis.exceptions.RedisError as exc:
            logger.warning("metrics: counters unreadable, Redis did not answer error=%r", exc)
            if isinstance(exc, REDIS_DOWN):
                scrape.down.add("redis")
            return None


_registry = CollectorRegistry(auto_describe=False)
_registry.register(_RedisCollector())


def render(accept: str = "") -> tuple[bytes, str]:
    """The exposition (Prometheus text, or OpenMetrics if `accept` asks for it) and its
    content type. This process's own counts are flushed first, so they are in it."""
    scrape = Scrape()
    if isinstance(try_flush(), REDIS_DOWN):
        scrape.down.add("redis")
    encoder, content_type = choose_encoder(accept)
    token = current_scrape.set(scrape)
    try:
        return encoder(_registry), content_type
    finally:
        current_scrape.reset(token)


# --- Who may scrape --------------------------------------------------------------------------

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
