"""HTTP for webhook deliveries: check the target before every try and connect only to what was checked.

A business controls its webhook URL and its DNS, so the name could resolve to a public address when
checked and to 169.254.169.254 a millisecond later when the HTTP client looks it up again (DNS
rebinding). Here the name is resolved once, per try, by `ssrf.check_url`; the connection then goes to one
of exactly those addresses: `PinnedNetworkBackend` replaces httpcore's own lookup with the pinned answer.
The URL keeps its host name, so the Host header, the TLS SNI name and certificate verification are all
for the business's name, not for an IP address. Redirects are never followed and proxies from the
environment are never used (either would reach an unchecked target).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import ssl
import time
import typing
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import certifi
import httpcore
import httpx

from passgate.webhooks.exceptions import DeliveryError
from passgate.webhooks.ssrf import (
    CheckedUrl,
    ForbiddenTargetError,
    IPAddress,
    Resolver,
    UnresolvableTargetError,
    check_url,
    system_resolver,
)

MAX_BODY_READ = 64 * 1024  # answers are read up to this much (for the log), then the connection is dropped
SNIPPET = 200


class PinnedNetworkBackend(httpcore.AsyncNetworkBackend):
    """Opens TCP connections only to addresses pinned for (host, port) by a check made just before."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._inner = inner or httpcore.AnyIOBackend()
        self._pins: dict[tuple[str, int], tuple[IPAddress, ...]] = {}

    def pin(self, host: str, port: int, addresses: tuple[IPAddress, ...]) -> None:
        self._pins[(_bare(host), port)] = addresses

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109  (httpcore's interface)
        local_address: str | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = self._pins.get((_bare(host), port))
        if not addresses:
            # Fail closed: a connection nobody checked is never opened.
            raise httpcore.ConnectError("no checked address for this host")
        last: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109  (httpcore's interface)
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not webhook targets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _bare(host: str) -> str:
    return host.strip("[]").lower()


_ERRORS: tuple[tuple[type[Exception], type[httpx.HTTPError]], ...] = (
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.ProtocolError, httpx.ProtocolError),
    (httpcore.NetworkError, httpx.NetworkError),
)


@contextlib.contextmanager
def _httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for core, mapped in _ERRORS:
            if isinstance(exc, core):
                raise mapped(str(exc) or type(exc).__name__) from exc
        raise


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: typing.AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        closer = getattr(self._stream, "aclose", None)
        if closer is not None:
            await closer()


class PinnedTransport(httpx.AsyncBaseTransport):
    """An httpx transport over an httpcore pool whose connections go only to pinned addresses."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int = 100,
        keepalive_expiry: float = 30.0,
    ) -> None:
        self.backend = PinnedNetworkBackend()
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context or ssl.create_default_context(cafile=certifi.where()),
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=keepalive_expiry,
            network_backend=self.backend,
        )

    def pin(self, checked: CheckedUrl) -> None:
        self.backend.pin(checked.host, checked.port, checked.addresses)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_errors():
            response = await self._pool.handle_async_request(core_request)
        assert isinstance(response.stream, typing.AsyncIterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


@dataclass(frozen=True)
class HttpAnswer:
    status_code: int
    retry_after: str | None
    snippet: str  # the start of the answer's body, for the deliveries log


class WebhookTransport(typing.Protocol):
    """Sends one signed body to one URL; raises DeliveryError when no HTTP answer came back."""

    async def post(self, url: str, headers: Mapping[str, str], body: bytes) -> HttpAnswer: ...

    async def aclose(self) -> None: ...


class HttpxWebhookTransport:
    """The real transport: SSRF check per try, pinned connections, no redirects, a hard overall timeout.

    The httpx client belongs to one event loop; it is made on first use in the running loop (and again if
    a later call runs in another loop, as tests with `asyncio.run` do).
    """

    def __init__(
        self,
        *,
        allow_private: bool,
        allow_http: bool,
        timeout: float = 15.0,
        max_connections: int = 100,
        resolver: Resolver = system_resolver,
        ssl_context: ssl.SSLContext | None = None,
        user_agent: str = "Passgate-Webhooks/1",
    ) -> None:
        self.allow_private = allow_private
        self.allow_http = allow_http
        self.timeout = timeout
        self.max_connections = max_connections
        self.resolver = resolver
        self.ssl_context = ssl_context
        self.user_agent = user_agent
        self._client: httpx.AsyncClient | None = None
        self._transport: PinnedTransport | None = None
        self._literal_checks: dict[str, CheckedUrl] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def check(self, url: str) -> CheckedUrl:
        """The SSRF check (blocks while resolving a host name)."""
        return check_url(
            url, allow_private=self.allow_private, allow_http=self.allow_http, resolve=self.resolver
        )

    def _http(self) -> tuple[httpx.AsyncClient, PinnedTransport]:
        loop = asyncio.get_running_loop()
        if self._client is None or self._transport is None or self._loop is not loop:
            self._transport = PinnedTransport(self.ssl_context, self.max_connections)
            self._client = httpx.AsyncClient(
                transport=self._transport,
                follow_redirects=False,
                trust_env=False,
                timeout=httpx.Timeout(self.timeout),
                headers={"User-Agent": self.user_agent},
            )
            self._loop = loop
        return self._client, self._transport

    async def post(self, url: str, headers: Mapping[str, str], body: bytes) -> HttpAnswer:
        try:
            checked = self._literal_checks.get(url)
            if checked is None:
                if _is_ip_literal(url):
                    # Nothing to resolve, so the verdict cannot change: judged once, remembered.
                    checked = self.check(url)
                    if len(self._literal_checks) > 10_000:
                        self._literal_checks.clear()
                    self._literal_checks[url] = checked
                else:
                    checked = await asyncio.to_thread(self.check, url)  # resolves: every try, in a thread
        except UnresolvableTargetError as exc:
            raise DeliveryError(f"target not resolved: {exc.message}") from None
        except ForbiddenTargetError as exc:
            raise DeliveryError(f"target refused: {exc.message}") from None
        client, transport = self._http()
        transport.pin(checked)
        deadline = time.monotonic() + self.timeout
        try:
            async with asyncio.timeout(self.timeout):
                request = client.build_request(
                    "POST", checked.url, headers={**headers, "Content-Type": "application/json"}, content=body
                )
                response = await client.send(request, stream=True)
                try:
                    read = bytearray()
                    async for chunk in response.aiter_raw():
                        read += chunk
                        if len(read) >= MAX_BODY_READ:
                            break
                finally:
                    await response.aclose()
        except TimeoutError:
            raise DeliveryError(f"timed out after {self.timeout:g} s") from None
        except httpx.TimeoutException:
            waited = self.timeout - max(0.0, deadline - time.monotonic())
            raise DeliveryError(f"timed out after {waited:.1f} s") from None
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{type(exc).__name__}: {str(exc)[:200]}") from None
        except ssl.SSLError as exc:
            raise DeliveryError(f"TLS error: {exc.reason or exc}") from None
        except OSError as exc:
            raise DeliveryError(f"network error: {exc.strerror or type(exc).__name__}") from None
        return HttpAnswer(
            status_code=response.status_code,
            retry_after=response.headers.get("retry-after"),
            snippet=bytes(read[:SNIPPET]).decode("utf-8", "replace"),
        )

    async def aclose(self) -> None:
        client, self._client, self._transport = self._client, None, None
        loop, self._loop = self._loop, None
        if client is not None and loop is asyncio.get_running_loop():
            with contextlib.suppress(Exception):
                await client.aclose()


def _is_ip_literal(url: str) -> bool:
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return True  # check_url refuses it without resolving anything
    if not host:
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
