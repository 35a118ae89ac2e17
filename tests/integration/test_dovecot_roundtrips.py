"""Issue 13 against a real, private Dovecot (which announces PIPELINING): the commands a user
runs with the default ``--auth auto``, whose last SASL message now carries the commands that
follow it, and messages named by number, looked up with LIST n and UIDL n (``dele N --yes``
sending TOP n 0 and DELE n with the login)."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner, Result

from popctl.cli import cli
from tests.support.dovecot_server import DovecotServer

pytestmark = pytest.mark.dovecot

USER = "alice"  # a UTF-8 password: SCRAM-SHA-256, PLAIN and CRAM-MD5 carry it


def message(n: int) -> bytes:
    return (b"From: Sender %d <s%d@example.org>\r\nSubject: message %d\r\n"
            b"Date: Thu, 26 Nov 2026 10:00:00 +0000\r\n\r\nbody of %d\r\n" % (n, n, n, n))


@pytest.fixture
def five(dovecot_mailbox: DovecotServer) -> DovecotServer:
    for n in range(1, 6):
        dovecot_mailbox.deliver(USER, message(n))
    return dovecot_mailbox


def run(server: DovecotServer, *args: str, password: str | None = None,
        cache: bool = False) -> Result:
    options = ["--host", "localhost", "--port", str(server.tls_port), "--tls", "implicit",
               "--ca-file", server.ca_file, "--user", USER, "--timeout", "10",
               *([] if cache else ["--no-cache"]), "--trace"]
    return CliRunner().invoke(cli, [*options, *args],
                              env={"POPCTL_PASSWORD": password or server.users[USER]})


def client_lines(result: Result) -> list[str]:
    return [m[1] for m in re.finditer(r"^\s*[\d.]+ C: (.*)$", result.stderr, re.MULTILINE)]


MECHANISMS = [(), ("--auth", "PLAIN"), ("--auth", "CRAM-MD5")]
IDS = ["auto (SCRAM-SHA-256)", "PLAIN", "CRAM-MD5"]


@pytest.mark.parametrize("auth", MECHANISMS, ids=IDS)
def test_top_of_a_named_message_with_the_default_auth(five: DovecotServer,
                                                      auth: tuple[str, ...]) -> None:
    result = run(five, *auth, "top", "3")
    assert result.exit_code == 0, result.stderr
    assert result.stdout_bytes == message(3).split(b"\r\n\r\n")[0] + b"\r\n\r\n"
    sent = client_lines(result)
    assert "LIST" not in sent and "UIDL" not in sent  # no whole listing
    # The lookup went out behind the mechanism's last message, before its +OK came back.
    assert sent[sent.index("CAPA", 1):sent.index("CAPA", 1) + 4] == [
        "CAPA", "STAT", "UIDL 3", "LIST 3"]
    logged_in = result.stderr.index("S: +OK Logged in")
    assert result.stderr.index("C: LIST 3") < logged_in
    if not auth:
        assert "with SCRAM-SHA-256" in result.stderr
        # Sent with client-final, before Dovecot's server-final (the last "S: + " line).
        assert result.stderr.index("C: LIST 3") < result.stderr.rindex("S: + ")


@pytest.mark.parametrize("auth", MECHANISMS, ids=IDS)
def test_dele_of_a_named_message_with_the_default_auth(five: DovecotServer,
                                                       auth: tuple[str, ...]) -> None:
    result = run(five, *auth, "dele", "3", "--yes", "--format", "json")
    assert result.exit_code == 0, result.stderr
    records = json.loads(result.stdout)
    assert [(r["number"], r["subject"], r["deleted"]) for r in records] == [
        (3, "message 3", True)]
    assert result.stderr.index("C: DELE 3") < result.stderr.index("S: +OK Logged in")
    listed = run(five, *auth, "list", "--format", "json")
    assert listed.exit_code == 0, listed.stderr
    assert [r["subject"] for r in json.loads(listed.stdout)] == [
        f"message {n}" for n in (1, 2, 4, 5)]


def test_a_named_message_that_is_not_there(five: DovecotServer) -> None:
    result = run(five, "dele", "3,9", "--yes")
    assert (result.exit_code, result.stderr.splitlines()[-1]) == (
        5, "Error: message 9 does not exist (the mailbox has 5 messages)")
    assert "C: QUIT" not in result.stderr
    listed = run(five, "list", "--sizes-only", "--format", "json")
    assert len(json.loads(listed.stdout)) == 5  # DELE 3 went with the login: rolled back


@pytest.mark.parametrize("auth", [(), ("--auth", "PLAIN")], ids=["auto", "PLAIN"])
def test_a_wrong_password_with_commands_pipelined_behind_it(five: DovecotServer,
                                                            auth: tuple[str, ...]) -> None:
    result = run(five, *auth, "top", "3", password="not the password")
    assert result.exit_code == 3
    assert result.stderr.splitlines()[-1] == (
        "Error: login failed: server said: [AUTH] Authentication failed.")
    assert "not the password" not in result.stderr


def test_retr_by_uid_with_a_warm_cache(five: DovecotServer) -> None:
    """After a listing, `retr --uid` asks UIDL n of the number the cache saw; once a deletion
    has renumbered the messages, that check fails and the listings find the message."""
    listed = run(five, "list", "--format", "json", cache=True)
    uid = json.loads(listed.stdout)[2]["uid"]
    first = run(five, "retr", "--uid", uid, cache=True)
    assert first.exit_code == 0, first.stderr
    assert first.stdout_bytes == message(3)
    assert "C: UIDL 3" in first.stderr and "C: UIDL\n" not in first.stderr
    assert run(five, "dele", "1", "--yes").exit_code == 0  # message 3 is now number 2
    moved = run(five, "retr", "--uid", uid, cache=True)
    assert moved.exit_code == 0, moved.stderr
    assert moved.stdout_bytes == message(3)
    assert "C: UIDL 3" in moved.stderr and "C: UIDL\n" in moved.stderr
