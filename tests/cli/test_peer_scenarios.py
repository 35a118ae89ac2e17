"""Server behaviours that other projects' POP3 client test suites exercise, met through popctl.

Each row is one behaviour a peer suite feeds its client (CPython's test_poplib, Twisted's
test_pop3client, Perl Net::POP3, GreenMail / Apache James, GNU mailutils, popa3d, ...),
replayed by the strict scripted server against one popctl command. The comment on each row says
where the behaviour comes from, in our words. A row asserts what an experienced user of mail
tools expects: the right output, or one ``Error:`` line with the documented exit status; never a
traceback, a hang, or a QUIT (which commits deletions) after an error.

Most rows log in lock-step (no PIPELINING in CAPA), so that the dialogue each row spells out is
the plain RFC 1939 one; tests/cli/test_faults.py covers the pipelined paths.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.cli import invoke
from tests.support.scripted_server import ScriptedServer, Step, expect, expect_eof, send, stall

PASSWORD = "s3cret"
BASIC_CAPA = b"+OK\r\nTOP\r\nUIDL\r\nUSER\r\n.\r\n"

GREET = send(b"+OK POP3 ready\r\n")


def ready(capa: bytes = BASIC_CAPA, greeting: bytes = b"+OK POP3 ready\r\n") -> list[Step]:
    """Greeting, CAPA, then USER and PASS one at a time; CAPA again after the login."""
    return [send(greeting), expect(b"CAPA\r\n"), send(capa),
            expect(b"USER alice\r\n"), send(b"+OK\r\n"),
            expect(b"PASS s3cret\r\n"), send(b"+OK\r\n"),
            expect(b"CAPA\r\n"), send(capa)]


READY = ready()
QUIT = [expect(b"QUIT\r\n"), send(b"+OK bye\r\n")]


def pick(size: int = 26) -> list[Step]:
    """A command on message 1 first asks for its UID and size."""
    return [expect(b"UIDL 1\r\n"), send(b"+OK 1 uid-1\r\n"), expect(b"LIST 1\r\n"),
            send(b"+OK 1 %d\r\n" % size)]


PICK = pick()
M1 = b"Subject: one\r\n\r\nbody one\r\n"


def ok_data(data: bytes, text: bytes = b"") -> bytes:
    return b"+OK" + (b" " + text if text else b"") + b"\r\n" + data + b".\r\n"


@dataclass(frozen=True)
class Scenario:
    id: str
    args: tuple[str, ...]
    script: Sequence[Step]
    exit: int
    stdout: str | bytes | None = None  # None: nothing (when it fails)
    error: str | tuple[str, ...] | None = None  # the stderr line(s); None: no Error line at all
    quit: bool = True  # whether QUIT must be among the bytes the server received
    password: str = PASSWORD
    within: float | None = None  # seconds the command may take (where waiting is the fault)
    stored: tuple[bytes, ...] = ()  # the files a command writing to {tmp}/out must leave there


SCENARIOS = [
    # --- greetings ----------------------------------------------------------------------------
    # popa3d and Twisted's "server greeting without challenge": a bare +OK, no text at all.
    Scenario("greeting-bare-OK", ("stat",),
             [*ready(greeting=b"+OK\r\n"), expect(b"STAT\r\n"), send(b"+OK 0 0\r\n"), *QUIT],
             0, "count  0\nsize   0\n"),
    # Twisted: a server that refuses service in its greeting ("-ERR Offline for maintenance").
    Scenario("greeting-ERR", ("stat",), [send(b"-ERR Offline for maintenance\r\n"), expect_eof()],
             5, error="connecting failed: server said: Offline for maintenance", quit=False),
    # Microsoft Exchange: a bracketed token at the end of the greeting (not a response code,
    # which RFC 2449 puts first).
    Scenario("greeting-bracketed-token", ("stat",),
             [*ready(greeting=b"+OK The Microsoft Exchange POP3 service is ready. "
                     b"[UwBOADIAUABSADAAOQBDAEEAMAAwADEA]\r\n"),
              expect(b"STAT\r\n"), send(b"+OK 0 0\r\n"), *QUIT], 0, "count  0\nsize   0\n"),
    # CPython test_poplib, RFC 1939 section 7: a greeting with an APOP timestamp; without TLS
    # popctl prefers APOP to sending the password (the digest is RFC 1939's own example).
    Scenario("greeting-with-timestamp-APOP", ("stat",),
             [send(b"+OK dummy ready. <1896.697170952@dbc.mtview.ca.us>\r\n"),
              expect(b"CAPA\r\n"), send(BASIC_CAPA),
              expect(b"APOP alice c4c9334bac560ecc979e58001b3e22fb\r\n"), send(b"+OK\r\n"),
              expect(b"CAPA\r\n"), send(BASIC_CAPA),
              expect(b"STAT\r\n"), send(b"+OK 1 10\r\n"), *QUIT], 0, "count  1\nsize   10\n",
             password="tanstaaf"),
    # CPython test_poplib (the APOP ReDoS case): a greeting full of '<' with no closing '>'.
    Scenario("greeting-many-angle-brackets", ("stat",),
             [*ready(greeting=b"+OK " + b"<" * 8000 + b"\r\n"),
              expect(b"STAT\r\n"), send(b"+OK 1 10\r\n"), *QUIT], 0, "count  1\nsize   10\n"),
    # --- CAPA ---------------------------------------------------------------------------------
    # Twisted (testCapabilityError), popa3d: CAPA answered -ERR; the RFC 1939 commands still work.
    Scenario("CAPA-ERR", ("stat",),
             [GREET, expect(b"CAPA\r\n"), send(b"-ERR unknown command\r\n"),
              expect(b"USER alice\r\n"), send(b"+OK\r\n"), expect(b"PASS s3cret\r\n"),
              send(b"+OK\r\n"), expect(b"STAT\r\n"), send(b"+OK 3 300\r\n"), *QUIT],
             0, "count  3\nsize   300\n"),
    # Twisted (testCapability): capabilities with arguments; CPython: IMPLEMENTATION.
    Scenario("CAPA-arguments", ("capa", "--format", "json"),
             [*ready(capa=b"+OK Capability list follows\r\n"
                     b"IMPLEMENTATION python-testlib-pop-server\r\nLOGIN-DELAY 180\r\n"
                     b"X-ODD 1 2 3\r\nUSER\r\n.\r\n"), *QUIT],
             0, '{\n  "capabilities": [\n    "IMPLEMENTATION",\n    "LOGIN-DELAY",\n'
             '    "USER",\n    "X-ODD"\n  ],\n'
             '  "implementation": "python-testlib-pop-server",\n  "sasl": [],\n'
             '  "login_delay": 180,\n  "expire": null,\n  "pipelining": false,\n'
             '  "mechanism": "USER",\n  "tls_version": null,\n  "tls_cipher": null,\n'
             '  "cert_sha256": null,\n  "greeting": "POP3 ready"\n}\n'),
    # RFC 2449 says capability names are case-insensitive; some servers send them in lower case.
    Scenario("CAPA-lower-case", ("top", "1", "0"),
             [*ready(capa=b"+OK\r\ntop\r\nuidl\r\nuser\r\n.\r\n"),
              *PICK, expect(b"TOP 1 0\r\n"), send(ok_data(b"Subject: one\r\n\r\n")), *QUIT],
             0, b"Subject: one\r\n\r\n"),
    # Trailing blanks after capability names (seen on hand-written servers).
    Scenario("CAPA-trailing-blanks", ("top", "1", "0"),
             [*ready(capa=b"+OK\r\nTOP \r\nUIDL\t\r\nUSER\r\n.\r\n"),
              *PICK, expect(b"TOP 1 0\r\n"), send(ok_data(b"Subject: one\r\n\r\n")), *QUIT],
             0, b"Subject: one\r\n\r\n"),
    # GreenMail's CAPA names only UIDL and SASL, though it implements USER, TOP and the rest:
    # `list` tries TOP rather than leave From, Subject and Date out.
    Scenario("CAPA-without-TOP-that-has-TOP", ("list", "--format", "csv"),
             [GREET, expect(b"CAPA\r\n"), send(b"+OK\r\nUIDL\r\nSASL PLAIN\r\n.\r\n"),
              expect(b"AUTH PLAIN AGFsaWNlAHMzY3JldA==\r\n"), send(b"+OK\r\n"),
              expect(b"CAPA\r\n"), send(b"+OK\r\nUIDL\r\nSASL PLAIN\r\n.\r\n"),
              expect(b"UIDL\r\n"), send(b"+OK\r\n1 a\r\n.\r\n"), expect(b"LIST\r\n"),
              send(b"+OK\r\n1 26\r\n.\r\n"), expect(b"TOP 1 0\r\n"),
              send(ok_data(b"Subject: one\r\n\r\n")), *QUIT],
             0, "number,size,uid,from,subject,date\n1,26,a,,one,\n"),
    # mpopd: CAPA without TOP, and TOP refused: the listing comes without headers.
    Scenario("CAPA-without-TOP-that-lacks-it", ("list", "--format", "csv"),
             [*ready(capa=b"+OK\r\nUSER\r\nUIDL\r\n.\r\n"),
              expect(b"UIDL\r\n"), send(b"+OK\r\n1 a\r\n.\r\n"), expect(b"LIST\r\n"),
              send(b"+OK\r\n1 26\r\n.\r\n"), expect(b"TOP 1 0\r\n"),
              send(b"-ERR unknown command\r\n"),
              expect(b"UIDL\r\n"), send(b"+OK\r\n1 a\r\n.\r\n"), expect(b"LIST\r\n"),
              send(b"+OK\r\n1 26\r\n.\r\n"), *QUIT],
             0, "number,size,uid,from,subject,date\n1,26,a,,,\n"),
    # The same, pipelined: the second TOP's refusal, already on its way, is read and dropped.
    Scenario("CAPA-without-TOP-pipelined", ("list", "--format", "csv"),
             [GREET, expect(b"CAPA\r\n"), send(b"+OK\r\nUSER\r\nUIDL\r\nPIPELINING\r\n.\r\n"),
              expect(b"USER alice\r\nPASS s3cret\r\nCAPA\r\nUIDL\r\nLIST\r\n"),
              send(b"+OK\r\n+OK\r\n+OK\r\nUSER\r\nUIDL\r\nPIPELINING\r\n.\r\n"
                   b"+OK\r\n1 a\r\n2 b\r\n.\r\n+OK\r\n1 26\r\n2 26\r\n.\r\n"),
              expect(b"TOP 1 0\r\nTOP 2 0\r\n"), send(b"-ERR unknown command\r\n" * 2),
              expect(b"UIDL\r\nLIST\r\n"),
              send(b"+OK\r\n1 a\r\n2 b\r\n.\r\n+OK\r\n1 26\r\n2 26\r\n.\r\n"), *QUIT],
             0, "number,size,uid,from,subject,date\n1,26,a,,,\n2,26,b,,,\n"),
    # --- login ---------------------------------------------------------------------------------
    # Twisted (testBadUser): USER refused.
    Scenario("USER-refused", ("stat",),
             [GREET, expect(b"CAPA\r\n"), send(BASIC_CAPA), expect(b"USER alice\r\n"),
              send(b"-ERR account suspended\r\n"), expect_eof()],
             3, error="login failed: server said: account suspended", quit=False),
    # Twisted (testBadPass).
    Scenario("PASS-refused", ("stat",),
             [GREET, expect(b"CAPA\r\n"), send(BASIC_CAPA), expect(b"USER alice\r\n"),
              send(b"+OK send password\r\n"), expect(b"PASS s3cret\r\n"),
              send(b"-ERR go away\r\n"), expect_eof()],
             3, error="login failed: server said: go away", quit=False),
    # Twisted (testAPOP): the digest of timestamp + password, RFC 1939 section 7.
    # (popctl takes RFC 1939's msg-id form <...@...> only: with any <...> it would pick APOP for
    # greetings that merely show a host name in angle brackets.)
    Scenario("APOP-challenge-not-msg-id", ("--auth", "APOP", "stat"),
             [send(b"+OK <challenge string goes here>\r\n"), expect(b"CAPA\r\n"),
              send(BASIC_CAPA), expect_eof()],
             5, error="the server does not offer APOP (its greeting has no timestamp <...@...>)",
             quit=False),
    # Twisted (testInsecureLoginRaisesException's other half): APOP asked, no timestamp given.
    Scenario("APOP-without-timestamp", ("--auth", "APOP", "stat"),
             [GREET, expect(b"CAPA\r\n"), send(BASIC_CAPA), expect_eof()],
             5, error="the server does not offer APOP (its greeting has no timestamp <...@...>)",
             quit=False),
    # GNU mailutils greets with a timestamp but refuses APOP for accounts without an APOP
    # secret: popctl, having chosen APOP itself, falls back to USER/PASS.
    Scenario("APOP-refused-falls-back", ("stat",),
             [send(b"+OK <1896.697170952@dbc.mtview.ca.us>\r\n"), expect(b"CAPA\r\n"),
              send(BASIC_CAPA), expect(b"APOP alice c4c9334bac560ecc979e58001b3e22fb\r\n"),
              send(b"-ERR [AUTH] APOP not set up\r\n"), expect(b"USER alice\r\n"),
              send(b"+OK\r\n"), expect(b"PASS tanstaaf\r\n"), send(b"+OK\r\n"),
              expect(b"CAPA\r\n"), send(BASIC_CAPA), expect(b"STAT\r\n"), send(b"+OK 0 0\r\n"),
              *QUIT], 0, "count  0\nsize   0\n", password="tanstaaf"),
    # SASL LOGIN (a de-facto mechanism): RFC 5034 wants "+ " and a challenge; some servers send
    # a bare "+" for an empty one.
    Scenario("AUTH-LOGIN-bare-plus", ("--auth", "LOGIN", "stat"),
             [GREET, expect(b"CAPA\r\n"), send(b"+OK\r\nTOP\r\nUIDL\r\nSASL LOGIN\r\n.\r\n"),
              expect(b"AUTH LOGIN\r\n"), send(b"+ VXNlcm5hbWU6\r\n"), expect(b"YWxpY2U=\r\n"),
              send(b"+\r\n"), expect(b"czNjcmV0\r\n"), send(b"+OK\r\n"),
              expect(b"CAPA\r\n"), send(b"+OK\r\nTOP\r\nUIDL\r\n.\r\n"),
              expect(b"STAT\r\n"), send(b"+OK 0 0\r\n"), *QUIT], 0, "count  0\nsize   0\n"),
    # "+challenge" with no space is refused: base64 may itself begin with "OK", so without the
    # space a challenge cannot be told from +OK. Nothing secret has been sent at that point.
    Scenario("AUTH-LOGIN-no-space", ("--auth", "LOGIN", "stat"),
             [GREET, expect(b"CAPA\r\n"), send(b"+OK\r\nTOP\r\nUIDL\r\nSASL LOGIN\r\n.\r\n"),
              expect(b"AUTH LOGIN\r\n"), send(b"+VXNlcm5hbWU6\r\n"), expect_eof()],
             6, error="malformed SASL challenge '+VXNlcm5hbWU6'", quit=False),
    # RFC 2449: response codes are read whatever their case.
    Scenario("IN-USE-lower-case", ("stat",),
             [GREET, expect(b"CAPA\r\n"), send(BASIC_CAPA), expect(b"USER alice\r\n"),
              send(b"+OK\r\n"), expect(b"PASS s3cret\r\n"),
              send(b"-ERR [in-use] mailbox locked\r\n"), expect_eof()],
             75, error="login failed: server said: [IN-USE] mailbox locked (another client holds "
             "the mailbox; try again when it has finished)", quit=False),
    # --- status lines -----------------------------------------------------------------------------
    # poplib only looks at the first octet; Twisted splits at the first space and so refuses
    # "+OKready". popctl refuses it too (RFC 1939 puts a space after the indicator, and
    # "+OKAY" is not "+OK"): one clear line rather than a guess.
    Scenario("OK-without-space", ("stat",), [send(b"+OKready\r\n"), expect_eof()],
             6, error="expected +OK or -ERR from the server, got '+OKready'", quit=False),
    # -ERR with no text at all.
    Scenario("ERR-without-text", ("stat",),
             [*READY, expect(b"STAT\r\n"), send(b"-ERR\r\n"), expect_eof()],
             5, error="STAT failed: server said: -ERR", quit=False),
    # CPython test_poplib bounds lines at 2048 octets; a 3,000-octet status line is still
    # well-formed POP3 (RFC 2449 allows 512, servers exceed it) and must not fail.
    Scenario("status-line-3000-octets", ("stat",),
             [*READY, expect(b"STAT\r\n"), send(b"+OK 1 5 " + b"t" * 3000 + b"\r\n"),
              *QUIT],
             0, "count  1\nsize   5\n"),
    # --- STAT -----------------------------------------------------------------------------------
    # Twisted (testStatError).
    Scenario("STAT-ERR", ("stat",),
             [*READY, expect(b"STAT\r\n"), send(b"-ERR This server is lame!\r\n"), expect_eof()],
             5, error="STAT failed: server said: This server is lame!", quit=False),
    # Servers that add words after the two numbers (RFC 1939 allows it).
    Scenario("STAT-extra-text", ("stat",),
             [*READY, expect(b"STAT\r\n"), send(b"+OK 2 320 messages (320 octets)\r\n"), *QUIT],
             0, "count  2\nsize   320\n"),
    # Two spaces between the fields (RFC 1939 says one; some servers pad).
    Scenario("STAT-double-spaces", ("stat",),
             [*READY, expect(b"STAT\r\n"), send(b"+OK  2  320\r\n"), *QUIT],
             0, "count  2\nsize   320\n"),
    # +OK with no numbers at all.
    Scenario("STAT-no-numbers", ("stat",),
             [*READY, expect(b"STAT\r\n"), send(b"+OK\r\n"), expect_eof()],
             6, error="malformed STAT reply: ''", quit=False),
    # --- LIST / UIDL ------------------------------------------------------------------------------
    # Twisted (testListSizeWithConsumer): numbering with gaps (messages deleted earlier).
    Scenario("UIDL-with-gaps", ("uidl", "--format", "csv"),
             [*READY, expect(b"UIDL\r\n"),
              send(b"+OK Here it comes\r\n1 xyz\r\n2 abc\r\n5 mno\r\n.\r\n"), expect(b"LIST\r\n"),
              send(b"+OK\r\n1 3\r\n2 2\r\n5 1\r\n.\r\n"), *QUIT],
             0, "number,uid\n1,xyz\n2,abc\n5,mno\n"),
    # Twisted (testFailedListUID): UIDL -ERR.
    Scenario("UIDL-ERR", ("uidl",),
             [*READY, expect(b"UIDL\r\n"), send(b"-ERR Fatal doom server exploded\r\n"),
              expect(b"LIST\r\n"), send(b"+OK\r\n1 3\r\n2 2\r\n.\r\n"), expect_eof()],
             5, error="UIDL failed: server said: Fatal doom server exploded", quit=False),
    # popa3d-like: no CAPA, and UIDL refused. `uidl` says so rather than print blank UIDs...
    Scenario("UIDL-ERR-without-CAPA", ("uidl",),
             [GREET, expect(b"CAPA\r\n"), send(b"-ERR\r\n"), expect(b"USER alice\r\n"),
              send(b"+OK\r\n"), expect(b"PASS s3cret\r\n"), send(b"+OK\r\n"),
              expect(b"UIDL\r\n"), send(b"-ERR unknown command\r\n"), expect(b"LIST\r\n"),
              send(b"+OK\r\n1 3\r\n.\r\n"), expect_eof()],
             5, error="the server does not support UIDL (no unique ids)", quit=False),
    # ... while `list` shows what there is, without the UID column's values.
    Scenario("LIST-UIDL-ERR-without-CAPA", ("list", "--format", "csv"),
             [GREET, expect(b"CAPA\r\n"), send(b"-ERR\r\n"), expect(b"USER alice\r\n"),
              send(b"+OK\r\n"), expect(b"PASS s3cret\r\n"), send(b"+OK\r\n"),
              expect(b"UIDL\r\n"), send(b"-ERR unknown command\r\n"), expect(b"LIST\r\n"),
              send(b"+OK\r\n1 26\r\n.\r\n"), expect(b"TOP 1 0\r\n"),
              send(ok_data(b"Subject: one\r\n\r\n")), *QUIT],
             0, "number,size,uid,from,subject,date\n1,26,,,one,\n"),
    # UIDL lines with trailing blanks, and UIDs using the whole 0x21-0x7E range (RFC 1939).
    Scenario("UIDL-odd-characters", ("uidl", "--format", "csv"),
             [*READY, expect(b"UIDL\r\n"),
              send(b"+OK\r\n1 <a.b@c>!~\r\n2 \"q\"=,; \r\n3 0000001a\t\r\n.\r\n"),
              expect(b"LIST\r\n"), send(b"+OK\r\n1 3\r\n2 2\r\n3 1\r\n.\r\n"), *QUIT],
             0, 'number,uid\n1,<a.b@c>!~\n2,"""q""=,;"\n3,0000001a\n'),
    # LIST lines with a third field (mailutils-style extras) and trailing blanks.
    Scenario("LIST-extra-fields", ("list", "--sizes-only", "--format", "csv"),
             [*READY, expect(b"LIST\r\n"),
              send(b"+OK 2 messages (240 octets)\r\n1 120 extra\r\n2 120 \r\n.\r\n"), *QUIT],
             0, "number,size\n1,120\n2,120\n"),
    # Fields separated by a tab, or by several blanks (RFC 1939 says one space).
    Scenario("LIST-tab-separated", ("list", "--sizes-only", "--format", "csv"),
             [*READY, expect(b"LIST\r\n"), send(b"+OK\r\n1\t120\r\n2   7\r\n.\r\n"), *QUIT],
             0, "number,size\n1,120\n2,7\n"),
    # A UIDL line with a number and no UID.
    Scenario("UIDL-line-without-uid", ("uidl",),
             [*READY, expect(b"UIDL\r\n"), send(b"+OK\r\n1\r\n.\r\n"), expect_eof()],
             6, error="malformed UIDL line from the server: '1'", quit=False),
    # Message number 0 (numbers start at 1, RFC 1939 section 5).
    Scenario("LIST-number-zero", ("list", "--sizes-only"),
             [*READY, expect(b"LIST\r\n"), send(b"+OK\r\n0 3\r\n.\r\n"), expect_eof()],
             6, error="server sent LIST message number 0 (message numbers start at 1)", quit=False),
    # Listing lines out of numeric order. RFC 1939 names no order, but every server seen lists
    # in increasing order, and popctl keeps listings compact on that assumption
    # (popctl/listing.py): one clear line, exit 6, rather than a guess.
    Scenario("LIST-out-of-order", ("list", "--sizes-only", "--format", "csv"),
             [*READY, expect(b"LIST\r\n"), send(b"+OK\r\n2 7\r\n1 120\r\n.\r\n"), expect_eof()],
             6, "number,size\n", error="server listed message 1 after message 2 in its LIST reply "
             "(a listing is in increasing order)", quit=False),
    # An empty maildrop: a multi-line reply with nothing between +OK and the dot.
    Scenario("LIST-empty", ("list", "--format", "csv"),
             [*READY, expect(b"UIDL\r\n"), send(b"+OK\r\n.\r\n"), expect(b"LIST\r\n"),
              send(b"+OK 0 messages\r\n.\r\n"), *QUIT], 0, "number,size,uid,from,subject,date\n"),
    # Twisted (listing with deleted messages): LIST numbering with gaps, met by `list`.
    Scenario("LIST-with-gaps", ("list", "--format", "csv"),
             [*READY, expect(b"UIDL\r\n"), send(b"+OK\r\n1 a\r\n3 c\r\n.\r\n"),
              expect(b"LIST\r\n"), send(b"+OK\r\n1 26\r\n3 26\r\n.\r\n"),
              expect(b"TOP 1 0\r\n"), send(ok_data(b"Subject: one\r\n\r\n")),
              expect(b"TOP 3 0\r\n"), send(ok_data(b"Subject: three\r\n\r\n")), *QUIT],
             0, "number,size,uid,from,subject,date\n1,26,a,,one,\n3,26,c,,three,\n"),
    # RFC 1939 limits a UID to 70 octets; longer ones are seen in the wild and kept whole.
    Scenario("UIDL-500-octet-uid", ("uidl", "--format", "csv"),
             [*READY, expect(b"UIDL\r\n"), send(b"+OK\r\n1 " + b"u" * 500 + b"\r\n.\r\n"),
              expect(b"LIST\r\n"), send(b"+OK\r\n1 3\r\n.\r\n"), *QUIT],
             0, "number,uid\n1," + "u" * 500 + "\n"),
    # CPython test_poplib bounds a line at 2,048 octets; popctl bounds listing lines at 8,192
    # (a UID is at most 70): a UIDL line of 100,000 octets is refused with one line.
    Scenario("UIDL-100000-octet-line", ("uidl",),
             [*READY, expect(b"UIDL\r\n"), send(b"+OK\r\n1 " + b"u" * 100_000 + b"\r\n.\r\n"),
              expect_eof()],
             6, error="server sent a UIDL line longer than 8192 octets", quit=False),
    # A server that ignores TOP's line count and sends the body too: only headers are read.
    Scenario("TOP-ignores-line-count", ("list", "--format", "csv"),
             [*READY, expect(b"UIDL\r\n"), send(b"+OK\r\n1 a\r\n.\r\n"),
              expect(b"LIST\r\n"), send(b"+OK\r\n1 60\r\n.\r\n"), expect(b"TOP 1 0\r\n"),
              send(ok_data(b"Subject: one\r\n\r\nSubject: not a header\r\nbody\r\n")), *QUIT],
             0, "number,size,uid,from,subject,date\n1,60,a,,one,\n"),
    # TOP n 0 answered with the header alone, without the empty line that ends it.
    Scenario("TOP-without-empty-line", ("list", "--format", "csv"),
             [*READY, expect(b"UIDL\r\n"), send(b"+OK\r\n1 a\r\n.\r\n"),
              expect(b"LIST\r\n"), send(b"+OK\r\n1 60\r\n.\r\n"), expect(b"TOP 1 0\r\n"),
              send(ok_data(b"Subject: one\r\nFrom: a@example.org\r\n")), *QUIT],
             0, "number,size,uid,from,subject,date\n1,60,a,a@example.org,one,\n"),
    # A folded Subject of 5,000 octets (RFC 5322 allows 998 a line; spam exceeds it).
    Scenario("TOP-5000-octet-subject", ("list", "--format", "csv"),
             [*READY, expect(b"UIDL\r\n"), send(b"+OK\r\n1 a\r\n.\r\n"),
              expect(b"LIST\r\n"), send(b"+OK\r\n1 6000\r\n.\r\n"), expect(b"TOP 1 0\r\n"),
              send(ok_data(b"Subject: " + b"s" * 5000 + b"\r\n\r\n")), *QUIT],
             # docs/JSON.md: header text is cut at 999 characters and "…"
             0, "number,size,uid,from,subject,date\n1,6000,a,," + "s" * 999 + "\u2026,\n"),
    # --- RETR / TOP -------------------------------------------------------------------------------
    # Twisted (testRetrieve) and CPython (+OK 116 bytes): text after +OK; a dot-stuffed line.
    Scenario("RETR-dot-stuffing", ("retr", "1"),
             [*READY, *pick(38), expect(b"RETR 1\r\n"),
              send(b"+OK 116 bytes\r\nSubject: s\r\n\r\nLa la\r\n..Further\r\n..\r\n...\r\n.\r\n"),
              *QUIT], 0, b"Subject: s\r\n\r\nLa la\r\n.Further\r\n.\r\n..\r\n"),
    # RFC 1939 section 3: a line starting with '.' followed by something else is unstuffed even
    # when the server forgot (a lone '. ' line must not end the reply).
    Scenario("RETR-dot-space", ("retr", "1"),
             [*READY, *pick(22), expect(b"RETR 1\r\n"),
              send(b"+OK\r\nSubject: s\r\n\r\n. \r\nend\r\n.\r\n"), *QUIT],
             0, b"Subject: s\r\n\r\n \r\nend\r\n"),
    # CPython test_poplib (too-long lines): lines far beyond RFC 1939's 512 octets in a body.
    Scenario("RETR-long-body-line", ("retr", "1"),
             [*READY, *PICK, expect(b"RETR 1\r\n"),
              send(ok_data(b"Subject: s\r\n\r\n" + b"x" * 100_000 + b"\r\n")), *QUIT],
             0, b"Subject: s\r\n\r\n" + b"x" * 100_000 + b"\r\n"),
    # A message number in a gap (deleted earlier): the UIDL n and LIST n refusals say so.
    Scenario("RETR-number-in-gap", ("retr", "2"),
             [*READY, expect(b"UIDL 2\r\n"), send(b"-ERR no such message\r\n"),
              expect(b"LIST 2\r\n"), send(b"-ERR no such message\r\n"),
              expect(b"STAT\r\n"), send(b"+OK 3 78\r\n"), expect_eof()],
             5, error="message 2 does not exist or is deleted", quit=False),
    # Bare LF line endings inside a message: written out as the server sent them.
    Scenario("RETR-bare-LF-body", ("retr", "1"),
             [*READY, *pick(20), expect(b"RETR 1\r\n"),
              send(b"+OK\r\nSubject: s\n\nbody\nmore\r\n.\r\n"), *QUIT],
             0, b"Subject: s\n\nbody\nmore\r\n"),
    # A bare CR inside a line (old Mac mail) is data, not a line end.
    Scenario("RETR-bare-CR-in-line", ("retr", "1"),
             [*READY, *pick(19), expect(b"RETR 1\r\n"),
              send(ok_data(b"Subject: s\r\n\r\na\rb\r\n")), *QUIT],
             0, b"Subject: s\r\n\r\na\rb\r\n"),
    # Twisted (testFailedRetrieve): RETR -ERR ends the command without committing anything.
    Scenario("RETR-ERR", ("retr", "1"),
             [*READY, *PICK, expect(b"RETR 1\r\n"), send(b"-ERR Fatal doom server exploded\r\n"),
              expect_eof()], 5, error="RETR 1 failed: server said: Fatal doom server exploded",
             quit=False),
    # Twisted (testPartialRetrieve): TOP with text after +OK.
    Scenario("TOP-text", ("top", "1", "2"),
             [*READY, *PICK, expect(b"TOP 1 2\r\n"),
              send(ok_data(b"Subject: s\r\n\r\nLine the first!  Woop\r\nLine the last!  Bye\r\n",
                           b"2 lines on the way")), *QUIT],
             0, b"Subject: s\r\n\r\nLine the first!  Woop\r\nLine the last!  Bye\r\n"),
    # CPython: a server without TOP answers "-ERR unrecognized POP3 command".
    Scenario("TOP-unknown-command", ("top", "1", "0"),
             [GREET, expect(b"CAPA\r\n"), send(b"-ERR unrecognized POP3 command\r\n"),
              expect(b"USER alice\r\n"), send(b"+OK\r\n"), expect(b"PASS s3cret\r\n"),
              send(b"+OK\r\n"), *PICK, expect(b"TOP 1 0\r\n"),
              send(b"-ERR unrecognized POP3 command \"TOP\".\r\n"), expect_eof()],
             5, error='TOP 1 failed: server said: unrecognized POP3 command "TOP".',
             quit=False),
    # Twisted (testFailedRetrieve) within a download that deletes: message 1 is stored and
    # marked, RETR 2 is refused; no QUIT may follow, or message 1's deletion would be committed
    # by a session that failed (the user reruns and finds it, still on the server).
    Scenario("RETR-ERR-with-deletion-marked", ("retr", "--all", "--output-dir", "{tmp}/out",
                                               "--delete"),
             [*READY, expect(b"UIDL\r\n"), send(b"+OK\r\n1 a\r\n2 b\r\n.\r\n"),
              expect(b"LIST\r\n"), send(b"+OK\r\n1 26\r\n2 26\r\n.\r\n"),
              expect(b"RETR 1\r\n"), send(ok_data(M1)), expect(b"DELE 1\r\n"),
              send(b"+OK\r\n"), expect(b"RETR 2\r\n"),
              send(b"-ERR message 2 is being delivered\r\n"), expect_eof()],
             5, error="RETR 2 failed: server said: message 2 is being delivered", quit=False,
             stored=(M1,)),
    # A server that forgot to dot-stuff a lone "." inside a message ends its reply early; the
    # rest of the message then arrives where a status line belongs. The cut message is shorter
    # than LIST said: as docs/RELIABILITY.md says of short RETRs, its copy is kept and the
    # message is not deleted (no DELE, no QUIT), and the user is told that copy may be
    # incomplete; the stray line, found before QUIT, ends the run (exit 6).
    Scenario("RETR-unstuffed-dot-with-delete", ("retr", "--all", "--output-dir", "{tmp}/out",
                                                "--delete"),
             [*READY, expect(b"UIDL\r\n"), send(b"+OK\r\n1 a\r\n.\r\n"),
              expect(b"LIST\r\n"), send(b"+OK\r\n1 31\r\n.\r\n"), expect(b"RETR 1\r\n"),
              send(b"+OK\r\nSubject: s\r\n\r\nup\r\n.\r\ndown\r\n.\r\n"), expect_eof()],
             6, error=("message 1 arrived short: 18 of the 31 octets LIST announced; kept on "
                       "the server (the copy in {tmp}/out/a.eml may be incomplete)",
                       "server sent 'down' when no command was waiting for a reply"), quit=False,
             stored=(b"Subject: s\r\n\r\nup\r\n",)),
    # A message deleted by another session between LIST and TOP: `list` says which and stops.
    Scenario("TOP-ERR-mid-list", ("list", "--format", "csv"),
             [*READY, expect(b"UIDL\r\n"), send(b"+OK\r\n1 a\r\n2 b\r\n.\r\n"),
              expect(b"LIST\r\n"), send(b"+OK\r\n1 26\r\n2 26\r\n.\r\n"),
              expect(b"TOP 1 0\r\n"), send(ok_data(b"Subject: one\r\n\r\n")),
              expect(b"TOP 2 0\r\n"), send(b"-ERR no such message\r\n"), expect_eof()],
             5, "number,size,uid,from,subject,date\n1,26,a,,one,\n",
             error="TOP 2 failed: server said: no such message", quit=False),
    # RFC 6856: a server announcing UTF8 may send raw UTF-8 in headers.
    Scenario("UTF8-raw-header", ("list", "--format", "csv"),
             [*ready(capa=b"+OK\r\nTOP\r\nUIDL\r\nUSER\r\nUTF8\r\n.\r\n"),
              expect(b"UIDL\r\n"), send(b"+OK\r\n1 a\r\n.\r\n"), expect(b"LIST\r\n"),
              send(b"+OK\r\n1 40\r\n.\r\n"), expect(b"TOP 1 0\r\n"),
              send(ok_data("Subject: Grüße\r\nFrom: Jörg <j@example.org>\r\n\r\n".encode())),
              *QUIT], 0, "number,size,uid,from,subject,date\n1,40,a,Jörg <j@example.org>,Grüße,\n"),
    # popa3d-like (no CAPA): `top` on a server whose UIDL n is refused still shows the message.
    Scenario("TOP-without-CAPA-or-UIDL", ("top", "1", "0"),
             [GREET, expect(b"CAPA\r\n"), send(b"-ERR\r\n"), expect(b"USER alice\r\n"),
              send(b"+OK\r\n"), expect(b"PASS s3cret\r\n"), send(b"+OK\r\n"),
              expect(b"UIDL 1\r\n"), send(b"-ERR unknown command\r\n"), expect(b"LIST 1\r\n"),
              send(b"+OK 1 26\r\n"), expect(b"TOP 1 0\r\n"), send(ok_data(b"Subject: one\r\n\r\n")),
              *QUIT], 0, b"Subject: one\r\n\r\n"),
    # --- DELE / RSET / NOOP / QUIT ---------------------------------------------------------------
    # Twisted (testDeleteError): DELE refused; the session must not be committed by a QUIT.
    Scenario("DELE-ERR", ("dele", "1", "--yes"),
             [*READY, *PICK, expect(b"TOP 1 0\r\n"), send(ok_data(b"Subject: one\r\n\r\n")),
              expect(b"DELE 1\r\n"), send(b"-ERR Winner is not you.\r\n"), expect_eof()],
             5, error="DELE 1 failed: server said: Winner is not you.", quit=False),
    # Twisted (testRsetError).
    Scenario("RSET-ERR", ("rset",),
             [*READY, expect(b"RSET\r\n"), send(b"-ERR This server is lame!\r\n"), expect_eof()],
             5, error="RSET failed: server said: This server is lame!", quit=False),
    # Twisted (testNoopError).
    Scenario("NOOP-ERR", ("noop",),
             [*READY, expect(b"NOOP\r\n"), send(b"-ERR This server is lame!\r\n"), expect_eof()],
             5, error="NOOP failed: server said: This server is lame!", quit=False),
    # A server that answers QUIT but keeps the connection open: popctl closes it itself
    # rather than wait (the scripted server would stall for 3 s past the --timeout of 2).
    Scenario("QUIT-answered-connection-kept", ("stat",),
             [*READY, expect(b"STAT\r\n"), send(b"+OK 2 320\r\n"), *QUIT, stall(3)],
             0, "count  2\nsize   320\n", within=1.5),
    # RFC 1939 section 6: QUIT answered -ERR in the UPDATE state: some deletions were not made.
    Scenario("QUIT-ERR-after-DELE", ("dele", "1", "--yes"),
             [*READY, *PICK, expect(b"TOP 1 0\r\n"), send(ok_data(b"Subject: one\r\n\r\n")),
              expect(b"DELE 1\r\n"), send(b"+OK message marked for deletion.\r\n"),
              expect(b"QUIT\r\n"), send(b"-ERR some deleted messages not removed\r\n")],
             5, error="QUIT failed: server said: some deleted messages not removed; the 1 "
             "deletion(s) of this session may not have been made (see what is left with list)"),
    # QUIT answered -ERR when nothing was to be deleted: the answer the user asked for stands.
    Scenario("QUIT-ERR-nothing-deleted", ("stat",),
             [*READY, expect(b"STAT\r\n"), send(b"+OK 2 320\r\n"), expect(b"QUIT\r\n"),
              send(b"-ERR bye anyway\r\n")], 0, "count  2\nsize   320\n"),
]


def run(server: ScriptedServer, args: Sequence[str], tmp: Path, password: str
        ) -> tuple[int, bytes, str]:
    options = ["--host", "127.0.0.1", "--port", str(server.port), "--tls", "none",
               "--allow-plaintext", "--user", "alice", "--timeout", "2", "--no-cache"]
    result = invoke(*options, *[a.replace("{tmp}", str(tmp)) for a in args],
                    env={"POPCTL_PASSWORD": password, "POPCTL_CONFIG": str(tmp / "none.toml")})
    return result.exit_code, result.stdout_bytes, result.stderr


@pytest.mark.parametrize("case", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_peer_scenario(case: Scenario, tmp_path: Path) -> None:
    with ScriptedServer(case.script, timeout=3.0) as server:
        started = time.monotonic()
        code, stdout, stderr = run(server, case.args, tmp_path, case.password)
        elapsed = time.monotonic() - started
    server.assert_done()  # the dialogue was exactly the scripted one
    assert "Traceback" not in stderr
    if case.error is None:
        assert "Error" not in stderr, stderr
    else:
        lines = (case.error,) if isinstance(case.error, str) else case.error
        lines = tuple(line.replace("{tmp}", str(tmp_path)) for line in lines)
        assert stderr == "".join(f"Error: {line}\n" for line in lines)
    assert code == case.exit, stderr
    expected = case.stdout if isinstance(case.stdout, bytes) else (case.stdout or "").encode()
    assert stdout == expected
    if case.within is not None:
        assert elapsed < case.within, f"took {elapsed:.2f} s"
    out = tmp_path / "out"
    assert sorted(p.read_bytes() for p in out.rglob("*") if p.is_file()) == list(case.stored)
    lines = server.received.split(b"\r\n")
    assert (b"QUIT" in lines) == case.quit, server.received[-300:]


def test_scenario_ids_are_unique() -> None:
    assert len({s.id for s in SCENARIOS}) == len(SCENARIOS)
