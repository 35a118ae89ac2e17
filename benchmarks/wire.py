"""A TCP proxy on 127.0.0.1 that counts what a client costs on the wire: the octets it receives
from the server and the round trips it waits for.

One connection at a time, one thread, both sockets in one selector, so events are seen in the
order they happen. A round trip is a burst of server data that the client waited for: the
greeting, and each later burst followed by more client data or by the client's close (a reply
the client did not wait for, such as QUIT's when nothing was deleted, arrives after its close
and is not counted).
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from typing import NamedTuple


class Wire(NamedTuple):
    received: int  # octets from the server to the client
    sent: int  # octets from the client to the server
    round_trips: int


def count(events: list[tuple[str, int]]) -> Wire:
    """``events``: ("S", octets), ("C", octets) and ("C", 0) for the client's close, in order."""
    trips, burst = 0, False  # burst: server data seen since the client last sent or closed
    for who, _octets in events:
        if who == "S":
            burst = True
        elif burst:
            trips += 1
            burst = False
    return Wire(sum(n for who, n in events if who == "S"),
                sum(n for who, n in events if who == "C"), trips)


class CountingProxy:
    """``with CountingProxy(target) as proxy:`` connect to ``proxy.port``; ``proxy.last()``
    is the Wire of the last connection, once it has closed."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._done: list[Wire] = []
        self._finished = threading.Condition()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._listener.close()

    def last(self, timeout: float = 10.0) -> Wire:
        with self._finished:
            if not self._finished.wait_for(lambda: bool(self._done), timeout):
                raise TimeoutError("the proxied connection did not end")
            return self._done.pop()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            wire = self._relay(client, socket.create_connection(self.target))
            with self._finished:
                self._done.append(wire)
                self._finished.notify_all()

    @staticmethod
    def _relay(client: socket.socket, server: socket.socket) -> Wire:
        events: list[tuple[str, int]] = []
        peer = {client: server, server: client}
        with selectors.DefaultSelector() as selector, client, server:
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                selector.register(sock, selectors.EVENT_READ)
            open_ends = 2
            while open_ends:
                ready = selector.select(timeout=30)
                if not ready:  # a client or server that hangs: give up on this connection
                    break
                for key, _ in ready:
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        data = b""
                    if sock is client:
                        events.append(("C", len(data)))
                    elif data:
                        events.append(("S", len(data)))
                    if not data:
                        selector.unregister(sock)
                        open_ends -= 1
                        with contextlib.suppress(OSError):
                            peer[sock].shutdown(socket.SHUT_WR)
                        continue
                    with contextlib.suppress(OSError):
                        peer[sock].sendall(data)
        return count(events)
