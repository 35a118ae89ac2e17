"""The sandbox server on sockets: a thread per connection on 127.0.0.1, each feeding a
pop3.Session; SandboxServer starts, serves and stops it."""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import selectors
import shutil
import signal
import socket
import socketserver
import ssl
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from types import FrameType, TracebackType

from popctl.sandbox.mailbox import sample_mailbox
from popctl.sandbox.maildrop import Maildrop
from popctl.sandbox.pop3 import Config, Session
from popctl.sandbox.tls import self_signed_certificate, server_tls_context

log = logging.getLogger(__name__)

# RFC 1939 section 3: the inactivity autologout timer must be at least 10 minutes.
IDLE_TIMEOUT = 600.0
# How long stop() waits for a connection's thread to notice its socket was shut down.
_JOIN_TIMEOUT = 5.0
_RECV_SIZE = 65536

# --- sockets ---------------------------------------------------------------------------------


class _LineTooLongError(Exception):
    pass


class _LineReader:
    """Buffered CRLF lines from a socket; pipelined commands simply wait in the buffer."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = bytearray()

    def readline(self, limit: int) -> bytes | None:
        """The next line with its line ending, or None at end of stream.

        Raises _LineTooLongError, after discarding the whole line, if it exceeds ``limit`` octets.
        """
        too_long = False
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[: end + 1])
                del self._buffer[: end + 1]
                if too_long or len(line) > limit:
                    raise _LineTooLongError
                return line
            if len(self._buffer) > limit:  # never buffer an endless line
                too_long = True
                self._buffer.clear()
            data = self._sock.recv(_RECV_SIZE)
            if not data:
                return None
            self._buffer += data


class _Connection(socketserver.BaseRequestHandler):
    """Runs one Session over one (possibly upgraded to TLS) socket, in its own thread."""

    server: _TCPServer

    def setup(self) -> None:
        self.sock: socket.socket = self.request
        self.sock.settimeout(IDLE_TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.register(self)

    def handle(self) -> None:
        session = self.server.new_session()
        try:
            self._converse(session)
        except TimeoutError:
            self._send_quietly(b"-ERR autologout: idle for too long\r\n")
        except OSError:  # includes ssl.SSLError: the client went away or broke TLS
            pass
        finally:
            session.close()

    def finish(self) -> None:
        self.server.unregister(self)
        self.sock.close()

    def abort(self) -> None:
        """Wake the thread blocked on this connection (from another thread, at stop())."""
        with contextlib.suppress(OSError):
            # The plain socket method: SSLSocket.shutdown would also tear down its TLS state.
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)

    def _converse(self, session: Session) -> None:
        reader = _LineReader(self.sock)
        self.sock.sendall(session.greeting().data)
        while True:
            try:
                line = reader.readline(session.line_limit)
            except _LineTooLongError:
                reply = session.line_too_long()
            else:
                if line is None:
                    return
                reply = session.handle(line)
            self.sock.sendall(reply.data)  # one write per reply: no Nagle/delayed-ACK stalls
            if reply.close:
                return
            if reply.start_tls:
                self._start_tls()
                # A fresh reader drops any plaintext pipelined after STLS (RFC 2595 section 4,
                # CVE-2011-0411 style injection).
                reader = _LineReader(self.sock)
                session.tls_started()

    def _start_tls(self) -> None:
        context = self.server.tls_context
        assert context is not None  # the session only offers STLS when TLS is configured
        self.sock = context.wrap_socket(self.sock, server_side=True)

    def _send_quietly(self, data: bytes) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(data)


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    # handle_request() waits at most this long should a ready connection vanish before accept().
    timeout = 1.0

    def __init__(
        self,
        address: tuple[str, int],
        config: Config,
        maildrop: Maildrop,
        tls_context: ssl.SSLContext | None,
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.config = config
        self.maildrop = maildrop
        self.tls_context = tls_context
        self._connections: dict[_Connection, threading.Thread] = {}
        self._connections_lock = threading.Lock()
        self._banner_ids = itertools.count(1)
        self._stop_requested = threading.Event()
        # Set by a signal handler, which must take no lock the interrupted main thread may hold.
        self._interrupted = False
        self._running = threading.Lock()  # held while serve_until_stopped() loops
        super().__init__(address, _Connection)
        # Unlike serve_forever()'s polling, a byte on this pair wakes the loop at once. Both ends
        # are non-blocking: the writer is also the signal wakeup fd (a signal handler must never
        # block), and the reader is drained without ever waiting.
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._wake_writer.setblocking(False)

    def serve_until_stopped(self) -> None:
        """Accept connections until request_stop() is called (from any thread)."""
        with self._running, selectors.DefaultSelector() as selector:
            if self._stop_requested.is_set():
                return
            selector.register(self, selectors.EVENT_READ)
            selector.register(self._wake_reader, selectors.EVENT_READ)
            while True:
                ready = {key.fileobj for key, _ in selector.select()}
                if self._wake_reader in ready:
                    with contextlib.suppress(OSError):  # BlockingIOError: drained already
                        while self._wake_reader.recv(_RECV_SIZE):
                            pass
                if self._stop_requested.is_set() or self._interrupted:
                    return
                if self in ready:
                    self.handle_request()

    def request_stop(self) -> None:
        """Stop accepting connections; returns once serve_until_stopped() has returned."""
        self._stop_requested.set()
        self._wake()
        with self._running:
            pass

    def interrupt(self) -> None:
        """Make serve_until_stopped() return soon: safe in a signal handler, unlike request_stop()
        (which waits for the loop, and whose Event.set() takes a lock)."""
        self._interrupted = True
        self._wake()

    @property
    def wake_fd(self) -> int:
        """A byte written here wakes serve_until_stopped() (signal.set_wakeup_fd)."""
        return self._wake_writer.fileno()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # BlockingIOError: a byte is waiting already
            self._wake_writer.send(b"\0")

    def server_close(self) -> None:
        super().server_close()
        self._wake_reader.close()
        self._wake_writer.close()

    def new_session(self) -> Session:
        banner_id = f"{os.getpid()}.{next(self._banner_ids)}.{int(time.time())}"
        return Session(self.config, self.maildrop, banner_id)

    def register(self, connection: _Connection) -> None:
        with self._connections_lock:
            self._connections[connection] = threading.current_thread()

    def unregister(self, connection: _Connection) -> None:
        with self._connections_lock:
            self._connections.pop(connection, None)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections.items())
        for connection, thread in connections:
            connection.abort()
            thread.join(_JOIN_TIMEOUT)

    def handle_error(self, request: object, client_address: object) -> None:
        log.exception("sandbox: error while serving %s", client_address)



def _serve_then_stop(server: _TCPServer, stop: Callable[[], None]) -> None:
    """server.serve_until_stopped(), then stop(); in the main thread Ctrl-C (SIGINT) ends the
    serving instead of raising KeyboardInterrupt, and cannot cut stop() short.

    A KeyboardInterrupt can strike at any bytecode of the main thread, and some places lose it:
    inside threading's Condition.wait() while a connection's thread starts, it becomes a
    RuntimeError ("release unlocked lock") that socketserver logs and serves on; a weakref
    callback ignores it. The kernel may also run the C-level handler on a connection's thread,
    leaving the main thread asleep in select(). So the handler only sets a flag and writes to the
    loop's wakeup socket, and signal.set_wakeup_fd() has the C-level handler, on whichever
    thread it runs, wake the loop too.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):  # SIGINT ignored, or handled by the program that embeds the server: its choice
        server.serve_until_stopped()
        stop()
        return

    def on_ctrl_c(_signum: int, _frame: FrameType | None) -> None:
        server.interrupt()

    signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        previous_fd = signal.set_wakeup_fd(server.wake_fd, warn_on_full_buffer=False)
        try:
            server.serve_until_stopped()
        finally:
            signal.set_wakeup_fd(previous_fd)  # before stop() closes that socket
        stop()
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


# --- the public server -----------------------------------------------------------------------


class SandboxServer:
    """A POP3 server on a loopback port serving an in-memory mailbox.

    >>> with SandboxServer(tls=False) as server:  # doctest: +SKIP
    ...     host, port = server.address

    By default the mailbox is ``sample_mailbox()`` and the login is sandbox / sandbox. Messages
    deleted by a session that ends with QUIT are gone for later connections, until the server
    stops; nothing is ever written anywhere but memory.
    """

    def __init__(
        self,
        messages: list[bytes] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        user: str = "sandbox",
        password: str = "sandbox",
        tls: bool = True,
        pipelining: bool = True,
        implementation: str = "popctl-sandbox",
    ) -> None:
        self._maildrop = Maildrop(sample_mailbox() if messages is None else messages)
        self._bind_address = (host, port)
        self._config = Config(user, password, pipelining, implementation, tls_available=tls)
        self.user = user
        self.password = password
        self._server: _TCPServer | None = None
        self._thread: threading.Thread | None = None
        self._cleanup: weakref.finalize[[str, bool], SandboxServer] | None = None
        self.ca_file: str | None = None
        self.cert_sha256: str | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) the server listens on; port 0 has become a real port."""
        if self._server is None:
            raise RuntimeError("the sandbox server is not started")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def messages(self) -> list[bytes]:
        """The messages currently in the mailbox, as stored (CRLF), in order."""
        return self._maildrop.snapshot()

    def bind(self) -> SandboxServer:
        """Make the certificate and the listening socket; start() and serve_forever() call this.

        Call it first when the address or ca_file must be known before serving in the foreground.
        """
        if self._server is None:
            self._server = _TCPServer(
                self._bind_address, self._config, self._maildrop, self._make_tls_context()
            )
        return self

    def start(self) -> SandboxServer:
        """Serve in a daemon background thread; returns self."""
        server = self.bind()._server
        assert server is not None
        if self._thread is None:
            self._thread = threading.Thread(
                target=server.serve_until_stopped,
                name=f"popctl-sandbox-{self.address[1]}",
                daemon=True,
            )
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until stop() is called elsewhere or Ctrl-C is pressed.

        Ctrl-C stops the server and returns normally.
        """
        if self._thread is not None:
            raise RuntimeError("the sandbox server is already serving in the background")
        server = self.bind()._server
        assert server is not None
        try:
            _serve_then_stop(server, self.stop)
        except KeyboardInterrupt:  # Ctrl-C before the handler was in place
            pass
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop listening, close every connection (rolling back their deletions), clean up."""
        server, self._server = self._server, None
        if server is not None:
            server.request_stop()
            if self._thread is not None:
                self._thread.join()
            server.close_connections()
            server.server_close()
        self._thread = None
        if self._cleanup is not None:
            self._cleanup()
            self._cleanup = None
        self.ca_file = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _make_tls_context(self) -> ssl.SSLContext | None:
        if not self._config.tls_available:
            return None
        certificate = self_signed_certificate()
        directory = tempfile.mkdtemp(prefix="popctl-sandbox-")
        # Removed by stop(), or at the latest when this object is collected or Python exits.
        self._cleanup = weakref.finalize(self, shutil.rmtree, directory, True)
        context, self.ca_file = server_tls_context(certificate, directory)
        self.cert_sha256 = certificate.sha256
        return context


