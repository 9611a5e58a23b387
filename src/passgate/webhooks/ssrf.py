"""Refuse webhook URLs that would make Passgate call into its own network (server-side request forgery).

A business controls its webhook URL, so without this check it could point Passgate at the cloud metadata
service, an admin port on localhost or anything else reachable only from inside the operator's network.
:func:`check_url` parses the URL, resolves the host with an injected resolver and judges every address;
:func:`is_forbidden_address` is the judgement itself. Both are pure apart from the resolver, which tests
replace with a dictionary.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]

DEFAULT_PORTS = {"https": 443, "http": 80}


class ForbiddenTargetError(ValueError):
    """The URL may not be used as a webhook target; ``field`` names the offending input for the API error."""

    def __init__(self, message: str, field: str = "url") -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class UnresolvableTargetError(ForbiddenTargetError):
    """The host did not resolve to any address.

    Still a :class:`ForbiddenTargetError` (nothing is called), but a delivery worker may treat it as
    transient and retry, whereas a forbidden address is a configuration problem.
    """


# IANA special-purpose ranges, spelled out rather than taken from ``ipaddress``'s is_private/is_global,
# whose membership has changed between Python releases.
_FORBIDDEN_V4 = tuple(
    ipaddress.IPv4Network(network)
    for network in (
        "0.0.0.0/8",  # "this network"; Linux connects 0.0.0.0 to the local host
        "10.0.0.0/8",
        "100.64.0.0/10",  # shared address space: carrier-grade NAT, often the cloud provider's own network
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, where cloud metadata services live (169.254.169.254)
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",  # retired 6to4 relay anycast
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",  # reserved, and 255.255.255.255
    )
)

# Outside 2000::/3 nothing is ordinary global unicast: loopback, unspecified, IPv4-compatible, unique
# local fc00::/7, link-local fe80::/10, site-local fec0::/10, multicast ff00::/8, discard 100::/64, reserved.
_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")
_NAT64_V6 = ipaddress.IPv6Network("64:ff9b::/96")
_FORBIDDEN_V6 = tuple(
    ipaddress.IPv6Network(network)
    for network in (
        "2001::/23",  # IETF protocol assignments; Teredo (2001::/32) inside it is judged by what it embeds
        "2001:db8::/32",
        "3fff::/20",
    )
)


def is_forbidden_address(ip: IPAddress) -> bool:
    """True for any address that is not ordinary public unicast, judging embedded IPv4 addresses as IPv4."""
    if isinstance(ip, ipaddress.IPv4Address):
        return any(ip in network for network in _FORBIDDEN_V4)
    # Transition forms carry an IPv4 address the packets end up at, so that address is what counts.
    if ip.ipv4_mapped is not None:
        return is_forbidden_address(ip.ipv4_mapped)
    if ip in _NAT64_V6:
        return is_forbidden_address(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if ip not in _GLOBAL_UNICAST_V6:
        return True
    if ip.sixtofour is not None:
        return is_forbidden_address(ip.sixtofour)
    if ip.teredo is not None:
        server, client = ip.teredo
        return is_forbidden_address(server) or is_forbidden_address(client)
    return any(ip in network for network in _FORBIDDEN_V6)


@dataclass(frozen=True, slots=True)
class CheckedUrl:
    """A webhook URL that passed :func:`check_url`, with the addresses it was judged on.

    ``url`` is the URL rebuilt from the normalised parts (fragment dropped, host lowercased and IDNA-encoded,
    numeric IPv4 tricks written out), so the request goes to the host that was checked. ``addresses`` are
    the resolved addresses in resolver order, without duplicates.
    """

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[IPAddress, ...]


def system_resolver(host: str, port: int) -> list[str]:
    """Resolve with the operating system (``getaddrinfo``); blocks, and raises ``OSError`` on failure."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]) for info in infos]


def check_url(
    url: str,
    *,
    allow_private: bool = False,
    allow_http: bool = False,
    resolve: Resolver = system_resolver,
) -> CheckedUrl:
    """Parse, resolve and judge a webhook URL; raise :class:`ForbiddenTargetError` if it may not be called.

    ``resolve(host, port)`` returns address strings and may raise ``OSError``; the default,
    :func:`system_resolver`, blocks, so async code should call this in a worker thread. IP literals are
    never resolved.

    How the caller must use the result, because a second DNS lookup could answer differently (DNS
    rebinding): call ``check_url`` right before every delivery attempt, not only when the URL is saved; open
    the TCP connection to one of ``addresses`` (in order) and never to a fresh resolution of ``host``; send
    ``host`` in the Host header and, for https, as the TLS SNI name and the name the certificate is verified
    against, so TLS still authenticates the business's server. With httpx that means a transport whose
    connect step dials the pinned address (or requesting the address with a ``Host`` header and the
    ``sni_hostname`` extension). Never follow redirects: the new location would be an unchecked target.
    """
    if any(ch.isspace() or not ch.isprintable() or ch == "\\" for ch in url):
        # Parsers disagree on these (browsers read "\" as "/"), and a disagreement is a way around the check.
        raise ForbiddenTargetError("the URL may not contain spaces, control characters or backslashes")
    try:
        parts = urlsplit(url)
        explicit_port = parts.port
    except ValueError:
        raise ForbiddenTargetError("the URL is not valid") from None

    scheme = parts.scheme
    if scheme != "https" and not (scheme == "http" and allow_http):
        raise ForbiddenTargetError(
            "the URL must use https" if not allow_http else "the URL must use http or https"
        )
    if "@" in parts.netloc:
        raise ForbiddenTargetError("the URL may not contain a user name or password")
    if not parts.hostname:
        raise ForbiddenTargetError("the URL needs a host")
    port = DEFAULT_PORTS[scheme] if explicit_port is None else explicit_port
    if not 1 <= port <= 65535:
        raise ForbiddenTargetError("the URL's port must be between 1 and 65535")

    literal = _ip_literal(parts.netloc, parts.hostname)
    if literal is not None:
        host = str(literal)
        addresses: tuple[IPAddress, ...] = (literal,)
    else:
        host = _normalise_hostname(parts.hostname)
        if not allow_private and (host == "localhost" or host.endswith(".localhost")):
            # RFC 6761 reserves these names for loopback whatever DNS says.
            raise ForbiddenTargetError("the URL may not point at localhost")
        addresses = _resolve(resolve, host, port)

    if not allow_private and any(is_forbidden_address(address) for address in addresses):
        # The address is not named: echoing it would let a console user map the operator's internal DNS.
        raise ForbiddenTargetError(
            "the URL's host is or resolves to a private, loopback, link-local or reserved address"
        )

    url_host = f"[{host}]" if ":" in host else host
    netloc = url_host if port == DEFAULT_PORTS[scheme] else f"{url_host}:{port}"
    query = f"?{parts.query}" if parts.query else ""
    return CheckedUrl(
        url=f"{scheme}://{netloc}{parts.path or '/'}{query}",
        scheme=scheme,
        host=host,
        port=port,
        addresses=addresses,
    )


def _resolve(resolve: Resolver, host: str, port: int) -> tuple[IPAddress, ...]:
    try:
        answers = resolve(host, port)
    except OSError:
        raise UnresolvableTargetError("the URL's host could not be resolved") from None
    addresses: list[IPAddress] = []
    for answer in answers:
        try:
            address = ipaddress.ip_address(answer)
        except ValueError:
            # Fail closed: an answer that cannot be judged is not called.
            raise ForbiddenTargetError(
                "the URL's host resolved to something that is not an address"
            ) from None
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise UnresolvableTargetError("the URL's host could not be resolved")
    return tuple(addresses)


def _ip_literal(netloc: str, hostname: str) -> IPAddress | None:
    """The address a host names directly, in any spelling a resolver or browser would accept, else None."""
    if netloc.startswith("["):
        if "%" in hostname:
            # Zone ids only make sense for link-local addresses, which are refused anyway.
            raise ForbiddenTargetError("the URL may not contain an IPv6 zone id")
        try:
            return ipaddress.IPv6Address(hostname)
        except ValueError:
            raise ForbiddenTargetError("the URL's IPv6 address is not valid") from None
    return _legacy_ipv4(_to_ascii(hostname).removesuffix("."))


def _legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """Parse IPv4 the way inet_aton and the WHATWG URL standard do: 1-4 parts, hex/octal/decimal.

    ``2130706433``, ``0x7f.1`` and ``0177.0.0.1`` are all 127.0.0.1 to getaddrinfo and to browsers, so they
    must be to this check as well. A host whose last label is a number but which is not a valid address is
    refused rather than handed to DNS, where some resolver might read it yet another way.
    """
    labels = host.split(".")
    if not _is_number_like(labels[-1]):
        return None
    numbers = [_ipv4_number(label) for label in labels]
    valid = [number for number in numbers if number is not None]
    if len(labels) > 4 or len(valid) != len(labels) or any(number > 255 for number in valid[:-1]):
        raise ForbiddenTargetError("the URL's host looks like an IPv4 address but is not a valid one")
    if valid[-1] >= 256 ** (5 - len(valid)):
        raise ForbiddenTargetError("the URL's host looks like an IPv4 address but is not a valid one")
    value = valid[-1]
    for index, number in enumerate(valid[:-1]):
        value += number << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def _is_number_like(label: str) -> bool:
    return (label != "" and label.isascii() and label.isdigit()) or _ipv4_number(label) is not None


def _ipv4_number(label: str) -> int | None:
    if not label:
        return None
    if label.startswith(("0x", "0X")):
        digits, base, alphabet = label[2:], 16, "0123456789abcdefABCDEF"
    elif len(label) > 1 and label.startswith("0"):
        digits, base, alphabet = label[1:], 8, "01234567"
    else:
        digits, base, alphabet = label, 10, "0123456789"
    # Checked by hand because int() would also accept "+", "_" and surrounding whitespace.
    if any(ch not in alphabet for ch in digits):
        return None
    return int(digits, base) if digits else 0


_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")


def _to_ascii(hostname: str) -> str:
    if hostname.isascii():
        return hostname.lower()
    try:
        # IDNA maps look-alikes such as full-width digits and "。" to ASCII before the numeric check runs.
        return hostname.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise ForbiddenTargetError("the URL's host is not a valid domain name") from None


def _normalise_hostname(hostname: str) -> str:
    host = _to_ascii(hostname).removesuffix(".")
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in host.split(".")):
        raise ForbiddenTargetError("the URL's host is not a valid domain name")
    return host
