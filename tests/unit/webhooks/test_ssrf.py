import ipaddress
import socket
import sys

import pytest

from passgate.webhooks.ssrf import (
    CheckedUrl,
    ForbiddenTargetError,
    UnresolvableTargetError,
    check_url,
    is_forbidden_address,
)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to resolve or connect fails the test: everything here must stay offline."""

    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to use the network")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "gethostbyname", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


class FakeResolver:
    """Maps host names to address strings and records what it was asked."""

    def __init__(self, answers):
        self.answers = answers
        self.calls = []

    def __call__(self, host, port):
        self.calls.append((host, port))
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(self.answers[host])


@pytest.fixture
def resolver():
    return FakeResolver(
        {
            "hooks.example.com": ["93.184.215.14"],
            "v6.example.com": ["2606:4700:4700::1111", "93.184.215.14", "2606:4700:4700::1111"],
            "mixed.example.com": ["93.184.215.14", "10.0.0.5"],
            "internal.example.com": ["10.1.2.3"],
            "metadata.example.com": ["169.254.169.254"],
            "mapped.example.com": ["::ffff:127.0.0.1"],
            "ula.example.com": ["fd00::1"],
            "127.0.0.1.nip.io": ["127.0.0.1"],
            "empty.example.com": [],
            "garbage.example.com": ["not-an-address"],
            "localhost": ["127.0.0.1", "::1"],
            "xn--bcher-kva.example": ["93.184.215.14"],
        }
    )


def never_resolve(host, port):
    raise AssertionError(f"{host} should not have been resolved")


# --- is_forbidden_address --------------------------------------------------------------------------------

FORBIDDEN = {
    "loopback": ["127.0.0.1", "127.255.255.254", "::1"],
    "private": [
        "10.0.0.1",
        "10.255.255.255",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "fc00::1",
        "fd12::1",
    ],
    "link-local": ["169.254.169.254", "169.254.0.1", "fe80::1", "febf::1", "fe80::1%eth0"],
    "multicast": ["224.0.0.1", "239.255.255.250", "ff02::1", "ff0e::1"],
    "reserved": ["240.0.0.1", "255.255.255.255", "192.0.0.8", "100::1", "4000::1", "::8.8.8.8"],
    "unspecified": ["0.0.0.0", "0.1.2.3", "::"],
    "shared address space": ["100.64.0.1", "100.127.255.254"],
    "benchmarking": ["198.18.0.1", "198.19.255.255", "2001:2::1"],
    "documentation": ["192.0.2.1", "198.51.100.7", "203.0.113.9", "2001:db8::1", "3fff::1"],
    "site-local": ["fec0::1", "feff::1"],
    "ipv4-mapped": ["::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::ffff:0.0.0.0"],
    "nat64": ["64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b:1::808:808"],
    "6to4": ["2002:7f00:1::1", "2002:c0a8:101::1", "2002:a9fe:a9fe::"],
    # Teredo keeps the client's IPv4 address inverted in the last 32 bits: ~3f57:fefe is 192.168.1.1.
    "ietf protocol assignments": ["2001:1::1", "2001:3::1", "2001:1ff::1"],
    "teredo": ["2001:0:808:808::3f57:fefe", "2001:0:a00:1::f7f7:f7f7"],
}

ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.215.14",
    "172.32.0.1",
    "100.128.0.1",
    "192.169.0.1",
    "11.0.0.1",
    "2606:4700:4700::1111",
    "2001:4860:4860::8888",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
    "2002:808:808::1",
    "2001:0:808:808::f7f7:f7f7",
]


@pytest.mark.parametrize(
    "address", [pytest.param(a, id=f"{kind}-{a}") for kind, addresses in FORBIDDEN.items() for a in addresses]
)
def test_non_public_addresses_are_forbidden(address):
    assert is_forbidden_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ALLOWED)
def test_ordinary_global_addresses_are_allowed(address):
    assert not is_forbidden_address(ipaddress.ip_address(address))


def test_every_category_covers_both_families_where_it_exists():
    for kind in ("loopback", "private", "link-local", "multicast", "reserved", "unspecified", "ipv4-mapped"):
        versions = {ipaddress.ip_address(a).version for a in FORBIDDEN[kind]}
        # An IPv4-mapped address is IPv6 by family, so that row only needs IPv6.
        assert versions == ({6} if kind == "ipv4-mapped" else {4, 6}), kind


# --- check_url: accepted URLs --------------------------------------------------------------------------


def test_public_host_is_accepted_and_the_checked_addresses_returned(resolver):
    checked = check_url("https://hooks.example.com/kount/events?tenant=7", resolve=resolver)

    assert checked == CheckedUrl(
        url="https://hooks.example.com/kount/events?tenant=7",
        scheme="https",
        host="hooks.example.com",
        port=443,
        addresses=(ipaddress.ip_address("93.184.215.14"),),
    )
    assert resolver.calls == [("hooks.example.com", 443)]


def test_addresses_keep_resolver_order_without_duplicates(resolver):
    checked = check_url("https://v6.example.com:8443/", resolve=resolver)

    assert checked.addresses == (
        ipaddress.ip_address("2606:4700:4700::1111"),
        ipaddress.ip_address("93.184.215.14"),
    )
    assert checked.port == 8443
    assert checked.url == "https://v6.example.com:8443/"


def test_url_is_normalised_to_what_was_checked(resolver):
    checked = check_url("HTTPS://Hooks.Example.COM.:443#fragment", resolve=resolver)

    assert checked.url == "https://hooks.example.com/"
    assert checked.host == "hooks.example.com"


def test_international_domain_is_resolved_in_its_ascii_form(resolver):
    checked = check_url("https://bücher.example/hook", resolve=resolver)

    assert checked.host == "xn--bcher-kva.example"
    assert resolver.calls == [("xn--bcher-kva.example", 443)]


def test_public_ip_literals_are_accepted_without_resolving():
    assert check_url("https://8.8.8.8/hook", resolve=never_resolve).addresses == (
        ipaddress.ip_address("8.8.8.8"),
    )
    checked = check_url("https://[2606:4700:4700::1111]:8443/hook", resolve=never_resolve)
    assert checked.addresses == (ipaddress.ip_address("2606:4700:4700::1111"),)
    assert checked.url == "https://[2606:4700:4700::1111]:8443/hook"


# --- check_url: forbidden targets ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "mixed.example.com",
        "internal.example.com",
        "metadata.example.com",
        "mapped.example.com",
        "ula.example.com",
        "127.0.0.1.nip.io",
    ],
)
def test_host_resolving_to_any_non_public_address_is_refused(resolver, host):
    with pytest.raises(ForbiddenTargetError) as excinfo:
        check_url(f"https://{host}/hook", resolve=resolver)

    assert excinfo.value.field == "url"
    # The resolved address is not echoed back to whoever typed the URL.
    assert not any(part in str(excinfo.value) for part in ("10.", "127.", "169.254", "::"))


def test_allow_private_admits_a_mix_of_public_and_private(resolver):
    checked = check_url("https://mixed.example.com/hook", allow_private=True, resolve=resolver)

    assert checked.addresses == (ipaddress.ip_address("93.184.215.14"), ipaddress.ip_address("10.0.0.5"))


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/x",
        "https://[::1]/x",
        "https://[::ffff:127.0.0.1]/x",
        "https://[::ffff:7f00:1]/x",
        "https://169.254.169.254/latest/meta-data/",
        "https://[fe80::1]/x",
        "https://0.0.0.0/x",
        "https://10.0.0.1:8080/x",
        "https://224.0.0.1/x",
        "http://2130706433/",
        "http://0x7f.1/",
        "http://0x7f000001/",
        "http://0177.0.0.1/",
        "http://0177.1/",
        "http://127.1/",
        "http://127.0.1/",
        "http://0/",
        "http://0x/",
        "http://127.0.0.1./",
        "http://0xA9.0xFE.0xA9.0xFE/",
        "http://2852039166/",
        "http://１２７.０.０.１/",
        "http://127。0。0。1/",
    ],
)
def test_ip_literals_in_every_spelling_are_judged_without_resolving(url):
    with pytest.raises(ForbiddenTargetError) as excinfo:
        check_url(url, allow_http=True, resolve=never_resolve)

    assert not isinstance(excinfo.value, UnresolvableTargetError)


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("http://2130706433/", "127.0.0.1"),
        ("http://0x7f.1/", "127.0.0.1"),
        ("http://0177.0.0.1/", "127.0.0.1"),
        ("http://127.1/", "127.0.0.1"),
        ("http://0xA9.0xFE.0xA9.0xFE/", "169.254.169.254"),
        ("http://１２７.０.０.１/", "127.0.0.1"),
        ("http://134744072/", "8.8.8.8"),
    ],
)
def test_numeric_ipv4_spellings_normalise_to_the_address(url, address):
    checked = check_url(url, allow_private=True, allow_http=True, resolve=never_resolve)

    assert checked.addresses == (ipaddress.ip_address(address),)
    assert checked.host == address
    assert checked.url == f"http://{address}/"


@pytest.mark.skipif(sys.platform != "linux", reason="compares with glibc's inet_aton")
@pytest.mark.parametrize(
    "host",
    ["2130706433", "0x7f.1", "0177.0.0.1", "127.1", "127.0.1", "0x7f000001", "0", "10.0x0.0377", "1.2.3.4"],
)
def test_numeric_ipv4_parsing_agrees_with_inet_aton(host):
    expected = ipaddress.IPv4Address(socket.inet_aton(host))

    checked = check_url(f"https://{host}/", allow_private=True, resolve=never_resolve)

    assert checked.addresses == (expected,)


@pytest.mark.parametrize(
    "url",
    [
        "https://1.2.3.4.5/",
        "https://256.0.0.1/",
        "https://0x100000000/",
        "https://08.0.0.1/",
        "https://1.2.3.09/",
    ],
)
def test_hosts_that_look_numeric_but_are_not_addresses_are_refused(url):
    with pytest.raises(ForbiddenTargetError):
        check_url(url, allow_private=True, resolve=never_resolve)


@pytest.mark.parametrize(
    "url",
    [
        "https://localhost/hook",
        "https://LOCALHOST:8443/",
        "https://localhost./",
        "https://api.localhost/hook",
    ],
)
def test_localhost_is_refused_before_resolving(url):
    with pytest.raises(ForbiddenTargetError, match="localhost"):
        check_url(url, resolve=never_resolve)


def test_allow_private_admits_loopback(resolver):
    checked = check_url("https://localhost:8443/hook", allow_private=True, resolve=resolver)

    assert checked.addresses == (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))
    assert check_url("https://[::1]/hook", allow_private=True, resolve=never_resolve).addresses == (
        ipaddress.ip_address("::1"),
    )


@pytest.mark.parametrize("host", ["empty.example.com", "nxdomain.example.com"])
def test_host_that_resolves_to_nothing_is_refused(resolver, host):
    with pytest.raises(UnresolvableTargetError) as excinfo:
        check_url(f"https://{host}/", allow_private=True, resolve=resolver)

    assert isinstance(excinfo.value, ForbiddenTargetError)
    assert isinstance(excinfo.value, ValueError)


def test_resolver_answer_that_is_not_an_address_is_refused(resolver):
    with pytest.raises(ForbiddenTargetError):
        check_url("https://garbage.example.com/", allow_private=True, resolve=resolver)


# --- check_url: malformed or disallowed URLs -------------------------------------------------------------


def test_http_is_refused_unless_allowed(resolver):
    with pytest.raises(ForbiddenTargetError, match="https"):
        check_url("http://hooks.example.com/hook", resolve=resolver)

    checked = check_url("http://hooks.example.com/hook", allow_http=True, resolve=resolver)
    assert (checked.scheme, checked.port) == ("http", 80)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://hooks.example.com/",
        "file:///etc/passwd",
        "gopher://hooks.example.com/",
        "ws://hooks.example.com/",
        "hooks.example.com/hook",
        "//hooks.example.com/hook",
        "",
    ],
)
def test_other_schemes_are_refused(resolver, url):
    with pytest.raises(ForbiddenTargetError):
        check_url(url, allow_http=True, allow_private=True, resolve=resolver)


@pytest.mark.parametrize(
    "url",
    [
        "https://user:pass@hooks.example.com/",
        "https://user@hooks.example.com/",
        "https://:pass@hooks.example.com/",
        "https://@hooks.example.com/",
        "https://hooks.example.com:443@127.0.0.1/",
    ],
)
def test_credentials_in_the_url_are_refused(resolver, url):
    with pytest.raises(ForbiddenTargetError, match="user name or password"):
        check_url(url, allow_private=True, resolve=resolver)


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com:0/",
        "https://hooks.example.com:65536/",
        "https://hooks.example.com:99999/",
        "https://hooks.example.com:http/",
        "https://hooks.example.com:-1/",
    ],
)
def test_ports_outside_the_range_are_refused(resolver, url):
    with pytest.raises(ForbiddenTargetError):
        check_url(url, resolve=resolver)


def test_highest_port_is_accepted(resolver):
    assert check_url("https://hooks.example.com:65535/", resolve=resolver).port == 65535


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com\\@127.0.0.1/",
        "https://hooks.example.com /",
        "https://hooks.example.com\t/",
        " https://hooks.example.com/",
        "https://hooks.example.com/\r\nHost: 127.0.0.1",
        "https://hooks.example.com\x00.evil/",
        "https://hooks\u200b.example.com/",
    ],
)
def test_whitespace_control_characters_and_backslashes_are_refused(resolver, url):
    with pytest.raises(ForbiddenTargetError):
        check_url(url, resolve=resolver)


@pytest.mark.parametrize(
    "url",
    [
        "https:///hook",
        "https://:443/hook",
        "https://hooks..example.com/",
        "https://-hooks.example.com/",
        "https://%31%32%37.0.0.1/",
        "https://hooks.exa*mple.com/",
        "https://" + "a" * 64 + ".example.com/",
        "https://[::1/",
        "https://[127.0.0.1]/",
        "https://[v1.fe]/",
    ],
)
def test_missing_or_invalid_hosts_are_refused(resolver, url):
    with pytest.raises(ForbiddenTargetError):
        check_url(url, allow_private=True, resolve=resolver)


def test_ipv6_zone_ids_are_refused_even_when_private_targets_are_allowed():
    with pytest.raises(ForbiddenTargetError, match="zone"):
        check_url("https://[fe80::1%25eth0]/hook", allow_private=True, resolve=never_resolve)


def test_transient_resolver_failure_is_distinguishable(resolver):
    def flaky(host, port):
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    with pytest.raises(UnresolvableTargetError):
        check_url("https://hooks.example.com/", resolve=flaky)
