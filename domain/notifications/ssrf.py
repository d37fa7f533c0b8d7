"""The SSRF guard: webhooks go only to public addresses, or to networks named in
WEBHOOK_ALLOWED_NETWORKS.

A URL is checked when an endpoint is registered (or its URL changed) and again at every
connection a delivery opens. The check at delivery is the resolver of the HTTP client
(domain/notifications/sender.py): the addresses it approves are the ones the connection is
made to, so there is no second lookup for a rebinding DNS server to answer differently.

`lookup` is the one place a name becomes addresses (the system resolver, getaddrinfo). Tests
replace it to play a DNS server whose answer changes between two lookups, which getaddrinfo
cannot be made to do on a test machine.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from functools import lru_cache
from urllib.parse import urlsplit

from django.conf import settings

from domain.common.errors import PermanentError, ValidationFailed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud metadata services that are not all inside link-local ranges.
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200"))


class UnsafeAddress(PermanentError):
    """A webhook host resolved to an address the guard refuses. Not an OSError on purpose:
    the HTTP client would wrap one as a DNS failure and retry it."""


def _system_lookup(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


lookup: Callable[[str, int], list[str]] = _system_lookup


@lru_cache(maxsize=8)
def _networks(spec: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(n.strip(), strict=False) for n in spec if n.strip())


def allowed_networks() -> tuple:
    return _networks(tuple(settings.WEBHOOK_ALLOWED_NETWORKS))


def address_allowed(address: str | IPAddress) -> bool:
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if any(ip in network for network in allowed_networks()):
        return True
    if ip in METADATA_ADDRESSES:
        return False
    # is_global is False for loopback, private, link-local, shared (100.64/10), reserved,
    # unspecified and documentation ranges; multicast is refused besides.
    return ip.is_global and not ip.is_multicast


def checked_addresses(host: str, port: int) -> list[str]:
    """The addresses of `host`, every one of them allowed; UnsafeAddress otherwise."""
    try:
        addresses = [str(ipaddress.ip_address(host.strip("[]")))]
    except ValueError:
        addresses = lookup(host, port)
    refused = [a for a in addresses if not address_allowed(a)]
    if refused:
        raise UnsafeAddress(f"{host} resolves to {', '.join(refused)}, which is not a public "
                            "address (allow it with WEBHOOK_ALLOWED_NETWORKS)")
    if not addresses:
        raise UnsafeAddress(f"{host} resolves to no address")
    return addresses


def check_url(url: str) -> None:
    """At registration: refuse (422 unsafe_url) what the guard would refuse at delivery."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValidationFailed("A webhook URL must be http or https.", code="unsafe_url",
                               details={"url": url})
    if not parts.hostname:
        raise ValidationFailed("A webhook URL needs a host.", code="unsafe_url",
                               details={"url": url})
    if parts.username or parts.password:
        raise ValidationFailed("A webhook URL may not carry a user or password.",
                               code="unsafe_url", details={"url": url})
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ValidationFailed("The webhook URL's port is not valid.", code="unsafe_url",
                               details={"url": url}) from None
    try:
        checked_addresses(parts.hostname, port)
    except UnsafeAddress as exc:
        raise ValidationFailed(f"Refused: {exc}.", code="unsafe_url",
                               details={"url": url}) from None
    except (OSError, UnicodeError) as exc:
        raise ValidationFailed(f"The webhook URL's host does not resolve: {exc}.",
                               code="unresolvable_url", details={"url": url}) from None
