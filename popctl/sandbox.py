"""popctl's bundled sandbox: a small, strict POP3 server over an in-memory sample mailbox.

It speaks RFC 1939 (plus APOP and the obsolete LAST), RFC 2449 CAPA and response codes, RFC 2595
STLS and RFC 5034 SASL PLAIN, so a new user can try every popctl command with no setup; deletions
only ever remove messages from this process's memory.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import hashlib
import hmac
import ipaddress
import itertools
import logging
import os
import selectors
import shutil
import socket
import socketserver
import ssl
import tempfile
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from types import TracebackType

from popctl.sandbox_mailbox import sample_mailbox

__all__ = ["SandboxServer", "main"]

log = logging.getLogger(__name__)

# RFC 2449 section 4: a command line is at most 255 octets, including the terminating CRLF.
MAX_COMMAND_LINE = 255
# RFC 5034 exempts SASL client responses from the 255-octet limit; 2048 octets holds a PLAIN
# response whose identities and password are 255 octets each, base64-encoded, with room to spare.
MAX_SASL_LINE = 2048
# RFC 1939 section 3: the inactivity autologout timer must be at least 10 minutes.
IDLE_TIMEOUT = 600.0
# How long stop() waits for a connection's thread to notice its socket was shut down.
_JOIN_TIMEOUT = 5.0
_RECV_SIZE = 65536
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
class _Message:
    data: bytes  # CRLF line endings, ends with CRLF: its length is what LIST reports
    uid: str


@dataclass(frozen=True)
class _Config:
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


class _Maildrop:
    """The messages every session shares, and the exclusive-access lock of RFC 1939 section 8."""

    def __init__(self, messages: Iterable[bytes]) -> None:
        self._mutex = threading.Lock()
        self._messages = _with_uids([_canonical(m) for m in messages])
        self._holder: object | None = None

    def acquire(self, holder: object) -> list[_Message] | None:
        """Lock the maildrop for ``holder`` and return its messages, or None if already locked."""
        with self._mutex:
            if self._holder is not None:
                return None
            self._holder = holder
            return list(self._messages)

    def release(self, holder: object, expunge: frozenset[str] = frozenset()) -> None:
        """Unlock, first removing the messages whose UIDs are in ``expunge`` (the UPDATE state)."""
        with self._mutex:
            if self._holder is not holder:
                return
            self._messages = [m for m in self._messages if m.uid not in expunge]
            self._holder = None

    def snapshot(self) -> list[bytes]:
        with self._mutex:
            return [m.data for m in self._messages]


def _canonical(data: bytes) -> bytes:
    """The message with CRLF line endings and a final CRLF, so LIST sizes equal RETR octets."""
    data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return data if not data or data.endswith(_CRLF) else data + _CRLF


def _with_uids(messages: list[bytes]) -> list[_Message]:
    """Give each message a UID from its content; identical copies get a numbered suffix."""
    seen: Counter[str] = Counter()
    result = []
    for data in messages:
        digest = hashlib.sha256(data).hexdigest()[:32]
        seen[digest] += 1
        uid = digest if seen[digest] == 1 else f"{digest}-{seen[digest]}"
        result.append(_Message(data, uid))
    return result


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


_Handler = Callable[["_Session", str], _Reply]


class _Session:
    """The server side of one connection: a line in, a reply out."""

    def __init__(self, config: _Config, maildrop: _Maildrop, banner_id: str) -> None:
        self._config = config
        self._maildrop = maildrop
        self._timestamp = f"<{banner_id}@localhost>"
        self.state = _State.AUTHORIZATION
        self.tls_active = False
        self._user: str | None = None  # name given by USER, awaiting PASS
        self._sasl_pending = False  # AUTH PLAIN sent "+ ", awaiting the client's response
        self._messages: list[_Message] = []
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

    def _live(self) -> list[tuple[int, _Message]]:
        """The messages not marked as deleted, with their numbers."""
        return [(n, m) for n, m in enumerate(self._messages, 1) if n not in self._deleted]

    def _lookup(self, text: str) -> tuple[int, _Message] | _Reply:
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
        self, argument: str, keyword: str, value: Callable[[_Message], str], status: str
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
    "USER": _Session._user_cmd,
    "PASS": _Session._pass_cmd,
    "APOP": _Session._apop_cmd,
    "AUTH": _Session._auth_cmd,
    "STLS": _Session._stls_cmd,
    "CAPA": _Session._capa_cmd,
    "QUIT": _Session._quit_cmd,
    "STAT": _Session._stat_cmd,
    "LIST": _Session._list_cmd,
    "UIDL": _Session._uidl_cmd,
    "RETR": _Session._retr_cmd,
    "TOP": _Session._top_cmd,
    "DELE": _Session._dele_cmd,
    "RSET": _Session._rset_cmd,
    "NOOP": _Session._noop_cmd,
    "LAST": _Session._last_cmd,
}
assert set(_COMMANDS) == _KNOWN


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
    """Runs one _Session over one (possibly upgraded to TLS) socket, in its own thread."""

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

    def _converse(self, session: _Session) -> None:
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
        config: _Config,
        maildrop: _Maildrop,
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
        self._running = threading.Lock()  # held while serve_until_stopped() loops
        super().__init__(address, _Connection)
        # Unlike serve_forever()'s polling, a byte on this pair wakes the loop at once.
        self._wake_reader, self._wake_writer = socket.socketpair()

    def serve_until_stopped(self) -> None:
        """Accept connections until request_stop() is called (from any thread)."""
        with self._running, selectors.DefaultSelector() as selector:
            if self._stop_requested.is_set():
                return
            selector.register(self, selectors.EVENT_READ)
            selector.register(self._wake_reader, selectors.EVENT_READ)
            while True:
                ready = selector.select()
                if self._stop_requested.is_set():
                    return
                if any(key.fileobj is self for key, _ in ready):
                    self.handle_request()

    def request_stop(self) -> None:
        """Stop accepting connections; returns once serve_until_stopped() has returned."""
        self._stop_requested.set()
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"\0")
        with self._running:
            pass

    def server_close(self) -> None:
        super().server_close()
        self._wake_reader.close()
        self._wake_writer.close()

    def new_session(self) -> _Session:
        banner_id = f"{os.getpid()}.{next(self._banner_ids)}.{int(time.time())}"
        return _Session(self.config, self.maildrop, banner_id)

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


# --- TLS -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Certificate:
    cert_pem: bytes
    key_pem: bytes
    sha256: str  # hex digest of the DER encoding


def _self_signed_certificate() -> _Certificate:
    """A throwaway EC P-256 certificate for localhost, 127.0.0.1 and ::1, valid for one day.

    It is an end-entity certificate (CA:FALSE): trusting it cannot make anything else trusted.
    """
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError as e:
        raise RuntimeError("the sandbox needs 'cryptography' for TLS; use tls=False") from e

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "popctl sandbox")])
    now = datetime.now(UTC)
    san = x509.SubjectAlternativeName(
        [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ]
    )
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))  # tolerate a little clock skew
        .not_valid_after(now + timedelta(days=1))
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        # Python 3.13's VERIFY_X509_STRICT wants an AKID even on a self-signed certificate.
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return _Certificate(
        cert_pem=certificate.public_bytes(serialization.Encoding.PEM),
        key_pem=key_pem,
        sha256=certificate.fingerprint(hashes.SHA256()).hex(),
    )


def _server_tls_context(certificate: _Certificate, directory: str) -> tuple[ssl.SSLContext, str]:
    """A server context for ``certificate``; returns it and the path of the PEM to trust."""
    cert_file = os.path.join(directory, "sandbox-cert.pem")
    key_file = os.path.join(directory, "sandbox-key.pem")
    with open(cert_file, "wb") as f:
        f.write(certificate.cert_pem)
    # The directory is private (mkdtemp: 0700); the key exists on disk only until loaded.
    with open(os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
        f.write(certificate.key_pem)
    try:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(cert_file, key_file)
    finally:
        os.remove(key_file)
    return context, cert_file


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
        self._maildrop = _Maildrop(sample_mailbox() if messages is None else messages)
        self._bind_address = (host, port)
        self._config = _Config(user, password, pipelining, implementation, tls_available=tls)
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
            server.serve_until_stopped()
        except KeyboardInterrupt:
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
        certificate = _self_signed_certificate()
        directory = tempfile.mkdtemp(prefix="popctl-sandbox-")
        # Removed by stop(), or at the latest when this object is collected or Python exits.
        self._cleanup = weakref.finalize(self, shutil.rmtree, directory, True)
        context, self.ca_file = _server_tls_context(certificate, directory)
        self.cert_sha256 = certificate.sha256
        return context


# --- python -m popctl.sandbox ----------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the sample mailbox in the foreground, printing how to connect."""
    parser = argparse.ArgumentParser(prog="python -m popctl.sandbox", description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port (default: any free port)")
    parser.add_argument("--seed", type=int, default=1, help="sample mailbox seed")
    parser.add_argument("--no-tls", action="store_true", help="do not offer STLS")
    args = parser.parse_args(argv)
    server = SandboxServer(
        sample_mailbox(args.seed), host=args.host, port=args.port, tls=not args.no_tls
    ).bind()
    host, port = server.address
    print(f"popctl sandbox POP3 server on {host} port {port}", flush=True)
    print(f"user: {server.user}  password: {server.password}", flush=True)
    if server.ca_file:
        print(f"ca_file: {server.ca_file}", flush=True)
        print(f"certificate SHA-256: {server.cert_sha256}", flush=True)
    print("Press Ctrl-C to stop.", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
