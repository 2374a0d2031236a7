"""A TCP proxy the fault tests put between a server and its database, and cut at will.

:class:`TcpProxy` listens on 127.0.0.1 and a port of its own and relays every connection
to the target, one thread per direction. :meth:`TcpProxy.cut` is the database going away:
every relayed connection is closed (the server sees its socket die mid-conversation,
the database sees its client vanish and rolls the transaction back) and the listening
socket is closed, so new connections are refused. :meth:`TcpProxy.restore` listens on the
same port again.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from types import TracebackType

_CHUNK = 65536


class TcpProxy:
    """Relay ``127.0.0.1:<port>`` to ``target``, until cut.

    Args:
        target_host: Where connections go.
        target_port: Its port.

    Attributes:
        port: The port clients connect to (chosen once, kept across cuts).
        accepted: Connections accepted so far.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.accepted = 0
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None

    # ------------------------------------------------------------------ life cycle

    def start(self) -> TcpProxy:
        """Listen (on a free port the first time, on the same port after a cut)."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self.port = int(listener.getsockname()[1])
        with self._lock:
            self._listener = listener
        self._acceptor = threading.Thread(
            target=self._accept, args=(listener,), name=f"proxy-accept-{self.port}", daemon=True
        )
        self._acceptor.start()
        return self

    def cut(self) -> int:
        """Refuse new connections and close every open one.

        Returns:
            How many relayed sockets were closed.
        """
        with self._lock:
            listener, self._listener = self._listener, None
            open_sockets, self._sockets = self._sockets, set()
        if listener is not None:
            _close(listener)
        for sock in open_sockets:
            _close(sock)
        if self._acceptor is not None:
            self._acceptor.join(timeout=10)
        return len(open_sockets)

    def restore(self) -> None:
        """Accept connections again, on the same port."""
        self.start()

    def stop(self) -> None:
        """Cut for good."""
        self.cut()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ relaying

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was closed by cut()
            try:
                upstream = socket.create_connection(self.target, timeout=10)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                if self._listener is not listener:  # cut while connecting
                    _close(client)
                    _close(upstream)
                    return
                self._sockets.update((client, upstream))
                self.accepted += 1
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(
                    target=self._pump, args=(source, sink), name="proxy-pump", daemon=True
                ).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while True:
                data = source.recv(_CHUNK)
                if not data:
                    break
                sink.sendall(data)
        # One side ended (or was cut): end the other, so neither waits for ever.
        for sock in (source, sink):
            with self._lock:
                self._sockets.discard(sock)
            _close(sock)


def _close(sock: socket.socket) -> None:
    # shutdown() wakes a thread blocked in recv() on the socket at once; close() alone
    # would leave it there.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


@contextlib.contextmanager
def proxied(target_host: str, target_port: int) -> Iterator[TcpProxy]:
    """A started :class:`TcpProxy` for the block, stopped afterwards."""
    with TcpProxy(target_host, target_port) as proxy:
        yield proxy
