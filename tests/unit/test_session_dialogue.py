"""The Session's exact byte dialogue against the strict scripted server, including faults."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io

import pytest

from popctl import auth
from popctl.errors import (
    AuthenticationError,
    ConnectionClosedError,
    InsecureAuthError,
    MailboxInUseError,
    NetworkTimeoutError,
    NoSuchMessageError,
    RemoteProtocolError,
    TLSError,
)
from popctl.models import Credentials, Endpoint, TLSMode
from popctl.session import MAX_IN_FLIGHT, Lookup, Session
from tests.support.scripted_server import (
    ScriptedServer,
    Step,
    close,
    expect,
    expect_eof,
    expect_line,
    send,
    stall,
    starttls,
)

GREETING = send(b"+OK ready\r\n")
APOP_GREETING = send(b"+OK ready <123.456@test>\r\n")
CAPA_PIPE_REPLY = b"+OK\r\nTOP\r\nUIDL\r\nUSER\r\nPIPELINING\r\n.\r\n"
CAPA_PIPE = [expect(b"CAPA\r\n"), send(CAPA_PIPE_REPLY)]
CAPA_LOCKSTEP = [expect(b"CAPA\r\n"), send(b"+OK\r\nTOP\r\nUIDL\r\nUSER\r\n.\r\n")]
CREDS = Credentials("alice", "s3cret", allow_plaintext=True)


def endpoint(server: ScriptedServer, tls: TLSMode = TLSMode.NONE, **kw: object) -> Endpoint:
    return Endpoint("localhost", server.port, tls, ca_file=server.ca_file, timeout=2.0,
                    connect_timeout=2.0, **kw)  # type: ignore[arg-type]


def test_pipelined_login_stat_quit() -> None:
    script = [GREETING, *CAPA_PIPE,
              # CAPA rides along with USER and PASS: one round trip for the login.
              expect(b"USER alice\r\nPASS s3cret\r\nCAPA\r\n"),
              send(b"+OK\r\n+OK logged in\r\n" + CAPA_PIPE_REPLY),
              expect(b"STAT\r\n"), send(b"+OK 2 320\r\n"),
              expect(b"QUIT\r\n"), send(b"+OK bye\r\n"), expect_eof()]
    with ScriptedServer(script, timeout=2.0) as server:
        with Session.connect(endpoint(server)) as session:
            assert session.login(CREDS) == "USER"
            stat = session.stat()
    server.assert_done()
    assert (stat.count, stat.size) == (2, 320)


def _logged_in_lockstep() -> list[Step]:
    return [GREETING, *CAPA_LOCKSTEP, expect(b"USER alice\r\n"), send(b"+OK\r\n"),
            expect(b"PASS s3cret\r\n"), send(b"+OK\r\n"), *CAPA_LOCKSTEP]


def test_lockstep_login_when_no_pipelining() -> None:
    script = [*_logged_in_lockstep(),
              expect(b"TOP 1 0\r\n"), send(b"+OK\r\nA: 1\r\n\r\n.\r\n"),
              expect(b"TOP 2 0\r\n"), send(b"+OK\r\nA: 2\r\n\r\n.\r\n"),
              expect(b"QUIT\r\n"), send(b"+OK\r\n"), expect_eof()]
    with ScriptedServer(script, timeout=2.0) as server:
        with Session.connect(endpoint(server)) as session:
            session.login(CREDS)
            got = [h.data for h in session.headers([1, 2])]
    server.assert_done()
    assert got == [b"A: 1\r\n\r\n", b"A: 2\r\n\r\n"]


def _logged_in_pipelined() -> list[Step]:
    return [GREETING, *CAPA_PIPE, expect(b"USER alice\r\nPASS s3cret\r\nCAPA\r\n"),
            send(b"+OK\r\n+OK\r\n" + CAPA_PIPE_REPLY)]


def test_headers_are_pipelined_in_windows() -> None:
    count = MAX_IN_FLIGHT + 30
    first = b"".join(b"TOP %d 0\r\n" % n for n in range(1, MAX_IN_FLIGHT + 1))
    replies_a = b"".join(b"+OK\r\nSubject: %d\r\n\r\n.\r\n" % n
                         for n in range(1, MAX_IN_FLIGHT // 2 + 1))
    # After half the window is answered, the client tops the window up with the rest.
    rest = b"".join(b"TOP %d 0\r\n" % n for n in range(MAX_IN_FLIGHT + 1, count + 1))
    replies_b = b"".join(b"+OK\r\nSubject: %d\r\n\r\n.\r\n" % n
                         for n in range(MAX_IN_FLIGHT // 2 + 1, count + 1))
    script = [*_logged_in_pipelined(), expect(first), send(replies_a), expect(rest),
              send(replies_b), expect(b"QUIT\r\n"), send(b"+OK\r\n"), expect_eof()]
    with ScriptedServer(script, timeout=2.0) as server:
        with Session.connect(endpoint(server)) as session:
            session.login(CREDS)
            got = [h.number for h in session.headers(range(1, count + 1))]
    server.assert_done()
    assert got == list(range(1, count + 1))


def test_a_batch_of_headers_keeps_each_reply_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    # One collector serves the whole batch: a block cut at MAX_HEADER_BYTES, a stuffed one
    # (read by events, not at once) and an empty one leave nothing behind for the next reply.
    monkeypatch.setattr("popctl.session.MAX_HEADER_BYTES", 16)
    replies = [b"+OK\r\nA: 1\r\n\r\n.\r\n",
               b"+OK\r\nSubject: far too long for the limit\r\n\r\n.\r\n",
               b"+OK\r\n..B: 3\r\n\r\n.\r\n", b"+OK\r\n.\r\n", b"+OK\r\nC: 5\r\n.\r\n"]
    script = [*_logged_in_pipelined(),
              expect(b"".join(b"TOP %d 0\r\n" % n for n in range(1, 6))),
              send(b"".join(replies[:3])), send(replies[3][:7]), send(replies[3][7:] + replies[4]),
              expect(b"QUIT\r\n"), send(b"+OK\r\n"), expect_eof()]
    with ScriptedServer(script, timeout=2.0) as server:
        with Session.connect(endpoint(server)) as session:
            session.login(CREDS)
            got = [tuple(h) for h in session.headers(range(1, 6))]
    server.assert_done()
    assert got == [(1, b"A: 1\r\n\r\n", False), (2, b"Subject: far too", True),
                   (3, b".B: 3\r\n\r\n", False), (4, b"", False), (5, b"C: 5\r\n", False)]


def test_scan_sends_list_and_uidl_together() -> None:
    script = [*_logged_in_pipelined(), expect(b"UIDL\r\nLIST\r\n"),
              send(b"+OK\r\n1 aaa\r\n2 bbb\r\n.\r\n+OK\r\n1 100\r\n2 200\r\n.\r\n"),
              expect(b"QUIT\r\n"), send(b"+OK\r\n"), expect_eof()]
    with ScriptedServer(script, timeout=2.0) as server:
        with Session.connect(endpoint(server)) as session:
            session.login(CREDS)
            sizes, uids = session.scan()
    server.assert_done()
    assert [(m.number, m.size) for m in sizes] == [(1, 100), (2, 200)]
    assert uids is not None and [u.uid for u in uids] == ["aaa", "bbb"]


SCAN_REPLY = b"+OK\r\n1 aaa\r\n2 bbb\r\n.\r\n+OK\r\n1 100\r\n2 200\r\n.\r\n"


def test_scan_rides_with_the_pipelined_login() -> None:
    script = [GREETING, *CAPA_PIPE,
              expect(b"USER alice\r\nPASS s3cret\r\nCAPA\r\nUIDL\r\nLIST\r\n"),
              send(b"+OK\r\n+OK\r\n" + CAPA_PIPE_REPLY + SCAN_REPLY),
              expect(b"UIDL\r\nLIST\r\n"), send(SCAN_REPLY.replace(b"200", b"201")),
              expect(b"QUIT\r\n"), expect_eof()]
    with ScriptedServer(script, timeout=2.0) as server:
        with Session.connect(endpoint(server)) as session:
            session.login(CREDS, prefetch="scan")
            first = session.scan()  # from the login's round trip
            second = session.scan()  # used once: asked again
    server.assert_done()
    assert [(m.number, m.size) for m in first[0]] == [(1, 100), (2, 200)]
    assert first[1] is not None and [u.uid for u in first[1]] == ["aaa", "bbb"]
    assert [m.size for m in second[0]] == [100, 201]


def _sizes_scanned_with_the_login(script: list[Step], mechanism: str) -> list[int]:
    """Log in as alice with ``mechanism`` and the listing riding along; the sizes scanned."""
    creds = Credentials("alice", "s3cret", mechanism=mechanism, allow_plaintext=True)
    with ScriptedServer(script, timeout=2.0) as server:
        with Session.connect(endpoint(server)) as session:
            session.login(creds, prefetch="scan")
            sizes, _ = session.scan()
    server.assert_done()
    return [m.size for m in sizes]


def test_scan_with_the_login_is_refused_with_the_login() -> None:
    script = [GREETING, *CAPA_PIPE,
              expect(b"USER alice\r\nPASS s3cret\r\nCAPA\r\nUIDL\r\nLIST\r\n"),
              send(b"+OK\r\n-ERR [AUTH] wrong password\r\n" + CAPA_PIPE_REPLY
                   + b"-ERR log in first\r\n-ERR log in first\r\n"), expect_eof()]
    with ScriptedServer(script, timeout=2.0) as server:
        with pytest.raises(AuthenticationError, match="wrong password"):
            with Session.connect(endpoint(server)) as session:
                session.login(CREDS, prefetch="scan")
    server.assert_done()
    assert b"QUIT" not in server.received


def test_scan_with_a_sasl_login_rides_with_capa() -> None:
    plain = base64.b64encode(b"\0alice\0s3cret")
    caps = b"+OK\r\nUIDL\r\nPIPELINING\r\nSASL PLAIN\r\n.\r\n"
    # All in one write: PLAIN's initial response is its last message (before: CAPA, UIDL
    # and LIST waited for the +OK, a round trip more).
    script = [GREETING, expect(b"CAPA\r\n"), send(caps),
              expect(b"AUTH PLAIN " + plain + b"\r\nCAPA\r\nUIDL\r\nLIST\r\n"),
              send(b"+OK\r\n" + caps + SCAN_REPLY),
              expect(b"QUIT\r\n"), expect_eof()]
    assert _sizes_scanned_with_the_login(script, "PLAIN") == [100, 200]


def test_scan_without_pipelining_waits_for_each_reply() -> None:
    # CAPA without UIDL: its -ERR means "not implemented" (one that CAPA announces is a failure)
    capa = [expect(b"CAPA\r\n"), send(b"+OK\r\nTOP\r\nUSER\r\n.\r\n")]
    script = [GREETING, *capa, expect(b"USER alice\r\n"), send(b"+OK\r\n"),
              expect(b"PASS s3cret\r\n"), send(b"+OK\r\n"), *capa,
              expect(b"UIDL\r\n"), send(b"-ERR no UIDL here\r\n"),
              expect(b"LIST\r\n"), send(b"+OK\r\n1 100\r\n.\r\n"),
              expect(b"QUIT\r\n"), expect_eof()]
    with ScriptedServer(script, timeout=2.0) as server:
        with Session.connect(endpoint(server)) as session:
            session.login(CREDS, prefetch="scan")
            sizes, uids = session.scan()
    server.assert_done()
    assert [m.size for m in sizes] == [100] and uids is None


def test_a_deletion_makes_the_login_scan_stale() -> None:
    script = [GREETING, *CAPA_PIPE,
              expect(b"USER alice\r\nPASS s3cret\r\nCAPA\r\nUIDL\r\nLIST\r\n"),
              send(b"+OK\r\n+OK\r\n" + CAPA_PIPE_REPLY + SCAN_REPLY),
              expect(b"DELE 1\r\n"), send(b"+OK\r\n"),
              expect(b"UIDL\r\nLIST\r\n"),
              send(b"+OK\r\n2 bbb\r\n.\r\n+OK\r\n2 200\r\n.\r\n"),
              expect(b"RSET\r\n"), send(b"+OK\r\n"), expect(b"QUIT\r\n"), expect_eof()]
    with ScriptedServer(script, timeout=2.0) as server:
        with Session.connect(endpoint(server)) as session:
            session.login(CREDS, prefetch="scan")
            session.dele(1)
            sizes, _ = session.scan()
            session.rset()
    server.assert_done()
    assert [m.number for m in sizes] == [2]


def test_headers_with_delete_share_one_window() -> None:
    script = [*_logged_in_pipelined(),
              expect(b"DELE 3\r\nTOP 1 0\r\nDELE 1\r\nTOP 2 0\r\n"),
              send(b"+OK\r\n+OK\r\nA: 1\r\n\r\n.\r\n+OK\r\n+OK\r\nA: 2\r\n\r\n.\r\n"),
              expect(b"QUIT\r\n"), send(b"+OK\r\n"), expect_eof()]
    with ScriptedServer(script, timeout=2.0) as server:
        with Session.connect(endpoint(server)) as session:
            session.login(CREDS)
            got = [h.data for h in session.headers([1, 2], delete=[1, 3])]
    server.assert_done()
    assert got == [b"A: 1\r\n\r\n", b"A: 2\r\n\r\n"]


def test_no_quit_after_a_failure_so_deletions_roll_back() -> None:
    script = [*_logged_in_pipelined(), expect(b"DELE 1\r\nDELE 2\r\n"),
              send(b"+OK marked\r\n-ERR no such message\r\n"), expect_eof()]
    with ScriptedServer(script, timeout=2.0) as server:
        with pytest.raises(NoSuchMessageError, match="DELE 2"):
            with Session.connect(endpoint(server)) as session:
                session.login(CREDS)
                session.dele([1, 2])
    server.assert_done()
    assert b"QUIT" not in server.received


def test_connection_drop_mid_retr_is_reported_without_quit() -> None:
    script = [*_logged_in_pipelined(), expect(b"RETR 1\r\n"), send(b"+OK\r\npartial line"),
              close()]
    sink = io.BytesIO()
    with ScriptedServer(script, timeout=2.0) as server:
        with pytest.raises(ConnectionClosedError, match="middle of the reply to RETR"):
            with Session.connect(endpoint(server)) as session:
                session.login(CREDS)
                session.retr(1, sink)
    assert b"QUIT" not in server.received


def test_read_timeout() -> None:
    script = [*_logged_in_pipelined(), expect(b"STAT\r\n"), stall(2.0)]
    with ScriptedServer(script, timeout=3.0) as server:
        ep = Endpoint("localhost", server.port, TLSMode.NONE, timeout=0.3)
        with pytest.raises(NetworkTimeoutError, match="read timeout"):
            with Session.connect(ep) as session:
                session.login(CREDS)
                session.stat()
    assert b"QUIT" not in server.received


def test_in_use_on_login() -> None:
    script = [GREETING, *CAPA_LOCKSTEP, expect(b"USER alice\r\n"), send(b"+OK\r\n"),
              expect(b"PASS s3cret\r\n"), send(b"-ERR [IN-USE] mailbox locked\r\n"), expect_eof()]
    with ScriptedServer(script, timeout=2.0) as server:
        with pytest.raises(MailboxInUseError, match="IN-USE"), \
                Session.connect(endpoint(server)) as session:
            session.login(CREDS)
    server.assert_done()


def test_bad_password() -> None:
    script = [GREETING, *CAPA_LOCKSTEP, expect(b"USER alice\r\n"), send(b"+OK\r\n"),
              expect(b"PASS s3cret\r\n"), send(b"-ERR [AUTH] invalid\r\n"), expect_eof()]
    with ScriptedServer(script, timeout=2.0) as server:
        with pytest.raises(AuthenticationError) as info, \
                Session.connect(endpoint(server)) as session:
            session.login(CREDS)
    server.assert_done()
    assert info.value.exit_code == 3
    assert "s3cret" not in str(info.value)


def test_credentials_refused_in_clear_unless_allowed() -> None:
    script = [GREETING, *CAPA_LOCKSTEP, expect_eof()]
    with ScriptedServer(script, timeout=2.0) as server:
        with pytest.raises(InsecureAuthError), Session.connect(endpoint(server)) as session:
            session.login(Credentials("alice", "s3cret"))
    server.assert_done()


def test_stls_upgrade_and_capa_reread() -> None:
    script = [GREETING, expect(b"CAPA\r\n"), send(b"+OK\r\nSTLS\r\nUSER\r\n.\r\n"),
              expect(b"STLS\r\n"), send(b"+OK begin\r\n"), starttls(),
              expect(b"CAPA\r\n"), send(b"+OK\r\nUSER\r\nSASL PLAIN\r\n.\r\n"),
              expect(b"AUTH PLAIN " + base64.b64encode(b"\0alice\0s3cret") + b"\r\n"),
              send(b"+OK\r\n"), expect(b"CAPA\r\n"), send(b"+OK\r\nUSER\r\n.\r\n"),
              expect(b"QUIT\r\n"), send(b"+OK\r\n"), expect_eof()]
    with ScriptedServer(script, timeout=2.0) as server:
        ep = endpoint(server, TLSMode.STARTTLS)
        with Session.connect(ep) as session:
            assert session.tls is not None and session.tls.verified
            assert session.login(Credentials("alice", "s3cret")) == "PLAIN"
    server.assert_done()


def test_stls_not_offered_stops_before_credentials() -> None:
    script = [GREETING, *CAPA_LOCKSTEP, expect_eof()]
    with ScriptedServer(script, timeout=2.0) as server:
        with pytest.raises(TLSError, match="does not offer STLS"):
            Session.connect(endpoint(server, TLSMode.STARTTLS))
    server.assert_done()


def test_stls_response_injection_is_refused() -> None:
    script = [GREETING, expect(b"CAPA\r\n"), send(b"+OK\r\nSTLS\r\n.\r\n"),
              expect(b"STLS\r\n"), send(b"+OK Begin TLS\r\n+OK injected\r\n"), expect_eof()]
    with ScriptedServer(script, timeout=2.0) as server:
        with pytest.raises(RemoteProtocolError, match="injection"):
            Session.connect(endpoint(server, TLSMode.STARTTLS))
    server.assert_done()


def test_wrong_host_name_is_refused_before_anything_is_sent() -> None:
    with ScriptedServer([GREETING], tls="implicit", timeout=2.0,
                        cert_hostname="mail.example.org") as server:
        with pytest.raises(TLSError, match="rejected"):
            Session.connect(endpoint(server, TLSMode.IMPLICIT))
    assert server.received == b""


def test_untrusted_certificate_is_refused() -> None:
    with ScriptedServer([GREETING], tls="implicit", timeout=2.0) as server:
        ep = Endpoint("localhost", server.port, TLSMode.IMPLICIT, timeout=2.0)  # system CAs
        with pytest.raises(TLSError, match="rejected"):
            Session.connect(ep)
    assert server.received == b""


def test_fingerprint_pin() -> None:
    script = [GREETING, *CAPA_LOCKSTEP, expect(b"QUIT\r\n"), send(b"+OK\r\n"), expect_eof()]
    with ScriptedServer(script, tls="implicit", timeout=2.0,
                        cert_hostname="other.example") as server:
        ep = Endpoint("localhost", server.port, TLSMode.IMPLICIT, timeout=2.0,
                      fingerprint=server.cert_sha256.upper())
        with Session.connect(ep) as session:
            assert session.tls is not None
            assert session.tls.cert_sha256 == server.cert_sha256
    server.assert_done()


def test_fingerprint_mismatch_is_refused() -> None:
    with ScriptedServer([GREETING], tls="implicit", timeout=2.0) as server:
        ep = Endpoint("localhost", server.port, TLSMode.IMPLICIT, timeout=2.0,
                      fingerprint="00" * 32)
        with pytest.raises(TLSError, match="fingerprint"):
            Session.connect(ep)
    assert server.received == b""


def test_cram_md5_when_no_tls_but_allowed() -> None:
    challenge = b"<1896.697170952@postoffice.example.net>"
    digest = hmac.new(b"s3cret", challenge, hashlib.md5).hexdigest()
    script = [GREETING, expect(b"CAPA\r\n"), send(b"+OK\r\nUSER\r\nSASL CRAM-MD5 PLAIN\r\n.\r\n"),
              expect(b"AUTH CRAM-MD5\r\n"), send(b"+ " + base64.b64encode(challenge) + b"\r\n"),
              expect(base64.b64encode(f"alice {digest}".encode()) + b"\r\n"),
              send(b"+OK\r\n"), *CAPA_LOCKSTEP,
              expect(b"QUIT\r\n"), send(b"+OK\r\n"), expect_eof()]
    with ScriptedServer(script, timeout=2.0) as server:
        with Session.connect(endpoint(server)) as session:
            assert session.login(CREDS) == "CRAM-MD5"
    server.assert_done()


def test_apop_digest() -> None:
    digest = hashlib.md5(b"<123.456@test>s3cret").hexdigest().encode()
    creds = Credentials("alice", "s3cret", mechanism="APOP", allow_plaintext=True)
    script = [APOP_GREETING, *CAPA_LOCKSTEP, expect(b"APOP alice " + digest + b"\r\n"),
              send(b"+OK\r\n"), *CAPA_LOCKSTEP, expect(b"QUIT\r\n"), send(b"+OK\r\n"),
              expect_eof()]
    with ScriptedServer(script, timeout=2.0) as server:
        with Session.connect(endpoint(server)) as session:
            session.login(creds)
    server.assert_done()


def test_long_oauth_token_goes_in_answer_to_the_challenge() -> None:
    token = "t" * 400  # with AUTH XOAUTH2 it would pass the 255-octet line limit
    creds = Credentials("me@example.com", oauth2_token=token, allow_plaintext=True)
    payload = base64.b64encode(f"user=me@example.com\x01auth=Bearer {token}\x01\x01".encode())
    script = [GREETING, expect(b"CAPA\r\n"), send(b"+OK\r\nSASL XOAUTH2\r\n.\r\n"),
              expect(b"AUTH XOAUTH2\r\n"), send(b"+ \r\n"), expect(payload + b"\r\n"),
              send(b"+OK\r\n"), expect(b"CAPA\r\n"), send(b"+OK\r\nSASL XOAUTH2\r\n.\r\n"),
              expect(b"QUIT\r\n"), send(b"+OK\r\n"), expect_eof()]
    with ScriptedServer(script, timeout=2.0) as server:
        with Session.connect(endpoint(server)) as session:
            assert session.login(creds) == "XOAUTH2"
    server.assert_done()


def test_xoauth2_error_challenge_gets_empty_answer() -> None:
    creds = Credentials("me", oauth2_token="tok", allow_plaintext=True)
    error = base64.b64encode(b'{"status":"401"}')
    script = [GREETING, expect(b"CAPA\r\n"), send(b"+OK\r\nSASL XOAUTH2\r\n.\r\n"),
              expect_line(b"AUTH XOAUTH2 "), send(b"+ " + error + b"\r\n"), expect(b"\r\n"),
              send(b"-ERR [AUTH] invalid token\r\n"), expect_eof()]
    with ScriptedServer(script, timeout=2.0) as server:
        with pytest.raises(AuthenticationError, match="invalid token"), \
                Session.connect(endpoint(server)) as session:
            session.login(creds)
    server.assert_done()


OAUTH_CAPS = b"+OK\r\nUIDL\r\nPIPELINING\r\nSASL XOAUTH2 OAUTHBEARER\r\n.\r\n"


@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER"])
def test_an_oauth_error_behind_pipelined_commands_is_the_login_error(mechanism: str) -> None:
    """The server's error challenge (RFC 7628 3.2.2) reads the CAPA pipelined behind the token
    as its answer, then refuses the AUTH: that -ERR is the error, as without pipelining, and the
    connection closes without QUIT (nothing was sent in answer: the server had one)."""
    creds = Credentials("me", oauth2_token="tok", mechanism=mechanism, allow_plaintext=True)
    error = base64.b64encode(b'{"status":"401"}')
    script = [GREETING, expect(b"CAPA\r\n"), send(OAUTH_CAPS),
              expect_line(b"AUTH " + mechanism.encode() + b" "),
              expect(b"CAPA\r\nUIDL\r\nLIST\r\n"),
              send(b"+ " + error + b"\r\n-ERR [AUTH] invalid token\r\n-ERR log in first\r\n"
                   b"-ERR log in first\r\n"), expect_eof()]
    with ScriptedServer(script, timeout=2.0) as server:
        with pytest.raises(AuthenticationError, match=r"^login failed: server said: \[AUTH\] "
                                                      "invalid token$"), \
                Session.connect(endpoint(server)) as session:
            session.login(creds, prefetch="scan")
    server.assert_done()


def test_a_challenge_then_acceptance_after_the_last_message_is_a_protocol_error() -> None:
    creds = Credentials("me", oauth2_token="tok", mechanism="XOAUTH2", allow_plaintext=True)
    script = [GREETING, expect(b"CAPA\r\n"), send(OAUTH_CAPS), expect_line(b"AUTH XOAUTH2 "),
              expect(b"CAPA\r\nUIDL\r\nLIST\r\n"), send(b"+ \r\n+OK\r\n"), expect_eof()]
    with ScriptedServer(script, timeout=2.0) as server:
        with pytest.raises(RemoteProtocolError, match="took CAPA as the answer"), \
                Session.connect(endpoint(server)) as session:
            session.login(creds, prefetch="scan")
    server.assert_done()


def test_scram_pipelines_behind_its_closing_empty_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """SCRAM-SHA-256: client-first, then client-final with the empty line that answers
    server-final (it can be nothing else) and CAPA, UIDL and LIST behind it, in one write before
    server-final comes; the server's signature is checked when it does."""
    monkeypatch.setattr(auth, "urandom", lambda n: bytes(n))
    nonce = base64.b64encode(bytes(24)).decode()
    salt, rounds = b"salt", 4096
    client_first_bare = f"n=alice,r={nonce}"
    server_first = f"r={nonce}srv,s={base64.b64encode(salt).decode()},i={rounds}"
    salted = hashlib.pbkdf2_hmac("sha256", b"s3cret", salt, rounds)
    auth_message = f"{client_first_bare},{server_first},c=biws,r={nonce}srv".encode()
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    server_final = b"v=" + base64.b64encode(hmac.digest(server_key, auth_message, "sha256"))
    caps = b"+OK\r\nUIDL\r\nPIPELINING\r\nSASL SCRAM-SHA-256\r\n.\r\n"
    script = [GREETING, expect(b"CAPA\r\n"), send(caps),
              expect(b"AUTH SCRAM-SHA-256 "
                     + base64.b64encode(f"n,,{client_first_bare}".encode()) + b"\r\n"),
              send(b"+ " + base64.b64encode(server_first.encode()) + b"\r\n"),
              expect_line(b"Yz1iaXdz"),  # c=biws,r=...,p=...
              expect(b"\r\nCAPA\r\nUIDL\r\nLIST\r\n"),  # before server-final
              send(b"+ " + base64.b64encode(server_final) + b"\r\n+OK\r\n" + caps + SCAN_REPLY),
              expect(b"QUIT\r\n"), expect_eof()]
    assert _sizes_scanned_with_the_login(script, "SCRAM-SHA-256") == [100, 200]


def test_named_messages_ride_with_the_login_and_answer_the_lookup() -> None:
    script = [GREETING, *CAPA_PIPE,
              expect(b"USER alice\r\nPASS s3cret\r\nCAPA\r\nSTAT\r\nUIDL 2\r\nLIST 2\r\n"),
              send(b"+OK\r\n+OK\r\n" + CAPA_PIPE_REPLY + b"+OK 2 300\r\n+OK 2 bbb\r\n"
                   b"+OK 2 200\r\n"),
              expect(b"STAT\r\nLIST 2\r\n"), send(b"+OK 2 300\r\n+OK 2 200\r\n"),
              expect(b"QUIT\r\n"), expect_eof()]
    with ScriptedServer(script, timeout=2.0) as server:
        with Session.connect(endpoint(server)) as session:
            session.login(CREDS, prefetch=Lookup((2,)))
            first = session.lookup([2])  # from the login's round trip
            second = session.lookup([2], uids=False)  # used once: asked again
    server.assert_done()
    assert first == ([(2, 200)], [(2, "bbb")])
    assert second == ([(2, 200)], None)


def test_deletions_sent_with_the_login_are_undone_if_no_batch_adopts_them() -> None:
    """TOP 2 0 and DELE 2 went with the login for a `dele 2 --yes`; a caller that does
    something else first gets them drained and RSET, so nothing it did not ask for is
    committed by its QUIT."""
    script = [GREETING, *CAPA_PIPE,
              expect(b"USER alice\r\nPASS s3cret\r\nCAPA\r\nSTAT\r\nUIDL 2\r\nLIST 2\r\n"
                     b"TOP 2 0\r\nDELE 2\r\n"),
              send(b"+OK\r\n+OK\r\n" + CAPA_PIPE_REPLY + b"+OK 2 300\r\n+OK 2 bbb\r\n"
                   b"+OK 2 200\r\n+OK\r\nSubject: b\r\n\r\n.\r\n+OK marked\r\n"),
              expect(b"RSET\r\n"), send(b"+OK\r\n"),
              expect(b"STAT\r\n"), send(b"+OK 2 300\r\n"),
              expect(b"QUIT\r\n"), expect_eof()]
    with ScriptedServer(script, timeout=2.0) as server:
        with Session.connect(endpoint(server)) as session:
            session.login(CREDS, prefetch=Lookup((2,), delete=True))
            assert session.lookup([2]) == ([(2, 200)], [(2, "bbb")])
            assert session.stat().count == 2
    server.assert_done()


def test_deletions_sent_with_the_login_are_adopted_by_the_batch_they_were_for() -> None:
    script = [GREETING, *CAPA_PIPE,
              expect(b"USER alice\r\nPASS s3cret\r\nCAPA\r\nSTAT\r\nUIDL 2\r\nLIST 2\r\n"
                     b"TOP 2 0\r\nDELE 2\r\n"),
              send(b"+OK\r\n+OK\r\n" + CAPA_PIPE_REPLY + b"+OK 2 300\r\n+OK 2 bbb\r\n"
                   b"+OK 2 200\r\n+OK\r\nSubject: b\r\n\r\n.\r\n+OK marked\r\n"),
              expect(b"QUIT\r\n"), send(b"+OK\r\n"), expect_eof()]
    with ScriptedServer(script, timeout=2.0) as server:
        with Session.connect(endpoint(server)) as session:
            session.login(CREDS, prefetch=Lookup((2,), delete=True))
            session.lookup([2])
            got = [h.data for h in session.headers([2], delete=[2])]
    server.assert_done()
    assert got == [b"Subject: b\r\n\r\n"]


def test_server_closing_right_after_greeting() -> None:
    with ScriptedServer([GREETING, expect(b"CAPA\r\n"), close()], timeout=2.0) as server:
        with pytest.raises((RemoteProtocolError, ConnectionClosedError)):
            Session.connect(endpoint(server))


def test_out_of_order_list_answer_is_detected() -> None:
    script = [*_logged_in_pipelined(), expect(b"LIST 1\r\nLIST 2\r\n"),
              send(b"+OK 2 200\r\n+OK 1 100\r\n"), expect_eof()]
    with ScriptedServer(script, timeout=2.0) as server:
        with pytest.raises(RemoteProtocolError, match="asked LIST 1"), \
                Session.connect(endpoint(server)) as session:
            session.login(CREDS)
            session.list([1, 2])
    server.assert_done()


def test_retr_many_deletes_only_after_finish() -> None:
    order: list[str] = []
    script = [*_logged_in_pipelined(), expect(b"RETR 1\r\nRETR 2\r\n"),
              send(b"+OK\r\none\r\n.\r\n+OK\r\ntwo\r\n.\r\n"),
              expect(b"DELE 1\r\nDELE 2\r\n"), send(b"+OK\r\n+OK\r\n"),
              expect(b"QUIT\r\n"), send(b"+OK\r\n"), expect_eof()]
    sinks: dict[int, io.BytesIO] = {}

    def open_sink(n: int) -> io.BytesIO:
        sinks[n] = io.BytesIO()
        return sinks[n]

    def finish(n: int, sink: object) -> None:
        order.append(f"stored {n}")

    with ScriptedServer(script, timeout=2.0) as server:
        with Session.connect(endpoint(server)) as session:
            session.login(CREDS)
            done = list(session.retr_many([1, 2], open_sink, finish=finish, delete=True))
    server.assert_done()
    assert [d.number for d in done] == [1, 2] and all(d.deleted for d in done)
    assert sinks[1].getvalue() == b"one\r\n" and sinks[2].getvalue() == b"two\r\n"
    assert order == ["stored 1", "stored 2"]


def test_failed_store_sends_no_dele_and_no_quit() -> None:
    script = [*_logged_in_pipelined(), expect(b"RETR 1\r\n"),
              send(b"+OK\r\none\r\n.\r\n"), expect_eof()]

    def finish(n: int, sink: object) -> None:
        raise OSError("disk full")

    with ScriptedServer(script, timeout=2.0) as server:
        with pytest.raises(OSError, match="disk full"), \
                Session.connect(endpoint(server)) as session:
            session.login(CREDS)
            list(session.retr_many([1], lambda n: io.BytesIO(), finish=finish, delete=True))
    server.assert_done()
    assert b"DELE" not in server.received and b"QUIT" not in server.received


@pytest.mark.parametrize("count", [0, 1, 5])
def test_a_missing_named_message_is_worded_as_a_listing_words_it(count: int) -> None:
    """Session.lookup words a -ERR to LIST n as selection.select words a number past the
    listing: the same sentence, whichever way popctl found out."""
    from popctl import selection
    from popctl import session as session_module

    with pytest.raises(NoSuchMessageError) as listed:
        selection.select([selection.Single(count + 1)], list(range(1, count + 1)))
    assert str(listed.value) == (f"message {count + 1} does not exist "
                                 f"({session_module._mailbox_of(count)})")
