"""`passgate serve`'s HTTP limits, against the real server on loopback with raw sockets: a request head
over the cap gets 431 (whole or unfinished), a head or a body that does not arrive in time is cut off,
an idle kept-alive connection is closed, and fifty slowloris connections do not stay open.

The server runs with 2-second timeouts; the assertions allow several times that, for a busy machine."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.servers import free_port

TIMEOUT = 2  # the server's head, body and keep-alive timeouts in these tests
CAP = 32 * 1024  # its head cap (the default)
PATIENCE = 15.0  # how long a test waits for the server to cut a connection off


@dataclass
class Server:
    port: int
    proc: subprocess.Popen[bytes]

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("serve")
    port = free_port()
    env = {
        **os.environ,
        "PASSGATE_HTTP_HEADER_TIMEOUT_SECONDS": str(TIMEOUT),
        "PASSGATE_HTTP_BODY_TIMEOUT_SECONDS": str(TIMEOUT),
        "PASSGATE_HTTP_KEEPALIVE_SECONDS": str(TIMEOUT),
        "PASSGATE_LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "passgate.cli", "serve", "--port", str(port)],
        cwd=tmp,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise AssertionError("serve did not come up")
        yield Server(port, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def connect(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=PATIENCE)


def read_all(sock: socket.socket, patience: float = PATIENCE) -> tuple[bytes, bool]:
    """What the server sent until it closed the connection, and whether it did within `patience`."""
    data = b""
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        ready, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


def push_head(sock: socket.socket, prefix: bytes, filler: int, finish: bool) -> int:
    """Sends `prefix`, then up to `filler` bytes of one header value, stopping early once the server
    answers or stops reading; then, if `finish`, the end of the head. Returns the filler bytes sent."""
    sock.sendall(prefix)
    sent = 0
    block = b"a" * 65536
    while sent < filler:
        readable, writable, _ = select.select([sock], [sock], [], PATIENCE)
        if readable or not writable:
            return sent
        try:
            sent += sock.send(block[: filler - sent])
        except (BrokenPipeError, ConnectionResetError):
            return sent
    if finish:
        try:
            sock.sendall(b"\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
    return sent


def test_an_8_mb_header_gets_431(server: Server) -> None:
    # The review's payload: an 8 MB header used to be answered 200.
    with connect(server) as sock:
        sent = push_head(sock, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ", 8 * 1024 * 1024, finish=True)
        answer, closed = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert closed
    assert sent < 8 * 1024 * 1024  # refused long before the end of the head


def test_a_head_over_the_cap_in_one_piece_gets_431_and_one_under_it_is_served(server: Server) -> None:
    for size, status in ((CAP + 100, b"431"), (CAP - 2000, b"200")):
        head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: " + b"b" * size + b"\r\n\r\n"
        with connect(server) as sock:
            sock.sendall(head)
            answer, _ = read_all(sock)
        assert answer.startswith(b"HTTP/1.1 " + status), (size, answer[:200])
    # Many headers, each small, add up the same way.
    many = b"".join(b"X-H%d: %s\r\n" % (i, b"c" * 100) for i in range(400))
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
        answer, _ = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]


def test_unfinished_huge_heads_do_not_grow_the_server(server: Server) -> None:
    # The review saw four unfinished 50 MB heads take the API from 159 to 357 MiB.
    before = server.rss_kib()
    socks = [connect(server) for _ in range(4)]
    try:
        for sock in socks:
            push_head(sock, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ", 50 * 1024 * 1024, finish=False)
        grown = server.rss_kib() - before
        answers = [read_all(sock)[0] for sock in socks]
    finally:
        for sock in socks:
            sock.close()
    assert all(a.startswith(b"HTTP/1.1 431 ") for a in answers), [a[:40] for a in answers]
    assert grown < 40 * 1024, f"the server grew by {grown} KiB"


def test_a_head_sent_slowly_is_cut_off(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        closed_at = None
        while time.monotonic() - started < PATIENCE:
            try:
                sock.sendall(b"X-Slow: 1\r\n")  # a line every half second: never the end of the head
            except (BrokenPipeError, ConnectionResetError):
                closed_at = time.monotonic()
                break
            answer, closed = read_all(sock, patience=0.5)
            if closed:
                closed_at = time.monotonic()
                assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
                break
    assert closed_at is not None, f"still open after {PATIENCE} s"


def test_a_connection_that_sends_nothing_is_closed(server: Server) -> None:
    with connect(server) as sock:
        _, closed = read_all(sock)
    assert closed


def test_a_body_that_does_not_arrive_is_cut_off(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(
            b"POST /oauth2/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 200\r\n\r\ngrant_type=client"
        )
        answer, closed = read_all(sock)
    assert closed
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]


def test_kept_alive_connections_serve_requests_and_are_closed_when_idle(server: Server) -> None:
    with connect(server) as sock:
        for _ in range(3):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while not answer.endswith(b"}"):  # the JSON body ends the answer
                answer += sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
        _, closed = read_all(sock)
    assert closed


def test_fifty_slowloris_connections_do_not_stay_open(server: Server) -> None:
    socks = [connect(server) for _ in range(50)]
    try:
        for sock in socks:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        open_ = set(range(50))
        deadline = time.monotonic() + PATIENCE
        while open_ and time.monotonic() < deadline:
            for i in list(open_):
                try:
                    socks[i].sendall(b"X")  # a byte of a header that never ends, now and then
                except (BrokenPipeError, ConnectionResetError):
                    open_.discard(i)
                    continue
                readable, _, _ = select.select([socks[i]], [], [], 0)
                if readable:
                    try:
                        if not socks[i].recv(65536):
                            open_.discard(i)
                    except ConnectionResetError:
                        open_.discard(i)
            # Meanwhile the server answers others.
            assert httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=10).status_code == 200
            time.sleep(0.5)
        assert not open_, f"{len(open_)} of 50 still open after {PATIENCE} s"
    finally:
        for sock in socks:
            sock.close()


def test_a_large_body_or_many_pipelined_requests_are_not_mistaken_for_a_large_head(server: Server) -> None:
    body = b"grant_type=client_credentials&pad=" + b"p" * (512 * 1024)
    with connect(server) as sock:
        sock.sendall(
            b"POST /oauth2/token HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n"
            % len(body)
            + body
        )
        answer, _ = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]  # no credentials: the app answered
    # 1,000 requests written at once, 40 KB of heads in all, each far under the cap.
    with connect(server) as sock:
        sock.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 999
            + b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        answer, _ = read_all(sock)
    assert answer.count(b"HTTP/1.1 200 ") == 1000 and b"HTTP/1.1 431" not in answer
