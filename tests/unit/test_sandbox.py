"""The sandbox POP3 server and its sample mailbox, checked with poplib and raw sockets."""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import os
import poplib
import re
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.header import decode_header, make_header

import pytest

from popctl.sandbox import SandboxServer, sample_mailbox
from popctl.sandbox import command as sandbox_command
from popctl.sandbox import server as sandbox_server

REFERENCE = datetime(2024, 3, 1, tzinfo=UTC)
SAMPLE = sample_mailbox(reference=REFERENCE)
MIB = 1024 * 1024

DOTTED = b"Subject: dots\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nend\r\n"
SMALL = [
    b"From: a@example.com\r\nSubject: one\r\n\r\nfirst line\r\nsecond line\r\nthird line\r\n",
    DOTTED,
    b"From: c@example.com\r\nSubject: three\r\n\r\nbody\r\n",
]


class Client:
    """A raw POP3 client that shows exactly what the server sends."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.sock: socket.socket = socket.create_connection(address, timeout=5)
        self.file = self.sock.makefile("rb")
        self.greeting = self.line()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        line = self.file.readline()
        assert line.endswith(b"\r\n"), line
        return line[:-2]

    def command(self, command: str) -> bytes:
        self.send(command.encode() + b"\r\n")
        return self.line()

    def body(self) -> bytes:
        """The rest of a multi-line reply, un-dot-stuffed, with CRLF line endings."""
        lines = []
        while (line := self.line()) != b".":
            lines.append(line[1:] if line.startswith(b".") else line)
        return b"".join(line + b"\r\n" for line in lines)

    def multiline(self, command: str) -> bytes:
        status = self.command(command)
        assert status.startswith(b"+OK"), status
        return self.body()

    def login(self) -> bytes:
        assert self.command("USER sandbox") == b"+OK send PASS"
        return self.command("PASS sandbox")

    def start_tls(self, context: ssl.SSLContext, hostname: str = "localhost") -> None:
        assert self.command("STLS") == b"+OK begin TLS negotiation"
        self.file.close()
        self.sock = context.wrap_socket(self.sock, server_hostname=hostname)
        self.file = self.sock.makefile("rb")


def login_when_unlocked(address: tuple[str, int]) -> Client:
    """Log in, waiting for a dropped session's thread to release the maildrop lock."""
    deadline = time.monotonic() + 3
    while True:
        client = Client(address)
        reply = client.login()
        if reply.startswith(b"+OK"):
            return client
        client.close()
        assert b"[IN-USE]" in reply and time.monotonic() < deadline, reply
        time.sleep(0.01)


@pytest.fixture
def server() -> Iterator[SandboxServer]:
    with SandboxServer(SMALL) as server:
        yield server


@pytest.fixture(scope="module")
def sample_server() -> Iterator[SandboxServer]:
    """The full sample mailbox; tests using it must leave it unchanged."""
    with SandboxServer(SAMPLE, tls=False) as server:
        yield server


def pop3(server: SandboxServer) -> poplib.POP3:
    return poplib.POP3(*server.address, timeout=5)


# --- greeting, capabilities, authentication --------------------------------------------------

BASE_CAPA = [b"TOP", b"UIDL", b"USER", b"RESP-CODES", b"AUTH-RESP-CODE", b"PIPELINING"]
TAIL_CAPA = [b"SASL PLAIN", b"EXPIRE NEVER", b"LOGIN-DELAY 0", b"IMPLEMENTATION popctl-sandbox"]


def test_greeting_and_capa(server: SandboxServer) -> None:
    with Client(server.address) as client:
        assert re.fullmatch(
            rb"\+OK popctl sandbox ready <\d+\.\d+\.\d+@localhost>", client.greeting
        )
        assert client.multiline("CAPA").split(b"\r\n")[:-1] == [*BASE_CAPA, b"STLS", *TAIL_CAPA]
        assert client.login() == b"+OK sandbox's maildrop has 3 messages (170 octets)"
        # RFC 2449: capabilities of the AUTHORIZATION state are announced in both states.
        assert client.multiline("CAPA").split(b"\r\n")[:-1] == [*BASE_CAPA, b"STLS", *TAIL_CAPA]
        assert client.command("QUIT") == b"+OK popctl sandbox signing off (3 messages left)"


def test_capa_without_tls_or_pipelining() -> None:
    with SandboxServer(SMALL, tls=False, pipelining=False, implementation="x") as server:
        assert server.ca_file is None and server.cert_sha256 is None
        connection = pop3(server)
        try:
            capa = connection.capa()
        finally:
            connection.close()
    assert "STLS" not in capa and "PIPELINING" not in capa
    assert capa["IMPLEMENTATION"] == ["x"]


def test_user_pass(server: SandboxServer) -> None:
    connection = pop3(server)
    try:
        with pytest.raises(poplib.error_proto, match=r"-ERR send USER first"):
            connection.pass_("sandbox")
        connection.user("sandbox")
        with pytest.raises(poplib.error_proto, match=r"-ERR \[AUTH\] invalid user name or pass"):
            connection.pass_("wrong")
        connection.user("intruder")
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
            connection.pass_("sandbox")
        connection.user("sandbox")
        assert connection.pass_("sandbox").startswith(b"+OK")
        assert connection.stat() == (3, 170)
    finally:
        connection.quit()


def plain(authzid: str, user: str, password: str) -> str:
    return base64.b64encode(f"{authzid}\0{user}\0{password}".encode()).decode()


def test_auth_plain_with_initial_response(server: SandboxServer) -> None:
    with Client(server.address) as client:
        wrong = client.command(f"AUTH PLAIN {plain('', 'sandbox', 'nope')}")
        assert wrong == b"-ERR [AUTH] invalid user name or password"
        proxy = client.command(f"AUTH PLAIN {plain('root', 'sandbox', 'sandbox')}")
        assert proxy.startswith(b"-ERR [AUTH]")
        assert client.command("AUTH PLAIN not!base64").startswith(b"-ERR")
        ok = client.command(f"AUTH plain {plain('sandbox', 'sandbox', 'sandbox')}")
        assert ok.startswith(b"+OK sandbox's maildrop has 3 messages")


def test_auth_plain_with_continuation_and_cancel(server: SandboxServer) -> None:
    with Client(server.address) as client:
        assert client.multiline("AUTH") == b"PLAIN\r\n"
        assert client.command("AUTH CRAM-MD5").startswith(b"-ERR")
        assert client.command("AUTH PLAIN") == b"+ "
        assert client.command("*") == b"-ERR authentication cancelled"
        assert client.command("AUTH PLAIN") == b"+ "
        assert client.command(plain("", "sandbox", "sandbox")).startswith(b"+OK")
        assert client.command("STAT") == b"+OK 3 170"


def test_apop(server: SandboxServer) -> None:
    with Client(server.address) as client:
        timestamp = re.search(rb"<[^>]+>", client.greeting)
        assert timestamp is not None
        digest = hashlib.md5(timestamp.group() + b"sandbox").hexdigest()
        assert client.command("APOP sandbox 0123").startswith(b"-ERR [AUTH]")
        assert client.command(f"APOP sandbox {digest}").startswith(b"+OK")


def test_stls(server: SandboxServer) -> None:
    assert server.ca_file is not None
    context = ssl.create_default_context(cafile=server.ca_file)
    # What Python 3.13 turns on by default; the certificate must pass it too.
    context.verify_flags |= ssl.VERIFY_X509_STRICT | ssl.VERIFY_X509_PARTIAL_CHAIN
    with Client(server.address) as client:
        client.send(b"USER sandbox\r\n")
        assert client.line() == b"+OK send PASS"
        client.start_tls(context, "localhost")
        assert isinstance(client.sock, ssl.SSLSocket)
        der = client.sock.getpeercert(binary_form=True)
        assert der is not None and hashlib.sha256(der).hexdigest() == server.cert_sha256
        assert b"STLS" not in client.multiline("CAPA").split(b"\r\n")
        assert client.command("STLS") == b"-ERR TLS is already active"
        # The USER given before the handshake is forgotten (RFC 2595 section 4).
        assert client.command("PASS sandbox") == b"-ERR send USER first"
        assert client.login().startswith(b"+OK")
        assert client.multiline("RETR 2") == DOTTED
        assert client.command("STLS") == b"-ERR STLS is not allowed in the TRANSACTION state"


def test_stls_with_poplib_checks_the_ip_address(server: SandboxServer) -> None:
    assert server.ca_file is not None
    connection = pop3(server)
    try:
        connection.stls(ssl.create_default_context(cafile=server.ca_file))
        connection.user("sandbox")
        connection.pass_("sandbox")
        assert connection.stat() == (3, 170)
    finally:
        connection.quit()


def test_stls_discards_commands_pipelined_before_the_handshake(server: SandboxServer) -> None:
    assert server.ca_file is not None
    context = ssl.create_default_context(cafile=server.ca_file)
    with Client(server.address) as client:
        client.send(b"STLS\r\nCAPA\r\n")
        assert client.line() == b"+OK begin TLS negotiation"
        client.file.close()
        client.sock = context.wrap_socket(client.sock, server_hostname="localhost")
        client.file = client.sock.makefile("rb")
        # Had the injected CAPA been kept, its reply would come first.
        assert client.command("NOOP") == b"-ERR NOOP is not allowed in the AUTHORIZATION state"


def test_stls_refused_when_disabled() -> None:
    with SandboxServer(SMALL, tls=False) as server, Client(server.address) as client:
        assert client.command("STLS") == b"-ERR STLS is not available"


# --- the TRANSACTION state -------------------------------------------------------------------


def test_stat_list_uidl_and_retr_agree(sample_server: SandboxServer) -> None:
    with Client(sample_server.address) as client:
        assert client.login().startswith(b"+OK")
        count, size = map(int, client.command("STAT").split()[1:])
        listing = [tuple(map(int, row.split())) for row in client.multiline("LIST").splitlines()]
        uids = [row.split()[1] for row in client.multiline("UIDL").splitlines()]
        assert count == len(listing) == len(uids) == len(SAMPLE)
        assert size == sum(octets for _, octets in listing)
        assert len(set(uids)) == count
        assert all(re.fullmatch(rb"[\x21-\x7e]{1,70}", uid) for uid in uids)
        for number, octets in listing:
            message = client.multiline(f"RETR {number}")
            assert len(message) == octets
            assert message == SAMPLE[number - 1]
            assert client.command(f"LIST {number}") == f"+OK {number} {octets}".encode()
            assert client.command(f"UIDL {number}") == f"+OK {number} ".encode() + uids[number - 1]
        assert client.command("QUIT").startswith(b"+OK")


def test_uids_persist_across_connections(sample_server: SandboxServer) -> None:
    def uidl() -> dict[int, bytes]:
        connection = pop3(sample_server)
        try:
            connection.user("sandbox")
            connection.pass_("sandbox")
            return {int(n): uid for n, uid in (row.split() for row in connection.uidl()[1])}
        finally:
            connection.quit()

    assert uidl() == uidl()


def test_top(server: SandboxServer) -> None:
    connection = pop3(server)
    try:
        connection.user("sandbox")
        connection.pass_("sandbox")
        assert connection.top(1, 0)[1] == [b"From: a@example.com", b"Subject: one", b""]
        assert connection.top(1, 2)[1][-2:] == [b"first line", b"second line"]
        assert connection.top(1, 99)[1] == connection.retr(1)[1]
    finally:
        connection.quit()


def test_top_of_a_big_sample_message_is_small(sample_server: SandboxServer) -> None:
    biggest = max(range(len(SAMPLE)), key=lambda i: len(SAMPLE[i])) + 1
    with Client(sample_server.address) as client:
        assert client.login().startswith(b"+OK")
        headers = client.multiline(f"TOP {biggest} 0")
        assert headers.endswith(b"\r\n\r\n") and headers.count(b"\r\n\r\n") == 1
        assert SAMPLE[biggest - 1].startswith(headers)
        assert client.multiline(f"RETR {biggest}") == SAMPLE[biggest - 1]


def test_dele_then_rset_restores(server: SandboxServer) -> None:
    with Client(server.address) as client:
        assert client.login().startswith(b"+OK")
        assert client.command("DELE 1") == b"+OK message 1 deleted"
        assert client.command("DELE 1") == b"-ERR no such message"
        assert client.command("RETR 1") == b"-ERR no such message"
        assert client.command("LIST 1") == b"-ERR no such message"
        assert client.command("STAT") == b"+OK 2 96"
        assert client.multiline("LIST").startswith(b"2 ")
        assert client.command("RSET") == b"+OK maildrop has 3 messages (170 octets)"
        assert client.command("LIST 1") == b"+OK 1 74"


def test_dele_and_quit_removes_the_message(server: SandboxServer) -> None:
    with Client(server.address) as client:
        assert client.login().startswith(b"+OK")
        uids = client.multiline("UIDL").splitlines()
        assert client.command("DELE 2") == b"+OK message 2 deleted"
        assert client.command("QUIT") == b"+OK popctl sandbox signing off (2 messages left)"
    assert server.messages == [SMALL[0], SMALL[2]]
    with Client(server.address) as client:
        assert client.login() == b"+OK sandbox's maildrop has 2 messages (119 octets)"
        # Survivors keep their UIDs; message numbers close up.
        assert client.multiline("UIDL").splitlines() == [uids[0], b"2 " + uids[2].split()[1]]


def test_dele_then_dropped_connection_keeps_the_message(server: SandboxServer) -> None:
    with Client(server.address) as client:
        assert client.login().startswith(b"+OK")
        assert client.command("DELE 1").startswith(b"+OK")
    with login_when_unlocked(server.address) as client:
        assert client.command("STAT") == b"+OK 3 170"
    assert server.messages == SMALL


def test_second_session_is_locked_out(server: SandboxServer) -> None:
    with Client(server.address) as first, Client(server.address) as second:
        assert first.login().startswith(b"+OK")
        assert second.login() == b"-ERR [IN-USE] mailbox locked by another session"
        assert second.command(f"AUTH PLAIN {plain('', 'sandbox', 'sandbox')}").startswith(
            b"-ERR [IN-USE]"
        )
        assert first.command("QUIT").startswith(b"+OK")
        assert second.login().startswith(b"+OK")


def test_pipelined_commands_are_answered_in_order(server: SandboxServer) -> None:
    with Client(server.address) as client:
        client.send(b"USER sandbox\r\nPASS sandbox\r\nSTAT\r\nLIST 1\r\nUIDL 1\r\n")
        replies = [client.line() for _ in range(5)]
        assert replies[2:4] == [b"+OK 3 170", b"+OK 1 74"]
        assert re.fullmatch(rb"\+OK 1 [0-9a-f]{32}", replies[4])
        client.send(b"TOP 2 0\r\nNOOP\r\nRETR 2\r\nLAST\r\n")
        assert client.line().startswith(b"+OK") and client.body() == b"Subject: dots\r\n\r\n"
        assert client.line() == b"+OK"
        assert client.line().startswith(b"+OK") and client.body() == DOTTED
        assert client.line() == b"+OK 2"


def test_dot_stuffing_round_trips(server: SandboxServer) -> None:
    with Client(server.address) as client:
        assert client.login().startswith(b"+OK")
        client.send(b"RETR 2\r\n")
        wire = b"".join(client.line() + b"\r\n" for _ in range(8))
        assert wire.endswith(b"\r\n..leading dot\r\n...two dots\r\n..\r\nend\r\n.\r\n")
    connection = pop3(server)
    try:
        connection.user("sandbox")
        connection.pass_("sandbox")
        _, lines, _ = connection.retr(2)
        assert b"".join(line + b"\r\n" for line in lines) == DOTTED
    finally:
        connection.quit()


def test_sample_dotted_message_round_trips(sample_server: SandboxServer) -> None:
    dotted = [n for n, m in enumerate(SAMPLE, 1) if b"\r\n.\r\n" in m]
    assert len(dotted) == 1
    with Client(sample_server.address) as client:
        assert client.login().startswith(b"+OK")
        assert client.multiline(f"RETR {dotted[0]}") == SAMPLE[dotted[0] - 1]


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        ("XYZZY", b"-ERR unknown command"),
        ("", b"-ERR unknown command"),
        ("USER sandbox", b"-ERR USER is not allowed in the TRANSACTION state"),
        ("RETR", b"-ERR usage: RETR msg"),
        ("RETR 1 2", b"-ERR usage: RETR msg"),
        ("RETR x", b"-ERR invalid message number"),
        ("RETR -1", b"-ERR invalid message number"),
        ("RETR 0", b"-ERR no such message"),
        ("RETR 4", b"-ERR no such message"),
        ("DELE 99999999999999999999", b"-ERR no such message"),
        ("TOP 1", b"-ERR usage: TOP msg lines"),
        ("TOP 1 -1", b"-ERR invalid number of lines"),
        ("LIST 1 2", b"-ERR usage: LIST [msg]"),
        ("STAT 1", b"-ERR usage: STAT"),
        ("NOOP", b"+OK"),
        ("LAST", b"+OK 0"),
        ("X" * 300, b"-ERR line too long (the limit is 255 octets)"),
    ],
)
def test_errors_in_transaction(server: SandboxServer, command: str, reply: bytes) -> None:
    with Client(server.address) as client:
        assert client.login().startswith(b"+OK")
        assert client.command(command) == reply
        assert client.command("STAT") == b"+OK 3 170"  # the session carries on


def test_commands_not_allowed_before_login(server: SandboxServer) -> None:
    with Client(server.address) as client:
        for command in ("STAT", "LIST", "RETR 1", "DELE 1", "NOOP", "RSET"):
            keyword = command.split()[0]
            expected = f"-ERR {keyword} is not allowed in the AUTHORIZATION state".encode()
            assert client.command(command) == expected
        assert client.command("QUIT") == b"+OK popctl sandbox signing off"
        assert client.file.read() == b""  # the server closed the connection


def test_hostile_bytes_do_not_crash_the_handler(server: SandboxServer) -> None:
    with Client(server.address) as client:
        client.send(b"\xff\xfe\x00\r\nUSER \xc3\x28\r\nPASS \xff\r\n")
        assert client.line() == b"-ERR unknown command"
        assert client.line() == b"+OK send PASS"
        assert client.line().startswith(b"-ERR [AUTH]")
        client.send(b"A" * 100_000 + b"\r\n")  # an endless line is discarded, not buffered
        assert client.line().startswith(b"-ERR line too long")
        assert client.login().startswith(b"+OK")


def test_idle_session_is_logged_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox_server, "IDLE_TIMEOUT", 0.2)
    with SandboxServer(SMALL, tls=False) as server, Client(server.address) as client:
        assert client.login().startswith(b"+OK")
        assert client.command("DELE 1").startswith(b"+OK")
        assert client.line() == b"-ERR autologout: idle for too long"
        assert client.file.read() == b""
        with login_when_unlocked(server.address) as again:
            assert again.command("STAT") == b"+OK 3 170"


# --- lifecycle -------------------------------------------------------------------------------


def test_stop_closes_connections_and_removes_the_certificate() -> None:
    server = SandboxServer(SMALL).start()
    ca_file = server.ca_file
    assert ca_file is not None and os.path.exists(ca_file)
    with Client(server.address) as client:
        assert client.login().startswith(b"+OK")
        assert client.command("DELE 1").startswith(b"+OK")
        server.stop()
        assert client.file.read() == b""
    assert not os.path.exists(ca_file)
    assert server.messages == SMALL  # the dropped session's deletion was rolled back
    with pytest.raises(RuntimeError):
        _ = server.address
    server.stop()  # idempotent


def test_ipv6_loopback() -> None:
    try:
        server = SandboxServer(SMALL, host="::1", tls=False).start()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with server, Client(server.address) as client:
        assert client.login().startswith(b"+OK")


def test_python_m_popctl_sandbox_serves_until_ctrl_c() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "popctl.sandbox", "--no-tls"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        match = re.fullmatch(r"popctl sandbox POP3 server on 127\.0\.0\.1 port (\d+)\n", first)
        assert match, first
        assert process.stdout.readline() == "user: sandbox  password: sandbox\n"
        with Client(("127.0.0.1", int(match.group(1)))) as client:
            assert client.login().startswith(b"+OK sandbox's maildrop has 50 messages")
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=5) == 0
    finally:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


def test_ctrl_c_handled_on_a_connection_thread_still_stops_the_sandbox() -> None:
    """The kernel may run a process's SIGINT handler on any thread; a Ctrl-C the C-level handler
    took on a connection's thread must still wake the main thread asleep in select(). Sent to
    that thread's id, the signal is delivered there (Linux prefers the thread named)."""
    if not os.path.isdir(f"/proc/{os.getpid()}/task"):
        pytest.skip("needs /proc/PID/task (Linux) to name a thread of the server")
    process = subprocess.Popen(
        [sys.executable, "-m", "popctl.sandbox", "--no-tls"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        match = re.search(r"port (\d+)", process.stdout.readline())
        assert match
        with Client(("127.0.0.1", int(match.group(1)))) as client:
            assert client.login().startswith(b"+OK")  # its thread lives while we are logged in
            threads = set(map(int, os.listdir(f"/proc/{process.pid}/task"))) - {process.pid}
            assert threads
            os.kill(min(threads), signal.SIGINT)
            # Generous, for a loaded machine: a stuck server never exits by itself.
            assert process.wait(timeout=30) == 0
        assert process.communicate()[1] == ""  # no traceback, nothing logged
    finally:
        process.kill()
        process.communicate()


def test_ctrl_c_while_the_sandbox_starts_is_a_clean_exit(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(seed: int) -> list[bytes]:
        raise KeyboardInterrupt

    monkeypatch.setattr(sandbox_command, "sample_mailbox", interrupted)
    try:
        status = sandbox_command.main(["--no-tls"])
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C while starting escaped main(): a traceback")
    assert status == 130
    assert capsys.readouterr() == ("", "")


# --- the sample mailbox ----------------------------------------------------------------------


def headers(message: bytes) -> email.message.EmailMessage:
    """The parsed header block alone: parsing multi-megabyte bodies would slow the tests."""
    head = message.partition(b"\r\n\r\n")[0] + b"\r\n\r\n"
    parsed = email.message_from_bytes(head, policy=email.policy.default)
    assert isinstance(parsed, email.message.EmailMessage)
    return parsed


def test_sample_mailbox_shape() -> None:
    assert 45 <= len(SAMPLE) <= 55
    sizes = [len(message) for message in SAMPLE]
    big = [size for size in sizes if size > MIB]
    assert len(big) == 3 and max(big) < 5 * MIB
    assert 3000 <= statistics.median(sizes) <= 8000
    assert all(size < 100_000 for size in sizes if size <= MIB)
    for message in SAMPLE:
        assert message.endswith(b"\r\n") and b"\n" not in message.replace(b"\r\n", b"")
        parsed = headers(message)
        for header in ("From", "To", "Subject", "Date", "Message-ID", "MIME-Version"):
            assert parsed[header], header
        if not message.isascii():
            assert parsed["Content-Transfer-Encoding"] == "8bit"
    assert sum(not message.isascii() for message in SAMPLE) == 1
    lines = [line for message in SAMPLE for line in message.split(b"\r\n")]
    assert any(line.startswith(b".") for line in lines)
    assert max(map(len, lines)) > 3000
    assert any(b"\r\n\t" in message.partition(b"\r\n\r\n")[0] for message in SAMPLE)


def test_sample_mailbox_dates_span_sixty_days() -> None:
    dates = [headers(message)["Date"].datetime for message in SAMPLE]
    assert dates == sorted(dates)
    assert all(REFERENCE - timedelta(days=61) < date < REFERENCE for date in dates)
    older = sum(date < REFERENCE - timedelta(days=30) for date in dates)
    assert 15 <= older <= len(dates) - 15


def test_sample_mailbox_is_deterministic() -> None:
    assert sample_mailbox(reference=REFERENCE) == SAMPLE  # its cost: benchmarks/micro.py


def test_sample_mailbox_counts_back_from_midnight_today() -> None:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    newest = headers(sample_mailbox()[-1])["Date"].datetime
    assert today - timedelta(days=3) < newest < today


def test_sample_mailbox_encoded_subjects_decode() -> None:
    raw = [
        email.message_from_bytes(message.partition(b"\r\n\r\n")[0])["Subject"] for message in SAMPLE
    ]
    modern = [str(headers(message)["Subject"]) for message in SAMPLE]
    legacy = [str(make_header(decode_header(subject))) for subject in raw]
    assert legacy == modern
    for expected in (
        "Grüße aus München",
        "会議の議事録（第3四半期）",  # noqa: RUF001
        "🎉 Your order has shipped!",
        "Re: Résumé für die Stelle als Entwicklerin",
        "Einladung: Jahresabschlussfeier im Büro – bitte bis Freitag zusagen",  # noqa: RUF001
    ):
        assert expected in modern
    encodings = {m.group(1).upper() for s in raw for m in re.finditer(r"=\?UTF-8\?([QB])\?", s)}
    assert encodings == {"Q", "B"}
    assert any("\n" in subject for subject in raw)  # a folded encoded subject
    senders = [str(headers(message)["From"]) for message in SAMPLE]
    assert any("Jürgen Müller" in sender for sender in senders)
