"""Fuzz targets for popctl's protocol core and session, shared by tests/unit/test_fuzz.py
(Hypothesis, in CI) and scripts/fuzz_protocol.py (atheris or Hypothesis, long runs).

Each target takes a sequence of client commands or session calls, the bytes a hostile server
sends and where its reads split them, runs popctl over them and checks the promises: only
popctl's own errors (PopctlError) come out, nothing hangs (the fake transport ends in EOF), and
the bytes held unconsumed stay bounded. It returns the name of the error that ended the run
(or "ok") and the peak of unconsumed bytes, for the figures.
"""

from __future__ import annotations

from collections.abc import Sequence

from popctl import session as session_module
from popctl.errors import PopctlError
from popctl.models import Credentials
from popctl.protocol import (
    CLOSED,
    MAX_STATUS_LINE,
    NEED_DATA,
    Command,
    Data,
    EndOfData,
    POP3Protocol,
    Reply,
)
from popctl.session import Session

# Commands a client may try (legal or not in the state it is in).
COMMANDS: tuple[Command, ...] = (
    Command("CAPA"), Command("USER", ("alice",)), Command("PASS", ("secret",)),
    Command("APOP", ("alice", "c4ca4238a0b923820dcc509a6f75849b")), Command("AUTH", ("PLAIN",)),
    Command("STLS"), Command("STAT"), Command("LIST"), Command("LIST", ("1",)), Command("UIDL"),
    Command("UIDL", ("2",)), Command("TOP", ("1", "0")), Command("RETR", ("1",)),
    Command("DELE", ("1",)), Command("NOOP"), Command("RSET"), Command("LAST"), Command("QUIT"),
    Command("XTND", ("XMIT",)),
)

# Pieces a server might send, to reach deep states more often than random bytes alone.
PIECES: tuple[bytes, ...] = (
    b"+OK\r\n", b"+OK POP3 ready <1.2@x>\r\n", b"-ERR nope\r\n", b"-ERR [IN-USE] locked\r\n",
    b"+OK 2 320\r\n", b"+OK 1 100\r\n", b".\r\n", b"..stuffed\r\n", b".\n", b"1 100\r\n",
    b"2 200\r\n", b"1 uid-1\r\n", b"Subject: hi\r\n", b"\r\n", b"\n", b"\r", b"+ \r\n",
    b"+ dGVzdA==\r\n", b"+OK\r\nTOP\r\nUIDL\r\nPIPELINING\r\nSASL PLAIN\r\n.\r\n", b"\x00",
    b"\xff\xfe", b"-1 5\r\n", b"99999999999999999999 1\r\n", b"x" * 300,
)

# Unconsumed bytes a protocol may hold: at most a status line's worth plus one read, or (in a
# multi-line reply) the one or two bytes that might begin the terminator.
UNCONSUMED_LIMIT = MAX_STATUS_LINE


def _chunks(data: bytes, splits: Sequence[int]) -> list[bytes]:
    out, pos = [], 0
    for size in splits:
        if pos >= len(data):
            break
        out.append(data[pos:pos + max(1, size)])
        pos += max(1, size)
    if pos < len(data):
        out.append(data[pos:])
    return out


def run_protocol(commands: Sequence[int], data: bytes, splits: Sequence[int]) -> tuple[str, int]:
    """Greeting, then the commands (indexes into COMMANDS) sent before the data arrives in
    pieces; events are drained after each piece and checked against what was sent."""
    protocol = POP3Protocol()
    sent: list[Command] = []
    peak = 0
    try:
        chunks = [*_chunks(data, splits), b""]
        pending_at_start = 0
        for index, chunk in enumerate(chunks):
            if index == 1:  # after the first piece (the greeting, perhaps), send the commands
                for i in commands:
                    command = COMMANDS[i % len(COMMANDS)]
                    try:
                        protocol.send(command)
                    except PopctlError:
                        continue  # refused locally (state, pipelining rules): not sent
                    sent.append(command)
                pending_at_start = len(protocol.pending)
            protocol.receive_data(chunk)
            while True:
                event = protocol.next_event()
                if event is NEED_DATA or event is CLOSED:
                    break
                if isinstance(event, Reply | Data | EndOfData):
                    assert event.command in sent, event
                    if isinstance(event, Data):
                        assert event.command.multiline
                unconsumed = len(protocol.trailing_data())
                peak = max(peak, unconsumed)
            assert len(protocol.trailing_data()) <= UNCONSUMED_LIMIT + len(chunk)
            if event is CLOSED:
                break
        assert len(protocol.pending) <= pending_at_start or not commands
    except PopctlError as e:
        return type(e).__name__, peak
    return "ok", peak


class FakeTransport:
    """Hands out the server's bytes in the given pieces, then EOF; swallows what is sent."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks
        self.tls = None
        self.host = "fake"
        self.timeout = 30.0
        self.sent = bytearray()

    def send(self, data: bytes, timeout: float | None = None) -> None:
        self.sent += data

    def recv(self, timeout: float | None = None) -> bytes:
        return self._chunks.pop(0) if self._chunks else b""

    def close(self) -> None:
        pass


def _sink_factory(sinks: list[bytearray]) -> object:
    def open_sink(n: int) -> bytearray:
        sinks.append(bytearray())
        return sinks[-1]
    return open_sink


def run_session(calls: Sequence[int], data: bytes, splits: Sequence[int]) -> tuple[str, int]:
    """A Session over a fake transport: greeting, CAPA, login, then session calls (indexes
    into the list below) until one fails. Listing limits are small so that bounds are hit."""
    transport = FakeTransport(_chunks(data, splits))
    saved = session_module.MAX_LISTING_BYTES, session_module.MAX_HEADER_BYTES
    session_module.MAX_LISTING_BYTES, session_module.MAX_HEADER_BYTES = 4096, 512
    sinks: list[bytearray] = []
    actions = (
        lambda s: s.stat(), lambda s: s.list(), lambda s: s.list([1, 2]), lambda s: s.uidl(),
        lambda s: s.uidl([2]), lambda s: s.scan(), lambda s: list(s.headers([1, 2])),
        lambda s: s.top(1, 3, bytearray()), lambda s: s.retr(1, bytearray()),
        lambda s: list(s.retr_many([1, 2], _sink_factory(sinks), delete=True)),
        lambda s: s.dele([1, 2]), lambda s: s.rset(), lambda s: s.noop(), lambda s: s.last(),
        lambda s: s.capa(), lambda s: s.raw("NOOP"), lambda s: s.quit(),
    )
    try:
        session = Session(transport, pipelining=None)  # type: ignore[arg-type]
        try:
            session._read_greeting()
            session.capa()
            session.login(Credentials("alice", "secret", allow_plaintext=True))
            for i in calls:
                actions[i % len(actions)](session)
        except PopctlError as e:
            session.abort()
            return type(e).__name__, len(session._protocol.trailing_data())
        finally:
            assert sum(len(s) for s in sinks) <= len(data)
        return "ok", len(session._protocol.trailing_data())
    finally:
        session_module.MAX_LISTING_BYTES, session_module.MAX_HEADER_BYTES = saved
