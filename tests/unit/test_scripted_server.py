"""Tests of the scripted POP3 test server itself, driven by plain sockets and ``ssl``."""

from __future__ import annotations

import hashlib
import socket
import ssl

import pytest

from tests.support.bounded import hang_guard
from tests.support.scripted_server import (
    ScriptedServer,
    Step,
    close,
    expect,
    expect_eof,
    expect_line,
    reply_each,
    send,
    stall,
    starttls,
)

FAST = 0.2  # server timeout for tests that must hit it


def connect(server: ScriptedServer) -> socket.socket:
    return socket.create_connection((server.host, server.port), timeout=2.0)


def readline(sock: socket.socket) -> bytes:
    line = bytearray()
    while not line.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        line += chunk
    return bytes(line)


def login_script() -> list[Step]:
    return [
        send(b"+OK POP3 ready\r\n"),
        expect(b"USER alice\r\n"),
        send(b"+OK\r\n"),
        expect(b"PASS secret\r\n"),
        send(b"+OK logged in\r\n"),
        *reply_each((b"STAT\r\n", b"+OK 2 320\r\n"), (b"QUIT\r\n", b"+OK bye\r\n")),
        expect_eof(),
    ]


def test_exact_dialogue_passes() -> None:
    with ScriptedServer(login_script(), timeout=2.0) as server, connect(server) as sock:
        assert server.host == "127.0.0.1"
        assert readline(sock) == b"+OK POP3 ready\r\n"
        replies = []
        for command in (b"USER alice\r\n", b"PASS secret\r\n", b"STAT\r\n", b"QUIT\r\n"):
            sock.sendall(command)
            replies.append(readline(sock))
        assert replies == [b"+OK\r\n", b"+OK logged in\r\n", b"+OK 2 320\r\n", b"+OK bye\r\n"]
    server.assert_done()
    assert server.received == b"USER alice\r\nPASS secret\r\nSTAT\r\nQUIT\r\n"
    assert server.sent.startswith(b"+OK POP3 ready\r\n+OK\r\n")
    assert [who for who, _ in server.transcript if who != "*"] == ["S", "C"] * 4 + ["S"]


def test_mismatch_is_reported_and_stops_the_script() -> None:
    script = [send(b"+OK\r\n"), expect(b"USER alice\r\n"), send(b"+OK\r\n")]
    with ScriptedServer(script, timeout=2.0) as server, connect(server) as sock:
        readline(sock)
        sock.sendall(b"USER bob\r\n")
        assert sock.recv(100) == b""  # the server hung up instead of replying
    with pytest.raises(AssertionError) as info:
        server.assert_done()
    message = str(info.value)
    assert "step 1 expect(b'USER alice\\r\\n') failed" in message
    assert "expected b'USER alice\\r\\n', got b'USER bob\\r\\n'" in message
    assert "[2] send(b'+OK\\r\\n')" in message
    assert server.received == b"USER bob\r\n"


def test_pipelined_expect_blocks_a_lockstep_client() -> None:
    script = [expect(b"TOP 1 0\r\nTOP 2 0\r\n"), send(b"+OK\r\n.\r\n+OK\r\n.\r\n")]
    with ScriptedServer(script, timeout=FAST) as server, connect(server) as sock:
        sock.sendall(b"TOP 1 0\r\n")
        with hang_guard(1.5):
            assert sock.recv(100) == b""  # no reply until both commands came: timeout, hang-up
    with pytest.raises(AssertionError, match=r"timed out waiting for 9 more byte\(s\)"):
        server.assert_done()
    assert server.received == b"TOP 1 0\r\n"


def test_pipelined_expect_accepts_a_pipelining_client() -> None:
    script = [expect(b"TOP 1 0\r\nTOP 2 0\r\n"), send(b"+OK\r\n.\r\n+OK\r\n.\r\n")]
    with ScriptedServer(script, timeout=FAST) as server, connect(server) as sock:
        sock.sendall(b"TOP 1 0\r\n")
        sock.sendall(b"TOP 2 0\r\n")
        assert [readline(sock) for _ in range(4)] == [b"+OK\r\n", b".\r\n"] * 2
    server.assert_done()


def test_starttls_then_encrypted_dialogue() -> None:
    script = [
        send(b"+OK ready\r\n"),
        expect(b"STLS\r\n"),
        send(b"+OK Begin TLS\r\n"),
        starttls(),
        expect(b"CAPA\r\n"),
        send(b"+OK\r\nUSER\r\n.\r\n"),
        expect(b"QUIT\r\n"),
        send(b"+OK\r\n"),
        expect_eof(),
    ]
    with ScriptedServer(script, timeout=2.0) as server, connect(server) as raw:
        context = ssl.create_default_context(cafile=server.ca_file)
        assert readline(raw) == b"+OK ready\r\n"
        raw.sendall(b"STLS\r\n")
        assert readline(raw) == b"+OK Begin TLS\r\n"
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            der = tls.getpeercert(binary_form=True)
            assert der is not None
            assert hashlib.sha256(der).hexdigest() == server.cert_sha256 == server.ca_fingerprint
            tls.sendall(b"CAPA\r\n")
            assert [readline(tls) for _ in range(3)] == [b"+OK\r\n", b"USER\r\n", b".\r\n"]
            tls.sendall(b"QUIT\r\n")
            assert readline(tls) == b"+OK\r\n"
    server.assert_done()
    assert server.received == b"STLS\r\nCAPA\r\nQUIT\r\n"  # plaintext, then decrypted
    assert any(
        who == "*" and data.startswith(b"TLS established") for who, data in server.transcript
    )


def test_implicit_tls() -> None:
    script = [send(b"+OK ready\r\n"), *reply_each((b"QUIT\r\n", b"+OK\r\n")), expect_eof()]
    with ScriptedServer(script, tls="implicit", timeout=2.0) as server, connect(server) as raw:
        context = ssl.create_default_context(cafile=server.ca_file)
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
            assert readline(tls) == b"+OK ready\r\n"
            tls.sendall(b"QUIT\r\n")
            assert readline(tls) == b"+OK\r\n"
    server.assert_done()
    assert server.received == b"QUIT\r\n"


def test_certificate_for_another_host_is_rejected_and_recorded() -> None:
    with (
        ScriptedServer([send(b"+OK\r\n")], tls="implicit", cert_hostname="mail.example") as server,
        connect(server) as raw,
    ):
        context = ssl.create_default_context(cafile=server.ca_file)
        with pytest.raises(ssl.SSLCertVerificationError):
            context.wrap_socket(raw, server_hostname="localhost")
    server.wait()
    assert server.failures and server.failures[0].startswith("implicit TLS handshake: ")
    with pytest.raises(AssertionError, match="TLS handshake failed"):
        server.assert_done()


def test_expect_eof_detects_an_extra_byte() -> None:
    with (
        ScriptedServer([send(b"+OK\r\n"), expect_eof()], timeout=2.0) as server,
        connect(server) as sock,
    ):
        readline(sock)
        sock.sendall(b"Q")
    with pytest.raises(AssertionError, match=r"close the connection, it sent b'Q'"):
        server.assert_done()


def test_expect_eof_times_out_when_the_client_stays() -> None:
    with ScriptedServer([expect_eof()], timeout=FAST) as server, connect(server) as sock:
        assert sock.recv(1) == b""  # the server gives up after its timeout
    with pytest.raises(AssertionError, match="timed out waiting for the client to close"):
        server.assert_done()


def test_early_disconnect_is_recorded() -> None:
    script = [send(b"+OK\r\n"), expect(b"QUIT\r\n"), send(b"+OK\r\n")]
    with ScriptedServer(script, timeout=2.0) as server, connect(server) as sock:
        readline(sock)
    with pytest.raises(AssertionError, match="client closed the connection; expected b'QUIT"):
        server.assert_done()


def test_expect_line_captures_the_actual_line() -> None:
    script = [expect_line(b"APOP alice "), send(b"+OK\r\n")]
    with ScriptedServer(script, timeout=2.0) as server, connect(server) as sock:
        sock.sendall(b"APOP alice 0123456789abcdef\r\n")
        assert readline(sock) == b"+OK\r\n"
    server.assert_done()
    assert server.captured == [b"APOP alice 0123456789abcdef\r\n"]


def test_expect_line_rejects_bare_lf_and_wrong_prefix() -> None:
    with ScriptedServer([expect_line(b"AUTH ")], timeout=2.0) as server, connect(server) as sock:
        sock.sendall(b"AUTH PLAIN\n")
    with pytest.raises(AssertionError, match="bare LF"):
        server.assert_done()
    with ScriptedServer([expect_line(b"AUTH ")], timeout=2.0) as server, connect(server) as sock:
        sock.sendall(b"APOP x\r\n")
    with pytest.raises(AssertionError, match="expected a line starting b'AUTH '"):
        server.assert_done()


def test_close_step_hangs_up() -> None:
    with (
        ScriptedServer([send(b"+OK\r\n"), close()], timeout=2.0) as server,
        connect(server) as sock,
    ):
        assert readline(sock) == b"+OK\r\n"
        assert sock.recv(10) == b""
    server.assert_done()


def test_close_with_reset() -> None:
    with (
        ScriptedServer([close(reset=True)], timeout=2.0) as server,
        pytest.raises(ConnectionResetError),  # on recv, or already on a non-blocking connect
        connect(server) as sock,
    ):
        sock.recv(10)
    server.assert_done()


def test_stall_lets_the_client_time_out_and_ends_with_the_test() -> None:
    with (
        hang_guard(1.5),
        ScriptedServer([send(b"+OK\r\n"), stall(30)], timeout=2.0) as server,
        connect(server) as sock,
    ):
        readline(sock)
        sock.settimeout(0.1)
        with pytest.raises(TimeoutError):
            sock.recv(10)
    server.assert_done()


def test_injection_case_is_one_write_and_needs_a_hang_up() -> None:
    script = [send(b"+OK\r\n"), expect(b"STLS\r\n"), send(b"+OK\r\n+OK injected\r\n"), expect_eof()]
    with ScriptedServer(script, timeout=2.0) as server, connect(server) as sock:
        readline(sock)
        sock.sendall(b"STLS\r\n")
        assert readline(sock) == b"+OK\r\n"  # a careful client sees extra buffered data
    server.assert_done()
    # One write; the client hung up (EOF, or RST as it left "+OK injected" unread) and no more.
    assert server.transcript[-2] == ("S", b"+OK\r\n+OK injected\r\n")
    assert server.transcript[-1][0] == "*"


def test_server_without_a_client_stops_quickly() -> None:
    with hang_guard(1.0), ScriptedServer([send(b"+OK\r\n")], timeout=5.0) as server:
        pass
    with pytest.raises(AssertionError, match="no client connected"):
        server.assert_done()


def test_exception_in_the_with_body_tears_down_at_once() -> None:
    with (
        hang_guard(1.0),
        pytest.raises(RuntimeError),
        ScriptedServer([expect(b"X")], timeout=5.0) as server,
        connect(server),
    ):
        raise RuntimeError("test body failed")
    assert server.failures


def test_bad_scripts_are_rejected() -> None:
    with pytest.raises(ValueError, match="last step"):
        ScriptedServer([close(), send(b"x")])
    with pytest.raises(ValueError, match="implicit"):
        ScriptedServer([starttls()], tls="implicit")
    with pytest.raises(TypeError, match="splat"):
        ScriptedServer([reply_each((b"A\r\n", b"+OK\r\n"))])  # type: ignore[list-item]
