"""Tests of the private Dovecot fixture itself, using only poplib and ssl."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import poplib
import re
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.support.dovecot_server import DovecotServer

pytestmark = pytest.mark.dovecot

HOST = "127.0.0.1"


class _POP3(poplib.POP3):
    """poplib.POP3 to 127.0.0.1 whose stls() verifies the certificate for ``tls_name``."""

    def __init__(self, port: int, tls_name: str = "localhost") -> None:
        super().__init__(HOST, port, timeout=5)
        self.host = tls_name  # poplib.stls() passes self.host as server_hostname


class _POP3S(poplib.POP3_SSL):
    """Implicit TLS to 127.0.0.1, verifying the certificate for ``tls_name``."""

    def __init__(self, port: int, context: ssl.SSLContext, tls_name: str = "localhost") -> None:
        self._tls_context = context
        self._tls_name = tls_name
        super().__init__(HOST, port, timeout=5, context=context)

    def _create_socket(self, timeout: float) -> socket.socket:
        sock = socket.create_connection((HOST, self.port), timeout)
        return self._tls_context.wrap_socket(sock, server_hostname=self._tls_name)


@contextmanager
def _session(client: poplib.POP3) -> Iterator[poplib.POP3]:
    try:
        yield client
    finally:
        try:
            client.quit()
        except (poplib.error_proto, OSError):
            client.close()


def _shortcmd(client: poplib.POP3, line: str) -> bytes:
    return client._shortcmd(line)  # type: ignore[attr-defined,no-any-return]


def _capa(client: poplib.POP3) -> list[str]:
    lines: list[bytes] = client._longcmd("CAPA")[1]  # type: ignore[attr-defined]
    return [line.decode() for line in lines]


def _crlf_size(message: bytes) -> int:
    return len(message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))


def test_greeting_and_capa_on_plain_port(dovecot: DovecotServer) -> None:
    with _session(_POP3(dovecot.port)) as pop:
        assert re.fullmatch(rb"\+OK .* <[^<>@]+@[^<>]+>", pop.getwelcome())  # APOP timestamp
        capa = _capa(pop)
    for word in ("PIPELINING", "TOP", "UIDL", "STLS", "USER", "RESP-CODES", "AUTH-RESP-CODE"):
        assert word in capa
    sasl = next(line for line in capa if line.startswith("SASL "))
    assert sasl.split()[1:] == ["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256"]


def test_stls_then_login_with_utf8_password(dovecot_mailbox: DovecotServer) -> None:
    server = dovecot_mailbox
    context = ssl.create_default_context(cafile=server.ca_file)
    with _session(_POP3(server.port, tls_name="localhost")) as pop:
        pop.stls(context)
        assert "STLS" not in _capa(pop)
        pop.user("alice")
        assert pop.pass_(server.users["alice"]).startswith(b"+OK")
        assert pop.stat() == (0, 0)
        assert "PIPELINING" in _capa(pop)


def test_implicit_tls_port(dovecot: DovecotServer) -> None:
    context = ssl.create_default_context(cafile=dovecot.ca_file)
    with _session(_POP3S(dovecot.tls_port, context)) as pop:
        assert isinstance(pop.sock, ssl.SSLSocket)
        assert pop.sock.version() in ("TLSv1.2", "TLSv1.3")
        assert "STLS" not in _capa(pop)
        pop.user("bob")
        assert pop.pass_("bob-secret").startswith(b"+OK")


def test_deliver_then_stat_list_and_order(dovecot_mailbox: DovecotServer) -> None:
    server = dovecot_mailbox
    messages = [
        b"Subject: one\n\nfirst\n",
        b"Subject: two\r\n\r\nsecond, CRLF\r\n",
        b"Subject: three\n\n" + b"x" * 1000 + b"\n",
    ]
    for message in messages:
        server.deliver("alice", message)
    with _session(_POP3(server.port)) as pop:
        pop.user("alice")
        pop.pass_(server.users["alice"])
        count, total = pop.stat()
        assert count == 3
        listing = pop.list()[1]
        assert listing == [f"{i} {_crlf_size(m)}".encode() for i, m in enumerate(messages, 1)]
        assert total == sum(_crlf_size(m) for m in messages)
        assert pop.retr(2)[1] == [b"Subject: two", b"", b"second, CRLF"]


def test_reset_empties_mailbox_and_changes_uidls(dovecot_mailbox: DovecotServer) -> None:
    server = dovecot_mailbox

    def uidls() -> list[bytes]:
        with _session(_POP3(server.port)) as pop:
            pop.user("alice")
            pop.pass_(server.users["alice"])
            return pop.uidl()[1]

    server.deliver("alice", b"Subject: a\n\nA\n")
    before = uidls()
    assert len(before) == 1
    server.reset("alice")
    assert uidls() == []
    assert sorted(p.name for p in server.maildir("alice").iterdir() if p.is_dir()) == [
        "cur",
        "new",
        "tmp",
    ]
    server.deliver("alice", b"Subject: b\n\nB\n")
    after = uidls()
    assert len(after) == 1 and after != before  # new UIDVALIDITY after a reset


def test_certificate_is_not_valid_for_127_0_0_1(dovecot: DovecotServer) -> None:
    context = ssl.create_default_context(cafile=dovecot.ca_file)
    with pytest.raises(ssl.SSLCertVerificationError):
        _POP3S(dovecot.tls_port, context, tls_name="127.0.0.1")
    pop = _POP3(dovecot.port, tls_name="127.0.0.1")
    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            pop.stls(context)
    finally:
        with contextlib.suppress(OSError):  # the failed wrap detached the socket
            pop.close()


def test_untrusted_port_requires_tls_for_plaintext_auth(dovecot: DovecotServer) -> None:
    with _session(_POP3(dovecot.untrusted_port)) as pop:
        capa = _capa(pop)
        assert "USER" not in capa and "STLS" in capa
        assert "SASL CRAM-MD5 SCRAM-SHA-256" in capa  # no PLAIN, no LOGIN
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\] Plaintext authentication"):
            pop.user("bob")
        pop.stls(dovecot.ssl_context())
        assert "USER" in _capa(pop)
        pop.user("bob")
        assert pop.pass_("bob-secret").startswith(b"+OK")


def test_apop_and_cram_md5_with_plain_passwords(dovecot: DovecotServer) -> None:
    password = dovecot.users["carol"]  # contains a space
    with _session(_POP3(dovecot.port)) as pop:
        assert pop.apop("carol", password).startswith(b"+OK")
    with _session(_POP3(dovecot.port)) as pop:
        challenge = _shortcmd(pop, "AUTH CRAM-MD5")
        assert challenge.startswith(b"+ ")
        digest = hmac.new(
            password.encode(), base64.b64decode(challenge[2:]), hashlib.md5
        ).hexdigest()
        answer = base64.b64encode(f"carol {digest}".encode()).decode()
        assert _shortcmd(pop, answer).startswith(b"+OK")


def test_failed_login_is_answered_quickly(dovecot: DovecotServer) -> None:
    # No anvil auth penalty (it would add 2 s or more to every later failure).
    assert not (dovecot.root / "run" / "anvil-auth-penalty").exists()
    with _session(_POP3(dovecot.port)) as pop:
        pop.user("bob")
        started = time.monotonic()
        with pytest.raises(poplib.error_proto, match=r"^b'-ERR \[AUTH\] "):
            pop.pass_("wrong password")
        assert time.monotonic() - started < 1.5  # Dovecot's default delay is 2 s
