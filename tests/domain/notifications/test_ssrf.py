"""The SSRF guard's rules: which addresses a webhook may reach, what a name's lookup must
answer, and what registration refuses with which code. Delivery-time refusals (a rebinding
name) are in tests/flows/test_webhook_delivery.py, on a real worker and a real receiver."""

import pytest

from domain.common.errors import PermanentError, ValidationFailed
from domain.notifications import ssrf


@pytest.mark.parametrize("address", [
    "127.0.0.2",  # loopback outside the allowed 127.0.0.1/32
    "127.255.255.254",
    "10.0.0.1",  # private
    "172.16.5.4",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata, link-local
    "169.254.170.2",
    "100.100.100.200",  # Alibaba's metadata, in the shared range
    "100.64.0.1",  # shared address space (carrier-grade NAT)
    "0.0.0.0",  # noqa: S104 - unspecified (an address judged, not bound)
    "192.0.2.10",  # documentation
    "224.0.0.1",  # multicast
    "239.255.255.250",
    "240.0.0.1",  # reserved
    "255.255.255.255",
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "fd00:ec2::254",
    "ff02::1",
    "::ffff:127.0.0.2",  # IPv4-mapped: judged as the IPv4 address it carries
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
])
def test_non_public_addresses_are_refused(address):
    # given the test settings (only 127.0.0.1/32 allowed)
    # when the guard judges the address, then it is refused
    assert not ssrf.address_allowed(address)


@pytest.mark.parametrize("address", [
    "8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111",
    "127.0.0.1",  # the allowed network of the test settings
    "::ffff:127.0.0.1",  # the same address, mapped
])
def test_public_and_explicitly_allowed_addresses_pass(address):
    # given the test settings, when the guard judges the address, then it passes
    assert ssrf.address_allowed(address)


def test_the_allowed_networks_come_from_the_setting(settings):
    # given a setting that allows a private network and not loopback
    settings.WEBHOOK_ALLOWED_NETWORKS = ["10.1.0.0/16", " "]

    # when the guard judges addresses in, next to and outside it
    # then only the named network is let through
    assert ssrf.address_allowed("10.1.200.3")
    assert not ssrf.address_allowed("10.2.0.1")
    assert not ssrf.address_allowed("127.0.0.1")


def test_with_no_allowed_network_even_the_test_loopback_is_refused(settings):
    # given production's default (no network allowed)
    settings.WEBHOOK_ALLOWED_NETWORKS = []

    # when / then
    assert not ssrf.address_allowed("127.0.0.1")
    assert ssrf.address_allowed("8.8.8.8")


def _dns(monkeypatch, answers: dict[str, list[str]]) -> list[str]:
    """Play a DNS server: `answers` by name; answers the list of names looked up."""
    asked: list[str] = []

    def lookup(host: str, port: int) -> list[str]:
        asked.append(host)
        return list(answers[host])

    monkeypatch.setattr(ssrf, "lookup", lookup)
    return asked


def test_every_address_of_a_name_must_be_allowed(monkeypatch):
    # given a name with a public and a private address (one A record pointing inside)
    _dns(monkeypatch, {"mixed.test": ["8.8.8.8", "10.0.0.7"], "public.test": ["8.8.8.8",
                                                                            "1.1.1.1"]})

    # when the guard checks both names
    # then the mixed one is refused, naming the private address; the public one passes whole
    with pytest.raises(ssrf.UnsafeAddress, match=r"10\.0\.0\.7"):
        ssrf.checked_addresses("mixed.test", 443)
    assert ssrf.checked_addresses("public.test", 443) == ["8.8.8.8", "1.1.1.1"]


def test_a_name_without_addresses_is_refused(monkeypatch):
    # given a name the DNS answers with nothing
    _dns(monkeypatch, {"empty.test": []})

    # when / then
    with pytest.raises(ssrf.UnsafeAddress, match="no address"):
        ssrf.checked_addresses("empty.test", 80)


def test_an_address_literal_is_judged_without_a_lookup(monkeypatch):
    # given a DNS that would fail the test if asked
    asked = _dns(monkeypatch, {})

    # when the guard checks literal addresses (IPv6 as a URL brackets it)
    # then they are judged as they are, with no lookup
    assert ssrf.checked_addresses("127.0.0.1", 80) == ["127.0.0.1"]
    with pytest.raises(ssrf.UnsafeAddress):
        ssrf.checked_addresses("[::1]", 80)
    assert asked == []


def test_the_refusal_is_permanent_and_not_an_os_error():
    # given the error a refused address raises at delivery
    # then it fails the attempt for good, and is not an OSError (which the HTTP client would
    # take for a DNS failure, and its caller would retry)
    assert issubclass(ssrf.UnsafeAddress, PermanentError)
    assert not issubclass(ssrf.UnsafeAddress, OSError)


@pytest.mark.parametrize("url", [
    "ftp://127.0.0.1/hook",
    "file:///etc/passwd",
    "gopher://127.0.0.1:70/",
    "http://user:pass@127.0.0.1:8000/hook",
    "http://user@127.0.0.1:8000/hook",
    "http:///hook",
    "http://127.0.0.1:99999/hook",
    "http://127.0.0.2:8000/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.1/",
    "http://[::1]:8000/",
    "http://[::ffff:169.254.169.254]/",
    "http://0.0.0.0:8000/",
])
def test_registration_refuses_an_unsafe_url(url):
    # given a URL the guard must refuse
    # when it is checked at registration
    with pytest.raises(ValidationFailed) as refused:
        ssrf.check_url(url)

    # then the refusal is unsafe_url, naming the URL
    assert refused.value.code == "unsafe_url"
    assert refused.value.details == {"url": url}


def test_registration_refuses_a_name_that_resolves_inside(monkeypatch):
    # given a name whose only address is private
    _dns(monkeypatch, {"internal.test": ["192.168.0.10"]})

    # when / then
    with pytest.raises(ValidationFailed) as refused:
        ssrf.check_url("https://internal.test/hook")
    assert refused.value.code == "unsafe_url"


def test_registration_refuses_a_name_that_does_not_resolve():
    # given a name in a domain reserved never to resolve (RFC 2606), asked of the real resolver
    # when it is checked, then it is unresolvable_url, not unsafe_url
    with pytest.raises(ValidationFailed) as refused:
        ssrf.check_url("https://no-such-host.invalid/hook")
    assert refused.value.code == "unresolvable_url"


def test_registration_accepts_a_public_name_and_asks_with_the_scheme_port(monkeypatch):
    # given a name with a public address
    ports = []

    def lookup(host: str, port: int) -> list[str]:
        ports.append(port)
        return ["93.184.216.34"]

    monkeypatch.setattr(ssrf, "lookup", lookup)

    # when https and http URLs without a port, and one with a port, are checked
    ssrf.check_url("https://hooks.example.test/a")
    ssrf.check_url("http://hooks.example.test/a")
    ssrf.check_url("http://hooks.example.test:8443/a")

    # then each passed, the lookup asked with the port the connection will use
    assert ports == [443, 80, 8443]
