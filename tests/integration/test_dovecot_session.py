"""The Session against a real, private Dovecot: every method, both TLS modes, every mechanism."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap

import pytest

from popctl.errors import (
    AuthenticationError,
    InsecureAuthError,
    NoSuchMessageError,
    TLSError,
    UsageError,
)
from popctl.models import Credentials, Endpoint, TLSMode
from popctl.session import Session
from tests.support.dovecot_server import DovecotServer

pytestmark = pytest.mark.dovecot

USER = "alice"


def message(n: int, body_lines: int = 3, extra: bytes = b"") -> bytes:
    body = b"".join(b"line %d of message %d\r\n" % (i, n) for i in range(body_lines))
    return (b"From: Sender %d <s%d@example.org>\r\nTo: alice@example.org\r\n" % (n, n)
            + b"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe_Nr=2E_" + str(n).encode() + b"?=\r\n"
            b"Date: Thu, 26 Nov 2026 10:00:00 +0000\r\n\r\n" + body + extra)


def starttls(server: DovecotServer, **kw: object) -> Endpoint:
    return Endpoint("localhost", server.port, TLSMode.STARTTLS, ca_file=server.ca_file,
                    timeout=10, **kw)  # type: ignore[arg-type]


def implicit(server: DovecotServer, **kw: object) -> Endpoint:
    return Endpoint("localhost", server.tls_port, TLSMode.IMPLICIT, ca_file=server.ca_file,
                    timeout=10, **kw)  # type: ignore[arg-type]


def creds(server: DovecotServer, user: str = USER, **kw: object) -> Credentials:
    return Credentials(user, server.users[user], **kw)  # type: ignore[arg-type]


@pytest.fixture
def filled(dovecot_mailbox: DovecotServer) -> DovecotServer:
    for n in range(1, 6):
        dovecot_mailbox.deliver(USER, message(n))
    return dovecot_mailbox


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
def test_every_session_method(filled: DovecotServer, tls: str) -> None:
    endpoint = starttls(filled) if tls == "starttls" else implicit(filled)
    with Session.connect(endpoint) as session:
        assert session.tls is not None and session.tls.verified
        assert session.tls.version in ("TLSv1.2", "TLSv1.3")
        session.login(creds(filled))
        caps = session.capa()
        assert caps.pipelining and "TOP" in caps and "UIDL" in caps
        stat = session.stat()
        assert stat.count == 5
        sizes = session.list()
        assert [m.number for m in sizes] == [1, 2, 3, 4, 5]
        assert sum(m.size for m in sizes) == stat.size
        assert session.list([2, 4]) == [sizes[1], sizes[3]]
        uids = session.uidl()
        assert len({u.uid for u in uids}) == 5
        assert session.uidl([3]) == [uids[2]]
        scanned, scanned_uids = session.scan()
        assert scanned == sizes and scanned_uids == uids
        sink = io.BytesIO()
        octets = session.retr(2, sink)
        assert sink.getvalue() == message(2)
        assert octets == sizes[1].size == len(message(2))
        top = io.BytesIO()
        session.top(3, 1, top)
        head = message(3).split(b"\r\n\r\n")[0]
        assert top.getvalue() == head + b"\r\n\r\nline 0 of message 3\r\n"
        headers = list(session.headers([1, 5]))
        assert [h.number for h in headers] == [1, 5]
        assert headers[1].data == message(5).split(b"\r\n\r\n")[0] + b"\r\n\r\n"
        session.noop()
        assert session.dele([1, 2]) == [1, 2]
        with pytest.raises(NoSuchMessageError):
            session.retr(1, io.BytesIO())
        session.rset()
        assert session.stat().count == 5  # RSET undid the marks
        session.dele(5)
    with Session.connect(endpoint) as session:
        session.login(creds(filled))
        assert session.stat().count == 4  # QUIT committed DELE 5 only


@pytest.mark.parametrize("mechanism", ["USER", "PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256",
                                       "APOP"])
def test_every_mechanism_dovecot_offers(dovecot_mailbox: DovecotServer, mechanism: str) -> None:
    ascii_only = mechanism in ("USER", "APOP")  # RFC 6856: alice's password is not ASCII
    for user in ("bob", "carol") if ascii_only else ("alice", "bob", "carol"):
        with Session.connect(starttls(dovecot_mailbox)) as session:
            used = session.login(creds(dovecot_mailbox, user, mechanism=mechanism))
            assert used == mechanism
            assert session.stat().count >= 0


def test_utf8_password_refused_for_user_pass(dovecot: DovecotServer) -> None:
    """Dovecot does not announce "UTF8 USER", so a non-ASCII password cannot go in PASS."""
    with pytest.raises(UsageError, match="UTF8 USER"), \
            Session.connect(starttls(dovecot)) as session:
        session.login(creds(dovecot, mechanism="USER"))


def test_auto_picks_scram_over_tls(dovecot_mailbox: DovecotServer) -> None:
    with Session.connect(implicit(dovecot_mailbox)) as session:
        assert session.login(creds(dovecot_mailbox)) == "SCRAM-SHA-256"


@pytest.mark.parametrize("mechanism", ["USER", "SCRAM-SHA-256"])
def test_wrong_password(dovecot_mailbox: DovecotServer, mechanism: str) -> None:
    bad = Credentials(USER, "not-the-password", mechanism=mechanism)
    with pytest.raises(AuthenticationError) as info, \
            Session.connect(starttls(dovecot_mailbox)) as session:
        session.login(bad)
    assert info.value.exit_code == 3
    assert "not-the-password" not in str(info.value)


@pytest.mark.parametrize("pipelining", [True, False])
def test_batches_pipelined_and_lockstep(dovecot_mailbox: DovecotServer, pipelining: bool) -> None:
    for n in range(1, 151):
        dovecot_mailbox.deliver(USER, message(n, body_lines=n % 7))
    trace: list[tuple[str, str]] = []
    with Session.connect(implicit(dovecot_mailbox), pipelining=pipelining,
                         trace=lambda d, line: trace.append((d, line))) as session:
        session.login(creds(dovecot_mailbox, mechanism="PLAIN"))
        got = list(session.headers(range(1, 151)))
        assert [h.number for h in got] == list(range(1, 151))
        assert all(h.data.startswith(b"From: Sender %d " % h.number) for h in got)
        retrieved = {}
        done = list(session.retr_many(range(1, 151),
                                      lambda n: retrieved.setdefault(n, io.BytesIO())))
        assert [d.number for d in done] == list(range(1, 151))
        assert all(retrieved[n].getvalue() == message(n, body_lines=n % 7)
                   for n in range(1, 151))
        assert session.dele(range(1, 151)) == list(range(1, 151))
        session.rset()
    sent = [line for d, line in trace if d == "C"]
    assert sent.count("TOP 1 0") == 1 and sent.count("RETR 150") == 1


def test_retr_many_with_delete(dovecot_mailbox: DovecotServer) -> None:
    for n in range(1, 4):
        dovecot_mailbox.deliver(USER, message(n))
    stored: dict[int, bytes] = {}
    sinks: dict[int, io.BytesIO] = {}
    with Session.connect(implicit(dovecot_mailbox)) as session:
        session.login(creds(dovecot_mailbox))
        done = list(session.retr_many(
            [1, 3], lambda n: sinks.setdefault(n, io.BytesIO()),
            finish=lambda n, sink: stored.__setitem__(n, sinks[n].getvalue()), delete=True))
    assert [(d.number, d.deleted) for d in done] == [(1, True), (3, True)]
    assert stored == {1: message(1), 3: message(3)}
    with Session.connect(implicit(dovecot_mailbox)) as session:
        session.login(creds(dovecot_mailbox))
        assert session.stat().count == 1


def test_error_rolls_back_deletions(dovecot_mailbox: DovecotServer) -> None:
    for n in range(1, 4):
        dovecot_mailbox.deliver(USER, message(n))
    with pytest.raises(RuntimeError), Session.connect(implicit(dovecot_mailbox)) as session:
        session.login(creds(dovecot_mailbox))
        session.dele([1, 2, 3])
        raise RuntimeError("something went wrong after DELE")
    with Session.connect(implicit(dovecot_mailbox)) as session:
        session.login(creds(dovecot_mailbox))
        assert session.stat().count == 3


def test_dot_stuffing_and_long_lines_round_trip(dovecot_mailbox: DovecotServer) -> None:
    body = (b".starts with a dot\r\n..two dots\r\n.\r\n" + b"x" * 5000 + b"\r\n"
            + b"end\r\n")
    raw = message(1, 0, extra=body)
    dovecot_mailbox.deliver(USER, raw)
    with Session.connect(implicit(dovecot_mailbox)) as session:
        session.login(creds(dovecot_mailbox))
        sink = io.BytesIO()
        session.retr(1, sink)
    assert sink.getvalue() == raw


def test_wrong_certificate_stops_before_credentials(dovecot: DovecotServer) -> None:
    endpoint = Endpoint("localhost", dovecot.tls_port, TLSMode.IMPLICIT, timeout=10)
    with pytest.raises(TLSError, match="rejected"):
        Session.connect(endpoint)  # system CAs do not know the test CA


def test_wrong_host_name_stops_before_credentials(dovecot: DovecotServer) -> None:
    endpoint = Endpoint("127.0.0.1", dovecot.tls_port, TLSMode.IMPLICIT,
                        ca_file=dovecot.ca_file, timeout=10)
    with pytest.raises(TLSError, match="rejected"):
        Session.connect(endpoint)
    endpoint = Endpoint("127.0.0.1", dovecot.port, TLSMode.STARTTLS,
                        ca_file=dovecot.ca_file, timeout=10)
    with pytest.raises(TLSError, match="rejected"):
        Session.connect(endpoint)


def test_fingerprint_pinning_against_dovecot(dovecot: DovecotServer) -> None:
    with Session.connect(implicit(dovecot)) as session:
        assert session.tls is not None
        fingerprint = session.tls.cert_sha256
    pinned = Endpoint("127.0.0.1", dovecot.tls_port, TLSMode.IMPLICIT, fingerprint=fingerprint,
                      timeout=10)
    with Session.connect(pinned) as session:
        session.login(creds(dovecot))
        session.noop()


def test_no_credentials_in_clear(dovecot: DovecotServer) -> None:
    endpoint = Endpoint("localhost", dovecot.port, TLSMode.NONE, timeout=10)
    with pytest.raises(InsecureAuthError), Session.connect(endpoint) as session:
        session.login(creds(dovecot))


def test_big_message_streams_in_constant_memory(dovecot_mailbox: DovecotServer,
                                                tmp_path: object) -> None:
    """A 100 MB message through retr(): the child process's peak RSS stays under 60 MB."""
    line = b"y" * 998 + b"\r\n"
    size = 100 * 1024 * 1024
    raw = message(1, 0) + line * (size // len(line))
    dovecot_mailbox.deliver(USER, raw)
    expected = len(raw)
    del raw
    script = textwrap.dedent(f"""
        from popctl.models import Credentials, Endpoint, TLSMode
        from popctl.session import Session

        class Count:
            n = 0
            def write(self, data):
                self.n += len(data)

        ep = Endpoint("localhost", {dovecot_mailbox.tls_port}, TLSMode.IMPLICIT,
                      ca_file={dovecot_mailbox.ca_file!r}, timeout=60)
        sink = Count()
        with Session.connect(ep) as s:
            s.login(Credentials("alice", {dovecot_mailbox.users[USER]!r}))
            s.retr(1, sink)
        # VmHWM: this process's own peak RSS (ru_maxrss may include the parent's at fork)
        hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
        print(sink.n, hwm.split()[1])
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, timeout=120, env={**os.environ}).stdout.split()
    octets, peak_kib = int(out[0]), int(out[1])
    assert octets == expected
    assert peak_kib < 60 * 1024, f"peak RSS {peak_kib} KiB"
