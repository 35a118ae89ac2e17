"""The same scenarios against every real POP3 server we can run here
(tests/support/pop3_servers.py): Dovecot, GNU mailutils pop3d, mpopd and popa3d. docs/INTEROP.md
reports the results.

Where the servers differ, the tests assert what is true of each, and PROFILES says why:
mailutils adds an X-UIDL header to a message once it has computed its UID (the message then
grows), mpopd's LIST counts the LF-terminated file it stores (RETR sends CRLF), mpopd has no
TOP, popa3d has no CAPA, and only Dovecot and mailutils announce PIPELINING, so the other two
get one command at a time (proved from the trace below).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from popctl.cli import cli
from popctl.errors import (
    AuthenticationError,
    CapabilityError,
    NoSuchMessageError,
    RemoteProtocolError,
    TransportError,
)
from popctl.models import Credentials, Endpoint, TLSMode
from popctl.session import Session
from tests.support.fixtures_servers import SERVERS
from tests.support.pop3_servers import Pop3Server, start_mpopd

pytestmark = pytest.mark.interop

each_server = pytest.mark.parametrize("pop3_server", SERVERS, indirect=True)


def only(*names: str) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("pop3_server", names, indirect=True)


@dataclass(frozen=True)
class Profile:
    capa_before: frozenset[str] | None  # CAPA's names before login, as popctl sees them; None: -ERR
    capa_after: frozenset[str] | None  # ... and after login
    tls: TLSMode  # how these tests connect
    mechanism: str  # what popctl's "auto" picks there
    top: bool
    # Whether LIST's size is the octets RETR sends. mpopd counts the stored file, whose lines
    # end in LF: RETR sends CRLF, one octet more per line.
    list_exact: bool
    # mailutils writes "X-UIDL: <uid>" into the header of a message once it has computed its
    # UID (any UIDL, in any session): from then on TOP and RETR send it and LIST counts it.
    x_uidl: bool
    # popa3d's UIDL is a hash of a few header fields: identical copies share one UID.
    unique_uids_for_copies: bool


_COMMON = {"TOP", "UIDL", "RESP-CODES", "PIPELINING", "AUTH-RESP-CODE"}
PROFILES = {
    # STLS is not listed once TLS is on (RFC 2595); SASL goes away after login.
    "dovecot": Profile(
        frozenset({*_COMMON, "CAPA", "USER", "SASL"}), frozenset({*_COMMON, "CAPA"}),
        TLSMode.STARTTLS, "SCRAM-SHA-256", top=True, list_exact=True, x_uidl=False,
        unique_uids_for_copies=True),
    # "EXPIRENEVER" (sic: mailutils 3.15 drops the space of "EXPIRE NEVER"); IMPLEMENTATION
    # only after login; no SASL (this build has none configured), so USER/PASS inside TLS.
    "mailutils": Profile(
        frozenset({*_COMMON, "EXPIRENEVER", "USER"}),
        frozenset({*_COMMON, "EXPIRENEVER", "USER", "IMPLEMENTATION"}),
        TLSMode.STARTTLS, "USER", top=True, list_exact=True, x_uidl=True,
        unique_uids_for_copies=True),
    "mpopd": Profile(
        frozenset({"USER", "UIDL"}), frozenset({"USER", "UIDL"}), TLSMode.NONE, "USER",
        top=False, list_exact=False, x_uidl=False, unique_uids_for_copies=True),
    "popa3d": Profile(
        None, None, TLSMode.NONE, "USER", top=True, list_exact=True, x_uidl=False,
        unique_uids_for_copies=False),
}


def profile(server: Pop3Server) -> Profile:
    return PROFILES[server.name]


def endpoint(server: Pop3Server) -> Endpoint:
    return Endpoint(server.host, server.port, profile(server).tls, ca_file=server.ca_file,
                    timeout=15)


def creds(server: Pop3Server, password: str | None = None) -> Credentials:
    return Credentials(server.login, password or server.password,
                       allow_plaintext=profile(server).tls is TLSMode.NONE)


def logged_in(server: Pop3Server, trace: list[tuple[str, str]] | None = None,
              **kw: object) -> Session:
    """A connected, logged-in session (use it in a ``with`` block)."""
    hook = (lambda d, line: trace.append((d, line))) if trace is not None else None
    session = Session.connect(endpoint(server), trace=hook, **kw)  # type: ignore[arg-type]
    try:
        session.login(creds(server))
    except BaseException:
        session.abort()
        raise
    return session


# --- the test messages ----------------------------------------------------------------------------


def message(n: int, body_lines: int = 3) -> bytes:
    """Message n in wire form (CRLF). A unique Message-ID and Date: popa3d's UIDs hash them.
    A line starting with a dot exercises dot-stuffing; none starts with "From " (mbox)."""
    body = b"".join(b"line %d of message %d\r\n" % (i, n) for i in range(body_lines))
    return (b"From: Sender %d <s%d@example.org>\r\n" % (n, n)
            + b"To: someone@example.org\r\n"
            + b"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe_Nr=2E_%d?=\r\n" % n
            + b"Date: Thu, 26 Nov 2026 10:%02d:%02d +0000\r\n" % divmod(n % 3600, 60)
            + b"Message-ID: <%d.interop@popctl.test>\r\n\r\n" % n
            + b".a line starting with a dot\r\n" + body)


def head(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0] + b"\r\n"


def sent_form(server: Pop3Server, raw: bytes, uid: str) -> bytes:
    """What the server sends for ``raw`` once its UID is known (see Profile.x_uidl)."""
    if not profile(server).x_uidl:
        return raw
    header, body = raw.split(b"\r\n\r\n", 1)
    return header + b"\r\nX-UIDL: " + uid.encode() + b"\r\n\r\n" + body


def fill(server: Pop3Server, count: int, body_lines: int = 3) -> list[bytes]:
    messages = [message(n, body_lines) for n in range(1, count + 1)]
    for raw in messages:
        server.deliver(raw)
    return messages


# --- connecting, logging in, CAPA -----------------------------------------------------------------


@each_server
def test_connect_login_capa(pop3_server: Pop3Server) -> None:
    expected = profile(pop3_server)
    with Session.connect(endpoint(pop3_server)) as session:
        assert session.encrypted == (expected.tls is not TLSMode.NONE)
        if session.tls is not None:
            assert session.tls.verified
        before = session.capabilities
        assert (set(before.items) if before.known else None) == expected.capa_before
        assert session.login(creds(pop3_server)) == expected.mechanism
        after = session.capa()
        assert (set(after.items) if after.known else None) == expected.capa_after
        assert session.pipelining == (expected.capa_after is not None
                                      and "PIPELINING" in expected.capa_after)
        assert session.greeting is not None
        if pop3_server.name == "popa3d":
            assert session.greeting.text == ""  # a bare "+OK": no APOP timestamp
        if pop3_server.name in ("dovecot", "mailutils"):
            assert session.greeting.timestamp is not None  # APOP offered by the greeting
        session.noop()


@each_server
def test_wrong_password_is_an_authentication_error(pop3_server: Pop3Server,
                                                   tmp_path: Path) -> None:
    server = pop3_server
    if server.name == "mpopd":
        # mpopd slows every login for a while after a failure: use a throw-away instance.
        server = start_mpopd(tmp_path / "mpopd")
    try:
        with pytest.raises(AuthenticationError) as info, Session.connect(endpoint(server)) as s:
            s.login(Credentials(server.login, "not-the-password",
                                allow_plaintext=profile(server).tls is TLSMode.NONE))
        assert info.value.exit_code == 3
        assert "not-the-password" not in str(info.value)
    finally:
        if server is not pop3_server:
            server.stop()


@only("mailutils")
def test_mailutils_implicit_tls(pop3_server: Pop3Server) -> None:
    assert pop3_server.tls_port is not None
    tls = Endpoint(pop3_server.host, pop3_server.tls_port, TLSMode.IMPLICIT,
                   ca_file=pop3_server.ca_file, timeout=15)
    fill(pop3_server, 1)
    with Session.connect(tls) as session:
        assert session.tls is not None and session.tls.verified
        assert "STLS" not in session.capabilities
        assert session.login(creds(pop3_server)) == "USER"
        assert session.stat().count == 1


@only("mailutils")
def test_mailutils_apop_in_the_greeting_falls_back_to_user(pop3_server: Pop3Server) -> None:
    """mailutils greets with an APOP timestamp but has no APOP secret for the user (no APOP
    database): "auto" over a clear connection tries APOP, gets -ERR [AUTH], then USER/PASS."""
    fill(pop3_server, 1)
    trace: list[tuple[str, str]] = []
    clear = Endpoint(pop3_server.host, pop3_server.port, TLSMode.NONE, timeout=15)
    with Session.connect(clear, trace=lambda d, line: trace.append((d, line))) as session:
        used = session.login(Credentials(pop3_server.login, pop3_server.password,
                                         allow_plaintext=True))
        assert used == "USER"
        assert session.stat().count == 1
    sent = [line for d, line in trace if d == "C"]
    assert sent[:4] == ["CAPA", "APOP ***", f"USER {pop3_server.login}", "PASS ***"]
    assert ("S", "-ERR [AUTH] Bad login") in trace
    # Asked for APOP explicitly, there is no fallback.
    with pytest.raises(AuthenticationError), Session.connect(clear) as session:
        session.login(Credentials(pop3_server.login, pop3_server.password,
                                  mechanism="APOP", allow_plaintext=True))


# --- STAT, LIST, UIDL, scan -----------------------------------------------------------------------


@each_server
def test_stat_list_uidl_scan(pop3_server: Pop3Server) -> None:
    fill(pop3_server, 5)
    with logged_in(pop3_server) as session:
        sizes, uids = session.scan()
        assert uids is not None
        stat = session.stat()
        assert stat.count == 5
        assert [m.number for m in sizes] == [1, 2, 3, 4, 5]
        assert sum(m.size for m in sizes) == stat.size
        assert session.list() == sizes
        assert session.uidl() == uids
        assert [u.number for u in uids] == [1, 2, 3, 4, 5]
        assert len({u.uid for u in uids}) == 5
        assert session.list([2, 4]) == [sizes[1], sizes[3]]
        assert session.uidl([3]) == [uids[2]]
    with logged_in(pop3_server) as session:
        assert session.scan() == (sizes, uids)  # UIDs and sizes stable across sessions


@each_server
def test_retr_is_byte_exact_and_list_sizes_as_each_server_counts(
        pop3_server: Pop3Server) -> None:
    long_line = b"x" * 5000 + b"\r\n"
    stuffed = b".\r\n..\r\n...three\r\n.\r\n"  # lines that must be dot-stuffed on the wire
    messages = fill(pop3_server, 3)
    extra = message(4, 0) + stuffed + long_line + b"end\r\n"
    pop3_server.deliver(extra)
    messages.append(extra)
    expected = profile(pop3_server)
    with logged_in(pop3_server) as session:
        sizes, uids = session.scan()
        assert uids is not None
        for raw, size, uid in zip(messages, sizes, uids, strict=True):
            sink = io.BytesIO()
            octets = session.retr(size.number, sink)
            assert sink.getvalue() == sent_form(pop3_server, raw, uid.uid)
            assert octets == len(sink.getvalue())
            if expected.list_exact:
                assert size.size == octets
            else:  # mpopd: the LF file's size, one octet less per line than RETR's CRLF
                assert size.size == octets - sink.getvalue().count(b"\r\n")


@only("mailutils")
def test_mailutils_messages_grow_by_x_uidl_when_their_uid_is_first_computed(
        pop3_server: Pop3Server) -> None:
    """Why Session.scan sends UIDL before LIST: LIST before the first UIDL of a new message
    counts it without the X-UIDL header that RETR sends once the UID exists."""
    raw = fill(pop3_server, 1)[0]
    with logged_in(pop3_server) as session:
        assert session.list()[0].size == len(raw)
        sink = io.BytesIO()
        session.retr(1, sink)
        assert sink.getvalue() == raw  # no UID computed yet: no X-UIDL
        uid = session.uidl()[0].uid
        grown = sent_form(pop3_server, raw, uid)
        assert len(grown) == len(raw) + len(f"X-UIDL: {uid}\r\n")
        assert session.list()[0].size == len(grown)
        sink = io.BytesIO()
        session.retr(1, sink)
        assert sink.getvalue() == grown
    # Even a session that ends without QUIT keeps the header (mailutils rewrote the file).
    with logged_in(pop3_server) as session:
        assert session.scan() == ([session.list()[0]], [session.uidl()[0]])
        assert session.list()[0].size == len(grown)


@each_server
def test_identical_copies_and_their_uids(pop3_server: Pop3Server) -> None:
    raw = message(1)
    pop3_server.deliver(raw)
    pop3_server.deliver(raw)
    with logged_in(pop3_server) as session:
        uids = session.uidl()
    assert len(uids) == 2
    assert (uids[0].uid != uids[1].uid) == profile(pop3_server).unique_uids_for_copies


# --- headers (TOP) --------------------------------------------------------------------------------


@each_server
def test_headers_with_top_or_a_clear_capability_error(pop3_server: Pop3Server) -> None:
    messages = fill(pop3_server, 3)
    with logged_in(pop3_server) as session:
        uids = session.uidl()
        if not profile(pop3_server).top:
            with pytest.raises(CapabilityError, match="does not support TOP"):
                list(session.headers([1, 2, 3]))
            with pytest.raises(CapabilityError, match="does not support TOP"):
                session.top(1, 0, io.BytesIO())
            assert session.stat().count == 3  # the session is still in step
            return
        got = list(session.headers([1, 2, 3]))
        assert [h.number for h in got] == [1, 2, 3]
        for h, raw, uid in zip(got, messages, uids, strict=True):
            assert h.data == head(sent_form(pop3_server, raw, uid.uid)) + b"\r\n"
            assert not h.truncated
        sink = io.BytesIO()
        session.top(2, 1, sink)
        whole = sent_form(pop3_server, messages[1], uids[1].uid)
        first_line = b".a line starting with a dot\r\n"
        if pop3_server.name == "mailutils":
            # mailutils 3.15 puts an extra empty line between the header and the body lines
            # of TOP n k (k > 0); TOP n 0 and RETR are right.
            assert sink.getvalue() == head(whole) + b"\r\n\r\n" + first_line
        else:
            assert sink.getvalue() == head(whole) + b"\r\n" + first_line


# --- batches: pipelined where announced, lock-step otherwise --------------------------------------


def in_flight_profile(trace: list[tuple[str, str]]) -> list[int]:
    """For each command sent, how many commands were awaiting replies once it was sent.

    Status lines are the server lines starting +OK or -ERR (the first is the greeting); no
    data line of these tests' messages, listings or CAPA starts so.
    """
    waiting, greeted, counts = 0, False, []
    for direction, line in trace:
        if direction == "C":
            waiting += 1
            counts.append(waiting)
        elif direction == "S" and (line.startswith("+OK") or line.startswith("-ERR")):
            if not greeted:
                greeted = True
            else:
                waiting -= 1
    return counts


@each_server
def test_batches_pipelined_or_lockstep(pop3_server: Pop3Server) -> None:
    count = 30
    messages = fill(pop3_server, count)
    expected = profile(pop3_server)
    pipelined = expected.capa_after is not None and "PIPELINING" in expected.capa_after
    trace: list[tuple[str, str]] = []
    numbers = range(1, count + 1)
    with logged_in(pop3_server, trace) as session:
        uids = session.uidl(numbers)
        sizes = session.list(numbers)
        assert [s.number for s in sizes] == list(numbers)
        if expected.top:
            got = list(session.headers(numbers))
            assert [h.data for h in got] == [
                head(sent_form(pop3_server, raw, u.uid)) + b"\r\n"
                for raw, u in zip(messages, uids, strict=True)]
        sinks: dict[int, io.BytesIO] = {}
        done = list(session.retr_many(numbers, lambda n: sinks.setdefault(n, io.BytesIO())))
        assert [d.number for d in done] == list(numbers)
        assert [sinks[n].getvalue() for n in numbers] == [
            sent_form(pop3_server, raw, u.uid) for raw, u in zip(messages, uids, strict=True)]
        assert session.dele(numbers) == list(numbers)
        session.rset()
    sent = [line for d, line in trace if d == "C"]
    assert sent.count("RETR 30") == 1 and sent.count("DELE 30") == 1
    waiting = in_flight_profile(trace)
    if pipelined:
        assert max(waiting) >= count  # a whole batch went out before its first reply
    else:
        # Lock-step: no command was ever sent while another awaited its reply.
        assert max(waiting) == 1, waiting


@only("mpopd")
def test_why_lockstep_matters_mpopd_drops_pipelining_clients(pop3_server: Pop3Server) -> None:
    """mpopd does not announce PIPELINING and ends the session on pipelined input."""
    with pytest.raises((TransportError, RemoteProtocolError)):
        with Session.connect(endpoint(pop3_server), pipelining=True) as session:
            session.login(creds(pop3_server))  # USER, PASS and CAPA in one write
            session.stat()
    assert "input error, session aborted" in pop3_server.log_tail()


# --- deletion: RSET, QUIT commits, an exception rolls back ----------------------------------------


@each_server
def test_dele_then_rset(pop3_server: Pop3Server) -> None:
    fill(pop3_server, 3)
    with logged_in(pop3_server) as session:
        assert session.dele([1, 3]) == [1, 3]
        assert session.stat().count == 1
        with pytest.raises(NoSuchMessageError):
            session.retr(1, io.BytesIO())
        session.rset()
        assert session.stat().count == 3
    with logged_in(pop3_server) as session:
        assert session.stat().count == 3


@each_server
def test_dele_and_quit_commits(pop3_server: Pop3Server) -> None:
    messages = fill(pop3_server, 3)
    with logged_in(pop3_server) as session:
        uids = session.uidl()
        session.dele(2)
    with logged_in(pop3_server) as session:
        assert session.stat().count == 2
        left = []
        for n in (1, 2):
            sink = io.BytesIO()
            session.retr(n, sink)
            left.append(sink.getvalue())
    assert left == [sent_form(pop3_server, messages[0], uids[0].uid),
                    sent_form(pop3_server, messages[2], uids[2].uid)]


@each_server
def test_an_exception_rolls_back_deletions(pop3_server: Pop3Server) -> None:
    fill(pop3_server, 3)
    trace: list[tuple[str, str]] = []
    with pytest.raises(RuntimeError), logged_in(pop3_server, trace) as session:
        session.dele([1, 2, 3])
        raise RuntimeError("something failed after DELE")
    assert "QUIT" not in [line for d, line in trace if d == "C"]
    with logged_in(pop3_server) as session:
        assert session.stat().count == 3


# --- the command line, end to end -----------------------------------------------------------------


def cli_args(server: Pop3Server) -> list[str]:
    args = ["--host", server.host, "--port", str(server.port), "--user", server.login,
            "--tls", profile(server).tls.value]
    if server.ca_file is not None:
        args += ["--ca-file", server.ca_file]
    if profile(server).tls is TLSMode.NONE:
        args.append("--allow-plaintext")
    return args


def run_cli(server: Pop3Server, *args: str) -> Result:
    return CliRunner().invoke(cli, [*cli_args(server), *args],
                              env={"POPCTL_PASSWORD": server.password})


NO_TOP_NOTE = "note: the server does not support TOP, so From, Subject and Date are not shown\n"


@each_server
def test_cli_list_json_in_a_child_process(pop3_server: Pop3Server, tmp_path: Path) -> None:
    messages = fill(pop3_server, 3)
    done = subprocess.run(
        [sys.executable, "-m", "popctl", *cli_args(pop3_server), "list", "--json"],
        stdin=subprocess.DEVNULL, capture_output=True, cwd=tmp_path, timeout=60,
        env={**os.environ, "POPCTL_PASSWORD": pop3_server.password})
    assert done.returncode == 0, done.stderr
    records = json.loads(done.stdout)
    assert [r["number"] for r in records] == [1, 2, 3]
    assert all(list(r) == ["number", "size", "uid", "from", "subject", "date", "from_name",
                           "from_address", "date_utc", "date_epoch"] for r in records)
    assert all(r["uid"] for r in records)
    if profile(pop3_server).top:
        assert done.stderr == b""
        assert [r["from"] for r in records] == [f"Sender {n} <s{n}@example.org>" for n in (1, 2, 3)]
        assert [(r["from_name"], r["from_address"]) for r in records] == [
            (f"Sender {n}", f"s{n}@example.org") for n in (1, 2, 3)]
        assert [r["subject"] for r in records] == [f"Grüße Nr. {n}" for n in (1, 2, 3)]
        assert records[0]["date"] == "2026-11-26T10:00:01+00:00"
        assert (records[0]["date_utc"], records[0]["date_epoch"]) == ("2026-11-26T10:00:01Z",
                                                                      1795687201)
    else:
        assert done.stderr == NO_TOP_NOTE.encode()
        assert all(r["from"] is r["subject"] is r["date"] is r["from_name"] is r["from_address"]
                   is r["date_utc"] is r["date_epoch"] is None for r in records)
    if profile(pop3_server).list_exact:
        with logged_in(pop3_server) as session:
            uids = session.uidl()
        assert [r["size"] for r in records] == [
            len(sent_form(pop3_server, raw, u.uid)) for raw, u in zip(messages, uids, strict=True)]


@each_server
def test_cli_commands(pop3_server: Pop3Server, tmp_path: Path) -> None:
    messages = fill(pop3_server, 3)
    has_top = profile(pop3_server).top

    result = run_cli(pop3_server, "stat", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["count"] == 3

    result = run_cli(pop3_server, "uidl", "--json")
    assert result.exit_code == 0, result.output
    uids = [r["uid"] for r in json.loads(result.stdout)]
    assert len(set(uids)) == 3

    result = run_cli(pop3_server, "top", "1")
    if has_top:
        assert result.exit_code == 0, result.output
        assert result.stdout_bytes == head(sent_form(pop3_server, messages[0], uids[0])) + b"\r\n"
    else:
        assert result.exit_code == 5
        assert result.stderr == ("Error: the server does not support TOP, so headers cannot be "
                                 "read without downloading whole messages; popctl retr 1 "
                                 "downloads the whole message instead\n")

    result = run_cli(pop3_server, "list", "--from", "Sender 2", "--json")
    if has_top:
        assert result.exit_code == 0, result.output
        assert [r["number"] for r in json.loads(result.stdout)] == [2]
    else:  # a header filter cannot be applied without TOP: refused, nothing done
        assert result.exit_code == 5
        assert "cannot be applied without downloading whole messages" in result.stderr

    result = run_cli(pop3_server, "dele", "2", "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert [(r["number"], r["deleted"]) for r in json.loads(result.stdout)] == [(2, True)]
    if not has_top:
        assert result.stderr == NO_TOP_NOTE

    maildir = tmp_path / "Maildir"
    result = run_cli(pop3_server, "retr", "--all", "--maildir", str(maildir), "--delete",
                     "--json")
    assert result.exit_code == 0, result.output
    assert [(r["number"], r["deleted"]) for r in json.loads(result.stdout)] == [
        (1, True), (2, True)]
    stored = sorted(p.read_bytes() for p in (maildir / "new").iterdir())
    assert stored == sorted(sent_form(pop3_server, messages[n], uids[n]).replace(b"\r\n", b"\n")
                            for n in (0, 2))  # a Maildir stores LF line ends

    result = run_cli(pop3_server, "stat", "--json")
    assert json.loads(result.stdout)["count"] == 0


@only("popa3d")
def test_cli_refuses_a_uid_shared_by_several_messages(pop3_server: Pop3Server) -> None:
    raw = message(1)
    pop3_server.deliver(raw)
    pop3_server.deliver(raw)
    result = run_cli(pop3_server, "uidl", "--json")
    uid = json.loads(result.stdout)[0]["uid"]
    assert [r["uid"] for r in json.loads(result.stdout)] == [uid, uid]
    result = run_cli(pop3_server, "dele", "--uid", uid, "--yes")
    assert result.exit_code == 2
    assert result.stderr == (f"Error: UID {uid!r} is shared by messages 1, 2 on this server, "
                             "so it does not say which one; select by number; nothing was "
                             "done\n")
    result = run_cli(pop3_server, "stat", "--json")
    assert json.loads(result.stdout)["count"] == 2


@only("popa3d")
def test_header_cache_not_fooled_by_a_shared_uid(pop3_server: Pop3Server) -> None:
    """Two different messages with the same UID (popa3d hashes only a few header fields, not
    the Subject) and the same size: the header cache, keyed by UID and size, must not show one
    message's summary for the other."""
    common = b"From: Sender <s@example.org>\r\nMessage-ID: <same@popctl.test>\r\n"
    pop3_server.deliver(common + b"Subject: first\r\n\r\nbody\r\n")
    pop3_server.deliver(common + b"Subject: other\r\n\r\nbody\r\n")
    for _run in range(2):  # the second run would read the cache
        result = run_cli(pop3_server, "list", "--json")
        assert result.exit_code == 0, result.output
        records = json.loads(result.stdout)
        assert records[0]["uid"] == records[1]["uid"]
        assert records[0]["size"] == records[1]["size"]
        assert [r["subject"] for r in records] == ["first", "other"]


@only("popa3d")
def test_output_dir_keeps_both_messages_of_a_shared_uid(pop3_server: Pop3Server,
                                                         tmp_path: Path) -> None:
    """Issue 11 as reported: two cron mails without Date and Message-ID share a UID on popa3d
    1.0.3; `retr --output-dir --delete` wrote both to <uid>.eml (the second replacing the
    first) and deleted both. Now each has its own file, and a second run finds them there."""
    cron = b"From: Cron Daemon <root@example.org>\r\nTo: root@example.org\r\n"
    first, second = (cron + b"Subject: cron\r\n\r\n" + body for body in (b"ok\r\n", b"failed\r\n"))
    pop3_server.deliver(first)
    pop3_server.deliver(second)
    result = run_cli(pop3_server, "uidl", "--json")
    uids = [r["uid"] for r in json.loads(result.stdout)]
    assert uids[0] == uids[1]
    result = run_cli(pop3_server, "retr", "--all", "--output-dir", str(tmp_path), "--delete",
                     "--json")
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert [(r["uid"], r["deleted"], r["short"]) for r in records] == [(uids[0], True, False)] * 2
    assert records[0]["stored"] == str(tmp_path / f"{uids[0]}.eml")
    assert sorted(p.read_bytes() for p in tmp_path.iterdir()) == sorted([first, second])
    result = run_cli(pop3_server, "stat", "--json")
    assert json.loads(result.stdout)["count"] == 0


@each_server
def test_retr_new_fetches_each_message_once(pop3_server: Pop3Server, tmp_path: Path) -> None:
    """Issue 14 on every server: pipelined or not (mpopd, popa3d), with LIST counting LF
    (mpopd) or messages growing an X-UIDL header (mailutils)."""
    maildir = tmp_path / "Maildir"
    fill(pop3_server, 2)
    first = run_cli(pop3_server, "retr", "--new", "--maildir", str(maildir))
    assert (first.exit_code, first.stderr) == (0, f"2 new message(s) stored in {maildir}\n")
    pop3_server.deliver(message(3))
    second = run_cli(pop3_server, "retr", "--new", "--maildir", str(maildir), "--json")
    assert second.exit_code == 0, second.output
    assert [(r["number"], r["action"]) for r in json.loads(second.stdout)] == [(3, "fetched")]
    third = run_cli(pop3_server, "retr", "--new", "--maildir", str(maildir))
    assert (third.exit_code, third.stderr) == (0, "no new messages\n")
    assert len(list((maildir / "new").iterdir())) == 3
    assert json.loads(run_cli(pop3_server, "stat", "--json").stdout)["count"] == 3
