"""A blocking TCP/TLS byte pipe: connect, send, receive, upgrade to TLS. Knows nothing of POP3.

The only module that touches ``socket`` and ``ssl``. Every OSError and ssl.SSLError becomes one
of our TransportError subclasses, with the original chained. Each operation waits at most the
time it is given (the session hands out what is left of its deadlines; see session.py).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import sys
import time
from typing import TYPE_CHECKING, Any, Final

from popctl.defaults import IMPLICIT_TLS_PORT, normalize_fingerprint
from popctl.errors import ConnectionClosedError, NetworkTimeoutError, TLSError, TransportError
from popctl.models import Endpoint, TLSInfo, TLSMode

if TYPE_CHECKING:
    import ssl
    import threading

# One read's worth: big enough that a fast link needs few system calls for a large message,
# small enough to keep memory flat while streaming.
RECV_SIZE: Final = 256 * 1024

_QUICKACK = getattr(socket, "TCP_QUICKACK", None) if sys.platform.startswith("linux") else None

# How a TLS record starts (RFC 8446 5.1): a handshake (0x16) or an alert (0x15), then the
# major version 3. A POP3 greeting starts with "+OK" or "-ERR", so a server whose first bytes
# are these speaks TLS first: an implicit-TLS port.
_TLS_RECORD_STARTS: Final = (b"\x16\x03", b"\x15\x03")

# OpenSSL's reasons for a first "record" that is not TLS at all: a plain-text server answered
# the ClientHello (a POP3 greeting read as a record header has no valid version).
_NOT_TLS_REASONS: Final = frozenset({"WRONG_VERSION_NUMBER", "UNKNOWN_PROTOCOL",
                                     "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"})

# OpenSSL verification results (X509_V_ERR_*) and the fix each calls for. Pinning cures every
# one; an unknown issuer also --ca-file, a name mismatch also the right name. A self-signed
# leaf has no CA to trust: pinning is the way (man/popctl.1, "Fingerprint pinning").
_NAME_MISMATCH: Final = frozenset({62, 64})  # HOSTNAME_MISMATCH, IP_ADDRESS_MISMATCH
# UNABLE_TO_GET_ISSUER_CERT, SELF_SIGNED_CERT_IN_CHAIN, UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
# UNABLE_TO_VERIFY_LEAF_SIGNATURE
_UNKNOWN_ISSUER: Final = frozenset({2, 19, 20, 21})


def make_tls_context(ca_file: str | None = None, *, fingerprint: str | None = None,
                     insecure: bool = False) -> ssl.SSLContext:
    """Verification on by default with the system CAs (or ``ca_file``).

    A pinned fingerprint replaces chain and host-name checks (it is stronger than both, and is
    how self-signed servers are trusted); ``insecure`` disables all checks.
    """
    import ssl  # here, not at the top: a session without TLS never pays for it

    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as e:
        raise TLSError(f"cannot load CA file {ca_file}: {e}") from e
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if fingerprint is not None or insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class PendingTLSContext:
    """The TLS context for ``endpoint``. ``start()`` builds it on a thread of its own while the
    connection is made: importing ssl and loading the system's CA certificates take ~35 ms
    here, which would otherwise follow the TCP handshake (and, with STLS, the greeting and
    CAPA) instead of overlapping it. ``result()`` waits for it (or builds it, if not started),
    and raises what building it raised (a CA file that cannot be read)."""

    def __init__(self, endpoint: Endpoint) -> None:
        self._endpoint = endpoint
        self._context: ssl.SSLContext | None = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> PendingTLSContext:
        import threading

        self._thread = threading.Thread(target=self._build, name="popctl-tls-context",
                                        daemon=True)
        self._thread.start()
        return self

    def _build(self) -> None:
        endpoint = self._endpoint
        try:
            self._context = make_tls_context(endpoint.ca_file, fingerprint=endpoint.fingerprint,
                                             insecure=endpoint.insecure)
            import hashlib  # noqa: F401  # and what start_tls's fingerprint check imports
            import hmac  # noqa: F401
        except BaseException as e:  # handed to the thread that waits for the context
            self._error = e

    def result(self) -> ssl.SSLContext:
        if self._thread is None:
            self._build()
        else:
            self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._context is not None
        return self._context


def _address(host: str, port: int | None) -> str:
    """HOST:PORT as a person (and openssl s_client) writes it: [::1]:995 for IPv6."""
    name = f"[{host}]" if ":" in host else host
    return name if port is None else f"{name}:{port}"


def _certificate_hint(host: str, port: int | None, code: int, starttls: bool
                      ) -> tuple[str, dict[str, str]]:
    """What to do about a rejected certificate (a hint key): the options that fix it, and how
    to see the fingerprint to pin (compared with one obtained another way, it is safe)."""
    see = (f"openssl s_client -connect {_address(host, port or IMPLICIT_TLS_PORT)}"
           f"{' -starttls pop3' if starttls else ''} </dev/null | "
           "openssl x509 -noout -fingerprint -sha256")
    key = ("certificate-name" if code in _NAME_MISMATCH
           else "certificate-issuer" if code in _UNKNOWN_ISSUER else "certificate")
    return key, {"see": see}


class Transport:
    def __init__(self, sock: socket.socket, host: str, timeout: float, *,
                 port: int | None = None) -> None:
        self._sock: socket.socket = sock
        self.host = host
        self.port = port  # for hints; None when the caller made the socket itself
        self.timeout = timeout  # the read timeout: the longest silence tolerated
        self._sock_timeout: float | None = sock.gettimeout()
        self.tls: TLSInfo | None = None
        # The first octets received in clear (at most 2): nothing yet means the greeting is
        # awaited; a TLS record there means the wrong --tls.
        self._head = b""

    def _wait_at_most(self, seconds: float | None) -> None:
        """Bound the next socket operation (a TLS handshake included) by ``seconds``."""
        if seconds is None:
            seconds = self.timeout
        if seconds != self._sock_timeout:
            self._sock.settimeout(seconds)
            self._sock_timeout = seconds

    @classmethod
    def connect(cls, connecting: Connecting, *, timeout: float) -> Transport:
        """The connection ``connecting`` makes, once made (``finish`` raises what failed)."""
        sock = connecting.finish()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(timeout)
        return cls(sock, connecting.host, timeout, port=connecting.port)

    def start_tls(self, context: ssl.SSLContext, *, fingerprint: str | None = None,
                  timeout: float | None = None) -> TLSInfo:
        """Handshake as client; check the pinned fingerprint before anything else is sent.

        The whole handshake takes at most ``timeout`` (default: the read timeout): CPython's
        handshake counts the socket timeout as one deadline for all its reads and writes, so a
        server dripping its certificate a byte at a time cannot stretch it.
        """
        import hashlib
        import hmac
        import ssl

        self._wait_at_most(timeout)
        starttls = bool(self._head)  # the server spoke in clear first: a greeting, then STLS
        try:
            tls_sock = context.wrap_socket(self._sock, server_hostname=self.host)
        except ssl.SSLCertVerificationError as e:
            reason = str(e.verify_message or e.reason).rstrip(".")
            hint, args = _certificate_hint(self.host, self.port, e.verify_code, starttls)
            raise TLSError(f"TLS certificate of {self.host} rejected: {reason}; "
                           "nothing was sent", hint=hint, hint_args=args) from e
        except TimeoutError as e:
            raise NetworkTimeoutError(f"TLS handshake with {self.host} not complete after "
                                      f"{self._sock_timeout:g} s (handshake timeout)") from e
        except ssl.SSLError as e:
            if not starttls and e.reason in _NOT_TLS_REASONS:
                other = ("" if self.port == IMPLICIT_TLS_PORT
                         else f", or the implicit-TLS port ({IMPLICIT_TLS_PORT})")
                raise TLSError(
                    f"{_address(self.host, self.port)} did not answer in TLS (it looks like a "
                    "plain POP3 port)", hint="use-starttls", hint_args={"other": other}) from e
            raise TLSError(f"TLS handshake with {self.host} failed: {e}") from e
        except OSError as e:
            raise TLSError(f"TLS handshake with {self.host} failed: {e}") from e
        self._sock = tls_sock
        der = tls_sock.getpeercert(binary_form=True) or b""
        digest = hashlib.sha256(der).hexdigest()
        if fingerprint is not None and not hmac.compare_digest(
                digest, normalize_fingerprint(fingerprint)):
            self.close()
            raise TLSError(f"certificate fingerprint of {self.host} is {digest}, not the pinned "
                           f"one; refusing to continue (nothing was sent)")
        cipher = tls_sock.cipher()
        self.tls = TLSInfo(
            version=tls_sock.version() or "",
            cipher=cipher[0] if cipher else "",
            cert_sha256=digest,
            verified=context.verify_mode != ssl.CERT_NONE or fingerprint is not None,
        )
        return self.tls

    def send(self, data: bytes, timeout: float | None = None) -> None:
        """All of ``data`` within ``timeout`` (default: the read timeout), as one deadline."""
        self._wait_at_most(timeout)
        try:
            self._sock.sendall(data)
        except TimeoutError as e:
            raise NetworkTimeoutError(f"sending to {self.host} timed out") from e
        except OSError as e:
            raise ConnectionClosedError(f"connection to {self.host} lost while sending: "
                                        f"{e.strerror or e}") from e

    def recv(self, timeout: float | None = None) -> bytes:
        """Some bytes, or b"" when the server closed the connection; waits at most ``timeout``
        (default: the read timeout). The error names the read timeout: a caller passing a
        shorter wait, for a deadline of its own, words that error itself."""
        self._wait_at_most(timeout)
        if _QUICKACK is not None:
            # Servers that write a reply in several small segments otherwise wait for our
            # delayed ACK (Nagle): ~40 ms per reply on Linux.
            with contextlib.suppress(OSError):
                self._sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        try:
            data = self._sock.recv(RECV_SIZE)
        except TimeoutError as e:
            # Silence before the greeting, in clear: an implicit-TLS server waits for our
            # ClientHello and sends nothing, which only the user's --tls can cure.
            raise NetworkTimeoutError(
                f"no answer from {self.host} for {self.timeout:g} s (read timeout)",
                hint="maybe-implicit" if self.tls is None and not self._head else None) from e
        except OSError as e:
            ssl = sys.modules.get("ssl")  # loaded if this connection can raise its errors
            if ssl is not None and isinstance(e, ssl.SSLError):
                raise TLSError(f"TLS error from {self.host}: {e}") from e
            raise ConnectionClosedError(
                f"connection to {self.host} lost: {e.strerror or e}") from e
        if len(self._head) < 2 and self.tls is None:
            self._check_head(data)
        return data

    def _check_head(self, data: bytes) -> None:
        """Refuse a server whose first octets are a TLS record: it expects --tls implicit."""
        if not data:
            return
        self._head += data[:2 - len(self._head)]
        if len(self._head) == 2 and self._head in _TLS_RECORD_STARTS:
            raise TLSError(
                f"{_address(self.host, self.port)} answered in TLS, not with a POP3 greeting "
                "(it looks like an implicit-TLS port)", hint="use-implicit")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()


def _numeric(host: str) -> bool:
    """An IPv4 or IPv6 address rather than a name to look up."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except (OSError, ValueError):
            continue
        return True
    return False


class Connecting:
    """A TCP connection under way: ``Connecting(...)`` resolves ``host`` and begins connecting
    to its first address without waiting for the handshake (the kernel makes it), so that the
    caller can go on meanwhile; ``finish()`` waits for it and, as socket.create_connection
    does, tries the other addresses in turn, each for at most ``connect_timeout``. What failed
    (the last address's error) is raised by ``finish()``, as a TransportError."""

    def __init__(self, host: str, port: int, connect_timeout: float) -> None:
        self.host, self.port, self.connect_timeout = host, port, connect_timeout
        self._addresses: list[tuple[Any, ...]] = []
        self._sock: socket.socket | None = None
        self._started = 0.0
        self._error: OSError | None = None
        # An ASCII name goes to getaddrinfo as bytes: as a str it would pass through the idna
        # codec, whose import (stringprep, unicodedata) costs ~3 ms and only non-ASCII names need.
        address: str | bytes = host.encode("ascii") if host.isascii() else host
        try:
            self._addresses = list(socket.getaddrinfo(address, port, 0, socket.SOCK_STREAM))
        except OSError as e:
            self._error = e
            return
        except UnicodeError as e:  # the idna codec refused a non-ASCII name: nothing was asked
            reason = str(e.__cause__ or e).removeprefix("UnicodeError: ")
            self._error = socket.gaierror(socket.EAI_NONAME, f"not a valid host name ({reason})")
            return
        self._next()

    def _next(self) -> None:
        """Begin connecting to the next address; one that fails at once is passed over."""
        while self._addresses:
            family, kind, proto, _, sockaddr = self._addresses.pop(0)
            sock = None
            try:  # no IPv6 on this machine, say: that address fails, the next is tried
                sock = socket.socket(family, kind, proto)
                sock.setblocking(False)
                code = sock.connect_ex(sockaddr)
            except BaseException as e:
                if sock is not None:
                    sock.close()
                if not isinstance(e, OSError):
                    raise
                self._error = e
                continue
            # (EAGAIN, which is EWOULDBLOCK, is a failure here: no local port was free)
            if code in (0, errno.EINPROGRESS):
                self._sock, self._started = sock, time.monotonic()
                return
            sock.close()
            self._error = OSError(code, os.strerror(code))

    def finish(self) -> socket.socket:
        host, port = self.host, self.port
        try:
            return self._wait()
        except TimeoutError as e:
            raise NetworkTimeoutError(
                f"connecting to {host}:{port} timed out after {self.connect_timeout:g} s") from e
        except socket.gaierror as e:
            raise TransportError(f"cannot resolve {host}: {e.strerror}") from e
        except OSError as e:
            raise TransportError(f"cannot connect to {host}:{port}: {e.strerror or e}") from e

    def _wait(self) -> socket.socket:
        import selectors

        while self._sock is not None:
            sock, self._sock = self._sock, None
            try:
                with selectors.DefaultSelector() as selector:
                    selector.register(sock, selectors.EVENT_WRITE)
                    left = self.connect_timeout - (time.monotonic() - self._started)
                    ready = selector.select(max(left, 0.0))
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) if ready else None
            except BaseException:
                sock.close()
                raise
            if code == 0:
                return sock
            sock.close()
            self._error = TimeoutError("timed out") if code is None \
                else OSError(code, os.strerror(code))
            self._next()
        raise self._error or OSError("getaddrinfo returned no address")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class PendingConnection:
    """The connection to ``endpoint``, and its TLS context, begun before the code that will use
    them has loaded: the TCP handshake and the server's greeting then travel while the session
    layers are imported (~6 ms here), and the context is built on a thread of its own.
    ``take()`` hands the connected Transport over once (Session.connect takes it), or raises
    what connecting raised (Connecting.finish); ``close()`` discards a connection
    never taken. Session.connect makes one of its own when none was begun."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        tls = PendingTLSContext(endpoint) if endpoint.tls is not TLSMode.NONE else None
        # A numeric address is connected to first: the context's thread, once started, would
        # hold the GIL for up to the switch interval (5 ms) before the SYN left. A name is
        # looked up with the thread already running: the lookup releases the GIL, and a DNS
        # query can take longer than building the context.
        numeric = _numeric(endpoint.host)
        if tls is not None and not numeric:
            tls.start()
        self._connecting: Connecting | None = Connecting(endpoint.host, endpoint.effective_port,
                                                         endpoint.connect_timeout)
        try:
            if tls is not None and numeric:
                tls.start()
        except BaseException:
            self._connecting.close()
            raise
        self.tls = tls

    def is_for(self, endpoint: Endpoint) -> bool:
        """Begun to ``endpoint``, and not taken or closed yet."""
        return self._connecting is not None and endpoint == self.endpoint

    def take(self) -> tuple[Transport, PendingTLSContext | None]:
        """The connection, once made, and its TLS context; raises what connecting raised."""
        connecting, self._connecting = self._connecting, None
        if connecting is None:
            raise RuntimeError("the connection was taken or closed already")
        return Transport.connect(connecting, timeout=self.endpoint.timeout), self.tls

    def close(self) -> None:
        if self._connecting is not None:
            self._connecting.close()
            self._connecting = None
