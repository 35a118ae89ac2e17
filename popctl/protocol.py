"""The POP3 client protocol as a state machine: commands in, bytes out; bytes in, events out.

No sockets, no clocks, no threads (in the manner of h11): the transport feeds received bytes to
``receive_data`` and pulls ``next_event`` until it says NEED_DATA. Commands awaiting replies sit in
a queue, so several may be in flight at once (RFC 2449 PIPELINING).
"""

from __future__ import annotations

import functools
import re
from collections import deque
from collections.abc import Sequence
from enum import Enum
from typing import Final, NamedTuple

from popctl.display import safe
from popctl.errors import ConnectionClosedError, LocalProtocolError, RemoteProtocolError

# RFC 2449 section 4: a command line is at most 255 octets including the CRLF.
MAX_COMMAND_LINE: Final = 255

# RFC 2449 section 4 caps a status line at 512 octets including CRLF, but real servers exceed it in
# greetings and error texts. 8 KiB tolerates them while bounding what a server that never sends a
# line end can make us buffer.
MAX_STATUS_LINE: Final = 8192

# RFC 5034 exempts the client's answers to SASL challenges from the 255-octet command limit: an
# OAuth2 bearer token alone is often 1-4 KiB. 64 KiB leaves room for any token we have seen.
MAX_AUTH_RESPONSE_LINE: Final = 65536

# Compact the receive buffer once this much of it has been consumed: copying is then amortised.
_COMPACT_THRESHOLD: Final = 65536

_CR, _LF, _DOT = 0x0D, 0x0A, 0x2E


class State(Enum):
    AUTHORIZATION = "AUTHORIZATION"
    TRANSACTION = "TRANSACTION"
    UPDATE = "UPDATE"  # QUIT sent: nothing more may be sent
    CLOSED = "CLOSED"


# Verbs each state allows (RFC 1939, RFC 2449, RFC 2595, RFC 5034, RFC 6856). LAST is RFC 1460's.
LEGAL_COMMANDS: Final[dict[State, frozenset[str]]] = {
    State.AUTHORIZATION: frozenset(
        {"USER", "PASS", "APOP", "AUTH", "CAPA", "STLS", "UTF8", "NOOP", "QUIT"}
    ),
    State.TRANSACTION: frozenset(
        {"STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "TOP", "UIDL", "CAPA", "LAST", "QUIT"}
    ),
    State.UPDATE: frozenset(),
    State.CLOSED: frozenset(),
}
KNOWN_COMMANDS: Final = frozenset().union(*LEGAL_COMMANDS.values())
# What a pipelined window may hold without a check per command (send_many): legal once logged
# in, and never last in the queue (QUIT is; STLS and AUTH are not legal then).
_WINDOW_COMMANDS: Final = LEGAL_COMMANDS[State.TRANSACTION] - {"QUIT"}

# Verbs whose arguments are secret: a trace shows only the verb (and a SASL mechanism's name).
SECRET_COMMANDS: Final = frozenset({"PASS", "APOP", "AUTH"})

_VERB_RE = re.compile(r"[A-Za-z0-9-]{1,40}")
_CODE_RE = re.compile(r"\[([^\]\r\n]{1,200})\]\s*")
_TIMESTAMP_RE = re.compile(r"<[^<>\s]*@[^<>\s]*>")


class Command:
    """One POP3 command. Validated on creation: it can always be sent as it is."""

    __slots__ = ("_line", "args", "multiline", "verb")

    def __init__(self, verb: str, args: tuple[str, ...] = ()) -> None:
        # A batch of headers builds 100,000 of these: the checks are C-level string operations
        # (the known verbs need no regex; three ``in`` over the joined line instead of a
        # generator per argument).
        if verb not in KNOWN_COMMANDS and not _VERB_RE.fullmatch(verb):
            raise LocalProtocolError(f"not a POP3 command keyword: {verb!r}")
        self.verb = verb = verb.upper()
        self.args = args
        text = " ".join((verb, *args))
        if "" in args or "\r" in text or "\n" in text or "\0" in text:
            for arg in args:  # the first bad argument names the error
                if not arg:
                    raise LocalProtocolError(f"{verb}: empty argument")
                if "\r" in arg or "\n" in arg or "\0" in arg:
                    raise LocalProtocolError(
                        f"{verb}: CR, LF or NUL in an argument; nothing was sent")
        self._line = text.encode("utf-8") + b"\r\n"
        # Whether +OK to this command is followed by lines ending with a lone ".\r\n".
        self.multiline: bool = verb in ("RETR", "TOP", "CAPA") or (
            verb in ("LIST", "UIDL") and not args)
        if len(self._line) > MAX_COMMAND_LINE:
            raise LocalProtocolError(
                f"{verb}: command line longer than {MAX_COMMAND_LINE} octets (RFC 2449)"
            )

    @classmethod
    def top(cls, message: int, lines: int) -> Command:
        """``Command("TOP", (str(message), str(lines)))``, without the checks two whole
        numbers cannot fail: a batch of headers builds one per message (a Hypothesis test
        compares the two)."""
        args = (str(message), str(lines))
        line = f"TOP {args[0]} {args[1]}\r\n".encode()
        if len(line) > MAX_COMMAND_LINE:
            return cls("TOP", args)  # raises, as it would have
        command = object.__new__(cls)
        command.verb, command.args, command._line, command.multiline = "TOP", args, line, True
        return command

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Command):
            return NotImplemented
        return (self.verb, self.args) == (other.verb, other.args)

    def __hash__(self) -> int:
        return hash((self.verb, self.args))

    def encode(self) -> bytes:
        """The command line as sent, CRLF included."""
        return self._line

    def redacted(self) -> str:
        """The command as a trace may show it: secrets replaced by ``***``."""
        if self.verb == "AUTH":
            return f"AUTH {self.args[0]}" + (" ***" if len(self.args) > 1 else "")
        if self.verb in SECRET_COMMANDS:
            return f"{self.verb} ***"
        return " ".join((self.verb, *self.args))

    def __repr__(self) -> str:
        return f"Command({self.redacted()!r})"


# --- events --------------------------------------------------------------------------------------


# Events are NamedTuples: built by the thousand, and the class is cheaper to define than a
# dataclass (every command imports this module).


class Greeting(NamedTuple):
    ok: bool
    text: str
    code: str | None
    timestamp: str | None  # the APOP challenge <...@...>, if the server offers one


class Reply(NamedTuple):
    """A status line: +OK or -ERR, with its RFC 2449 response code split off."""

    command: Command
    ok: bool
    text: str
    code: str | None = None


# Reply(command, ok, text, code) without the NamedTuple's constructor, a Python function that
# costs more than the tuple (~0.17 µs): next_whole_replies builds one for each TOP of a window.
_new_reply = functools.partial(tuple.__new__, Reply)


class Challenge(NamedTuple):
    """A SASL server challenge ("+ base64") during AUTH.

    ``answered_by``: a command the client pipelined behind its last SASL message, which the
    server now reads as the answer to this challenge (see POP3Protocol.auth_sent_last); it gets
    no reply of its own and the client must not answer the challenge again.
    ``answered_early``: the client sent its answer before the challenge came
    (``send_auth_response(..., early=True)``); it must not answer again either.
    """

    command: Command
    data: str
    answered_by: Command | None = None
    answered_early: bool = False


class Data(NamedTuple):
    """A piece of a multi-line reply: un-dot-stuffed bytes, line ends as the server sent them."""

    command: Command
    data: bytes

    def __repr__(self) -> str:
        return f"Data(command={self.command!r}, {len(self.data)} octets)"


class EndOfData(NamedTuple):
    command: Command


class _Sentinel(Enum):
    NEED_DATA = "NEED_DATA"
    CLOSED = "CLOSED"


NEED_DATA: Final = _Sentinel.NEED_DATA
CLOSED: Final = _Sentinel.CLOSED

Event = Greeting | Reply | Challenge | Data | EndOfData | _Sentinel


def _clean(raw: bytes) -> str:
    """Server text made safe to show (display.safe): invalid UTF-8, control characters and
    bidirectional controls become U+FFFD. Status lines are text for people; the numbers and UIDs
    they carry are printable ASCII, which this leaves alone."""
    return safe(raw.decode("utf-8", "replace")).strip()


def parse_status(line: bytes) -> tuple[bool, str, str | None]:
    """Split "+OK [CODE] text" into (ok, text, code). Raises RemoteProtocolError otherwise."""
    if line == b"+OK":  # what Dovecot answers every TOP and RETR of a batch with
        return True, "", None
    head = line[:4].upper()
    if head.startswith(b"+OK") and (len(line) == 3 or line[3:4] in (b" ", b"\t")):
        ok, rest = True, line[3:]
    elif head == b"-ERR" and (len(line) == 4 or line[4:5] in (b" ", b"\t")):
        ok, rest = False, line[4:]
    else:
        raise RemoteProtocolError(
            f"expected +OK or -ERR from the server, got {_clean(line[:80])!r}"
        )
    text = _clean(rest)
    code = None
    match = _CODE_RE.match(text) if text[:1] == "[" else None
    if match:
        code, text = match.group(1).upper(), text[match.end():]
    return ok, text, code


def _line_start_dot(buf: bytearray, start: int, end: int) -> int:
    """``buf.find(b"\\n.", start, end)``, faster where dots are rare. A two-octet search steps
    at most three octets at a time (~1 ns an octet here: 0.18 s of a 200 MB attachment), while
    a one-octet search runs at memory speed; base64 has no dot at all. So: the first dot, and
    the two-octet search only from there."""
    dot = buf.find(b".", start + 1, end)
    if dot < 0 or buf[dot - 1] == _LF:
        return dot - 1 if dot >= 0 else -1
    return buf.find(b"\n.", dot, end)


class POP3Protocol:
    """Client side of one POP3 connection, without I/O."""

    def __init__(self) -> None:
        self.state = State.AUTHORIZATION
        self._buf = bytearray()
        self._pos = 0
        self._eof = False
        self._greeted = False
        self._pending: deque[Command] = deque()
        self._in_data: Command | None = None
        self._at_line_start = True
        self._auth_sent_last = False  # the client sent its last message of the pending AUTH
        self._early_answers = 0  # SASL answers sent before their challenge came
        self.stls_done = False  # set by STLS +OK; the transport must now start TLS

    # --- sending ---------------------------------------------------------------------------------

    @property
    def pending(self) -> tuple[Command, ...]:
        return tuple(self._pending)

    @property
    def greeted(self) -> bool:
        """Whether the greeting has been read."""
        return self._greeted

    @property
    def buffered(self) -> int:
        """How many received octets are not consumed yet."""
        return len(self._buf) - self._pos

    @property
    def receiving(self) -> Command | None:
        """The command whose multi-line data is being read, if any."""
        return self._in_data

    def send(self, command: Command) -> bytes:
        """Queue ``command`` as awaiting a reply and return the bytes to write."""
        if self.state not in (State.AUTHORIZATION, State.TRANSACTION):
            raise LocalProtocolError(f"cannot send {command.verb}: session is {self.state.value}")
        if command.verb in KNOWN_COMMANDS and command.verb not in LEGAL_COMMANDS[self.state] \
                and not self._after_login(command):
            raise LocalProtocolError(
                f"{command.verb} is not allowed in the {self.state.value} state"
            )
        if (self._greeted and not self._pending and self._in_data is None
                and self._pos < len(self._buf)):
            # Bytes no command asked for: sent blindly, the next command would take them for
            # its reply (a stray "+OK" read as QUIT's, a stray "-ERR" as a DELE's).
            line = bytes(self._buf[self._pos:self._pos + 80]).split(b"\n", 1)[0].rstrip(b"\r")
            raise RemoteProtocolError(
                f"server sent {_clean(line)!r} when no command was waiting for a reply")
        # Nothing is ever queued behind STLS, QUIT or an AUTH still expecting the client's
        # messages, so only the last command can be one of them: checking it alone keeps a
        # window of 1,000 pipelined commands linear.
        if self._pending and self._pending[-1].verb in ("STLS", "AUTH", "QUIT") and not (
                self._pending[-1].verb == "AUTH" and self._auth_sent_last):
            raise LocalProtocolError(
                f"cannot send {command.verb} while {self._pending[-1].verb} awaits its reply"
            )
        self._pending.append(command)
        if command.verb == "QUIT":
            self.state = State.UPDATE
        return command.encode()

    def send_many(self, commands: Sequence[Command]) -> bytes:
        """``send`` of each command in turn, the bytes joined. A pipelined window of a
        thousand TOPs makes once the checks that cannot differ between them: the state does
        not change, and only the first can be queued behind STLS, AUTH or QUIT (the others
        are queued behind the window's own commands, none of which is one of them). Anything
        else is sent one by one. (A Hypothesis test compares it with ``send``.)"""
        if len(commands) < 2 or self.state is not State.TRANSACTION \
                or not {c.verb for c in commands} <= _WINDOW_COMMANDS:
            return b"".join([self.send(command) for command in commands])
        first = self.send(commands[0])
        rest = commands[1:]
        self._pending.extend(rest)
        return first + b"".join([command.encode() for command in rest])

    def _after_login(self, command: Command) -> bool:
        """Whether ``command`` is queued behind a PASS, an APOP or an AUTH whose last client
        message was sent, still awaiting its reply, and is legal once logged in: pipelined
        (RFC 2449) on the bet that the login succeeds. If it fails, the server answers it -ERR
        in the AUTHORIZATION state."""
        return (self.state is State.AUTHORIZATION
                and command.verb in LEGAL_COMMANDS[State.TRANSACTION]
                and (any(c.verb in ("PASS", "APOP") for c in self._pending)
                     or (self._auth_sent_last and bool(self._pending)
                         and self._pending[0].verb == "AUTH")))

    def auth_sent_last(self) -> None:
        """The client has sent what its SASL mechanism sends last when it succeeds (PLAIN's
        initial response, CRAM-MD5's answer, SCRAM's closing empty line): commands may now be
        queued behind the AUTH (RFC 2449 pipelining; docs/ARCHITECTURE.md says which rule).
        Should the server still challenge, it takes the first of them as its answer (the
        Challenge says which), and the others get their replies as usual."""
        if not self._pending or self._pending[-1].verb != "AUTH":
            raise LocalProtocolError("no AUTH exchange is waiting for its last message")
        self._auth_sent_last = True

    def send_auth_response(self, response: str, *, early: bool = False) -> bytes:
        """Return the line answering a SASL challenge ("*" cancels the exchange). ``early``:
        it answers the challenge after the next, which has not come yet (SCRAM's empty line
        sent with its client-final message; docs/ARCHITECTURE.md, "Pipelining")."""
        if not self._pending or self._pending[0].verb != "AUTH":
            raise LocalProtocolError("no AUTH exchange is waiting for a response")
        if len(self._pending) > 1:
            # The server would read the first command queued behind the AUTH as the answer.
            raise LocalProtocolError("cannot answer a SASL challenge behind pipelined commands")
        if any(c in response for c in "\r\n\0"):
            raise LocalProtocolError("CR, LF or NUL in a SASL response; nothing was sent")
        line = response.encode("ascii") + b"\r\n"
        if len(line) > MAX_AUTH_RESPONSE_LINE:
            raise LocalProtocolError(f"SASL response longer than {MAX_AUTH_RESPONSE_LINE} octets")
        if early:
            self._early_answers += 1
        return line

    # --- receiving -------------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the server; ``b""`` means the server closed the connection."""
        if data:
            if self._eof:
                raise LocalProtocolError("data received after end of file")
            self._buf += data
        else:
            self._eof = True

    def trailing_data(self) -> bytes:
        """Bytes received but not yet consumed (after STLS +OK there must be none)."""
        return bytes(self._buf[self._pos:])

    def next_event(self) -> Event:
        if self._pos > _COMPACT_THRESHOLD:
            del self._buf[: self._pos]
            self._pos = 0
        if self._in_data is not None:
            return self._next_data_event(self._in_data)
        line = self._read_line()
        if line is None:
            if self._eof:
                # A lost connection, like a reset (ConnectionClosedError, exit status 4), not
                # a protocol violation: a retry may well succeed.
                if self._pending or not self._greeted:
                    waiting = self._pending[0].verb if self._pending else "the greeting"
                    raise ConnectionClosedError(
                        f"server closed the connection while we waited for the reply to {waiting}"
                    )
                if self._pos < len(self._buf):
                    raise ConnectionClosedError("server closed the connection mid-line")
                self.state = State.CLOSED
                return CLOSED
            return NEED_DATA
        if not self._greeted:
            return self._greeting(line)
        if not self._pending:
            raise RemoteProtocolError(
                f"server sent {_clean(line[:80])!r} when no command was waiting for a reply"
            )
        return self._reply(self._pending[0], line)

    def _read_line(self) -> bytes | None:
        end = self._buf.find(b"\n", self._pos, self._pos + MAX_STATUS_LINE)
        if end < 0:
            if len(self._buf) - self._pos >= MAX_STATUS_LINE:
                raise RemoteProtocolError(
                    f"server sent a status line longer than {MAX_STATUS_LINE} octets"
                )
            return None
        line = bytes(self._buf[self._pos:end])
        self._pos = end + 1
        return line[:-1] if line.endswith(b"\r") else line

    def _greeting(self, line: bytes) -> Greeting:
        try:
            ok, text, code = parse_status(line)
        except RemoteProtocolError as e:
            if not line[:4].upper().startswith((b"+OK", b"-ERR")):  # another service (SSH, HTTP)
                e.hint = "not-pop3"
            raise
        self._greeted = True
        stamp = _TIMESTAMP_RE.search(text)
        return Greeting(ok, text, code, stamp.group(0) if stamp else None)

    def _reply(self, command: Command, line: bytes) -> Reply | Challenge:
        if command.verb == "AUTH" and line[:1] == b"+" and line[:3].upper() != b"+OK":
            if line != b"+" and line[:2] != b"+ ":
                raise RemoteProtocolError(f"malformed SASL challenge {_clean(line[:80])!r}")
            if self._early_answers:
                # The answer went out before this challenge came; whatever follows it is
                # still queued behind the AUTH as it was.
                self._early_answers -= 1
                return Challenge(command, line[2:].decode("ascii", "replace").strip(),
                                 answered_early=True)
            answered_by = None
            if self._auth_sent_last and len(self._pending) > 1:
                # The server reads the next line we sent as the answer: that command is gone.
                answered_by = self._pending[1]
                del self._pending[1]
            self._auth_sent_last = False
            return Challenge(command, line[2:].decode("ascii", "replace").strip(), answered_by)
        ok, text, code = parse_status(line)
        self._pending.popleft()
        if command.verb == "AUTH":
            self._auth_sent_last = False
            # An early answer left over is a line the server now reads as a command: the
            # session ends the connection (SCRAM's server never proved itself).
            self._early_answers = 0
        if ok:
            if command.multiline:
                self._in_data = command
                self._at_line_start = True
            elif command.verb in ("PASS", "APOP", "AUTH"):
                self.state = State.TRANSACTION
            elif command.verb == "QUIT":
                self.state = State.CLOSED
            elif command.verb == "STLS":
                self.stls_done = True
                if self._pos < len(self._buf):
                    raise RemoteProtocolError(
                        "server sent data after +OK to STLS before TLS began "
                        "(possible STARTTLS command injection); refusing to continue"
                    )
        elif command.verb == "QUIT":
            self.state = State.CLOSED
        return Reply(command, ok, text, code)

    def _next_data_event(self, command: Command) -> Data | EndOfData | _Sentinel:
        """Un-dot-stuff whatever is buffered, a whole buffer at a time rather than per line."""
        buf, pos, end = self._buf, self._pos, len(self._buf)
        pieces: list[bytes] = []
        while pos < end:
            if self._at_line_start and buf[pos] == _DOT:
                if end - pos < 2:
                    break
                nxt = buf[pos + 1]
                if nxt == _LF or (nxt == _CR and end - pos >= 3 and buf[pos + 2] == _LF):
                    if pieces:
                        break  # hand over the data first; the terminator is seen next call
                    self._pos = pos + (2 if nxt == _LF else 3)
                    self._in_data = None
                    return EndOfData(command)
                if nxt == _CR and end - pos < 3:
                    break
                pos += 1  # a stuffed dot: drop it
            stop = _line_start_dot(buf, pos, end)
            if stop < 0:
                pieces.append(bytes(buf[pos:end]))
                self._at_line_start = buf[end - 1] == _LF
                pos = end
            else:
                pieces.append(bytes(buf[pos:stop + 1]))
                self._at_line_start = True
                pos = stop + 1
        self._pos = pos
        if pieces:
            return Data(command, b"".join(pieces))
        if self._eof:
            raise ConnectionClosedError(
                f"server closed the connection in the middle of the reply to {command.verb}"
            )
        return NEED_DATA

    def whole_data(self) -> bytes | None:
        """The rest of the multi-line reply being read, un-dot-stuffed, when all of it and its
        terminating line are buffered: the reply is then consumed, as if its Data events and
        EndOfData had been read. None, with nothing consumed, when it is not all here yet, when
        the last event ended inside a line, or when the next line starts with a stuffed dot:
        next_event then gives it piece by piece.

        What a pipelined batch of TOP n 0 reads: hundreds of replies arrive in one read, and
        one search for the terminator and one copy per reply cost a fraction of three events
        each. The same bytes as the events' data joined (a Hypothesis test compares).
        """
        if self._in_data is None:
            raise LocalProtocolError("no multi-line reply is being read")
        buf, pos, end = self._buf, self._pos, len(self._buf)
        if pos >= end or not self._at_line_start:
            return None
        if buf[pos] == _DOT:  # an empty reply, or a stuffed first line (left to the events)
            if buf[pos + 1:pos + 2] == b"\n" or buf[pos + 1:pos + 3] == b"\r\n":
                self._pos = pos + (2 if buf[pos + 1] == _LF else 3)
                self._in_data = None
                return b""
            return None
        stuffed = False
        stop = _line_start_dot(buf, pos, end)  # the "\n" before a line starting with "."
        while stop >= 0:
            after = buf[stop + 2:stop + 4]
            if after[:1] == b"\n" or after == b"\r\n":  # the terminating line
                data = bytes(buf[pos:stop + 1])
                self._pos = stop + (3 if after[:1] == b"\n" else 4)
                self._in_data = None
                # A dot starting any other line was stuffed (RFC 1939 3): dropped.
                return data.replace(b"\n.", b"\n") if stuffed else data
            if not after or after == b"\r":  # the end of that line has not come yet
                return None
            stuffed = True
            stop = _line_start_dot(buf, stop + 2, end)
        return None

    def next_whole_replies(self, limit: int) -> list[tuple[Reply, bytes]]:
        """``next_whole_reply(command)`` for the oldest pending command, again while it gives
        a reply, at most ``limit`` times: every complete reply of a pipelined window that one
        read brought, in one call. The form Dovecot answers each TOP with (``+OK``, lines of
        which none starts with a dot, ``.``, all ending in CRLF) is read here; any other goes
        through next_whole_reply. (A Hypothesis test compares the two.)"""
        got: list[tuple[Reply, bytes]] = []
        if self._in_data is not None or not self._greeted:
            return got
        if self._pos > _COMPACT_THRESHOLD:
            del self._buf[: self._pos]
            self._pos = 0
        pending, buf, pos = self._pending, self._buf, self._pos
        end = len(buf)
        for _ in range(limit):
            if not pending or not pending[0].multiline:
                break
            if buf.startswith(b"+OK\r\n", pos):
                # The "\n" before the first line starting with a dot (that line itself, when
                # the data is empty or starts with a stuffed dot): _line_start_dot written out.
                stop = buf.find(b".", pos + 5, end) - 1
                if stop < 0:  # no dot: the reply has not ended yet
                    break
                if buf[stop] != _LF:
                    stop = buf.find(b"\n.", stop + 1, end)
                    if stop < 0:
                        break
                if buf[stop + 2:stop + 4] == b"\r\n":  # that line is the terminating ".\r\n"
                    got.append((_new_reply((pending.popleft(), True, "", None)),
                                bytes(buf[pos + 5:stop + 1])))
                    pos = stop + 4
                    continue
            self._pos = pos
            whole = self.next_whole_reply(pending[0])
            if whole is None:
                return got
            got.append(whole)
            pos, end = self._pos, len(buf)
        self._pos = pos
        return got

    def next_whole_reply(self, command: Command) -> tuple[Reply, bytes] | None:
        """The next reply, when it is +OK to ``command`` (multi-line, the oldest pending) with
        all its data buffered: the Reply and the data, un-dot-stuffed, consumed as next_event
        would give them (Reply, Data..., EndOfData). None, with nothing consumed, in every
        other case (-ERR, an incomplete reply, ...): next_event then reads it.

        A pipelined batch of TOP n 0 reads hundreds of replies from each read: one call per
        reply instead of three events. (A Hypothesis test compares it with next_event.)
        """
        if (self._in_data is not None or not self._greeted or not self._pending
                or self._pending[0] is not command or not command.multiline):
            return None
        if self._pos > _COMPACT_THRESHOLD:
            del self._buf[: self._pos]
            self._pos = 0
        pos = self._pos
        if self._buf.startswith(b"+OK\r\n", pos):  # what Dovecot answers every TOP with
            end, text, code = pos + 4, "", None
        else:
            end = self._buf.find(b"\n", pos, pos + MAX_STATUS_LINE)
            if end < 0 or self._buf[pos] != 0x2B:  # no whole line yet, or not "+"
                return None
            line = bytes(self._buf[pos:end])
            try:
                ok, text, code = parse_status(line[:-1] if line.endswith(b"\r") else line)
            except RemoteProtocolError:
                return None  # next_event raises it
            if not ok:
                return None
        self._pos, self._in_data, self._at_line_start = end + 1, command, True
        data = self.whole_data()
        if data is None:  # not all here: as it was
            self._pos, self._in_data = pos, None
            return None
        self._pending.popleft()
        return Reply(command, True, text, code), data
