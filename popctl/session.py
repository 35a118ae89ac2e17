"""A POP3 session: one Python method per POP3 command, typed results, domain exceptions.

Batches (headers, retrieval, deletion, listings) are pipelined (RFC 2449) in a bounded window
when the server announces PIPELINING, and sent one at a time otherwise. Leaving the ``with``
block normally sends QUIT, which commits deletions; leaving it by an exception closes the
connection without QUIT, so the server rolls back every deletion of this session.

Every wait for the server is bounded three ways (the clocks count only time spent waiting for the
server, never time spent writing what arrived, so a slow disk or pager is not the server's
fault): no read waits longer than the read timeout ``T``; a status line (the greeting, +OK/-ERR,
a SASL challenge) is complete within ``T`` of waiting; the data of a multi-line reply arrives at
MIN_DATA_RATE octets/s on average once ``T`` of grace is spent. The session as a whole waits at
most its session timeout (``default_session_timeout``), TLS handshakes and sending included.

Why one module of over a thousand lines: ``Session`` is one object whose state (the protocol's
queue of pending commands, the pipelining window, the deadline clocks, the trace) every method
reads and changes, and the tests patch this module's limits (MAX_IN_FLIGHT, MAX_HEADER_BYTES,
...) by name. The next cut is the I/O pump (``_send`` to ``_batch``, with its clocks and trace)
as a base class of its own module.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import functools
import itertools
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Final, NamedTuple, Protocol

from popctl import auth
from popctl.defaults import SESSION_TIMEOUT, SESSION_TIMEOUT_READS
from popctl.display import Redactor, safe
from popctl.errors import (
    AuthenticationError,
    CapabilityError,
    LocalProtocolError,
    LoginDelayError,
    MailboxInUseError,
    NetworkTimeoutError,
    NoSuchMessageError,
    PermanentServerError,
    PopctlError,
    RemoteProtocolError,
    ServerError,
    TemporaryServerError,
    TLSError,
    TransportError,
)
from popctl.listing import (
    MAX_MESSAGE_NUMBER,
    ListingSink,
    SizeListing,
    UidListing,
    check_number,
    highest_allowed,
    parse_int,
    parse_pair,
    parse_size,
)
from popctl.models import (
    Capabilities,
    Credentials,
    Endpoint,
    MailboxStat,
    MessageHeaders,
    MessageSize,
    MessageUid,
    Retrieved,
    TLSInfo,
    TLSMode,
)
from popctl.protocol import (
    CLOSED,
    NEED_DATA,
    Challenge,
    Command,
    Data,
    EndOfData,
    Event,
    Greeting,
    POP3Protocol,
    Reply,
)
from popctl.transport import Transport, make_tls_context

# Commands in flight at once when pipelining. A window must cover a whole round trip of work to
# keep the link busy: at 100 (mpop's choice) 1,000 TOPs cost 10 round trips; at 1,000 they cost
# one. The byte limit below is what really bounds it.
MAX_IN_FLIGHT: Final = 1000

# Command bytes in flight. Kept below the socket buffers a command can wait in (Linux: at least
# 16 KiB of ours plus 128 KiB of the server's receive buffer), so our writes never block while
# the server is blocked writing replies we have not read yet: neither side can deadlock.
MAX_IN_FLIGHT_BYTES: Final = 32 * 1024

# A header block larger than this is a broken or hostile server; the rest is read and dropped.
MAX_HEADER_BYTES: Final = 256 * 1024

# A whole LIST, UIDL or CAPA reply read: 100,000 messages' UIDL is about 3 MB. LIST and UIDL
# are parsed as they arrive into arrays (popctl/listing.py), a few octets per message.
MAX_LISTING_BYTES: Final = 64 * 1024 * 1024

# The slowest average, in octets per second, at which the data of a multi-line reply may arrive
# once its grace (the read timeout) is spent: a 9.6 kbit/s link still passes, a server dripping a
# line every half second does not (it is cut after about the read timeout), and a 200 MB RETR is
# allowed 200,000 s. What bounds a server sending just above it is the session timeout.
MIN_DATA_RATE: Final = 1024

# The default bound on a whole session's waiting is defaults.SESSION_TIMEOUT, or
# defaults.SESSION_TIMEOUT_READS read timeouts if longer.

# A read that timed out after waiting this share of the read timeout or more is reported as
# the server's silence ("no answer ... (read timeout)"), not as a reply past its deadline.
_SILENCE_SHARE: Final = 0.9

# RFC 1939 makes TOP optional (mpopd has none): without it, headers cost whole messages.
NO_TOP: Final = ("the server does not support TOP, so headers cannot be read without "
                 "downloading whole messages")

TraceHook = Callable[[str, str], None]
"""Called with a direction ("C" client, "S" server, "*" popctl itself) and one line of text."""

# The lines of a multi-line reply the trace shows before one line counting the rest: enough for
# a listing's start or a message's first headers; a 3 MB message traced whole is 34,000 lines
# that bury the dialogue. TRACE_ALL_VARIABLE=1 in the environment shows every line.
TRACE_DATA_LINES: Final = 10
TRACE_ALL_VARIABLE: Final = "POPCTL_TRACE_ALL"


# The start of a traced line held back until its end arrives in a later read (a POP3 line is at
# most 1,000 octets; one that is longer is traced in the pieces it arrived in).
TRACE_LINE_HELD: Final = 8 * 1024


class _TraceCut:
    """What the trace showed of the multi-line reply being read, and what it left out."""

    __slots__ = ("limit", "lines", "octets", "partial", "pending", "shown")

    def __init__(self, limit: int | None) -> None:
        self.limit = limit  # None: show every line
        self.shown = 0  # complete lines shown
        self.lines = 0  # complete lines left out
        self.octets = 0  # octets left out
        self.partial = False  # the octets left out end inside a line
        self.pending = b""  # the start of a line to show, whose end is in the next read


class Sink(Protocol):
    def write(self, data: bytes, /) -> object: ...


class _Collector:
    """A sink keeping at most ``limit`` bytes; beyond it, drops (``truncate``) or raises."""

    __slots__ = ("_hard_limit", "_limit", "_parts", "_seen", "_size", "_truncate", "_what",
                 "truncated")

    def __init__(self, limit: int, *, truncate: bool, what: str,
                 hard_limit: int | None = None) -> None:
        self._parts: list[bytes] = []
        self._size = 0
        self._seen = 0
        self._limit = limit
        self._truncate = truncate
        self._what = what
        self._hard_limit = hard_limit  # even dropped, more than this is a broken server
        self.truncated = False

    def write(self, data: bytes) -> None:
        self._seen += len(data)
        if self._hard_limit is not None and self._seen > self._hard_limit:
            raise RemoteProtocolError(f"{self._what} reply larger than {self._hard_limit} "
                                      "octets; stopped reading it")
        room = self._limit - self._size
        if len(data) > room:
            if not self._truncate:
                raise RemoteProtocolError(f"{self._what} reply larger than {self._limit} octets")
            self.truncated = True
            data = data[:room]
        self._parts.append(data)
        self._size += len(data)

    def value(self) -> bytes:
        return b"".join(self._parts)

    def take(self) -> tuple[bytes, bool]:
        """The data kept and whether any was dropped, leaving the collector empty for the next
        reply: a batch of TOPs shares one, as each reply's data is written to it just before
        the batch yields that reply (a collector per TOP was a tenth of a listing's batch)."""
        parts = self._parts
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        truncated = self.truncated
        self._parts = []
        self._size = self._seen = 0
        self.truncated = False
        return data, truncated

    def lines(self) -> Iterator[str]:
        """Each line decoded and stripped, one at a time: a 100,000-message LIST is parsed
        without first holding 100,000 strings."""
        data = self.value()
        start, size = 0, len(data)
        while start < size:
            end = data.find(b"\n", start)
            if end < 0:
                end = size
            yield data[start:end].decode("utf-8", "replace").strip()
            start = end + 1


class _Request(NamedTuple):
    command: Command
    sink: Sink | None = None
    number: int = 0


# A NamedTuple's own constructor is a Python function (~0.17 µs more than tuple.__new__); a
# listing's batch builds a request and a result per message, so its loop builds them this way.
_new_request = functools.partial(tuple.__new__, _Request)
_new_headers = functools.partial(tuple.__new__, MessageHeaders)


class _Listing(NamedTuple):
    reply: Reply
    sink: ListingSink


_Scan = tuple[_Listing, _Listing]  # UIDL's and LIST's


class Lookup(NamedTuple):
    """The messages a command names by number, and what it will do with them first (built by
    query.Plan.lookup): when pipelining, ``login`` sends it with the credentials."""

    numbers: tuple[int, ...]
    uids: bool = True  # UIDL n beside LIST n
    # Then read and delete them (dele N --yes): TOP n 0 and DELE n go too, for the
    # ``headers(numbers, delete=numbers)`` that follows.
    delete: bool = False


class _Named(NamedTuple):
    """The replies to STAT, UIDL n and LIST n of the messages a user named (see lookup)."""

    numbers: tuple[int, ...]
    uids: bool
    replies: list[tuple[_Request, Reply]]


_CODE_ERRORS: Final[dict[str, type[ServerError]]] = {
    "IN-USE": MailboxInUseError,
    "LOGIN-DELAY": LoginDelayError,
    "SYS/TEMP": TemporaryServerError,
    "SYS/PERM": PermanentServerError,
    "AUTH": AuthenticationError,
}


def server_error(reply: Reply, default: type[ServerError] = ServerError,
                 what: str = "") -> ServerError:
    """The domain exception for a -ERR reply; an RFC 2449/3206 code picks the class."""
    code = reply.code
    cls = _CODE_ERRORS.get(code or "", default)
    what = what or reply.command.verb
    said = f"[{code}] {reply.text}" if code else reply.text
    hint = {
        MailboxInUseError: " (another client holds the mailbox; try again when it has finished)",
        LoginDelayError: " (the server limits how often you may log in; wait and retry)",
        TemporaryServerError: " (temporary server problem; try again later)",
    }.get(cls, "")
    return cls(f"{what} failed: server said: {said or '-ERR'}{hint}",
               command=reply.command.verb, code=code, text=reply.text)


def _mailbox_of(count: int) -> str:
    """How selection.select says how many messages there are (a test keeps the two alike)."""
    if count == 0:
        return "the mailbox is empty"
    return f"the mailbox has {count} message{'s' if count != 1 else ''}"


def default_session_timeout(timeout: float) -> float:
    """The session timeout when none is given, for a read timeout of ``timeout`` seconds."""
    return max(SESSION_TIMEOUT, SESSION_TIMEOUT_READS * timeout)


class Session:
    """An open POP3 connection. Use ``Session.connect`` and a ``with`` block."""

    def __init__(self, transport: Transport, *, trace: TraceHook | None = None,
                 pipelining: bool | None = None, session_timeout: float | None = None) -> None:
        self._transport = transport
        # The clocks (see the module docstring): seconds spent waiting for the server, in the
        # whole session, for the status line awaited, for the multi-line reply being read.
        self._timeout: float = transport.timeout
        if session_timeout is None:
            session_timeout = default_session_timeout(self._timeout)
        self._session_timeout = session_timeout  # 0: no bound
        self._waited = 0.0
        self._line_waited = 0.0
        self._data_waited = 0.0
        self._data_octets = 0
        self._stat_count: int | None = None  # STAT's count, while it bounds a listing
        self._protocol = POP3Protocol()
        self._trace = trace
        self._force_pipelining = pipelining
        self._pushed: deque[_Request] = deque()
        self._closed = False
        self._marked = 0  # DELEs answered +OK since login or the last RSET: what QUIT commits
        self._prefetched: _Scan | None = None  # UIDL and LIST read with the login (see login)
        self._prefetched_uids: _Listing | None = None  # UIDL alone read with the login
        self._prefetched_named: _Named | None = None  # or LIST n and UIDL n (see lookup)
        # Sent with the login, replies unread: a batch starting with them adopts them.
        self._ahead: builtins.list[Command] = []
        # From login on: hides the password or token wherever the server quotes it back
        # (status lines, challenges, traced data, the mechanism's own errors).
        self._redact = Redactor()
        self.greeting: Greeting | None = None
        self.capabilities = Capabilities(known=False)
        self.login_capabilities = Capabilities(known=False)  # as offered before login
        self.mechanism: str | None = None

    # --- opening and closing ---------------------------------------------------------------------

    @classmethod
    def connect(cls, endpoint: Endpoint, *, trace: TraceHook | None = None,
                pipelining: bool | None = None) -> Session:
        """Connect, negotiate TLS as ``endpoint`` says, read the greeting and CAPA."""
        started = time.monotonic()
        transport = Transport.connect(endpoint.host, endpoint.effective_port,
                                      connect_timeout=endpoint.connect_timeout,
                                      timeout=endpoint.timeout)
        session = cls(transport, trace=trace, pipelining=pipelining,
                      session_timeout=endpoint.session_timeout)
        session._waited = time.monotonic() - started
        try:
            session._note(f"connected to {endpoint.host} port {endpoint.effective_port}")
            if endpoint.tls is TLSMode.IMPLICIT:
                session._start_tls(endpoint)
            session._read_greeting()
            session.capa()
            if endpoint.tls is TLSMode.STARTTLS:
                session.stls(endpoint)
        except BaseException:
            session.abort()
            raise
        return session

    def __enter__(self) -> Session:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None and not self._closed:
            self.quit()
        else:
            if isinstance(exc, PopctlError):
                self._redact_error(exc)  # e.g. a malformed listing line quoted in the message
            self.abort()

    def abort(self) -> None:
        """Close without QUIT: the server rolls back this session's deletions."""
        if not self._closed:
            self._closed = True
            self._note("closing without QUIT (marked deletions are rolled back)")
            self._transport.close()

    def set_trace(self, trace: TraceHook | None) -> None:
        """Start or stop observing the dialogue (the shell's ``trace on|off``)."""
        self._trace = trace

    @property
    def tls(self) -> TLSInfo | None:
        return self._transport.tls

    @property
    def encrypted(self) -> bool:
        return self._transport.tls is not None

    def lacks(self, capability: str) -> bool:
        """Whether CAPA proves the server lacks ``capability`` (never, if it has no CAPA)."""
        return self.capabilities.known and capability not in self.capabilities

    @property
    def pipelining(self) -> bool:
        if self._force_pipelining is not None:
            return self._force_pipelining
        return self.capabilities.pipelining

    # --- I/O pump --------------------------------------------------------------------------------

    def _note(self, text: str) -> None:
        if self._trace is not None:
            self._trace("*", safe(text))

    def _send(self, *commands: Command) -> None:
        try:
            data = self._protocol.send_many(commands)
        except PopctlError as e:
            self._redact_error(e)  # it may quote a line that answered no command
            raise
        if self._trace is not None:
            for command in commands:
                self._trace("C", safe(command.redacted()))
        self._write(data)

    def _write(self, data: bytes) -> None:
        wait = self._allowed(self._timeout)
        started = time.monotonic()
        try:
            self._transport.send(data, wait)
        except NetworkTimeoutError as e:
            self._waited += time.monotonic() - started
            if wait < self._timeout:
                raise self._session_expired() from e
            raise
        self._waited += time.monotonic() - started

    def _allowed(self, wait: float) -> float:
        """``wait``, or less if the session timeout comes first (then raise if it has)."""
        if not self._session_timeout:
            return wait
        left = self._session_timeout - self._waited
        if left <= 0:
            raise self._session_expired()
        return min(wait, left)

    def _session_expired(self) -> NetworkTimeoutError:
        return NetworkTimeoutError(
            f"waited more than {self._session_timeout:g} s in all for {self._transport.host}",
            hint="session-timeout")

    def _next(self) -> Event:
        while True:
            try:
                event = self._protocol.next_event()
            except PopctlError as e:
                self._redact_error(e)  # it may quote a line that answered no command
                raise
            if event is NEED_DATA:
                self._receive()
                continue
            if not isinstance(event, Data):  # a status line or the end: the clocks restart
                self._line_waited = self._data_waited = 0.0
                # Data that came with the +OK counts for the reply it starts.
                self._data_octets = (self._protocol.buffered
                                     if self._protocol.receiving is not None else 0)
            if isinstance(event, Reply) and not event.ok and self._redact:
                # Where -ERR text enters: every error made of it then shows *** for a password
                # the server quotes back. +OK text carries counts, sizes and UIDs, which must
                # not change (a numeric password inside a size): it is hidden where shown
                # (the trace, the shell's raw commands).
                text, code = self._redact(event.text), event.code and self._redact(event.code)
                if (text, code) != (event.text, event.code):
                    event = event._replace(text=text, code=code)
            if self._trace is not None:
                self._trace_event(event)
            return event

    def _receive(self) -> None:
        """One read, bounded by whichever deadline comes first (see the module docstring)."""
        timeout = self._timeout
        receiving = self._protocol.receiving
        if receiving is None:
            left = timeout - self._line_waited
        else:
            left = timeout + self._data_octets / MIN_DATA_RATE - self._data_waited
        if left <= 0:
            raise self._too_slow(receiving)
        wait = self._allowed(min(timeout, left))
        started = time.monotonic()
        try:
            data = self._transport.recv(wait)
        except NetworkTimeoutError as e:
            self._count_wait(time.monotonic() - started, receiving, 0)
            if wait < min(timeout, left):
                raise self._session_expired() from e
            if wait >= _SILENCE_SHARE * timeout:
                raise  # the server fell silent: "no answer ... (read timeout)"
            raise self._too_slow(receiving) from e
        self._count_wait(time.monotonic() - started, receiving, len(data))
        try:
            self._protocol.receive_data(data)
        except PopctlError as e:
            self._redact_error(e)
            raise

    def _count_wait(self, seconds: float, receiving: Command | None, octets: int) -> None:
        self._waited += seconds
        if receiving is None:
            self._line_waited += seconds
        else:
            self._data_waited += seconds
            self._data_octets += octets

    def _too_slow(self, receiving: Command | None) -> NetworkTimeoutError:
        host, timeout = self._transport.host, self._timeout
        if receiving is not None:
            return NetworkTimeoutError(
                f"reply to {receiving.verb} from {host} too slow: less than {MIN_DATA_RATE} "
                f"octets/s after the first {timeout:g} s (reply timeout)")
        pending = self._protocol.pending
        what = ("greeting" if not self._protocol.greeted
                else f"reply to {pending[0].verb}" if pending else "reply")
        return NetworkTimeoutError(
            f"no complete {what} from {host} within {timeout:g} s (reply timeout)")

    def _trace_server(self, line: str) -> None:
        assert self._trace is not None
        self._trace("S", self._redact(safe(line)))

    # The multi-line reply being traced (None: no data expected, or the trace began inside it).
    _trace_cut: _TraceCut | None = None

    def _trace_event(self, event: Event) -> None:
        if isinstance(event, Reply):
            sign = "+OK" if event.ok else "-ERR"
            code = f" [{event.code}]" if event.code else ""
            self._trace_server(f"{sign}{code} {event.text}".rstrip())
            if event.ok and event.command.multiline:
                show_all = os.environ.get(TRACE_ALL_VARIABLE, "") not in ("", "0")
                self._trace_cut = _TraceCut(None if show_all else TRACE_DATA_LINES)
        elif isinstance(event, Greeting):
            self._trace_server(f"{'+OK' if event.ok else '-ERR'} {event.text}".rstrip())
        elif isinstance(event, Challenge):
            self._trace_server(f"+ {event.data}".rstrip())
        elif isinstance(event, Data):
            self._trace_data(event.data)
        elif isinstance(event, EndOfData):
            cut, self._trace_cut = self._trace_cut, None
            if cut is not None and cut.pending:  # a last line without its line end
                self._trace_server(cut.pending.decode("utf-8", "replace"))
            if cut is not None and cut.octets:
                lines = cut.lines + cut.partial
                self._trace_server(f"... ({lines} more line{'' if lines == 1 else 's'}, "
                                   f"{cut.octets} octets)")
            self._trace_server(".")

    def _trace_data(self, data: bytes) -> None:
        """Show lines of a multi-line reply up to the limit, count the rest (never split it:
        a 200 MB message costs a count, not 200 MB of line objects). A line split between two
        reads is shown once, whole, unless it is longer than TRACE_LINE_HELD."""
        cut = self._trace_cut
        if cut is not None and cut.pending:
            data, cut.pending = cut.pending + data, b""
        pos, size = 0, len(data)
        while pos < size and (cut is None or cut.limit is None or cut.shown < cut.limit):
            end = data.find(b"\n", pos)
            if end < 0:  # a line continued in the next read
                if cut is not None and size - pos <= TRACE_LINE_HELD:
                    cut.pending = data[pos:]
                    return
                end = size  # too long to hold: shown as it arrived
            elif cut is not None:
                cut.shown += 1
            for line in data[pos:end].splitlines() or [b""]:  # b"" is a line ended by LF
                self._trace_server(line.decode("utf-8", "replace"))
            pos = end + 1
        if cut is not None and pos < size:
            cut.lines += data.count(b"\n", pos)
            cut.octets += size - pos
            cut.partial = data[-1:] != b"\n"

    def _reply(self, command: Command) -> Reply:
        event = self._next()
        if not isinstance(event, Reply) or event.command is not command:
            raise RemoteProtocolError(f"unexpected {type(event).__name__} from the server "
                                      f"while waiting for the reply to {command.verb}")
        if event.ok and command.verb == "DELE":
            self._marked += 1
            self._prefetched = None  # LIST and UIDL no longer show that message
            self._prefetched_named = None
            self._prefetched_uids = None
        elif event.ok and command.verb == "RSET":
            self._marked = 0
            self._prefetched = self._prefetched_named = None
            self._prefetched_uids = None
            self._stat_count = None  # the messages unmarked are listed again
        return event

    def _data(self, command: Command, sink: Sink) -> None:
        if self._trace is None:  # the trace shows each piece as it comes
            try:
                data = self._protocol.whole_data()
            except PopctlError as e:
                self._redact_error(e)
                raise
            if data is not None:  # all of it was here: as if EndOfData came (see _next)
                self._line_waited = self._data_waited = 0.0
                self._data_octets = 0
                if data:
                    sink.write(data)
                return
        while True:
            event = self._next()
            if isinstance(event, Data):
                sink.write(event.data)
            elif isinstance(event, EndOfData):
                return
            else:
                raise RemoteProtocolError(f"unexpected {event!r} inside the reply to "
                                          f"{command.verb}")

    def _settle(self) -> None:
        """Before a new command: finish whatever an earlier, abandoned call left unread; and
        undo the deletions sent with the login if no batch adopted them (RSET: nothing else
        can be marked yet), so that only a plan that asked for them deletes anything."""
        ahead, self._ahead = self._ahead, []
        if self._protocol.pending or self._protocol.receiving is not None:
            marked = self._marked
            self._drain()
            if ahead and self._marked > marked:
                self._note("the deletions sent with the login were not used: undoing them")
                self._call(Command("RSET"))

    def _drain(self) -> None:
        """Read and drop replies to commands a batch left in flight (its caller broke off),
        and the rest of a multi-line reply whose consumer failed (a full disk in the shell)."""
        self._pushed.clear()
        receiving = self._protocol.receiving
        if receiving is not None:
            self._data(receiving, _Collector(0, truncate=True, what=receiving.verb))
        while self._protocol.pending:
            command = self._protocol.pending[0]
            reply = self._reply(command)
            if reply.ok and command.multiline:
                self._data(command, _Collector(0, truncate=True, what=command.verb))

    def _call(self, command: Command, sink: Sink | None = None, *,
              error: type[ServerError] = ServerError, what: str = "") -> Reply:
        """Send one command, wait for its reply (and data), raise on -ERR."""
        self._settle()
        self._send(command)
        reply = self._reply(command)
        if not reply.ok:
            raise server_error(reply, error, what)
        if command.multiline:
            self._data(command, sink if sink is not None else _Collector(
                0, truncate=True, what=command.verb))
        return reply

    def _batch(self, requests: Iterable[_Request]) -> Iterator[tuple[_Request, Reply]]:
        """Send requests and yield each with its reply once its data went to its sink.

        While it runs, more requests may be appended to ``self._pushed`` (a DELE after a
        message was stored); they go out before the remaining ones.
        """
        source: Iterator[_Request] = iter(requests)
        adopted: builtins.list[_Request] = []
        if self._ahead:  # sent with the login: adopted if this batch starts with them
            adopted = builtins.list(itertools.islice(source, len(self._ahead)))
            if [r.command for r in adopted] == self._ahead \
                    and builtins.list(self._protocol.pending) == self._ahead:
                # The replies are matched to the commands sent, by identity.
                adopted = [r._replace(command=c) for r, c in zip(adopted, self._ahead,
                                                                  strict=True)]
                self._ahead = []
            else:
                source, adopted = itertools.chain(adopted, source), []
        if not adopted:
            self._settle()
        window = MAX_IN_FLIGHT if self.pipelining else 1
        refill = window // 2
        pushed = self._pushed
        held: _Request | None = None  # taken from ``requests``, not sent yet (the byte limit)
        in_flight: deque[tuple[_Request, int]] = deque(
            (r, len(r.command.encode())) for r in adopted)
        in_flight_bytes = sum(size for _, size in in_flight)
        # Replies to the oldest commands in flight that were complete in the buffer, each
        # with its data, read at once (see _data): one read brings hundreds of TOPs' replies.
        ready: deque[tuple[Reply, bytes]] = deque()
        while True:
            if len(in_flight) <= refill:
                batch: list[Command] = []
                while len(in_flight) < window:
                    # Those pushed while the batch runs go first, then the caller's.
                    if pushed:
                        request = pushed[0]
                    else:
                        if held is None and (held := next(source, None)) is None:
                            break
                        request = held
                    size = len(request.command.encode())
                    if in_flight and in_flight_bytes + size > MAX_IN_FLIGHT_BYTES:
                        break
                    if pushed:
                        pushed.popleft()
                    else:
                        held = None
                    in_flight.append((request, size))
                    in_flight_bytes += size
                    batch.append(request.command)
                if batch:
                    self._send(*batch)
            if not in_flight:
                return
            request, size = in_flight.popleft()
            in_flight_bytes -= size
            command = request.command
            if not ready and self._trace is None:  # the trace shows each piece as it comes
                try:
                    ready += self._protocol.next_whole_replies(len(in_flight) + 1)
                except PopctlError as e:
                    self._redact_error(e)
                    raise
                if ready:  # as if EndOfData came (see _next): the clocks restart
                    self._line_waited = self._data_waited = 0.0
                    self._data_octets = 0
            if ready:
                reply, data = ready.popleft()
                if reply.command is not command:  # the protocol's queue is in_flight's
                    raise LocalProtocolError(f"reply to {reply.command.verb} read as the reply "
                                             f"to {command.verb}")
                if data:
                    (request.sink if request.sink is not None else _Collector(
                        0, truncate=True, what=command.verb)).write(data)
                yield request, reply
                continue
            reply = self._reply(command)
            if reply.ok and command.multiline:
                sink = request.sink if request.sink is not None else _Collector(
                    0, truncate=True, what=command.verb)
                self._data(command, sink)
            yield request, reply

    # --- connection set-up -----------------------------------------------------------------------

    def _read_greeting(self) -> None:
        event = self._next()
        if not isinstance(event, Greeting):
            raise RemoteProtocolError("the server sent no greeting")
        if not event.ok:
            fake = Reply(Command("NOOP"), False, event.text, event.code)
            raise server_error(fake, what="connecting")
        self.greeting = event

    def _start_tls(self, endpoint: Endpoint) -> None:
        context = make_tls_context(endpoint.ca_file, fingerprint=endpoint.fingerprint,
                                   insecure=endpoint.insecure)
        # One deadline for the whole handshake: the read timeout (less if the session's is near).
        wait = self._allowed(self._timeout)
        started = time.monotonic()
        try:
            info = self._transport.start_tls(context, fingerprint=endpoint.fingerprint,
                                             timeout=wait)
        except NetworkTimeoutError as e:
            if wait < self._timeout:
                raise self._session_expired() from e
            raise
        finally:
            self._waited += time.monotonic() - started
        self._note(f"TLS {info.version} {info.cipher}, certificate SHA-256 {info.cert_sha256}"
                   + ("" if info.verified else " (NOT VERIFIED: verification is off)"))

    def stls(self, endpoint: Endpoint) -> None:
        """RFC 2595: upgrade to TLS, then forget and re-read the capabilities."""
        if self.capabilities.known and "STLS" not in self.capabilities:
            raise TLSError(
                "the server does not offer STLS, so the connection cannot be encrypted "
                "(an attacker may have removed it); refusing to continue", hint="no-stls")
        command = Command("STLS")
        self._send(command)
        reply = self._reply(command)
        if not reply.ok:
            raise TLSError(f"the server refused STLS: {reply.text}; refusing to continue "
                           "without TLS")
        self._start_tls(endpoint)
        self.capabilities = Capabilities(known=False)
        self.capa()

    # --- authentication --------------------------------------------------------------------------

    def login(self, credentials: Credentials, *, scan: bool = False,
              lookup: Lookup | None = None, uids: bool = False) -> str:
        """Authenticate with the best mechanism allowed; return the mechanism used.

        With ``scan`` and a server that pipelines, UIDL and LIST ride in the login's last
        round trip (behind PASS, or behind the last message of a SASL exchange) and the next
        ``scan()`` answers from them: one round trip fewer for every command that lists the
        mailbox. With ``lookup`` (the messages a user named), STAT, UIDL n and LIST n ride
        instead, for the next ``lookup(numbers)``, and with ``lookup.delete`` TOP n 0 and
        DELE n too (whatever fails makes the command fail, and the session end without QUIT).
        With ``uids`` (and neither of those) UIDL alone rides along, for the next ``uidl()``.
        In the AUTHORIZATION state a server refuses them, so a failed login loses nothing.
        """
        self.login_capabilities = self.capabilities
        self._prefetched = self._prefetched_named = None
        self._prefetched_uids = None
        self._redact = Redactor((credentials.password, credentials.oauth2_token))
        try:
            name = auth.choose_mechanism(
                credentials, self.capabilities, encrypted=self.encrypted,
                apop_timestamp=self.greeting.timestamp if self.greeting else None)
        except PopctlError as e:
            self._redact_error(e)  # it may list CAPA's SASL line
            raise
        self._note(f"authenticating as {credentials.user} with {name}")
        capa_read = False
        prefetch = ([] if not self.pipelining
                    else self._named_requests(lookup.numbers, uids=lookup.uids)
                    if lookup is not None else self._scan_requests() if scan
                    else [self._listing_request("UIDL")] if uids else [])
        ahead = [Command(verb, (str(n), *args)) for n in sorted(lookup.numbers)
                 for verb, args in (("TOP", ("0",)), ("DELE", ()))] \
            if prefetch and lookup is not None and lookup.delete else []
        prefetch += [_Request(command) for command in ahead]
        if name == "USER":
            capa_read = self._login_user(credentials, prefetch)
        elif name == "APOP":
            assert self.greeting is not None and self.greeting.timestamp is not None
            digest = auth.apop_digest(self.greeting.timestamp, credentials.password or "")
            try:
                self._auth_reply(self._call_auth(Command("APOP", (credentials.user, digest))))
            except AuthenticationError:
                # A timestamp in the greeting says the server implements APOP, not that this
                # account has an APOP secret (GNU mailutils greets with one and refuses APOP
                # without its APOP database). Chosen by "auto" over a clear connection the user
                # allowed, APOP falls back to USER/PASS, which RFC 1939 permits after a failure.
                if credentials.mechanism.upper() != "AUTO" \
                        or not auth.available("USER", self.capabilities, None):
                    raise
                self._note("APOP refused; trying USER/PASS")
                name = "USER"
                capa_read = self._login_user(credentials, prefetch)
        else:
            capa_read = self._login_sasl(auth.make_mechanism(name, credentials), prefetch)
        self.mechanism = name
        if not capa_read:
            # Some servers (Gmail) announce more once logged in.
            capa = Command("CAPA") if self.capabilities.known else None
            commands = [*([capa] if capa else []), *(r.command for r in prefetch)]
            if commands:
                self._settle()
                self._send(*commands)
            if capa:
                self._read_capa(capa)
        if prefetch and lookup is not None:
            self._prefetched_named = _Named(lookup.numbers, lookup.uids, [
                (request, self._reply(request.command))
                for request in prefetch[:len(prefetch) - len(ahead)]])
            self._ahead = ahead
        elif scan and prefetch:
            self._prefetched = self._read_scan(prefetch)
        elif prefetch:
            self._prefetched_uids = self._read_listing(prefetch[0])
        return name

    def _redact_error(self, error: BaseException) -> None:
        """Hide the secret in ``error``'s message, in place (the traceback stays whole): for
        errors quoting server text that did not arrive as a status line."""
        if self._redact and error.args and isinstance(error.args[0], str):
            message = self._redact(error.args[0])
            if message != error.args[0]:
                error.args = (message, *error.args[1:])

    def _call_auth(self, command: Command) -> Reply:
        self._send(command)
        return self._reply(command)

    def _auth_reply(self, reply: Reply) -> None:
        if not reply.ok:
            raise server_error(reply, AuthenticationError, "login")

    def _login_user(self, credentials: Credentials, prefetch: builtins.list[_Request]) -> bool:
        """USER/PASS; when pipelining, CAPA (and ``prefetch``, whose replies the caller reads)
        rides along, saving round trips: True if so."""
        user = Command("USER", (credentials.user,))
        password = Command("PASS", (credentials.password or "",))
        if self.pipelining:
            capa = Command("CAPA")
            self._send(user, password, capa, *(r.command for r in prefetch))
            first, second = self._reply(user), self._reply(password)
            # Refused: say so now. Some servers hang up after a failed PASS, and waiting for
            # the CAPA behind it would report a lost connection instead of the refusal.
            self._auth_reply(first)
            self._auth_reply(second)
            try:
                first_after = self._reply(capa)
            except NetworkTimeoutError as e:
                # A server that announces PIPELINING but drops what arrived with the
                # credentials (a login process handing the connection on, its buffer lost).
                raise NetworkTimeoutError(
                    f"{e}; the server accepted the login but did not answer the commands sent "
                    "with it, although it announces PIPELINING", hint="no-pipelining") from e
            self._read_capa(capa, first_after)
            return True
        else:
            first = self._call_auth(user)
            if not first.ok:
                raise server_error(first, AuthenticationError, "login")
            second = self._call_auth(password)
        self._auth_reply(first)
        self._auth_reply(second)
        return False

    def _login_sasl(self, mechanism: auth.Mechanism, prefetch: builtins.list[_Request]) -> bool:
        """The SASL exchange. When pipelining, CAPA (and ``prefetch``, whose replies the caller
        reads) go out with the mechanism's last message instead of after the +OK: True if so.

        The rule relied on (docs/ARCHITECTURE.md, "Pipelining"): a line sent while no challenge
        is outstanding is a command, so commands may follow the client's last SASL message. If
        the server challenges all the same (an OAuth error), it takes the first of them as the
        answer; the -ERR that follows is reported as the login's failure, as it would be
        without pipelining. An answer the mechanism knows before its challenge comes
        (``Mechanism.next_answer``: SCRAM's empty line) goes out with the message before it,
        and the commands behind it.
        """
        capa = Command("CAPA") if self.capabilities.known else None
        after = [*([capa] if capa else []), *(r.command for r in prefetch)] \
            if self.pipelining else []
        followed = False
        answered: Command | None = None  # a command the server read as a SASL answer
        early: bytes | None = None  # an answer sent before its challenge came
        answered_ahead = False  # whether one was
        initial = mechanism.initial_response()
        command = None
        if initial is not None:
            try:
                command = Command("AUTH", (mechanism.name,
                                           base64.b64encode(initial).decode() or "="))
            except LocalProtocolError:  # too long: RFC 5034 says wait for an empty challenge
                command = None
        held_back = initial if command is None else None
        if command is None:
            command = Command("AUTH", (mechanism.name,))
        data = self._protocol.send(command)
        if self._trace is not None:
            self._trace("C", safe(command.redacted()))
        if held_back is None and initial is not None and mechanism.final and after:
            data += self._followers(after)
            followed = True
        self._write(data)
        mechanism.prepare()
        while True:
            try:
                event = self._next()
            except NetworkTimeoutError as e:
                if not answered_ahead:
                    raise
                # A server that drops what came before it asked (its buffer flushed at the
                # challenge) still waits for the empty line.
                raise NetworkTimeoutError(
                    f"{e}; the server did not take {mechanism.name}'s last message, sent with "
                    "the one before, although it announces PIPELINING",
                    hint="no-pipelining") from e
            if isinstance(event, Reply) and event.command is command:
                self._auth_reply(event)
                if early is not None:
                    # The server never sent the challenge the early answer was for: it now
                    # reads that line as a command, and the mechanism has no proof (SCRAM).
                    mechanism.finish()
                    raise RemoteProtocolError(
                        f"the server ended {mechanism.name} without its last challenge")
                if answered is not None:
                    raise RemoteProtocolError(
                        f"the server challenged after {mechanism.name}'s last message, took "
                        f"{answered.verb} as the answer and accepted the login")
                mechanism.finish()
                if followed and capa is not None:
                    self._read_capa(capa)
                return followed
            if not isinstance(event, Challenge):
                raise RemoteProtocolError(f"unexpected {event!r} during AUTH")
            if event.answered_by is not None:
                # Pipelined behind what should have been the last message: the server has
                # its answer already (an OAuth error ends in -ERR whatever the answer).
                answered = event.answered_by
                self._note(f"the server read {answered.verb} as the answer to its challenge")
                continue
            try:
                challenge = base64.b64decode(event.data, validate=True)
            except binascii.Error:
                if not event.answered_early:
                    self._write(self._protocol.send_auth_response("*"))
                raise RemoteProtocolError(
                    "the server sent a SASL challenge that is not base64") from None
            if event.answered_early:
                # Its answer is on its way already; the mechanism checks the challenge (SCRAM:
                # the server's signature) and raises if the login must not be kept.
                assert early is not None
                try:
                    if mechanism.respond(challenge) != early:
                        raise LocalProtocolError(f"{mechanism.name} answered differently "
                                                 "than it said it would")
                except Exception as e:
                    self._redact_error(e)
                    raise
                early = None
                continue
            if held_back is not None and not challenge:
                response, held_back = held_back, None
            else:
                try:
                    response = mechanism.respond(challenge)
                except Exception as e:
                    self._write(self._protocol.send_auth_response("*"))
                    self._redact_error(e)  # it may quote the challenge (SCRAM's e=)
                    raise
            line = base64.b64encode(response).decode()
            data = self._protocol.send_auth_response(line)
            if self._trace is not None:
                self._trace("C", "***" if line else "")
            if mechanism.next_answer is not None and after and not followed:
                early, answered_ahead = mechanism.next_answer, True
                line = base64.b64encode(early).decode()
                data += self._protocol.send_auth_response(line, early=True)
                if self._trace is not None:
                    self._trace("C", "***" if line else "")
                data += self._followers(after)
                followed = True
            if mechanism.final and after and not followed:
                data += self._followers(after)
                followed = True
            self._write(data)

    def _followers(self, commands: builtins.list[Command]) -> bytes:
        """``commands`` queued behind the AUTH whose last message is being sent."""
        self._protocol.auth_sent_last()
        if self._trace is not None:
            for command in commands:
                self._trace("C", safe(command.redacted()))
        return b"".join(self._protocol.send(c) for c in commands)

    # --- the POP3 commands -----------------------------------------------------------------------

    def capa(self) -> Capabilities:
        """RFC 2449 CAPA. A server without CAPA yields Capabilities(known=False)."""
        command = Command("CAPA")
        self._settle()
        self._send(command)
        return self._read_capa(command)

    def _read_capa(self, command: Command, reply: Reply | None = None) -> Capabilities:
        reply = self._reply(command) if reply is None else reply
        if not reply.ok:
            self.capabilities = Capabilities(known=False)
            return self.capabilities
        collector = _Collector(MAX_LISTING_BYTES, truncate=False, what="CAPA")
        self._data(command, collector)
        self.capabilities = Capabilities.parse(list(collector.lines()))
        return self.capabilities

    def stat(self) -> MailboxStat:
        reply = self._call(Command("STAT"))
        words = reply.text.split()
        if len(words) < 2:
            raise RemoteProtocolError(f"malformed STAT reply: {reply.text[:80]!r}")
        count = parse_int(words[0], "STAT count")
        if count > MAX_MESSAGE_NUMBER:
            raise RemoteProtocolError(
                f"server sent STAT count {count}, more messages than any mailbox holds (the "
                f"limit is {MAX_MESSAGE_NUMBER})")
        self._stat_count = count
        return MailboxStat(count, parse_int(words[1], "STAT size"))

    def _listed(self, listing: _Listing) -> SizeListing | UidListing:
        """A LIST or UIDL reply's listing, checked against the last STAT: a listing can only
        shrink after it (deletions), never grow (RSET forgets the count)."""
        result = listing.sink.finish()
        if self._stat_count is not None and len(result) > self._stat_count:
            raise RemoteProtocolError(
                f"server listed {len(result)} messages in its {result.what} reply, but its "
                f"STAT said {self._stat_count}")
        highest = highest_allowed(len(result), self._marked)
        if result.last > highest:
            raise RemoteProtocolError(
                f"server listed message {result.last} in a {result.what} reply of "
                f"{len(result)} message(s) after {self._marked} deletion(s) in this session: "
                f"messages are numbered from 1 to their count (at most {highest} allowed)")
        return result

    @staticmethod
    def _listing_request(verb: str) -> _Request:
        listing = SizeListing() if verb == "LIST" else UidListing()
        return _Request(Command(verb), ListingSink(listing, MAX_LISTING_BYTES))

    def list(self, messages: Iterable[int] | None = None) -> Sequence[MessageSize]:
        """Sizes of all messages (one LIST, kept compact) or of the given ones (pipelined
        LIST n)."""
        if messages is None:
            request = self._listing_request("LIST")
            assert isinstance(request.sink, ListingSink)
            reply = self._call(request.command, request.sink)
            sizes = self._listed(_Listing(reply, request.sink))
            assert isinstance(sizes, SizeListing)
            return sizes
        result = []
        for request, reply in self._batch(
                _Request(Command("LIST", (str(n),)), number=n) for n in messages):
            if not reply.ok:
                raise server_error(reply, NoSuchMessageError, f"LIST {request.number}")
            entry = self._size_entry(reply.text)
            if entry.number != request.number:
                raise RemoteProtocolError(f"asked LIST {request.number}, server answered for "
                                          f"message {entry.number}")
            result.append(entry)
        return result

    @staticmethod
    def _size_entry(line: str) -> MessageSize:
        return parse_size(line)

    def uidl(self, messages: Iterable[int] | None = None) -> Sequence[MessageUid]:
        """Unique ids of all messages (one UIDL, kept compact) or of the given ones (pipelined
        UIDL n)."""
        if messages is None:
            listing, self._prefetched_uids = self._prefetched_uids, None
            if listing is None:
                request = self._listing_request("UIDL")
                assert isinstance(request.sink, ListingSink)
                listing = _Listing(self._call(request.command, request.sink,
                                              error=CapabilityError), request.sink)
            elif not listing.reply.ok:
                raise server_error(listing.reply, CapabilityError)
            uids = self._listed(listing)
            assert isinstance(uids, UidListing)
            return uids
        result = []
        for request, reply in self._batch(
                _Request(Command("UIDL", (str(n),)), number=n) for n in messages):
            if not reply.ok:
                raise server_error(reply, NoSuchMessageError, f"UIDL {request.number}")
            number, uid = parse_pair(reply.text, "UIDL")
            entry = MessageUid(check_number(number, "UIDL"), uid)
            if entry.number != request.number:
                raise RemoteProtocolError(f"asked UIDL {request.number}, server answered for "
                                          f"message {entry.number}")
            result.append(entry)
        return result

    def scan(self) -> tuple[SizeListing, UidListing | None]:
        """LIST and UIDL together, in one round trip when pipelining (none if they came with
        the login); UIDs None without UIDL. Both kept compact (popctl/listing.py)."""
        scanned, self._prefetched = self._prefetched, None
        if scanned is None:
            self._settle()
            requests = self._scan_requests()
            if self.pipelining:
                self._send(*(r.command for r in requests))
            scanned = self._read_scan(requests, sent=self.pipelining)
        uidl, listing = scanned
        if not listing.reply.ok:
            raise server_error(listing.reply)
        sizes = self._listed(listing)
        assert isinstance(sizes, SizeListing)
        if not uidl.reply.ok:
            return sizes, None
        uids = self._listed(uidl)
        assert isinstance(uids, UidListing)
        return sizes, uids

    def lookup(self, numbers: Sequence[int], *, uids: bool = True
               ) -> tuple[Sequence[MessageSize], Sequence[MessageUid] | None]:
        """The sizes (LIST n) and UIDs (UIDL n, with ``uids``) of the messages a user named, in
        one pipelined batch with a STAT (none if it came with the login): a few lines where
        the whole listings of a large mailbox are megabytes. A message that is not there
        raises NoSuchMessageError, worded as selection.select words it; UIDs are None if the
        server answers no UIDL n.
        """
        numbers = tuple(numbers)
        named, self._prefetched_named = self._prefetched_named, None
        if named is None or (named.numbers, named.uids) != (numbers, uids):
            if not self.pipelining and len(numbers) > 1:
                # In lock-step every lookup is a round trip: two listings cost two.
                return self.scan() if uids else (self.list(), None)
            named = _Named(numbers, uids, builtins.list(self._batch(
                self._named_requests(numbers, uids=uids, stat=self.pipelining))))
        count = None
        sizes: builtins.list[MessageSize] = []
        found: builtins.list[MessageUid] = []
        for request, reply in named.replies:
            verb, n = request.command.verb, request.number
            if verb == "STAT":
                words = reply.text.split()
                if reply.ok and words and words[0].isdigit() and len(words[0]) <= 10:
                    count = int(words[0])
                continue
            if not reply.ok:
                if verb == "UIDL":
                    continue  # no UIDL here (the caller decides whether that matters)
                if reply.code is not None:  # [SYS/TEMP] and such: not a missing message
                    raise server_error(reply, NoSuchMessageError, f"LIST {n}")
                if count is None and not self._marked:  # not asked in lock-step: ask now
                    count = self.stat().count
                if count is not None and not self._marked and n > count:
                    raise NoSuchMessageError(f"message {n} does not exist ({_mailbox_of(count)})")
                raise NoSuchMessageError(f"message {n} does not exist or is deleted")
            if verb == "LIST":
                size = parse_size(reply.text)
                number = size.number
                sizes.append(size)
            else:
                number, uid = parse_pair(reply.text, "UIDL")
                found.append(MessageUid(check_number(number, "UIDL"), uid))
            if number != n:
                raise RemoteProtocolError(f"asked {verb} {n}, server answered for message "
                                          f"{number}")
        return sizes, found or None  # None: not asked, or no UIDL n answered

    @staticmethod
    def _named_requests(numbers: Iterable[int], *, uids: bool,
                        stat: bool = True) -> builtins.list[_Request]:
        # STAT words a missing message's error as a whole listing would (pipelined, it costs
        # no round trip; in lock-step it is asked only then); UIDL n before LIST n for the
        # reason given in _scan_requests.
        numbers = builtins.list(numbers)
        return [*([_Request(Command("STAT"))] if stat else []),
                *(_Request(Command("UIDL", (str(n),)), number=n) for n in numbers if uids),
                *(_Request(Command("LIST", (str(n),)), number=n) for n in numbers)]

    @classmethod
    def _scan_requests(cls) -> builtins.list[_Request]:
        # UIDL first: GNU mailutils adds an X-UIDL header to each message when it first
        # computes its UID, and its LIST before that counts the message without it; after it,
        # LIST gives the octets RETR will send, in this session and the next.
        return [cls._listing_request("UIDL"), cls._listing_request("LIST")]

    def _read_scan(self, requests: builtins.list[_Request], *, sent: bool = True) -> _Scan:
        """The replies to _scan_requests() (sent already, or one at a time if not ``sent``)."""
        got = []
        for request in requests:
            if not sent:
                self._send(request.command)
            got.append(self._read_listing(request))
        return got[0], got[1]

    def _read_listing(self, request: _Request) -> _Listing:
        """The reply to a listing request already sent, and its data if +OK."""
        reply = self._reply(request.command)
        assert isinstance(request.sink, ListingSink)
        if reply.ok:
            self._data(request.command, request.sink)
        return _Listing(reply, request.sink)

    def top(self, message: int, lines: int, sink: Sink) -> int:
        """Headers and the first ``lines`` body lines of one message, streamed to ``sink``."""
        counter = _CountingSink(sink)
        try:
            self._call(Command("TOP", (str(message), str(lines))), counter,
                       error=NoSuchMessageError, what=f"TOP {message}")
        except NoSuchMessageError as e:
            if e.code is None and self.lacks("TOP"):
                raise CapabilityError(NO_TOP, command="TOP", hint="use-retr",
                                      hint_args={"number": str(message)}) from None
            raise
        return counter.octets

    def headers(self, messages: Iterable[int], lines: int = 0, *,
                delete: Iterable[int] = ()) -> Iterator[MessageHeaders]:
        """Pipelined TOP n ``lines`` over many messages, each result as soon as it is complete.

        The messages in ``delete`` are also marked deleted, in the same window: DELE n right
        after TOP n, or first for those not read here (their headers were cached). That reads
        what is deleted in the round trips of the deletion. A refused DELE raises
        NoSuchMessageError; as always, nothing is committed without QUIT.
        """
        doomed = set(delete)
        numbers = builtins.list(messages) if doomed else messages

        # A header block past MAX_HEADER_BYTES is cut; a reply that never ends is not read for
        # ever (a server ignoring TOP's line count sends whole messages, so the bound is the
        # generous one of listings). One collector for every TOP: see _Collector.take.
        block = _Collector(MAX_HEADER_BYTES, truncate=True, what="TOP",
                           hard_limit=MAX_LISTING_BYTES)

        def requests() -> Iterator[_Request]:
            if doomed:
                reading = set(numbers)
                for n in sorted(doomed - reading):
                    yield _Request(Command("DELE", (str(n),)), number=n)
            for n in numbers:
                yield _new_request((Command.top(n, lines), block, n))
                if n in doomed:
                    yield _Request(Command("DELE", (str(n),)), number=n)

        for request, reply in self._batch(requests()):
            if request.sink is None:  # a DELE
                if not reply.ok:
                    raise server_error(reply, NoSuchMessageError, f"DELE {request.number}")
                continue
            if not reply.ok:
                if reply.code is None and self.lacks("TOP"):
                    raise CapabilityError(NO_TOP, command="TOP")
                raise server_error(reply, NoSuchMessageError, f"TOP {request.number}")
            yield _new_headers((request.number, *block.take()))

    def retr(self, message: int, sink: Sink) -> int:
        """The whole message, streamed to ``sink`` in constant memory; returns the octets."""
        counter = _CountingSink(sink)
        self._call(Command("RETR", (str(message),)), counter, error=NoSuchMessageError,
                   what=f"RETR {message}")
        return counter.octets

    def retr_many(self, messages: Iterable[int], open_sink: Callable[[int], Sink], *,
                  finish: Callable[[int, Sink], None] | None = None,
                  delete: bool = False,
                  sizes: Mapping[int, int] | None = None) -> Iterator[Retrieved]:
        """Pipelined RETR. For each message: ``open_sink(n)``, the data, ``finish(n, sink)``.

        With ``delete``, DELE n is sent only after ``finish`` returned (it must make the copy
        durable); if ``finish`` raises, nothing more is sent and the error propagates. A
        message that arrived with fewer octets than ``sizes`` (its LIST size) says is
        ``short``: it is never deleted, as a transfer cut short is what that looks like. More
        octets are normal (mpopd lists LF sizes, mailutils adds a header).
        """
        counters: dict[int, _CountingSink] = {}

        def requests() -> Iterator[_Request]:
            for n in messages:
                counters[n] = _CountingSink(lambda n=n: open_sink(n))  # type: ignore[misc]
                yield _Request(Command("RETR", (str(n),)), counters[n], n)

        for request, reply in self._batch(requests()):
            n = request.number
            if request.command.verb == "DELE":
                if not reply.ok:
                    raise server_error(reply, NoSuchMessageError, f"DELE {n}")
                yield Retrieved(n, counters.pop(n).octets, deleted=True)
                continue
            if not reply.ok:
                raise server_error(reply, NoSuchMessageError, f"RETR {n}")
            counter = counters[n]
            if finish is not None:
                finish(n, counter.sink)
            short = sizes is not None and counter.octets < sizes.get(n, 0)
            if delete and not short:
                self._pushed.append(_Request(Command("DELE", (str(n),)), number=n))
            else:
                yield Retrieved(n, counters.pop(n).octets, short=short)

    def dele(self, messages: int | Iterable[int]) -> builtins.list[int]:
        """Mark messages deleted (pipelined). Committed only by QUIT; all-or-nothing on error."""
        numbers = [messages] if isinstance(messages, int) else list(messages)
        failure: ServerError | None = None
        marked = []
        for request, reply in self._batch(
                _Request(Command("DELE", (str(n),)), number=n) for n in numbers):
            if reply.ok:
                marked.append(request.number)
            elif failure is None:
                failure = server_error(reply, NoSuchMessageError, f"DELE {request.number}")
        if failure is not None:
            raise failure
        return marked

    def rset(self) -> None:
        """Unmark every message marked deleted in this session."""
        self._call(Command("RSET"))

    def noop(self) -> None:
        self._call(Command("NOOP"))

    def last(self) -> int:
        """RFC 1460 LAST: the highest message number accessed (few servers still have it)."""
        reply = self._call(Command("LAST"), error=CapabilityError)
        words = reply.text.split()
        return parse_int(words[0] if words else "", "LAST")

    def raw(self, line: str, sink: Sink | None = None) -> Reply:
        """Send one command line as typed (the shell's escape hatch); -ERR is returned, not
        raised. Multi-line replies of known commands go to ``sink``."""
        line = line.strip()
        if any(c in line for c in "\r\n\0"):
            # split() below would quietly turn a CR into an argument separator.
            raise LocalProtocolError("CR, LF or NUL inside a command line; nothing was sent")
        verb, _, rest = line.partition(" ")
        command = Command(verb, tuple(rest.split()) if verb.upper() not in ("PASS", "USER")
                          else (rest,) if rest else ())
        self._settle()
        self._send(command)
        reply = self._reply(command)
        if reply.ok and command.multiline:
            self._data(command, sink if sink is not None else _Collector(
                0, truncate=True, what=command.verb))
        return reply._replace(text=self._redact(reply.text))  # text to show, not to parse

    def quit(self) -> None:
        """QUIT: the server commits this session's deletions and closes.

        With no deletion marked there is nothing for the reply to confirm: QUIT is sent and the
        connection closed without waiting for it (a round trip saved on every read-only command;
        the server has the QUIT before the FIN and ends the session as usual).
        """
        if self._closed:
            return
        try:
            self._settle()
            command = Command("QUIT")
            try:
                self._send(command)
                if not self._marked:
                    self._note("QUIT sent; no deletions pending, so its reply is not awaited")
                    return
                reply = self._reply(command)
            except TransportError as e:
                if not self._marked:
                    # Nothing to commit, so nothing depends on the answer: the work is done.
                    self._note(f"no answer to QUIT ({e}); no deletions were pending")
                    return
                raise type(e)(f"{e}; the {self._marked} deletion(s) of this session may or "
                              "may not have been made (see what is left with list)",
                              hint=e.hint, hint_args=e.hint_args) from e
            if not reply.ok:
                raise server_error(reply, what="QUIT (some deletions may not have been made)")
        finally:
            self._closed = True
            self._transport.close()


class _CountingSink:
    """Counts what passes to a sink, which is opened only when first needed."""

    def __init__(self, sink: Sink | Callable[[], Sink]) -> None:
        self._sink = sink if not callable(sink) else None
        self._open = sink if callable(sink) else None
        self.octets = 0

    @property
    def sink(self) -> Sink:
        if self._sink is None:
            assert self._open is not None
            self._sink = self._open()
        return self._sink

    def write(self, data: bytes) -> None:
        self.octets += len(data)
        self.sink.write(data)


# Re-exported for callers that only import the session module.
__all__ = ["CLOSED", "Lookup", "Session", "Sink", "TraceHook", "server_error"]
