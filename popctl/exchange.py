"""The I/O pump under a POP3 ``Session``: commands out, replies and their data in, pipelined
batches, the clocks that bound every wait, and the trace.

Every wait for the server is bounded three ways (the clocks count only time spent waiting for the
server, never time spent writing what arrived, so a slow disk or pager is not the server's
fault): no read waits longer than the read timeout ``T``; a status line (the greeting, +OK/-ERR,
a SASL challenge) is complete within ``T`` of waiting; the data of a multi-line reply arrives at
MIN_DATA_RATE octets/s on average once ``T`` of grace is spent. The session as a whole waits at
most its session timeout (``default_session_timeout``), TLS handshakes and sending included.

``Exchange`` knows commands and replies, not what they mean: ``Session`` (session.py), its
subclass, has one method per POP3 command.
"""

from __future__ import annotations

import builtins
import functools
import itertools
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Final, NamedTuple, Protocol

from popctl.defaults import SESSION_TIMEOUT, SESSION_TIMEOUT_READS
from popctl.display import Redactor, safe
from popctl.errors import (
    AuthenticationError,
    LocalProtocolError,
    LoginDelayError,
    MailboxInUseError,
    NetworkTimeoutError,
    PermanentServerError,
    PopctlError,
    RemoteProtocolError,
    ServerError,
    TemporaryServerError,
)
from popctl.models import Capabilities
from popctl.protocol import (
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
from popctl.transport import Transport

# Commands in flight at once when pipelining. A window must cover a whole round trip of work to
# keep the link busy: at 100 (mpop's choice) 1,000 TOPs cost 10 round trips; at 1,000 they cost
# one. The byte limit below is what really bounds it.
MAX_IN_FLIGHT: Final = 1000

# Command bytes in flight. Kept below the socket buffers a command can wait in (Linux: at least
# 16 KiB of ours plus 128 KiB of the server's receive buffer), so our writes never block while
# the server is blocked writing replies we have not read yet: neither side can deadlock.
MAX_IN_FLIGHT_BYTES: Final = 32 * 1024

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


_CODE_ERRORS: Final[dict[str, type[ServerError]]] = {
    "IN-USE": MailboxInUseError,
    "LOGIN-DELAY": LoginDelayError,
    "SYS/TEMP": TemporaryServerError,
    "SYS/PERM": PermanentServerError,
    "AUTH": AuthenticationError,
}


def server_error(reply: Reply, default: type[ServerError] = ServerError,
                 what: str = "", then: str = "") -> ServerError:
    """The domain exception for a -ERR reply; an RFC 2449/3206 code picks the class. ``then``:
    what the refusal means for the user, after what the server said."""
    code = reply.code
    cls = _CODE_ERRORS.get(code or "", default)
    what = what or reply.command.verb
    said = f"[{code}] {reply.text}" if code else reply.text
    hint = {
        MailboxInUseError: " (another client holds the mailbox; try again when it has finished)",
        LoginDelayError: " (the server limits how often you may log in; wait and retry)",
        TemporaryServerError: " (temporary server problem; try again later)",
    }.get(cls, "")
    return cls(f"{what} failed: server said: {said or '-ERR'}{hint}{then}",
               command=reply.command.verb, code=code, text=reply.text)


def default_session_timeout(timeout: float) -> float:
    """The session timeout when none is given, for a read timeout of ``timeout`` seconds."""
    return max(SESSION_TIMEOUT, SESSION_TIMEOUT_READS * timeout)


class Exchange:
    """Commands and replies over one transport; ``Session`` builds the POP3 commands on it."""

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
        self._protocol = POP3Protocol()
        self._trace = trace
        self._force_pipelining = pipelining
        self._pushed: deque[_Request] = deque()
        self._closed = False
        self._marked = 0  # DELEs answered +OK since login or the last RSET: what QUIT commits
        # Sent with the login, replies unread: a batch starting with them adopts them.
        self._ahead: builtins.list[Command] = []
        # From login on: hides the password or token wherever the server quotes it back
        # (status lines, challenges, traced data, the mechanism's own errors).
        self._redact = Redactor()
        self.capabilities = Capabilities(known=False)

    def set_trace(self, trace: TraceHook | None) -> None:
        """Start or stop observing the dialogue (the shell's ``trace on|off``)."""
        self._trace = trace

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
        if event.ok and command.verb in ("DELE", "RSET"):
            self._marks_changed(command.verb)
        return event

    def _marks_changed(self, verb: str) -> None:
        """A DELE or RSET was accepted: count what QUIT would commit."""
        self._marked = self._marked + 1 if verb == "DELE" else 0

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

    def _redact_error(self, error: BaseException) -> None:
        """Hide the secret in ``error``'s message, in place (the traceback stays whole): for
        errors quoting server text that did not arrive as a status line."""
        if self._redact and error.args and isinstance(error.args[0], str):
            message = self._redact(error.args[0])
            if message != error.args[0]:
                error.args = (message, *error.args[1:])
