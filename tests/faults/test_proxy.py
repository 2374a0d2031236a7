"""The fault tests' TCP proxy relays, cuts every connection, refuses, and comes back."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest

from tests.faults.proxy import TcpProxy, proxied


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(4096):
            self.request.sendall(data)


@pytest.fixture
def echo() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def _connect(proxy: TcpProxy) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    sock.settimeout(10)
    return sock


def test_relays_cuts_refuses_and_restores(echo: int) -> None:
    with proxied("127.0.0.1", echo) as proxy:
        first = _connect(proxy)
        first.sendall(b"hello")
        assert first.recv(100) == b"hello"

        assert proxy.cut() == 2  # both ends of the one relayed connection
        # The open connection is dead: the peer sees end of stream (or a reset) at once.
        with contextlib.suppress(ConnectionResetError):
            assert first.recv(100) == b""
        first.close()
        with pytest.raises(ConnectionRefusedError):
            _connect(proxy)

        port = proxy.port
        proxy.restore()
        assert proxy.port == port
        second = _connect(proxy)
        second.sendall(b"again")
        assert second.recv(100) == b"again"
        second.close()
        assert proxy.accepted == 2
