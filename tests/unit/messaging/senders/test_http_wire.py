"""`HttpPoster` against a real HTTP/1.1 server on loopback (asyncio, in the test's loop) that answers as told:
connections kept and reused, bounded per loop, every way an answer can be framed, a connection the server
dropped while idle replaced within the try, and what it refuses."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from passgate.messaging.senders.http_wire import MAX_ANSWER, HttpPoster, WireError

Answerer = Callable[[bytes, asyncio.StreamWriter], Awaitable[bool]]  # -> keep the connection open


class Server:
    def __init__(self, answer: Answerer) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[bytes] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                self.in_flight += 1
                self.most_in_flight = max(self.most_in_flight, self.in_flight)
                try:
                    keep = await self.answer(request, writer)
                finally:
                    self.in_flight -= 1
                await writer.drain()
                if not keep:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        self.server.close()
        for w in self.writers:
            w.close()


def answering(raw: bytes, keep: bool = True, delay: float = 0.0) -> Answerer:
    async def answer(request: bytes, writer: asyncio.StreamWriter) -> bool:
        if delay:
            await asyncio.sleep(delay)
        writer.write(raw)
        return keep

    return answer


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def run(answer: Answerer, scenario: Callable[[HttpPoster, Server], Awaitable[None]], **kw: float) -> Server:
    async def main() -> Server:
        server = Server(answer)
        url = await server.start()
        poster = HttpPoster(url + "/send", **kw)  # type: ignore[arg-type]
        try:
            await scenario(poster, server)
        finally:
            await poster.release()
            await server.stop()
        return server

    return asyncio.run(main())


def test_connections_are_kept_and_reused() -> None:
    async def scenario(poster: HttpPoster, server: Server) -> None:
        for i in range(5):
            answer = await poster.post("/send", {"X-N": str(i)}, b"{}")
            assert answer == (200, b"ok")

    server = run(answering(OK), scenario)
    assert server.connections == 1 and len(server.requests) == 5
    first = server.requests[0].decode()
    assert first.startswith("POST /send HTTP/1.1\r\nHost: 127.0.0.1:")
    assert "\r\nX-N: 0\r\n" in first and "\r\nContent-Length: 2\r\n\r\n{}" in first


def test_concurrent_posts_are_bounded_by_the_pool() -> None:
    async def scenario(poster: HttpPoster, server: Server) -> None:
        answers = await asyncio.gather(*(poster.post("/send", {}, b"x") for _ in range(40)))
        assert all(a.status == 200 for a in answers)

    server = run(answering(OK, delay=0.01), scenario, pool_size=4)
    assert server.connections == 4 and server.most_in_flight == 4 and len(server.requests) == 40


@pytest.mark.parametrize(
    ("raw", "body"),
    [
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n",
            b"abcde",
        ),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 3\r\n\r\nyes", b"yes"),
        (b"HTTP/1.1 204 No Content\r\n\r\n", b""),
    ],
)
def test_answers_framed_every_way_are_read_and_the_connection_kept(raw: bytes, body: bytes) -> None:
    async def scenario(poster: HttpPoster, server: Server) -> None:
        for _ in range(2):
            answer = await poster.post("/send", {}, b"x")
            assert answer.body == body

    assert run(answering(raw), scenario).connections == 1


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\n\r\nok",  # to the end of the connection
    ],
)
def test_an_answer_that_ends_the_connection_is_not_reused(raw: bytes) -> None:
    async def scenario(poster: HttpPoster, server: Server) -> None:
        for _ in range(3):
            assert await poster.post("/send", {}, b"x") == (200, b"ok")

    assert run(answering(raw, keep=False), scenario).connections == 3


def test_a_connection_the_server_dropped_while_idle_is_replaced_within_the_try() -> None:
    async def answer(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(OK)
        return True

    async def scenario(poster: HttpPoster, server: Server) -> None:
        assert (await poster.post("/send", {}, b"x")).status == 200
        # The server closes the idle connection without a word; the poster has not noticed yet.
        pool = poster._pool()
        assert len(pool.idle) == 1
        server.writers[0].transport.abort()
        assert (await poster.post("/send", {}, b"x")).status == 200

    server = run(answer, scenario)
    assert server.connections == 2 and len(server.requests) == 2


def test_a_connection_closed_after_the_request_is_an_error_not_a_resend() -> None:
    async def answer(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok")  # short
        return False

    async def scenario(poster: HttpPoster, server: Server) -> None:
        with pytest.raises(WireError, match="closed"):
            await poster.post("/send", {}, b"x")

    assert len(run(answer, scenario).requests) == 1


def test_a_slow_server_times_out() -> None:
    async def scenario(poster: HttpPoster, server: Server) -> None:
        with pytest.raises(WireError, match="timed out"):
            await poster.post("/send", {}, b"x")

    run(answering(OK, delay=1.0), scenario, timeout=0.2)


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (MAX_ANSWER + 1),
        b"SMTP/1.0 200 OK\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
    ],
)
def test_answers_it_cannot_take_are_errors(raw: bytes) -> None:
    async def scenario(poster: HttpPoster, server: Server) -> None:
        with pytest.raises(WireError):
            await poster.post("/send", {}, b"x")
        assert poster._pool().idle == []

    run(answering(raw, keep=False), scenario)


def test_nothing_listening_is_an_error() -> None:
    async def main() -> None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        with pytest.raises(WireError, match="cannot connect"):
            await HttpPoster(f"http://127.0.0.1:{port}/").post("/", {}, b"")

    asyncio.run(main())


@pytest.mark.parametrize(
    ("target", "headers"),
    [("/a b", {}), ("/a\r\nX: y", {}), ("/", {"X-A": "1\r\nX-B: 2"}), ("/", {"X-A\nB": "1"})],
)
def test_a_line_break_in_the_request_is_refused(target: str, headers: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        HttpPoster("http://127.0.0.1:9/").request(target, headers, b"")


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://gw.example/send", "gw.example"),
        ("https://gw.example:443/send", "gw.example"),
        ("https://gw.example:8443/send", "gw.example:8443"),
        ("http://[::1]:8080/send", "[::1]:8080"),
    ],
)
def test_the_host_header_names_the_port_only_when_it_is_not_the_default(url: str, host: str) -> None:
    assert f"\r\nHost: {host}\r\n".encode() in HttpPoster(url).request("/send", {}, b"")
