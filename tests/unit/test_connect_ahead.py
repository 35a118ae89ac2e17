"""A command's connection is begun before the session layers load (transport.PendingConnection,
app.targets.connect_ahead), and behaves as socket.create_connection's did."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import types
from collections.abc import Iterator

import pytest

from popctl.errors import NetworkTimeoutError, TransportError
from popctl.models import Endpoint, TLSMode
from popctl.transport import Connecting, PendingConnection


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(5)
        yield server


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def endpoint(port: int, **changes: object) -> Endpoint:
    fields: dict[str, object] = {"host": "127.0.0.1", "port": port, "tls": TLSMode.NONE,
                                 "connect_timeout": 5.0, "timeout": 5.0}
    fields.update(changes)
    return Endpoint(**fields)  # type: ignore[arg-type]


def test_the_connection_is_made_before_it_is_taken(listener: socket.socket) -> None:
    pending = PendingConnection(endpoint(listener.getsockname()[1]))
    server_side, _ = listener.accept()  # the handshake was made with nobody waiting for it
    with server_side:
        server_side.sendall(b"+OK ready\r\n")
        assert pending.is_for(endpoint(listener.getsockname()[1]))
        transport, tls = pending.take()
        assert tls is None
        try:
            assert transport.recv() == b"+OK ready\r\n"
            transport.send(b"CAPA\r\n")
            assert server_side.recv(100) == b"CAPA\r\n"
        finally:
            transport.close()
    assert not pending.is_for(pending.endpoint)  # handed over once
    with pytest.raises(RuntimeError):
        pending.take()


def test_a_connection_not_taken_is_closed(listener: socket.socket) -> None:
    pending = PendingConnection(endpoint(listener.getsockname()[1]))
    assert not pending.is_for(endpoint(listener.getsockname()[1], timeout=9.0))
    server_side, _ = listener.accept()
    with server_side:
        pending.close()
        assert server_side.recv(100) == b""  # closed, nothing sent
    assert not pending.is_for(pending.endpoint)


def test_session_connect_discards_a_connection_begun_to_another_endpoint(
        listener: socket.socket) -> None:
    """Session.connect makes its own then (the one begun is closed, nothing sent on it)."""
    from popctl.session import Session

    pending = PendingConnection(endpoint(listener.getsockname()[1]))
    server_side, _ = listener.accept()
    with server_side:
        with pytest.raises(TransportError, match="Connection refused"):
            Session.connect(endpoint(closed_port()), ahead=pending)
        assert server_side.recv(100) == b""
    assert not pending.is_for(pending.endpoint)


def test_a_refused_connection_is_reported_as_before() -> None:
    """As when Transport.connect called socket.create_connection: the same message, and the
    ConnectionRefusedError behind it (what the "refused" hint looks for,
    app.runner.refused_connection)."""
    port = closed_port()
    with pytest.raises(ConnectionRefusedError) as direct:
        socket.create_connection(("127.0.0.1", port), timeout=5)
    pending = PendingConnection(endpoint(port))
    with pytest.raises(TransportError) as ahead:
        pending.take()
    assert str(ahead.value) == f"cannot connect to 127.0.0.1:{port}: {direct.value.strerror}"
    assert isinstance(ahead.value.__cause__, ConnectionRefusedError)


def test_the_next_address_is_tried_when_one_fails(listener: socket.socket,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """As socket.create_connection does: a host's addresses in turn, the last error raised."""
    dead, alive = closed_port(), listener.getsockname()[1]
    stream = (socket.AF_INET, socket.SOCK_STREAM, 6, "")
    monkeypatch.setattr(socket, "getaddrinfo", lambda *_args, **_kw: [
        (*stream, ("127.0.0.1", dead)), (*stream, ("127.0.0.1", alive))])
    sock = Connecting("example.test", 110, 5).finish()
    with sock:
        assert sock.getpeername() == ("127.0.0.1", alive)
    # an address family this machine cannot make a socket of is passed over too
    unsupported = (socket.AF_UNIX + 1000, socket.SOCK_STREAM, 6, "")
    monkeypatch.setattr(socket, "getaddrinfo", lambda *_args, **_kw: [
        (*unsupported, ("127.0.0.1", alive)), (*stream, ("127.0.0.1", alive))])
    sock = Connecting("example.test", 110, 5).finish()
    with sock:
        assert sock.getpeername() == ("127.0.0.1", alive)
    monkeypatch.setattr(socket, "getaddrinfo", lambda *_args, **_kw: [
        (*stream, ("127.0.0.1", alive)), (*stream, ("127.0.0.1", dead))])
    listener.close()
    with pytest.raises(TransportError) as e:
        Connecting("example.test", 110, 5).finish()
    assert str(e.value) == "cannot connect to example.test:110: Connection refused"
    assert isinstance(e.value.__cause__, ConnectionRefusedError)


class FullQueue:
    """A listener whose accept queue is full: Linux drops the next SYN, so a connection to it
    hangs until its timeout."""

    def __init__(self) -> None:
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(0)
        self.port: int = self.server.getsockname()[1]
        self.queued = []
        for _ in range(2):  # backlog 0 holds one
            client = socket.socket()
            client.setblocking(False)
            client.connect_ex(("127.0.0.1", self.port))
            self.queued.append(client)

    def close(self) -> None:
        for client in self.queued:
            client.close()
        self.server.close()


@pytest.fixture
def full_queue() -> Iterator[FullQueue]:
    queue = FullQueue()
    yield queue
    queue.close()


def test_a_handshake_that_does_not_come_back_times_out(full_queue: FullQueue) -> None:
    pending = PendingConnection(endpoint(full_queue.port, connect_timeout=0.3))
    with pytest.raises(NetworkTimeoutError) as e:
        pending.take()
    assert str(e.value) == f"connecting to 127.0.0.1:{full_queue.port} timed out after 0.3 s"


def test_the_connect_timeout_counts_from_when_the_connection_was_begun(
        full_queue: FullQueue, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the application's loading took is not given again: the wait is what is left."""
    import selectors

    from popctl import transport

    now = [1000.0]
    monkeypatch.setattr(transport, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    waits: list[float | None] = []

    class Selector(selectors.DefaultSelector):
        def select(self, timeout: float | None = None
                   ) -> list[tuple[selectors.SelectorKey, int]]:
            waits.append(timeout)
            return []  # the handshake has not come back

    monkeypatch.setattr(selectors, "DefaultSelector", Selector)
    pending = PendingConnection(endpoint(full_queue.port, connect_timeout=1.0))
    now[0] += 0.8  # the application loading, say
    with pytest.raises(NetworkTimeoutError):
        pending.take()
    assert waits == [pytest.approx(0.2)]


def test_an_address_that_times_out_is_followed_by_the_next(
        full_queue: FullQueue, listener: socket.socket, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each address has the whole connect timeout, as with socket.create_connection."""
    stream = (socket.AF_INET, socket.SOCK_STREAM, 6, "")
    alive = listener.getsockname()[1]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *_args, **_kw: [
        (*stream, ("127.0.0.1", full_queue.port)), (*stream, ("127.0.0.1", alive))])
    sock = Connecting("example.test", 110, 0.3).finish()
    with sock:
        assert sock.getpeername() == ("127.0.0.1", alive)


def test_an_unresolvable_host_is_reported_when_the_connection_is_taken(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def unknown(*_args: object, **_kwargs: object) -> list[object]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", unknown)
    pending = PendingConnection(endpoint(110, host="mail.example.test"))  # no error yet
    with pytest.raises(TransportError) as e:
        pending.take()
    assert str(e.value) == "cannot resolve mail.example.test: Name or service not known"


def test_a_name_the_idna_codec_refuses_is_one_line_and_no_lookup() -> None:
    """A non-ASCII name with an empty label: the codec refuses it before anything is asked."""
    pending = PendingConnection(endpoint(110, host="bücher..example"))
    with pytest.raises(TransportError) as e:
        pending.take()
    assert str(e.value) == ("cannot resolve bücher..example: not a valid host name (label "
                            "empty or too long)")


def test_a_command_begins_its_connection_before_loading_the_session_layers() -> None:
    """In a process of its own: the connection is begun while popctl.session, the runner and
    the output formats are not imported yet (they load while the handshake travels)."""
    port = closed_port()
    script = (
        "import sys\n"
        "import popctl.transport as transport\n"
        "begin = transport.Connecting.__init__\n"
        "def spy(self, *args, **kwargs):\n"
        "    loaded = [m for m in ('popctl.session', 'popctl.app.runner', 'popctl.output')\n"
        "              if m in sys.modules]\n"
        "    print('connecting; loaded:', loaded, file=sys.stderr)\n"
        "    begin(self, *args, **kwargs)\n"
        "transport.Connecting.__init__ = spy\n"
        "from popctl.cli import main\n"
        "main()\n")
    result = subprocess.run(
        [sys.executable, "-c", script, "--host", "127.0.0.1", "--port", str(port), "--tls",
         "none", "--allow-plaintext", "--user", "u", "dele", "--larger-than", "1M", "--yes"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "POPCTL_PASSWORD": "pw", "NO_COLOR": "1"})
    assert result.returncode == 4, result.stderr
    assert result.stderr.splitlines()[0] == "connecting; loaded: []"
    assert f"Error: cannot connect to 127.0.0.1:{port}: Connection refused" in result.stderr
    assert result.stderr.count("connecting;") == 1  # refused once, not connected twice
