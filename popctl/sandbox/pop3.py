"""One POP3 conversation on the server side, without sockets: a line in, a reply out.

The state table, the commands and their replies (RFC 1939, 2449, 2595, 5034); the connection
handler in server.py feeds it lines and writes what it returns.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum

from popctl.sandbox.maildrop import Maildrop, Message

# RFC 2449 section 4: a command line is at most 255 octets, including the terminating CRLF.
MAX_COMMAND_LINE = 255
# RFC 5034 exempts SASL client responses from the 255-octet limit; 2048 octets holds a PLAIN
# response whose identities and password are 255 octets each, base64-encoded, with room to spare.
MAX_SASL_LINE = 2048
# RFC 1939 section 3: the inactivity autologout timer must be at least 10 minutes.
_CRLF = b"\r\n"


class _State(Enum):
    AUTHORIZATION = "AUTHORIZATION"
    TRANSACTION = "TRANSACTION"
    UPDATE = "UPDATE"


# The commands legal in each state (RFC 1939 sections 4-6, RFC 2449, RFC 2595, RFC 5034).
_LEGAL: dict[_State, frozenset[str]] = {
    _State.AUTHORIZATION: frozenset({"USER", "PASS", "APOP", "AUTH", "STLS", "CAPA", "QUIT"}),
    _State.TRANSACTION: frozenset(
        {"STAT", "LIST", "UIDL", "TOP", "RETR", "DELE", "RSET", "NOOP", "LAST", "CAPA", "QUIT"}
    ),
    _State.UPDATE: frozenset(),
}
_KNOWN = frozenset().union(*_LEGAL.values())


@dataclass(frozen=True)
class Config:
    user: str
    password: str
    pipelining: bool
    implementation: str
    tls_available: bool


@dataclass(frozen=True)
class _Reply:
    data: bytes
    close: bool = False  # close the connection after sending
    start_tls: bool = False  # begin the TLS handshake after sending


# --- one POP3 conversation, without sockets --------------------------------------------------


def _ok(text: str = "") -> _Reply:
    return _Reply(f"+OK {text}".rstrip().encode() + _CRLF)


def _err(text: str) -> _Reply:
    return _Reply(f"-ERR {text}".encode() + _CRLF)


def _multiline(status: str, body: bytes) -> _Reply:
    """A +OK reply with a dot-stuffed body, built as one buffer so it goes out in one write."""
    return _Reply(b"".join([f"+OK {status}".encode(), _CRLF, _dot_stuff(body), b".\r\n"]))


def _dot_stuff(body: bytes) -> bytes:
    stuffed = body.replace(b"\n.", b"\n..")
    return b"." + stuffed if stuffed.startswith(b".") else stuffed


def _lines(rows: Iterable[str]) -> bytes:
    return "".join(f"{row}\r\n" for row in rows).encode()


def _number(text: str) -> int | None:
    """A decimal argument as RFC 1939 allows it (at most 40 characters), or None."""
    if text.isascii() and text.isdigit() and len(text) <= 40:
        return int(text)
    return None


def _top(data: bytes, lines: int) -> bytes:
    """The header, the blank line, and the first ``lines`` lines of the body."""
    if data.startswith(_CRLF):
        split = 2
    else:
        blank = data.find(b"\r\n\r\n")
        split = len(data) if blank < 0 else blank + 4
    end = split
    for _ in range(lines):
        newline = data.find(b"\n", end)
        if newline < 0:
            return data
        end = newline + 1
    return data[:end]


_Handler = Callable[["Session", str], _Reply]


class Session:
    """The server side of one connection: a line in, a reply out."""

    def __init__(self, config: Config, maildrop: Maildrop, banner_id: str) -> None:
        self._config = config
        self._maildrop = maildrop
        self._timestamp = f"<{banner_id}@localhost>"
        self.state = _State.AUTHORIZATION
        self.tls_active = False
        self._user: str | None = None  # name given by USER, awaiting PASS
        self._sasl_pending = False  # AUTH PLAIN sent "+ ", awaiting the client's response
        self._messages: list[Message] = []
        self._deleted: set[int] = set()  # 1-based message numbers
        self._last_accessed = 0

    @property
    def line_limit(self) -> int:
        return MAX_SASL_LINE if self._sasl_pending else MAX_COMMAND_LINE

    def greeting(self) -> _Reply:
        return _ok(f"popctl sandbox ready {self._timestamp}")

    def line_too_long(self) -> _Reply:
        self._sasl_pending = False
        return _err(f"line too long (the limit is {self.line_limit} octets)")

    def tls_started(self) -> None:
        # RFC 2595 section 4: forget everything learnt before the handshake.
        self.tls_active = True
        self._user = None

    def close(self) -> None:
        """The connection ended: without QUIT, deletions are rolled back (RFC 1939 section 6)."""
        self._maildrop.release(self)

    def handle(self, line: bytes) -> _Reply:
        text = line.removesuffix(b"\n").removesuffix(b"\r").decode("utf-8", "surrogateescape")
        if self._sasl_pending:
            self._sasl_pending = False
            return self._plain_response(text)
        keyword, _, argument = text.partition(" ")
        keyword = keyword.upper()
        if keyword not in _KNOWN:
            return _err("unknown command")
        if keyword not in _LEGAL[self.state]:
            return _err(f"{keyword} is not allowed in the {self.state.value} state")
        return _COMMANDS[keyword](self, argument)

    # --- AUTHORIZATION ---

    def _user_cmd(self, argument: str) -> _Reply:
        if not argument:
            return _err("usage: USER name")
        self._user = argument
        return _ok("send PASS")

    def _pass_cmd(self, argument: str) -> _Reply:
        # RFC 1939 section 7: the password is the rest of the line and may contain spaces.
        user, self._user = self._user, None
        if user is None:
            return _err("send USER first")
        return self._login(user, _equal(argument, self._config.password))

    def _apop_cmd(self, argument: str) -> _Reply:
        self._user = None
        args = argument.split()
        if len(args) != 2:
            return _err("usage: APOP name digest")
        secret = (self._timestamp + self._config.password).encode()
        expected = hashlib.md5(secret, usedforsecurity=False).hexdigest()
        return self._login(args[0], _equal(args[1].lower(), expected))

    def _auth_cmd(self, argument: str) -> _Reply:
        self._user = None
        args = argument.split()
        if not args:  # the RFC 1734 listing some clients still ask for
            return _multiline("SASL mechanisms follow", b"PLAIN\r\n")
        if len(args) > 2:
            return _err("usage: AUTH mechanism [initial-response]")
        if args[0].upper() != "PLAIN":
            return _err("unsupported SASL mechanism")
        if len(args) == 2:
            # RFC 5034 section 4: "=" is an empty initial response.
            return self._plain_response("" if args[1] == "=" else args[1])
        self._sasl_pending = True
        return _Reply(b"+ \r\n")

    def _plain_response(self, response: str) -> _Reply:
        if response == "*":
            return _err("authentication cancelled")
        try:
            decoded = base64.b64decode(response.encode("ascii"), validate=True)
        except (UnicodeEncodeError, binascii.Error):
            return _err("SASL response is not valid base64")
        fields = decoded.split(b"\0")
        if len(fields) != 3:
            return _err("malformed PLAIN response")
        try:
            authzid, authcid, password = (f.decode("utf-8") for f in fields)
        except UnicodeDecodeError:
            return _err("malformed PLAIN response")
        # Acting for another user (authzid) is not supported.
        allowed = authzid in ("", authcid)
        return self._login(authcid, allowed and _equal(password, self._config.password))

    def _login(self, user: str, password_ok: bool) -> _Reply:
        if not (password_ok and _equal(user, self._config.user)):
            return _err("[AUTH] invalid user name or password")
        messages = self._maildrop.acquire(self)
        if messages is None:
            return _err("[IN-USE] mailbox locked by another session")
        self._messages = messages
        self.state = _State.TRANSACTION
        return _ok(f"{user}'s maildrop has {self._summary()}")

    def _stls_cmd(self, argument: str) -> _Reply:
        if argument:
            return _err("usage: STLS")
        if not self._config.tls_available:
            return _err("STLS is not available")
        if self.tls_active:
            return _err("TLS is already active")
        return _Reply(b"+OK begin TLS negotiation\r\n", start_tls=True)

    def _capa_cmd(self, argument: str) -> _Reply:
        if argument:
            return _err("usage: CAPA")
        return _multiline("capability list follows", _lines(self._capabilities()))

    def _capabilities(self) -> list[str]:
        capabilities = ["TOP", "UIDL", "USER", "RESP-CODES", "AUTH-RESP-CODE"]
        if self._config.pipelining:
            capabilities.append("PIPELINING")
        # RFC 2449 section 5: what AUTHORIZATION offers is announced in both states.
        if self._config.tls_available and not self.tls_active:
            capabilities.append("STLS")
        capabilities += ["SASL PLAIN", "EXPIRE NEVER", "LOGIN-DELAY 0"]
        capabilities.append(f"IMPLEMENTATION {self._config.implementation}")
        return capabilities

    def _quit_cmd(self, argument: str) -> _Reply:
        if argument:
            return _err("usage: QUIT")
        if self.state is not _State.TRANSACTION:
            return _Reply(b"+OK popctl sandbox signing off\r\n", close=True)
        self.state = _State.UPDATE
        expunge = frozenset(self._messages[n - 1].uid for n in self._deleted)
        self._maildrop.release(self, expunge)
        left = len(self._messages) - len(self._deleted)
        return _Reply(
            f"+OK popctl sandbox signing off ({left} messages left)\r\n".encode(), close=True
        )

    # --- TRANSACTION ---

    def _summary(self) -> str:
        count, size = self._stat()
        return f"{count} messages ({size} octets)"

    def _stat(self) -> tuple[int, int]:
        sizes = [len(m.data) for _, m in self._live()]
        return len(sizes), sum(sizes)

    def _live(self) -> list[tuple[int, Message]]:
        """The messages not marked as deleted, with their numbers."""
        return [(n, m) for n, m in enumerate(self._messages, 1) if n not in self._deleted]

    def _lookup(self, text: str) -> tuple[int, Message] | _Reply:
        """The message numbered ``text`` and its number, or the -ERR reply to send instead."""
        number = _number(text)
        if number is None:
            return _err("invalid message number")
        if not 1 <= number <= len(self._messages) or number in self._deleted:
            return _err("no such message")
        return number, self._messages[number - 1]

    def _stat_cmd(self, argument: str) -> _Reply:
        if argument:
            return _err("usage: STAT")
        return _ok("{} {}".format(*self._stat()))

    def _list_cmd(self, argument: str) -> _Reply:
        return self._listing(argument, "LIST", lambda m: str(len(m.data)), self._summary())

    def _uidl_cmd(self, argument: str) -> _Reply:
        return self._listing(argument, "UIDL", lambda m: m.uid, "unique-id listing follows")

    def _listing(
        self, argument: str, keyword: str, value: Callable[[Message], str], status: str
    ) -> _Reply:
        args = argument.split()
        if len(args) > 1:
            return _err(f"usage: {keyword} [msg]")
        if args:
            found = self._lookup(args[0])
            if isinstance(found, _Reply):
                return found
            number, message = found
            return _ok(f"{number} {value(message)}")
        return _multiline(status, _lines(f"{n} {value(m)}" for n, m in self._live()))

    def _retr_cmd(self, argument: str) -> _Reply:
        args = argument.split()
        if len(args) != 1:
            return _err("usage: RETR msg")
        found = self._lookup(args[0])
        if isinstance(found, _Reply):
            return found
        number, message = found
        self._last_accessed = max(self._last_accessed, number)
        return _multiline(f"{len(message.data)} octets", message.data)

    def _top_cmd(self, argument: str) -> _Reply:
        args = argument.split()
        if len(args) != 2:
            return _err("usage: TOP msg lines")
        found = self._lookup(args[0])
        if isinstance(found, _Reply):
            return found
        lines = _number(args[1])
        if lines is None:
            return _err("invalid number of lines")
        return _multiline("top of message follows", _top(found[1].data, lines))

    def _dele_cmd(self, argument: str) -> _Reply:
        args = argument.split()
        if len(args) != 1:
            return _err("usage: DELE msg")
        found = self._lookup(args[0])
        if isinstance(found, _Reply):
            return found
        number = found[0]
        self._deleted.add(number)
        return _ok(f"message {number} deleted")

    def _rset_cmd(self, argument: str) -> _Reply:
        if argument:
            return _err("usage: RSET")
        self._deleted.clear()
        self._last_accessed = 0
        return _ok(f"maildrop has {self._summary()}")

    def _noop_cmd(self, argument: str) -> _Reply:
        return _err("usage: NOOP") if argument else _ok()

    def _last_cmd(self, argument: str) -> _Reply:
        # RFC 1460 (obsolete): the highest message number accessed, kept for old clients.
        return _err("usage: LAST") if argument else _ok(str(self._last_accessed))


def _equal(given: str, expected: str) -> bool:
    """Compare secrets in constant time; text that is not valid UTF-8 never matches."""
    try:
        return hmac.compare_digest(given.encode(), expected.encode())
    except UnicodeEncodeError:
        return False


_COMMANDS: dict[str, _Handler] = {
    "USER": Session._user_cmd,
    "PASS": Session._pass_cmd,
    "APOP": Session._apop_cmd,
    "AUTH": Session._auth_cmd,
    "STLS": Session._stls_cmd,
    "CAPA": Session._capa_cmd,
    "QUIT": Session._quit_cmd,
    "STAT": Session._stat_cmd,
    "LIST": Session._list_cmd,
    "UIDL": Session._uidl_cmd,
    "RETR": Session._retr_cmd,
    "TOP": Session._top_cmd,
    "DELE": Session._dele_cmd,
    "RSET": Session._rset_cmd,
    "NOOP": Session._noop_cmd,
    "LAST": Session._last_cmd,
}
assert set(_COMMANDS) == _KNOWN


