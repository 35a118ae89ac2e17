"""A TCP proxy on 127.0.0.1 that counts what a client costs on the wire: the octets it receives
from the server and the round trips it waits for.

One connection at a time, one thread, both sockets in one selector, so events are seen in the
order they happen. A round trip is a burst of server data that the client waited for: the
greeting, and each later burst delivered to the client before its next data or its close.
Server data is delivered DELAY seconds late, so that a reply the client does not wait for
(QUIT's when nothing was deleted: popctl closes at once) is seen to arrive after the close
instead of racing it.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from typing import NamedTuple

# Far longer than a client takes to close after its last command, far shorter than a run.
DELAY = 0.005


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
        events: list[tuple[str, int]] = []  # in the order the client sees them
        due: list[tuple[float, bytes]] = []  # server data not yet delivered
        server_done = False
        with selectors.DefaultSelector() as selector, client, server:
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                selector.register(sock, selectors.EVENT_READ)
            client_open = True
            while client_open or due or not server_done:
                now = time.monotonic()
                while due and due[0][0] <= now:
                    _, data = due.pop(0)
                    if data:
                        events.append(("S", len(data)))
                        with contextlib.suppress(OSError):
                            client.sendall(data)
                    else:
                        with contextlib.suppress(OSError):
                            client.shutdown(socket.SHUT_WR)
                if not client_open and server_done and not due:
                    break
                wait = max(0.0, due[0][0] - now) if due else 30.0
                ready = selector.select(timeout=wait)
                if not ready and not due:
                    break  # a client or server that hangs: give up on this connection
                for key, _ in ready:
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        data = b""
                    if sock is server:
                        due.append((time.monotonic() + DELAY, data))
                        if not data:
                            selector.unregister(server)
                            server_done = True
                        continue
                    events.append(("C", len(data)))
                    if not data:
                        selector.unregister(client)
                        client_open = False
                        with contextlib.suppress(OSError):
                            server.shutdown(socket.SHUT_WR)
                        continue
                    with contextlib.suppress(OSError):
                        server.sendall(data)
        return count(events)
