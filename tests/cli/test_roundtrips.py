"""Issue 13: what a command costs on the wire, proved against the strict scripted server.

* Naming messages (``top 3``, ``retr 3``, ``dele 3 --yes``, ``list 3``, ``uidl 3``) asks STAT,
  UIDL n and LIST n with the login, never the two whole listings: on a mailbox that announces
  100,000 messages, the client receives a few hundred octets and waits one round trip more
  than the login (``dele`` waits for QUIT's reply too: it confirms the deletion).
* The default ``--auth auto`` sends what follows the SASL exchange with the mechanism's last
  message (docs/ARCHITECTURE.md, "Pipelining"): a purge with AUTH PLAIN has the round trips of
  one with USER/PASS, and CRAM-MD5 (a challenge, then one answer) and SCRAM-SHA-256 (whose
  closing empty line goes with its client-final message) one more.

Round trips are counted from the server's transcript: the greeting, then each burst of client
bytes that the server answered (the scripted server reads a whole ``expect`` before it sends, so
the bursts are the script's).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from popctl import auth
from popctl.cache import HeaderCache, account_key
from popctl.cli import cli
from tests.support.scripted_server import (
    ScriptedServer,
    Step,
    close,
    expect,
    expect_eof,
    send,
    stall,
)

PASSWORD = "s3cret"
BIG = 100_000
GREET = send(b"+OK POP3 ready\r\n")
CAPA_REPLY = b"+OK\r\nTOP\r\nUIDL\r\nUSER\r\nPIPELINING\r\n.\r\n"
CAPA_LOCKSTEP_REPLY = b"+OK\r\nTOP\r\nUIDL\r\nUSER\r\n.\r\n"
CAPA = [expect(b"CAPA\r\n"), send(CAPA_REPLY)]
LOGIN = b"USER alice\r\nPASS s3cret\r\nCAPA\r\n"
LOGGED_IN = b"+OK\r\n+OK maildrop has %d messages\r\n" % BIG + CAPA_REPLY
STAT_REPLY = b"+OK %d %d\r\n" % (BIG, BIG * 4000)
HEADER = (b"From: Ann <ann@example.org>\r\nSubject: three\r\n"
          b"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\n")
MESSAGE = HEADER + b"body of message three\r\n"
LOGIN_ROUND_TRIPS = 3  # the greeting, CAPA, USER+PASS+CAPA (and what rides with them)


def run(server: ScriptedServer, *args: str, auth: tuple[str, ...] = ("--auth", "USER"),
        tls: str = "none", cache: bool = False) -> Result:
    options = ["--host", "localhost", "--port", str(server.port), "--tls", tls,
               "--user", "alice", "--timeout", "2", *([] if cache else ["--no-cache"]), *auth]
    options += ["--allow-plaintext"] if tls == "none" else ["--ca-file", server.ca_file]
    return CliRunner().invoke(cli, [*options, *args], env={"POPCTL_PASSWORD": PASSWORD})


def round_trips(server: ScriptedServer) -> int:
    """The greeting, plus each client burst the server answered."""
    trips, last = 0, ""
    for who, _data in server.transcript:
        if who == "S" and last != "S":
            trips += 1
        if who in ("C", "S"):
            last = who
    return trips


def ok_data(data: bytes) -> bytes:
    return b"+OK\r\n" + data + b".\r\n"


def named_login(*numbers: int) -> list[Step]:
    """Logged in with the lookup of ``numbers`` riding along (all of them present)."""
    uidl = b"".join(b"UIDL %d\r\n" % n for n in numbers)
    listing = b"".join(b"LIST %d\r\n" % n for n in numbers)
    return [GREET, *CAPA, expect(LOGIN + b"STAT\r\n" + uidl + listing),
            send(LOGGED_IN + STAT_REPLY + b"".join(b"+OK %d uid-%d\r\n" % (n, n) for n in numbers)
                 + b"".join(b"+OK %d %d\r\n" % (n, len(MESSAGE)) for n in numbers))]


# (command line, what follows the login, what stdout holds, round trips beyond the login)
NAMED_CASES: dict[str, tuple[tuple[str, ...], list[Step], bytes | str | None, int]] = {
    "top": (("top", "3"), [expect(b"TOP 3 0\r\n"), send(ok_data(HEADER)), expect(b"QUIT\r\n"),
                           close()], HEADER, 1),
    "retr": (("retr", "3"), [expect(b"RETR 3\r\n"), send(ok_data(MESSAGE)), expect(b"QUIT\r\n"),
                             close()], MESSAGE, 1),
    "list": (("list", "3", "--format", "csv"),
             [expect(b"TOP 3 0\r\n"), send(ok_data(HEADER)), expect(b"QUIT\r\n"), close()],
             "number,size,uid,from,subject,date\n"
             f"3,{len(MESSAGE)},uid-3,Ann <ann@example.org>,three,2024-01-01T10:00:00+00:00\n",
             1),
    "uidl": (("uidl", "3", "--format", "csv"), [expect(b"QUIT\r\n"), close()],
             "number,uid\n3,uid-3\n", 0),
}


@pytest.mark.parametrize("case", NAMED_CASES, ids=list(NAMED_CASES))
def test_a_named_message_of_a_large_mailbox_costs_no_listing(case: str) -> None:
    args, rest, stdout, extra = NAMED_CASES[case]
    with ScriptedServer([*named_login(3), *rest], timeout=3.0) as server:
        result = run(server, *args)
    server.assert_done()
    assert result.exit_code == 0, result.stderr
    if isinstance(stdout, bytes):
        assert result.stdout_bytes == stdout
    elif stdout is not None:
        assert result.stdout.replace("\r\n", "\n") == stdout
    # Before: UIDL and LIST of all 100,000 messages (about 3 MB) to check that 3 exists.
    assert b"UIDL\r\n" not in server.received and b"LIST\r\n" not in server.received
    assert len(server.sent) < 5 * 1024
    assert round_trips(server) == LOGIN_ROUND_TRIPS + extra


def test_dele_of_a_named_message_reads_and_deletes_it_with_the_login() -> None:
    """`dele 3 --yes`: TOP 3 0 and DELE 3 go with the credentials and the lookup; the one
    round trip beyond the login is QUIT's, whose reply says the deletion was made."""
    script = [GREET, *CAPA,
              expect(LOGIN + b"STAT\r\nUIDL 3\r\nLIST 3\r\nTOP 3 0\r\nDELE 3\r\n"),
              send(LOGGED_IN + STAT_REPLY + b"+OK 3 uid-3\r\n+OK 3 %d\r\n" % len(MESSAGE)
                   + ok_data(HEADER) + b"+OK deleted\r\n"),
              expect(b"QUIT\r\n"), send(b"+OK bye\r\n"), expect_eof()]
    with ScriptedServer(script, timeout=3.0) as server:
        result = run(server, "dele", "3", "--yes", "--format", "csv")
    server.assert_done()
    assert result.exit_code == 0, result.stderr
    assert result.stdout.replace("\r\n", "\n") == (
        "number,size,uid,from,subject,date,deleted\n"
        f"3,{len(MESSAGE)},uid-3,Ann <ann@example.org>,three,2024-01-01T10:00:00+00:00,true\n")
    assert len(server.sent) < 5 * 1024
    assert round_trips(server) == LOGIN_ROUND_TRIPS + 1


def test_dele_of_a_missing_named_message_deletes_nothing() -> None:
    """`dele 3,7 --yes` where 7 is not there: DELE 3 was marked with the login, but the session
    ends without QUIT, so the server rolls it back (exit 5, the usual words)."""
    script = [GREET, *CAPA,
              expect(LOGIN + b"STAT\r\nUIDL 3\r\nUIDL 7\r\nLIST 3\r\nLIST 7\r\n"
                     b"TOP 3 0\r\nDELE 3\r\nTOP 7 0\r\nDELE 7\r\n"),
              send(LOGGED_IN + b"+OK 5 5000\r\n+OK 3 uid-3\r\n-ERR no such message\r\n"
                   b"+OK 3 100\r\n-ERR no such message\r\n" + ok_data(HEADER)
                   + b"+OK deleted\r\n-ERR no such message\r\n-ERR no such message\r\n"),
              expect_eof()]
    with ScriptedServer(script, timeout=3.0) as server:
        result = run(server, "dele", "3,7", "--yes")
    server.assert_done()
    assert (result.exit_code, result.stderr) == (
        5, "Error: message 7 does not exist (the mailbox has 5 messages)\n")
    assert b"QUIT" not in server.received


def test_several_named_messages_ride_with_the_login_together(tmp_path: Path) -> None:
    rest = [expect(b"RETR 3\r\nRETR 7\r\n"), send(ok_data(MESSAGE) * 2), expect(b"QUIT\r\n"),
            close()]
    with ScriptedServer([*named_login(7, 3), *rest], timeout=3.0) as server:
        result = run(server, "retr", "7,3", "--output-dir", str(tmp_path))
    server.assert_done()
    assert result.exit_code == 0, result.stderr
    assert len(list(tmp_path.iterdir())) == 2
    assert round_trips(server) == LOGIN_ROUND_TRIPS + 1


@pytest.mark.parametrize(("number", "error"), [
    (7, "message 7 does not exist (the mailbox has 5 messages)"),
    (3, "message 3 does not exist or is deleted"),
])
def test_a_named_message_that_is_not_there_is_worded_as_before(number: int, error: str) -> None:
    """The server's -ERR to LIST n, worded as the whole listing's check words it (exit 5)."""
    script = [GREET, *CAPA,
              expect(LOGIN + b"STAT\r\nUIDL %d\r\nLIST %d\r\n" % (number, number)),
              send(b"+OK\r\n+OK\r\n" + CAPA_REPLY + b"+OK 5 5000\r\n-ERR no such message\r\n"
                   b"-ERR no such message\r\n"), expect_eof()]
    with ScriptedServer(script, timeout=3.0) as server:
        result = run(server, "top", str(number))
    server.assert_done()
    assert (result.exit_code, result.stderr) == (5, f"Error: {error}\n")
    assert b"QUIT" not in server.received


def test_a_named_message_in_lock_step_is_looked_up_alone() -> None:
    """Without PIPELINING: UIDL 3 and LIST 3 (the round trips of UIDL and LIST, without their
    megabytes); STAT is asked only to word a missing message."""
    script = [GREET, expect(b"CAPA\r\n"), send(CAPA_LOCKSTEP_REPLY), expect(b"USER alice\r\n"),
              send(b"+OK\r\n"), expect(b"PASS s3cret\r\n"), send(b"+OK\r\n"),
              expect(b"CAPA\r\n"), send(CAPA_LOCKSTEP_REPLY),
              expect(b"UIDL 9\r\n"), send(b"-ERR no such message\r\n"),
              expect(b"LIST 9\r\n"), send(b"-ERR no such message\r\n"),
              expect(b"STAT\r\n"), send(b"+OK 5 5000\r\n"), expect_eof()]
    with ScriptedServer(script, timeout=3.0) as server:
        result = run(server, "top", "9")
    server.assert_done()
    assert (result.exit_code, result.stderr) == (
        5, "Error: message 9 does not exist (the mailbox has 5 messages)\n")


def warm_cache(port: int, **numbers: int) -> None:
    """A header cache as a `list` leaves it: an entry and the message number of each UID."""
    cache = HeaderCache(account_key("alice", "localhost", port))
    for uid, number in numbers.items():
        cache.put(uid, len(MESSAGE), "Ann <ann@example.org>", "three", None)
        cache.note_number(uid, number)
    assert cache.save()


def test_retr_by_uid_with_a_warm_cache_asks_uidl_n_of_the_number_it_had() -> None:
    rest = [expect(b"RETR 3\r\n"), send(ok_data(MESSAGE)), expect(b"QUIT\r\n"), close()]
    with ScriptedServer([*named_login(3), *rest], timeout=3.0) as server:
        warm_cache(server.port, **{"uid-3": 3})
        result = run(server, "retr", "--uid", "uid-3", cache=True)
    server.assert_done()
    assert result.exit_code == 0, result.stderr
    assert result.stdout_bytes == MESSAGE
    assert len(server.sent) < 5 * 1024
    assert round_trips(server) == LOGIN_ROUND_TRIPS + 1


def test_retr_by_uid_reads_the_listings_when_the_message_has_moved() -> None:
    """A deletion since renumbered the messages: UIDL 3 names another UID, so the listings
    say where uid-3 is now (2), and that message is fetched."""
    script = [GREET, *CAPA, expect(LOGIN + b"STAT\r\nUIDL 3\r\nLIST 3\r\n"),
              send(LOGGED_IN + STAT_REPLY + b"+OK 3 uid-4\r\n+OK 3 500\r\n"),
              expect(b"UIDL\r\nLIST\r\n"),
              send(ok_data(b"1 uid-1\r\n2 uid-3\r\n3 uid-4\r\n")
                   + ok_data(b"1 100\r\n2 %d\r\n3 500\r\n" % len(MESSAGE))),
              expect(b"RETR 2\r\n"), send(ok_data(MESSAGE)), expect(b"QUIT\r\n"), close()]
    with ScriptedServer(script, timeout=3.0) as server:
        warm_cache(server.port, **{"uid-3": 3})
        result = run(server, "retr", "--uid", "uid-3", cache=True)
    server.assert_done()
    assert result.exit_code == 0, result.stderr
    assert result.stdout_bytes == MESSAGE


def test_a_uid_the_cache_does_not_know_reads_the_listings() -> None:
    script = [GREET, *CAPA, expect(LOGIN + b"UIDL\r\nLIST\r\n"), close()]
    with ScriptedServer(script, timeout=3.0) as server:
        warm_cache(server.port, **{"uid-3": 3})
        run(server, "retr", "--uid", "uid-9", cache=True)
    server.assert_done()


def test_dele_by_uid_never_acts_on_a_cached_number() -> None:
    """A UID shared by a copy that arrived since (popa3d) would go unseen by UIDL n."""
    script = [GREET, *CAPA, expect(LOGIN + b"UIDL\r\nLIST\r\n"), close()]
    with ScriptedServer(script, timeout=3.0) as server:
        warm_cache(server.port, **{"uid-3": 3})
        run(server, "dele", "--uid", "uid-3", "--yes", cache=True)
    server.assert_done()


def test_a_listing_records_where_each_uid_is() -> None:
    script = [GREET, *CAPA, expect(LOGIN + b"UIDL\r\nLIST\r\n"),
              send(b"+OK\r\n+OK\r\n" + CAPA_REPLY + ok_data(b"1 uid-1\r\n2 uid-2\r\n")
                   + ok_data(b"1 100\r\n2 200\r\n")),
              expect(b"TOP 1 0\r\nTOP 2 0\r\n"), send(ok_data(HEADER) * 2),
              expect(b"QUIT\r\n"), close()]
    with ScriptedServer(script, timeout=3.0) as server:
        result = run(server, "list", cache=True)
        cache = HeaderCache(account_key("alice", "localhost", server.port))
    server.assert_done()
    assert result.exit_code == 0, result.stderr
    assert (cache.number_of("uid-1"), cache.number_of("uid-2")) == (1, 2)


def test_several_named_messages_in_lock_step_read_the_listings(tmp_path: Path) -> None:
    """Without PIPELINING each lookup is a round trip: two listings cost two, whatever the
    number of messages named."""
    script = [GREET, expect(b"CAPA\r\n"), send(CAPA_LOCKSTEP_REPLY), expect(b"USER alice\r\n"),
              send(b"+OK\r\n"), expect(b"PASS s3cret\r\n"), send(b"+OK\r\n"),
              expect(b"CAPA\r\n"), send(CAPA_LOCKSTEP_REPLY),
              expect(b"UIDL\r\n"), send(ok_data(b"1 uid-1\r\n2 uid-2\r\n")),
              expect(b"LIST\r\n"), send(ok_data(b"1 %d\r\n2 %d\r\n" % ((len(MESSAGE),) * 2))),
              expect(b"RETR 1\r\n"), send(ok_data(MESSAGE)),
              expect(b"RETR 2\r\n"), send(ok_data(MESSAGE)), expect(b"QUIT\r\n"), close()]
    with ScriptedServer(script, timeout=3.0) as server:
        result = run(server, "retr", "1,2", "--output-dir", str(tmp_path))
    server.assert_done()
    assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize("args", [("top", "10-"), ("retr", "last:1"), ("list", "2-3"),
                                  ("dele", "3", "--larger-than", "1k", "--yes")])
def test_a_range_or_filter_still_reads_the_listings(args: tuple[str, ...]) -> None:
    script = [GREET, *CAPA, expect(LOGIN + b"UIDL\r\nLIST\r\n"), close()]
    with ScriptedServer(script, timeout=3.0) as server:
        run(server, *args)
    server.assert_done()


# --- item 2: the default --auth auto ------------------------------------------------------------

PURGE = ("dele", "--larger-than", "1k", "--yes")
SCAN_REPLY = ok_data(b"1 uid-1\r\n2 uid-2\r\n") + ok_data(b"1 500\r\n2 5000\r\n")
PURGE_TAIL: list[Step] = [expect(b"TOP 2 0\r\nDELE 2\r\n"),
                          send(ok_data(HEADER) + b"+OK deleted\r\n"),
                          expect(b"QUIT\r\n"), send(b"+OK bye\r\n"), expect_eof()]
PURGE_ROUND_TRIPS = LOGIN_ROUND_TRIPS + 2  # the greeting, CAPA, login, TOP+DELE, QUIT


def test_a_purge_with_user_pass_has_the_documented_round_trips() -> None:
    script = [GREET, *CAPA, expect(LOGIN + b"UIDL\r\nLIST\r\n"),
              send(b"+OK\r\n+OK\r\n" + CAPA_REPLY + SCAN_REPLY), *PURGE_TAIL]
    with ScriptedServer(script, timeout=3.0) as server:
        result = run(server, *PURGE)
    server.assert_done()
    assert result.exit_code == 0, result.stderr
    assert round_trips(server) == PURGE_ROUND_TRIPS


def test_a_default_auth_purge_with_plain_has_the_round_trips_of_user_pass() -> None:
    """AUTH PLAIN over TLS, chosen by the default --auth auto: CAPA, UIDL and LIST go out with
    it (before: after its +OK, one round trip more)."""
    caps = b"+OK\r\nTOP\r\nUIDL\r\nUSER\r\nPIPELINING\r\nSASL PLAIN\r\n.\r\n"
    plain = base64.b64encode(b"\0alice\0" + PASSWORD.encode())
    script = [GREET, expect(b"CAPA\r\n"), send(caps),
              expect(b"AUTH PLAIN " + plain + b"\r\nCAPA\r\nUIDL\r\nLIST\r\n"),
              send(b"+OK logged in\r\n" + caps + SCAN_REPLY), *PURGE_TAIL]
    with ScriptedServer(script, tls="implicit", timeout=3.0) as server:
        result = run(server, *PURGE, auth=(), tls="implicit")
    server.assert_done()
    assert result.exit_code == 0, result.stderr
    assert round_trips(server) == PURGE_ROUND_TRIPS


def test_a_default_auth_purge_with_cram_md5_costs_one_round_trip_more() -> None:
    """CRAM-MD5 (chosen by auto on a connection without TLS): its challenge is a round trip
    USER/PASS does not have; what follows goes out with the answer (before: two more)."""
    caps = b"+OK\r\nTOP\r\nUIDL\r\nUSER\r\nPIPELINING\r\nSASL CRAM-MD5\r\n.\r\n"
    challenge = b"<1896.697170952@example.org>"
    digest = hmac.new(PASSWORD.encode(), challenge, hashlib.md5).hexdigest().encode()
    answer = base64.b64encode(b"alice " + digest)
    script = [GREET, expect(b"CAPA\r\n"), send(caps),
              expect(b"AUTH CRAM-MD5\r\n"), send(b"+ " + base64.b64encode(challenge) + b"\r\n"),
              expect(answer + b"\r\nCAPA\r\nUIDL\r\nLIST\r\n"),
              send(b"+OK logged in\r\n" + caps + SCAN_REPLY), *PURGE_TAIL]
    with ScriptedServer(script, timeout=3.0) as server:
        result = run(server, *PURGE, auth=())
    server.assert_done()
    assert result.exit_code == 0, result.stderr
    assert round_trips(server) == PURGE_ROUND_TRIPS + 1


def test_a_refused_default_auth_is_the_login_error_and_commits_nothing() -> None:
    caps = b"+OK\r\nTOP\r\nUIDL\r\nUSER\r\nPIPELINING\r\nSASL PLAIN\r\n.\r\n"
    plain = base64.b64encode(b"\0alice\0" + PASSWORD.encode())
    script = [GREET, expect(b"CAPA\r\n"), send(caps),
              expect(b"AUTH PLAIN " + plain + b"\r\nCAPA\r\nUIDL\r\nLIST\r\n"),
              send(b"-ERR [AUTH] Authentication failed.\r\n" + caps
                   + b"-ERR Unknown command.\r\n-ERR Unknown command.\r\n"), expect_eof()]
    with ScriptedServer(script, tls="implicit", timeout=3.0) as server:
        result = run(server, *PURGE, auth=(), tls="implicit")
    server.assert_done()
    assert (result.exit_code, result.stderr) == (
        3, "Error: login failed: server said: [AUTH] Authentication failed.\n")


# --- SCRAM-SHA-256, auto's choice where the server offers it (Dovecot) ------------------------

SCRAM_CAPS = b"+OK\r\nTOP\r\nUIDL\r\nUSER\r\nPIPELINING\r\nSASL PLAIN SCRAM-SHA-256\r\n.\r\n"
CLIENT_NONCE = base64.b64encode(b"\x01" * 24).decode()  # auth.urandom, patched


class Scram:
    """The server's side of a SCRAM-SHA-256 exchange with alice, for the patched nonce."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(auth, "urandom", lambda n: b"\x01" * n)
        salt, rounds = b"pepper", 4096
        nonce = CLIENT_NONCE + "srv"
        self.client_first = f"n=alice,r={CLIENT_NONCE}"
        self.server_first = f"r={nonce},s={base64.b64encode(salt).decode()},i={rounds}"
        salted = hashlib.pbkdf2_hmac("sha256", PASSWORD.encode(), salt, rounds)
        client_key = hmac.digest(salted, b"Client Key", "sha256")
        without_proof = f"c=biws,r={nonce}"
        message = f"{self.client_first},{self.server_first},{without_proof}".encode()
        signature = hmac.digest(hashlib.sha256(client_key).digest(), message, "sha256")
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        self.client_final = f"{without_proof},p={base64.b64encode(proof).decode()}"
        server_key = hmac.digest(salted, b"Server Key", "sha256")
        self.verifier = base64.b64encode(hmac.digest(server_key, message, "sha256")).decode()

    def start(self) -> list[Step]:
        """The greeting, CAPA, the AUTH with client-first and the server-first challenge."""
        return [GREET, expect(b"CAPA\r\n"), send(SCRAM_CAPS),
                expect(b"AUTH SCRAM-SHA-256 " + b64(f"n,,{self.client_first}") + b"\r\n"),
                send(b"+ " + b64(self.server_first) + b"\r\n")]

    def final(self, *commands: bytes) -> Step:
        """client-final, the empty line that answers server-final, and ``commands``: one write,
        before the server has sent server-final."""
        return expect(b64(self.client_final) + b"\r\n\r\n" + b"".join(commands))

    def server_final(self, verifier: str | None = None) -> bytes:
        return b"+ " + b64(f"v={verifier or self.verifier}") + b"\r\n"


def b64(text: str) -> bytes:
    return base64.b64encode(text.encode())


def test_a_default_auth_purge_with_scram_costs_one_round_trip_more(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """SCRAM's server-final is a challenge whose only answer is an empty line: it goes with
    client-final, and CAPA, UIDL and LIST behind it (before: two round trips more than
    USER/PASS, server-first and server-final)."""
    scram = Scram(monkeypatch)
    script = [*scram.start(), scram.final(b"CAPA\r\nUIDL\r\nLIST\r\n"),
              send(scram.server_final() + b"+OK Logged in.\r\n" + SCRAM_CAPS + SCAN_REPLY),
              *PURGE_TAIL]
    with ScriptedServer(script, tls="implicit", timeout=3.0) as server:
        result = run(server, *PURGE, auth=(), tls="implicit", cache=False)
    server.assert_done()
    assert result.exit_code == 0, result.stderr
    assert round_trips(server) == PURGE_ROUND_TRIPS + 1


LIST_TAIL: list[Step] = [expect(b"TOP 1 0\r\nTOP 2 0\r\n"),
                         send(ok_data(HEADER) + ok_data(HEADER)), expect(b"QUIT\r\n"), close()]
LIST_ROUND_TRIPS = LOGIN_ROUND_TRIPS + 1  # the greeting, CAPA, login, the TOPs (QUIT unawaited)


@pytest.mark.parametrize("mechanism", ["USER", "SCRAM-SHA-256"])
def test_a_listing_costs_one_round_trip_more_with_scram_than_with_user_pass(
        mechanism: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The list's side of "within one round trip of --auth USER" (benchmarks/run.py counts it
    against Dovecot too): UIDL and LIST ride with the login either way."""
    if mechanism == "USER":
        login = [GREET, *CAPA, expect(LOGIN + b"UIDL\r\nLIST\r\n"),
                 send(b"+OK\r\n+OK\r\n" + CAPA_REPLY + SCAN_REPLY)]
        args, tls = ("--auth", "USER"), "none"
    else:
        scram = Scram(monkeypatch)
        login = [*scram.start(), scram.final(b"CAPA\r\nUIDL\r\nLIST\r\n"),
                 send(scram.server_final() + b"+OK Logged in.\r\n" + SCRAM_CAPS + SCAN_REPLY)]
        args, tls = (), "implicit"
    with ScriptedServer([*login, *LIST_TAIL], tls=tls, timeout=3.0) as server:
        result = run(server, "list", "--format", "csv", auth=args, tls=tls)
    server.assert_done()
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[1:] == [
        "1,500,uid-1,Ann <ann@example.org>,three,2024-01-01T10:00:00+00:00",
        "2,5000,uid-2,Ann <ann@example.org>,three,2024-01-01T10:00:00+00:00"]
    assert round_trips(server) == LIST_ROUND_TRIPS + (mechanism != "USER")


def test_scram_with_the_named_message_of_dele_n(monkeypatch: pytest.MonkeyPatch) -> None:
    scram = Scram(monkeypatch)
    script = [*scram.start(),
              scram.final(b"CAPA\r\nSTAT\r\nUIDL 3\r\nLIST 3\r\nTOP 3 0\r\nDELE 3\r\n"),
              send(scram.server_final() + b"+OK Logged in.\r\n" + SCRAM_CAPS + STAT_REPLY
                   + b"+OK 3 uid-3\r\n+OK 3 %d\r\n" % len(MESSAGE) + ok_data(HEADER)
                   + b"+OK deleted\r\n"),
              expect(b"QUIT\r\n"), send(b"+OK bye\r\n"), expect_eof()]
    with ScriptedServer(script, tls="implicit", timeout=3.0) as server:
        result = run(server, "dele", "3", "--yes", "--format", "csv", auth=(), tls="implicit")
    server.assert_done()
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[1].endswith(",true")
    assert round_trips(server) == LOGIN_ROUND_TRIPS + 2


def test_a_scram_server_that_cannot_prove_itself_commits_nothing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An impostor (or a server whose SCRAM is broken) sends a wrong signature: the login is
    refused although the commands behind the early empty line were sent, and the session ends
    without QUIT, so the DELE that went with the login is rolled back."""
    scram = Scram(monkeypatch)
    script = [*scram.start(),
              scram.final(b"CAPA\r\nSTAT\r\nUIDL 3\r\nLIST 3\r\nTOP 3 0\r\nDELE 3\r\n"),
              send(scram.server_final("d3Jvbmc=") + b"+OK Logged in.\r\n" + SCRAM_CAPS
                   + STAT_REPLY + b"+OK 3 uid-3\r\n+OK 3 %d\r\n" % len(MESSAGE)
                   + ok_data(HEADER) + b"+OK deleted\r\n"),
              expect_eof()]
    with ScriptedServer(script, tls="implicit", timeout=3.0) as server:
        result = run(server, "dele", "3", "--yes", auth=(), tls="implicit")
    server.assert_done()
    assert (result.exit_code, result.stdout) == (3, "")
    assert result.stderr == ("Error: the server's SCRAM signature is wrong: it does not know the "
                             "password (possible impostor)\n")
    assert b"QUIT" not in server.received


# After client-final, the server answers +OK straight away (no proof from it, and the early
# empty line is now a command to it), or -ERR (Dovecot's answer to a wrong proof: the empty
# line and the commands behind it are then answered in the AUTHORIZATION state, never read).
# Either way the login is refused and the connection closed without QUIT.
REFUSED_SCRAM = {
    "no server-final": (b"+OK Logged in.\r\n-ERR Unknown command.\r\n" + SCRAM_CAPS
                        + SCAN_REPLY,
                        "the server accepted SCRAM without proving it knows the password"),
    "wrong password": (b"-ERR [AUTH] Authentication failed.\r\n-ERR Unknown command.\r\n"
                       + SCRAM_CAPS + b"-ERR Unknown command.\r\n-ERR Unknown command.\r\n",
                       "login failed: server said: [AUTH] Authentication failed."),
}


@pytest.mark.parametrize("case", REFUSED_SCRAM, ids=list(REFUSED_SCRAM))
def test_a_scram_login_refused_after_client_final_commits_nothing(
        case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    reply, error = REFUSED_SCRAM[case]
    scram = Scram(monkeypatch)
    script = [*scram.start(), scram.final(b"CAPA\r\nUIDL\r\nLIST\r\n"), send(reply),
              expect_eof()]
    with ScriptedServer(script, tls="implicit", timeout=3.0) as server:
        result = run(server, *PURGE, auth=(), tls="implicit")
    server.assert_done()
    assert (result.exit_code, result.stderr) == (3, f"Error: {error}\n")
    assert b"QUIT" not in server.received


def test_scram_in_lock_step_waits_for_each_challenge(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without PIPELINING nothing is sent before its challenge: the empty line waits for
    server-final, and CAPA for the +OK."""
    scram = Scram(monkeypatch)
    caps = SCRAM_CAPS.replace(b"PIPELINING\r\n", b"")
    script = [GREET, expect(b"CAPA\r\n"), send(caps),
              expect(b"AUTH SCRAM-SHA-256 " + b64(f"n,,{scram.client_first}") + b"\r\n"),
              send(b"+ " + b64(scram.server_first) + b"\r\n"),
              expect(b64(scram.client_final) + b"\r\n"), send(scram.server_final()),
              expect(b"\r\n"), send(b"+OK Logged in.\r\n"),
              expect(b"CAPA\r\n"), send(caps), expect(b"STAT\r\n"), send(STAT_REPLY),
              expect(b"QUIT\r\n"), send(b"+OK\r\n"), expect_eof()]
    with ScriptedServer(script, tls="implicit", timeout=3.0) as server:
        result = run(server, "stat", auth=(), tls="implicit")
    server.assert_done()
    assert result.exit_code == 0, result.stderr


def test_a_server_that_drops_the_early_empty_line_times_out_with_a_hint(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that flushed its input when it sent server-final waits for the empty line it
    lost: after --timeout, one line that says what to try."""
    scram = Scram(monkeypatch)
    script = [*scram.start(), scram.final(b"CAPA\r\nUIDL\r\nLIST\r\n"),
              send(scram.server_final()), stall(2.0), close()]
    with ScriptedServer(script, tls="implicit", timeout=5.0) as server:
        result = run(server, *PURGE, "--timeout", "1", auth=(), tls="implicit")
    assert result.exit_code == 4, result.stderr
    assert result.stderr.startswith("Error: ")
    assert result.stderr.endswith(
        "the server did not take SCRAM-SHA-256's last message, sent with the one before, "
        "although it announces PIPELINING: retry with --no-pipelining\n")
