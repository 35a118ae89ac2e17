"""A user-space TCP proxy on 127.0.0.1 adding a fixed one-way delay in each direction.

Kernel netem is not available on these machines, so latency is simulated here: every chunk read
from one side is forwarded to the other after ``delay`` seconds (TCP_NODELAY on all sockets,
TCP_QUICKACK on every read).
With ``bandwidth`` (octets per second, each direction), chunks also queue behind one another as
on a link of that speed: a chunk of n octets leaves n / bandwidth seconds after the previous one
finished, then travels ``delay`` seconds.
"""

from __future__ import annotations

import contextlib
import heapq
import socket
import sys
import threading
import time

_QUICKACK = getattr(socket, "TCP_QUICKACK", None) if sys.platform.startswith("linux") else None


class DelayProxy:
    def __init__(self, target: tuple[str, int], delay: float,
                 bandwidth: float | None = None) -> None:
        self.target = target
        self.delay = delay
        self.bandwidth = bandwidth
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> DelayProxy:
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        """Read from src; a writer thread sends each chunk once its delay has passed."""
        queue: list[tuple[float, int, bytes]] = []
        ready = threading.Condition()
        seq = 0
        link_free = 0.0  # when the simulated link has sent what is queued (bandwidth cap)

        def writer() -> None:
            while True:
                with ready:
                    while not queue:
                        ready.wait()
                    due, _, data = queue[0]
                    wait = due - time.monotonic()
                    if wait > 0:
                        ready.wait(wait)
                        continue
                    heapq.heappop(queue)
                if not data:
                    with contextlib.suppress(OSError):
                        dst.shutdown(socket.SHUT_WR)
                    return
                try:
                    dst.sendall(data)
                except OSError:
                    return

        threading.Thread(target=writer, daemon=True).start()
        while True:
            if _QUICKACK is not None:
                # ACK at once, as popctl does: a delayed ACK from the proxy would hold back a
                # server's next small write behind Nagle (40 ms a time on Linux) for a reason
                # that has nothing to do with the link being simulated.
                with contextlib.suppress(OSError):
                    src.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            now = time.monotonic()
            sent = now
            if self.bandwidth:
                link_free = max(link_free, now) + len(data) / self.bandwidth
                sent = link_free
            with ready:
                seq += 1
                heapq.heappush(queue, (sent + self.delay, seq, data))
                ready.notify()
            if not data:
                return
