"""A strict, scripted POP3 test server: asserts the exact bytes a client sends and injects faults.

popctl's tests use it to prove the byte-for-byte dialogue the client produces (command spelling,
CRLF, pipelining, no QUIT after a failure, ...) and to feed the client malformed or hostile
replies. It is modelled on aiosmtpd's test fixtures: it listens on 127.0.0.1 only, on an
ephemeral port (port 0), uses per-process throw-away certificates made with ``trustme``, records
every byte in both directions, and never hangs a test (every socket operation has a timeout).

The server accepts ONE connection and plays a script of steps, in order::

    from tests.support.scripted_server import ScriptedServer, expect, expect_eof, send

    script = [
        send(b"+OK POP3 ready\\r\\n"),
        expect(b"USER alice\\r\\n"), send(b"+OK\\r\\n"),
        expect(b"PASS secret\\r\\n"), send(b"+OK logged in\\r\\n"),
        expect(b"STAT\\r\\n"), send(b"+OK 2 320\\r\\n"),
        expect(b"QUIT\\r\\n"), send(b"+OK bye\\r\\n"),
        expect_eof(),
    ]
    with ScriptedServer(script, timeout=1.0) as server:
        run_client("127.0.0.1", server.port)
        server.assert_done()

Steps:

* ``send(data)`` writes exactly ``data`` (malformed replies, bare LF, huge lines are all fine).
* ``expect(data)`` reads until ``len(data)`` bytes have arrived and compares them with ``data``.
  It fails at the first differing byte, on EOF, or on timeout. Because it waits for ALL its
  bytes before the next step runs, ``expect(b"TOP 1 0\\r\\nTOP 2 0\\r\\n"), send(...)`` proves
  pipelining: a client that waits for the first reply before sending the second command times
  out.
* ``expect_line(prefix)`` reads one CRLF-terminated line and checks that it starts with
  ``prefix`` (for APOP digests, SASL responses, ...). The line is kept in ``server.captured``.
* ``starttls()`` performs the server side of the TLS handshake (after the script has sent the
  ``+OK`` to STLS). Everything read afterwards is recorded decrypted.
* ``close(reset=False)`` closes the connection at once (``reset=True`` sends a TCP RST).
* ``stall(seconds)`` sleeps without reading or writing (read-timeout tests).
* ``expect_eof()`` asserts the client closes the connection WITHOUT sending another byte; this is
  how a test proves "no QUIT was sent after a failure".
* ``reply_each((command, reply), ...)`` expands to ``expect(command), send(reply), ...``.

STLS response injection (CVE-2011-0411 class): send the ``+OK`` and the injected line in ONE
write and require the client to hang up without starting a handshake::

    send(b"+OK POP3 ready\\r\\n"), expect(b"STLS\\r\\n"),
    send(b"+OK Begin TLS\\r\\n+OK injected\\r\\n"),   # one write, one TCP segment
    expect_eof(),                                     # a ClientHello would be "extra bytes"

Failures (mismatch, timeout, early disconnect, TLS errors, an exception in the server thread)
are recorded, stop the script and close the connection; ``assert_done()`` raises an
``AssertionError`` describing the first failure, the unconsumed steps and the end of the
transcript. A test that expects the dialogue to break (for example a client that must reject
the certificate) inspects ``server.failures`` instead.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import shutil
import socket
import ssl
import struct
import tempfile
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal, TypeAlias

import trustme

__all__ = [
    "Close",
    "Expect",
    "ExpectEOF",
    "ExpectLine",
    "ScriptedServer",
    "Send",
    "Stall",
    "StartTLS",
    "Step",
    "close",
    "expect",
    "expect_eof",
    "expect_line",
    "reply_each",
    "send",
    "stall",
    "starttls",
]

HOST = "127.0.0.1"
MAX_LINE = 1 << 20  # expect_line gives up on a "line" longer than this
_ACCEPT_POLL = 0.05  # seconds between checks of the stop flag while waiting for the client
_REPR_LIMIT = 300  # long byte strings are abbreviated in messages


def _short(data: bytes, limit: int = _REPR_LIMIT) -> str:
    """repr() of data, abbreviated in the middle when it is long."""
    if len(data) <= limit:
        return repr(data)
    half = limit // 2
    return f"{data[:half]!r} ...[{len(data) - 2 * half} bytes]... {data[-half:]!r}"


# --- steps ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Send:
    """Write exactly ``data`` to the client."""

    data: bytes

    def describe(self) -> str:
        return f"send({_short(self.data)})"


@dataclass(frozen=True)
class Expect:
    """Read exactly ``len(data)`` bytes and require them to equal ``data``."""

    data: bytes
    timeout: float | None = None  # None: the server's timeout

    def describe(self) -> str:
        return f"expect({_short(self.data)})"


@dataclass(frozen=True)
class ExpectLine:
    """Read one CRLF-terminated line and require it to start with ``prefix``."""

    prefix: bytes
    timeout: float | None = None

    def describe(self) -> str:
        return f"expect_line({_short(self.prefix)})"


@dataclass(frozen=True)
class StartTLS:
    """Run the server side of a TLS handshake on the connection."""

    timeout: float | None = None

    def describe(self) -> str:
        return "starttls()"


@dataclass(frozen=True)
class Close:
    """Close the connection now; ``reset`` makes it a TCP RST instead of a FIN."""

    reset: bool = False

    def describe(self) -> str:
        return f"close(reset={self.reset})"


@dataclass(frozen=True)
class Stall:
    """Sleep ``seconds`` without reading or writing."""

    seconds: float

    def describe(self) -> str:
        return f"stall({self.seconds})"


@dataclass(frozen=True)
class ExpectEOF:
    """Require the client to close the connection without sending anything more."""

    timeout: float | None = None

    def describe(self) -> str:
        return "expect_eof()"


Step: TypeAlias = Send | Expect | ExpectLine | StartTLS | Close | Stall | ExpectEOF
_STEP_TYPES = (Send, Expect, ExpectLine, StartTLS, Close, Stall, ExpectEOF)


def send(data: bytes) -> Step:
    return Send(data)


def expect(data: bytes, *, timeout: float | None = None) -> Step:
    return Expect(data, timeout)


def expect_line(prefix: bytes, *, timeout: float | None = None) -> Step:
    return ExpectLine(prefix, timeout)


def starttls(*, timeout: float | None = None) -> Step:
    return StartTLS(timeout)


def close(*, reset: bool = False) -> Step:
    return Close(reset)


def stall(seconds: float) -> Step:
    return Stall(seconds)


def expect_eof(*, timeout: float | None = None) -> Step:
    return ExpectEOF(timeout)


def reply_each(*pairs: tuple[bytes, bytes]) -> list[Step]:
    """``reply_each((b"STAT\\r\\n", b"+OK 1 2\\r\\n"), ...)`` -> expect/send pairs (splat it in)."""
    steps: list[Step] = []
    for command, reply in pairs:
        steps += [Expect(command), Send(reply)]
    return steps


# --- certificates (one CA per process, one leaf per host name) -----------------------------------


@dataclass(frozen=True)
class _Leaf:
    cert: trustme.LeafCert
    sha256: str


class _Certificates:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ca: trustme.CA | None = None
        self._ca_file = ""
        self._leaves: dict[str, _Leaf] = {}

    def _ensure_ca(self) -> trustme.CA:
        if self._ca is None:
            ca = trustme.CA()
            directory = tempfile.mkdtemp(prefix="popctl-scripted-server-")
            atexit.register(shutil.rmtree, directory, True)
            path = Path(directory) / "ca.pem"
            ca.cert_pem.write_to_path(str(path))
            self._ca, self._ca_file = ca, str(path)
        return self._ca

    def ca_file(self) -> str:
        with self._lock:
            self._ensure_ca()
            return self._ca_file

    def leaf(self, hostname: str) -> _Leaf:
        with self._lock:
            ca = self._ensure_ca()
            if hostname not in self._leaves:
                cert = ca.issue_cert(hostname)
                pem = cert.cert_chain_pems[0].bytes().decode("ascii")
                digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()
                self._leaves[hostname] = _Leaf(cert, digest)
            return self._leaves[hostname]


_CERTIFICATES = _Certificates()


# --- the server ----------------------------------------------------------------------------------


class _StepFailed(Exception):
    """Internal: the current step did not go as scripted (message says why)."""


class ScriptedServer:
    """Accept one connection on 127.0.0.1:<ephemeral> and play ``script`` against it.

    Attributes: ``host``/``port`` (where to connect), ``ca_file`` (PEM of the CA to trust),
    ``cert_sha256`` and its alias ``ca_fingerprint`` (lower-case SHA-256 hex of the server
    certificate's DER, for pinning tests). Records: ``received`` (client bytes, decrypted after
    TLS), ``sent``, ``captured`` (lines matched by expect_line), ``transcript`` (("C"|"S"|"*",
    bytes) events), ``failures``.
    """

    host: str
    port: int
    ca_file: str
    cert_sha256: str

    def __init__(
        self,
        script: Sequence[Step],
        *,
        tls: Literal["none", "implicit"] = "none",
        timeout: float = 5.0,
        cert_hostname: str = "localhost",
        port: int = 0,
    ) -> None:
        """``port``: 0 for any free one; a given one (say the port of an earlier server, for a
        client that keeps state per port) is bound with SO_REUSEADDR."""
        if tls not in ("none", "implicit"):
            raise ValueError(f"tls must be 'none' or 'implicit', not {tls!r}")
        steps = tuple(script)
        for index, step in enumerate(steps):
            if not isinstance(step, _STEP_TYPES):
                raise TypeError(f"script[{index}] is not a step: {step!r} (splat reply_each?)")
            if isinstance(step, Close) and index != len(steps) - 1:
                raise ValueError(f"script[{index}]: close() must be the last step")
            if isinstance(step, StartTLS) and tls == "implicit":
                raise ValueError(f"script[{index}]: starttls() on an implicit-TLS connection")
        self.script: tuple[Step, ...] = steps
        self.tls = tls
        self.timeout = timeout
        self.cert_hostname = cert_hostname
        self.ca_file = _CERTIFICATES.ca_file()
        self._leaf = _CERTIFICATES.leaf(cert_hostname)
        self.cert_sha256 = self._leaf.sha256

        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._received = bytearray()
        self._sent = bytearray()
        self._transcript: list[tuple[str, bytearray]] = []
        self._failures: list[str] = []
        self._captured: list[bytes] = []
        self._steps_done = 0
        self._conn: socket.socket | None = None
        self._thread: threading.Thread | None = None

        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if port:
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((HOST, port))
            listener.listen(1)
        except BaseException:
            listener.close()
            raise
        self._listener: socket.socket | None = listener
        self.host, self.port = listener.getsockname()[:2]

    # -- records ----------------------------------------------------------------------------------

    @property
    def ca_fingerprint(self) -> str:
        """Alias of ``cert_sha256``: SHA-256 hex of the server certificate's DER."""
        return self.cert_sha256

    @property
    def received(self) -> bytes:
        with self._lock:
            return bytes(self._received)

    @property
    def sent(self) -> bytes:
        with self._lock:
            return bytes(self._sent)

    @property
    def captured(self) -> list[bytes]:
        with self._lock:
            return list(self._captured)

    @property
    def transcript(self) -> list[tuple[str, bytes]]:
        with self._lock:
            return [(who, bytes(data)) for who, data in self._transcript]

    @property
    def failures(self) -> list[str]:
        with self._lock:
            return list(self._failures)

    @property
    def steps_done(self) -> int:
        return self._steps_done

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> ScriptedServer:
        if self._thread is not None:
            raise RuntimeError("ScriptedServer.start() called twice")
        self._thread = threading.Thread(
            target=self._run, name=f"ScriptedServer:{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def wait(self, timeout: float = 5.0) -> None:
        """Join the server thread (at most ``timeout`` seconds)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def stop(self, *, force: bool = False) -> None:
        """Let the script finish (unless ``force``), then close everything and join the thread.

        A pending stall() ends at once and a server still waiting for its client gives up. The
        grace period is bounded: every remaining step either completes or times out.
        """
        self._stop.set()
        thread = self._thread
        if thread is not None and not force:
            thread.join(self.timeout + 1.0)
        if thread is not None and thread.is_alive():
            with self._lock:
                conn = self._conn
            if conn is not None:
                # socket.socket's own shutdown: safe on an SSLSocket in use by the thread.
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(conn, socket.SHUT_RDWR)
            thread.join(self.timeout + 1.0)
        self._close_listener()

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop(force=exc_type is not None)

    def assert_done(self) -> None:
        """Raise AssertionError unless the whole script ran without a failure."""
        if self._thread is None:
            raise AssertionError("ScriptedServer was never started")
        self.wait(self.timeout + 1.0)
        failures = self.failures
        done = self._steps_done
        if not failures and not self._thread.is_alive() and done == len(self.script):
            return
        lines: list[str] = []
        if self._thread.is_alive():
            lines.append(f"ScriptedServer still running at step {done}")
        lines.extend(failures[:1])
        if done < len(self.script):
            lines.append(f"unconsumed steps ({len(self.script) - done} of {len(self.script)}):")
            lines += [f"  [{i}] {s.describe()}" for i, s in enumerate(self.script) if i >= done]
        transcript = self.transcript
        lines.append(f"transcript (last {min(len(transcript), 12)} of {len(transcript)} events):")
        lines += [f"  {who}: {_short(data)}" for who, data in transcript[-12:]]
        raise AssertionError("\n".join(lines))

    # -- server thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            if not self._accept():
                return
            if self.tls == "implicit":
                try:
                    self._handshake(self.timeout)
                except _StepFailed as exc:
                    self._fail(f"implicit TLS handshake: {exc}")
                    return
            for index, step in enumerate(self.script):
                try:
                    self._execute(step)
                except _StepFailed as exc:
                    self._fail(f"step {index} {step.describe()} failed: {exc}")
                    return
                self._steps_done = index + 1
        except BaseException:  # never let the thread die silently
            self._fail(f"server thread error:\n{traceback.format_exc()}")
        finally:
            self._close_conn()
            self._close_listener()

    def _fail(self, message: str) -> None:
        if self._stop.is_set():
            message += " (the server was being stopped)"
        with self._lock:
            self._failures.append(message)

    def _event(self, who: str, data: bytes) -> None:
        """Append to the transcript, merging consecutive chunks from the same side."""
        with self._lock:
            if who == "C":
                self._received += data
            elif who == "S":
                self._sent += data
            if who != "*" and self._transcript and self._transcript[-1][0] == who:
                self._transcript[-1][1].extend(data)
            else:
                self._transcript.append((who, bytearray(data)))

    def _accept(self) -> bool:
        listener = self._listener
        if listener is None:
            self._fail("the listening socket was closed before the server started")
            return False
        deadline = time.monotonic() + self.timeout
        listener.settimeout(_ACCEPT_POLL)
        while True:
            try:
                conn, _ = listener.accept()
                break
            except TimeoutError:
                if self._stop.is_set():
                    self._fail("no client connected before the server was stopped")
                    return False
                if time.monotonic() >= deadline:
                    self._fail(f"no client connected within {self.timeout}s")
                    return False
            except OSError as exc:
                self._fail(f"accept failed: {exc!r}")
                return False
        self._close_listener()
        conn.settimeout(self.timeout)
        with self._lock:
            self._conn = conn
        self._event("*", b"connected")
        return True

    def _close_listener(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()

    def _close_conn(self, *, reset: bool = False) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if reset:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass  # already dead: a plain close will do
        finally:
            conn.close()

    def _connection(self) -> socket.socket:
        conn = self._conn
        if conn is None:
            raise _StepFailed("the connection is already closed")
        return conn

    def _execute(self, step: Step) -> None:
        if isinstance(step, Send):
            self._send(step.data)
        elif isinstance(step, Expect):
            self._expect(step.data, self._deadline(step.timeout))
        elif isinstance(step, ExpectLine):
            self._expect_line(step.prefix, self._deadline(step.timeout))
        elif isinstance(step, StartTLS):
            self._handshake(self.timeout if step.timeout is None else step.timeout)
        elif isinstance(step, Close):
            self._close_conn(reset=step.reset)
            self._event("*", b"server closed (RST)" if step.reset else b"server closed")
        elif isinstance(step, Stall):
            self._stop.wait(step.seconds)  # ends early when the test is over
        elif isinstance(step, ExpectEOF):
            self._expect_eof(self._deadline(step.timeout))
        else:  # pragma: no cover - __init__ rejects anything else
            raise _StepFailed(f"unknown step {step!r}")

    def _deadline(self, timeout: float | None) -> float:
        return time.monotonic() + (self.timeout if timeout is None else timeout)

    def _send(self, data: bytes) -> None:
        conn = self._connection()
        conn.settimeout(self.timeout)
        self._event("S", data)
        try:
            conn.sendall(data)
        except TimeoutError as exc:
            raise _StepFailed(f"timed out after {self.timeout}s (client not reading)") from exc
        except OSError as exc:
            raise _StepFailed(f"client disconnected while the server was sending: {exc!r}") from exc

    def _recv(self, max_bytes: int, deadline: float, waiting_for: str) -> bytes:
        """Read at most max_bytes; b"" means EOF. Timeouts and errors raise _StepFailed."""
        conn = self._connection()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _StepFailed(f"timed out waiting for {waiting_for}")
        conn.settimeout(remaining)
        try:
            chunk = conn.recv(max_bytes)
        except TimeoutError as exc:
            raise _StepFailed(f"timed out waiting for {waiting_for}") from exc
        except ssl.SSLError as exc:
            raise _StepFailed(f"TLS error while waiting for {waiting_for}: {exc!r}") from exc
        except OSError as exc:
            raise _StepFailed(f"connection error while waiting for {waiting_for}: {exc!r}") from exc
        if chunk:
            self._event("C", chunk)
        else:
            self._event("*", b"client EOF")
        return chunk

    def _expect(self, data: bytes, deadline: float) -> None:
        got = bytearray()
        while len(got) < len(data):
            # Ask for exactly the missing bytes: never read ahead into the next step's data.
            what = f"{len(data) - len(got)} more byte(s)"
            try:
                chunk = self._recv(len(data) - len(got), deadline, what)
            except _StepFailed as exc:
                message = f"{exc}; expected {_short(data)}, got {_short(bytes(got))}"
                raise _StepFailed(message) from exc.__cause__
            if not chunk:
                raise _StepFailed(
                    f"client closed the connection; expected {_short(data)}, "
                    f"got {_short(bytes(got))}"
                )
            got += chunk
            if not data.startswith(got):
                raise _StepFailed(f"expected {_short(data)}, got {_short(bytes(got))}")

    def _expect_line(self, prefix: bytes, deadline: float) -> None:
        got = bytearray()
        while not got.endswith(b"\n"):
            if len(got) >= MAX_LINE:
                raise _StepFailed(f"no end of line after {len(got)} bytes: {_short(bytes(got))}")
            try:
                chunk = self._recv(1, deadline, "the end of the line")
            except _StepFailed as exc:
                raise _StepFailed(f"{exc}; got {_short(bytes(got))}") from exc.__cause__
            if not chunk:
                raise _StepFailed(f"client closed the connection; got {_short(bytes(got))}")
            got += chunk
            n = min(len(got), len(prefix))
            if got[:n] != prefix[:n]:
                raise _StepFailed(f"expected a line starting {_short(prefix)}, got {got!r}")
        line = bytes(got)
        if not line.endswith(b"\r\n"):
            raise _StepFailed(f"line ends with a bare LF: {_short(line)}")
        if not line.startswith(prefix):
            raise _StepFailed(f"expected a line starting {_short(prefix)}, got {_short(line)}")
        with self._lock:
            self._captured.append(line)

    def _expect_eof(self, deadline: float) -> None:
        try:
            chunk = self._recv(4096, deadline, "the client to close the connection")
        except _StepFailed as exc:
            if isinstance(exc.__cause__, ConnectionResetError):
                self._event("*", b"client reset the connection")
                return  # a reset is a close that sent no more data
            raise
        if chunk:
            raise _StepFailed(f"expected the client to close the connection, it sent {chunk!r}")

    def _handshake(self, timeout: float) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._leaf.cert.configure_cert(context)
        conn = self._connection()
        with self._lock:  # wrap_socket detaches conn: swap atomically for stop()
            tls = context.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
            self._conn = tls
        tls.settimeout(timeout)
        try:
            tls.do_handshake()
        except TimeoutError as exc:
            raise _StepFailed(f"TLS handshake timed out after {timeout}s") from exc
        except (ssl.SSLError, OSError) as exc:
            raise _StepFailed(f"TLS handshake failed: {exc!r}") from exc
        self._event("*", f"TLS established ({tls.version()})".encode())
