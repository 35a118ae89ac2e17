"""Issue 11, "leaks and terminal safety": what a hostile server's text can do to a terminal, a
secret the server quotes back, security warnings under --quiet, and spreadsheet formulas in CSV.

Every case runs the command line (CliRunner with ``color=True``, as on a terminal: click strips
CSI sequences from output that is not a terminal, which would hide some of what a terminal gets)
against the strict scripted server, and checks every byte popctl wrote, stdout and stderr.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from popctl import auth
from popctl.cli import cli
from tests.support.scripted_server import (
    ScriptedServer,
    Step,
    expect,
    expect_eof,
    expect_line,
    send,
    starttls,
)
from tests.support.secrets import assert_hidden

PASSWORD = "s3cret"

# What no server text may put on a terminal: C0 controls but TAB and the LF that ends popctl's
# own lines, DEL, C1 controls, bidirectional controls and the Unicode line separators. Written
# out here rather than taken from popctl.display, so the test does not trust the code it tests.
FORBIDDEN = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")

# A clear-screen CSI, an OSC that sets the window title (ended by BEL), the one-character C1
# CSI, DEL, a right-to-left override and isolate, a right-to-left mark, a backspace, a vertical
# tab. No comma (SCRAM's e= ends at one), no "]" (a response code would end there).
HOSTILE = "\x1b[2J\x1b]0;pwned\x07 \u009b31m \x7f \u202etxt.exe\u2066 \u200f \x08x\x0by"
# ... and how popctl shows it: each of those characters one U+FFFD.
SHOWN = "\ufffd[2J\ufffd]0;pwned\ufffd \ufffd31m \ufffd \ufffdtxt.exe\ufffd \ufffd \ufffdx\ufffdy"
H = HOSTILE.encode()


def assert_clean(*outputs: str) -> None:
    for output in outputs:
        found = FORBIDDEN.search(output)
        assert found is None, f"raw {found.group()!r} at {found.start()} in {output!r}"


def run(server: ScriptedServer, *args: str, tls: str = "none",
        password: str = PASSWORD) -> Result:
    options = ["--host", "localhost", "--port", str(server.port), "--tls", tls,
               "--user", "alice", "--timeout", "2"]
    if tls == "none":
        options.append("--allow-plaintext")
    return CliRunner().invoke(cli, [*options, *args], env={"POPCTL_PASSWORD": password},
                              color=True)


def ok_data(data: bytes) -> bytes:
    return b"+OK\r\n" + data + b".\r\n"


GREET = send(b"+OK POP3 ready\r\n")
CAPA_LOCKSTEP = b"+OK\r\nTOP\r\nUIDL\r\nUSER\r\n.\r\n"
CAPA_PLAIN = b"+OK\r\nUSER\r\nSASL PLAIN\r\n.\r\n"
CAPA_PIPELINING = b"+OK\r\nTOP\r\nUIDL\r\nUSER\r\nPIPELINING\r\n.\r\n"
# Logged in with USER/PASS, one command at a time (the server does not pipeline).
LOCKSTEP = [GREET, expect(b"CAPA\r\n"), send(CAPA_LOCKSTEP), expect(b"USER alice\r\n"),
            send(b"+OK\r\n"), expect(b"PASS s3cret\r\n"), send(b"+OK\r\n"),
            expect(b"CAPA\r\n"), send(CAPA_LOCKSTEP)]
SCAN = [expect(b"UIDL\r\n"), send(ok_data(b"1 uid-1\r\n")), expect(b"LIST\r\n"),
        send(ok_data(b"1 120\r\n"))]
# A message named by number (`top 1`) is looked up alone: UIDL 1 and LIST 1, not the listings.
NAMED = [expect(b"UIDL 1\r\n"), send(b"+OK 1 uid-1\r\n"), expect(b"LIST 1\r\n"),
         send(b"+OK 1 120\r\n")]
ERR = send(b"-ERR " + H + b"\r\n")
PLAIN_BLOB = base64.b64encode(b"\0alice\0s3cret")


# --- 1. control characters in every message path -------------------------------------------
# (-ERR to UIDL is not among them: it means the server has no UIDL, and popctl shows no text.)

ERR_CASES: dict[str, tuple[tuple[str, ...], list[Step], int, str]] = {
    # case: (command line, script, exit status, the error line before the server's text)
    "greeting": (("stat",), [ERR, expect_eof()], 5, "connecting failed: server said: "),
    "STLS": (("--ca-file", "{ca}", "stat"),
             [GREET, expect(b"CAPA\r\n"), send(b"+OK\r\nSTLS\r\nUSER\r\n.\r\n"),
              expect(b"STLS\r\n"), ERR, expect_eof()], 4, "the server refused STLS: "),
    "USER": (("stat",), [GREET, expect(b"CAPA\r\n"), send(CAPA_LOCKSTEP),
                         expect(b"USER alice\r\n"), ERR, expect_eof()], 3,
             "login failed: server said: "),
    "PASS": (("stat",), [*LOCKSTEP[:5], expect(b"PASS s3cret\r\n"), ERR, expect_eof()], 3,
             "login failed: server said: "),
    "AUTH": (("--auth", "PLAIN", "stat"),
             [GREET, expect(b"CAPA\r\n"), send(CAPA_PLAIN),
              expect(b"AUTH PLAIN " + PLAIN_BLOB + b"\r\n"), ERR, expect_eof()], 3,
             "login failed: server said: "),
    "STAT": (("stat",), [*LOCKSTEP, expect(b"STAT\r\n"), ERR, expect_eof()], 5,
             "STAT failed: server said: "),
    "NOOP": (("noop",), [*LOCKSTEP, expect(b"NOOP\r\n"), ERR, expect_eof()], 5,
             "NOOP failed: server said: "),
    "RSET": (("rset",), [*LOCKSTEP, expect(b"RSET\r\n"), ERR, expect_eof()], 5,
             "RSET failed: server said: "),
    "LIST": (("list", "--sizes-only"), [*LOCKSTEP, expect(b"LIST\r\n"), ERR, expect_eof()], 5,
             "LIST failed: server said: "),
    "TOP": (("top", "1"), [*LOCKSTEP, *NAMED, expect(b"TOP 1 0\r\n"), ERR, expect_eof()], 5,
            "TOP 1 failed: server said: "),
    "RETR": (("retr", "1"), [*LOCKSTEP, *NAMED, expect(b"RETR 1\r\n"), ERR, expect_eof()], 5,
             "RETR 1 failed: server said: "),
    "DELE": (("dele", "1", "--yes"),
             [*LOCKSTEP, *NAMED, expect(b"TOP 1 0\r\n"), send(ok_data(b"Subject: a\r\n\r\n")),
              expect(b"DELE 1\r\n"), ERR, expect_eof()], 5, "DELE 1 failed: server said: "),
    "QUIT": (("dele", "1", "--yes"),
             [*LOCKSTEP, *NAMED, expect(b"TOP 1 0\r\n"), send(ok_data(b"Subject: a\r\n\r\n")),
              expect(b"DELE 1\r\n"), send(b"+OK\r\n"), expect(b"QUIT\r\n"), ERR], 5,
             "QUIT failed: server said: "),
    "resp-code": (("stat",), [*LOCKSTEP, expect(b"STAT\r\n"),
                              send(b"-ERR [SYS/\x1b[2J\xc2\x9b\x7f] " + H + b"\r\n"),
                              expect_eof()], 5,
                  "STAT failed: server said: [SYS/\ufffd[2J\ufffd\ufffd] "),
}


@pytest.mark.parametrize("case", list(ERR_CASES))
def test_server_error_text_is_neutralised(case: str) -> None:
    args, script, code, before = ERR_CASES[case]
    tls = "starttls" if case == "STLS" else "none"
    with ScriptedServer(script, timeout=3.0) as server:
        result = run(server, *(a.replace("{ca}", server.ca_file) for a in args), tls=tls)
    server.assert_done()
    after = {"STLS": "; refusing to continue without TLS",
             "QUIT": "; the 1 deletion(s) of this session may not have been made (see what is "
                     "left with list)"}.get(case, "")
    assert (result.exit_code, result.stderr) == (code, f"Error: {before}{SHOWN}{after}\n")
    assert_clean(result.stdout, result.stderr)


def test_sasl_list_in_does_not_offer_is_neutralised() -> None:
    script = [GREET, expect(b"CAPA\r\n"),
              send(b"+OK\r\nUSER\r\nSASL PLAIN \x1b]0;pwned\x07 X\xc2\x9b2J \xe2\x80\xaeLOGIN\r\n"
                   b".\r\n"), expect_eof()]
    with ScriptedServer(script, timeout=3.0) as server:
        result = run(server, "--auth", "CRAM-MD5", "stat")
    server.assert_done()
    assert (result.exit_code, result.stderr) == (
        5, "Error: the server does not offer CRAM-MD5 (SASL: PLAIN, \ufffd]0;PWNED\ufffd, "
           "X\ufffd2J, \ufffdLOGIN)\n")


def test_probe_output_is_neutralised() -> None:
    capa = b"+OK\r\nUSER\r\nSASL PLAIN \x1b]0;pwned\x07 X\xc2\x9b2J\r\n.\r\n"
    script = [GREET, expect(b"CAPA\r\n"), send(b"+OK\r\nSTLS\r\n.\r\n"), expect(b"STLS\r\n"),
              send(b"+OK\r\n"), starttls(), expect(b"CAPA\r\n"), send(capa),
              expect(b"QUIT\r\n"), send(b"+OK\r\n")]
    with ScriptedServer(script, timeout=3.0) as server:
        result = CliRunner().invoke(cli, [
            "account", "add", "work", "--host", "localhost", "--port", str(server.port),
            "--user", "alice", "--tls", "starttls", "--ca-file", server.ca_file,
            "--auth", "SCRAM-SHA-256", "--probe"], color=True)
    server.assert_done()
    assert result.exit_code == 0, result.stderr
    assert_clean(result.stdout, result.stderr)
    offered = ["PLAIN", "\ufffd]0;PWNED\ufffd", "X\ufffd2J"]
    assert (f"probe: no usable mechanism: the server does not offer SCRAM-SHA-256 "
            f"(SASL: {', '.join(offered)})\n") in result.stderr
    assert f"SASL offered: {' '.join(offered)}; proposed: tls = starttls" in result.stderr


def _scram_script(server_final: bytes) -> list[Step]:
    """A SCRAM-SHA-256 exchange up to the server's final message (the client's nonce is
    fixed by the test)."""
    nonce = base64.b64encode(bytes(24)).decode()
    client_first = f"n,,n=alice,r={nonce}".encode()
    server_first = f"r={nonce}server,s={base64.b64encode(b'salt').decode()},i=4096".encode()
    capa = b"+OK\r\nUSER\r\nSASL SCRAM-SHA-256\r\n.\r\n"
    return [GREET, expect(b"CAPA\r\n"), send(capa),
            expect(b"AUTH SCRAM-SHA-256 " + base64.b64encode(client_first) + b"\r\n"),
            send(b"+ " + base64.b64encode(server_first) + b"\r\n"), expect_line(b"Yz1iaXdz"),
            send(b"+ " + base64.b64encode(server_final) + b"\r\n"), expect(b"*\r\n"),
            expect_eof()]


def test_scram_server_error_is_neutralised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "urandom", lambda n: bytes(n))
    with ScriptedServer(_scram_script(b"e=" + H), timeout=3.0) as server:
        result = run(server, "--auth", "SCRAM-SHA-256", "stat")
    server.assert_done()
    assert (result.exit_code, result.stderr) == (3, f"Error: SCRAM failed: {SHOWN}\n")


def test_trace_is_neutralised() -> None:
    """The greeting, CAPA, listings, headers and replies in --trace, and the table on stdout."""
    header = b"Subject: " + H + b"\r\nFrom: " + H + b" <a@b>\r\n\r\n"
    script = [send(b"+OK " + H + b"\r\n"), expect(b"CAPA\r\n"),
              send(b"+OK\r\nTOP\r\nUIDL\r\nUSER\r\nX-" + H + b"\r\n.\r\n"),
              expect(b"USER alice\r\n"), send(b"+OK " + H + b"\r\n"),
              expect(b"PASS s3cret\r\n"), send(b"+OK\r\n"), expect(b"CAPA\r\n"),
              send(b"+OK\r\nTOP\r\nUIDL\r\nUSER\r\nIMPLEMENTATION " + H + b"\r\n.\r\n"),
              expect(b"UIDL\r\n"), send(ok_data(b"1 uid-1 " + H + b"\r\n")),
              expect(b"LIST\r\n"), send(ok_data(b"1 120\r\n")), expect(b"TOP 1 0\r\n"),
              send(ok_data(header)), expect(b"QUIT\r\n"), send(b"+OK " + H + b"\r\n")]
    with ScriptedServer(script, timeout=3.0) as server:
        result = run(server, "--trace", "list")
    server.assert_done()
    assert result.exit_code == 0, result.stderr
    assert_clean(result.stdout, result.stderr)
    assert f" S: +OK {SHOWN}\n" in result.stderr  # the greeting
    assert f" S: Subject: {SHOWN}\n" in result.stderr
    assert f" S: 1 uid-1 {SHOWN}\n" in result.stderr


def test_shell_raw_reply_is_neutralised() -> None:
    """A raw command's status line goes to stdout."""
    script = [*LOCKSTEP, expect(b"NOOP\r\n"), send(b"-ERR " + H + b"\r\n"),
              expect(b"QUIT\r\n"), send(b"+OK\r\n")]
    with ScriptedServer(script, timeout=3.0) as server:
        result = CliRunner().invoke(cli, [
            "--host", "localhost", "--port", str(server.port), "--tls", "none",
            "--allow-plaintext", "--user", "alice", "shell"], input="NOOP\nquit\n",
            env={"POPCTL_PASSWORD": PASSWORD}, color=True)
    server.assert_done()
    assert (result.exit_code, result.stdout) == (0, f"-ERR {SHOWN}\n")


def test_table_neutralises_bidi_controls_and_json_keeps_them(tmp_path: Path) -> None:
    subject = "invoice \u202efdp.exe\u2066 \u200e\u200f"
    header = f"Subject: {subject}\r\n\r\n".encode()
    outputs = {}
    for fmt in ("table", "json"):
        script = [*LOCKSTEP, *SCAN, expect(b"TOP 1 0\r\n"), send(ok_data(header)),
                  expect(b"QUIT\r\n"), send(b"+OK\r\n")]
        with ScriptedServer(script, timeout=3.0) as server:
            result = run(server, "list", "--format", fmt, "--no-cache")
        server.assert_done()
        assert result.exit_code == 0, result.stderr
        outputs[fmt] = result.stdout
    assert_clean(outputs["table"])
    assert "invoice \ufffdfdp.exe\ufffd \ufffd\ufffd" in outputs["table"]
    assert json.loads(outputs["json"])[0]["subject"] == subject  # JSON is data: exact


# --- 2. the secret quoted back by the server --------------------------------------------------

SECRET = "S3cretPassw0rd!"


@pytest.mark.parametrize("trace", [False, True])
@pytest.mark.parametrize("pipelining", [False, True])
def test_password_echoed_by_pass_error_is_hidden(pipelining: bool, trace: bool) -> None:
    echo = f"-ERR [AUTH] wrong password '{SECRET}' ({SECRET.upper()})\r\n".encode()
    if pipelining:
        script = [GREET, expect(b"CAPA\r\n"), send(CAPA_PIPELINING),
                  expect(f"USER alice\r\nPASS {SECRET}\r\nCAPA\r\n".encode()),
                  send(b"+OK\r\n" + echo), expect_eof()]
    else:
        script = [GREET, expect(b"CAPA\r\n"), send(CAPA_LOCKSTEP), expect(b"USER alice\r\n"),
                  send(b"+OK\r\n"), expect(f"PASS {SECRET}\r\n".encode()), send(echo),
                  expect_eof()]
    with ScriptedServer(script, timeout=3.0) as server:
        result = run(server, *(["--trace"] if trace else []), "stat", password=SECRET)
    server.assert_done()
    assert result.exit_code == 3
    assert result.stderr.endswith(
        "Error: login failed: server said: [AUTH] wrong password '***' (***)\n")
    if trace:
        assert " S: -ERR [AUTH] wrong password '***' (***)\n" in result.stderr
    assert_hidden(result.stdout + result.stderr, SECRET)


@pytest.mark.parametrize("trace", [False, True])
def test_password_echoed_by_auth_plain_error_is_hidden(trace: bool) -> None:
    blob = base64.b64encode(f"\0alice\0{SECRET}".encode())
    alone = base64.b64encode(SECRET.encode())
    echo = (b"-ERR [AUTH] rejected " + blob + b" = " + alone + b" = \0alice\0"
            + SECRET.encode() + b"\r\n")
    script = [GREET, expect(b"CAPA\r\n"), send(CAPA_PLAIN),
              expect(b"AUTH PLAIN " + blob + b"\r\n"), send(echo), expect_eof()]
    with ScriptedServer(script, timeout=3.0) as server:
        result = run(server, *(["--trace"] if trace else []), "--auth", "PLAIN", "stat",
                     password=SECRET)
    server.assert_done()
    assert result.exit_code == 3
    assert result.stderr.endswith(
        "Error: login failed: server said: [AUTH] rejected *** = *** = \ufffdalice\ufffd***\n")
    assert_hidden(result.stdout + result.stderr, SECRET)


def test_password_in_a_challenge_and_data_under_trace_is_hidden(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """SCRAM's e= quoting the password (in the error and, base64, in the traced challenge)."""
    monkeypatch.setattr(auth, "urandom", lambda n: bytes(n))
    script = _scram_script(f"e=invalid-proof for {SECRET}".encode())
    with ScriptedServer(script, timeout=3.0) as server:
        result = run(server, "--trace", "--auth", "SCRAM-SHA-256", "stat", password=SECRET)
    server.assert_done()
    assert result.exit_code == 3
    assert result.stderr.endswith("Error: SCRAM failed: invalid-proof for ***\n")
    assert_hidden(result.stdout + result.stderr, SECRET)


def test_password_in_later_replies_and_traced_data_is_hidden() -> None:
    message = f"Subject: {SECRET}\r\n\r\n{SECRET}\r\n".encode()
    script = [GREET, expect(b"CAPA\r\n"), send(CAPA_LOCKSTEP), expect(b"USER alice\r\n"),
              send(b"+OK\r\n"), expect(f"PASS {SECRET}\r\n".encode()),
              send(f"+OK welcome, {SECRET}\r\n".encode()), expect(b"CAPA\r\n"),
              send(CAPA_LOCKSTEP), expect(b"UIDL 1\r\n"), send(b"+OK 1 uid-1\r\n"),
              expect(b"LIST 1\r\n"), send(b"+OK 1 %d\r\n" % len(message)),
              expect(b"RETR 1\r\n"), send(ok_data(message)),
              expect(b"QUIT\r\n")]
    with ScriptedServer(script, timeout=3.0) as server:
        result = run(server, "--trace", "retr", "1", password=SECRET)
    server.assert_done()
    assert result.exit_code == 0, result.stderr
    assert f"Subject: {SECRET}" in result.stdout  # the message itself is data, kept
    assert "S: +OK welcome, ***\n" in result.stderr
    assert "S: Subject: ***\n" in result.stderr
    assert_hidden(result.stderr, SECRET)


def test_password_in_a_malformed_reply_quoted_by_an_error_is_hidden() -> None:
    script = [GREET, expect(b"CAPA\r\n"), send(CAPA_LOCKSTEP), expect(b"USER alice\r\n"),
              send(b"+OK\r\n"), expect(f"PASS {SECRET}\r\n".encode()), send(b"+OK\r\n"),
              expect(b"CAPA\r\n"), send(CAPA_LOCKSTEP), expect(b"STAT\r\n"),
              send(f"+OK 2 {SECRET}\r\n".encode()), expect_eof()]
    with ScriptedServer(script, timeout=3.0) as server:
        result = run(server, "stat", password=SECRET)
    server.assert_done()
    assert (result.exit_code, result.stderr) == (
        6, "Error: server sent STAT size '***', not a number\n")


def test_password_in_an_unsolicited_reply_is_hidden() -> None:
    """A line that answers no command (found by test_hostile_property): the protocol error
    quotes it, so it passes through the redactor like every other server text."""
    script = [GREET, expect(b"CAPA\r\n"), send(CAPA_LOCKSTEP), expect(b"USER alice\r\n"),
              send(b"+OK\r\n"), expect(f"PASS {SECRET}\r\n".encode()), send(b"+OK\r\n"),
              expect(b"CAPA\r\n"), send(CAPA_LOCKSTEP), expect(b"STAT\r\n"),
              send(f"+OK 2 300\r\n-ERR {SECRET}\r\n".encode()), expect_eof()]
    with ScriptedServer(script, timeout=3.0) as server:
        result = run(server, "stat", "--json", password=SECRET)
    server.assert_done()
    assert result.exit_code == 6, result.stderr
    assert "-ERR ***" in result.stderr
    assert_hidden(result.stdout + result.stderr, SECRET)


def test_password_in_a_shell_raw_reply_is_hidden() -> None:
    script = [GREET, expect(b"CAPA\r\n"), send(CAPA_LOCKSTEP), expect(b"USER alice\r\n"),
              send(b"+OK\r\n"), expect(f"PASS {SECRET}\r\n".encode()), send(b"+OK\r\n"),
              expect(b"CAPA\r\n"), send(CAPA_LOCKSTEP), expect(b"NOOP\r\n"),
              send(f"+OK still {SECRET}\r\n".encode()), expect(b"NOOP\r\n"),
              send(f"-ERR not {SECRET.lower()}\r\n".encode()), expect(b"QUIT\r\n"),
              send(b"+OK\r\n")]
    with ScriptedServer(script, timeout=3.0) as server:
        result = CliRunner().invoke(cli, [
            "--host", "localhost", "--port", str(server.port), "--tls", "none",
            "--allow-plaintext", "--user", "alice", "shell"], input="NOOP\nraw NOOP\nquit\n",
            env={"POPCTL_PASSWORD": SECRET}, color=True)
    server.assert_done()
    assert (result.exit_code, result.stdout) == (0, "+OK still ***\n-ERR not ***\n")


# --- 3. security warnings are not chatter ----------------------------------------------------


def test_insecure_warning_survives_quiet() -> None:
    script = [GREET, expect(b"CAPA\r\n"), send(CAPA_PIPELINING),
              expect(b"USER alice\r\nPASS s3cret\r\nCAPA\r\n"),
              send(b"+OK\r\n+OK\r\n" + CAPA_PIPELINING), expect(b"STAT\r\n"),
              send(b"+OK 1 120\r\n"), expect(b"QUIT\r\n"), send(b"+OK\r\n")]
    with ScriptedServer(script, tls="implicit", timeout=3.0) as server:
        result = run(server, "--insecure", "-q", "stat", tls="implicit")
    server.assert_done()
    assert (result.exit_code, result.stderr) == (
        0, "warning: the server certificate is NOT verified (--insecure)\n")


# --- 4. CSV cells a spreadsheet would run ----------------------------------------------------


def test_csv_neutralises_formulas_in_server_text() -> None:
    header = (b"Subject: =HYPERLINK(\"http://evil.example/\",\"click\")\r\n"
              b"From: +cmd|' /C calc'!A0 <a@b>\r\n\r\n")
    script = [*LOCKSTEP, expect(b"UIDL\r\n"), send(ok_data(b"1 @SUM(1+1)\r\n2 -2+3\r\n")),
              expect(b"LIST\r\n"), send(ok_data(b"1 120\r\n2 30\r\n")),
              expect(b"TOP 1 0\r\n"), send(ok_data(header)), expect(b"TOP 2 0\r\n"),
              send(ok_data(b"Subject: \t=1+2\r\n\r\n")), expect(b"QUIT\r\n"),
              send(b"+OK\r\n")]
    with ScriptedServer(script, timeout=3.0) as server:
        result = run(server, "list", "--format", "csv", "--no-cache")
    server.assert_done()
    assert result.exit_code == 0, result.stderr
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows == [
        ["number", "size", "uid", "from", "subject", "date"],
        ["1", "120", "'@SUM(1+1)", "'+cmd|' /C calc'!A0 <a@b>",
         "'=HYPERLINK(\"http://evil.example/\",\"click\")", ""],
        ["2", "30", "'-2+3", "", "'=1+2", ""],
    ]


def test_a_numeric_password_equal_to_a_size_leaves_the_numbers_alone() -> None:
    """+OK text carries numbers: hidden in the trace, still read as they are."""
    script = [GREET, expect(b"CAPA\r\n"), send(CAPA_LOCKSTEP), expect(b"USER alice\r\n"),
              send(b"+OK\r\n"), expect(b"PASS 123456\r\n"), send(b"+OK\r\n"),
              expect(b"CAPA\r\n"), send(CAPA_LOCKSTEP), expect(b"STAT\r\n"),
              send(b"+OK 2 123456\r\n"), expect(b"QUIT\r\n")]
    with ScriptedServer(script, timeout=3.0) as server:
        result = run(server, "--trace", "stat", "--json", password="123456")
    server.assert_done()
    assert (result.exit_code, result.stdout) == (0, '{\n  "count": 2,\n  "size": 123456\n}\n')
    assert " S: +OK 2 ***\n" in result.stderr
